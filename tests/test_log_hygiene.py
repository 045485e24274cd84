"""What `--debug` logs and what only `--traffic` does: register, login, enroll, totp, demo and the server,
each a real keyctl process at --debug, with no password, PIN, TOTP secret or code, recovery code, cookie or
admin token in any of their output; then --traffic, which does show the CTAPHID frames and HTTP bodies."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookiejar import MozillaCookieJar
from pathlib import Path

import httpx
import pytest

from keyctl import secrets
from keyctl.authenticator import VirtualAuthenticator
from keyctl.hid.udp import UdpServer
from keyctl.totp import vault
from keyctl.totp.codes import totp
from keyctl.totp.model import decode_base32
from tests.conftest import Result, run_keyctl

PASSWORD = "correct horse battery staple"
KEY_PIN = "482915"
ADMIN_TOKEN = "s3cret-admin-token-5x9"
TOTP_SECRET = "KRUGS4ZANFZSAYJAORSXG5BAONSWG4TF"  # `keyctl totp add` (the server issues its own)
# A JSON field holding a secret, as an HTTP body logged at the wrong level would show it.
SECRET_FIELD = re.compile(r"""["'](password|code|recovery_code|secret|totp|pin)["']\s*:\s*["'][^"']""", re.I)
ENV = {"RP_PASSWORD": PASSWORD, "RP_ADMIN": ADMIN_TOKEN, "KEY_PIN": KEY_PIN}


