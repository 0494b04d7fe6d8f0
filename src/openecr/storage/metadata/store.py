"""The metadata store: one interface over SQLite (embedded default) and PostgreSQL.

Both backends run the same SQLAlchemy Core queries, compiled once per dialect and sent
straight to the driver (see ``_base``); they differ in how connections are pooled and how
write transactions are serialised:

* SQLite allows one writer at a time. Instead of letting concurrent writers collide and
  retry on ``SQLITE_BUSY``, one process serialises its write transactions with an asyncio
  lock (a data directory belongs to one server process); readers run concurrently (WAL).
  Its queries run inline on the event loop (see ``MetadataSession``).
* PostgreSQL runs write transactions concurrently; conflicting inserts surface as
  ``DuplicateKeyError`` from the primary keys, which services turn into ECR errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from openecr.storage.metadata import _schema as t
from openecr.storage.metadata._base import (
    DuplicateKeyError,
    PostgresConnection,
    SqliteConnection,
    cached,
    lock_statements,
    record_from_row,
    select_records,
)
from openecr.storage.metadata._images import ImageQueries
from openecr.storage.metadata.records import (
    AccessKeyRecord,
    LifecyclePreviewRecord,
    PullThroughCacheRuleRecord,
    RegistryRecord,
    RepositoryRecord,
)

__all__ = [
    "DuplicateKeyError",
    "MetadataSession",
    "MetadataStore",
    "repository_lock",
    "tag_lock",
    "to_async_url",
]

log = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).parent / "migrations"

# Connections that hold advisory locks: the scheduled jobs' and blobs' (``named_lock``).
_LOCK_POOL_SIZE = 10


def to_async_url(url: str) -> str:
    """Maps the user-facing database URL to the async driver SQLAlchemy should use."""
    for prefix, driver in (
        ("sqlite:///", "sqlite+aiosqlite:///"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
    ):
        if url.startswith(prefix):
            return driver + url[len(prefix) :]
    return url


def repository_lock(registry_id: str, repository: str) -> str:
    """The lock name a push holds shared, and deletions and settings changes exclusively."""
    return f"repository:{registry_id}/{repository}"


def tag_lock(registry_id: str, repository: str, tag: str) -> str:
    """The lock name that serialises the pushes of one tag."""
    return f"tag:{registry_id}/{repository}:{tag}"


def _apply_migrations(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class MetadataSession(ImageQueries):
    """One transaction's view of the metadata. Obtained from ``MetadataStore.read/write``.

    It runs on an asyncpg connection (PostgreSQL) or on a sqlite3 one, whose statements
    run inline on the event loop (see ``SqliteConnection``).
    """

    async def ping(self) -> None:
        await self._execute(sa.text("SELECT 1"))

    # -- access keys and server secrets ---------------------------------------------------

    async def get_access_key(self, access_key_id: str) -> AccessKeyRecord | None:
        statement = cached(
            "get_access_key",
            lambda: select_records(t.access_keys, AccessKeyRecord).where(
                t.access_keys.c.access_key_id == sa.bindparam("key")
            ),
        )
        row = (await self._execute(statement, {"key": access_key_id})).first()
        return None if row is None else record_from_row(AccessKeyRecord, row)

    async def list_access_keys(self) -> list[AccessKeyRecord]:
        rows = await self._execute(select_records(t.access_keys, AccessKeyRecord))
        return [record_from_row(AccessKeyRecord, row) for row in rows]

    async def add_access_key(self, key: AccessKeyRecord, created_at: float) -> None:
        await self._insert(t.access_keys, {**asdict(key), "created_at": created_at})

    async def get_server_secret(self, name: str) -> str | None:
        value = await self._scalar(
            sa.select(t.server_secrets.c.value).where(t.server_secrets.c.name == name)
        )
        return None if value is None else str(value)

    async def add_server_secret(self, name: str, value: str) -> None:
        await self._insert(t.server_secrets, {"name": name, "value": value})

    async def put_server_value(self, name: str, value: str) -> None:
        """Sets a small server-wide value (kept beside the secrets), creating it if new."""
        updated = await self._execute(
            t.server_secrets.update().where(t.server_secrets.c.name == name).values(value=value)
        )
        if updated.rowcount == 0:
            await self._insert(t.server_secrets, {"name": name, "value": value})

    # -- registries -----------------------------------------------------------------------

    async def get_registry(self, registry_id: str) -> RegistryRecord:
        statement = cached(
            "get_registry",
            lambda: select_records(t.registries, RegistryRecord).where(
                t.registries.c.registry_id == sa.bindparam("registry_id")
            ),
        )
        row = (await self._execute(statement, {"registry_id": registry_id})).first()
        return RegistryRecord(registry_id) if row is None else record_from_row(RegistryRecord, row)

    async def update_registry(self, registry_id: str, **values: str | None) -> None:
        """Sets registry-level documents, creating the registry row on first use."""
        result = await self._execute(
            t.registries.update().where(t.registries.c.registry_id == registry_id).values(**values)
        )
        if result.rowcount == 0:
            try:
                await self._insert(t.registries, {"registry_id": registry_id, **values})
            except DuplicateKeyError:
                # A concurrent writer created the row first; apply our values over it.
                await self._execute(
                    t.registries.update()
                    .where(t.registries.c.registry_id == registry_id)
                    .values(**values)
                )

    # -- repositories ---------------------------------------------------------------------

    @staticmethod
    def _repository_key(registry_id: str, name: str) -> sa.ColumnElement[bool]:
        return sa.and_(t.repositories.c.registry_id == registry_id, t.repositories.c.name == name)

    async def insert_repository(self, repository: RepositoryRecord) -> None:
        await self._insert(t.repositories, asdict(repository))

    async def get_repository(
        self, registry_id: str, name: str, *, for_update: bool = False
    ) -> RepositoryRecord | None:
        """The repository; ``for_update`` locks it until the transaction ends against every
        other writer of it, pushes included (they hold its ``repository_lock`` shared)."""
        if for_update:
            await self._conn.lock((), (repository_lock(registry_id, name),))

        def build() -> sa.Select[Any]:
            query = select_records(t.repositories, RepositoryRecord).where(
                t.repositories.c.registry_id == sa.bindparam("registry_id"),
                t.repositories.c.name == sa.bindparam("name"),
            )
            return query.with_for_update() if for_update else query

        statement = cached(f"get_repository:{for_update}", build)
        row = (await self._execute(statement, {"registry_id": registry_id, "name": name})).first()
        return None if row is None else record_from_row(RepositoryRecord, row)

    async def get_repositories(
        self, registry_id: str, names: Sequence[str]
    ) -> dict[str, RepositoryRecord]:
        statement = cached(
            "get_repositories",
            lambda: select_records(t.repositories, RepositoryRecord).where(
                t.repositories.c.registry_id == sa.bindparam("registry_id"),
                t.repositories.c.name.in_(sa.bindparam("names", expanding=True)),
            ),
        )
        rows = await self._execute(statement, {"registry_id": registry_id, "names": list(names)})
        return {row.name: record_from_row(RepositoryRecord, row) for row in rows}

    async def list_repositories(
        self, registry_id: str, *, after: str | None, limit: int
    ) -> list[RepositoryRecord]:
        """Repositories ordered by name, strictly after ``after``: keyset pagination."""

        def build() -> sa.Select[Any]:
            query = select_records(t.repositories, RepositoryRecord).where(
                t.repositories.c.registry_id == sa.bindparam("registry_id")
            )
            if after is not None:
                query = query.where(t.repositories.c.name > sa.bindparam("after"))
            return query.order_by(t.repositories.c.name).limit(sa.bindparam("limit"))

        statement = cached(f"list_repositories:{after is None}", build)
        parameters = {"registry_id": registry_id, "after": after, "limit": limit}
        rows = await self._execute(statement, parameters)
        return [record_from_row(RepositoryRecord, row) for row in rows]

    async def count_repositories(self, registry_id: str) -> int:
        count = await self._scalar(
            sa.select(sa.func.count())
            .select_from(t.repositories)
            .where(t.repositories.c.registry_id == registry_id)
        )
        return int(count or 0)

    async def update_repository(self, registry_id: str, name: str, **values: Any) -> None:
        await self._execute(
            t.repositories.update().where(self._repository_key(registry_id, name)).values(**values)
        )

    async def delete_repository(self, registry_id: str, name: str) -> None:
        """Deletes the repository with everything it owns (tags, images, image tags)."""
        for table in (
            t.image_tags,
            t.image_references,
            t.images,
            t.repository_tags,
            t.repository_layers,
            t.lifecycle_previews,
            t.repository_image_counts,
        ):
            await self._execute(
                table.delete().where(
                    table.c.registry_id == registry_id, table.c.repository_name == name
                )
            )
        await self._execute(t.repositories.delete().where(self._repository_key(registry_id, name)))

    async def repositories_with_lifecycle_policies(self) -> list[tuple[str, str, str]]:
        """(registry, name, policy text) of every repository that has a lifecycle policy."""
        rows = await self._execute(
            sa.select(
                t.repositories.c.registry_id,
                t.repositories.c.name,
                t.repositories.c.lifecycle_policy_text,
            )
            .where(t.repositories.c.lifecycle_policy_text.is_not(None))
            .order_by(t.repositories.c.registry_id, t.repositories.c.name)
        )
        return [(row.registry_id, row.name, row.lifecycle_policy_text) for row in rows]

    # -- repository resource tags ---------------------------------------------------------

    async def list_repository_tags(self, registry_id: str, name: str) -> list[tuple[str, str]]:
        rows = await self._execute(
            sa.select(t.repository_tags.c.key, t.repository_tags.c.value)
            .where(
                t.repository_tags.c.registry_id == registry_id,
                t.repository_tags.c.repository_name == name,
            )
            .order_by(t.repository_tags.c.key)
        )
        return [(row.key, row.value) for row in rows]

    async def put_repository_tags(
        self, registry_id: str, name: str, tags: Iterable[tuple[str, str]]
    ) -> None:
        """Adds tags, overwriting the values of keys that exist."""
        for key, value in tags:
            updated = await self._execute(
                t.repository_tags.update()
                .where(
                    t.repository_tags.c.registry_id == registry_id,
                    t.repository_tags.c.repository_name == name,
                    t.repository_tags.c.key == key,
                )
                .values(value=value)
            )
            if updated.rowcount == 0:
                await self._execute(
                    t.repository_tags.insert().values(
                        registry_id=registry_id, repository_name=name, key=key, value=value
                    )
                )

    async def delete_repository_tags(
        self, registry_id: str, name: str, keys: Sequence[str]
    ) -> None:
        await self._execute(
            t.repository_tags.delete().where(
                t.repository_tags.c.registry_id == registry_id,
                t.repository_tags.c.repository_name == name,
                t.repository_tags.c.key.in_(keys),
            )
        )

    # -- lifecycle policy previews --------------------------------------------------------

    async def get_lifecycle_preview(
        self, registry_id: str, repository: str, *, with_results: bool = True
    ) -> LifecyclePreviewRecord | None:
        """The repository's preview; without its results (megabytes for a large
        repository) unless ``with_results``."""

        def build() -> sa.Select[Any]:
            table = t.lifecycle_previews
            query = select_records(table, LifecyclePreviewRecord)
            if not with_results:
                query = query.with_only_columns(
                    *(column for column in query.selected_columns if column.name != "results")
                )
            return query.where(
                table.c.registry_id == sa.bindparam("registry_id"),
                table.c.repository_name == sa.bindparam("repository"),
            )

        statement = cached(f"get_lifecycle_preview:{with_results}", build)
        parameters = {"registry_id": registry_id, "repository": repository}
        row = (await self._execute(statement, parameters)).first()
        return None if row is None else record_from_row(LifecyclePreviewRecord, row)

    async def save_lifecycle_preview(self, preview: LifecyclePreviewRecord) -> None:
        """Replaces the repository's preview (there is one per repository)."""
        table = t.lifecycle_previews
        await self._execute(
            table.delete().where(
                table.c.registry_id == preview.registry_id,
                table.c.repository_name == preview.repository_name,
            )
        )
        await self._insert(table, asdict(preview))

    # -- pull-through cache rules ---------------------------------------------------------

    async def insert_pull_through_cache_rule(self, rule: PullThroughCacheRuleRecord) -> None:
        await self._insert(t.pull_through_cache_rules, asdict(rule))

    async def count_pull_through_cache_rules(self, registry_id: str) -> int:
        table = t.pull_through_cache_rules
        count = await self._scalar(
            sa.select(sa.func.count()).select_from(table).where(table.c.registry_id == registry_id)
        )
        return int(count or 0)

    async def get_pull_through_cache_rules(
        self, registry_id: str, prefixes: Sequence[str]
    ) -> dict[str, PullThroughCacheRuleRecord]:
        table = t.pull_through_cache_rules
        rows = await self._execute(
            select_records(table, PullThroughCacheRuleRecord).where(
                table.c.registry_id == registry_id, table.c.ecr_repository_prefix.in_(prefixes)
            )
        )
        return {
            row.ecr_repository_prefix: record_from_row(PullThroughCacheRuleRecord, row)
            for row in rows
        }

    async def list_pull_through_cache_rules(
        self, registry_id: str, *, after: str | None, limit: int
    ) -> list[PullThroughCacheRuleRecord]:
        table = t.pull_through_cache_rules
        query = select_records(table, PullThroughCacheRuleRecord).where(
            table.c.registry_id == registry_id
        )
        if after is not None:
            query = query.where(table.c.ecr_repository_prefix > after)
        query = query.order_by(table.c.ecr_repository_prefix).limit(limit)
        return [
            record_from_row(PullThroughCacheRuleRecord, row) for row in await self._execute(query)
        ]

    async def delete_pull_through_cache_rule(self, registry_id: str, prefix: str) -> None:
        table = t.pull_through_cache_rules
        await self._execute(
            table.delete().where(
                table.c.registry_id == registry_id, table.c.ecr_repository_prefix == prefix
            )
        )


