"""Background jobs on fixed intervals, each run by one process of the fleet at a time.

Every server process runs the same loop; before a run it asks the metadata store for the
job's lock (a PostgreSQL advisory lock, released if the holder dies), so with several
replicas one of them runs each job and another takes over when it goes away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from openecr.storage.metadata.store import MetadataStore

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Job:
    name: str
    interval_seconds: float
    run: Callable[[], Awaitable[object]]


def _last_run_key(job: _Job) -> str:
    return f"job-last-run:{job.name}"


class Scheduler:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        self._jobs: list[_Job] = []
        self._tasks: list[asyncio.Task[None]] = []

    def every(
        self, name: str, interval_seconds: float, run: Callable[[], Awaitable[object]]
    ) -> None:
        """Runs ``run`` every ``interval_seconds`` (0 or less: never)."""
        if interval_seconds > 0:
            self._jobs.append(_Job(name, interval_seconds, run))

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._loop(job), name=f"job:{job.name}") for job in self._jobs
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _due(self, job: _Job) -> bool:
        """Whether the job's interval has passed since any process last ran it: with N
        replicas the job still runs once per interval, not N times."""
        async with self._store.read() as session:
            last = await session.get_server_secret(_last_run_key(job))
        return last is None or time.time() - float(last) >= job.interval_seconds * 0.9

    async def _loop(self, job: _Job) -> None:
        while True:
            await asyncio.sleep(job.interval_seconds)
            try:
                async with self._store.try_job_lock(job.name) as acquired:
                    if not acquired:
                        log.debug("job %s is running elsewhere", job.name)
                    elif await self._due(job):
                        await job.run()
                        async with self._store.write() as session:
                            await session.put_server_value(_last_run_key(job), str(time.time()))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job %s failed", job.name)
