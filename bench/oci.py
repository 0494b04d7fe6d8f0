"""OCI /v2/ throughput: openecr (SQLite) against CNCF Distribution 2.8 (filesystem storage).

One run starts both registries side by side and, for each repetition, builds fresh OCI
image layouts from random data (a few large layers, and many small layers), pushes each
to both registries with ``skopeo copy oci:... docker://...`` and pulls it back into a new
layout, timing each copy. Then it drives a manifest GET with wrk and a blob HEAD with ab
at several connection counts. openecr requests carry ``Authorization: Basic`` with a
GetAuthorizationToken token; Distribution runs without authentication.

Usage: python bench/oci.py [--repetitions 3] [--duration 8] [--connections 8,32]
See bench/README.md.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
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
import httpx
from _common import (
    ChildProcess,
    LoadResult,
    Placement,
    free_port,
    http_ready,
    machine_note,
    ratio,
    raw_http_request,
    run_ab_head,
    run_wrk,
    table,
)
from botocore.config import Config

import openecr

REGION = "us-east-1"
ACCESS_KEY = "AKIAOPENECRBENCH0001"
SECRET_KEY = "openecr/bench/secret/key/000000000000000"
MiB = 1024 * 1024

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MANIFEST_ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


# -- image layouts -------------------------------------------------------------------------


@dataclass
class ImageSpec:
    name: str
    layers: int
    layer_bytes: int

    def describe(self) -> str:
        size = self.layer_bytes
        unit = f"{size // MiB} MiB" if size >= MiB else f"{size // 1024} KiB"
        return f"{self.layers} x {unit}"


@dataclass
class Layout:
    path: Path
    tag: str
    manifest_digest: str
    first_layer_digest: str
    total_bytes: int


def _write_blob(layout: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _tar_of(payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("data.bin")
        info.size = len(payload)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def build_layout(path: Path, spec: ImageSpec, tag: str) -> Layout:
    """An OCI image layout holding one image of uncompressed tar layers of random bytes."""
    (path / "blobs" / "sha256").mkdir(parents=True)
    (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    layers = []
    total = 0
    for _ in range(spec.layers):
        blob = _tar_of(os.urandom(spec.layer_bytes))
        descriptor = _write_blob(path, blob)
        layers.append({"mediaType": OCI_LAYER, **descriptor})
        total += len(blob)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
        }
    ).encode()
    config_descriptor = {"mediaType": OCI_CONFIG, **_write_blob(path, config)}
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_descriptor,
            "layers": layers,
        }
    ).encode()
    manifest_descriptor = {"mediaType": OCI_MANIFEST, **_write_blob(path, manifest)}
    manifest_descriptor["annotations"] = {"org.opencontainers.image.ref.name": tag}
    index = {"schemaVersion": 2, "manifests": [manifest_descriptor]}
    (path / "index.json").write_text(json.dumps(index))
    total += len(config) + len(manifest)
    return Layout(path, tag, manifest_descriptor["digest"], layers[0]["digest"], total)


def pulled_manifest_digest(path: Path) -> str | None:
    try:
        index = json.loads((path / "index.json").read_text())
        return str(index["manifests"][0]["digest"])
    except (OSError, ValueError, KeyError, IndexError):
        return None


# -- registries ----------------------------------------------------------------------------


@dataclass
class Registry:
    name: str
    port: int
    process: ChildProcess
    password: str | None = None  # openecr's token password; None for Distribution
    copies: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    loads: dict[tuple[str, int], LoadResult] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def auth_headers(self) -> dict[str, str]:
        if self.password is None:
            return {}
        token = base64.b64encode(f"AWS:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def creds_args(self, side: str) -> list[str]:
        if self.password is None:
            return [f"--{side}-no-creds"]
        return [f"--{side}-creds", f"AWS:{self.password}"]

    def prepare_repository(self, name: str) -> None:
        if self.password is not None:
            _ecr_client(self.port).create_repository(repositoryName=name)


def _ecr_client(port: int) -> Any:
    return boto3.client(
        "ecr",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def start_openecr(workdir: Path, placement: Placement) -> Registry:
    port = free_port()
    argv = [
        sys.executable, "-m", "openecr", "serve",
        "--host", "127.0.0.1", "--port", str(port),
        "--data-dir", str(workdir / "openecr"),
        "--access-key-id", ACCESS_KEY, "--secret-access-key", SECRET_KEY,
        "--region", REGION, "--log-level", "warning",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENECR_", "AWS_"))}
    process = ChildProcess("openecr", placement.server(argv), workdir / "openecr.log", env)
    process.start(http_ready(f"http://127.0.0.1:{port}/healthz"))
    token = _ecr_client(port).get_authorization_token()["authorizationData"][0]
    password = base64.b64decode(token["authorizationToken"]).decode().partition(":")[2]
    return Registry("openecr", port, process, password)


def start_distribution(workdir: Path, placement: Placement) -> Registry:
    port = free_port()
    config = workdir / "distribution.yml"
    # The Debian package's default configuration, on a private root and loopback address,
    # without the per-request access log (openecr at --log-level warning writes none).
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        "storage:\n"
        "  cache:\n    blobdescriptor: inmemory\n"
        f"  filesystem:\n    rootdirectory: {workdir / 'distribution'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        "  secret: openecr-bench-not-a-secret\n"
    )
    process = ChildProcess(
        "distribution",
        placement.server(["docker-registry", "serve", str(config)]),
        workdir / "distribution.log",
    )
    process.start(http_ready(f"http://127.0.0.1:{port}/v2/"))
    return Registry("distribution", port, process)


# -- the run -------------------------------------------------------------------------------


class CopyFailed(RuntimeError):
    pass


def skopeo_copy(argv: list[str], placement: Placement, timeout: float) -> float:
    started = time.perf_counter()
    completed = subprocess.run(
        placement.client(["skopeo", "copy", "--quiet", "--retry-times", "0", *argv]),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise CopyFailed(f"skopeo copy {' '.join(argv)} failed:\n{completed.stderr.strip()}")
    return elapsed


def push_and_pull(
    registry: Registry,
    layout: Layout,
    spec: ImageSpec,
    repository: str,
    workdir: Path,
    placement: Placement,
) -> None:
    registry.prepare_repository(repository)
    reference = f"docker://{registry.host}/{repository}:{layout.tag}"
    push = skopeo_copy(
        [
            "--preserve-digests",
            "--dest-tls-verify=false",
            *registry.creds_args("dest"),
            f"oci:{layout.path}:{layout.tag}",
            reference,
        ],
        placement,
        timeout=600,
    )
    registry.copies.setdefault((spec.name, "push"), []).append(push)
    target = workdir / f"pull-{registry.name}-{spec.name}"
    try:
        pull = skopeo_copy(
            [
                # Without it skopeo gzips the uncompressed layers while writing the layout,
                # which would time the client's gzip, not the registry.
                "--preserve-digests",
                "--src-tls-verify=false",
                *registry.creds_args("src"),
                reference,
                f"oci:{target}:{layout.tag}",
            ],
            placement,
            timeout=600,
        )
        registry.copies.setdefault((spec.name, "pull"), []).append(pull)
        pulled = pulled_manifest_digest(target)
        if pulled != layout.manifest_digest:
            raise CopyFailed(
                f"{registry.name} {repository}: pulled manifest {pulled}, pushed "
                f"{layout.manifest_digest}"
            )
    finally:
        shutil.rmtree(target, ignore_errors=True)
    print(
        f"  {spec.name:<6} {registry.name:<13} push {push:7.2f} s   pull {pull:7.2f} s",
        flush=True,
    )


def check_request(
    registry: Registry, method: str, path: str, headers: dict[str, str]
) -> tuple[int, str]:
    response = httpx.request(method, f"http://{registry.host}{path}", headers=headers, timeout=30)
    detail = (
        f"{response.headers.get('content-type', '-')}, "
        f"length {response.headers.get('content-length', '-')}, "
        f"digest {response.headers.get('docker-content-digest', '-')[:19]}"
    )
    return response.status_code, detail


def measure_requests(
    registries: list[Registry],
    repository: str,
    layout: Layout,
    connection_counts: list[int],
    args: argparse.Namespace,
    workdir: Path,
    placement: Placement,
) -> list[str]:
    manifest_path = f"/v2/{repository}/manifests/{layout.tag}"
    blob_path = f"/v2/{repository}/blobs/{layout.first_layer_digest}"
    problems = []
    rows = []
    for registry in registries:
        headers = {"Accept": MANIFEST_ACCEPT, **registry.auth_headers}
        for method, path in (("GET", manifest_path), ("HEAD", blob_path)):
            status, detail = check_request(registry, method, path, headers)
            rows.append([f"{method} {path[:60]}", registry.name, status, detail])
            if status != 200:
                problems.append(f"{registry.name} {method} {path}: HTTP {status}")
    print(table(["request", "registry", "status", "response"], rows))
    if problems:
        return problems

    for connections in connection_counts:
        for kind in ("manifest GET", "blob HEAD"):
            order = registries if connections == connection_counts[0] else registries[::-1]
            for registry in order:
                headers = {"Accept": MANIFEST_ACCEPT, **registry.auth_headers}
                for seconds in (args.warmup, args.duration):
                    if seconds <= 0:
                        continue
                    if kind == "manifest GET":
                        raw = raw_http_request("GET", manifest_path, registry.host, headers)
                        result = run_wrk(
                            f"http://{registry.host}/",
                            [raw],
                            connections=connections,
                            duration_s=seconds,
                            max_requests=args.max_requests,
                            workdir=workdir,
                            placement=placement,
                        )
                    else:
                        result = run_ab_head(
                            f"http://{registry.host}{blob_path}",
                            headers,
                            connections=connections,
                            duration_s=seconds,
                            max_requests=args.max_requests,
                            workdir=workdir,
                            placement=placement,
                        )
                registry.loads[(kind, connections)] = result
                flag = "" if result.errors == 0 else f"  ERRORS {result.error_summary()}"
                print(
                    f"  {kind:<13} c={connections:<3} {registry.name:<13} "
                    f"{result.rps:>9.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
                    f"p99 {result.p99_ms:7.2f} ms{flag}",
                    flush=True,
                )
    return problems


def report(
    registries: list[Registry], specs: list[ImageSpec], connection_counts: list[int]
) -> list[str]:
    openecr_registry, distribution = registries
    invalid = []

    print("\n### push and pull wall time (skopeo, seconds)")
    rows = []
    ratio_rows = []
    for spec in specs:
        for direction in ("push", "pull"):
            medians = {}
            for registry in registries:
                times = registry.copies.get((spec.name, direction), [])
                if not times:
                    continue
                med = statistics.median(times)
                medians[registry.name] = med
                total_mib = spec.layers * spec.layer_bytes / MiB
                rows.append(
                    [
                        f"{spec.name} ({spec.describe()})",
                        direction,
                        registry.name,
                        " ".join(f"{t:.2f}" for t in times),
                        f"{med:.2f}",
                        f"{min(times):.2f}",
                        f"{total_mib / med:.1f}",
                    ]
                )
            if len(medians) == 2:
                ratio_rows.append(
                    [
                        spec.name,
                        direction,
                        ratio(medians["openecr"], medians["distribution"]),
                    ]
                )
    print(
        table(
            ["image", "copy", "registry", "runs s", "median s", "min s", "MiB/s (median)"],
            rows,
        )
    )

    print("\n### /v2/ request throughput")
    rows = []
    load_ratio_rows = []
    for kind in ("manifest GET", "blob HEAD"):
        for connections in connection_counts:
            for registry in registries:
                result = registry.loads.get((kind, connections))
                if result is None:
                    continue
                rows.append(
                    [
                        kind,
                        connections,
                        registry.name,
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
                        f"{kind} c={connections} {registry.name}: {result.error_summary()}"
                        + (
                            f"\n    first error: {result.first_error!r}"
                            if result.first_error
                            else ""
                        )
                    )
            mine = openecr_registry.loads.get((kind, connections))
            theirs = distribution.loads.get((kind, connections))
            if mine and theirs:
                load_ratio_rows.append(
                    [
                        kind,
                        connections,
                        ratio(mine.rps, theirs.rps),
                        ratio(mine.p50_ms, theirs.p50_ms),
                        ratio(mine.p99_ms, theirs.p99_ms),
                    ]
                )
    print(
        table(
            [
                "request",
                "conns",
                "registry",
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
    print("(manifest GET measured with wrk, blob HEAD with ab: wrk 4.1 cannot read HEAD responses)")

    print("\n### Ratios openecr/Distribution")
    print("wall time (above 1: openecr takes longer)")
    print(table(["image", "copy", "time ratio (median)"], ratio_rows))
    print("\nrequests (req/s above 1: openecr serves more; latency below 1: openecr is faster)")
    print(table(["request", "conns", "req/s", "p50", "p99"], load_ratio_rows))
    return invalid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=3, help="push/pull rounds")
    parser.add_argument("--big-layers", type=int, default=5)
    parser.add_argument("--big-layer-mib", type=int, default=20)
    parser.add_argument("--small-layers", type=int, default=200)
    parser.add_argument("--small-layer-kib", type=int, default=4)
    parser.add_argument("--duration", type=int, default=8, help="seconds per load run")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per run")
    parser.add_argument("--connections", default="8,32")
    parser.add_argument("--max-requests", type=int, default=2_000_000, help="cap per load run")
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and clients")
    args = parser.parse_args()

    connection_counts = [int(c) for c in args.connections.split(",")]
    placement = Placement(None, None) if args.no_pin else Placement()
    specs = [
        ImageSpec("big", args.big_layers, args.big_layer_mib * MiB),
        ImageSpec("many", args.small_layers, args.small_layer_kib * 1024),
    ]
    skopeo_version = subprocess.run(
        ["skopeo", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    registry_version = subprocess.run(
        ["docker-registry", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()

    print(f"# OCI /v2/ benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
    print(f"openecr {openecr.__version__} (SQLite, filesystem blobs) vs {registry_version}")
    print(f"{skopeo_version}; {machine_note()}; {placement.describe()}")
    print(
        "images: "
        + ", ".join(f"{s.name} = {s.describe()} random, uncompressed tar layers" for s in specs)
        + f"; {args.repetitions} repetitions, fresh random data each"
    )

    workdir = Path(tempfile.mkdtemp(prefix="openecr-bench-oci-"))
    invalid: list[str] = []
    registries: list[Registry] = []
    try:
        with ExitStack() as stack:
            registries.append(start_openecr(workdir, placement))
            stack.callback(registries[-1].process.stop)
            registries.append(start_distribution(workdir, placement))
            stack.callback(registries[-1].process.stop)
            for registry in registries:
                print(f"{registry.name}: pid {registry.process.pid}, http://{registry.host}")

            print("\n## push and pull")
            first_big: tuple[str, Layout] | None = None
            try:
                for repetition in range(1, args.repetitions + 1):
                    for spec in specs:
                        layout_dir = workdir / f"layout-{spec.name}-{repetition}"
                        layout = build_layout(layout_dir, spec, "v1")
                        repository = f"bench/{spec.name}-{repetition}"
                        order = registries if repetition % 2 else registries[::-1]
                        for registry in order:
                            push_and_pull(registry, layout, spec, repository, workdir, placement)
                        if spec.name == "big" and first_big is None:
                            first_big = (repository, layout)
                        else:
                            shutil.rmtree(layout_dir)
            except CopyFailed as exc:
                invalid.append(str(exc))
                for registry in registries:
                    invalid.append(f"{registry.name} log tail:\n{registry.process.log_tail()}")

            if first_big is not None:
                repository, layout = first_big
                print(f"\n## /v2/ requests against {repository}:{layout.tag}")
                invalid += measure_requests(
                    registries, repository, layout, connection_counts, args, workdir, placement
                )

            print("\n## Results")
            invalid += report(registries, specs, connection_counts)
            for registry in registries:
                # skopeo HEADs every blob before uploading it: Distribution logs each miss.
                problems = registry.process.log_problems(ignore='err.code="blob unknown"')
                if problems:
                    print(f"\n{registry.name} log, warning/error lines (first {len(problems)}):")
                    for line in problems:
                        print(f"  {line[:400]}")
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


if __name__ == "__main__":
    raise SystemExit(main())
