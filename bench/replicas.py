"""Scale-out: openecr on PostgreSQL + S3 against CNCF Distribution's S3 driver, and
/v2/ request throughput with 1, 2 and 3 openecr replicas.

One moto S3 server (loopback) holds two buckets, ``openecr`` and ``distribution``; one
scratch PostgreSQL database holds openecr's metadata.

(a) push and pull. Two openecr replicas on the same database and bucket, one plain (blob
    bytes stream through it) and one with ``--blob-redirect`` (blob GETs answer 307 to a
    presigned S3 URL); two Distribution 2.8 instances on the same bucket and root
    directory, one with ``redirect: disable: true`` and one with the default (redirects).
    Each repetition builds fresh OCI layouts of random, uncompressed tar layers (``big``:
    5 x 20 MiB, ``many``: 100 x 4 KiB) and, for each registry, times ``skopeo copy
    --preserve-digests`` from the layout to the plain instance (push), back from the plain
    instance (pull) and back from the redirecting instance (pull, redirect). Every pulled
    manifest digest is checked against the pushed one.

(b) request throughput. Three plain openecr replicas on the same storage (the one from (a)
    and two more). For 1, 2 and 3 replicas, one load generator per replica runs at the
    same time against its replica, the total connection count split evenly among them:
    wrk for ``GET /v2/<repo>/manifests/v1``, ab for ``HEAD /v2/<repo>/blobs/<digest>`` (of
    the ~1 KiB config blob and of a 20 MiB layer). Figures are sums over the generators;
    non-2xx responses and socket errors are counted. Every request carries ``Authorization:
    Basic`` with a GetAuthorizationToken token (one token, valid on every replica). The CPU
    seconds used by the replicas, moto, the load generators and all PostgreSQL processes
    during each run are printed: with two cores, they say what bounds the scaling.

    Each configuration runs ``--rounds`` times (the replica counts in alternating order)
    and the medians are reported.

Reading (b) on a two-core machine: the replicas, PostgreSQL, moto and the load generators
share both cores, so replicas beyond the first cannot add capacity once the cores are
busy; a replica is one event loop, so one replica can use about one core and a second one
can at best take the other. What carries over to bigger machines is the cost per request
(``req/replica-CPU-s``): if it stays flat from 1 to 3 replicas, replicas add no overhead
of their own and throughput grows with the cores given to them. When other programs keep
the machine busy (the ``machine`` column near 2.00 before the replicas' share), every
extra process gets its own share of the CPU from the kernel's scheduler, which can make
more replicas look faster for that reason alone.

Usage: python bench/replicas.py [--repetitions 2] [--rounds 2] [--duration 5]
       [--connections 24] [--replicas 1,2,3] [--skip-copies]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import moto as moto_package
from _common import (
    ChildProcess,
    LoadResult,
    Placement,
    free_port,
    http_ready,
    machine_note,
    postgres_database,
    ratio,
    raw_http_request,
    run_ab_head,
    run_wrk,
    table,
)
from botocore.config import Config
from oci import MANIFEST_ACCEPT, CopyFailed, ImageSpec, build_layout, pulled_manifest_digest

import openecr

MiB = 1024 * 1024
REGION = "us-east-1"
ACCESS_KEY = "AKIAOPENECRBENCH0001"
SECRET_KEY = "openecr/bench/secret/key/000000000000000"
S3_KEY = "testing"
S3_SECRET = "testing"
NO_PIN = Placement(None, None)


def clean_env() -> dict[str, str]:
    # AWS_CA_BUNDLE and friends would reach Distribution's AWS SDK (which then refuses to
    # start on plain HTTP) and openecr's S3 client; every setting is given explicitly.
    return {k: v for k, v in os.environ.items() if not k.startswith(("OPENECR_", "AWS_"))}


# -- processes ------------------------------------------------------------------------------


@dataclass
class Moto:
    process: ChildProcess
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def create_bucket(self, name: str) -> None:
        boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
        ).create_bucket(Bucket=name)

    def request_lines(self) -> int:
        """moto's access log has one line per S3 request."""
        try:
            with open(self.process.log_path, "rb") as log:
                return sum(1 for line in log if b'HTTP/1.1" ' in line)
        except OSError:
            return 0


