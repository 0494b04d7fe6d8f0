"""The SDK's image workflows against a real server: push_image/pull_image (and the async
twins) through the ECR layer API, docker_login and the docker-credential-openecr helper.

Images are built in the tests (random layers; OCI layouts; ``docker save`` archives in both
of Docker's formats). What the SDK pushed is checked with skopeo over /v2/, and what it
pulls back is compared blob by blob. Faults (a lost response, a corrupted download) come
from an httpx transport wrapped around the real one; the server is never mocked.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from docker_save import saved_image, write_classic_save, write_oci_save
from harness import TEST_ACCESS_KEY, TEST_REGION, TEST_SECRET_KEY, ServerProcess
from images import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    REF_NAME,
    Layout,
    build_image,
    build_index,
    image_digests,
    read_dir_layout,
    sha256,
    write_oci_layout,
)
from oci_helpers import Registry, skopeo, skopeo_copy, skopeo_registry

from openecr import (
    ECR,
    AsyncECR,
    BlobDigestMismatchError,
    ImageSourceError,
    ProgressEvent,
    ProgressState,
    adocker_login,
    apull_image,
    apush_image,
    docker_login,
    pull_image,
    push_image,
)
from openecr.errors import ImageNotFoundError

MiB = 1024 * 1024
UPLOAD_PART = "AmazonEC2ContainerRegistry_V20150921.UploadLayerPart"


def sdk_client(server: ServerProcess, **options: Any) -> ECR:
    return ECR(
        endpoint_url=server.url,
        region=TEST_REGION,
        access_key_id=TEST_ACCESS_KEY,
        secret_access_key=TEST_SECRET_KEY,
        **options,
    )


def async_sdk_client(server: ServerProcess) -> AsyncECR:
    return AsyncECR(
        endpoint_url=server.url,
        region=TEST_REGION,
        access_key_id=TEST_ACCESS_KEY,
        secret_access_key=TEST_SECRET_KEY,
    )


@pytest.fixture
def sdk(server: ServerProcess) -> Iterator[ECR]:
    with sdk_client(server) as client:
        yield client


@pytest.fixture
def repo(sdk: ECR, repo_name: str) -> str:
    sdk.create_repository(repository_name=repo_name)
    return repo_name


def password_of(sdk: ECR) -> str:
    token = sdk.get_authorization_token().authorization_data[0].authorization_token  # type: ignore[index]
    user, _, password = base64.b64decode(token).decode().partition(":")
    assert user == "AWS"
    return password


@pytest.fixture
def registry(server: ServerProcess, sdk: ECR) -> Iterator[Registry]:
    opened = Registry(server, password_of(sdk))
    yield opened
    opened.close()


def blob_events(events: list[ProgressEvent], digest: str) -> list[tuple[ProgressState, int]]:
    return [(event.state, event.bytes_done) for event in events if event.digest == digest]


def assert_layout_holds(root: Path, ref: str, manifest: bytes, digests: set[str]) -> None:
    layout = Layout(root)
    assert layout.manifest(ref) == manifest
    assert digests <= layout.all_digests()  # every blob present and verified


# -- push and pull --------------------------------------------------------------------------


def test_push_oci_layout_then_pull_back(
    sdk: ECR, repo: str, registry: Registry, tmp_path: Path
) -> None:
    image = build_image(layers=3, layer_size=64 * 1024)
    write_oci_layout(tmp_path / "src", {"v1": image})
    events: list[ProgressEvent] = []

    result = push_image(sdk, tmp_path / "src", repo, "v1", progress=events.append)

    assert result.digest == image.digest
    assert result.media_type == OCI_MANIFEST
    assert result.tag == "v1"
    assert result.manifests == (image.digest,)
    assert set(result.layers_uploaded) == set(image.blobs)
    assert result.layers_skipped == ()
    assert result.bytes_sent == sum(len(data) for data in image.blobs.values())
    for digest, data in image.blobs.items():
        steps = blob_events(events, digest)
        assert steps[0] == (ProgressState.UPLOADING, 0)
        assert steps[-1] == (ProgressState.DONE, len(data))
        assert all(event.total == len(data) for event in events if event.digest == digest)

    # skopeo sees the exact manifest and every blob.
    raw = skopeo_registry(registry, "inspect", "--raw", registry.ref(repo, "v1")).stdout
    assert raw.encode() == image.manifest
    skopeo_copy(registry, registry.ref(repo, "v1"), f"oci:{tmp_path / 'skopeo'}:v1")
    assert_layout_holds(tmp_path / "skopeo", "v1", image.manifest, image_digests(image))

    # And the SDK pulls back the same bytes.
    pulled_events: list[ProgressEvent] = []
    pulled = pull_image(sdk, repo, "v1", tmp_path / "pulled", progress=pulled_events.append)
    assert pulled.digest == image.digest
    assert pulled.tag == "v1"
    assert set(pulled.blobs_downloaded) == set(image.blobs)
    assert pulled.bytes_received == result.bytes_sent
    assert_layout_holds(tmp_path / "pulled", "v1", image.manifest, image_digests(image))
    layout = Layout(tmp_path / "pulled")
    for digest, data in image.blobs.items():
        assert layout.blob(digest) == data
        assert blob_events(pulled_events, digest)[-1] == (ProgressState.DONE, len(data))
    entry = layout.descriptor("v1")
    assert entry == {
        "mediaType": OCI_MANIFEST,
        "digest": image.digest,
        "size": len(image.manifest),
        "annotations": {REF_NAME: "v1"},
    }
    assert json.loads((tmp_path / "pulled" / "oci-layout").read_text()) == {
        "imageLayoutVersion": "1.0.0"
    }


def test_second_push_skips_existing_layers(sdk: ECR, repo: str, tmp_path: Path) -> None:
    first = build_image(layers=2)
    write_oci_layout(tmp_path / "one", {"v1": first})
    push_image(sdk, tmp_path / "one", repo, "v1")

    events: list[ProgressEvent] = []
    again = push_image(sdk, tmp_path / "one", repo, "v1", progress=events.append)
    assert again.layers_uploaded == ()
    assert set(again.layers_skipped) == set(first.blobs)
    assert again.bytes_sent == 0
    assert {event.state for event in events} == {ProgressState.SKIPPED}

    # A new image sharing a layer uploads only what is new.
    shared = first.layers[0]
    second = build_image(layers=1)
    manifest = json.loads(second.manifest)
    manifest["layers"].insert(0, shared.descriptor())
    data = json.dumps(manifest).encode()
    layout = tmp_path / "two"
    write_oci_layout(layout, {"v2": second})
    (layout / "blobs" / "sha256" / shared.digest.split(":")[1]).write_bytes(shared.data)
    (layout / "blobs" / "sha256" / sha256(data).split(":")[1]).write_bytes(data)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0].update(digest=sha256(data), size=len(data))
    (layout / "index.json").write_text(json.dumps(index))
    result = push_image(sdk, layout, repo, "v2")
    assert result.digest == sha256(data)
    assert result.layers_skipped == (shared.digest,)
    assert set(result.layers_uploaded) == set(second.blobs)


def test_push_by_ref_from_a_layout_with_several_images(sdk: ECR, repo: str, tmp_path: Path) -> None:
    one, two = build_image(), build_image()
    write_oci_layout(tmp_path / "src", {"one": one, "two": two})
    with pytest.raises(ImageSourceError, match="choose one with ref="):
        push_image(sdk, tmp_path / "src", repo, "x")
    result = push_image(sdk, tmp_path / "src", repo, "x", ref="two")
    assert result.digest == two.digest
    untagged = push_image(sdk, tmp_path / "src", repo, ref="one")
    assert untagged.tag is None
    described = sdk.describe_images(repository_name=repo).image_details or []
    assert {d.image_digest: d.image_tags for d in described} == {
        one.digest: None,
        two.digest: ["x"],
    }


def test_async_push_and_pull_of_a_multi_platform_index(
    server: ServerProcess, repo: str, registry: Registry, tmp_path: Path
) -> None:
    index = build_index(
        [
            build_image(architecture="amd64", with_platform=True),
            build_image(architecture="arm64", with_platform=True),
        ]
    )
    write_oci_layout(tmp_path / "src", {"multi": index})

    async def run() -> tuple[Any, Any]:
        async with async_sdk_client(server) as aecr:
            pushed = await apush_image(aecr, tmp_path / "src", repo, "multi", concurrency=3)
            pulled = await apull_image(aecr, repo, "multi", tmp_path / "pulled")
            return pushed, pulled

    pushed, pulled = asyncio.run(run())
    children = tuple(child.digest for child in index.images)
    assert pushed.digest == index.digest
    assert pushed.media_type == OCI_INDEX
    assert pushed.manifests == (*children, index.digest)
    assert set(pushed.layers_uploaded) == set(index.blobs)

    raw = skopeo_registry(registry, "inspect", "--raw", registry.ref(repo, "multi")).stdout
    assert raw.encode() == index.manifest
    for child in index.images:
        raw = skopeo_registry(registry, "inspect", "--raw", registry.ref(repo, child.digest))
        assert raw.stdout.encode() == child.manifest
    skopeo_copy(registry, registry.ref(repo, "multi"), f"oci:{tmp_path / 'sk'}:multi", "--all")
    assert_layout_holds(tmp_path / "sk", "multi", index.manifest, image_digests(index))

    assert pulled.digest == index.digest
    assert pulled.manifests == (*children, index.digest)
    assert_layout_holds(tmp_path / "pulled", "multi", index.manifest, image_digests(index))
    assert Layout(tmp_path / "pulled").all_digests() == image_digests(index)


def test_pull_by_digest_into_an_existing_layout(sdk: ECR, repo: str, tmp_path: Path) -> None:
    one, two = build_image(), build_image()
    write_oci_layout(tmp_path / "src", {"one": one, "two": two})
    push_image(sdk, tmp_path / "src", repo, "one", ref="one")
    push_image(sdk, tmp_path / "src", repo, "two", ref="two")

    pull_image(sdk, repo, "one", tmp_path / "dest")
    again = pull_image(sdk, repo, "one", tmp_path / "dest")
    assert again.blobs_downloaded == ()
    assert set(again.blobs_skipped) == set(one.blobs)
    by_digest = pull_image(sdk, repo, two.digest, tmp_path / "dest")
    assert by_digest.tag is None
    entries = Layout(tmp_path / "dest").index["manifests"]
    assert [(e["digest"], e.get("annotations")) for e in entries] == [
        (one.digest, {REF_NAME: "one"}),
        (two.digest, None),
    ]
    assert Layout(tmp_path / "dest").all_digests() == image_digests(one) | image_digests(two)

    with pytest.raises(ImageNotFoundError):
        pull_image(sdk, repo, "missing", tmp_path / "dest")


# -- docker save archives -----------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True], ids=["tar", "tar.gz"])
def test_push_classic_docker_save_archive(
    sdk: ECR, repo: str, registry: Registry, tmp_path: Path, compress: bool
) -> None:
    app = saved_image("myapp:1.0", [40_000, 70_000, 5_000])
    other = saved_image("other:2", [1_000])
    archive = write_classic_save(tmp_path / "save.tar", [app, other], compress=compress)

    with pytest.raises(ImageSourceError, match="choose one with ref="):
        push_image(sdk, archive, repo, "1.0")
    result = push_image(sdk, archive, repo, "1.0", ref="myapp:1.0")
    assert result.media_type == DOCKER_MANIFEST
    assert set(result.layers_uploaded) == set(app.blobs)

    # The manifest built for it: Docker v2 schema 2, uncompressed layers in order.
    skopeo_copy(registry, registry.ref(repo, "1.0"), f"dir:{tmp_path / 'dir'}")
    manifest, blobs = read_dir_layout(tmp_path / "dir")
    assert sha256(manifest) == result.digest
    document = json.loads(manifest)
    assert document["mediaType"] == DOCKER_MANIFEST
    assert document["config"] == {
        "mediaType": "application/vnd.docker.container.image.v1+json",
        "size": len(app.config),
        "digest": app.config_digest,
    }
    assert document["layers"] == [
        {
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar",
            "size": len(layer),
            "digest": sha256(layer),
        }
        for layer in app.layers
    ]
    assert blobs == app.blobs
    inspected = json.loads(skopeo_registry(registry, "inspect", registry.ref(repo, "1.0")).stdout)
    assert inspected["Digest"] == result.digest
    assert inspected["Layers"] == app.layer_digests

    pulled = pull_image(sdk, repo, "1.0", tmp_path / "pulled")
    layout = Layout(tmp_path / "pulled")
    assert layout.manifest("1.0") == manifest
    for digest, data in app.blobs.items():
        assert layout.blob(digest) == data
    assert pulled.media_type == DOCKER_MANIFEST


def test_push_docker_25_save_archive_keeps_dockers_digests(
    sdk: ECR, repo: str, registry: Registry, tmp_path: Path
) -> None:
    app = saved_image("myapp:1.0", [30_000, 10_000])
    archive = write_oci_save(tmp_path / "save.tar", [app, saved_image("other:2", [100])])
    index = json.loads(subprocess.run(["tar", "-xOf", archive, "index.json"],
                                      capture_output=True, check=True).stdout)  # fmt: skip
    expected = index["manifests"][0]["digest"]

    result = push_image(sdk, archive, repo, "v1", ref="docker.io/library/myapp:1.0")
    assert result.digest == expected
    assert result.media_type == OCI_MANIFEST
    assert push_image(sdk, archive, repo, "v1", ref="1.0").digest == expected  # by ref.name

    raw = skopeo_registry(registry, "inspect", "--raw", registry.ref(repo, "v1")).stdout
    assert sha256(raw.encode()) == expected
    pull_image(sdk, repo, "v1", tmp_path / "pulled")
    layout = Layout(tmp_path / "pulled")
    for digest, data in app.blobs.items():
        assert layout.blob(digest) == data


# -- large layers: parts, resuming --------------------------------------------------------


def big_image_layout(tmp_path: Path) -> tuple[Any, Path, Any]:
    image = build_image(layers=1, layer_size=12 * MiB)
    layer = image.layers[0]
    assert 12 * MiB < layer.size < 13 * MiB
    return image, write_oci_layout(tmp_path / "src", {"big": image}), layer


def test_twelve_mib_layer_goes_in_three_five_mib_parts(
    sdk: ECR, repo: str, registry: Registry, tmp_path: Path
) -> None:
    image, layout, layer = big_image_layout(tmp_path)
    events: list[ProgressEvent] = []
    result = push_image(sdk, layout, repo, "big", part_size=5 * MiB, progress=events.append)
    assert blob_events(events, layer.digest) == [
        (ProgressState.UPLOADING, 0),
        (ProgressState.UPLOADING, 5 * MiB),
        (ProgressState.UPLOADING, 10 * MiB),
        (ProgressState.UPLOADING, layer.size),
        (ProgressState.DONE, layer.size),
    ]
    assert result.bytes_sent == layer.size + image.config.size
    raw = skopeo_registry(registry, "inspect", "--raw", registry.ref(repo, "big")).stdout
    assert raw.encode() == image.manifest

    pulled = pull_image(sdk, repo, "big", tmp_path / "pulled", concurrency=1)
    assert Layout(tmp_path / "pulled").blob(layer.digest) == layer.data
    assert pulled.bytes_received == layer.size + image.config.size


def test_too_small_part_size_is_clamped_to_five_mib(sdk: ECR, repo: str, tmp_path: Path) -> None:
    _, layout, layer = big_image_layout(tmp_path)
    events: list[ProgressEvent] = []
    push_image(sdk, layout, repo, "big", part_size=1024, progress=events.append)
    offsets = [done for state, done in blob_events(events, layer.digest)]
    assert offsets == [0, 5 * MiB, 10 * MiB, layer.size, layer.size]


class Interrupt(Exception):
    pass


def test_interrupted_push_resumes_where_it_stopped(sdk: ECR, repo: str, tmp_path: Path) -> None:
    image, layout, layer = big_image_layout(tmp_path)

    def stop_after_first_part(event: ProgressEvent) -> None:
        if event.digest == layer.digest and event.bytes_done > 0:
            raise Interrupt

    with pytest.raises(Interrupt):
        push_image(sdk, layout, repo, "big", part_size=5 * MiB, progress=stop_after_first_part)
    assert sdk.batch_check_layer_availability(
        repository_name=repo, layer_digests=[layer.digest]
    ).failures

    events: list[ProgressEvent] = []
    result = push_image(sdk, layout, repo, "big", part_size=5 * MiB, progress=events.append)
    assert result.digest == image.digest
    # The unfinished upload continued at 5 MiB instead of starting over.
    assert blob_events(events, layer.digest)[0] == (ProgressState.UPLOADING, 5 * MiB)
    assert result.bytes_sent <= layer.size - 5 * MiB + image.config.size
    pull_image(sdk, repo, "big", tmp_path / "pulled")
    assert Layout(tmp_path / "pulled").blob(layer.digest) == layer.data


def test_async_interrupted_push_resumes(server: ServerProcess, repo: str, tmp_path: Path) -> None:
    image, layout, layer = big_image_layout(tmp_path)

    def stop_after_first_part(event: ProgressEvent) -> None:
        if event.digest == layer.digest and event.bytes_done > 0:
            raise Interrupt

    async def run() -> Any:
        async with async_sdk_client(server) as aecr:
            with pytest.raises(Interrupt):
                await apush_image(
                    aecr, layout, repo, "big", part_size=5 * MiB, progress=stop_after_first_part
                )
            return await apush_image(aecr, layout, repo, "big", part_size=5 * MiB)

    result = asyncio.run(run())
    assert result.digest == image.digest
    assert result.bytes_sent <= layer.size - 5 * MiB + image.config.size


class LoseFirstPartResponse(httpx.BaseTransport):
    """Delivers the first large UploadLayerPart to the server, then loses its response (as
    a timeout would)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        part = request.headers.get("X-Amz-Target") == UPLOAD_PART and len(request.content) > MiB
        if part and self.lost == 0:
            self.lost += 1
            response.read()
            response.close()
            raise httpx.ReadTimeout("response lost", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_lost_part_response_continues_from_last_valid_byte(
    server: ServerProcess, repo: str, tmp_path: Path
) -> None:
    image, layout, layer = big_image_layout(tmp_path)
    transport = LoseFirstPartResponse()
    events: list[ProgressEvent] = []
    with sdk_client(server, max_attempts=1, http_client=httpx.Client(transport=transport)) as sdk:
        result = push_image(
            sdk, layout, repo, "big", part_size=5 * MiB, concurrency=1, progress=events.append
        )
        assert transport.lost == 1
        assert result.digest == image.digest
        # The retried first part was refused (InvalidLayerPartException): the server had
        # it, so the upload went on from lastValidByteReceived + 1.
        offsets = [done for state, done in blob_events(events, layer.digest)]
        assert offsets == [0, 5 * MiB, 10 * MiB, layer.size, layer.size]
        assert result.bytes_sent == layer.size - 5 * MiB + image.config.size
        pull_image(sdk, repo, "big", tmp_path / "pulled")
    assert Layout(tmp_path / "pulled").blob(layer.digest) == layer.data


class CorruptBlobs(httpx.BaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "GET" and "/blobs/" in request.url.path:
            body = bytearray(response.read())
            body[len(body) // 2] ^= 0xFF
            headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
            return httpx.Response(response.status_code, headers=headers, content=bytes(body))
        return response


def test_pull_deletes_a_blob_whose_digest_does_not_match(
    server: ServerProcess, sdk: ECR, repo: str, tmp_path: Path
) -> None:
    image = build_image(layers=1)
    write_oci_layout(tmp_path / "src", {"v1": image})
    push_image(sdk, tmp_path / "src", repo, "v1")
    with (
        sdk_client(server, http_client=httpx.Client(transport=CorruptBlobs())) as corrupting,
        pytest.raises(BlobDigestMismatchError),
    ):
        pull_image(corrupting, repo, "v1", tmp_path / "pulled")
    leftovers = [p for p in (tmp_path / "pulled" / "blobs").rglob("*") if p.is_file()]
    assert leftovers == []
    assert not (tmp_path / "pulled" / "index.json").exists()


class FailFirstBlobDownload(httpx.BaseTransport):
    """The first blob download breaks off after its headers."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.failed = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and "/blobs/" in request.url.path and not self.failed:
            self.failed += 1
            raise httpx.RemoteProtocolError("peer closed connection", request=request)
        return self.inner.handle_request(request)


def test_pull_retries_a_failed_download(
    server: ServerProcess, sdk: ECR, repo: str, tmp_path: Path
) -> None:
    image = build_image(layers=2)
    write_oci_layout(tmp_path / "src", {"v1": image})
    push_image(sdk, tmp_path / "src", repo, "v1")
    transport = FailFirstBlobDownload()
    with sdk_client(server, http_client=httpx.Client(transport=transport)) as flaky:
        pulled = pull_image(flaky, repo, "v1", tmp_path / "pulled", concurrency=1)
    assert transport.failed == 1
    assert set(pulled.blobs_downloaded) == set(image.blobs)
    assert Layout(tmp_path / "pulled").all_digests() == image_digests(image)


# -- docker_login ---------------------------------------------------------------------------


def skopeo_inspect_with_authfile(authfile: Path, reference: str) -> dict[str, Any]:
    result = skopeo("inspect", "--tls-verify=false", "--authfile", str(authfile), reference)
    inspected: dict[str, Any] = json.loads(result.stdout)
    return inspected


def test_docker_login_merges_into_config_json(
    server: ServerProcess, sdk: ECR, repo: str, tmp_path: Path
) -> None:
    image = build_image()
    write_oci_layout(tmp_path / "src", {"v1": image})
    push_image(sdk, tmp_path / "src", repo, "v1")
    config = tmp_path / "docker" / "config.json"
    config.parent.mkdir()
    existing = {
        "auths": {"registry.example.com": {"auth": "dXNlcjpwYXNz"}},
        "HttpHeaders": {"User-Agent": "test"},
        "credHelpers": {"gcr.io": "gcloud"},
    }
    config.write_text(json.dumps(existing))
    os.chmod(config, 0o644)

    host = docker_login(sdk, config_path=config)

    assert host == f"127.0.0.1:{server.port}"
    written = json.loads(config.read_text())
    token = sdk.get_authorization_token().authorization_data[0]  # type: ignore[index]
    assert written["auths"]["registry.example.com"] == existing["auths"]["registry.example.com"]
    assert written["HttpHeaders"] == existing["HttpHeaders"]
    assert written["credHelpers"] == existing["credHelpers"]
    assert set(written["auths"][host]) == {"auth"}
    assert base64.b64decode(written["auths"][host]["auth"]).startswith(b"AWS:")
    assert token.proxy_endpoint == f"http://{host}"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert [p.name for p in config.parent.iterdir()] == ["config.json"]  # no temp files left

    inspected = skopeo_inspect_with_authfile(config, f"docker://{host}/{repo}:v1")
    assert inspected["Digest"] == image.digest


def test_docker_login_uses_docker_config_dir_and_async_twin(
    server: ServerProcess, sdk: ECR, repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = build_image()
    write_oci_layout(tmp_path / "src", {"v1": image})
    push_image(sdk, tmp_path / "src", repo, "v1")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))

    async def run() -> str:
        async with async_sdk_client(server) as aecr:
            return await adocker_login(aecr)

    host = asyncio.run(run())
    config = tmp_path / "dc" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert list(json.loads(config.read_text())["auths"]) == [host]
    assert skopeo_inspect_with_authfile(config, f"docker://{host}/{repo}:v1")["Digest"] == (
        image.digest
    )
    assert docker_login(sdk) == host  # again: replaces the entry
    assert list(json.loads(config.read_text())["auths"]) == [host]


# -- docker-credential-openecr --------------------------------------------------------------


def helper_env(server_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OPENECR_"))}
    env.update(
        AWS_ACCESS_KEY_ID=TEST_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=TEST_SECRET_KEY,
        AWS_REGION=TEST_REGION,
        AWS_ENDPOINT_URL_ECR=server_url,
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    return env


def credential_helper(
    action: str, stdin: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openecr.sdk.credential_helper", action],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_credential_helper_get_list_erase_store(
    server: ServerProcess, sdk: ECR, repo: str, tmp_path: Path
) -> None:
    image = build_image()
    write_oci_layout(tmp_path / "src", {"v1": image})
    push_image(sdk, tmp_path / "src", repo, "v1")
    env = helper_env(server.url, tmp_path)
    host = f"127.0.0.1:{server.port}"

    got = credential_helper("get", host + "\n", env)
    assert got.returncode == 0, got.stderr
    answer = json.loads(got.stdout)
    assert answer["ServerURL"] == host
    assert answer["Username"] == "AWS"
    manifest = httpx.get(
        f"{server.url}/v2/{repo}/manifests/v1",
        auth=("AWS", answer["Secret"]),
        headers={"Accept": OCI_MANIFEST},
    )
    assert manifest.status_code == 200
    assert manifest.content == image.manifest

    cache = tmp_path / "cache" / "openecr" / "docker-credentials.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600

    # Cached: answered without the API (whose endpoint is now unreachable).
    dead = helper_env("http://127.0.0.1:9", tmp_path)
    cached = credential_helper("get", host, dead)
    assert cached.returncode == 0, cached.stderr
    assert json.loads(cached.stdout)["Secret"] == answer["Secret"]

    listed = credential_helper("list", "", env)
    assert listed.returncode == 0
    assert json.loads(listed.stdout) == {host: "AWS"}

    stored = credential_helper(
        "store", json.dumps({"ServerURL": host, "Username": "x", "Secret": "y"}), env
    )
    assert stored.returncode == 0
    assert json.loads(credential_helper("list", "", env).stdout) == {host: "AWS"}

    erased = credential_helper("erase", host, env)
    assert erased.returncode == 0
    assert json.loads(credential_helper("list", "", env).stdout) == {}
    failed = credential_helper("get", host, dead)  # nothing cached any more
    assert failed.returncode != 0
    assert "docker-credential-openecr" in failed.stderr
    assert failed.stdout == ""


def test_credential_helper_refuses_other_registries_and_reports_errors(
    server: ServerProcess, tmp_path: Path
) -> None:
    env = helper_env(server.url, tmp_path)
    other = credential_helper("get", "https://index.docker.io/v1/", env)
    assert other.returncode == 1
    assert other.stdout.strip() == "credentials not found in native keychain"

    no_credentials = {k: v for k, v in env.items() if not k.startswith("AWS_ACCESS_KEY")}
    no_credentials.pop("AWS_SECRET_ACCESS_KEY")
    failed = credential_helper("get", f"127.0.0.1:{server.port}", no_credentials)
    assert failed.returncode == 1
    assert "Unable to locate credentials" in failed.stderr

    unknown = credential_helper("frobnicate", "", env)
    assert unknown.returncode == 1
    assert "unknown action" in unknown.stderr


def test_skopeo_uses_the_credential_helper(
    server: ServerProcess, sdk: ECR, repo: str, tmp_path: Path
) -> None:
    image = build_image()
    write_oci_layout(tmp_path / "src", {"v1": image})
    push_image(sdk, tmp_path / "src", repo, "v1")
    host = f"127.0.0.1:{server.port}"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "docker-credential-openecr"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m openecr.sdk.credential_helper "$@"\n')
    wrapper.chmod(0o755)
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"credHelpers": {host: "openecr"}}))
    env = helper_env(server.url, tmp_path)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"

    result = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--authfile", str(authfile),
         f"docker://{host}/{repo}:v1"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Digest"] == image.digest
    cached = json.loads(credential_helper("list", "", env).stdout)
    assert cached == {host: "AWS"}
