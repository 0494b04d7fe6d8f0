"""OCI /v2/ throughput: openecr (SQLite) against CNCF Distribution 2.8 (filesystem storage).

One run starts both registries side by side and measures, for each of them:

* skopeo push and pull of fresh OCI image layouts (a few large layers, many small layers);
* blob transfers with an in-process HTTP client: a 256 MiB blob pushed monolithically
  (POST, then PUT ?digest= with the whole body), pushed in 5 MiB and in 20 MiB chunks
  (POST, PATCH with Content-Range..., PUT ?digest=), and pulled (GET, sha256 verified);
* manifest PUT (distinct manifests, wrk), GET (wrk) and HEAD (ab) at several connection
  counts;
* ``tags/list`` of a repository of 10,000 tags: one listing's latency, then throughput;
* blob HEAD (ab);

and, for openecr only, the server's peak RSS while a 4 GiB blob (generated on the fly)
streams in and back out. openecr requests carry ``Authorization: Basic`` with a
GetAuthorizationToken token; Distribution runs without authentication. The final table
gives every ratio so that 1.0 or more means openecr does at least as well.

Usage: python bench/oci.py [--repetitions 3] [--duration 8] [--connections 8,32]
See bench/README.md.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
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
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import boto3
import httpx
from _common import (
    ChildProcess,
    LoadResult,
    PeakRss,
    Placement,
    free_port,
    http_ready,
    machine_note,
    proc_status_kib,
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
GiB = 1024 * MiB

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
RSS_LIMIT_MB = 200


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
    transfers: dict[str, list[float]] = field(default_factory=dict)  # operation -> seconds
    listing_ms: list[float] = field(default_factory=list)  # one full tags/list, sequential
    tag_setup: LoadResult | None = None

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

    def client(self, timeout: float = 300.0) -> BlobClient:
        return BlobClient(self, timeout)


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


# -- an HTTP client for blob transfers -----------------------------------------------------


class TransferFailed(RuntimeError):
    pass


def _target(location: str) -> str:
    """The path and query of a Location header (Distribution's is absolute)."""
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _with_query(target: str, **params: str) -> str:
    return target + ("&" if "?" in target else "?") + urlencode(params)


class BlobClient:
    """One keep-alive HTTP/1.1 connection (``http.client``) to a registry's /v2/ API.

    Request bodies are sent from memoryviews as they are (no copy, no chunked encoding),
    responses are read into one reused buffer: on loopback the client moves several GB/s,
    so the registry is what is measured (see the client ceiling printed by the script).
    """

    def __init__(self, registry: Registry, timeout: float = 300.0) -> None:
        self.registry = registry
        self.conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=timeout)

    def close(self) -> None:
        self.conn.close()

    def send(
        self,
        method: str,
        target: str,
        headers: dict[str, str] | None = None,
        body: Iterable[bytes | memoryview] = (),
        length: int | None = None,
    ) -> http.client.HTTPResponse:
        self.conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in {**self.registry.auth_headers, **(headers or {})}.items():
            self.conn.putheader(name, value)
        if length is not None:
            self.conn.putheader("Content-Length", str(length))
        self.conn.endheaders()
        for piece in body:
            self.conn.send(piece)
        return self.conn.getresponse()

    def call(
        self,
        method: str,
        target: str,
        expect: int,
        headers: dict[str, str] | None = None,
        body: Iterable[bytes | memoryview] = (),
        length: int | None = None,
    ) -> tuple[http.client.HTTPResponse, bytes]:
        try:
            response = self.send(method, target, headers, body, length)
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            raise TransferFailed(f"{self.registry.name} {method} {target}: {exc!r}") from exc
        if response.status != expect:
            raise TransferFailed(
                f"{self.registry.name} {method} {target}: HTTP {response.status} "
                f"(expected {expect}) {data[:300]!r}"
            )
        return response, data

    def _created(self, response: http.client.HTTPResponse, digest: str) -> None:
        returned = response.getheader("Docker-Content-Digest")
        if returned != digest:
            raise TransferFailed(f"{self.registry.name}: created {returned}, expected {digest}")

    def start_upload(self, repository: str) -> str:
        response, _ = self.call("POST", f"/v2/{repository}/blobs/uploads/", 202, length=0)
        return _target(response.getheader("Location") or "")

    def push_monolithic(
        self, repository: str, pieces: Iterable[bytes | memoryview], size: int, digest: str
    ) -> None:
        """POST, then PUT ?digest= carrying the whole blob (Distribution 2.8 ignores a body
        on POST ?digest=, so both registries get the same two requests)."""
        location = self.start_upload(repository)
        response, _ = self.call(
            "PUT",
            _with_query(location, digest=digest),
            201,
            {"Content-Type": "application/octet-stream"},
            pieces,
            size,
        )
        self._created(response, digest)

    def push_chunked(self, repository: str, data: memoryview, chunk: int, digest: str) -> int:
        """POST, one PATCH with Content-Range per chunk, PUT ?digest=; returns the PATCH count."""
        location = self.start_upload(repository)
        patches = 0
        for start in range(0, len(data), chunk):
            part = data[start : start + chunk]
            end = start + len(part) - 1
            response, _ = self.call(
                "PATCH",
                location,
                202,
                {"Content-Type": "application/octet-stream", "Content-Range": f"{start}-{end}"},
                [part],
                len(part),
            )
            if response.getheader("Range") != f"0-{end}":
                raise TransferFailed(
                    f"{self.registry.name} PATCH: Range {response.getheader('Range')}, "
                    f"expected 0-{end}"
                )
            location = _target(response.getheader("Location") or "")
            patches += 1
        response, _ = self.call("PUT", _with_query(location, digest=digest), 201, length=0)
        self._created(response, digest)
        return patches

    def pull(self, repository: str, digest: str, size: int, buffer: memoryview) -> None:
        """GET the blob, streamed into ``buffer`` piece by piece and hashed; checks the
        sha256 and the size."""
        try:
            response = self.send("GET", f"/v2/{repository}/blobs/{digest}")
            if response.status != 200:
                raise TransferFailed(
                    f"{self.registry.name} GET blob: HTTP {response.status} "
                    f"{response.read()[:300]!r}"
                )
            hasher = hashlib.sha256()
            received = 0
            while count := response.readinto(buffer):
                hasher.update(buffer[:count])
                received += count
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            raise TransferFailed(f"{self.registry.name} GET blob: {exc!r}") from exc
        actual = "sha256:" + hasher.hexdigest()
        if actual != digest or received != size:
            raise TransferFailed(
                f"{self.registry.name} GET blob: {received} bytes with {actual}, expected "
                f"{size} bytes with {digest}"
            )

    def get(self, target: str, headers: dict[str, str] | None = None) -> bytes:
        _, data = self.call("GET", target, 200, headers)
        return data


