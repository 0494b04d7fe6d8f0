"""ECR JSON 1.1 API throughput: openecr (SQLite and PostgreSQL) against moto's server.

One run starts three servers side by side (openecr on SQLite, openecr on a scratch
PostgreSQL database, moto's server), fills each with the same repository of 1,000 images,
then drives DescribeRepositories, DescribeImages, BatchGetImage, ListImages,
GetAuthorizationToken and PutImage with wrk at several connection counts. Every request
is SigV4-signed with botocore ahead of time; openecr verifies the signatures (explicit
keys), moto accepts any. Reads replay one signed request; PutImage cycles through a pool
of distinct pre-signed requests, each sent at most once.

Usage: python bench/ecr_api.py [--duration 8] [--connections 8,32] [--writes 20000]
See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import botocore
import httpx
import moto
from _common import (
    ChildProcess,
    LoadResult,
    Placement,
    free_port,
    http_ready,
    machine_note,
    postgres_analyze,
    postgres_cpu_seconds,
    postgres_database,
    postgres_setting,
    ratio,
    raw_http_request,
    run_wrk,
    table,
)
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

import openecr

REGION = "us-east-1"
ACCESS_KEY = "AKIAOPENECRBENCH0001"
SECRET_KEY = "openecr/bench/secret/key/000000000000000"
TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
READ_REPO = "bench/images"
WRITE_REPO = "bench/writes"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"

OPERATIONS = [
    "DescribeRepositories",
    "DescribeImages",
    "BatchGetImage",
    "ListImages",
    "GetAuthorizationToken",
    "PutImage",
]


# -- the image every server holds ----------------------------------------------------------


def _small_layer() -> bytes:
    payload = hashlib.sha256(b"openecr bench layer").hexdigest().encode() * 64  # 4 KiB
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("bench/payload.txt")
        info.size = len(payload)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


LAYER = _small_layer()
CONFIG = json.dumps(
    {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [_digest(LAYER)]},
    },
    separators=(",", ":"),
).encode()


def manifest_for(annotation: str) -> str:
    """A small OCI manifest; the annotation makes each one (and its digest) distinct."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": _digest(CONFIG), "size": len(CONFIG)},
            "layers": [{"mediaType": OCI_LAYER, "digest": _digest(LAYER), "size": len(LAYER)}],
            "annotations": {"org.openecr.bench.id": annotation},
        },
        separators=(",", ":"),
    )


def put_image_payload(tag: str) -> dict[str, Any]:
    return {
        "repositoryName": WRITE_REPO,
        "imageManifest": manifest_for(tag),
        "imageManifestMediaType": OCI_MANIFEST,
        "imageTag": tag,
    }


def read_payloads(images: int) -> dict[str, dict[str, Any]]:
    picked = sorted({0, images // 4, images // 2, 3 * images // 4, images - 1})
    return {
        "DescribeRepositories": {},
        # moto ignores maxResults and always returns every image; asking openecr for its
        # maximum page (1,000) makes both servers return the same images.
        "DescribeImages": {"repositoryName": READ_REPO, "maxResults": 1000},
        "BatchGetImage": {
            "repositoryName": READ_REPO,
            "imageIds": [{"imageTag": f"img-{i:04d}"} for i in picked],
            "acceptedMediaTypes": [OCI_MANIFEST],
        },
        "ListImages": {"repositoryName": READ_REPO, "maxResults": 1000},
        "GetAuthorizationToken": {},
    }


def count_items(operation: str, document: dict[str, Any]) -> str:
    """What a response carried, to show that both servers did the same work."""
    if operation == "DescribeRepositories":
        return f"{len(document.get('repositories', []))} repositories"
    if operation == "DescribeImages":
        return f"{len(document.get('imageDetails', []))} images"
    if operation == "BatchGetImage":
        images, failures = document.get("images", []), document.get("failures", [])
        return f"{len(images)} images, {len(failures)} failures"
    if operation == "ListImages":
        return f"{len(document.get('imageIds', []))} image ids"
    if operation == "GetAuthorizationToken":
        return f"{len(document.get('authorizationData', []))} tokens"
    if operation == "PutImage":
        return "1 image" if document.get("image") else "no image"
    return "?"


# -- servers -------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    kind: str  # "openecr" or "moto"
    port: int
    process: ChildProcess
    uses_postgres: bool = False
    setup_seconds: float = 0.0
    results: dict[tuple[str, int], LoadResult] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> Any:
        return boto3.client(
            "ecr",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )

    def signed(self, operation: str, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(payload, separators=(",", ":")).encode()
        request = AWSRequest(
            method="POST",
            url=f"{self.url}/",
            data=body,
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": TARGET_PREFIX + operation,
            },
        )
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "ecr", REGION).add_auth(request)
        return body, dict(request.headers.items())

    def raw(self, operation: str, payload: dict[str, Any]) -> bytes:
        body, headers = self.signed(operation, payload)
        return raw_http_request("POST", "/", self.host, headers, body)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("OPENECR_", "AWS_"))}


