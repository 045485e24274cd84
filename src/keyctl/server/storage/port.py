"""The storage port of the reference server: what the sign-in logic needs from a database, and no more.

A ``Database`` runs a unit of work as one transaction that behaves as if no other transaction ran at the
same time (SQLite: one writer at a time; PostgreSQL: SERIALIZABLE, the work retried when PostgreSQL
reports a conflict). So the work must touch nothing but the ``Tx`` it is given: it may run more than once.

SQL is written once, in the subset both engines share: ``?`` placeholders; ``INSERT ... ON CONFLICT (...)
DO UPDATE`` with the updated columns qualified by the table name; ``RETURNING``; no ``rowid``; booleans
stored as 0/1 integers; no ``?`` or ``%`` inside string literals. Schema changes are per engine and live in
``migrations.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, TypeVar

T = TypeVar("T")
Row = dict[str, Any]
Param = str | bytes | int | float | None
Dialect = Literal["sqlite", "postgresql"]


class Tx(Protocol):
    """One open transaction."""

    def execute(self, sql: str, params: Sequence[Param] = ()) -> int:
        """Run a statement; the number of rows it changed."""
        ...

    def one(self, sql: str, params: Sequence[Param] = ()) -> Row | None:
        """The first row of a query (or of ``... RETURNING``), None when there is none."""
        ...

    def all(self, sql: str, params: Sequence[Param] = ()) -> list[Row]: ...


class Database(Protocol):
    dialect: Dialect
    description: str  # what to name in messages: a path, or a URL without its password

    def run(self, work: Callable[[Tx], T], *, exclusive: bool = False) -> T:
        """Run ``work`` in one transaction: committed when it returns, rolled back if it raises.

        ``exclusive``: no other exclusive unit of work, in any process, runs at the same time (schema
        migrations)."""
        ...

    def close(self) -> None: ...
