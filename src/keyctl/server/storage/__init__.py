"""Where the reference server keeps its state: a storage port (``port.py``), an SQLite adapter (the
embedded default) and a PostgreSQL adapter (several server processes or machines on one database), one
schema applied to both as numbered migrations, and the shared state built on the port (``state.py``)."""

from __future__ import annotations

import time
from pathlib import Path

from keyctl.server.storage.migrations import migrate
from keyctl.server.storage.port import Database, Param, Row, Tx

__all__ = ["Database", "Param", "Row", "Tx", "is_url", "open_database"]

URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(target: str) -> bool:
    return target.startswith(URL_SCHEMES)


def open_database(target: str | Path, now: float | None = None) -> Database:
    """The database at a path (SQLite) or a ``postgresql://`` URL, migrated to the latest schema."""
    database: Database
    if isinstance(target, str) and is_url(target):
        from keyctl.server.storage.postgresql import PostgresDatabase

        database = PostgresDatabase(target)
    else:
        from keyctl.server.storage.sqlite import SqliteDatabase

        database = SqliteDatabase(Path(target))
    try:
        migrate(database, time.time() if now is None else now)
    except BaseException:
        database.close()
        raise
    return database
