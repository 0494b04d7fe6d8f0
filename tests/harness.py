"""Real openecr server processes on loopback ports, for the integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

POSTGRES_ADMIN_URL = os.environ.get(
    "OPENECR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TEST_ACCESS_KEY = "AKIAOPENECRTEST00001"
TEST_SECRET_KEY = "openecr/test/secret/key/0000000000000000"
TEST_ACCOUNT = "123456789012"
TEST_REGION = "us-west-2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", POSTGRES_ADMIN_URL, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
        check=True,
        capture_output=True,
    )


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    name = f"openecr_test_{uuid.uuid4().hex[:12]}"
    _psql(f"CREATE DATABASE {name}")
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass
class ServerProcess:
    """One ``openecr serve`` child process."""

    data_dir: Path
    database_url: str | None = None
    extra_args: list[str] = field(default_factory=list)
    with_test_credentials: bool = True
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        args = [
            sys.executable, "-m", "openecr", "serve",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--data-dir", str(self.data_dir),
            "--account-id", TEST_ACCOUNT,
            "--log-level", "warning",
        ]  # fmt: skip
        if self.database_url:
            args += ["--database-url", self.database_url]
        if self.with_test_credentials:
            args += ["--access-key-id", TEST_ACCESS_KEY, "--secret-access-key", TEST_SECRET_KEY]
        args += self.extra_args
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENECR_", "AWS_"))}
        self.stdout_path = self.data_dir.parent / f"server-{self.port}.out"
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._stdout = open(self.stdout_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            args, stdout=self._stdout, stderr=subprocess.STDOUT, text=True, env=env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server did not become healthy:\n{self.output()}")

    def output(self) -> str:
        if not self._stdout.closed:
            self._stdout.flush()
        return self.stdout_path.read_text()

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait: the clean shutdown path."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._stdout.close()
        return code

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._stdout.close()
