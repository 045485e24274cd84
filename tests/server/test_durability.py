"""The server database's durability promises (README, Reference server): WAL with synchronous=NORMAL, and
every acknowledged write survives a kill -9 of the server process."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from keyctl.server import start
from keyctl.server.storage.sqlite import SqliteDatabase
from tests.server.conftest import PASSWORD, client, http_client

NORMAL = 1  # PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA


def test_the_database_is_in_wal_mode_with_synchronous_normal(tmp_path: Path) -> None:
    path = tmp_path / "rp.sqlite3"
    store = SqliteDatabase(path)
    try:
        # the server's own connection
        assert store.run(lambda db: db.one("PRAGMA synchronous")) == {"synchronous": NORMAL}
        store.run(lambda db: db.execute("CREATE TABLE probe (x INTEGER)"))
        assert Path(f"{path}-wal").exists()  # the commit went to the write-ahead log
    finally:
        store.close()
    with closing(sqlite3.connect(path)) as other:  # the journal mode is stored in the file itself
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_every_acknowledged_write_survives_kill_9_of_the_server(tmp_path: Path) -> None:
    db = tmp_path / "rp.sqlite3"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keyctl",
            "server",
            "--port",
            "0",
            "--db",
            str(db),
            "--admin-token-env",
            "RP_ADMIN",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "RP_ADMIN": "s3cret-token"},
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        assert first.startswith("keyctl server: http://localhost:"), first
        url = first.split()[2]
        created = []
        with http_client(url, headers={"Authorization": "Bearer s3cret-token"}) as admin:
            for n in range(5):
                email = f"user{n}@example.com"
                assert (
                    admin.post("/api/admin/users", json={"email": email, "password": PASSWORD}).status_code
                    == 201
                )
                created.append(email)
        process.send_signal(signal.SIGKILL)  # right after the last acknowledgement: no shutdown code runs
        process.wait(timeout=20)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    with closing(sqlite3.connect(db)) as after:
        assert after.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert sorted(row[0] for row in after.execute("SELECT email FROM users")) == sorted(created)
    with start(db) as again:  # and a restarted server signs the last of them in
        answer = client(again).post("/api/signin/password", json={"email": created[-1], "password": PASSWORD})
        assert answer.json() == {"status": "totp_enrollment_required"}
