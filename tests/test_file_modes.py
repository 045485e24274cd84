"""Local state other users must not read: files 0600, directories 0700, created so even under umask 022,
and checked as another uid (``setpriv`` to nobody) where it matters."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from keyctl import config
from keyctl.authenticator import new_state, store
from keyctl.server import start
from tests.conftest import run_keyctl
from tests.server.conftest import PASSWORD, http_client

NOBODY = "65534"


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def as_nobody(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", "--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", *command],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every local user may enter (as /srv/keyctl or a home directory often is): only the
    files' own modes protect what is in it."""
    path = Path(tempfile.mkdtemp(prefix="keyctl-shared-"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


def _use_server(db: Path) -> Path:
    """Start a server on ``db``, write to the database, the WAL and the outbox; return the outbox."""
    with start(db) as server:
        server.create_user("alice@example.com", PASSWORD)
        with http_client(server.url, headers={"Authorization": f"Bearer {server.admin_token}"}) as a:
            assert a.post("/api/admin/invites", json={"email": "bob@example.com"}).status_code == 201
        with httpx.Client(base_url=server.url) as c:
            c.post("/api/signin/password", json={"email": "alice@example.com", "password": "wrong" * 3})
        outbox = server.outbox_path
        assert outbox.read_text().count("/invite/") == 1
        wal = db.with_name(db.name + "-wal")
        assert wal.exists()
        assert mode(wal) == 0o600
        assert mode(db.with_name(db.name + "-shm")) == 0o600
    return outbox


def test_server_database_outbox_and_data_dir_are_private(isolated_home: Path) -> None:
    data = config.data_dir()
    assert not data.exists()
    db = data / "server.sqlite3"  # the default --db
    outbox = _use_server(db)
    assert mode(data) == 0o700
    assert mode(db) == 0o600
    assert mode(outbox) == 0o600


def test_outbox_and_database_cannot_be_read_by_another_user(shared_dir: Path) -> None:
    control = shared_dir / "readable.txt"
    control.write_text("anyone may read this\n")  # 0644 under umask 022
    assert as_nobody("cat", str(control)).returncode == 0  # setpriv itself works: nobody can read 0644

    db = shared_dir / "rp.sqlite3"
    outbox = _use_server(db)
    for secret_file in (outbox, db):
        refused = as_nobody("cat", str(secret_file))
        assert refused.returncode != 0, f"another user read {secret_file.name}: {refused.stdout[:80]!r}"
        assert "Permission denied" in refused.stderr


def test_virtual_authenticator_files_are_private(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(store.ENV_VIRTUAL_KEY, store.new_ci_key())
    store.create("ci", new_state())
    store.FileStore("ci").load()
    virtual = store.virtual_dir()
    assert mode(config.data_dir()) == 0o700
    assert mode(virtual) == 0o700
    assert mode(virtual / "ci.state") == 0o600
    assert mode(virtual / ".ci.lock") == 0o600


def test_totp_index_is_private(isolated_home: Path) -> None:
    added = run_keyctl(["totp", "add", "gh", "--secret"], stdin="JBSWY3DPEHPK3PXP\n")
    assert added.exit_code == 0, added.stderr
    index = config.data_dir() / "totp.json"
    assert "gh" in index.read_text()
    assert mode(index) == 0o600
    assert mode(config.data_dir() / "totp.lock") == 0o600
    assert mode(config.data_dir()) == 0o700


def test_an_outbox_and_database_left_0644_by_an_older_release_are_made_0600(shared_dir: Path) -> None:
    """Files an older release left readable (or someone chmod-ed): the server makes them private when it
    opens them, the -wal and -shm SQLite reuses included, and keeps their content."""
    db = shared_dir / "rp.sqlite3"
    with start(db) as server:
        server.create_user("alice@example.com", PASSWORD)
        outbox = server.outbox_path
    outbox.write_text('{"time": "2026-01-01T00:00:00Z", "to": "x", "subject": "old", "link": "l"}\n')
    wal, shm = db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")
    with closing(sqlite3.connect(db)) as older:  # an older release still holding it open: -wal and -shm
        older.execute("PRAGMA journal_mode = WAL")
        older.execute("INSERT INTO audit (time, event, detail) VALUES (0, 'older', '{}')")
        older.commit()
        for path in (db, wal, shm, outbox):
            path.chmod(0o644)
            assert as_nobody("test", "-r", str(path)).returncode == 0  # another user can read it
        with start(db) as server, httpx.Client(base_url=server.url) as c:
            assert [mode(p) for p in (db, wal, shm)] == [0o600] * 3
            for _ in range(5):  # the fifth failure writes an unblock link to the outbox
                c.post("/api/signin/password", json={"email": "alice@example.com", "password": "wrong" * 3})
    assert mode(outbox) == 0o600
    assert [line.split('"subject": ')[1][:8] for line in outbox.read_text().splitlines()] == [
        '"old", "',
        '"Sign-in',
    ]
    for path in (db, outbox):
        assert as_nobody("test", "-r", str(path)).returncode != 0
