"""Several ``openecr serve`` replicas on one PostgreSQL database and one S3 bucket.

A ``Fleet`` is the shared storage of a test module (a moto S3 server, a bucket and a fresh
PostgreSQL database) plus the replicas started on it, each a real server process on its
own loopback port with its own, otherwise unused, data directory: the replicas share
nothing but the database and the bucket. Admin commands (``openecr gc``, ``fsck``) run
against the same storage as child processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import ServerProcess, postgres_database
from s3_server import MotoS3, moto_s3

BUCKET = "openecr-replicas"
PREFIX = "registry"


@dataclass
class Fleet:
    base: Path
    s3: MotoS3
    database_url: str
    bucket: str = BUCKET
    prefix: str = PREFIX
    replicas: list[ServerProcess] = field(default_factory=list)

    def start(self, name: str, *extra: str) -> ServerProcess:
        server = ServerProcess(
            self.base / name / "data",
            database_url=self.database_url,
            extra_args=[*self.s3.server_args(self.bucket, self.prefix), *extra],
        )
        self.replicas.append(server)
        return server.start()

    def stop_all(self) -> None:
        for server in self.replicas:
            server.kill()

    def blob_keys(self) -> set[str]:
        """Digests of the committed blobs in the bucket."""
        found = set()
        for key in self.s3.keys(self.bucket, f"{self.prefix}/blobs/"):
            algorithm, hex_digest = key.rsplit("/", 2)[-2:]
            found.add(f"{algorithm}:{hex_digest}")
        return found

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``openecr ARGS`` on the fleet's storage (S3 settings from the environment)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENECR_", "AWS_"))}
        env.update(self.s3.server_env(self.bucket, self.prefix))
        env["OPENECR_DATABASE_URL"] = self.database_url
        env["OPENECR_DATA_DIR"] = str(self.base / "cli-data")
        result = subprocess.run(
            [sys.executable, "-m", "openecr", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"openecr {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args).stdout)


@contextmanager
def fleet(base: Path) -> Iterator[Fleet]:
    """The module's storage; every replica started on it is killed at the end."""
    with moto_s3(base / "moto") as s3, postgres_database() as database_url:
        s3.create_bucket(BUCKET)
        shared = Fleet(base, s3, database_url)
        try:
            yield shared
        finally:
            shared.stop_all()


def sigkill(server: ServerProcess) -> None:
    """SIGKILL by PID: no shutdown code runs (sockets are closed by the kernel)."""
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=15)


def log_entries(server: ServerProcess, logger: str) -> list[dict[str, Any]]:
    """The server's JSON log lines of one logger (needs ``--log-level info``)."""
    entries = []
    for line in server.output().splitlines():
        if not line.startswith("{") or f'"logger":"{logger}"' not in line:
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def wait_until(probe: Any, timeout: float, interval: float = 0.2) -> Any:
    """Calls ``probe`` until it returns something truthy; returns that (or the last value)."""
    deadline = time.monotonic() + timeout
    value = probe()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = probe()
    return value
