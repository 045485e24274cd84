"""`keyctl audit server` on a server with 10,000 users and 30,000 passkeys: wall time and peak memory.

The reference, measured in the same run, is the bare cost of paging through the same admin API with
httpx (no findings, no metadata), so the ratio shows what the audit itself adds. Goal: under 10 s and
under 300 MiB for the whole `keyctl audit server` process.

    python benchmarks/bench_audit.py [--users 10000] [--passkeys-per-user 3] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from keyctl.server import start

AAGUIDS = [
    "cb69481e-8ff7-4039-93ec-0a2729a154a8",  # YubiKey 5
    "ee882879-721c-4913-9775-3dfcce97072a",  # YubiKey 5 NFC
    "00000000-0000-0000-0000-000000000000",
    str(uuid.UUID(int=7)),
]


def populate(db_path: Path, users: int, per_user: int) -> None:
    """Rows straight into the server's tables (hashing 10,000 passwords would measure scrypt, not audit)."""
    now = time.time()
    db = sqlite3.connect(db_path)
    with db:
        db.executemany(
            "INSERT INTO users (email, password_hash, user_handle, created_at, last_sign_in_at, totp_secret)"
            " VALUES (?, 'x', ?, ?, ?, 'JBSWY3DPEHPK3PXP')",
            ((f"user{i:05d}@example.com", os.urandom(16), now - 200 * 86400, now) for i in range(users)),
        )
        ids = [row[0] for row in db.execute("SELECT id FROM users ORDER BY id")]
        db.executemany(
            "INSERT INTO passkeys (credential_id, user_id, name, credential_data, aaguid, transports,"
            " backup_eligible, backed_up, sign_count, created_at, last_used_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                (
                    os.urandom(32),
                    user_id,
                    f"Passkey {n + 1}",
                    os.urandom(77),
                    AAGUIDS[(user_id + n) % 4],
                    '["usb"]',
                    n % 2,
                    n % 2,
                    user_id % 50,
                    now - 150 * 86400,
                    None if n == 2 else now - (user_id % 120) * 86400,
                )
                for user_id in ids
                for n in range(per_user)
            ),
        )
    db.close()


def timed(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and exit code of one run of a command."""
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    return time.perf_counter() - started, proc.returncode


def page_through(url: str, token: str) -> tuple[float, int, int]:
    """Seconds to page through every user, the number of pages, and the largest page."""
    started = time.perf_counter()
    pages = largest = 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            page = http.get("/api/admin/users", params=params).json()
            pages += 1
            largest = max(largest, len(page["users"]))
            cursor = page["next_cursor"]
            if not cursor:
                break
    return time.perf_counter() - started, pages, largest


def check_pagination(url: str, token: str, users: int) -> None:
    """The admin API never answers everyone at once: a huge limit is refused or capped."""
    headers = {"Authorization": f"Bearer {token}"}
    response = httpx.get(f"{url}/api/admin/users", params={"limit": users}, headers=headers, timeout=60)
    if response.status_code == 200 and len(response.json()["users"]) >= users:
        raise SystemExit("the admin API answered every user in one page: it does not paginate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--passkeys-per-user", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "rp.sqlite3"
        token = uuid.uuid4().hex
        with start(db_path, admin_token=token, rate_limit=10**9):
            pass  # creates the schema
        populate(db_path, args.users, args.passkeys_per_user)
        env = {**os.environ, "BENCH_ADMIN_TOKEN": token, "KEYCTL_CACHE_DIR": tmp}
        with start(db_path, admin_token=token, rate_limit=10**9) as server:
            pagings = [page_through(server.url, token) for _ in range(args.runs)]
            references = [seconds for seconds, _, _ in pagings]
            _, pages, largest = pagings[0]
            check_pagination(server.url, token, args.users)
            command = [
                sys.executable,
                "-m",
                "keyctl",
                "audit",
                "server",
                "--server",
                server.url,
                "--admin-token-env",
                "BENCH_ADMIN_TOKEN",
                "--json",
                "--fail-on",
                "critical",
            ]
            runs = []
            for _ in range(args.runs):
                wall, code = timed(command, env)
                if code not in (0, 9):
                    raise SystemExit(f"keyctl audit server failed with exit code {code}")
                runs.append(wall)
            # The server runs in this process's threads, so the children are only the audit processes.
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    audit, reference = statistics.median(runs), statistics.median(references)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    total = args.users * args.passkeys_per_user
    print(f"{args.users} users, {total} passkeys, {args.runs} runs each (medians); load average {load}")
    print(
        f"  bare admin-API paging (reference): {reference:6.2f} s  ({pages} pages, at most {largest} users)"
    )
    print(f"  keyctl audit server (whole process): {audit:6.2f} s  = {audit / reference:.1f}x the reference")
    print(f"  peak RSS of keyctl audit server:     {peak:6.0f} MiB")
    print(f"  goal: < 10 s and < 300 MiB -> {'met' if audit < 10 and peak < 300 else 'NOT met'}")


if __name__ == "__main__":
    main()
