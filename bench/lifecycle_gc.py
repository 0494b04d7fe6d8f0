"""Lifecycle preview and garbage collection at scale, on SQLite and on PostgreSQL.

For each metadata backend the script starts one openecr server (its own lifecycle and GC
schedules off) on a scratch data directory (and, for PostgreSQL, a scratch database), then:

1. **Lifecycle preview over 100,000 images.** CreateRepository through the API, then
   100,000 image rows and their tags are inserted straight into the server's database
   with SQLAlchemy Core on openecr's own table definitions
   (``openecr.storage.metadata._schema``), in batches of 5,000, while the server runs
   (pushing 100,000 manifests through PutImage would take minutes and time the push path,
   not the preview). A third of the images are tagged ``release-N``, a third ``ci-N``, a
   third untagged; push times are spread over the past 365 days. The preview of a
   four-rule policy (prefix list, pattern list, untagged age, ``any`` count) is timed from
   StartLifecyclePolicyPreview to the first GetLifecyclePolicyPreview that says COMPLETE
   (polled every 10 ms with ``maxResults`` 1), three times. Meanwhile a thread GETs
   ``/healthz`` back to back: its worst latency shows how long the server stopped
   answering while the preview ran. Then one GetLifecyclePolicyPreview page (100 results)
   is timed, at the start and near the end of the results.
2. **Lifecycle enforcement.** ``openecr lifecycle run --repository ...`` (a child process
   on the same storage) with a policy that expires exactly the ``--expire`` oldest images
   (default 2,000), timed; the rate in images per second is printed.
3. **GC over 100,000 blobs.** 100,000 tiny blobs (16-64 random bytes) are written as files
   into the blob store's layout (``blobs/sha256/<2 hex>/<hex>``; writing them through
   ``FilesystemBlobStore.put_bytes`` costs three fsyncs each, about 0.7 ms a blob here, so
   2.5 minutes of setup), with their ``blobs`` rows. Half of them are referenced: 12,500
   images of 4 blobs each in repository ``bench/gc``, with their repository links. Of the
   other half, 25,000 are still linked into ``bench/gc`` (an old link that no image uses)
   and 25,000 are linked nowhere. All rows are dated an hour back. Then ``openecr gc
   --gc-grace 60`` runs three times as a child process: ``--dry-run``, the real run (which
   must delete exactly the 50,000 unreferenced blobs and remove 25,000 links), and a third
   run with nothing left to collect (the steady-state cost of every scheduled sweep). The
   table gives the collector's own duration (``seconds`` in its report) and the wall time
   of the process (which includes starting Python and opening the store, about 1 s).

Usage: python bench/lifecycle_gc.py [--images 100000] [--blobs 100000] [--expire 2000]
       [--skip-postgres]
Needs PostgreSQL on 127.0.0.1:5432 reachable as ``postgres`` without a password (or
``OPENECR_BENCH_POSTGRES_URL``) unless ``--skip-postgres``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import sqlalchemy as sa
from _common import ChildProcess, free_port, http_ready, machine_note, postgres_database, table
from botocore.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

from openecr.storage.metadata import _schema as schema

ACCOUNT = "123456789012"
REGION = "us-east-1"
ACCESS_KEY = "AKIAOPENECRBENCH0001"
SECRET_KEY = "openecr/bench/secret/key/000000000000000"
DAY = 86400.0
BATCH = 5000
PREVIEW_REPOSITORY = "bench/lifecycle"
GC_REPOSITORY = "bench/gc"
TARGET_PREVIEW_SECONDS = 2.0


def digest_of(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


# -- rows straight into the server's database -----------------------------------------------


class Database:
    """Bulk inserts on openecr's tables: the server's SQLite file, or PostgreSQL (asyncpg,
    the server's own driver)."""

    def __init__(self, data_dir: Path, url: str | None) -> None:
        self.data_dir = data_dir
        self.url = url

    def insert(self, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
        batches = [rows[i : i + BATCH] for i in range(0, len(rows), BATCH)]
        if self.url is None:
            engine = sa.create_engine(
                f"sqlite:///{self.data_dir / 'metadata.db'}", connect_args={"timeout": 60}
            )
            try:
                with engine.begin() as conn:
                    for batch in batches:
                        conn.execute(table.insert(), list(batch))
            finally:
                engine.dispose()
            return

        async def run() -> None:
            engine = create_async_engine(self.url.replace("postgresql://", "postgresql+asyncpg://"))
            try:
                async with engine.begin() as conn:
                    for batch in batches:
                        await conn.execute(table.insert(), list(batch))
            finally:
                await engine.dispose()

        assert self.url is not None
        asyncio.run(run())

    def recount_images(self, repository: str) -> None:
        """Sets the repository's image count (kept beside its images) from its image rows."""
        counts, images = schema.repository_image_counts, schema.images
        in_repository = (counts.c.registry_id == ACCOUNT, counts.c.repository_name == repository)
        statements = [
            counts.delete().where(*in_repository),
            counts.insert().from_select(
                ["registry_id", "repository_name", "shard", "image_count"],
                sa.select(
                    sa.literal(ACCOUNT), sa.literal(repository), sa.literal(0), sa.func.count()
                ).where(images.c.registry_id == ACCOUNT, images.c.repository_name == repository),
            ),
        ]
        if self.url is None:
            engine = sa.create_engine(f"sqlite:///{self.data_dir / 'metadata.db'}")
            try:
                with engine.begin() as conn:
                    for statement in statements:
                        conn.execute(statement)
            finally:
                engine.dispose()
            return

        async def run() -> None:
            assert self.url is not None
            engine = create_async_engine(self.url.replace("postgresql://", "postgresql+asyncpg://"))
            try:
                async with engine.begin() as conn:
                    for statement in statements:
                        await conn.execute(statement)
            finally:
                await engine.dispose()

        asyncio.run(run())

    def analyze(self) -> None:
        if self.url is not None:
            subprocess.run(["psql", self.url, "-q", "-c", "ANALYZE"], check=True)


# -- one backend ------------------------------------------------------------------------------


@dataclass
class Results:
    backend: str
    rows: list[list[object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, step: str, seconds: float, detail: str) -> None:
        self.rows.append([self.backend, step, f"{seconds:.3f}", detail])


def ecr_client(url: str) -> Any:
    return boto3.client(
        "ecr",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def storage_args(data_dir: Path, url: str | None) -> list[str]:
    return ["--data-dir", str(data_dir)] + (["--database-url", url] if url else [])


def openecr(*args: str) -> tuple[float, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENECR_", "AWS_"))}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "openecr", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"openecr {args[0]} failed:\n{done.stderr[-2000:]}")
    return wall, json.loads(done.stdout)


class HealthProbe:
    """GETs /healthz back to back on its own connection; keeps the worst latency."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.worst = 0.0
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                client.get(self.url + "/healthz")
                self.worst = max(self.worst, time.perf_counter() - started)
                self.count += 1

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def seed_preview_repository(db: Database, images: int, now: float) -> list[tuple[str, float]]:
    rng = random.Random(1)
    image_rows, tag_rows, facts = [], [], []
    for i in range(images):
        digest = digest_of(f"preview-{i}")
        pushed = round(now - 365 * DAY * rng.random(), 3)
        image_rows.append(
            {
                "registry_id": ACCOUNT,
                "repository_name": PREVIEW_REPOSITORY,
                "digest": digest,
                "manifest": b'{"schemaVersion":2}',
                "media_type": "application/vnd.oci.image.manifest.v1+json",
                "artifact_media_type": "application/vnd.oci.image.config.v1+json",
                "size_bytes": 1000 + i,
                "pushed_at": pushed,
            }
        )
        kind = i % 3
        if kind < 2:
            tag = f"release-{i}" if kind == 0 else f"ci-{i}"
            tag_rows.append(
                {
                    "registry_id": ACCOUNT,
                    "repository_name": PREVIEW_REPOSITORY,
                    "tag": tag,
                    "digest": digest,
                    "tagged_at": pushed,
                }
            )
        facts.append((digest, pushed))
    db.insert(schema.images, image_rows)
    db.insert(schema.image_tags, tag_rows)
    db.recount_images(PREVIEW_REPOSITORY)
    return facts


PREVIEW_POLICY = json.dumps(
    {
        "rules": [
            {
                "rulePriority": 1,
                "selection": {
                    "tagStatus": "tagged",
                    "tagPrefixList": ["release"],
                    "countType": "imageCountMoreThan",
                    "countNumber": 1000,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 2,
                "selection": {
                    "tagStatus": "tagged",
                    "tagPatternList": ["ci-*"],
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": 90,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 3,
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": 30,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 4,
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": 50000,
                },
                "action": {"type": "expire"},
            },
        ]
    }
)


def time_preview(ecr: Any, url: str, results: Results) -> None:
    durations, worst, probes, total = [], 0.0, 0, 0
    for _ in range(3):
        with HealthProbe(url) as probe:
            started = time.perf_counter()
            ecr.start_lifecycle_policy_preview(
                repositoryName=PREVIEW_REPOSITORY, lifecyclePolicyText=PREVIEW_POLICY
            )
            while True:
                page = ecr.get_lifecycle_policy_preview(
                    repositoryName=PREVIEW_REPOSITORY, maxResults=1
                )
                if page["status"] != "IN_PROGRESS":
                    break
                time.sleep(0.01)
            durations.append(time.perf_counter() - started)
        if page["status"] != "COMPLETE":
            raise RuntimeError(f"preview ended {page['status']}")
        total = page["summary"]["expiringImageTotalCount"]
        worst = max(worst, probe.worst)
        probes += probe.count
    median = statistics.median(durations)
    verdict = "meets" if median < TARGET_PREVIEW_SECONDS else "MISSES"
    results.add(
        "preview start -> COMPLETE (median of 3)",
        median,
        f"{total:,} expiring; runs {', '.join(f'{d:.2f}' for d in durations)} s; "
        f"{verdict} the {TARGET_PREVIEW_SECONDS:.0f} s target",
    )
    results.add(
        "  worst /healthz latency during previews",
        worst,
        f"{probes:,} probes answered during the 3 previews",
    )
    for label, token_page in (("first", 0), ("last", max(total // 100 - 1, 0))):
        token = None
        if token_page:
            # A token for that offset, in the server's (unversioned) token format.
            raw = json.dumps({"l": "lifecycle-preview", "k": str(token_page * 100)})
            token = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        options: dict[str, Any] = {"repositoryName": PREVIEW_REPOSITORY, "maxResults": 100}
        if token:
            options["nextToken"] = token
        started = time.perf_counter()
        page = ecr.get_lifecycle_policy_preview(**options)
        elapsed = time.perf_counter() - started
        results.add(
            f"  GetLifecyclePolicyPreview, {label} page of 100",
            elapsed,
            f"{len(page['previewResults'])} results; paging all {total:,} takes "
            f"~{elapsed * max(total // 100, 1):.0f} s",
        )


def time_enforcement(
    data_dir: Path, url: str | None, ecr: Any, images: int, expire: int, results: Results
) -> None:
    policy = json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "selection": {
                        "tagStatus": "any",
                        "countType": "imageCountMoreThan",
                        "countNumber": images - expire,
                    },
                    "action": {"type": "expire"},
                }
            ]
        }
    )
    ecr.put_lifecycle_policy(repositoryName=PREVIEW_REPOSITORY, lifecyclePolicyText=policy)
    wall, report = openecr(
        "lifecycle", "run", "--repository", PREVIEW_REPOSITORY, *storage_args(data_dir, url)
    )
    expired = len(report["expiredImages"])
    if expired != expire or report["failures"]:
        raise RuntimeError(f"lifecycle run expired {expired}, failures {report['failures'][:3]}")
    results.add(
        f"lifecycle run expiring {expire:,} of {images:,}",
        wall,
        f"{expired / wall:,.0f} images/s (wall time of the command)",
    )


def seed_gc(data_dir: Path, db: Database, blobs: int, results: Results) -> None:
    started = time.perf_counter()
    old = time.time() - 3600
    rng = random.Random(2)
    digests = []
    blob_rows = []
    root = data_dir / "blobs" / "sha256"
    for i in range(blobs):
        data = rng.randbytes(rng.randint(16, 64)) + i.to_bytes(4, "big")
        hex_digest = hashlib.sha256(data).hexdigest()
        # The server created the 256 prefix directories when it opened the store.
        fd = os.open(root / hex_digest[:2] / hex_digest, os.O_WRONLY | os.O_CREAT, 0o444)
        os.write(fd, data)
        os.close(fd)
        digests.append("sha256:" + hex_digest)
        blob_rows.append({"digest": digests[-1], "size_bytes": len(data), "created_at": old})
    half, quarter = blobs // 2, blobs // 4
    referenced, stale_links = digests[:half], digests[half : half + quarter]
    images, references, links = [], [], []
    for n in range(0, len(referenced), 4):
        image = digest_of(f"gc-image-{n}")
        images.append(
            {
                "registry_id": ACCOUNT,
                "repository_name": GC_REPOSITORY,
                "digest": image,
                "manifest": b'{"schemaVersion":2}',
                "media_type": "application/vnd.oci.image.manifest.v1+json",
                "size_bytes": 100,
                "pushed_at": old,
            }
        )
        for blob in referenced[n : n + 4]:
            references.append(
                {
                    "registry_id": ACCOUNT,
                    "repository_name": GC_REPOSITORY,
                    "image_digest": image,
                    "referenced_digest": blob,
                    "is_manifest": False,
                }
            )
    for blob in referenced + stale_links:
        links.append(
            {
                "registry_id": ACCOUNT,
                "repository_name": GC_REPOSITORY,
                "digest": blob,
                "size_bytes": 40,
                "media_type": None,
                "created_at": old,
            }
        )
    db.insert(schema.blobs, blob_rows)
    db.insert(schema.images, images)
    db.recount_images(GC_REPOSITORY)
    db.insert(schema.image_references, references)
    db.insert(schema.repository_layers, links)
    db.analyze()
    results.add(
        f"GC setup: {blobs:,} blob files + rows",
        time.perf_counter() - started,
        f"{len(images):,} images referencing {half:,}; {quarter:,} stale links; "
        f"{blobs - half - quarter:,} unlinked",
    )


def time_gc(data_dir: Path, url: str | None, blobs: int, results: Results) -> None:
    args = [*storage_args(data_dir, url), "--gc-grace", "60"]
    unreferenced = blobs - blobs // 2
    for label, extra in (("dry run", ["--dry-run"]), ("real run", []), ("again", [])):
        wall, report = openecr("gc", *extra, *args)
        if label == "real run":
            if report["blobsDeleted"] != unreferenced or report["linksRemoved"] != blobs // 4:
                raise RuntimeError(f"unexpected GC report: {report}")
            files = sum(1 for _ in (data_dir / "blobs" / "sha256").glob("*/*"))
            if files != blobs // 2:
                raise RuntimeError(f"{files} blob files left, expected {blobs // 2}")
        results.add(
            f"gc over {blobs:,} blobs, {label}",
            report["seconds"],
            f"process {wall:.2f} s; blobsDeleted {report['blobsDeleted']:,}, "
            f"linksRemoved {report['linksRemoved']:,}, "
            f"bytesReclaimed {report['bytesReclaimed']:,}",
        )


def run_backend(backend: str, url: str | None, args: argparse.Namespace, work: Path) -> Results:
    results = Results(backend)
    data_dir = work / backend / "data"
    port = free_port()
    argv = [
        sys.executable, "-m", "openecr", "serve",
        "--host", "127.0.0.1", "--port", str(port),
        *storage_args(data_dir, url),
        "--account-id", ACCOUNT,
        "--access-key-id", ACCESS_KEY, "--secret-access-key", SECRET_KEY,
        "--lifecycle-interval", "0", "--gc-interval", "0",
        "--log-level", "warning",
    ]  # fmt: skip
    server = ChildProcess(
        f"openecr-{backend}",
        argv,
        work / backend / "server.log",
        env={k: v for k, v in os.environ.items() if not k.startswith(("OPENECR_", "AWS_"))},
    )
    base = f"http://127.0.0.1:{port}"
    server.start(http_ready(base + "/healthz"))
    try:
        ecr = ecr_client(base)
        ecr.create_repository(repositoryName=PREVIEW_REPOSITORY)
        ecr.create_repository(repositoryName=GC_REPOSITORY)
        db = Database(data_dir, url)
        started = time.perf_counter()
        seed_preview_repository(db, args.images, time.time())
        db.analyze()
        results.add(
            f"seed {args.images:,} images (bulk SQL)",
            time.perf_counter() - started,
            "rows inserted while the server runs",
        )
        count = 0
        for page in ecr.get_paginator("list_images").paginate(
            repositoryName=PREVIEW_REPOSITORY, PaginationConfig={"PageSize": 1000}
        ):
            count += len(page["imageIds"])
        if count < args.images:
            raise RuntimeError(f"ListImages sees {count} images")
        time_preview(ecr, base, results)
        if args.expire:
            time_enforcement(data_dir, url, ecr, args.images, args.expire, results)
        seed_gc(data_dir, db, args.blobs, results)
        time_gc(data_dir, url, args.blobs, results)
        problems = server.log_problems()
        if problems:
            results.notes.append(f"{backend} server log: {problems[:3]}")
    finally:
        server.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--blobs", type=int, default=100_000)
    parser.add_argument("--expire", type=int, default=2000, help="0 skips enforcement")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    print(f"# lifecycle_gc.py: {machine_note()}")
    rows: list[list[object]] = []
    notes: list[str] = []
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="openecr-bench-lcgc-"))
        stack.callback(shutil.rmtree, work, True)
        backends: list[tuple[str, str | None]] = [("sqlite", None)]
        if not args.skip_postgres:
            backends.append(("postgres", stack.enter_context(postgres_database())))
        for backend, url in backends:
            print(f"# {backend} ...", flush=True)
            outcome = run_backend(backend, url, args, work)
            rows += outcome.rows
            notes += outcome.notes
    print(table(["backend", "step", "seconds", "detail"], rows))
    for note in notes:
        print("note:", note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
