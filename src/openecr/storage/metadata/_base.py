"""What every group of metadata queries builds on.

Queries are written once, as SQLAlchemy Core statements, and compiled once per database
dialect into plain SQL. They run straight on the driver (sqlite3 or asyncpg) rather than
through SQLAlchemy's execution layer: for the small indexed queries of the API, that layer
cost several times the query itself (on PostgreSQL about 250 µs of Python per statement
against 40 µs for asyncpg alone), and a push runs a dozen of them.
"""

from __future__ import annotations

import collections
import hashlib
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol, TypeVar

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

__all__ = [
    "DatabaseConnection",
    "DuplicateKeyError",
    "PostgresConnection",
    "QueryBase",
    "Rows",
    "SqliteConnection",
    "cached",
    "lock_key",
    "lock_statements",
    "record_from_row",
    "select_records",
]


class DuplicateKeyError(Exception):
    """An insert met an existing primary key."""


_RECORD_COLUMNS: dict[tuple[str, type[Any]], tuple[sa.Column[Any], ...]] = {}


def select_records(table: sa.Table, cls: type[Any]) -> sa.Select[Any]:
    """Selects exactly the record's fields, in field order, so rows map positionally."""
    columns = _RECORD_COLUMNS.get((table.name, cls))
    if columns is None:
        columns = _RECORD_COLUMNS[(table.name, cls)] = tuple(table.c[f.name] for f in fields(cls))
    return sa.select(*columns)


def record_from_row(cls: type[Any], row: Sequence[Any]) -> Any:
    return cls(*row)


_STATEMENTS: dict[str, Any] = {}
# ids of the statements above: they live as long as the process, so an id is never reused
# and can key their compiled forms.
_LONG_LIVED: set[int] = set()

StatementT = TypeVar("StatementT", bound=sa.Executable)


def cached(key: str, build: Callable[[], StatementT]) -> StatementT:
    """The statement built once under ``key``, with ``bindparam`` placeholders for values.

    Building a SQLAlchemy statement and compiling it costs far more than running a small
    indexed query (about 250 µs against 40 µs on SQLite here), so the hot queries build
    theirs once, are compiled once per dialect, and pass the values as parameters.
    """
    statement = _STATEMENTS.get(key)
    if statement is None:
        statement = _STATEMENTS[key] = build()
        _LONG_LIVED.add(id(statement))
    return statement


