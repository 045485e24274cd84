"""The times the server tells its clients: Retry-After when rate limited, an invite's expiry."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from keyctl.server import start
from tests.server.conftest import EMAIL, PASSWORD, FakeClock, admin, client

INVITE_DAYS = 7  # README (Reference server, Links): an invite link is valid 7 days


def test_retry_after_counts_from_the_oldest_request_in_the_window(tmp_path: Path, clock: FakeClock) -> None:
    with start(tmp_path / "rp.sqlite3", clock=clock, rate_limit=3) as server:
        http = client(server)
        for _ in range(3):
            http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
            clock.advance(5)  # requests at t, t+5, t+10
        refused = http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})  # t+15
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "45"  # the request at t leaves the 60 s window at t+60
    assert "try again in 45 s" in refused.json()["message"]


def test_an_invite_tells_when_it_expires(tmp_path: Path, clock: FakeClock) -> None:
    with start(tmp_path / "rp.sqlite3", clock=clock) as server, admin(server) as a:
        answer = a.post("/api/admin/invites", json={"email": EMAIL})
    assert answer.status_code == 201, answer.text
    expires = datetime.fromisoformat(answer.json()["expires_at"].replace("Z", "+00:00"))
    assert expires.timestamp() == clock.now + INVITE_DAYS * 24 * 3600
