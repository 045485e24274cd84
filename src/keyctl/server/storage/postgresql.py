"""The PostgreSQL adapter: psycopg 3 with a ``psycopg_pool`` connection pool, SERIALIZABLE transactions.

SERIALIZABLE gives every unit of work the guarantee SQLite's single writer gives: the outcome of
concurrent transactions, from any number of server processes, is that of some serial order. When
PostgreSQL cannot ensure that it aborts one transaction (serialization failure, deadlock) and the unit of
work is run again on a fresh snapshot; a challenge posted to two instances at once is therefore
accepted by one and found used by the other.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from keyctl.errors import StateError
from keyctl.server.storage.port import Dialect, Param, Row, Tx

try:
    import psycopg
    from psycopg import errors
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool
except ImportError:  # the optional extra keyctl[postgresql]
    psycopg = None  # type: ignore[assignment]

T = TypeVar("T")
logger = logging.getLogger(__name__)

POOL_SIZE = 10  # connections per server process: uvicorn's thread pool runs at most this many queries
CONNECT_TIMEOUT = 10
ATTEMPTS = 20  # a unit of work that keeps conflicting is given up after this many runs
BACKOFF, MAX_BACKOFF = 0.001, 0.2  # seconds: the wait before a rerun grows from 2 ms to at most 200 ms
MIGRATION_LOCK = 0x6B6579637472  # pg_advisory_lock key of exclusive units of work ("keyctr")


@functools.lru_cache(maxsize=512)
def _placeholders(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


def _params(params: Sequence[Param]) -> list[Any]:
    # PostgreSQL will not store a bool in an integer column; the schema keeps booleans as 0/1 everywhere.
    return [int(p) if isinstance(p, bool) else p for p in params]


def describe(url: str) -> str:
    """The URL as it may appear in a message or log: without its password."""
    if psycopg is None:
        return url.split("://", 1)[0] + "://..."
    try:
        parts = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the --db URL (malformed)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = str(parts.get("host", ""))
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname', '')}"


class PostgresTx:
    def __init__(self, cursor: psycopg.Cursor[Row]) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Param] = ()) -> int:
        self._cursor.execute(_placeholders(sql), _params(params))
        return self._cursor.rowcount

    def one(self, sql: str, params: Sequence[Param] = ()) -> Row | None:
        self._cursor.execute(_placeholders(sql), _params(params))
        return self._cursor.fetchone()

    def all(self, sql: str, params: Sequence[Param] = ()) -> list[Row]:
        self._cursor.execute(_placeholders(sql), _params(params))
        return self._cursor.fetchall()


class PostgresDatabase:
    dialect: Dialect = "postgresql"

    def __init__(self, url: str, pool_size: int = POOL_SIZE) -> None:
        self.description = describe(url)
        if psycopg is None:
            raise StateError(
                "--db postgresql://... needs the PostgreSQL driver, which is not installed",
                "pip install 'keyctl[postgresql]' (psycopg 3 and psycopg-pool)",
            )
        try:
            # One connection first, so a wrong URL, host or password fails now with PostgreSQL's reason
            # (the pool would retry in the background and time out without one).
            psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT).close()
        except psycopg.Error as error:
            reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            raise StateError(
                f"server database {self.description} cannot be reached ({reason})",
                "check the URL (host, port, user, database name) and that PostgreSQL accepts the user",
            ) from None
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": CONNECT_TIMEOUT},
            configure=self._configure,
            check=ConnectionPool.check_connection,
            name="keyctl-server",
            open=True,
        )

    @staticmethod
    def _configure(connection: psycopg.Connection[Any]) -> None:
        connection.isolation_level = psycopg.IsolationLevel.SERIALIZABLE

    def run(self, work: Callable[[Tx], T], *, exclusive: bool = False) -> T:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self._pool.connection() as connection:
                    if exclusive:
                        # A session lock taken before the transaction begins, so the transaction's
                        # snapshot is taken after the previous holder committed.
                        connection.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
                    try:
                        with connection.transaction(), connection.cursor() as cursor:
                            return work(PostgresTx(cursor))
                    finally:
                        if exclusive:
                            connection.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
            except (errors.SerializationFailure, errors.DeadlockDetected):
                if attempt == ATTEMPTS:
                    raise
                logger.debug("serialization conflict, running the transaction again (%d)", attempt)
                # Exponential, jittered: a burst of one IP's requests (each counting its rate hits) conflicts
                # pairwise under SERIALIZABLE; growing waits spread them out instead of colliding again.
                time.sleep(random.uniform(0, min(BACKOFF * 2**attempt, MAX_BACKOFF)))
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._pool.close()
