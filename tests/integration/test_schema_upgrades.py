"""A database written by an earlier schema keeps its meaning after the server upgrades it.

The database is brought to an earlier migration with Alembic, filled the way that schema
stored things, and then a real server starts on it (applying the newer migrations).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from ecr_helpers import make_ecr_client, raises_ecr
from harness import TEST_ACCOUNT, ServerProcess, postgres_database
from sqlalchemy.ext.asyncio import create_async_engine

import openecr.storage.metadata.store as metadata_store

MIGRATIONS = Path(metadata_store.__file__).parent / "migrations"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, str | None]]:
    """(data directory, database URL or None for the embedded SQLite database)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if request.param == "sqlite":
        yield data_dir, None
    else:
        with postgres_database() as url:
            yield data_dir, url


def at_revision(
    data_dir: Path, url: str | None, revision: str, *statements: tuple[str, Any]
) -> None:
    """Migrates the (new) database to ``revision`` only, then runs the (SQL, parameters)
    ``statements`` on it."""
    async_url = (
        f"sqlite+aiosqlite:///{data_dir / 'metadata.db'}"
        if url is None
        else url.replace("postgresql://", "postgresql+asyncpg://", 1)
    )

    def upgrade(connection: sa.Connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        for statement, parameters in statements:
            connection.execute(sa.text(statement), parameters)

    async def run() -> None:
        engine = create_async_engine(async_url)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(upgrade)
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_image_counts_survive_the_move_to_counter_rows(
    database: tuple[Path, str | None],
) -> None:
    data_dir, url = database
    digests = [f"sha256:{letter * 64}" for letter in "ab"]
    image_rows = [
        {
            "registry_id": TEST_ACCOUNT,
            "digest": digest,
            "manifest": b"{}",
            "media_type": "application/vnd.oci.image.manifest.v1+json",
        }
        for digest in digests
    ]
    # Revision 0005 kept the count on the repository row.
    at_revision(
        data_dir,
        url,
        "0005",
        (
            "INSERT INTO repositories (registry_id, name, created_at, image_tag_mutability, "
            "scan_on_push, encryption_type, image_count) "
            "VALUES (:registry_id, 'old/app', 1700000000.0, 'MUTABLE', false, 'AES256', 2)",
            {"registry_id": TEST_ACCOUNT},
        ),
        (
            "INSERT INTO images (registry_id, repository_name, digest, manifest, media_type, "
            "size_bytes, pushed_at) "
            "VALUES (:registry_id, 'old/app', :digest, :manifest, :media_type, 10, 1.7e9)",
            image_rows,
        ),
    )
    server = ServerProcess(data_dir, database_url=url).start()
    try:
        ecr: Any = make_ecr_client(server.url)
        listed = ecr.list_images(repositoryName="old/app")["imageIds"]
        assert sorted(i["imageDigest"] for i in listed) == digests
        # The count came along: the repository is not empty until both images are gone.
        with raises_ecr("RepositoryNotEmptyException"):
            ecr.delete_repository(repositoryName="old/app")
        ecr.batch_delete_image(repositoryName="old/app", imageIds=[{"imageDigest": digests[0]}])
        with raises_ecr("RepositoryNotEmptyException"):
            ecr.delete_repository(repositoryName="old/app")
        ecr.batch_delete_image(repositoryName="old/app", imageIds=[{"imageDigest": digests[1]}])
        ecr.delete_repository(repositoryName="old/app")
    finally:
        server.kill()