def start_openecr(
    name: str, workdir: Path, placement: Placement, database_url: str | None
) -> Target:
    port = free_port()
    argv = [
        sys.executable, "-m", "openecr", "serve",
        "--host", "127.0.0.1", "--port", str(port),
        "--data-dir", str(workdir / name),
        "--access-key-id", ACCESS_KEY, "--secret-access-key", SECRET_KEY,
        "--region", REGION, "--log-level", "warning",
    ]  # fmt: skip
    if database_url:
        argv += ["--database-url", database_url]
    process = ChildProcess(name, placement.server(argv), workdir / f"{name}.log", _clean_env())
    process.start(http_ready(f"http://127.0.0.1:{port}/healthz"))
    return Target(name, "openecr", port, process, uses_postgres=database_url is not None)


# moto_server's werkzeug writes one access-log line per request; openecr at --log-level
# warning writes none. The same entry point with the werkzeug logger at WARNING compares
# like with like; --moto-access-log runs the plain moto_server command instead.
_QUIET_MOTO = (
    "import logging, sys\n"
    "logging.getLogger('werkzeug').setLevel(logging.WARNING)\n"
    "from moto.server import main\n"
    "main(sys.argv[1:])\n"
)


def start_moto(workdir: Path, placement: Placement, access_log: bool) -> Target:
    port = free_port()
    if access_log:
        argv = ["moto_server", "-H", "127.0.0.1", "-p", str(port)]
    else:
        argv = [sys.executable, "-c", _QUIET_MOTO, "-H", "127.0.0.1", "-p", str(port)]
    process = ChildProcess("moto", placement.server(argv), workdir / "moto.log", _clean_env())
    process.start(http_ready(f"http://127.0.0.1:{port}/moto-api/", expect=None))
    return Target("moto", "moto", port, process)


def start_distribution(workdir: Path, placement: Placement) -> tuple[ChildProcess, int]:
    """Only for calibrating the load generator: a fast Go HTTP server on loopback."""
    port = free_port()
    root = workdir / "distribution"
    config = workdir / "distribution.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    process = ChildProcess(
        "distribution",
        placement.server(["docker-registry", "serve", str(config)]),
        workdir / "distribution.log",
    )
    process.start(http_ready(f"http://127.0.0.1:{port}/v2/"))
    return process, port


def fill(target: Target, images: int) -> None:
    """The read repository with ``images`` images, and an empty write repository."""
    ecr = target.client()
    started = time.perf_counter()
    for repository in (READ_REPO, WRITE_REPO):
        ecr.create_repository(repositoryName=repository)
        if target.kind == "moto":
            continue  # moto implements no layer upload and checks no layers
        for blob in (CONFIG, LAYER):
            upload = ecr.initiate_layer_upload(repositoryName=repository)
            ecr.upload_layer_part(
                repositoryName=repository,
                uploadId=upload["uploadId"],
                partFirstByte=0,
                partLastByte=len(blob) - 1,
                layerPartBlob=blob,
            )
            ecr.complete_layer_upload(
                repositoryName=repository,
                uploadId=upload["uploadId"],
                layerDigests=[_digest(blob)],
            )
    for i in range(images):
        tag = f"img-{i:04d}"
        ecr.put_image(
            repositoryName=READ_REPO,
            imageManifest=manifest_for(tag),
            imageManifestMediaType=OCI_MANIFEST,
            imageTag=tag,
        )
    target.setup_seconds = time.perf_counter() - started