def push_small_blob(client: BlobClient, repository: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    client.push_monolithic(repository, [data], len(data), digest)
    return digest


class GeneratedBlob:
    """A large blob made on the fly: piece ``i`` is one random block whose first 8 bytes
    hold ``i``. Only the block (``piece_bytes``) is ever in memory, and every pass yields
    the same bytes, so the digest can be computed before the upload."""

    def __init__(self, size: int, piece_bytes: int = 4 * MiB) -> None:
        self.size = size
        self._block = bytearray(os.urandom(piece_bytes))
        self._view = memoryview(self._block)

    def pieces(self) -> Iterator[memoryview]:
        """The blob, piece by piece. A piece is valid until the next one is asked for."""
        piece = len(self._block)
        for index, start in enumerate(range(0, self.size, piece)):
            self._block[:8] = index.to_bytes(8, "big")
            yield self._view[: min(piece, self.size - start)]

    def digest(self) -> str:
        hasher = hashlib.sha256()
        for piece in self.pieces():
            hasher.update(piece)
        return "sha256:" + hasher.hexdigest()


# -- blob transfers ------------------------------------------------------------------------

BLOB_REPOSITORY = "bench/blobs"
PUSH_MONOLITHIC = "monolithic push"
PULL = "pull, sha256 checked"


def chunked_name(chunk_mib: int) -> str:
    return f"chunked push {chunk_mib} MiB"


def blob_operations(args: argparse.Namespace) -> list[str]:
    return [PUSH_MONOLITHIC, *(chunked_name(c) for c in args.chunk_mib), PULL]


def client_ceiling(size: int) -> float:
    """MiB/s at which this process hashes in memory: the pull client's ceiling."""
    data = os.urandom(size)
    started = time.perf_counter()
    hashlib.sha256(data).digest()
    return size / MiB / (time.perf_counter() - started)


def measure_blobs(registries: list[Registry], args: argparse.Namespace) -> None:
    """Each repetition pushes fresh content (a counter in the first bytes of one random
    buffer), so no push ever finds its blob stored already."""
    size = args.blob_mib * MiB
    data = bytearray(os.urandom(size))
    view = memoryview(data)
    read_buffer = memoryview(bytearray(4 * MiB))
    nonce = os.urandom(8)
    counter = 0
    digest = ""
    chunks = {chunked_name(c): c * MiB for c in args.chunk_mib}
    print(
        f"client: sha256 in memory runs at {client_ceiling(size):,.0f} MiB/s on the client CPU "
        "(the ceiling of a pull with digest check)"
    )
    for registry in registries:
        registry.prepare_repository(BLOB_REPOSITORY)
    for repetition in range(1, args.blob_repetitions + 1):
        order = registries if repetition % 2 else registries[::-1]
        clients = {registry.name: registry.client() for registry in order}
        try:
            pulled: dict[str, tuple[str, int]] = {}
            for operation in blob_operations(args):
                if operation != PULL:
                    counter += 1
                    data[:16] = nonce + counter.to_bytes(8, "big")
                    digest = "sha256:" + hashlib.sha256(view).hexdigest()
                for registry in order:
                    client = clients[registry.name]
                    started = time.perf_counter()
                    if operation == PUSH_MONOLITHIC:
                        client.push_monolithic(BLOB_REPOSITORY, [view], size, digest)
                        pulled[registry.name] = (digest, size)
                    elif operation == PULL:
                        client.pull(BLOB_REPOSITORY, *pulled[registry.name], read_buffer)
                    else:
                        client.push_chunked(BLOB_REPOSITORY, view, chunks[operation], digest)
                    elapsed = time.perf_counter() - started
                    registry.transfers.setdefault(operation, []).append(elapsed)
                    print(
                        f"  rep {repetition} {operation:<22} {registry.name:<13} "
                        f"{elapsed:6.2f} s  {size / MiB / elapsed:8.1f} MiB/s",
                        flush=True,
                    )
        finally:
            for client in clients.values():
                client.close()


# -- manifests -----------------------------------------------------------------------------

MANIFEST_REPOSITORY = "bench/manifests"
TAGS_REPOSITORY = "bench/tags"
MANIFEST_KINDS = ("manifest PUT", "manifest GET", "manifest HEAD")


@dataclass(frozen=True)
class ManifestBase:
    """The config and layer every benchmark manifest refers to."""

    config: bytes
    layer: bytes

    @classmethod
    def create(cls) -> ManifestBase:
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}
        ).encode()
        return cls(config, _tar_of(os.urandom(4096)))

    def manifest(self, annotations: dict[str, str]) -> bytes:
        def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            return {"mediaType": media_type, "digest": digest, "size": len(data)}

        document = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, self.config),
            "layers": [descriptor(OCI_LAYER, self.layer)],
            "annotations": annotations,
        }
        return json.dumps(document, separators=(",", ":")).encode()

    def prepare(self, registry: Registry, repository: str) -> None:
        """Creates the repository (openecr) and pushes the config and the layer into it."""
        registry.prepare_repository(repository)
        client = registry.client()
        try:
            push_small_blob(client, repository, self.config)
            push_small_blob(client, repository, self.layer)
        finally:
            client.close()


