"""Helpers for the lifecycle, garbage collection and fsck tests.

* ``Storage``: a server's data directory and database, with ``openecr`` admin commands
  (``gc``, ``lifecycle run``, ``fsck``) run against it as subprocesses, and paths of the
  blob files on disk.
* ``seed_images``: rows inserted straight into a server's metadata database (SQLAlchemy
  Core on openecr's own table definitions), for repositories too large to push image by
  image and for images with push times in the past, which no API can produce.
* ``expected_expirations``: an independent restatement of the evaluation pseudo-code of
  spec §6.3, the oracle the engine's results are compared with.
* small polling and listing helpers.

Nothing here mocks openecr: commands are real processes on real storage.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from harness import TEST_ACCOUNT, ServerProcess, postgres_database
from sqlalchemy.ext.asyncio import create_async_engine

from openecr.storage.metadata import _schema as schema

T = TypeVar("T")

BACKENDS = ["sqlite", "postgres"]
CLI_TIMEOUT = 120
DAY = 86400.0


@contextmanager
def database_for(backend: str) -> Iterator[str | None]:
    """None (SQLite in the data directory) or a fresh PostgreSQL database URL."""
    if backend == "sqlite":
        yield None
    else:
        with postgres_database() as url:
            yield url


@dataclass
class Storage:
    """One server's storage: where the admin commands and the disk checks look."""

    data_dir: Path
    database_url: str | None = None

    @classmethod
    def of(cls, server: ServerProcess) -> Storage:
        return cls(server.data_dir, server.database_url)

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "metadata.db"

    def storage_args(self) -> list[str]:
        args = ["--data-dir", str(self.data_dir)]
        if self.database_url:
            args += ["--database-url", self.database_url]
        return args

    def cli(
        self, *args: str, check: bool = True, timeout: float = CLI_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """``openecr ARGS --data-dir ... [--database-url ...]`` as a child process."""
        result = openecr_cli(*args, *self.storage_args(), timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"openecr {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def cli_json(self, *args: str, check: bool = True) -> Any:
        return json.loads(self.cli(*args, check=check).stdout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "openecr", *args, *self.storage_args()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )

    def blob_path(self, digest: str) -> Path:
        algorithm, hex_digest = digest.split(":", 1)
        return self.data_dir / "blobs" / algorithm / hex_digest[:2] / hex_digest

    def stored_blobs(self) -> set[str]:
        """Digests of every committed blob file on disk."""
        found = set()
        for path in (self.data_dir / "blobs").glob("*/*/*"):
            if path.is_file():
                found.add(f"{path.parent.parent.name}:{path.name}")
        return found

    def upload_files(self) -> set[str]:
        uploads = self.data_dir / "uploads"
        return {p.name for p in uploads.iterdir() if p.is_file()} if uploads.exists() else set()

    def execute(self, *work: tuple[sa.Executable, Any]) -> None:
        """Runs (statement, parameters) pairs in one transaction on the server's database:
        a plain SQLAlchemy engine on SQLite, asyncpg (the server's driver) on PostgreSQL."""
        if self.database_url is None:
            engine = sa.create_engine(f"sqlite:///{self.sqlite_path}", connect_args={"timeout": 30})
            try:
                with engine.begin() as conn:
                    for statement, parameters in work:
                        conn.execute(statement, parameters)
            finally:
                engine.dispose()
            return
        url = self.database_url.replace("postgresql://", "postgresql+asyncpg://", 1)

        async def run() -> None:
            engine = create_async_engine(url)
            try:
                async with engine.begin() as conn:
                    for statement, parameters in work:
                        await conn.execute(statement, parameters)
            finally:
                await engine.dispose()

        asyncio.run(run())


def clean_env() -> dict[str, str]:
    """The environment without OPENECR_*/AWS_* settings that could redirect a command."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("OPENECR_", "AWS_"))}


def openecr_cli(*args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openecr", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
    )


def start_server(storage: Storage, *extra_args: str) -> ServerProcess:
    return ServerProcess(
        storage.data_dir, database_url=storage.database_url, extra_args=list(extra_args)
    ).start()


# -- polling and listings ------------------------------------------------------------------


def wait_for(
    probe: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout: float,
    interval: float = 0.1,
) -> T:
    """Calls ``probe`` until ``done(value)``; returns the last value (the caller asserts)."""
    deadline = time.monotonic() + timeout
    value = probe()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(interval)
        value = probe()
    return value


def describe_all(ecr: Any, repository: str) -> list[dict[str, Any]]:
    details: list[dict[str, Any]] = []
    for page in ecr.get_paginator("describe_images").paginate(
        repositoryName=repository, PaginationConfig={"PageSize": 1000}
    ):
        details.extend(page["imageDetails"])
    return details


def image_digests_in(ecr: Any, repository: str) -> set[str]:
    return {detail["imageDigest"] for detail in describe_all(ecr, repository)}


def preview_pages(ecr: Any, repository: str, page_size: int) -> list[dict[str, Any]]:
    """Every page of a COMPLETE preview, following nextToken."""
    pages = []
    options: dict[str, Any] = {"repositoryName": repository, "maxResults": page_size}
    while True:
        page = ecr.get_lifecycle_policy_preview(**options)
        pages.append(page)
        if "nextToken" not in page:
            return pages
        options["nextToken"] = page["nextToken"]


@dataclass(frozen=True)
class ExpiryLogLine:
    repository: str
    digest: str
    tags: tuple[str, ...]
    rule_priority: int


def lifecycle_log(output: str, *, verb: str = "expired") -> list[ExpiryLogLine]:
    """The enforcement lines of a server log (JSON lines, ``--log-level info``)."""
    found = []
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("logger") != "openecr.services.lifecycle_enforcement":
            continue
        message: str = entry.get("message", "")
        prefix = f"lifecycle {verb} "
        if not message.startswith(prefix):
            continue
        # "lifecycle expired REPO@DIGEST (tags a,b) by rule N"
        reference, _, rest = message[len(prefix) :].partition(" (tags ")
        tags, _, rule = rest.partition(") by rule ")
        repository, _, digest = reference.partition("@")
        found.append(
            ExpiryLogLine(
                repository,
                digest,
                () if tags == "-" else tuple(tags.split(",")),
                int(rule),
            )
        )
    return found


def gc_log_reports(output: str) -> list[str]:
    """The messages of the server's ``garbage collection: {...}`` log lines."""
    reports = []
    for line in output.splitlines():
        if '"logger":"openecr.services.garbage_collection"' in line:
            message = json.loads(line).get("message", "")
            if message.startswith("garbage collection:"):
                reports.append(message)
    return reports


# -- rows straight into the metadata database ----------------------------------------------


@dataclass(frozen=True)
class SeedImage:
    digest: str
    tags: tuple[str, ...]
    pushed_at: float


def fake_digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def seed_images(
    storage: Storage, repository: str, images: Sequence[SeedImage], registry_id: str = TEST_ACCOUNT
) -> None:
    """Inserts image and tag rows into an existing repository, in one transaction.

    The manifests are placeholders (no blobs): enough for DescribeImages, the lifecycle
    engine and its previews, which only read digests, tags and push times.
    """
    image_rows = [
        {
            "registry_id": registry_id,
            "repository_name": repository,
            "digest": image.digest,
            "manifest": b'{"schemaVersion":2}',
            "media_type": "application/vnd.oci.image.manifest.v1+json",
            "artifact_media_type": "application/vnd.oci.image.config.v1+json",
            "size_bytes": 1024,
            "pushed_at": image.pushed_at,
        }
        for image in images
    ]
    tag_rows = [
        {
            "registry_id": registry_id,
            "repository_name": repository,
            "tag": tag,
            "digest": image.digest,
            "tagged_at": image.pushed_at,
        }
        for image in images
        for tag in image.tags
    ]
    work: list[tuple[sa.Executable, Any]] = [(schema.images.insert(), image_rows)]
    if tag_rows:
        work.append((schema.image_tags.insert(), tag_rows))
    work.extend(_recount_images(registry_id, repository))
    storage.execute(*work)


def _recount_images(registry_id: str, repository: str) -> list[tuple[Any, Any]]:
    """Sets the repository's image count (kept beside its images) from its image rows."""
    counts, images = schema.repository_image_counts, schema.images
    in_repository = (counts.c.registry_id == registry_id, counts.c.repository_name == repository)
    recount = counts.insert().from_select(
        ["registry_id", "repository_name", "shard", "image_count"],
        sa.select(
            sa.literal(registry_id), sa.literal(repository), sa.literal(0), sa.func.count()
        ).where(images.c.registry_id == registry_id, images.c.repository_name == repository),
    )
    return [(counts.delete().where(*in_repository), None), (recount, None)]


# -- the §6.3 algorithm, restated independently ---------------------------------------------


def _selects(selection: dict[str, Any], tags: Sequence[str]) -> bool:
    status = selection["tagStatus"]
    if status == "any":
        return True
    if status == "untagged":
        return not tags
    if not tags:
        return False
    if "tagPrefixList" in selection:
        return all(any(t.startswith(p) for t in tags) for p in selection["tagPrefixList"])
    # fnmatch's other wildcards (? and [...]) cannot occur in valid tags or patterns here.
    return all(
        any(fnmatch.fnmatchcase(t, pattern) for t in tags)
        for pattern in selection["tagPatternList"]
    )


def expected_expirations(
    policy: dict[str, Any], images: Iterable[SeedImage], now: float
) -> dict[str, int]:
    """digest -> priority of the rule expiring it, per the pseudo-code of spec §6.3.

    Ties in push time: the larger digest counts as the newer image (openecr's documented
    choice; tests avoid relying on it where they can).
    """
    ordered = sorted(images, key=lambda i: (i.pushed_at, i.digest), reverse=True)
    protected: set[str] = set()
    result: dict[str, int] = {}
    for rule in sorted(policy["rules"], key=lambda r: r["rulePriority"]):
        selection = rule["selection"]
        selected = [image for image in ordered if _selects(selection, image.tags)]
        if selection["countType"] == "imageCountMoreThan":
            candidates = selected[selection["countNumber"] :]
        else:
            candidates = [i for i in selected if now - i.pushed_at > selection["countNumber"] * DAY]
        for image in candidates:
            if image.digest not in protected and image.digest not in result:
                result[image.digest] = rule["rulePriority"]
        protected |= {image.digest for image in selected}
    return result


def rule(
    priority: int,
    status: str,
    count_type: str,
    number: int,
    *,
    prefixes: Sequence[str] | None = None,
    patterns: Sequence[str] | None = None,
) -> dict[str, Any]:
    selection: dict[str, Any] = {"tagStatus": status, "countType": count_type}
    if prefixes is not None:
        selection["tagPrefixList"] = list(prefixes)
    if patterns is not None:
        selection["tagPatternList"] = list(patterns)
    if count_type == "sinceImagePushed":
        selection["countUnit"] = "days"
    selection["countNumber"] = number
    return {
        "rulePriority": priority,
        "description": f"rule {priority}",
        "selection": selection,
        "action": {"type": "expire"},
    }


def policy_text(*rules: dict[str, Any]) -> str:
    return json.dumps({"rules": list(rules)}).ljust(100)


def logged_expiries(
    server: ServerProcess, repository: str, *, at_least: int
) -> list[ExpiryLogLine]:
    """The server's expiry log lines for ``repository``, once there are ``at_least`` of
    them (or after 10 s): an expiry is logged after its deletion commits, a moment after
    clients stop seeing the image."""
    return wait_for(
        lambda: [line for line in lifecycle_log(server.output()) if line.repository == repository],
        lambda lines: len(lines) >= at_least,
        timeout=10,
    )
