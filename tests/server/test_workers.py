"""``keyctl server --workers 2``: two processes under uvicorn's supervisor share the port and one database
(SQLite in WAL mode, or PostgreSQL). Ceremonies succeed whichever worker answers each request (their
challenges are in the database), both workers serve, a worker killed with -9 is replaced while the other
serves on, and SIGTERM stops them all (exit 0, no process left)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import running
from tests.server.conftest import EMAIL, PASSWORD, http_client, totp_code
from tests.server.softauth import SoftAuthenticator

TOKEN = "workers-admin-token"
# A worker imports keyctl and opens the database before it accepts: seconds on a busy machine, beyond
# httpx's default 5 s for the first request. The test is about outcomes, not latency.
TIMEOUT = 60


def _children(pid: int) -> list[int]:
    """The worker processes of a server: its spawned children (not multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                command = (entry / "cmdline").read_bytes()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == pid and fields[0] not in ("Z", "X") and b"spawn_main" in command:
                found.append(int(entry.name))
    return sorted(found)


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _workers(process: subprocess.Popen[str], count: int = 2, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = _children(process.pid)
        if len(children) == count:
            return children
        time.sleep(0.05)
    raise AssertionError(f"expected {count} workers, have {_children(process.pid)}")


@pytest.fixture
def served(db_target: Path | str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "keyctl", "server", "--port", "0", "--workers", "2"),
            *("--db-env", "RP_DB", "--admin-token-env", "RP_ADMIN"),
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "RP_DB": str(db_target), "RP_ADMIN": TOKEN},
        start_new_session=True,  # its own process group: the teardown stops the workers too
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        assert first.startswith("keyctl server: http://localhost:"), first
        yield process, first.split()[2]
    finally:
        # Killing the supervisor alone (a failed test) would leave its workers serving, orphaned.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


def test_two_workers_share_ceremonies_survive_a_kill_9_and_stop_on_sigterm(
    served: tuple[subprocess.Popen[str], str],
) -> None:
    process, url = served
    workers = _workers(process)
    key = SoftAuthenticator(url)
    with http_client(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=TIMEOUT) as admin:
        assert admin.post("/api/admin/users", json={"email": EMAIL, "password": PASSWORD}).status_code == 201
    with http_client(url, timeout=TIMEOUT) as http:
        http.post("/api/signin/password", json={"email": EMAIL, "password": PASSWORD})
        secret = http.post("/api/signin/totp/enroll", json={}).json()["secret"]
        code = totp_code(secret, time.time())
        recovery = http.post("/api/signin/totp/enroll/verify", json={"code": code}).json()["recovery_code"]
        assert http.post("/api/signin/recovery/confirm", json={"recovery_code": recovery}).status_code == 200
        options = http.post("/api/passkeys/register/options", json={}).json()
        assert http.post("/api/passkeys/register/verify", json=key.create(options)).status_code == 200

    def login() -> int:
        # Options and verify on two fresh connections: either worker may accept either one.
        with http_client(url, timeout=TIMEOUT) as first:
            options = first.post("/api/passkeys/login/options", json={"email": EMAIL}).json()
        with http_client(url, timeout=TIMEOUT) as second:
            return second.post("/api/passkeys/login/verify", json=key.get(options)).status_code

    before = {pid: _cpu_ticks(pid) for pid in workers}
    assert [login() for _ in range(40)] == [200] * 40
    busy = {pid for pid in workers if _cpu_ticks(pid) > before[pid]}
    assert busy == set(workers), "both workers should have answered requests"

    os.kill(workers[0], signal.SIGKILL)
    assert [login() for _ in range(5)] == [200] * 5  # the other worker serves meanwhile
    replaced = _workers(process)
    assert workers[0] not in replaced
    assert workers[1] in replaced
    assert [login() for _ in range(5)] == [200] * 5

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert not any(running(pid) for pid in replaced)