def put_pool(
    registry: Registry, base: ManifestBase, repository: str, label: str, count: int
) -> list[bytes]:
    """``count`` PUT requests of distinct manifests (they differ in one annotation), each
    under its own tag ``<label>-<i>``."""
    headers = {"Content-Type": OCI_MANIFEST, **registry.auth_headers}
    return [
        raw_http_request(
            "PUT",
            f"/v2/{repository}/manifests/{label}-{i:05d}",
            registry.host,
            headers,
            base.manifest({"org.openecr.bench.run": label, "org.openecr.bench.index": str(i)}),
        )
        for i in range(count)
    ]


def print_load(kind: str, connections: int, registry: Registry, result: LoadResult) -> None:
    flag = "" if result.errors == 0 else f"  ERRORS {result.error_summary()}"
    print(
        f"  {kind:<13} c={connections:<3} {registry.name:<13} "
        f"{result.rps:>9.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
        f"p99 {result.p99_ms:7.2f} ms  ({result.requests:,} requests"
        f"{', capped' if result.capped else ''}){flag}",
        flush=True,
    )


def measure_manifests(
    registries: list[Registry],
    base: ManifestBase,
    connection_counts: list[int],
    args: argparse.Namespace,
    workdir: Path,
    placement: Placement,
) -> list[str]:
    problems: list[str] = []
    manifest = base.manifest({"org.openecr.bench.run": "base"})
    manifest_path = f"/v2/{MANIFEST_REPOSITORY}/manifests/base"
    for registry in registries:
        base.prepare(registry, MANIFEST_REPOSITORY)
        client = registry.client()
        try:
            client.call(
                "PUT", manifest_path, 201, {"Content-Type": OCI_MANIFEST}, [manifest], len(manifest)
            )
        finally:
            client.close()
        headers = {"Accept": MANIFEST_ACCEPT, **registry.auth_headers}
        for method in ("GET", "HEAD"):
            status, detail = check_request(registry, method, manifest_path, headers)
            print(f"  {method} {manifest_path} {registry.name}: {status} {detail}")
            if status != 200:
                problems.append(f"{registry.name} {method} {manifest_path}: HTTP {status}")
    if problems:
        return problems

    for connections in connection_counts:
        for kind in MANIFEST_KINDS:
            order = registries if connections == connection_counts[0] else registries[::-1]
            for registry in order:
                headers = {"Accept": MANIFEST_ACCEPT, **registry.auth_headers}
                for phase, seconds in (("warmup", args.warmup), ("run", args.duration)):
                    if seconds <= 0:
                        continue
                    if kind == "manifest PUT":
                        # A fresh repository per run: each holds at most --manifest-writes
                        # images, far below openecr's limit of 100,000 per repository.
                        repository = f"bench/put-c{connections}-{phase}"
                        base.prepare(registry, repository)
                        pool = put_pool(
                            registry, base, repository, f"c{connections}", args.manifest_writes
                        )
                        result = run_wrk(
                            f"http://{registry.host}/",
                            pool,
                            connections=connections,
                            duration_s=seconds,
                            max_requests=len(pool),
                            workdir=workdir,
                            placement=placement,
                        )
                    elif kind == "manifest GET":
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
                            f"http://{registry.host}{manifest_path}",
                            headers,
                            connections=connections,
                            duration_s=seconds,
                            max_requests=args.max_requests,
                            workdir=workdir,
                            placement=placement,
                        )
                registry.loads[(kind, connections)] = result
                print_load(kind, connections, registry, result)
    return problems


