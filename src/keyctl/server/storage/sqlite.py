"""The SQLite adapter: one file, WAL mode, one connection per process behind a lock.

Every unit of work is a ``BEGIN IMMEDIATE`` transaction, so transactions never interleave: within the
process through the lock, across processes (``--workers``, ``keyctl server user add`` while the server
runs) through SQLite's write lock, waited for up to ``BUSY_TIMEOUT_MS``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from keyctl.errors import StateError
from keyctl.fileio import open_private
from keyctl.server.storage.port import Dialect, Param, Row, Tx

T = TypeVar("T")
BUSY_TIMEOUT_MS = 5000


def _dict_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, values, strict=True)}


class SqliteTx:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    def execute(self, sql: str, params: Sequence[Param] = ()) -> int:
        return self._db.execute(sql, params).rowcount

    def one(self, sql: str, params: Sequence[Param] = ()) -> Row | None:
        cursor = self._db.execute(sql, params)
        row: Row | None = cursor.fetchone()
        cursor.fetchall()  # a RETURNING statement completes only once all its rows are read
        return row

    def all(self, sql: str, params: Sequence[Param] = ()) -> list[Row]:
        return self._db.execute(sql, params).fetchall()


class SqliteDatabase:
    dialect: Dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = str(path)
        try:
            # A directory made here is private; SQLite gives the -wal and -shm files it creates the
            # database's mode, and reuses existing ones as they are: all three are made 0600.
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(open_private(path, os.O_RDWR))
            for sidecar in (f"{path}-wal", f"{path}-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.close(open_private(Path(sidecar), os.O_RDONLY, create=False))
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.row_factory = _dict_row
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a commit survives the process dying; only a power cut may lose the last ones.
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA foreign_keys = ON")
        except (OSError, sqlite3.Error) as error:
            raise StateError(
                f"server database {path} cannot be opened ({type(error).__name__}: {error})",
                "check the path and its permissions, or pass another --db",
            ) from None
        self._lock = threading.Lock()

    def run(self, work: Callable[[Tx], T], *, exclusive: bool = False) -> T:
        # BEGIN IMMEDIATE takes the write lock up front: every unit of work here is already exclusive.
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = work(SqliteTx(self._db))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

    def close(self) -> None:
        with self._lock:
            self._db.close()
