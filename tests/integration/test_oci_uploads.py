"""Blob uploads over /v2/ when a client goes away mid-request, and under concurrent pushes.

An upload whose PATCH (or closing PUT) body is cut off by the client disconnecting must
leave nothing visible: no blob, and an upload exactly as long as what the server had
acknowledged before. From there the client can resume it (GET the upload's status, PATCH
the rest from the reported offset, PUT) or cancel it (DELETE). The disconnects are real:
a raw socket announces a Content-Length, sends part of the body and closes (FIN) or resets
(RST) the connection.

Concurrent pushes run in threads, each with its own connection, and share layers, so the
same blob is uploaded and committed by several uploads at once, into one repository and
into several. Everything pulls back byte for byte.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from harness import ServerProcess
from images import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Blob,
    Image,
    canonical_json,
    random_tar_gz,
    sha256,
)
from oci_helpers import Registry, registry_for

KiB = 1024
MiB = 1024 * KiB


@pytest.fixture
def registry(server: ServerProcess, ecr: Any) -> Iterator[Registry]:
    with registry_for(server, ecr) as opened:
        yield opened


def oci_error_code(response: httpx.Response) -> str:
    code: str = response.json()["errors"][0]["code"]
    return code


def acknowledged(response: httpx.Response) -> int:
    """The upload size a 202/204 reports in its ``Range: 0-<last byte>`` header."""
    first, _, last = response.headers["Range"].partition("-")
    assert first == "0", response.headers["Range"]
    return int(last) + 1


def start_upload(registry: Registry, repo: str) -> tuple[str, str]:
    """POST: (location, upload id)."""
    started = registry.http.post(f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    return started.headers["Location"], started.headers["Docker-Upload-UUID"]


def patch(registry: Registry, location: str, data: bytes, start: int) -> httpx.Response:
    return registry.http.patch(
        location,
        content=data,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + len(data) - 1}",
        },
    )


def cut_off_request(
    registry: Registry,
    method: str,
    target: str,
    headers: dict[str, str],
    announced: int,
    sent: bytes,
    how: str,
) -> None:
    """Sends a request announcing ``announced`` body bytes, streams only ``sent`` (fewer)
    in pieces, waits for the server to take them in, then closes the socket: ``fin`` (an
    orderly close) or ``rst`` (SO_LINGER 0, the connection is reset)."""
    assert len(sent) < announced
    credentials = base64.b64encode(f"AWS:{registry.password}".encode()).decode()
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {registry.host}",
        f"Authorization: Basic {credentials}",
        f"Content-Length: {announced}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    with socket.create_connection(("127.0.0.1", registry.server.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        piece = 256 * KiB
        for offset in range(0, len(sent), piece):
            sock.sendall(sent[offset : offset + piece])
            time.sleep(0.01)
        # The server is now mid-body: it has read (and written) part of what was sent.
        time.sleep(0.5)
        if how == "rst":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def assert_no_blob(registry: Registry, repo: str, *contents: bytes) -> None:
    for content in contents:
        response = registry.http.head(f"/v2/{repo}/blobs/{sha256(content)}")
        assert response.status_code == 404, (len(content), response.status_code)


def assert_blob(registry: Registry, repo: str, data: bytes) -> None:
    digest = sha256(data)
    head = registry.http.head(f"/v2/{repo}/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(data))
    assert head.headers["Docker-Content-Digest"] == digest
    fetched = registry.http.get(f"/v2/{repo}/blobs/{digest}")
    assert fetched.status_code == 200
    assert fetched.content == data


def interrupted_upload(
    registry: Registry, repo: str, data: bytes, acknowledged_bytes: int, how: str, method: str
) -> tuple[str, str, int]:
    """POST, a PATCH of ``acknowledged_bytes`` (none if 0), then a ``method`` (PATCH, or
    the closing PUT ?digest=) announcing the rest of ``data`` and cut off after about half
    of it. Returns (location, upload id, bytes sent in the cut-off request)."""
    location, upload_id = start_upload(registry, repo)
    if acknowledged_bytes:
        first = patch(registry, location, data[:acknowledged_bytes], 0)
        assert first.status_code == 202, first.text
        assert acknowledged(first) == acknowledged_bytes
        location = first.headers["Location"]
    rest = len(data) - acknowledged_bytes
    sent = data[acknowledged_bytes : acknowledged_bytes + rest // 2]
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Range": f"{acknowledged_bytes}-{len(data) - 1}",
    }
    target = location
    if method == "PUT":
        target = f"{location}{'&' if '?' in location else '?'}digest={sha256(data)}"
    cut_off_request(registry, method, target, headers, rest, sent, how)
    return location, upload_id, len(sent)


# --- an upload cut off mid-request --------------------------------------------------------

CUT_OFF_CASES = [
    pytest.param("PATCH", 3 * MiB // 2, "fin", id="patch-after-one-chunk-fin"),
    pytest.param("PATCH", 3 * MiB // 2, "rst", id="patch-after-one-chunk-rst"),
    pytest.param("PATCH", 0, "fin", id="first-patch-fin"),
    pytest.param("PUT", 3 * MiB // 2, "rst", id="closing-put-rst"),
]


@pytest.mark.parametrize(("method", "acknowledged_bytes", "how"), CUT_OFF_CASES)
def test_cut_off_upload_leaves_nothing_and_resumes(
    registry: Registry, repo: str, method: str, acknowledged_bytes: int, how: str
) -> None:
    data = os.urandom(6 * MiB + 12345)
    location, upload_id, sent = interrupted_upload(
        registry, repo, data, acknowledged_bytes, how, method
    )

    # Nothing visible: neither the whole blob nor any prefix of what was sent.
    assert_no_blob(
        registry,
        repo,
        data,
        data[: acknowledged_bytes + sent],
        *([data[:acknowledged_bytes]] if acknowledged_bytes else []),
    )
    assert registry.http.get(f"/v2/{repo}/tags/list").json()["tags"] in (None, [])

    # The upload is still there, exactly as long as what was acknowledged.
    status = registry.http.get(location)
    assert status.status_code == 204, status.text
    assert status.headers["Docker-Upload-UUID"] == upload_id
    offset = acknowledged(status) if acknowledged_bytes else 0
    assert offset == acknowledged_bytes
    if not acknowledged_bytes:
        assert status.headers["Range"] == "0-0"

    # Continuing from where the client had got to (not acknowledged) is refused.
    ahead = patch(registry, location, data[acknowledged_bytes + sent :], acknowledged_bytes + sent)
    assert ahead.status_code == 416, ahead.text
    if acknowledged_bytes:
        assert acknowledged(ahead) == acknowledged_bytes

    # Resuming from the reported offset completes the blob, byte for byte.
    location = status.headers["Location"]
    resumed = patch(registry, location, data[offset:], offset)
    assert resumed.status_code == 202, resumed.text
    assert acknowledged(resumed) == len(data)
    done = registry.http.put(resumed.headers["Location"], params={"digest": sha256(data)})
    assert done.status_code == 201, done.text
    assert done.headers["Docker-Content-Digest"] == sha256(data)
    assert_blob(registry, repo, data)
    # The finished upload is gone.
    gone = registry.http.get(location)
    assert gone.status_code == 404
    assert oci_error_code(gone) == "BLOB_UPLOAD_UNKNOWN"


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_cut_off_upload_can_be_cancelled(registry: Registry, repo: str, how: str) -> None:
    data = os.urandom(5 * MiB)
    acknowledged_bytes = 2 * MiB
    location, _, sent = interrupted_upload(registry, repo, data, acknowledged_bytes, how, "PATCH")

    status = registry.http.get(location)
    assert status.status_code == 204
    assert acknowledged(status) == acknowledged_bytes

    cancelled = registry.http.delete(location)
    assert cancelled.status_code == 204, cancelled.text
    time.sleep(0.2)
    # Later, every use of the upload is 404 BLOB_UPLOAD_UNKNOWN, and no blob appeared.
    for response in (
        registry.http.get(location),
        patch(registry, location, data[acknowledged_bytes:], acknowledged_bytes),
        registry.http.put(location, params={"digest": sha256(data)}),
        registry.http.delete(location),
    ):
        assert response.status_code == 404, (response.request.method, response.text)
        assert oci_error_code(response) == "BLOB_UPLOAD_UNKNOWN"
    assert_no_blob(
        registry, repo, data, data[:acknowledged_bytes], data[: acknowledged_bytes + sent]
    )

    # The same content can still be pushed afresh.
    registry.upload_blob(repo, data)
    assert_blob(registry, repo, data)


def test_cut_off_monolithic_post_leaves_nothing(registry: Registry, repo: str) -> None:
    """POST ?digest= with the whole blob, cut off: no blob; a new push then succeeds."""
    data = os.urandom(4 * MiB)
    cut_off_request(
        registry,
        "POST",
        f"/v2/{repo}/blobs/uploads/?digest={sha256(data)}",
        {"Content-Type": "application/octet-stream"},
        len(data),
        data[: len(data) // 2],
        "fin",
    )
    assert_no_blob(registry, repo, data, data[: len(data) // 2])
    registry.upload_blob(repo, data)
    assert_blob(registry, repo, data)


# --- concurrent pushes sharing layers -----------------------------------------------------


@dataclass(frozen=True)
class Push:
    repository: str
    tag: str
    image: Image


def image_with_layers(shared: list[tuple[bytes, str]], unique_size: int, index: int) -> Image:
    """An OCI image of the ``shared`` (blob, diff_id) layers plus one layer of its own."""
    layers = [*shared, random_tar_gz(unique_size, name=f"own{index}.bin")]
    config = Blob(
        OCI_CONFIG,
        canonical_json(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Labels": {"index": str(index)}},
                "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in layers]},
            }
        ),
    )
    blobs = [Blob(OCI_LAYER, data) for data, _ in layers]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [blob.descriptor() for blob in blobs],
    }
    return Image(canonical_json(manifest), OCI_MANIFEST, config, blobs)


def push_over_http(registry: Registry, push: Push, chunk: int, start: threading.Barrier) -> str:
    """Pushes on a connection of its own: each blob in ``chunk`` PATCHes (monolithic when
    smaller), without asking first whether it is there, then the manifest by tag."""
    with httpx.Client(base_url=registry.url, auth=("AWS", registry.password), timeout=120) as http:
        start.wait(timeout=60)
        for blob in (*push.image.layers, push.image.config):
            uploads = f"/v2/{push.repository}/blobs/uploads/"
            if blob.size <= chunk:
                response = http.post(uploads, params={"digest": blob.digest}, content=blob.data)
                assert response.status_code == 201, response.text
                continue
            response = http.post(uploads)
            assert response.status_code == 202, response.text
            location = response.headers["Location"]
            for offset in range(0, blob.size, chunk):
                part = blob.data[offset : offset + chunk]
                response = http.patch(
                    location,
                    content=part,
                    headers={"Content-Range": f"{offset}-{offset + len(part) - 1}"},
                )
                assert response.status_code == 202, response.text
                location = response.headers["Location"]
            response = http.put(location, params={"digest": blob.digest})
            assert response.status_code == 201, response.text
            assert response.headers["Docker-Content-Digest"] == blob.digest
        response = http.put(
            f"/v2/{push.repository}/manifests/{push.tag}",
            content=push.image.manifest,
            headers={"Content-Type": push.image.media_type},
        )
        assert response.status_code == 201, response.text
        digest: str = response.headers["Docker-Content-Digest"]
        return digest


def push_concurrently(registry: Registry, pushes: list[Push], chunk: int = 512 * KiB) -> None:
    start = threading.Barrier(len(pushes))
    with ThreadPoolExecutor(max_workers=len(pushes)) as pool:
        futures = [pool.submit(push_over_http, registry, push, chunk, start) for push in pushes]
        digests = [future.result(timeout=180) for future in futures]
    assert digests == [push.image.digest for push in pushes]


def assert_pulls_back(registry: Registry, ecr: Any, pushes: list[Push]) -> None:
    for push in pushes:
        pulled = registry.manifest(push.repository, push.tag)
        assert pulled.status_code == 200, pulled.text
        assert pulled.content == push.image.manifest
        assert pulled.headers["Docker-Content-Digest"] == push.image.digest
        for blob in (push.image.config, *push.image.layers):
            assert_blob(registry, push.repository, blob.data)
    for repository in {push.repository for push in pushes}:
        expected = {push.tag for push in pushes if push.repository == repository}
        listed = registry.http.get(f"/v2/{repository}/tags/list").json()["tags"]
        assert sorted(listed) == sorted(expected)
        described = ecr.describe_images(repositoryName=repository)["imageDetails"]
        assert {image["imageDigest"] for image in described} == {
            push.image.digest for push in pushes if push.repository == repository
        }


def shared_layers() -> list[tuple[bytes, str]]:
    return [random_tar_gz(3 * MiB // 2, name="base.bin"), random_tar_gz(300 * KiB, name="lib.bin")]


def test_concurrent_pushes_sharing_layers_to_one_repository(
    registry: Registry, ecr: Any, repo: str
) -> None:
    shared = shared_layers()
    images = [image_with_layers(shared, 64 * KiB, i) for i in range(6)]
    pushes = [Push(repo, f"v{i}", image) for i, image in enumerate(images)]
    # The same image twice more at once: under its tag again, and under another tag.
    pushes += [Push(repo, "v0", images[0]), Push(repo, "again", images[0])]
    push_concurrently(registry, pushes)
    assert_pulls_back(registry, ecr, pushes)


def test_concurrent_pushes_sharing_layers_to_several_repositories(
    registry: Registry, ecr: Any, repo_name: str
) -> None:
    repositories = [f"{repo_name}/r{i}" for i in range(3)]
    for repository in repositories:
        ecr.create_repository(repositoryName=repository)
    shared = shared_layers()
    images = [image_with_layers(shared, 64 * KiB, i) for i in range(4)]
    # Each image goes to two of the three repositories: every shared blob is uploaded by
    # all eight pushes at once and committed into all three repositories.
    pushes = [
        Push(repositories[(i + k) % len(repositories)], f"img{i}", image)
        for i, image in enumerate(images)
        for k in range(2)
    ]
    push_concurrently(registry, pushes)
    assert_pulls_back(registry, ecr, pushes)