# -- tags/list -----------------------------------------------------------------------------


def measure_tags(
    registries: list[Registry],
    base: ManifestBase,
    connection_counts: list[int],
    args: argparse.Namespace,
    workdir: Path,
    placement: Placement,
) -> list[str]:
    problems: list[str] = []
    path = f"/v2/{TAGS_REPOSITORY}/tags/list"
    for registry in registries:
        base.prepare(registry, TAGS_REPOSITORY)
        pool = put_pool(registry, base, TAGS_REPOSITORY, "t", args.tags)
        # Filling is bounded by a generous time limit; it must reach exactly --tags PUTs.
        result = run_wrk(
            f"http://{registry.host}/",
            pool,
            connections=8,
            duration_s=args.tags_fill_timeout,
            max_requests=len(pool),
            workdir=workdir,
            placement=placement,
        )
        registry.tag_setup = result
        client = registry.client()
        try:
            listed = json.loads(client.get(path)).get("tags") or []
        finally:
            client.close()
        # Responses in flight when wrk stops at its cap re-PUT the first tags (no-ops).
        extra = ", the extra ones re-PUT a tag" if result.requests > args.tags else ""
        print(
            f"  {registry.name:<13} {args.tags:,} tags pushed in {result.duration_s:.1f} s "
            f"({result.requests:,} PUT responses{extra}; {result.rps:,.0f} PUT/s, c=8), "
            f"tags/list returns {len(listed):,} tags, errors: {result.error_summary()}",
            flush=True,
        )
        if result.errors or len(listed) != args.tags:
            problems.append(
                f"{registry.name}: {len(listed)} tags listed after {result.requests} PUTs "
                f"({result.error_summary()}), expected {args.tags}"
            )
    if problems:
        return problems

    # One listing at a time on one keep-alive connection: the latency of a full listing.
    for registry in registries[::-1]:
        client = registry.client()
        try:
            client.get(path)
            for _ in range(args.listing_samples):
                started = time.perf_counter()
                client.get(path)
                registry.listing_ms.append((time.perf_counter() - started) * 1000)
        finally:
            client.close()
        print(
            f"  one listing   {registry.name:<13} median "
            f"{statistics.median(registry.listing_ms):7.2f} ms, min "
            f"{min(registry.listing_ms):7.2f} ms over {len(registry.listing_ms)} sequential GETs",
            flush=True,
        )

    for connections in connection_counts:
        order = registries if connections == connection_counts[0] else registries[::-1]
        for registry in order:
            raw = raw_http_request("GET", path, registry.host, registry.auth_headers)
            for seconds in (args.warmup, args.duration):
                if seconds <= 0:
                    continue
                result = run_wrk(
                    f"http://{registry.host}/",
                    [raw],
                    connections=connections,
                    duration_s=seconds,
                    max_requests=args.max_requests,
                    workdir=workdir,
                    placement=placement,
                )
            registry.loads[("tags/list", connections)] = result
            print_load("tags/list", connections, registry, result)
    return problems


