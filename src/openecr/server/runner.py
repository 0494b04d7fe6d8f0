"""Runs the server until SIGTERM or SIGINT, then shuts down cleanly."""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import signal
import sys
from typing import TextIO

from aiohttp import web

from openecr.config import Settings
from openecr.server.app import build_app
from openecr.server.scheduler import Scheduler
from openecr.server.services import Services
from openecr.services.credentials import BootstrapOutcome
from openecr.storage.metadata.records import AccessKeyRecord

__all__ = ["configure_logging", "serve"]

log = logging.getLogger("openecr.server")

STATISTICS_INTERVAL_SECONDS = 600
# Allocations (minus deallocations) between two collections of the youngest generation;
# the default is 700.
_YOUNG_COLLECTION_THRESHOLD = 20_000


class _JsonFormatter(logging.Formatter):
    """Access-log lines are already JSON; other records are wrapped into JSON."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == "openecr.access":
            return record.getMessage()
        entry = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


def configure_logging(level: str, stream: TextIO = sys.stderr) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log would duplicate ours; alembic narrates every start-up.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _announce_credentials(outcome: BootstrapOutcome, settings: Settings, out: TextIO) -> None:
    endpoint = settings.effective_public_url
    if outcome.created and outcome.key is not None:
        print(
            "openecr: created an admin access key for account "
            f"{outcome.key.account_id}; it is stored in {outcome.credentials_file} (mode 0600).\n"
            "Paste these lines into your shell to use it:\n\n"
            f"export AWS_ACCESS_KEY_ID={outcome.key.access_key_id}\n"
            f"export AWS_SECRET_ACCESS_KEY={outcome.key.secret_access_key}\n"
            f"export AWS_DEFAULT_REGION={settings.region}\n"
            f"export AWS_ENDPOINT_URL={endpoint}\n",
            file=out,
            flush=True,
        )
    elif outcome.credentials_file is not None:
        print(
            f"openecr: admin credentials are in {outcome.credentials_file}; endpoint {endpoint}",
            file=out,
            flush=True,
        )


def _tune_garbage_collection() -> None:
    """Keeps Python's cyclic garbage collector from costing more as requests overlap.

    A listing of 1,000 images allocates thousands of objects, and each collection walks
    every object that is still alive, among them those of every other request in flight:
    with the default thresholds, CPU per request grew with the number of connections.
    Everything allocated at start-up lives as long as the server, so it is moved out of
    the collector's sight, and the youngest generation is collected less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(_YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])


async def serve(settings: Settings, out: TextIO = sys.stdout) -> None:
    services = await Services.start(settings)
    try:
        configured = None
        if settings.access_key_id and settings.secret_access_key:
            configured = AccessKeyRecord(
                settings.access_key_id, settings.secret_access_key, settings.account_id
            )
        outcome = await services.access_keys.bootstrap(
            account_id=settings.account_id, data_dir=settings.data_dir, configured=configured
        )
        _announce_credentials(outcome, settings, out)
        if settings.insecure_accept_any_credentials:
            log.warning(
                "INSECURE MODE: --insecure-accept-any-credentials is on; ANY SigV4 signature "
                "is accepted as account %s. Never use this outside a test harness.",
                settings.account_id,
            )
        await services.store.refresh_statistics()
        scheduler = Scheduler(services.store)
        scheduler.every(
            "statistics",
            STATISTICS_INTERVAL_SECONDS,
            functools.partial(services.store.refresh_statistics, vacuum=True),
        )
        scheduler.every("lifecycle", settings.lifecycle_interval, services.lifecycle.run)
        scheduler.every("gc", settings.gc_interval, services.gc.run)
        scheduler.start()
        runner = web.AppRunner(build_app(services), access_log=None, handle_signals=False)
        await runner.setup()
        _tune_garbage_collection()
        site = web.TCPSite(runner, settings.host, settings.port, backlog=1024)
        await site.start()
        log.info(
            "listening on %s:%s (public URL %s, database %s)",
            settings.host,
            settings.port,
            settings.effective_public_url,
            services.store.backend,
        )
        print(f"openecr: serving on http://{settings.host}:{settings.port}", file=out, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("shutting down")
        await scheduler.stop()
        await runner.cleanup()
    finally:
        await services.close()