@dataclass
class Logs:
    """Every process's stderr and stdout; the secrets the journey used, to look for in them."""

    outputs: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=lambda: {"password": PASSWORD, "PIN": KEY_PIN})
    started: float = field(default_factory=time.time)

    def run(self, label: str, args: list[str], stdin: str | None = None, quiet: bool = False) -> Result:
        """keyctl --debug ARGS; unless ``quiet``, its debug log must say something."""
        result = run_keyctl(["--debug", *args], stdin=stdin, env=ENV)
        self.outputs[label] = result.stderr
        assert result.exit_code == 0, f"{label}: {result.stderr[-2000:]}"
        assert quiet or " DEBUG " in result.stderr, f"{label}: --debug logged nothing"
        return result


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`keyctl --debug server` as its own process; its stderr goes to a file the test reads at the end."""
    log = tmp_path / "server.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "keyctl", "--debug", "server", "--port", "0",
             "--db", str(tmp_path / "rp.db"), "--admin-token-env", "RP_ADMIN"],
            stderr=sink, stdout=subprocess.DEVNULL, env={**os.environ, **ENV},
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not (found := re.search(r"keyctl server: (http://localhost:\d+)", log.read_text())):
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            yield found.group(1), log
        finally:
            process.terminate()
            process.wait(20)


def _codes_around(secret: str, since: float) -> set[str]:
    """Every TOTP code of ``secret`` from ``since`` until now (one step of margin either side)."""
    key = decode_base32(secret)
    return {totp(key, at).code for at in range(int(since) - 30, int(time.time()) + 31, 30)}


def _find_secrets(logs: Logs) -> list[str]:
    leaks = []
    for label, text in logs.outputs.items():
        for what, value in logs.secrets.items():
            if re.search(rf"(?<![0-9A-Za-z]){re.escape(value)}(?![0-9A-Za-z])", text):
                leaks.append(f"{label} shows the {what}")
        if found := SECRET_FIELD.search(text):
            leaks.append(f"{label} shows a secret field: {found.group(0)}")
    return leaks


def test_debug_logs_no_secret_of_any_command(
    server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, server_log = server
    logs = Logs()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        for email in ("ann@example.com", "ben@example.com"):
            assert (
                admin.post("/api/admin/users", json={"email": email, "password": PASSWORD}).status_code == 201
            )
    monkeypatch.setenv("KEYCTL_VIRTUAL_KEY", run_keyctl(["virtual", "ci-key"]).stdout.strip())
    assert run_keyctl(["virtual", "create", "ci", "--pin-env", "KEY_PIN"], env=ENV).exit_code == 0

    # register: password sign-in, TOTP enrollment (saved in the vault), the recovery code, a passkey
    jar = tmp_path / "ann.jar"
    registered = logs.run(
        "register",
        ["register", "--server", url, "--user", "ann@example.com", "--password-env", "RP_PASSWORD",
         "--save-totp", "ann", "--authenticator", "virtual:ci", "--pin-env", "KEY_PIN", "--resident",
         "--cookie-jar", str(jar)],
    )  # fmt: skip
    recovery = re.search(r"recovery code \(shown once, keep it safe\): (\S+)", registered.stdout)
    assert recovery is not None, registered.stdout
    logs.secrets["recovery code"] = recovery.group(1)
    logs.secrets["server's TOTP secret"] = secrets.get_secret(vault.account("ann"))

    # a second passkey: password + a TOTP code from the vault this time
    assert run_keyctl(["virtual", "create", "second"], env=ENV).exit_code == 0
    logs.run(
        "register again",
        ["register", "--server", url, "--user", "ann@example.com", "--password-env", "RP_PASSWORD",
         "--totp", "ann", "--authenticator", "virtual:second"],
    )  # fmt: skip

    # login with the passkey; the session cookie goes to a jar
    login_jar = tmp_path / "login.jar"
    logs.run(
        "login",
        ["login", "--server", url, "--authenticator", "virtual:ci", "--pin-env", "KEY_PIN",
         "--cookie-jar", str(login_jar)],
    )  # fmt: skip
    cookies = MozillaCookieJar(login_jar)
    cookies.load(ignore_discard=True, ignore_expires=True)
    for cookie in cookies:
        assert cookie.value
        logs.secrets[f"cookie {cookie.name}"] = cookie.value

    # enroll: a key without a PIN gets one, then a passkey, through an admin enrollment session
    udp = UdpServer(VirtualAuthenticator(), "127.0.0.1", 0).start()
    try:
        host, port = udp.address
        logs.run(
            "enroll",
            ["enroll", "--server", url, "--admin-token-env", "RP_ADMIN", "--user", "ben@example.com",
             "--device", f"udp:{host}:{port}", "--pin-env", "KEY_PIN"],
        )  # fmt: skip
    finally:
        udp.stop()
    logs.secrets["admin token"] = ADMIN_TOKEN

    # totp: add from stdin, a code, the list
    logs.run("totp add", ["totp", "add", "mine", "--secret"], stdin=TOTP_SECRET + "\n")
    logs.secrets["TOTP secret"] = TOTP_SECRET
    logs.run("totp code", ["totp", "code", "mine"], quiet=True)  # the fast path: nothing to log
    logs.run("totp list", ["totp", "list"], quiet=True)

    demo = logs.run("demo", ["demo"])
    assert "demo complete" in demo.stdout

    logs.outputs["server"] = server_log.read_text()
    assert "audit signin_ok email=ann@example.com" in logs.outputs["server"]  # the server's own log was on
    for name, secret in (("ann", logs.secrets["server's TOTP secret"]), ("mine", TOTP_SECRET)):
        for n, code in enumerate(sorted(_codes_around(secret, logs.started))):
            logs.secrets[f"TOTP code {n} of {name}"] = code
    assert _find_secrets(logs) == []


def test_traffic_shows_the_frames_and_bodies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYCTL_VIRTUAL_KEY", run_keyctl(["virtual", "ci-key"]).stdout.strip())
    assert run_keyctl(["virtual", "create", "ci"]).exit_code == 0
    result = run_keyctl(["--traffic", "key", "info", "--device", "virtual:ci"])
    assert result.exit_code == 0, result.stderr
    assert "--traffic logs raw frames and may show PINs and secrets" in result.stderr
    assert re.search(r"TRAFFIC fido2\.hid: SEND: [0-9a-f]{16}", result.stderr), result.stderr[-1500:]
    assert re.search(r"TRAFFIC keyctl\.authenticator\.framing: device sends [0-9a-f]{128}", result.stderr)
    demo = run_keyctl(["--traffic", "demo"])
    assert demo.exit_code == 0, demo.stderr[-1500:]
    assert re.search(r"""request body: \{.*["']password["']""", demo.stderr)
    assert "response 200:" in demo.stderr
    assert "set-cookie" in demo.stderr  # httpcore's header trace, kept for --traffic
    debug = run_keyctl(["--debug", "key", "info", "--device", "virtual:ci"])
    assert re.search(r" DEBUG keyctl\.hid: opening VirtualSpec\(name='ci'\)", debug.stderr), debug.stderr
    assert not re.search(r"SEND:|RECV:|device (sends|receives)", debug.stderr)  # frames are for --traffic


def test_the_secret_finder_finds_secrets() -> None:
    """The check above can fail: a log line with a secret value or a secret JSON field is found."""
    logs = Logs(outputs={"a": "DEBUG x: request body: {'password': 'p'}", "b": f"token={KEY_PIN}."})
    assert _find_secrets(logs) == ["a shows a secret field: 'password': 'p", "b shows the PIN"]