# -- blob HEAD -----------------------------------------------------------------------------


def measure_blob_head(
    registries: list[Registry],
    repository: str,
    layout: Layout,
    connection_counts: list[int],
    args: argparse.Namespace,
    workdir: Path,
    placement: Placement,
) -> list[str]:
    blob_path = f"/v2/{repository}/blobs/{layout.first_layer_digest}"
    problems = []
    for registry in registries:
        status, detail = check_request(registry, "HEAD", blob_path, registry.auth_headers)
        print(f"  HEAD {blob_path[:60]}... {registry.name}: {status} {detail}")
        if status != 200:
            problems.append(f"{registry.name} HEAD {blob_path}: HTTP {status}")
    if problems:
        return problems
    for connections in connection_counts:
        order = registries if connections == connection_counts[0] else registries[::-1]
        for registry in order:
            for seconds in (args.warmup, args.duration):
                if seconds <= 0:
                    continue
                result = run_ab_head(
                    f"http://{registry.host}{blob_path}",
                    registry.auth_headers,
                    connections=connections,
                    duration_s=seconds,
                    max_requests=args.max_requests,
                    workdir=workdir,
                    placement=placement,
                )
            registry.loads[("blob HEAD", connections)] = result
            print_load("blob HEAD", connections, registry, result)
    return problems


# -- openecr's memory while a large blob streams through -----------------------------------


