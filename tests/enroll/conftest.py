"""Real parts for the enrollment tests: the reference server on loopback (clock the test can move) and
virtual authenticators reached over CTAPHID-over-UDP, as a technician's keys would be over USB."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from keyctl.authenticator import VirtualAuthenticator
from keyctl.authenticator.device import new_state
from keyctl.hid.udp import UdpServer
from keyctl.server import ServerHandle, start

PIN = "482915"
PASSWORD = "correct horse battery staple"


@dataclass
class Clock:
    offset: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Rig:
    server: ServerHandle
    clock: Clock
    keys: dict[str, VirtualAuthenticator] = field(default_factory=dict)  # spec -> authenticator
    aaguids: dict[str, str] = field(default_factory=dict)  # spec -> AAGUID
    _udp: list[UdpServer] = field(default_factory=list)

    def key(self, min_pin_length: int | None = None) -> str:
        """A new virtual key without a PIN, as a UDP simulator; returns its --device spec."""
        state = new_state()
        if min_pin_length is not None:
            state.min_pin_length = min_pin_length
        authenticator = VirtualAuthenticator(state)
        udp = UdpServer(authenticator, "127.0.0.1", 0).start()
        self._udp.append(udp)
        host, port = udp.address
        spec = f"udp:{host}:{port}"
        self.keys[spec] = authenticator
        self.aaguids[spec] = str(uuid.UUID(bytes=state.aaguid))
        return spec

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url,
            verify=False,
            headers={"Authorization": f"Bearer {self.server.admin_token}"},
        )

    def passkeys(self) -> dict[str, list[str]]:
        """Each account's passkey ids, from the admin API."""
        with self.admin() as a:
            users = a.get("/api/admin/users", params={"limit": 200}).json()["users"]
        return {u["email"]: [p["id"] for p in u["passkeys"]] for u in users}

    def audit(self) -> list[dict[str, object]]:
        with self.admin() as a:
            events: list[dict[str, object]] = a.get("/api/admin/audit", params={"limit": 1000}).json()[
                "events"
            ]
        return events

    def stop(self) -> None:
        for udp in self._udp:
            udp.stop()


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    clock = Clock()
    with start(tmp_path / "rp.sqlite3", clock=clock, rate_limit=100_000) as server:
        monkeypatch.setenv("TEST_ADMIN_TOKEN", server.admin_token)
        monkeypatch.setenv("TEST_PIN", PIN)
        rig = Rig(server, clock)
        yield rig
        rig.stop()


@pytest.fixture
def enroll(cli: Callable[..., object], rig: Rig) -> Callable[..., object]:
    """``enroll("--user", ..., "--device", ...)``: keyctl enroll against the rig's server."""

    def run(*args: str) -> object:
        return cli("enroll", "--server", rig.server.url, "--admin-token-env", "TEST_ADMIN_TOKEN", *args)

    return run