class Rows:
    """The outcome of one statement: its rows (tuples that also name their columns) and,
    for INSERT/UPDATE/DELETE, how many rows it changed."""

    __slots__ = ("has_columns", "rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int, *, has_columns: bool = False) -> None:
        self.rows = rows
        self.rowcount = rowcount
        self.has_columns = has_columns  # the statement declares result columns

    def __iter__(self) -> Any:
        return iter(self.rows)

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        # A statement without declared columns (a bare ``sa.text``) is run for its row
        # count and never returns rows: reading a value from it is a bug, not a None.
        assert self.has_columns, "the statement declares no result columns"
        return self.rows[0][0] if self.rows else None


@dataclass(frozen=True, slots=True)
class _Plan:
    """A statement compiled for one dialect, with what it takes to run it and read rows."""

    compiled: sa.Compiled
    sql: str
    expanding: bool  # has IN lists whose length is only known per call
    bind_processors: dict[str, Callable[[Any], Any]]
    row_class: Any  # a namedtuple class, or None when the statement returns no rows
    result_processors: tuple[Callable[[Any], Any] | None, ...] | None

    def positional(self, parameters: dict[str, Any] | None) -> tuple[str, list[Any]]:
        """The SQL to send (IN lists expanded) and its parameter values in order."""
        compiled: Any = self.compiled
        values = compiled.construct_params(parameters)
        sql, names, processors = self.sql, compiled.positiontup or (), self.bind_processors
        if self.expanding:
            expanded = compiled._process_parameters_for_postcompile(values)
            sql, names, values = expanded.statement, expanded.positiontup, expanded.parameters
            processors = expanded.processors
        if not processors:
            return sql, [values[name] for name in names]
        return sql, [
            processors[name](values[name]) if name in processors else values[name] for name in names
        ]

    def rows(self, raw_rows: Sequence[Any]) -> list[Any]:
        if self.row_class is None:
            return []
        make = self.row_class._make
        processors = self.result_processors
        if processors is None:
            return [make(row) for row in raw_rows]
        return [
            make(
                value if process is None else process(value)
                for process, value in zip(processors, row, strict=True)
            )
            for row in raw_rows
        ]


_PLANS: dict[tuple[int, str, tuple[str, ...] | None], _Plan] = {}


# namedtuple's field names are only known at run time here.
_row_class_factory: Any = collections.namedtuple


def _plan(statement: sa.Executable, dialect: Dialect, column_keys: tuple[str, ...] | None) -> _Plan:
    key = (id(statement), dialect.name, column_keys)
    long_lived = id(statement) in _LONG_LIVED
    if long_lived:
        plan = _PLANS.get(key)
        if plan is not None:
            return plan
    # As SQLAlchemy itself does, the parameter names decide an INSERT's or UPDATE's columns.
    compiled: Any = statement.compile(  # type: ignore[attr-defined]
        dialect=dialect, column_keys=list(column_keys) if column_keys is not None else None
    )
    result_columns = getattr(compiled, "_result_columns", None) or []
    row_class = None
    processors = None
    if result_columns:
        row_class = _row_class_factory(
            "Row", [entry.keyname for entry in result_columns], rename=True
        )
        # asyncpg decodes every column type used here to its Python type; sqlite3 leaves
        # some to SQLAlchemy (booleans arrive as 0 and 1).
        if dialect.name == "sqlite":
            found = tuple(
                entry.type._cached_result_processor(dialect, None) for entry in result_columns
            )
            processors = found if any(p is not None for p in found) else None
    plan = _Plan(
        compiled=compiled,
        sql=compiled.string,
        expanding=bool(getattr(compiled, "post_compile_params", None)),
        bind_processors=dict(getattr(compiled, "_bind_processors", None) or {}),
        row_class=row_class,
        result_processors=processors,
    )
    if long_lived:
        _PLANS[key] = plan
    return plan


def lock_key(name: str) -> int:
    """The PostgreSQL advisory lock key of ``name``: 64 bits of its hash, as a signed bigint.

    Keys of one bigint are a key space of their own, apart from the (namespace, hashtext)
    pairs of ``MetadataStore.named_lock``.
    """
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), signed=True)


def lock_statements(shared: Sequence[str], exclusive: Sequence[str]) -> str:
    """SQL taking transaction-scoped advisory locks on the named keys, shared ones first.

    The keys are integers computed here, so they are written into the SQL: statements
    without parameters can ride in one message with others (see ``PostgresConnection``).
    """
    return "".join(
        [f"SELECT pg_advisory_xact_lock_shared({lock_key(name)});" for name in shared]
        + [f"SELECT pg_advisory_xact_lock({lock_key(name)});" for name in exclusive]
    )


class DatabaseConnection(Protocol):
    """One driver connection, inside the transaction ``MetadataStore`` opened on it."""

    dialect: Dialect

    async def run(
        self, sql: str, parameters: list[Any], returns_rows: bool
    ) -> tuple[Sequence[Any], int]: ...

    async def run_many(self, sql: str, parameters: list[list[Any]]) -> None: ...

    async def lock(self, shared: Sequence[str], exclusive: Sequence[str]) -> None:
        """Holds the named locks until the transaction ends; see ``lock_statements``."""
        ...


class SqliteConnection:
    """A sqlite3 connection. Its statements run inline on the event loop: SQLite answers
    the small indexed queries of the API in microseconds, far less than handing each one
    to a worker thread would cost."""

    dialect: Dialect

    def __init__(self, connection: sqlite3.Connection, dialect: Dialect) -> None:
        self._connection = connection
        self.dialect = dialect

    async def run(
        self, sql: str, parameters: list[Any], returns_rows: bool
    ) -> tuple[Sequence[Any], int]:
        cursor = self._connection.execute(sql, parameters)
        try:
            return (cursor.fetchall() if returns_rows else ()), cursor.rowcount
        finally:
            cursor.close()

    async def run_many(self, sql: str, parameters: list[list[Any]]) -> None:
        self._connection.executemany(sql, parameters).close()

    async def lock(self, shared: Sequence[str], exclusive: Sequence[str]) -> None:
        """Nothing to do: the store lets one SQLite writer in at a time."""