@dataclass
class RssRun:
    size: int
    digest_s: float
    baseline_kib: int | None
    push_s: float
    push: PeakRss
    pull_s: float
    pull: PeakRss

    @property
    def peak_mb(self) -> float:
        return max(self.push.peak_kib, self.pull.peak_kib) * 1024 / 1e6

    @property
    def passed(self) -> bool:
        return self.peak_mb < RSS_LIMIT_MB


def measure_rss(registry: Registry, args: argparse.Namespace) -> RssRun:
    """Pushes a generated blob of --rss-blob-gib GiB in one PUT, then pulls it back (sha256
    checked), sampling the server's RSS through both."""
    size = args.rss_blob_gib * GiB
    blob = GeneratedBlob(size)
    started = time.perf_counter()
    digest = blob.digest()
    digest_s = time.perf_counter() - started
    repository = "bench/big-blob"
    registry.prepare_repository(repository)
    baseline = proc_status_kib(registry.process.pid, "VmRSS")
    client = registry.client(timeout=600)
    try:
        with PeakRss(registry.process.pid) as push_rss:
            started = time.perf_counter()
            client.push_monolithic(repository, blob.pieces(), size, digest)
            push_s = time.perf_counter() - started
        with PeakRss(registry.process.pid) as pull_rss:
            started = time.perf_counter()
            client.pull(repository, digest, size, memoryview(bytearray(4 * MiB)))
            pull_s = time.perf_counter() - started
    finally:
        client.close()
    return RssRun(size, digest_s, baseline, push_s, push_rss, pull_s, pull_rss)


# -- report --------------------------------------------------------------------------------


def better(mine: float, theirs: float, higher_is_better: bool) -> str:
    """openecr against Distribution, oriented so that 1.0 or more means openecr is at least
    as good: mine/theirs for rates, theirs/mine for times."""
    if mine <= 0 or theirs <= 0:
        return "n/a"
    return f"{(mine / theirs if higher_is_better else theirs / mine):.2f}"


