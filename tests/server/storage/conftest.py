"""Each storage test runs against both adapters: SQLite in a temporary file, and PostgreSQL in a fresh
database of a throwaway cluster (tests/postgres.py) started once per test session (``pg_cluster`` in
tests/server/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keyctl.server.storage import Database, open_database
from tests.postgres import Cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a database goes: an SQLite path, or the URL of a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "rp.sqlite3")
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return cluster.database()


@pytest.fixture
def db(target: str) -> Iterator[Database]:
    database = open_database(target, now=1_800_000_000.0)
    try:
        yield database
    finally:
        database.close()