class PostgresConnection:
    """An asyncpg connection."""

    dialect: Dialect

    def __init__(self, connection: asyncpg.Connection, dialect: Dialect) -> None:
        self._connection = connection
        self.dialect = dialect

    async def run(
        self, sql: str, parameters: list[Any], returns_rows: bool
    ) -> tuple[Sequence[Any], int]:
        if returns_rows:
            return await self._connection.fetch(sql, *parameters), 0
        status = await self._connection.execute(sql, *parameters)
        # The command tag ends with the row count: "UPDATE 3", "DELETE 0", "INSERT 0 1".
        count = status.rpartition(" ")[2]
        return (), int(count) if count.isdigit() else 0

    async def run_many(self, sql: str, parameters: list[list[Any]]) -> None:
        await self._connection.executemany(sql, parameters)

    async def lock(self, shared: Sequence[str], exclusive: Sequence[str]) -> None:
        if shared or exclusive:
            await self._connection.execute(lock_statements(shared, exclusive))


_INTEGRITY_ERRORS = (sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError)


class QueryBase:
    """Runs compiled statements on one connection of either backend."""

    def __init__(self, connection: DatabaseConnection) -> None:
        self._conn = connection

    async def _execute(
        self,
        statement: sa.Executable,
        parameters: dict[str, Any] | list[dict[str, Any]] | None = None,
    ) -> Rows:
        dialect = self._conn.dialect
        if isinstance(parameters, list):
            if not parameters:
                return Rows([], 0)
            plan = _plan(statement, dialect, tuple(sorted(parameters[0])))
            await self._conn.run_many(plan.sql, [plan.positional(each)[1] for each in parameters])
            return Rows([], len(parameters))
        plan = _plan(statement, dialect, tuple(sorted(parameters or ())) or None)
        sql, values = plan.positional(parameters)
        raw_rows, rowcount = await self._conn.run(sql, values, plan.row_class is not None)
        return Rows(plan.rows(raw_rows), rowcount, has_columns=plan.row_class is not None)

    async def _scalar(
        self, statement: sa.Executable, parameters: dict[str, Any] | None = None
    ) -> Any:
        return (await self._execute(statement, parameters)).scalar()

    async def _scalars(
        self, statement: sa.Executable, parameters: dict[str, Any] | None = None
    ) -> list[Any]:
        """The first column of every row, without building row objects (long listings)."""
        return [row[0] for row in await self._plain_rows(statement, parameters)]

    async def _plain_rows(
        self, statement: sa.Executable, parameters: dict[str, Any] | None = None
    ) -> Sequence[Sequence[Any]]:
        """The rows as the driver returns them, indexable by position only: for long
        listings of columns that need no conversion (text and numbers)."""
        plan = _plan(statement, self._conn.dialect, tuple(sorted(parameters or ())) or None)
        assert plan.result_processors is None, "these columns need converting: use _execute"
        sql, values = plan.positional(parameters)
        raw_rows, _ = await self._conn.run(sql, values, True)
        return raw_rows

    def _dialect_insert(self, table: sa.Table) -> Any:
        """An INSERT with the dialect's ON CONFLICT clauses (both dialects have them)."""
        module = postgresql if self._conn.dialect.name == "postgresql" else sqlite
        return module.insert(table)

    async def _insert(self, table: sa.Table, values: dict[str, Any]) -> None:
        """Inserts one row; ``DuplicateKeyError`` if its key exists. The conflict is
        skipped by the statement itself, so the transaction stays usable (PostgreSQL would
        otherwise abort it) without the two round trips of a savepoint."""
        statement = cached(
            f"insert:{table.name}:{self._conn.dialect.name}",
            lambda: self._dialect_insert(table).on_conflict_do_nothing(),
        )
        try:
            inserted = await self._execute(statement, values)
        except _INTEGRITY_ERRORS as exc:
            raise DuplicateKeyError(str(exc)) from None
        if inserted.rowcount == 0:
            raise DuplicateKeyError(f"duplicate key in {table.name}")