def report(
    registries: list[Registry],
    specs: list[ImageSpec],
    connection_counts: list[int],
    args: argparse.Namespace,
    rss: RssRun | None,
) -> list[str]:
    mine, theirs = registries
    invalid = []
    final: list[list[object]] = []

    def add(measurement: str, metric: str, a: float, b: float, higher: bool, fmt: str) -> None:
        final.append([measurement, metric, format(a, fmt), format(b, fmt), better(a, b, higher)])

    print("\n### push and pull wall time (skopeo, seconds)")
    rows = []
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
                add(
                    f"skopeo {direction} {spec.name} ({spec.describe()})",
                    "wall time s (median)",
                    medians["openecr"],
                    medians["distribution"],
                    False,
                    ".2f",
                )
    print(
        table(
            ["image", "copy", "registry", "runs s", "median s", "min s", "MiB/s (median)"],
            rows,
        )
    )

    print(f"\n### blob transfers, {args.blob_mib} MiB (MiB/s = {args.blob_mib} MiB / wall time)")
    rows = []
    for operation in blob_operations(args):
        rates = {}
        for registry in registries:
            times = registry.transfers.get(operation, [])
            if not times:
                continue
            med = statistics.median(times)
            rates[registry.name] = args.blob_mib / med
            rows.append(
                [
                    operation,
                    registry.name,
                    " ".join(f"{t:.2f}" for t in times),
                    f"{med:.2f}",
                    f"{args.blob_mib / med:.1f}",
                    f"{args.blob_mib / min(times):.1f}",
                ]
            )
        if len(rates) == 2:
            add(
                f"{operation} ({args.blob_mib} MiB)",
                "MiB/s (median)",
                rates["openecr"],
                rates["distribution"],
                True,
                ".1f",
            )
    print(
        table(
            ["operation", "registry", "runs s", "median s", "MiB/s (median)", "MiB/s (best)"],
            rows,
        )
    )

    print("\n### /v2/ request throughput")
    rows = []
    kinds = [*MANIFEST_KINDS, "tags/list", "blob HEAD"]
    for kind in kinds:
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
            a = mine.loads.get((kind, connections))
            b = theirs.loads.get((kind, connections))
            if a and b:
                label = f"{kind} c={connections}"
                add(label, "req/s", a.rps, b.rps, True, ",.1f")
                add(label, "p50 ms", a.p50_ms, b.p50_ms, False, ".2f")
                add(label, "p99 ms", a.p99_ms, b.p99_ms, False, ".2f")
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
    print(
        "(* = the run ended at its request cap. manifest PUT and GET and tags/list measured "
        "with wrk, HEADs with ab: wrk 4.1 cannot read HEAD responses)"
    )

    if mine.listing_ms and theirs.listing_ms:
        print(f"\n### one full tags/list of {args.tags:,} tags (sequential, one connection)")
        rows = [
            [
                registry.name,
                len(registry.listing_ms),
                f"{statistics.median(registry.listing_ms):.2f}",
                f"{min(registry.listing_ms):.2f}",
                f"{max(registry.listing_ms):.2f}",
            ]
            for registry in registries
        ]
        print(table(["registry", "GETs", "median ms", "min ms", "max ms"], rows))
        add(
            f"tags/list, {args.tags:,} tags, one listing",
            "latency ms (median)",
            statistics.median(mine.listing_ms),
            statistics.median(theirs.listing_ms),
            False,
            ".2f",
        )

    if rss is not None:
        gib = rss.size / GiB
        print(f"\n### openecr memory while a {gib:g} GiB blob streams in and out")
        rows = []
        for direction, seconds, peak in (
            ("push (POST, one PUT)", rss.push_s, rss.push),
            ("pull (GET, sha256 checked)", rss.pull_s, rss.pull),
        ):
            rows.append(
                [
                    direction,
                    f"{seconds:.1f}",
                    f"{rss.size / MiB / seconds:.1f}",
                    f"{(peak.start_kib or 0) / 1000:.1f}",
                    f"{peak.sampled_peak_kib / 1000:.1f}",
                    f"{(peak.hwm_kib or 0) / 1000:.1f}" + ("" if peak.hwm_reset else " (lifetime)"),
                    f"{peak.samples:,}",
                ]
            )
        print(
            table(
                [
                    "transfer",
                    "s",
                    "MiB/s",
                    "RSS before MB",
                    "sampled peak MB",
                    "VmHWM MB",
                    "samples",
                ],
                rows,
            )
        )
        verdict = "PASS" if rss.passed else "FAIL"
        print(
            f"peak RSS {rss.peak_mb:.1f} MB, limit {RSS_LIMIT_MB} MB: {verdict} "
            f"(RSS before the push {(rss.baseline_kib or 0) / 1000:.1f} MB; MB = 10^6 bytes; "
            f"the client made the blob on the fly and hashed it in {rss.digest_s:.1f} s first)"
        )

    print(
        "\n### Ratios openecr/Distribution, oriented so that >= 1.00 means openecr is at least "
        "as good\n(rates: openecr / Distribution; times and latencies: Distribution / openecr)"
    )
    print(table(["measurement", "metric", "openecr", "Distribution", "ratio (>=1 good)"], final))
    below = [row for row in final if row[4] != "n/a" and float(str(row[4])) < 1.0]
    if below:
        print(f"{len(below)} of {len(final)} ratios are below 1.00:")
        for row in below:
            print(f"  {row[0]}: {row[1]} {row[4]}")
    else:
        print(f"all {len(final)} ratios are at least 1.00")
    return invalid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=3, help="skopeo push/pull rounds")
    parser.add_argument("--big-layers", type=int, default=5)
    parser.add_argument("--big-layer-mib", type=int, default=20)
    parser.add_argument("--small-layers", type=int, default=200)
    parser.add_argument("--small-layer-kib", type=int, default=4)
    parser.add_argument("--blob-mib", type=int, default=256, help="blob transfer size")
    parser.add_argument(
        "--chunk-mib", default="5,20", help="PATCH chunk sizes of the chunked pushes"
    )
    parser.add_argument("--blob-repetitions", type=int, default=3, help="blob transfer rounds")
    parser.add_argument(
        "--manifest-writes", type=int, default=20_000, help="distinct manifests per PUT run (cap)"
    )
    parser.add_argument("--tags", type=int, default=10_000, help="tags in the tags/list repo")
    parser.add_argument(
        "--tags-fill-timeout", type=int, default=300, help="seconds allowed to push the tags"
    )
    parser.add_argument("--listing-samples", type=int, default=20, help="sequential listings")
    parser.add_argument("--rss-blob-gib", type=int, default=4, help="0 skips the RSS check")
    parser.add_argument("--duration", type=int, default=8, help="seconds per load run")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per run")
    parser.add_argument("--connections", default="8,32")
    parser.add_argument("--max-requests", type=int, default=2_000_000, help="cap per load run")
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and clients")
    args = parser.parse_args()
    args.chunk_mib = [int(c) for c in args.chunk_mib.split(",") if c]

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
    rss: RssRun | None = None
    try:
        with ExitStack() as stack:
            registries.append(start_openecr(workdir, placement))
            stack.callback(registries[-1].process.stop)
            registries.append(start_distribution(workdir, placement))
            stack.callback(registries[-1].process.stop)
            # The in-process clients (blob transfers, setup) run where wrk and skopeo run.
            placement.pin_this_process()
            for registry in registries:
                print(f"{registry.name}: pid {registry.process.pid}, http://{registry.host}")

            print("\n## push and pull (skopeo)")
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

            base = ManifestBase.create()
            try:
                if args.blob_repetitions > 0:
                    print(f"\n## blob transfers ({args.blob_mib} MiB, {BLOB_REPOSITORY})")
                    measure_blobs(registries, args)
                print(f"\n## manifests ({MANIFEST_REPOSITORY}, PUT into bench/put-*)")
                invalid += measure_manifests(
                    registries, base, connection_counts, args, workdir, placement
                )
                print(f"\n## tags/list ({TAGS_REPOSITORY}, {args.tags:,} tags)")
                invalid += measure_tags(
                    registries, base, connection_counts, args, workdir, placement
                )
                if first_big is not None:
                    repository, layout = first_big
                    print(f"\n## blob HEAD ({repository})")
                    invalid += measure_blob_head(
                        registries, repository, layout, connection_counts, args, workdir, placement
                    )
                if args.rss_blob_gib > 0:
                    print(f"\n## openecr RSS, {args.rss_blob_gib} GiB blob")
                    rss = measure_rss(registries[0], args)
                    print(
                        f"  push {rss.push_s:.1f} s, pull {rss.pull_s:.1f} s, "
                        f"peak RSS {rss.peak_mb:.1f} MB",
                        flush=True,
                    )
            except TransferFailed as exc:
                invalid.append(str(exc))
                for registry in registries:
                    invalid.append(f"{registry.name} log tail:\n{registry.process.log_tail()}")

            print("\n## Results")
            invalid += report(registries, specs, connection_counts, args, rss)
            for registry in registries:
                # skopeo HEADs every blob before uploading it: Distribution logs each miss.
                # When a wrk run ends, the responses still in flight meet closed sockets:
                # Distribution logs each as a broken pipe.
                problems = registry.process.log_problems(
                    ignore=('err.code="blob unknown"', "write: broken pipe")
                )
                if problems:
                    print(f"\n{registry.name} log, warning/error lines (first {len(problems)}):")
                    for line in problems:
                        print(f"  {line[:400]}")
            print(f"\n{machine_note()} at the end")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    status = 0
    if rss is not None and not rss.passed:
        print(f"\nREQUIREMENT NOT MET: openecr peak RSS {rss.peak_mb:.1f} MB >= {RSS_LIMIT_MB} MB")
        status = 1
    if invalid:
        print("\nINVALID RUN:")
        for line in invalid:
            print(f"  {line}")
        return 1
    print(
        "\nAll copies and transfers succeeded; all load responses were 2xx with no socket errors."
    )
    return status


if __name__ == "__main__":
    raise SystemExit(main())