def start_moto(workdir: Path) -> Moto:
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = ChildProcess("moto", argv, workdir / "moto.log", clean_env())
    process.start(http_ready(f"http://127.0.0.1:{port}/moto-api/", expect=None))
    return Moto(process, port)


@dataclass
class System:
    """One registry under test: a plain instance and a redirecting one on shared storage."""

    name: str
    plain: ChildProcess
    plain_port: int
    redirect: ChildProcess
    redirect_port: int
    password: str | None = None  # openecr's token password; None for Distribution
    copies: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def creds(self, side: str) -> list[str]:
        if self.password is None:
            return [f"--{side}-no-creds"]
        return [f"--{side}-creds", f"AWS:{self.password}"]

    def prepare(self, repository: str) -> None:
        if self.password is not None:
            ecr_client(self.plain_port).create_repository(repositoryName=repository)


def ecr_client(port: int) -> Any:
    return boto3.client(
        "ecr",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def token_password(port: int) -> str:
    token = ecr_client(port).get_authorization_token()["authorizationData"][0]
    return base64.b64decode(token["authorizationToken"]).decode().partition(":")[2]


def start_openecr(
    name: str, workdir: Path, database_url: str, moto: Moto, *extra: str
) -> tuple[ChildProcess, int]:
    port = free_port()
    argv = [
        sys.executable, "-m", "openecr", "serve",
        "--host", "127.0.0.1", "--port", str(port),
        "--data-dir", str(workdir / name),
        "--database-url", database_url,
        "--blob-store", "s3://openecr/registry",
        "--s3-endpoint-url", moto.endpoint,
        "--s3-region", REGION,
        "--s3-access-key-id", S3_KEY,
        "--s3-secret-access-key", S3_SECRET,
        "--access-key-id", ACCESS_KEY, "--secret-access-key", SECRET_KEY,
        "--region", REGION, "--log-level", "warning",
        *extra,
    ]  # fmt: skip
    process = ChildProcess(name, argv, workdir / f"{name}.log", clean_env())
    process.start(http_ready(f"http://127.0.0.1:{port}/healthz"))
    return process, port


def start_distribution(
    name: str, workdir: Path, moto: Moto, *, redirect: bool
) -> tuple[ChildProcess, int]:
    port = free_port()
    config = workdir / f"{name}.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        "storage:\n"
        "  cache:\n    blobdescriptor: inmemory\n"
        "  s3:\n"
        f"    accesskey: {S3_KEY}\n    secretkey: {S3_SECRET}\n    region: {REGION}\n"
        f"    regionendpoint: {moto.endpoint}\n"
        "    bucket: distribution\n    rootdirectory: /registry\n"
        "    secure: false\n    v4auth: true\n"
        + ("" if redirect else "  redirect:\n    disable: true\n")
        + f"http:\n  addr: 127.0.0.1:{port}\n"
        "  secret: openecr-bench-not-a-secret\n"
    )
    process = ChildProcess(
        name, ["docker-registry", "serve", str(config)], workdir / f"{name}.log", clean_env()
    )
    process.start(http_ready(f"http://127.0.0.1:{port}/v2/"))
    return process, port


# -- (a) push and pull ------------------------------------------------------------------------


