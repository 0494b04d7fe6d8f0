"""The metadata store's upkeep on PostgreSQL: statistics always, vacuuming where the server's
autovacuum is off (as on the CI server), so deleted and moved rows do not pile up."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest
from harness import postgres_database

from openecr.storage.metadata.store import MetadataStore

pytestmark = pytest.mark.postgres


def _psql(url: str, query: str) -> str:
    completed = subprocess.run(
        ["psql", url, "-Atc", query], capture_output=True, text=True, check=True
    )
    return completed.stdout.strip()


def test_scheduled_refresh_vacuums_when_autovacuum_is_off() -> None:
    with postgres_database() as url:

        async def refresh(vacuum: bool) -> None:
            store = await MetadataStore.open(url, pool_size=2)
            try:
                await store.refresh_statistics(vacuum=vacuum)
            finally:
                await store.close()

        autovacuum = _psql(url, "SHOW autovacuum")
        last_vacuum = (
            "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'images'"
        )
        asyncio.run(refresh(vacuum=False))
        assert _psql(url, last_vacuum) == "f"
        asyncio.run(refresh(vacuum=True))
        # pg_stat_user_tables is updated by the statistics collector a moment later.
        expected = "t" if autovacuum == "off" else "f"
        for _ in range(50):
            if _psql(url, last_vacuum) == expected:
                break
            time.sleep(0.1)
        assert _psql(url, last_vacuum) == expected
        assert (
            _psql(
                url,
                "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'images'",
            )
            == "t"
        )
