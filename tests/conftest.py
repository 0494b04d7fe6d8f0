"""Shared fixtures: real servers (SQLite and PostgreSQL backends) and real clients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).parent))

from harness import (
    TEST_ACCESS_KEY,
    TEST_REGION,
    TEST_SECRET_KEY,
    ServerProcess,
    postgres_database,
)

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server per backend for the whole session; tests use unique repository names."""
    base = tmp_path_factory.mktemp(f"server-{backend}")
    if backend == "sqlite":
        process = ServerProcess(base / "data").start()
        yield process
        process.kill()
    else:
        with postgres_database() as url:
            process = ServerProcess(base / "data", database_url=url).start()
            yield process
            process.kill()


def make_client(url: str, **overrides: Any) -> Any:
    options: dict[str, Any] = {
        "endpoint_url": url,
        "region_name": TEST_REGION,
        "aws_access_key_id": TEST_ACCESS_KEY,
        "aws_secret_access_key": TEST_SECRET_KEY,
        "config": Config(retries={"max_attempts": 1, "mode": "standard"}),
    }
    options.update(overrides)
    return boto3.client("ecr", **options)


@pytest.fixture
def ecr(server: ServerProcess) -> Any:
    return make_client(server.url)


@pytest.fixture
def repo_name() -> str:
    return f"test/{uuid.uuid4().hex[:10]}"


@pytest.fixture
def repo(ecr: Any, repo_name: str) -> str:
    """A new, empty repository (mutable tags) on the session's server."""
    ecr.create_repository(repositoryName=repo_name)
    return repo_name


@pytest.fixture
def aws_cli(server: ServerProcess) -> Callable[..., Any]:
    """Runs ``aws ecr ...`` against the server; returns parsed JSON (or raises)."""

    def run(*args: str, check: bool = True) -> Any:
        env = dict(os.environ)
        env.update(
            AWS_ACCESS_KEY_ID=TEST_ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=TEST_SECRET_KEY,
            AWS_DEFAULT_REGION=TEST_REGION,
            AWS_CONFIG_FILE="/dev/null",
            AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        )
        env.pop("AWS_PROFILE", None)
        result = subprocess.run(
            ["aws", "ecr", *args, "--endpoint-url", server.url, "--output", "json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"aws ecr {' '.join(args)} failed:\n{result.stderr}")
        if not check:
            return result
        return json.loads(result.stdout) if result.stdout.strip() else None

    return run