# -- the run -------------------------------------------------------------------------------


def check_responses(targets: list[Target], operations: list[str], images: int) -> list[str]:
    """One request of each operation against each server: status, items, size."""
    rows = []
    problems = []
    for operation in operations:
        for target in targets:
            if operation == "PutImage":
                payload = put_image_payload(f"check-{target.name}")
            else:
                payload = read_payloads(images)[operation]
            body, headers = target.signed(operation, payload)
            response = httpx.post(f"{target.url}/", content=body, headers=headers, timeout=30)
            try:
                items = count_items(operation, response.json())
            except ValueError:
                items = "(not JSON)"
            rows.append(
                [operation, target.name, response.status_code, items, len(response.content)]
            )
            if response.status_code != 200:
                problems.append(
                    f"{target.name} {operation}: HTTP {response.status_code} {response.text[:300]}"
                )
    print(table(["operation", "server", "status", "items", "bytes"], rows))
    return problems


def load_generator_ceiling(workdir: Path, placement: Placement, pool_size: int) -> None:
    """wrk with the PutImage pool script against a fast Go server: the generator's limit."""
    distribution, port = start_distribution(workdir, placement)
    try:
        fake = Target("calibration", "moto", port, distribution)
        pool = [fake.raw("PutImage", put_image_payload(f"cal-{i:05d}")) for i in range(pool_size)]
        # Distribution answers POST / from its router without touching storage; the status
        # does not matter here, only how fast wrk cycles through pre-signed requests.
        result = run_wrk(
            f"http://127.0.0.1:{port}/",
            pool,
            connections=32,
            duration_s=3,
            max_requests=10_000_000,
            workdir=workdir,
            placement=placement,
        )
    finally:
        distribution.stop()
    statuses = ", ".join(f"{s}x{n}" for s, n in sorted(result.statuses.items()))
    print(
        f"wrk + Lua cycling {pool_size:,} pre-signed PutImage requests "
        f"({len(pool[0]):,} bytes each) against Distribution (POST /), 32 connections, "
        f"3 s: {result.rps:,.0f} req/s (statuses: {statuses}; socket errors: "
        f"{sum(result.socket_errors.values())})"
    )


def measure(
    targets: list[Target],
    operations: list[str],
    connection_counts: list[int],
    args: argparse.Namespace,
    workdir: Path,
    placement: Placement,
) -> None:
    for operation in operations:
        for connections in connection_counts:
            # Rotate the order so slow drift on a shared machine hits every server alike.
            order = targets[:] if connections == connection_counts[0] else targets[::-1]
            for target in order:
                _one_run(target, operation, connections, args, workdir, placement)


