"""Behind a load balancer: the per-IP limits count the client named by X-Forwarded-For only when the
connection comes from a trusted proxy (--trusted-proxy), and only the entry that proxy wrote; otherwise
the header is ignored (anyone can send one)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from keyctl.errors import InvalidInput
from keyctl.server import start
from keyctl.server.web import client_ip
from tests.server.conftest import FakeClock, http_client

TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("198.51.100.7", ["203.0.113.9"], "198.51.100.7"),  # not a proxy of ours: the header is ignored
        ("10.0.0.2", [], "10.0.0.2"),  # a proxy that sent no header
        ("10.0.0.2", ["203.0.113.9"], "203.0.113.9"),
        ("10.0.0.2", ["6.6.6.6, 203.0.113.9"], "203.0.113.9"),  # the client's own entry is ignored
        ("10.0.0.2", ["203.0.113.9, 10.0.0.3"], "203.0.113.9"),  # two proxies of ours
        ("10.0.0.2", ["6.6.6.6", "203.0.113.9"], "203.0.113.9"),  # the header sent twice
        ("10.0.0.2", ["10.0.0.9, 10.0.0.3"], "10.0.0.9"),  # all ours: the first
        ("10.0.0.2", ["not-an-address"], "10.0.0.2"),
        ("10.0.0.2", [" 2001:DB8::1 "], "2001:db8::1"),
    ],
)
def test_the_client_is_the_nearest_untrusted_hop(peer: str, forwarded: list[str], expected: str) -> None:
    assert client_ip(peer, forwarded, TRUSTED) == expected


def _codes(url: str, forwarded_for: str, count: int) -> list[int]:
    with http_client(url, headers={"X-Forwarded-For": forwarded_for}) as http:
        return [http.post("/api/passkeys/login/options", json={}).status_code for _ in range(count)]


def test_behind_a_trusted_proxy_each_client_has_its_own_rate_limit(
    db_target: Path | str, clock: FakeClock
) -> None:
    with start(db_target, clock=clock, rate_limit=3, trusted_proxies=("127.0.0.1",)) as server:
        assert _codes(server.url, "203.0.113.9", 4) == [200, 200, 200, 429]
        assert _codes(server.url, "203.0.113.10", 3) == [200, 200, 200]


def test_without_trusted_proxies_the_header_cannot_dodge_the_limit(
    db_target: Path | str, clock: FakeClock
) -> None:
    with start(db_target, clock=clock, rate_limit=3) as server:
        assert _codes(server.url, "203.0.113.9", 2) == [200, 200]
        assert _codes(server.url, "203.0.113.10", 2) == [200, 429]  # all counted for 127.0.0.1


def test_a_bad_trusted_proxy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"--trusted-proxy 'ten\.0\.0\.1' is not an address or network"):
        start(tmp_path / "rp.sqlite3", trusted_proxies=("ten.0.0.1",))
