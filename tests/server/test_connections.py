"""The server under hostile connections (issue #14 items 6-8): clients hanging up mid-body, bodies that
never complete, malformed HTTP framing, and cross-site posts that are not JSON."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keyctl.server import ServerHandle, start
from tests.server.conftest import EMAIL, FakeClock, client, enroll, error_of, sign_in, snapshot

TIMEOUT = 6.0  # the request timeout these tests give the server (the default is 10 s)


@pytest.fixture
def slow_server(db_target: Path | str, clock: FakeClock) -> Iterator[ServerHandle]:
    with start(db_target, clock=clock, rate_limit=100_000, request_timeout=TIMEOUT) as handle:
        yield handle


def connect(server: ServerHandle) -> socket.socket:
    host, port = server.local_url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def read_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """A whole HTTP response (the server closes the connection after it)."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split()[1]), headers, body


STALLED_BODY = (
    b"POST /api/signin/password HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\n\r\n" + b'{"email": '
)
STALLED_HEAD = b"POST /api/signin/password HTTP/1.1\r\nHost: localhost\r\nContent-Ty"


def test_stalled_requests_are_dropped_while_others_sign_in(
    slow_server: ServerHandle, clock: FakeClock
) -> None:
    account = enroll(slow_server, clock)
    started = time.monotonic()
    stalled = []
    for number in range(300):
        sock = connect(slow_server)
        sock.sendall(STALLED_BODY if number % 3 else STALLED_HEAD)  # 200 stalled bodies, 100 stalled heads
        stalled.append(sock)

    signed_in = sign_in(slow_server, clock, account)  # password + TOTP, while all 300 hang
    assert signed_in.get("/api/me").json()["email"] == EMAIL
    assert time.monotonic() - started < TIMEOUT, "too slow to show the sign-in overlapped the stalled ones"
    for sock in stalled[:: len(stalled) // 10]:  # they are still open, unanswered
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(1)
        sock.setblocking(True)

    for sock in stalled:
        status, headers, body = read_response(sock, timeout=started + TIMEOUT + 10 - time.monotonic())
        assert status == 408
        assert headers["content-type"] == "application/json"
        assert json.loads(body)["error"] == "request_timeout"
        sock.close()
    assert time.monotonic() - started < TIMEOUT + 10


def test_a_client_hanging_up_mid_body_is_one_debug_line(
    server: ServerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for path in ("/api/signout", "/api/signin/password", "/api/passkeys/prompt"):
        sock = connect(server)
        sock.sendall(STALLED_BODY.replace(b"/api/signin/password", path.encode()))
        time.sleep(0.05)
        sock.close()
    deadline = time.monotonic() + 5
    while sum("hung up" in r.getMessage() for r in caplog.records) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    hangups = [r for r in caplog.records if "hung up" in r.getMessage()]
    assert len(hangups) == 3
    assert all(r.levelno == logging.DEBUG and r.exc_info is None for r in hangups)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert client(server).post("/api/passkeys/login/options", json={}).status_code == 200


@pytest.mark.parametrize(
    "content_length",
    [b"abc", b"-1", b"1e3", b"10, 20", b"99999999999999999999999"],
)
def test_malformed_content_length_gets_the_json_error_shape(
    server: ServerHandle, content_length: bytes
) -> None:
    sock = connect(server)
    sock.sendall(
        b"POST /api/signin/password HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + content_length + b"\r\n\r\n{}"
    )
    status, headers, body = read_response(sock, timeout=10)
    sock.close()
    assert 400 <= status < 500
    assert headers["content-type"] == "application/json"
    assert set(json.loads(body)) == {"error", "message"}


def test_two_content_lengths_get_the_json_error_shape(
    server: ServerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sock = connect(server)
    sock.sendall(
        b"POST /api/signin/password HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\nContent-Length: 5\r\n\r\n{}"
    )
    status, _, body = read_response(sock, timeout=10)
    sock.close()
    assert status == 400
    assert json.loads(body)["error"] == "invalid_request"
    # A client's malformed request is logged in one debug line, never as a warning (log flooding).
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any(r.getMessage().startswith("refused a malformed HTTP request") for r in caplog.records)


@pytest.fixture
def signed_in(server: ServerHandle, clock: FakeClock) -> httpx.Client:
    return enroll(server, clock).http


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", b"action=skip"),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="action"\r\n\r\nskip\r\n--x--',
        ),
        ("text/plain", b'{"action": "skip"}'),
        (None, b'{"action": "skip"}'),
    ],
)
def test_state_changes_need_a_json_content_type_even_without_an_origin(
    server: ServerHandle, signed_in: httpx.Client, content_type: str | None, body: bytes
) -> None:
    """What a cross-site form (or a fetch in no-cors mode) can send, with no Origin header."""
    headers = {"Content-Type": content_type} if content_type else {}
    before = snapshot(server)
    for path in ("/api/passkeys/prompt", "/api/signout", "/api/passkeys/register/options"):
        response = signed_in.post(path, content=body, headers=headers)
        assert response.status_code == 415, (path, response.text)
        assert error_of(response) == "unsupported_media_type"
    me = signed_in.get("/api/me")
    assert me.status_code == 200
    assert me.json()["passkey_prompt"] is True  # "skip" was not recorded
    assert snapshot(server) == before


def test_json_with_a_charset_and_no_origin_is_accepted(server: ServerHandle, signed_in: httpx.Client) -> None:
    response = signed_in.post(
        "/api/passkeys/prompt",
        content=b'{"action": "skip"}',
        headers={"Content-Type": "Application/JSON; charset=utf-8"},
    )
    assert response.status_code == 200, response.text
    assert signed_in.get("/api/me").json()["passkey_prompt"] is False
