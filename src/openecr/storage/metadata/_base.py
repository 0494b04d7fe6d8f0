"""What every group of metadata queries builds on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["DuplicateKeyError", "QueryBase", "cached", "record_from_row", "select_records"]


class DuplicateKeyError(Exception):
    """An insert met an existing primary key."""


_RECORD_COLUMNS: dict[tuple[str, type[Any]], tuple[sa.Column[Any], ...]] = {}


def select_records(table: sa.Table, cls: type[Any]) -> sa.Select[Any]:
    """Selects exactly the record's fields, in field order, so rows map positionally."""
    columns = _RECORD_COLUMNS.get((table.name, cls))
    if columns is None:
        columns = _RECORD_COLUMNS[(table.name, cls)] = tuple(table.c[f.name] for f in fields(cls))
    return sa.select(*columns)


def record_from_row(cls: type[Any], row: Row[Any]) -> Any:
    return cls(*row)


_STATEMENTS: dict[str, Any] = {}

StatementT = TypeVar("StatementT", bound=sa.Executable)


def cached(key: str, build: Callable[[], StatementT]) -> StatementT:
    """The statement built once under ``key``, with ``bindparam`` placeholders for values.

    Building a SQLAlchemy statement and its cache key costs far more than running a small
    indexed query (about 250 µs against 40 µs on SQLite here), so the hot queries build
    theirs once and pass the values as parameters.
    """
    statement = _STATEMENTS.get(key)
    if statement is None:
        statement = _STATEMENTS[key] = build()
    return statement


class QueryBase:
    """Runs statements on an async (PostgreSQL) or a synchronous (SQLite) connection."""

    def __init__(self, connection: AsyncConnection | Connection) -> None:
        self._conn = connection

    async def _execute(
        self,
        statement: sa.Executable,
        parameters: dict[str, Any] | list[dict[str, Any]] | None = None,
    ) -> sa.CursorResult[Any]:
        if isinstance(self._conn, Connection):
            return self._conn.execute(statement, parameters)
        return await self._conn.execute(statement, parameters)

    async def _scalar(
        self, statement: sa.Executable, parameters: dict[str, Any] | None = None
    ) -> Any:
        return (await self._execute(statement, parameters)).scalar()

    async def _insert(self, table: sa.Table, values: dict[str, Any]) -> None:
        statement = cached(f"insert:{table.name}", table.insert)
        try:
            if isinstance(self._conn, Connection):
                # SQLite rolls back only the failed statement, so no savepoint is needed
                # (and pysqlite's savepoint support is unreliable).
                self._conn.execute(statement, values)
            else:
                # PostgreSQL aborts the whole transaction on an error, hence the savepoint.
                async with self._conn.begin_nested():
                    await self._conn.execute(statement, values)
        except IntegrityError as exc:
            raise DuplicateKeyError(str(exc.orig)) from None