def _one_run(
    target: Target,
    operation: str,
    connections: int,
    args: argparse.Namespace,
    workdir: Path,
    placement: Placement,
) -> None:
    def pool(label: str, size: int) -> list[bytes]:
        if operation != "PutImage":
            return [target.raw(operation, read_payloads(args.images)[operation])]
        # Signed just before use: X-Amz-Date stays valid for 15 minutes.
        return [
            target.raw(operation, put_image_payload(f"{label}{connections}-{i:06d}"))
            for i in range(size)
        ]

    writes = operation == "PutImage"
    if args.warmup > 0:
        warm_size = args.writes // 10 if writes else 1
        run_wrk(
            f"{target.url}/",
            pool("warm", warm_size),
            connections=connections,
            duration_s=args.warmup,
            max_requests=warm_size if writes else args.max_requests,
            workdir=workdir,
            placement=placement,
        )
    requests = pool("run", args.writes)
    cpu_before = target.process.cpu_seconds()
    database_cpu_before = postgres_cpu_seconds()
    result = run_wrk(
        f"{target.url}/",
        requests,
        connections=connections,
        duration_s=args.duration,
        max_requests=args.writes if writes else args.max_requests,
        workdir=workdir,
        placement=placement,
    )
    per_request = 1000 / max(1, result.requests)
    cpu_ms = (target.process.cpu_seconds() - cpu_before) * per_request
    # Nothing else uses the PostgreSQL server during a run.
    database_cpu = ""
    if target.uses_postgres:
        database_ms = (postgres_cpu_seconds() - database_cpu_before) * per_request
        database_cpu = f"  PostgreSQL CPU {database_ms:.2f} ms/req"
    target.results[(operation, connections)] = result
    flag = "" if result.errors == 0 else f"  ERRORS {result.error_summary()}"
    print(
        f"  {operation:<22} c={connections:<3} {target.name:<15} "
        f"{result.rps:>9.1f} req/s  p50 {result.p50_ms:8.2f} ms  "
        f"p99 {result.p99_ms:8.2f} ms  server CPU {cpu_ms:.2f} ms/req{database_cpu}{flag}",
        flush=True,
    )


