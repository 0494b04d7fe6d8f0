"""moto's S3 server as a real child process on a loopback port, for the replica tests.

``moto_s3(directory)`` starts ``python -m moto.server`` on a free port and yields a
``MotoS3`` that creates buckets and looks into them with a plain boto3 client (from outside
openecr). The process is stopped by its PID afterwards. Nothing is mocked: openecr talks
HTTP to it exactly as it would to S3.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
from harness import free_port

S3_KEY_ID = "testing"
S3_SECRET = "testing"
S3_REGION = "us-east-1"


@dataclass
class MotoS3:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=S3_REGION,
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET,
        )

    def create_bucket(self, bucket: str) -> None:
        self.client().create_bucket(Bucket=bucket)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        found: list[str] = []
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            found.extend(item["Key"] for item in page.get("Contents", ()))
        return found

    def server_args(self, bucket: str, prefix: str) -> list[str]:
        """The ``openecr serve`` (and admin command) flags for ``s3://bucket/prefix``."""
        return [
            "--blob-store", f"s3://{bucket}/{prefix}",
            "--s3-endpoint-url", self.endpoint,
            "--s3-region", S3_REGION,
            "--s3-access-key-id", S3_KEY_ID,
            "--s3-secret-access-key", S3_SECRET,
        ]  # fmt: skip

    def server_env(self, bucket: str, prefix: str) -> dict[str, str]:
        """The same settings as ``OPENECR_*`` variables (the admin commands have no
        ``--blob-store`` flag; they read the rest of ``serve``'s settings from the
        environment)."""
        return {
            "OPENECR_BLOB_STORE": f"s3://{bucket}/{prefix}",
            "OPENECR_S3_ENDPOINT_URL": self.endpoint,
            "OPENECR_S3_REGION": S3_REGION,
            "OPENECR_S3_ACCESS_KEY_ID": S3_KEY_ID,
            "OPENECR_S3_SECRET_ACCESS_KEY": S3_SECRET,
        }


@contextmanager
def moto_s3(directory: Path, timeout: float = 60.0) -> Iterator[MotoS3]:
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / f"moto-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = MotoS3(port, process, log_path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited: {log_path.read_text()[-2000:]}")
            try:
                httpx.get(f"{server.endpoint}/moto-api/", timeout=1.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