class MetadataStore:
    """Opens the database, applies migrations, and hands out transactions."""

    def __init__(
        self,
        *,
        sqlite_engine: Engine | None = None,
        postgres_pool: asyncpg.Pool | None = None,
        postgres_lock_pool: asyncpg.Pool | None = None,
        dialect: Dialect,
        wal_path: Path | None = None,
    ) -> None:
        self._sqlite = sqlite_engine
        self._postgres = postgres_pool
        self._postgres_locks = postgres_lock_pool
        self._dialect = dialect
        # SQLite: other processes on the same file (an `openecr gc` beside the server) are
        # excluded by file locks in this directory.
        self._lock_dir = wal_path.parent / "locks" if wal_path is not None else None
        self._wal_sync = _GroupFsync(wal_path) if wal_path is not None else None
        self._changed_rows = 0
        self._analyze_task: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self._local_locks: dict[str, asyncio.Lock] = {}
        self._local_lock_users: dict[str, int] = {}

    @property
    def backend(self) -> str:
        return self._dialect.name

    @classmethod
    async def open(cls, url: str, *, pool_size: int) -> MetadataStore:
        """Connects to ``url`` (sqlite:///PATH or postgresql://...) and migrates the schema.

        PostgreSQL: ``pool_size`` connections at most run the queries; the locks of
        ``named_lock`` and ``try_job_lock`` hold connections of a pool of their own, so
        that waiting for a lock never takes a connection its holder needs to finish.
        """
        if url.startswith("sqlite:///"):
            database = Path(url.removeprefix("sqlite:///"))
            database.parent.mkdir(parents=True, exist_ok=True)
            # One process owns the file; durability comes from group fsyncs (see write()).
            sync_engine = sa.create_engine(
                url, connect_args={"timeout": 30, "check_same_thread": False}
            )
            event.listen(sync_engine, "connect", _configure_sqlite_connection)
            with sync_engine.begin() as sync_conn:
                _apply_migrations(sync_conn)
            return cls(
                sqlite_engine=sync_engine,
                dialect=sync_engine.dialect,
                wal_path=database.with_name(database.name + "-wal"),
            )
        # Migrations run through SQLAlchemy (Alembic needs it); the queries then go
        # straight to an asyncpg pool.
        engine = create_async_engine(to_async_url(url), poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                # Replicas starting together must not run the migrations twice.
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(7301946)"))
                await conn.run_sync(_apply_migrations)
        finally:
            await engine.dispose()
        pool = await asyncpg.create_pool(
            _asyncpg_dsn(url),
            min_size=min(2, pool_size),
            max_size=pool_size,
            max_queries=1_000_000,
            statement_cache_size=1024,
            reset=_end_open_transaction,
        )
        lock_pool = await asyncpg.create_pool(
            _asyncpg_dsn(url), min_size=0, max_size=_LOCK_POOL_SIZE, reset=_end_open_transaction
        )
        return cls(postgres_pool=pool, postgres_lock_pool=lock_pool, dialect=engine.dialect)

    def note_changes(self, rows: int) -> None:
        """Counts changed rows; after many, refreshes the planner statistics in the
        background, as autovacuum would (it may be off, and 10 minutes is long for a
        repository that just received thousands of images)."""
        self._changed_rows += rows
        if self._changed_rows < _ANALYZE_AFTER_CHANGES or self._postgres is None:
            return
        if self._analyze_task is None or self._analyze_task.done():
            self._changed_rows = 0
            self._analyze_task = asyncio.get_running_loop().create_task(self.refresh_statistics())

    async def refresh_statistics(self, *, vacuum: bool = False) -> None:
        """Updates the query planner's statistics (ANALYZE); with ``vacuum``, on a
        PostgreSQL server whose autovacuum is off, also vacuums (the scheduled run does).

        PostgreSQL plans the listing joins from these statistics; with stale ones (a server
        with autovacuum off, or a table that grew since) it picked nested loops that made
        ListImages 200 times slower. The scheduler runs this regularly, as does start-up.
        """
        if self._postgres is not None:
            async with self._postgres.acquire() as conn:
                # With autovacuum off nothing else vacuums: dead rows (moved tags, deleted
                # images) would pile up, and index-only scans (ListImages) would keep
                # visiting the table because no page is ever marked all-visible.
                command = "ANALYZE"
                if vacuum and await conn.fetchval("SELECT current_setting('autovacuum')") != "on":
                    command = "VACUUM (ANALYZE)"
                await conn.execute(command)
            return
        assert self._sqlite is not None
        async with self._write_lock:
            with self._sqlite.connect() as sync_conn:
                sync_conn.execute(sa.text("PRAGMA optimize"))
                sync_conn.commit()

    async def close(self) -> None:
        if self._postgres is not None:
            await self._postgres.close()
        if self._postgres_locks is not None:
            await self._postgres_locks.close()
        if self._sqlite is not None:
            self._sqlite.dispose()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[MetadataSession]:
        """Reads that never block writers. Each statement sees the data committed when it
        starts, as in a READ COMMITTED transaction, without the round trips of one."""
        if self._postgres is not None:
            async with self._postgres.acquire() as conn:
                yield MetadataSession(PostgresConnection(conn, self._dialect))
            return
        assert self._sqlite is not None
        with self._sqlite.connect() as sync_conn:
            yield MetadataSession(_sqlite_connection(sync_conn, self._dialect))
            sync_conn.rollback()

    @asynccontextmanager
    async def write(
        self, *, shared_locks: Sequence[str] = (), exclusive_locks: Sequence[str] = ()
    ) -> AsyncIterator[MetadataSession]:
        """A read-write transaction, committed when the block exits without an error.

        On PostgreSQL it starts holding the named locks (see ``repository_lock`` and
        ``tag_lock``), taken in the message that begins it; SQLite has one writer anyway.
        """
        if self._postgres is not None:
            async with self._postgres.acquire() as conn:
                await conn.execute("BEGIN;" + lock_statements(shared_locks, exclusive_locks))
                try:
                    yield MetadataSession(PostgresConnection(conn, self._dialect))
                except BaseException:
                    # A connection that cannot roll back is ended by the pool's reset.
                    with contextlib.suppress(Exception):
                        await conn.execute("ROLLBACK")
                    raise
                await conn.execute("COMMIT")
            return
        assert self._sqlite is not None
        # SQLite has one writer at a time: serialise them here instead of colliding on
        # SQLITE_BUSY. The commit itself writes the WAL without an fsync; the block only
        # ends once a (shared) fsync has made it durable, so the caller acknowledges
        # nothing that a power loss could take back.
        async with self._write_lock:
            with self._sqlite.connect() as sync_conn:
                transaction = sync_conn.begin()
                try:
                    yield MetadataSession(_sqlite_connection(sync_conn, self._dialect))
                except BaseException:
                    transaction.rollback()
                    raise
                transaction.commit()
        if self._wal_sync is not None:
            await self._wal_sync.wait_durable()

    @asynccontextmanager
    async def named_lock(self, name: str) -> AsyncIterator[None]:
        """Mutual exclusion on ``name`` across every process sharing this database.

        Used to serialise the few things that must not interleave on one blob (publishing
        or linking it, and garbage-collecting it). PostgreSQL: a session advisory lock,
        released when the holder finishes or its connection dies. SQLite: an in-process
        lock plus a file lock for other processes on the same data directory.
        """
        if self._postgres_locks is not None:
            async with _advisory_lock(self._postgres_locks, name, wait=True):
                yield
            return
        lock = self._local_locks.setdefault(name, asyncio.Lock())
        self._local_lock_users[name] = self._local_lock_users.get(name, 0) + 1
        try:
            async with lock, _file_lock(self._lock_file(name), wait=True):
                yield
        finally:
            self._local_lock_users[name] -= 1
            if not self._local_lock_users[name]:
                del self._local_lock_users[name]
                del self._local_locks[name]

    def _lock_file(self, name: str) -> Path:
        assert self._lock_dir is not None
        # A fixed set of lock files: names hashing alike only share a lock.
        bucket = hashlib.sha256(name.encode()).hexdigest()[:2]
        kind = "job" if name.startswith("job:") else "name"
        return self._lock_dir / f"{kind}-{bucket}.lock"

    @asynccontextmanager
    async def try_job_lock(self, job: str) -> AsyncIterator[bool]:
        """Yields True to the one process (of all sharing the database) that may run ``job``
        now; a holder that dies releases it with its connection."""
        if self._postgres_locks is not None:
            async with _advisory_lock(self._postgres_locks, f"job:{job}", wait=False) as acquired:
                yield acquired
            return
        lock = self._local_locks.setdefault(f"job:{job}", asyncio.Lock())
        if lock.locked():
            yield False
            return
        async with lock, _file_lock(self._lock_file(f"job:{job}"), wait=False) as held:
            yield held


def _sqlite_connection(sync_conn: Connection, dialect: Dialect) -> SqliteConnection:
    driver_connection = sync_conn.connection.driver_connection
    assert driver_connection is not None
    return SqliteConnection(driver_connection, dialect)


def _asyncpg_dsn(url: str) -> str:
    """asyncpg takes postgresql:// URLs; a SQLAlchemy driver suffix is dropped."""
    scheme, _, rest = url.partition("://")
    return f"postgresql://{rest}" if scheme.split("+")[0] in ("postgresql", "postgres") else url


async def _end_open_transaction(conn: asyncpg.Connection) -> None:
    """Run on a connection going back to the pool, instead of asyncpg's full reset (a
    round trip on every release): the store ends its transactions and releases its
    advisory locks itself, so only a transaction left open by an error needs ending."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


@asynccontextmanager
async def _advisory_lock(pool: asyncpg.Pool, name: str, *, wait: bool) -> AsyncIterator[bool]:
    """A PostgreSQL session advisory lock on ``name``, held by one pooled connection."""
    async with pool.acquire() as conn:
        if wait:
            await conn.execute("SELECT pg_advisory_lock($1, hashtext($2))", _LOCK_NAMESPACE, name)
            acquired = True
        else:
            acquired = bool(
                await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1, hashtext($2))", _LOCK_NAMESPACE, name
                )
            )
        try:
            yield acquired
        finally:
            if acquired:
                try:
                    await conn.execute(
                        "SELECT pg_advisory_unlock($1, hashtext($2))", _LOCK_NAMESPACE, name
                    )
                except BaseException:
                    # A connection that may still hold the lock must not go back to the
                    # pool: closing it releases the lock.
                    conn.terminate()
                    raise


@asynccontextmanager
async def _file_lock(path: Path, *, wait: bool) -> AsyncIterator[bool]:
    """An exclusive flock on ``path``; yields False at once if ``wait`` is off and another
    process holds it. The lock dies with its holder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # Polled rather than blocking a worker thread: the holder may need those threads
        # (file I/O, fsyncs) to finish and let go.
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    yield False
                    return
                await asyncio.sleep(0.005)
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class _GroupFsync:
    """Makes SQLite commits durable with as few WAL fsyncs as possible.

    Every commit waits until an fsync of the WAL that started after it returns. While one
    fsync runs, later commits queue; the next fsync covers all of them at once.
    """

    def __init__(self, wal_path: Path) -> None:
        self._wal_path = wal_path
        self._lock = asyncio.Lock()
        self._commits = 0
        self._durable = 0

    async def wait_durable(self) -> None:
        self._commits += 1
        mine = self._commits
        async with self._lock:
            if self._durable >= mine:
                return  # an fsync that started after this commit already finished
            covered = self._commits
            await asyncio.to_thread(self._fsync)
            self._durable = covered

    def _fsync(self) -> None:
        try:
            fd = os.open(self._wal_path, os.O_RDONLY)
        except FileNotFoundError:
            return  # checkpointed and removed: the database file itself was synced
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# Rows changed (images pushed) between automatic ANALYZE runs on PostgreSQL.
_ANALYZE_AFTER_CHANGES = 500

# Advisory lock keys are (namespace, hash of name); the namespace keeps them apart from
# other users of the same database.
_LOCK_NAMESPACE = 7301946


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the single writer. NORMAL leaves the fsync of each commit
    # to MetadataStore.write(), which shares one fsync among concurrent commits (a group
    # commit): as durable as FULL, without one fsync per transaction.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