def report(targets: list[Target], operations: list[str], connection_counts: list[int]) -> list[str]:
    rows = []
    invalid = []
    for operation in operations:
        for connections in connection_counts:
            for target in targets:
                result = target.results.get((operation, connections))
                if result is None:
                    continue
                rows.append(
                    [
                        operation,
                        connections,
                        target.name,
                        f"{result.rps:,.1f}",
                        f"{result.p50_ms:.2f}",
                        f"{result.p99_ms:.2f}",
                        f"{result.requests:,}",
                        f"{result.duration_s:.1f}" + ("*" if result.capped else ""),
                        result.error_summary(),
                    ]
                )
                if result.errors:
                    invalid.append(
                        f"{operation} c={connections} {target.name}: {result.error_summary()}"
                        + (
                            f"\n    first error response: {result.first_error!r}"
                            if result.first_error
                            else ""
                        )
                    )
    print(
        table(
            [
                "operation",
                "conns",
                "server",
                "req/s",
                "p50 ms",
                "p99 ms",
                "requests",
                "s",
                "non-2xx/errors",
            ],
            rows,
        )
    )
    print("(* = the run stopped at its request cap before the time limit)")

    moto_target = next((t for t in targets if t.kind == "moto"), None)
    openecr_targets = [t for t in targets if t.kind == "openecr"]
    if moto_target is None or not openecr_targets:
        return invalid
    print(
        "\nRatios openecr/moto (req/s above 1: openecr serves more; "
        "p99 below 1: openecr answers faster)"
    )
    headers = ["operation", "conns"]
    for target in openecr_targets:
        backend = target.name.removeprefix("openecr-")
        headers += [f"{backend} req/s", f"{backend} p99"]
    ratio_rows = []
    for operation in operations:
        for connections in connection_counts:
            base = moto_target.results.get((operation, connections))
            if base is None:
                continue
            row: list[object] = [operation, connections]
            for target in openecr_targets:
                result = target.results.get((operation, connections))
                if result is None:
                    row += ["n/a", "n/a"]
                    continue
                row += [ratio(result.rps, base.rps), ratio(result.p99_ms, base.p99_ms)]
            ratio_rows.append(row)
    print(table(headers, ratio_rows))
    return invalid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per load run")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per run")
    parser.add_argument("--connections", default="8,32", help="comma-separated counts")
    parser.add_argument("--images", type=int, default=1000, help="images in the read repository")
    parser.add_argument(
        "--writes", type=int, default=20_000, help="pre-signed PutImage requests per run (its cap)"
    )
    parser.add_argument(
        "--max-requests", type=int, default=2_000_000, help="request cap of each read run"
    )
    parser.add_argument("--operations", default=",".join(OPERATIONS))
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-moto", action="store_true", help="openecr alone (no ratios)")
    parser.add_argument(
        "--analyze-postgres",
        action="store_true",
        help="run ANALYZE on the scratch database after setup (what autovacuum would do)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and wrk")
    parser.add_argument("--moto-access-log", action="store_true", help="plain moto_server")
    parser.add_argument("--skip-calibration", action="store_true")
    args = parser.parse_args()

    operations = [op for op in args.operations.split(",") if op]
    unknown = set(operations) - set(OPERATIONS)
    if unknown:
        parser.error(f"unknown operations: {sorted(unknown)}")
    connection_counts = [int(c) for c in args.connections.split(",")]
    placement = Placement(None, None) if args.no_pin else Placement()

    print(f"# ECR API benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
    print(
        f"openecr {openecr.__version__}, moto {moto.__version__}, boto3 {boto3.__version__} "
        f"(botocore {botocore.__version__}), Python {sys.version.split()[0]}"
    )
    print(f"{machine_note()}; {placement.describe()}; PostgreSQL not pinned")
    if not args.skip_postgres:
        print(
            f"PostgreSQL: autovacuum {postgres_setting('autovacuum')}; planner statistics "
            + (
                "refreshed with ANALYZE after setup (--analyze-postgres)"
                if args.analyze_postgres
                else "as openecr leaves them (no ANALYZE by the benchmark)"
            )
        )
    print(
        f"runs: {args.duration:g} s (+{args.warmup:g} s warm-up) per operation, connection "
        f"count and server; read cap {args.max_requests:,} requests, PutImage cap "
        f"{args.writes:,} distinct pre-signed requests; wrk 1 thread, timeout 10 s"
    )

    workdir = Path(tempfile.mkdtemp(prefix="openecr-bench-ecr-"))
    invalid: list[str] = []
    targets: list[Target] = []
    try:
        with ExitStack() as stack:
            if not args.skip_calibration:
                print("\n## Load generator ceiling")
                load_generator_ceiling(workdir, placement, args.writes)

            print("\n## Servers")
            if not args.skip_sqlite:
                targets.append(start_openecr("openecr-sqlite", workdir, placement, None))
                stack.callback(targets[-1].process.stop)
            database_url = None
            if not args.skip_postgres:
                database_url = stack.enter_context(postgres_database())
                targets.append(start_openecr("openecr-pg", workdir, placement, database_url))
                stack.callback(targets[-1].process.stop)
            if not args.skip_moto:
                targets.append(start_moto(workdir, placement, args.moto_access_log))
                stack.callback(targets[-1].process.stop)
            for target in targets:
                print(f"{target.name}: pid {target.process.pid}, {target.url}")

            print(f"\n## Setup: 2 repositories, {args.images:,} images (boto3, sequential)")
            setup_rows = []
            for target in targets:
                fill(target, args.images)
                setup_rows.append(
                    [
                        target.name,
                        f"{target.setup_seconds:.1f}",
                        f"{target.setup_seconds / max(1, args.images) * 1000:.2f}",
                    ]
                )
            print(table(["server", "setup s", "ms per PutImage (incl. client)"], setup_rows))
            if database_url is not None and args.analyze_postgres:
                postgres_analyze(database_url)
                print("ANALYZE run on the openecr-pg database")

            print("\n## One request of each operation (the work each server does)")
            invalid += check_responses(targets, operations, args.images)

            print("\n## Load runs")
            measure(targets, operations, connection_counts, args, workdir, placement)

            print("\n## Results")
            invalid += report(targets, operations, connection_counts)

            for target in targets:
                problems = target.process.log_problems()
                if problems:
                    print(f"\n{target.name} log, warning/error lines (first {len(problems)}):")
                    for line in problems:
                        print(f"  {line[:400]}")
            print(f"\n{machine_note()} at the end")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    if invalid:
        print("\nINVALID RUN: some requests failed")
        for line in invalid:
            print(f"  {line}")
        return 1
    print("\nAll responses were 2xx; no socket errors.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