def skopeo(argv: list[str], timeout: float = 600) -> float:
    started = time.perf_counter()
    completed = subprocess.run(
        ["skopeo", "copy", "--quiet", "--retry-times", "0", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise CopyFailed(f"skopeo copy {' '.join(argv)} failed:\n{completed.stderr.strip()}")
    return elapsed


def push_and_pull(
    system: System, layout: Any, spec: ImageSpec, repository: str, work: Path
) -> None:
    system.prepare(repository)
    plain = f"docker://127.0.0.1:{system.plain_port}/{repository}:{layout.tag}"
    redirecting = f"docker://127.0.0.1:{system.redirect_port}/{repository}:{layout.tag}"
    times = {}
    times["push"] = skopeo(
        [
            "--preserve-digests",
            "--dest-tls-verify=false",
            *system.creds("dest"),
            f"oci:{layout.path}:{layout.tag}",
            plain,
        ]
    )
    for copy, source in (("pull", plain), ("pull, redirect", redirecting)):
        target = work / f"pull-{system.name}-{spec.name}"
        try:
            times[copy] = skopeo(
                [
                    "--preserve-digests",
                    "--src-tls-verify=false",
                    *system.creds("src"),
                    source,
                    f"oci:{target}:{layout.tag}",
                ]
            )
            pulled = pulled_manifest_digest(target)
            if pulled != layout.manifest_digest:
                raise CopyFailed(
                    f"{system.name} {copy} {repository}: pulled {pulled}, pushed "
                    f"{layout.manifest_digest}"
                )
        finally:
            shutil.rmtree(target, ignore_errors=True)
    for copy, seconds in times.items():
        system.copies.setdefault((spec.name, copy), []).append(seconds)
    print(
        f"  {spec.name:<5} {system.name:<13} "
        + "   ".join(f"{copy} {seconds:6.2f} s" for copy, seconds in times.items()),
        flush=True,
    )


def report_copies(systems: list[System], specs: list[ImageSpec]) -> None:
    print("\n### (a) push and pull wall time (skopeo, seconds)")
    rows = []
    ratio_rows = []
    for spec in specs:
        total_mib = spec.layers * spec.layer_bytes / MiB
        for copy in ("push", "pull", "pull, redirect"):
            medians = {}
            for system in systems:
                times = system.copies.get((spec.name, copy), [])
                if not times:
                    continue
                medians[system.name] = statistics.median(times)
                rows.append(
                    [
                        f"{spec.name} ({spec.describe()})",
                        copy,
                        system.name,
                        " ".join(f"{t:.2f}" for t in times),
                        f"{medians[system.name]:.2f}",
                        f"{total_mib / medians[system.name]:.1f}",
                    ]
                )
            if len(medians) == 2:
                ratio_rows.append(
                    [spec.name, copy, ratio(medians["openecr"], medians["distribution"])]
                )
    print(table(["image", "copy", "registry", "runs s", "median s", "MiB/s"], rows))
    print("\nwall-time ratio openecr/Distribution (above 1: openecr takes longer)")
    print(table(["image", "copy", "ratio (medians)"], ratio_rows))


# -- (b) throughput over replicas --------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_backends(database_url: str) -> list[int]:
    """PIDs of the PostgreSQL backends connected to the benchmark's database (the
    replicas' pooled connections)."""
    name = database_url.rsplit("/", 1)[1]
    completed = subprocess.run(
        [
            "psql",
            database_url,
            "-tA",
            "-c",
            f"SELECT pid FROM pg_stat_activity WHERE datname = '{name}' "
            "AND pid <> pg_backend_pid()",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [int(pid) for pid in completed.stdout.split()]


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent not idle since boot (every user of the machine)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class SpreadRun:
    replicas: int
    kind: str
    results: list[LoadResult]
    wall_s: float
    cpu: dict[str, float]
    s3_requests: int

    @property
    def rps(self) -> float:
        return sum(r.rps for r in self.results)

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.results)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.results)

    def error_summary(self) -> str:
        parts = [r.error_summary() for r in self.results if r.errors]
        return " | ".join(parts) if parts else "-"


def spread_load(
    kind: str,
    ports: list[int],
    make_run: Callable[[int, int, float], LoadResult],
    connections: int,
    duration: float,
    warmup: float,
    processes: dict[str, list[int]],
    moto: Moto,
) -> SpreadRun:
    per_replica = max(1, connections // len(ports))

    def run_all(seconds: float) -> list[LoadResult]:
        with ThreadPoolExecutor(max_workers=len(ports)) as pool:
            return list(pool.map(lambda p: make_run(p, per_replica, seconds), ports))

    if warmup > 0:
        run_all(warmup)
    before = {pid: cpu_seconds(pid) for pids in processes.values() for pid in pids}
    busy_before = machine_busy_seconds()
    children_before = children_cpu_seconds()
    s3_before = moto.request_lines()
    started = time.perf_counter()
    results = run_all(duration)
    wall = time.perf_counter() - started
    machine = machine_busy_seconds() - busy_before
    time.sleep(0.3)  # moto's access log catches up
    # A process gone meanwhile (a pooled connection closed) counts as 0, not negative.
    cpu = {
        name: sum(max(0.0, cpu_seconds(pid) - before[pid]) for pid in pids)
        for name, pids in processes.items()
    }
    cpu["machine"] = machine
    cpu["wrk/ab"] = children_cpu_seconds() - children_before
    return SpreadRun(len(ports), kind, results, wall, cpu, moto.request_lines() - s3_before)


def report_spread(runs: list[SpreadRun], connections: int) -> None:
    print(
        f"\n### (b) aggregate /v2/ throughput over replicas ({connections} connections in all; "
        "medians over the rounds)"
    )
    groups: dict[tuple[str, int], list[SpreadRun]] = {}
    for run in runs:
        groups.setdefault((run.kind, run.replicas), []).append(run)
    base: dict[str, float] = {}
    rows = []
    for (kind, replicas), group in groups.items():
        rps = statistics.median(run.rps for run in group)
        if replicas == 1:
            base[kind] = rps
        typical = min(group, key=lambda run: abs(run.rps - rps))
        # Requests answered per CPU second the replicas used: their cost per request, which
        # the other users of the machine do not change (they only change the share).
        per_core = sum(run.requests for run in group) / max(
            sum(run.cpu["replicas"] for run in group), 1e-9
        )

        def cores(name: str, group: list[SpreadRun] = group) -> str:
            return f"{statistics.median(run.cpu[name] / run.wall_s for run in group):.2f}"

        rows.append(
            [
                kind,
                replicas,
                " ".join(f"{run.rps:.0f}" for run in group),
                f"{rps:,.0f}",
                ratio(rps, base.get(kind, 0.0)),
                f"{max(r.p50_ms for r in typical.results):.1f}",
                f"{max(r.p99_ms for r in typical.results):.1f}",
                f"{sum(run.requests for run in group):,}",
                f"{per_core:,.0f}",
                cores("replicas"),
                cores("postgres"),
                cores("moto"),
                cores("wrk/ab"),
                cores("machine"),
                f"{sum(r.s3_requests for r in group) / max(sum(r.requests for r in group), 1):.2f}",
                " | ".join(run.error_summary() for run in group if run.errors) or "-",
            ]
        )
    print(
        table(
            [
                "request",
                "replicas",
                "runs req/s",
                "req/s",
                "x 1 replica",
                "p50 ms",
                "p99 ms",
                "requests",
                "req/replica-CPU-s",
                "cores: replicas",
                "postgres",
                "moto",
                "wrk/ab",
                "machine",
                "S3 req/request",
                "non-2xx/errors",
            ],
            rows,
        )
    )
    print(
        "(p50/p99: the worst generator's, in the run nearest the median. cores: CPU seconds "
        "per wall second during the measured runs, of the replicas, of the PostgreSQL "
        "backends of their connections, of moto, of the load generators, and of the whole "
        "machine (all its users: 2.00 is every core busy). req/replica-CPU-s: requests per "
        "CPU second of the replicas. S3 req/request: moto access-log lines per answered "
        "request.)"
    )


# -- main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--big-layers", type=int, default=5)
    parser.add_argument("--big-layer-mib", type=int, default=20)
    parser.add_argument("--small-layers", type=int, default=100)
    parser.add_argument("--small-layer-kib", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=24, help="in all, split evenly")
    parser.add_argument("--max-requests", type=int, default=2_000_000)
    parser.add_argument("--replicas", default="1,2,3")
    parser.add_argument("--rounds", type=int, default=2, help="load runs per configuration")
    parser.add_argument("--skip-copies", action="store_true", help="only part (b)")
    args = parser.parse_args()

    specs = [
        ImageSpec("big", args.big_layers, args.big_layer_mib * MiB),
        ImageSpec("many", args.small_layers, args.small_layer_kib * 1024),
    ]
    replica_counts = [int(n) for n in args.replicas.split(",")]
    versions = [
        subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()
        for argv in (["skopeo", "--version"], ["docker-registry", "--version"])
    ]
    print(f"# Replicas benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
    print(
        f"openecr {openecr.__version__} (PostgreSQL + S3) vs {versions[1]} (S3 driver), both on "
        f"moto {moto_package.__version__}'s S3 server; {versions[0]}"
    )
    print(f"{machine_note()}; nothing pinned (servers, moto, PostgreSQL, clients share both)")

    workdir = Path(tempfile.mkdtemp(prefix="openecr-bench-replicas-"))
    invalid: list[str] = []
    try:
        with ExitStack() as stack:
            moto = start_moto(workdir)
            stack.callback(moto.process.stop)
            for bucket in ("openecr", "distribution"):
                moto.create_bucket(bucket)
            database_url = stack.enter_context(postgres_database())
            a1, a1_port = start_openecr("openecr-1", workdir, database_url, moto)
            stack.callback(a1.stop)
            ar, ar_port = start_openecr(
                "openecr-redirect", workdir, database_url, moto, "--blob-redirect"
            )
            stack.callback(ar.stop)
            d1, d1_port = start_distribution("distribution", workdir, moto, redirect=False)
            stack.callback(d1.stop)
            dr, dr_port = start_distribution("distribution-redirect", workdir, moto, redirect=True)
            stack.callback(dr.stop)
            password = token_password(a1_port)
            systems = [
                System("openecr", a1, a1_port, ar, ar_port, password),
                System("distribution", d1, d1_port, dr, dr_port),
            ]
            for process in (moto.process, a1, ar, d1, dr):
                print(f"{process.name}: pid {process.pid}")

            first_big: tuple[str, Any] | None = None
            if not args.skip_copies:
                print("\n## (a) push and pull")
            try:
                for repetition in range(1, 1 + (0 if args.skip_copies else args.repetitions)):
                    for spec in specs:
                        layout = build_layout(
                            workdir / f"layout-{spec.name}-{repetition}", spec, "v1"
                        )
                        repository = f"bench/{spec.name}-{repetition}"
                        order = systems if repetition % 2 else systems[::-1]
                        for system in order:
                            push_and_pull(system, layout, spec, repository, workdir)
                        if spec.name == "big" and first_big is None:
                            first_big = (repository, layout)
                        shutil.rmtree(layout.path)
            except CopyFailed as exc:
                invalid.append(str(exc))
            if not args.skip_copies:
                report_copies(systems, specs)

            # (b): the plain replica from (a) and two more; the redirecting one is stopped.
            ar.stop()
            if first_big is None:
                spec = ImageSpec("big", 1, 20 * MiB)
                layout = build_layout(workdir / "layout-b", spec, "v1")
                systems[0].prepare("bench/b")
                skopeo(
                    [
                        "--preserve-digests",
                        "--dest-tls-verify=false",
                        *systems[0].creds("dest"),
                        f"oci:{layout.path}:v1",
                        f"docker://127.0.0.1:{a1_port}/bench/b:v1",
                    ]
                )
                first_big = ("bench/b", layout)
            repository, layout = first_big
            config_digest = pulled_config_digest(a1_port, repository, password)
            replicas = [(a1, a1_port)]
            for i in range(2, max(replica_counts) + 1):
                process, port = start_openecr(f"openecr-{i}", workdir, database_url, moto)
                stack.callback(process.stop)
                replicas.append((process, port))
            print(f"\n{machine_note()}")
            print(
                f"\n## (b) /v2/ requests against {repository}:v1 through "
                f"{len(replicas)} replicas (pids {', '.join(str(p.pid) for p, _ in replicas)})"
            )
            auth = {
                "Authorization": "Basic " + base64.b64encode(f"AWS:{password}".encode()).decode()
            }
            manifest_path = f"/v2/{repository}/manifests/v1"
            kinds: dict[str, Callable[[int, int, float], LoadResult]] = {}

            def manifest_get(port: int, conns: int, seconds: float) -> LoadResult:
                host = f"127.0.0.1:{port}"
                raw = raw_http_request(
                    "GET", manifest_path, host, {"Accept": MANIFEST_ACCEPT, **auth}
                )
                return run_wrk(
                    f"http://{host}/",
                    [raw],
                    connections=conns,
                    duration_s=seconds,
                    max_requests=args.max_requests,
                    workdir=workdir,
                    placement=NO_PIN,
                )

            def blob_head(digest: str) -> Callable[[int, int, float], LoadResult]:
                def run(port: int, conns: int, seconds: float) -> LoadResult:
                    return run_ab_head(
                        f"http://127.0.0.1:{port}/v2/{repository}/blobs/{digest}",
                        auth,
                        connections=conns,
                        duration_s=seconds,
                        max_requests=args.max_requests,
                        workdir=workdir,
                        placement=NO_PIN,
                    )

                return run

            kinds["manifest GET"] = manifest_get
            kinds["blob HEAD (config, ~1 KiB)"] = blob_head(config_digest)
            kinds[f"blob HEAD (layer, {args.big_layer_mib} MiB)"] = blob_head(
                layout.first_layer_digest
            )
            runs = []
            for round_number in range(args.rounds):
                # Counts alternate direction between rounds so drift in the machine's other
                # load does not fall on one replica count only.
                counts = replica_counts if round_number % 2 == 0 else replica_counts[::-1]
                for kind, make_run in kinds.items():
                    for count in counts:
                        chosen = replicas[:count]
                        run = spread_load(
                            kind,
                            [port for _, port in chosen],
                            make_run,
                            args.connections,
                            args.duration,
                            args.warmup,
                            {
                                "replicas": [p.pid for p, _ in chosen],
                                "postgres": postgres_backends(database_url),
                                "moto": [moto.process.pid],
                            },
                            moto,
                        )
                        runs.append(run)
                        flag = "" if run.errors == 0 else f"  ERRORS {run.error_summary()}"
                        print(
                            f"  round {round_number + 1}  {kind:<28} replicas={count}  "
                            f"{run.rps:9.1f} req/s  replica cores "
                            f"{run.cpu['replicas'] / run.wall_s:.2f}  machine "
                            f"{run.cpu['machine'] / run.wall_s:.2f}{flag}",
                            flush=True,
                        )
                        if run.errors:
                            invalid.append(f"{kind} x{count}: {run.error_summary()}")
                            for result in run.results:
                                if result.first_error:
                                    invalid.append(f"    first error: {result.first_error!r}")
            report_spread(runs, args.connections)
            for process in (a1, *(p for p, _ in replicas[1:]), d1, dr):
                report_log_problems(process)
            print(f"\n{machine_note()} at the end")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    if invalid:
        print("\nINVALID RUN:")
        for line in invalid:
            print(f"  {line}")
        return 1
    print("\nAll copies succeeded; all load responses were 2xx with no socket errors.")
    return 0


def report_log_problems(process: ChildProcess) -> None:
    """Warning and error lines of a server's log, counted by message (first 90 chars)."""
    problems = process.log_problems(limit=100_000, ignore='err.code="blob unknown"')
    if not problems:
        return
    counts: dict[str, int] = {}
    for line in problems:
        key = line
        if line.startswith("{"):
            with suppress(ValueError):
                key = str(json.loads(line).get("message", line))
        key = key[:90]
        counts[key] = counts.get(key, 0) + 1
    print(f"\n{process.name} log: {len(problems)} warning/error lines")
    for key, count in sorted(counts.items(), key=lambda item: -item[1])[:5]:
        print(f"  {count} x {key}")


def pulled_config_digest(port: int, repository: str, password: str) -> str:
    response = httpx.get(
        f"http://127.0.0.1:{port}/v2/{repository}/manifests/v1",
        headers={"Accept": MANIFEST_ACCEPT},
        auth=("AWS", password),
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["config"]["digest"])


if __name__ == "__main__":
    raise SystemExit(main())
