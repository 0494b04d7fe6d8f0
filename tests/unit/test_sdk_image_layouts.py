"""The I/O-free and local parts of the SDK's image workflows: part sizes, manifest parsing,
image sources (OCI layouts, both ``docker save`` formats), the layout writer, atomic writes,
and the sync/async drivers' concurrency semantics."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from docker_save import (
    image_of,
    oci_manifest,
    saved_image,
    sha256,
    write_classic_save,
    write_oci_save,
)
from images import build_image, build_index, write_oci_layout

from openecr import ECR, AsyncECR
from openecr.sdk.credential_helper import CACHE_MARGIN_SECONDS, _fresh, _password
from openecr.sdk.docker_auth import registry_host
from openecr.sdk.images import (
    BlobDigestMismatchError,
    DockerArchiveSource,
    ImageSourceError,
    OCILayoutSource,
    OCILayoutWriter,
    open_image_source,
)
from openecr.sdk.images._files import write_atomically
from openecr.sdk.images._workflow import (
    Aborted,
    AsyncDriver,
    Blocking,
    Gather,
    Progress,
    Sleep,
    SyncDriver,
    Workflow,
)
from openecr.sdk.images.layout import DOCKER_LAYER, DOCKER_LAYER_GZIP, parse_manifest
from openecr.sdk.images.progress import ProgressEvent, ProgressState
from openecr.sdk.images.push import (
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    choose_part_size,
)

MiB = 1024 * 1024


# -- part sizes -----------------------------------------------------------------------------


def test_part_size_uses_request_then_advertised_then_ten_mib_clamped() -> None:
    assert choose_part_size(None, None, 100) == 10 * MiB
    assert choose_part_size(None, 10 * MiB, 100) == 10 * MiB
    assert choose_part_size(6 * MiB, 10 * MiB, 100) == 6 * MiB
    assert choose_part_size(1024, None, 100) == MIN_PART_SIZE
    assert choose_part_size(None, 1, 100) == MIN_PART_SIZE
    assert choose_part_size(100 * MiB, None, 100) == MAX_PART_SIZE


def test_part_size_grows_to_stay_within_4200_parts() -> None:
    size = 5 * MiB * MAX_PARTS + 1
    part = choose_part_size(5 * MiB, None, size)
    assert part * MAX_PARTS >= size
    assert part <= MAX_PART_SIZE
    with pytest.raises(ImageSourceError, match="exceeds"):
        choose_part_size(None, None, MAX_PART_SIZE * MAX_PARTS + 1)


# -- manifests ------------------------------------------------------------------------------


def test_parse_manifest_uses_the_hint_when_the_document_has_no_media_type() -> None:
    image = build_image(layers=2)
    document = json.loads(image.manifest)
    del document["mediaType"]
    parsed = parse_manifest(
        json.dumps(document).encode(), "application/vnd.oci.image.manifest.v1+json"
    )
    assert parsed.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert [blob.digest for blob in parsed.blobs] == [
        image.config.digest,
        *(layer.digest for layer in image.layers),
    ]
    assert parse_manifest(json.dumps(document).encode()).media_type == (
        "application/vnd.oci.image.manifest.v1+json"
    )


def test_parse_index_lists_only_manifests() -> None:
    index = build_index([build_image(), build_image()])
    document = json.loads(index.manifest)
    document["manifests"].append(
        {"mediaType": "application/vnd.example+json", "digest": "sha256:" + "a" * 64, "size": 1}
    )
    parsed = parse_manifest(json.dumps(document).encode())
    assert parsed.is_index
    assert [child.digest for child in parsed.children] == [i.digest for i in index.images]


@pytest.mark.parametrize(
    "document, message",
    [
        ({"schemaVersion": 1, "fsLayers": []}, "schema 1"),
        (
            {"schemaVersion": 2, "config": {"mediaType": "x/y", "digest": "md5:00", "size": 1}},
            "digest",
        ),
        (
            {"schemaVersion": 2, "layers": [{"mediaType": "x/y", "digest": "sha256:" + "0" * 64}]},
            "size",
        ),
        ([], "not a JSON object"),
    ],
)
def test_parse_manifest_rejects_what_it_cannot_push(document: Any, message: str) -> None:
    with pytest.raises(ImageSourceError, match=message):
        parse_manifest(json.dumps(document).encode())


# -- OCI layouts ----------------------------------------------------------------------------


def test_oci_layout_picks_the_image_by_ref_or_the_only_one(tmp_path: Path) -> None:
    one, two = build_image(), build_image()
    write_oci_layout(tmp_path / "single", {"v1": one})
    with open_image_source(tmp_path / "single") as source:
        assert isinstance(source, OCILayoutSource)
        assert source.load().digest == one.digest

    write_oci_layout(tmp_path / "two", {"one": one, "two": two})
    with pytest.raises(ImageSourceError, match=r"choose one with ref= \(names: one, two\)"):
        open_image_source(tmp_path / "two").load()
    with pytest.raises(ImageSourceError, match="no image named 'three'"):
        open_image_source(tmp_path / "two", ref="three").load()
    assert open_image_source(tmp_path / "two", ref="two").load().digest == two.digest
    assert open_image_source(tmp_path / "two", ref=one.digest).load().digest == one.digest


def test_oci_layout_reads_blobs_in_ranges(tmp_path: Path) -> None:
    image = build_image(layers=1, layer_size=100_000)
    write_oci_layout(tmp_path / "src", {"v1": image})
    source = OCILayoutSource(tmp_path / "src")
    layer = image.layers[0]
    assert source.read_blob(layer.digest, 0, 10) == layer.data[:10]
    assert source.read_blob(layer.digest, 1000, 5000) == layer.data[1000:6000]
    assert source.read_blob(layer.digest, layer.size - 3, 100) == layer.data[-3:]


def test_oci_layout_index_loads_every_child(tmp_path: Path) -> None:
    index = build_index([build_image(), build_image()])
    write_oci_layout(tmp_path / "src", {"multi": index})
    loaded = open_image_source(tmp_path / "src").load()
    assert loaded.is_index
    assert [m.digest for m in loaded.walk()] == [*(i.digest for i in index.images), index.digest]
    assert {blob.digest for blob in loaded.distributable_blobs()} == set(index.blobs)


def test_oci_layout_problems_are_reported(tmp_path: Path) -> None:
    image = build_image(layers=1)
    root = write_oci_layout(tmp_path / "src", {"v1": image})
    (root / "blobs" / "sha256" / image.layers[0].digest.split(":")[1]).unlink()
    with pytest.raises(ImageSourceError, match="is missing"):
        open_image_source(root).load()

    other = write_oci_layout(tmp_path / "bad", {"v1": image})
    manifest_path = other / "blobs" / "sha256" / image.digest.split(":")[1]
    manifest_path.write_bytes(image.manifest + b" ")
    with pytest.raises(BlobDigestMismatchError):
        open_image_source(other).load()

    index = build_index([build_image(), build_image()])
    partial = write_oci_layout(tmp_path / "partial", {"multi": index})
    (partial / "blobs" / "sha256" / index.images[1].digest.split(":")[1]).unlink()
    with pytest.raises(ImageSourceError, match="partial save"):
        open_image_source(partial).load()
    present = index.images[0]
    loaded = open_image_source(partial, ref=present.digest).load()  # one platform by digest
    assert (loaded.digest, loaded.media_type) == (present.digest, present.media_type)

    with pytest.raises(ImageSourceError, match="neither an OCI image layout"):
        open_image_source(tmp_path)
    with pytest.raises(ImageSourceError, match="no such file"):
        open_image_source(tmp_path / "nothing")


# -- docker save archives -----------------------------------------------------------------


def test_classic_docker_save_builds_a_schema2_manifest(tmp_path: Path) -> None:
    app = saved_image("myapp:1.0", [3000, 5000])
    # A layer repeated in a second image is a symlink to the first copy.
    other = image_of("other:2", [app.layers[0], *saved_image("x:1", [10]).layers])
    archive = write_classic_save(tmp_path / "save.tar", [app, other])

    with open_image_source(archive, ref="other:2") as source:
        assert isinstance(source, DockerArchiveSource)
        loaded = source.load()
        document = json.loads(loaded.data)
        assert [layer["digest"] for layer in document["layers"]] == [
            sha256(app.layers[0]),
            sha256(other.layers[1]),
        ]
        assert {layer["mediaType"] for layer in document["layers"]} == {DOCKER_LAYER}
        assert document["config"]["digest"] == sha256(other.config)
        assert loaded.digest == sha256(loaded.data)
        symlinked = app.layers[0]
        assert source.read_blob(sha256(symlinked), 100, 50) == symlinked[100:150]
        assert source.read_blob(sha256(other.config), 0, 1 << 20) == other.config

    # By tag alone, too.
    assert open_image_source(archive, ref="1.0").load().blobs[1].digest == sha256(app.layers[0])


def test_classic_docker_save_extracted_or_compressed(tmp_path: Path) -> None:
    app = saved_image("myapp:1.0", [2000])
    plain = write_classic_save(tmp_path / "save.tar", [app])
    expected = open_image_source(plain).load().digest

    compressed = write_classic_save(tmp_path / "save.tar.gz", [app], compress=True)
    source = open_image_source(compressed)
    temporary = source._tree._temporary  # type: ignore[attr-defined]
    assert temporary is not None and temporary.exists()
    assert source.load().digest == expected
    source.close()
    assert not temporary.exists()

    with tarfile.open(plain) as archive:
        archive.extractall(tmp_path / "extracted", filter="fully_trusted")
    assert open_image_source(tmp_path / "extracted").load().digest == expected

    # Re-archived the way `tar -C dir -cf x.tar .` does: "./" entries.
    with tarfile.open(tmp_path / "dot.tar", "w") as archive:
        archive.add(tmp_path / "extracted", arcname=".")
    assert open_image_source(tmp_path / "dot.tar").load().digest == expected


def test_classic_docker_save_checks_layers_against_the_config(tmp_path: Path) -> None:
    app = saved_image("myapp:1.0", [2000])
    config = json.loads(app.config)
    config["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
    broken = type(app)(app.repo_tag, json.dumps(config).encode(), app.layers)
    archive = write_classic_save(tmp_path / "save.tar", [broken])
    with pytest.raises(BlobDigestMismatchError, match="the config says"):
        open_image_source(archive).load()


def test_gzip_layers_in_a_classic_archive_keep_their_compression(tmp_path: Path) -> None:
    image = build_image(layers=1)  # gzip layers, as go-containerregistry's tarballs hold
    root = tmp_path / "x"
    root.mkdir()
    (root / "layer.tar.gz").write_bytes(image.layers[0].data)
    (root / "config.json").write_bytes(image.config.data)
    (root / "manifest.json").write_text(
        json.dumps([{"Config": "config.json", "RepoTags": [], "Layers": ["layer.tar.gz"]}])
    )
    loaded = open_image_source(root).load()
    assert json.loads(loaded.data)["layers"] == [
        {
            "mediaType": DOCKER_LAYER_GZIP,
            "size": image.layers[0].size,
            "digest": image.layers[0].digest,
        }
    ]


def test_docker_25_save_is_read_as_an_oci_layout(tmp_path: Path) -> None:
    app, other = saved_image("myapp:1.0", [100]), saved_image("other:2", [100])
    archive = write_oci_save(tmp_path / "save.tar", [app, other])
    for ref in ("docker.io/library/myapp:1.0", "1.0"):
        with open_image_source(archive, ref=ref) as source:
            assert isinstance(source, OCILayoutSource)
            assert source.load().data == oci_manifest(app)


def test_paths_cannot_escape_the_source(tmp_path: Path) -> None:
    root = tmp_path / "x"
    root.mkdir()
    (root / "manifest.json").write_text(
        json.dumps([{"Config": "../secret.json", "RepoTags": [], "Layers": []}])
    )
    (tmp_path / "secret.json").write_text("{}")
    with pytest.raises(ImageSourceError, match="invalid path"):
        open_image_source(root).load()


# -- the layout writer and atomic writes ---------------------------------------------------


def test_layout_writer_verifies_blobs_and_merges_index(tmp_path: Path) -> None:
    writer = OCILayoutWriter(tmp_path / "out")
    data = b"x" * 1000
    digest = sha256(data)
    sink = writer.open_blob(digest, len(data))
    sink.write(data[:500])
    sink.write(data[500:])
    sink.commit()
    assert writer.blob_path(digest).read_bytes() == data
    assert writer.has_blob(digest, len(data))

    bad = writer.open_blob(sha256(b"other"), 5)
    bad.write(b"wrong")
    with pytest.raises(BlobDigestMismatchError):
        bad.commit()
    too_long = writer.open_blob(sha256(b"abc"), 3)
    with pytest.raises(BlobDigestMismatchError, match="longer"):
        too_long.write(b"abcd")
    files = sorted(p.name for p in (tmp_path / "out" / "blobs" / "sha256").iterdir())
    assert files == [digest.split(":")[1]]  # no partial files left

    with pytest.raises(BlobDigestMismatchError):
        writer.write_blob(b"{}", sha256(b"[]"))

    writer.add_reference("sha256:" + "1" * 64, 10, "m/1", "v1")
    writer.add_reference("sha256:" + "2" * 64, 20, "m/2", None)
    writer.add_reference("sha256:" + "3" * 64, 30, "m/3", "v1")  # replaces v1
    writer.add_reference("sha256:" + "2" * 64, 20, "m/2", None)  # listed once, last
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert [(e["digest"][-1], e.get("annotations")) for e in index["manifests"]] == [
        ("3", {"org.opencontainers.image.ref.name": "v1"}),
        ("2", None),
    ]
    assert OCILayoutWriter(tmp_path / "out").has_blob(digest, len(data))  # reopens fine


def test_write_atomically_sets_the_mode_and_follows_symlinks(tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_atomically(link, b"new", mode=0o600)
    assert link.is_symlink()
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    write_atomically(tmp_path / "sub" / "f", b"x")
    assert stat.S_IMODE((tmp_path / "sub" / "f").stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json", "sub"]


def test_registry_host() -> None:
    assert registry_host("https://123456789012.dkr.ecr.us-east-1.amazonaws.com") == (
        "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    )
    assert registry_host("http://127.0.0.1:5000/") == "127.0.0.1:5000"
    assert registry_host("127.0.0.1:5000/v2/") == "127.0.0.1:5000"
    assert registry_host("  Registry.Example.com\n") == "registry.example.com"


def test_credential_helper_token_rules() -> None:
    assert _password(base64.b64encode(b"AWS:secret:with:colons").decode()) == "secret:with:colons"
    with pytest.raises(Exception, match="AWS:<password>"):
        _password(base64.b64encode(b"bob:x").decode())
    now = time.time()
    assert _fresh({"expiresAt": now + CACHE_MARGIN_SECONDS + 60}, now)
    assert not _fresh({"expiresAt": now + CACHE_MARGIN_SECONDS - 60}, now)
    assert not _fresh({}, now)


# -- drivers ------------------------------------------------------------------------------

CLIENT_OPTIONS: dict[str, Any] = {
    "endpoint_url": "http://127.0.0.1:9",
    "region": "us-east-1",
    "access_key_id": "AKIDEXAMPLE",
    "secret_access_key": "secret",
}


class Boom(Exception):
    pass


def sleeper(name: str, log: list[str], steps: int = 5) -> Workflow[str]:
    try:
        for _ in range(steps):
            yield Sleep(0.01)
            yield Progress(ProgressEvent(name, "x", 0, 1, ProgressState.UPLOADING))
    except Aborted:
        log.append(f"{name} aborted")
        raise
    return name


def failing(log: list[str]) -> Workflow[str]:
    yield Sleep(0.02)
    log.append("failing raises")
    raise Boom


def parent(workflows: list[Workflow[Any]]) -> Workflow[list[Any]]:
    results: list[Any] = yield Gather(workflows)
    value = yield Blocking(lambda a, b: a + b, (1, 2))
    return [*results, value]


def run_both(make: Any, concurrency: int = 4) -> tuple[Any, Any]:
    """The same workflow through the sync and the async driver."""
    events: list[ProgressEvent] = []
    with ECR(**CLIENT_OPTIONS) as ecr:
        sync = SyncDriver(ecr, concurrency=concurrency, progress=events.append).run(make())

    async def run() -> Any:
        async with AsyncECR(**CLIENT_OPTIONS) as aecr:
            driver = AsyncDriver(aecr, concurrency=concurrency, progress=events.append)
            return await driver.run(make())

    return sync, asyncio.run(run())


def test_drivers_gather_results_in_order() -> None:
    log: list[str] = []
    sync, async_ = run_both(lambda: parent([sleeper(n, log) for n in "abc"]))
    assert sync == async_ == ["a", "b", "c", 3]
    assert log == []


@pytest.mark.parametrize("concurrency", [1, 3])
def test_drivers_abort_siblings_on_the_first_failure(concurrency: int) -> None:
    log: list[str] = []
    with ECR(**CLIENT_OPTIONS) as ecr:
        driver = SyncDriver(ecr, concurrency=concurrency, progress=None)
        with pytest.raises(Boom):
            driver.run(parent([sleeper("a", log, 50), failing(log), sleeper("b", log, 50)]))
    if concurrency == 1:
        assert log == ["failing raises"]  # sequential: "a" finished first, "b" never ran
    else:
        assert log[0] == "failing raises"
        assert set(log[1:]) == {"a aborted", "b aborted"}

    async_log: list[str] = []

    async def run() -> None:
        async with AsyncECR(**CLIENT_OPTIONS) as aecr:
            driver = AsyncDriver(aecr, concurrency=3, progress=None)
            await driver.run(
                parent(
                    [sleeper("a", async_log, 50), failing(async_log), sleeper("b", async_log, 50)]
                )
            )

    with pytest.raises(Boom):
        asyncio.run(run())
    assert async_log == ["failing raises"]  # the others were cancelled (closed, not thrown into)


def test_sync_driver_serializes_progress_callbacks() -> None:
    active = 0
    overlapped = False
    lock = threading.Lock()

    def progress(event: ProgressEvent) -> None:
        nonlocal active, overlapped
        with lock:
            active += 1
            overlapped |= active > 1
        time.sleep(0.001)
        with lock:
            active -= 1

    with ECR(**CLIENT_OPTIONS) as ecr:
        driver = SyncDriver(ecr, concurrency=4, progress=progress)
        driver.run(parent([sleeper(n, [], 10) for n in "abcd"]))
    assert not overlapped


def test_progress_exceptions_propagate_into_the_workflow() -> None:
    def progress(event: ProgressEvent) -> None:
        raise Boom

    with ECR(**CLIENT_OPTIONS) as ecr, pytest.raises(Boom):
        SyncDriver(ecr, concurrency=1, progress=progress).run(sleeper("a", []))


def test_cache_file_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from openecr.sdk.credential_helper import _load, _save, cache_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = cache_path()
    assert path == tmp_path / "openecr" / "docker-credentials.json"
    _save(path, {"h k": {"host": "h", "expiresAt": 1}})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _load(path) == {"h k": {"host": "h", "expiresAt": 1}}
    path.write_text("not json")
    assert _load(path) == {}
    assert os.access(path, os.R_OK)
