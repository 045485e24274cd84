"""SQLite storage of the reference server: one file, WAL mode, every change one transaction.

The connection is shared by the server's worker threads behind one lock, so each transaction sees and
leaves a consistent state; other processes (``keyctl server user add`` while the server runs) wait on
SQLite's own lock.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from keyctl.errors import StateError

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    user_handle BLOB NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    last_sign_in_at REAL,
    totp_secret TEXT,
    totp_last_step INTEGER NOT NULL DEFAULT 0,
    recovery_hash TEXT,
    prompt_skipped_at REAL,
    signins_since_skip INTEGER NOT NULL DEFAULT 0,
    prompt_snoozed_until REAL
);
CREATE TABLE IF NOT EXISTS passkeys (
    credential_id BLOB PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    credential_data BLOB NOT NULL,
    aaguid TEXT NOT NULL,
    transports TEXT NOT NULL,
    backup_eligible INTEGER NOT NULL,
    backed_up INTEGER NOT NULL,
    sign_count INTEGER NOT NULL,
    created_at REAL NOT NULL,
    last_used_at REAL,
    attestation_format TEXT
);
CREATE INDEX IF NOT EXISTS passkeys_user ON passkeys(user_id);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    stage TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    pending_secret TEXT,
    pending_recovery_hash TEXT,
    pending_step INTEGER
);
-- Ceremony challenges moved to memory (server/challenges.py); databases from before keep no copy.
DROP TABLE IF EXISTS challenges;
CREATE TABLE IF NOT EXISTS invites (
    token_hash TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    ip TEXT NOT NULL,
    email TEXT NOT NULL,
    count INTEGER NOT NULL,
    blocked_since REAL,
    unblock_hash TEXT,
    PRIMARY KEY (ip, email)
);
CREATE TABLE IF NOT EXISTS ip_failures (
    ip TEXT PRIMARY KEY,
    allowance REAL NOT NULL,
    updated_at REAL NOT NULL,
    blocked_since REAL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    event TEXT NOT NULL,
    email TEXT,
    ip TEXT,
    detail TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            # A directory made here is private; SQLite gives the -wal and -shm files the database's mode.
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a commit survives the process dying; only a power cut may lose the last ones.
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.executescript(SCHEMA)
            self._add_missing_columns()
        except (OSError, sqlite3.Error) as error:
            raise StateError(
                f"server database {path} cannot be opened ({type(error).__name__}: {error})",
                "check the path and its permissions, or pass another --db",
            ) from None
        self._lock = threading.RLock()

    def _add_missing_columns(self) -> None:
        """Databases created before a column existed get it, empty (NULL: not known)."""
        have = {row["name"] for row in self._db.execute("PRAGMA table_info(passkeys)")}
        if "attestation_format" not in have:
            self._db.execute("ALTER TABLE passkeys ADD COLUMN attestation_format TEXT")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()
