"""``openecr gc`` and ``openecr fsck``, run as child processes against a running server's
storage (its data directory and, on PostgreSQL, its database).

Every test starts its own server: collection is registry-wide, so it must never run on the
shared session servers. Those servers keep their hourly schedule; only the commands act.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ecr_helpers import make_ecr_client
from harness import ServerProcess
from images import Image, Layout, build_image, build_index, image_digests, write_oci_layout
from lifecycle_gc_helpers import (
    BACKENDS,
    Storage,
    database_for,
    gc_log_reports,
    image_digests_in,
    start_server,
)
from oci_helpers import Registry, ecr_push, login_password, skopeo_copy

GC_KEYS = {
    "dryRun",
    "uploadsPurged",
    "imagesDeleted",
    "linksRemoved",
    "blobsDeleted",
    "orphanFilesDeleted",
    "bytesReclaimed",
    "seconds",
}


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    with database_for(request.param) as url:
        yield Storage(tmp_path / "data", url)


@pytest.fixture
def running(storage: Storage) -> Iterator[ServerProcess]:
    server = start_server(storage)
    yield server
    server.kill()


@pytest.fixture
def ecr(running: ServerProcess) -> Any:
    return make_ecr_client(running.url)


@pytest.fixture
def registry(running: ServerProcess, ecr: Any) -> Iterator[Registry]:
    registry = Registry(running, login_password(ecr))
    yield registry
    registry.close()


def gc(storage: Storage, *args: str) -> dict[str, Any]:
    report: dict[str, Any] = storage.cli_json("gc", *args)
    assert set(report) == GC_KEYS, report
    return report


def mount(registry: Registry, repository: str, digest: str, source: str) -> httpx.Response:
    return registry.http.post(
        f"/v2/{repository}/blobs/uploads/", params={"mount": digest, "from": source}
    )


def pull_and_verify(registry: Registry, repository: str, image: Image, where: Path) -> None:
    skopeo_copy(registry, registry.ref(repository, image.digest), f"oci:{where}:pulled")
    layout = Layout(where)
    assert layout.all_digests() >= image_digests(image)
    assert layout.manifest("pulled") == image.manifest


# --- gc -----------------------------------------------------------------------------------


def test_gc_reclaims_unreferenced_blobs_and_spares_shared_ones(
    storage: Storage, ecr: Any, registry: Registry, tmp_path: Path
) -> None:
    ecr.create_repository(repositoryName="team/a")
    ecr.create_repository(repositoryName="team/b")
    # X (team/a) = shared layer S + its own layer; Y (team/b) = S mounted from team/a + own.
    base = build_image(layers=1, layer_size=8192)
    layer_s = base.layers[0]
    x = build_image(layers=1, layer_size=6000)
    x = _with_extra_layer(x, layer_s)
    y = _with_extra_layer(build_image(layers=1, layer_size=7000), layer_s)
    z = build_image(layers=1, layer_size=3000)
    registry.push("team/a", x, "x")
    registry.push("team/a", z, "z")
    for digest, data in y.blobs.items():
        if digest == layer_s.digest:
            response = mount(registry, "team/b", digest, "team/a")
            assert response.status_code == 201, response.text
        else:
            registry.upload_blob("team/b", data)
    assert registry.put_manifest("team/b", "y", y.manifest, y.media_type).status_code == 201

    ecr.batch_delete_image(repositoryName="team/a", imageIds=[{"imageTag": "x"}])
    only_x = set(x.blobs) - {layer_s.digest}
    reclaimable = sum(len(x.blobs[d]) for d in only_x)
    everything = set(x.blobs) | set(y.blobs) | set(z.blobs)
    assert storage.stored_blobs() == everything

    # Within the grace period nothing goes: the links are seconds old.
    young = gc(storage)
    assert young["blobsDeleted"] == young["linksRemoved"] == young["bytesReclaimed"] == 0

    dry = gc(storage, "--dry-run", "--gc-grace", "0")
    assert dry["dryRun"] is True
    assert storage.stored_blobs() == everything, "a dry run deleted blob files"
    assert registry.http.head(f"/v2/team/a/blobs/{layer_s.digest}").status_code == 200

    real = gc(storage, "--gc-grace", "0")
    assert real["dryRun"] is False
    assert real["linksRemoved"] == 3  # team/a's links to S, X's layer and X's config
    assert real["blobsDeleted"] == 2
    assert real["bytesReclaimed"] == reclaimable
    assert real["uploadsPurged"] == real["orphanFilesDeleted"] == real["imagesDeleted"] == 0
    assert storage.stored_blobs() == everything - only_x
    for digest in only_x:
        assert not storage.blob_path(digest).exists()
    # S is gone from team/a (nothing there uses it) but lives on in team/b.
    assert registry.http.head(f"/v2/team/a/blobs/{layer_s.digest}").status_code == 404
    assert registry.http.get(f"/v2/team/b/blobs/{layer_s.digest}").content == layer_s.data
    pull_and_verify(registry, "team/b", y, tmp_path / "y")
    pull_and_verify(registry, "team/a", z, tmp_path / "z")

    again = gc(storage, "--gc-grace", "0")
    assert again["blobsDeleted"] == again["linksRemoved"] == again["bytesReclaimed"] == 0


def _with_extra_layer(image: Image, layer: Any) -> Image:
    """The image with ``layer`` prepended (config diff_ids are not checked by the server)."""
    document = image.manifest_json
    document["layers"] = [layer.descriptor(), *document["layers"]]
    manifest = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return Image(manifest, image.media_type, image.config, [layer, *image.layers])


def test_gc_dry_run_reports_what_the_real_run_reclaims(
    storage: Storage, ecr: Any, registry: Registry
) -> None:
    ecr.create_repository(repositoryName="team/a")
    image = build_image(layers=2, layer_size=5000)
    registry.push("team/a", image, "v1")
    ecr.batch_delete_image(repositoryName="team/a", imageIds=[{"imageTag": "v1"}])
    dry = gc(storage, "--dry-run", "--gc-grace", "0")
    real = gc(storage, "--gc-grace", "0")
    assert real["blobsDeleted"] == 3
    assert real["bytesReclaimed"] == sum(len(data) for data in image.blobs.values())
    assert {k: v for k, v in dry.items() if k not in ("dryRun", "seconds")} == {
        k: v for k, v in real.items() if k not in ("dryRun", "seconds")
    }


def test_gc_purges_abandoned_uploads(
    storage: Storage, ecr: Any, registry: Registry, running: ServerProcess
) -> None:
    ecr.create_repository(repositoryName="team/up")
    started = registry.http.post("/v2/team/up/blobs/uploads/")
    assert started.status_code == 202
    location = started.headers["Location"]
    patched = registry.http.patch(
        location, content=os.urandom(3000), headers={"Content-Type": "application/octet-stream"}
    )
    assert patched.status_code == 202
    location = patched.headers["Location"]
    ecr_upload = ecr.initiate_layer_upload(repositoryName="team/up")["uploadId"]
    ecr.upload_layer_part(
        repositoryName="team/up",
        uploadId=ecr_upload,
        partFirstByte=0,
        partLastByte=1999,
        layerPartBlob=os.urandom(2000),
    )
    assert len(storage.upload_files()) == 2

    fresh = gc(storage, "--gc-grace", "0", "--upload-expiry", "3600")
    assert fresh["uploadsPurged"] == 0
    assert len(storage.upload_files()) == 2
    time.sleep(1.2)
    dry = gc(storage, "--dry-run", "--upload-expiry", "1")
    assert dry["uploadsPurged"] == 2 and dry["bytesReclaimed"] == 5000
    assert len(storage.upload_files()) == 2
    real = gc(storage, "--upload-expiry", "1")
    assert real["uploadsPurged"] == 2 and real["bytesReclaimed"] == 5000
    assert storage.upload_files() == set()
    resumed = registry.http.patch(
        location, content=b"more", headers={"Content-Type": "application/octet-stream"}
    )
    assert resumed.status_code == 404
    assert resumed.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    with pytest.raises(ecr.exceptions.UploadNotFoundException):
        ecr.upload_layer_part(
            repositoryName="team/up",
            uploadId=ecr_upload,
            partFirstByte=2000,
            partLastByte=2003,
            layerPartBlob=b"more",
        )
    # The upload files whose row is gone are purged as well (nothing left to find here).
    assert gc(storage, "--upload-expiry", "1")["uploadsPurged"] == 0


def test_gc_untagged_deletes_untagged_images_no_index_references(
    storage: Storage, ecr: Any, registry: Registry
) -> None:
    ecr.create_repository(repositoryName="team/u")
    tagged = build_image(layers=1, layer_size=2000)
    untagged = build_image(layers=1, layer_size=2100)
    replaced = build_image(layers=1, layer_size=2200)
    latest = build_image(layers=1, layer_size=2300)
    amd64 = build_image(layers=1, layer_size=2400, with_platform=True)
    arm64 = build_image(layers=1, layer_size=2500, architecture="arm64", with_platform=True)
    index = build_index([amd64, arm64])
    ecr_push(ecr, "team/u", tagged, "v1")
    ecr_push(ecr, "team/u", untagged)
    ecr_push(ecr, "team/u", replaced, "latest")
    ecr_push(ecr, "team/u", latest, "latest")  # moves the tag: `replaced` is now untagged
    ecr_push(ecr, "team/u", index, "multi")  # children untagged, referenced
    everything = [tagged, untagged, replaced, latest, amd64, arm64]
    all_blobs = {d for image in everything for d in image.blobs}
    all_images = {image.digest for image in everything} | {index.digest}

    plain = gc(storage, "--gc-grace", "0")
    assert plain["imagesDeleted"] == 0
    assert image_digests_in(ecr, "team/u") == all_images
    dry = gc(storage, "--untagged", "--dry-run", "--gc-grace", "0")
    assert dry["imagesDeleted"] == 2
    assert image_digests_in(ecr, "team/u") == all_images
    assert storage.stored_blobs() == all_blobs

    real = gc(storage, "--untagged", "--gc-grace", "0")
    assert real["imagesDeleted"] == 2
    assert image_digests_in(ecr, "team/u") == all_images - {untagged.digest, replaced.digest}
    gone = set(untagged.blobs) | set(replaced.blobs)
    assert real["blobsDeleted"] == len(gone)
    assert real["bytesReclaimed"] == sum(
        len(data) for image in (untagged, replaced) for data in image.blobs.values()
    )
    assert storage.stored_blobs() == all_blobs - gone
    # A young untagged image survives the grace period.
    fresh = build_image(layers=1, layer_size=1000)
    ecr_push(ecr, "team/u", fresh)
    assert gc(storage, "--untagged")["imagesDeleted"] == 0
    assert fresh.digest in image_digests_in(ecr, "team/u")


# --- races between a running server and gc commands ---------------------------------------


class _Holder:
    """Holds the write lock of the server's database while a test looks at the moment in
    between: SQLite, ``BEGIN IMMEDIATE`` on the database file; PostgreSQL, an EXCLUSIVE
    lock on the ``blobs`` table (readers pass, writers of that table wait)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._sqlite: Any = None
        self._psql: subprocess.Popen[str] | None = None

    def __enter__(self) -> _Holder:
        if self.storage.database_url is None:
            import sqlite3

            self._sqlite = sqlite3.connect(
                self.storage.sqlite_path, timeout=30, isolation_level=None
            )
            self._sqlite.execute("BEGIN IMMEDIATE")
            return self
        self._psql = subprocess.Popen(
            ["psql", self.storage.database_url, "-q"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self._psql.stdin is not None
        self._psql.stdin.write("BEGIN; LOCK TABLE blobs IN EXCLUSIVE MODE;\n")
        self._psql.stdin.flush()
        query = (
            "SELECT count(*) FROM pg_locks WHERE relation = 'blobs'::regclass "
            "AND mode = 'ExclusiveLock' AND granted"
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            count = subprocess.run(
                ["psql", self.storage.database_url, "-tA", "-c", query],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            if count == "1":
                return self
            time.sleep(0.05)
        raise AssertionError("could not lock the blobs table")

    def __exit__(self, *exc: object) -> None:
        if self._sqlite is not None:
            self._sqlite.execute("COMMIT")
            self._sqlite.close()
        if self._psql is not None:
            assert self._psql.stdin is not None
            self._psql.stdin.write("COMMIT;\n")
            self._psql.stdin.close()
            self._psql.wait(timeout=10)


def test_gc_command_never_deletes_a_blob_the_server_is_publishing(
    storage: Storage, ecr: Any, registry: Registry
) -> None:
    """The window between a blob's bytes being published and its row being recorded.

    The server's database is held locked right after the upload's bytes were renamed into
    ``blobs/`` (the server then waits to record them), and ``openecr gc`` runs in that
    window. The blob file's mtime is set an hour back (the last chunk of an upload can be
    that old when its final PUT comes), so the file-age grace does not protect it: only the
    blob's named lock, which the server holds until the row is recorded, does. gc must wait
    for it, find the blob recorded, and leave it alone. (Before the named lock worked
    across processes on SQLite, gc deleted the file and the server then acknowledged the
    blob and an image using it: bytes lost.)

    The lock is released when gc exits or after 8 s; with the grace of 30 s the link the
    server records is young, so nothing else may collect the blob afterwards either.
    """
    ecr.create_repository(repositoryName="team/race")
    image = build_image(layers=1, layer_size=4000)
    layer = image.layers[0]
    started = registry.http.post("/v2/team/race/blobs/uploads/")
    location = registry.http.patch(
        started.headers["Location"],
        content=layer.data,
        headers={"Content-Type": "application/octet-stream"},
    ).headers["Location"]
    finished: dict[str, httpx.Response] = {}
    path = storage.blob_path(layer.digest)
    with _Holder(storage):
        finisher = threading.Thread(
            target=lambda: finished.setdefault(
                "put", registry.http.put(location, params={"digest": layer.digest})
            )
        )
        finisher.start()
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert path.exists(), "the server did not publish the blob"
        an_hour_ago = time.time() - 3600
        os.utime(path, (an_hour_ago, an_hour_ago))
        collector = storage.popen("gc", "--gc-grace", "30")
        with contextlib.suppress(subprocess.TimeoutExpired):
            # gc should wait for the blob's lock, held by the server until it is recorded.
            collector.wait(timeout=8)
    out, err = collector.communicate(timeout=60)
    assert collector.returncode == 0, err
    finisher.join(timeout=60)
    assert finished["put"].status_code == 201
    assert json.loads(out)["orphanFilesDeleted"] == 0
    assert path.exists(), "gc deleted the bytes of an acknowledged blob"
    registry.upload_blob("team/race", image.config.data)
    response = registry.put_manifest("team/race", "v1", image.manifest, image.media_type)
    assert response.status_code == 201, response.text
    assert registry.http.get(f"/v2/team/race/blobs/{layer.digest}").content == layer.data


SEEN_GRACE = 8


def test_a_blob_seen_by_a_pushing_client_is_not_collected_under_it(storage: Storage) -> None:
    """The grace period is meant to cover the moment between a push's blobs and its
    manifest. A client that finds a blob already in the repository (HEAD 200, or
    BatchCheckLayerAvailability AVAILABLE) skips it and sends its manifest a moment later;
    the link it relies on must survive that moment too, however old the link is.

    The server sweeps every second with an 8 s grace. The image using the layer is
    deleted; 5 s after the push (the link is older than half the grace) a client finds
    the layer, and sends its manifest 5 s later, when the link, unless the server renewed
    it on that HEAD, is older than the grace and has been swept. (Before links were
    renewed, the manifest failed with MANIFEST_BLOB_UNKNOWN.) Load can only delay the
    sweeps, never make them early, so it cannot fail this test wrongly.
    """
    server = start_server(
        storage, "--gc-grace", str(SEEN_GRACE), "--gc-interval", "1", "--log-level", "info"
    )
    try:
        ecr = make_ecr_client(server.url)
        registry = Registry(server, login_password(ecr))
        ecr.create_repository(repositoryName="team/old")
        first = build_image(layers=1, layer_size=3000)
        registry.push("team/old", first, "v1")
        pushed = time.monotonic()
        ecr.batch_delete_image(repositoryName="team/old", imageIds=[{"imageTag": "v1"}])
        layer = first.layers[0]
        second = _with_extra_layer(build_image(layers=1, layer_size=1000), layer)
        time.sleep(max(0.0, pushed + SEEN_GRACE / 2 + 1 - time.monotonic()))
        # The client checks what it has to upload: the layer is there.
        assert registry.http.head(f"/v2/team/old/blobs/{layer.digest}").status_code == 200
        available = ecr.batch_check_layer_availability(
            repositoryName="team/old", layerDigests=[layer.digest]
        )
        assert available["layers"][0]["layerAvailability"] == "AVAILABLE"
        seen = time.monotonic()
        for digest, data in second.blobs.items():
            if digest != layer.digest:
                registry.upload_blob("team/old", data)
        time.sleep(max(0.0, seen + SEEN_GRACE / 2 + 1 - time.monotonic()))
        response = registry.put_manifest("team/old", "v2", second.manifest, second.media_type)
        assert response.status_code == 201, response.text
        assert gc_log_reports(server.output()), "the server's GC did not run"
        registry.close()
    finally:
        server.kill()


# --- fsck ---------------------------------------------------------------------------------


def test_fsck_reports_corruption_and_repair_quarantines_it(
    storage: Storage, ecr: Any, registry: Registry, tmp_path: Path
) -> None:
    ecr.create_repository(repositoryName="team/fsck")
    image = build_image(layers=2, layer_size=3000)
    other = build_image(layers=1, layer_size=2000)
    write_oci_layout(tmp_path / "src", {"v1": image})
    skopeo_copy(
        registry,
        f"oci:{tmp_path / 'src'}:v1",
        registry.ref("team/fsck", "v1"),
        "--preserve-digests",
    )
    registry.push("team/fsck", other, "v2")
    healthy = storage.cli_json("fsck")
    assert healthy == {
        "ok": True,
        "blobsChecked": 5,
        "referencesChecked": 5,
        "problems": [],
        "quarantined": [],
    }

    victim = image.layers[1]
    path = storage.blob_path(victim.digest)
    corrupt = bytearray(path.read_bytes())
    corrupt[100] ^= 0xFF  # same size, different content
    os.chmod(path, 0o644)
    path.write_bytes(bytes(corrupt))
    served = registry.http.get(f"/v2/team/fsck/blobs/{victim.digest}")
    assert served.status_code == 200 and served.content == bytes(corrupt)

    checked = storage.cli("fsck", check=False)
    assert checked.returncode != 0
    report = json.loads(checked.stdout)
    assert report["ok"] is False and report["quarantined"] == []
    assert any(victim.digest in problem for problem in report["problems"]), report
    assert path.exists(), "fsck without --repair moved a blob"

    repaired = storage.cli("fsck", "--repair", check=False)
    assert repaired.returncode != 0
    report = json.loads(repaired.stdout)
    assert report["quarantined"] == [victim.digest]
    assert not path.exists()
    algorithm, hex_digest = victim.digest.split(":")
    quarantined = storage.data_dir / "quarantine" / f"{algorithm}-{hex_digest}"
    assert quarantined.read_bytes() == bytes(corrupt)
    for method in ("GET", "HEAD"):
        response = registry.http.request(method, f"/v2/team/fsck/blobs/{victim.digest}")
        assert response.status_code == 404, (method, response.status_code)
    assert registry.http.get(f"/v2/team/fsck/blobs/{image.layers[0].digest}").status_code == 200

    # Still unhealthy (the image needs the blob) until the blob is pushed again.
    after = storage.cli("fsck", check=False)
    assert after.returncode != 0
    assert any(
        victim.digest in problem and "missing" in problem
        for problem in json.loads(after.stdout)["problems"]
    )
    registry.upload_blob("team/fsck", victim.data)
    assert storage.cli_json("fsck")["ok"] is True
    pulled = tmp_path / "pulled"
    skopeo_copy(registry, registry.ref("team/fsck", "v1"), f"oci:{pulled}:v1")
    assert Layout(pulled).all_digests() >= image_digests(image)


def test_fsck_reports_missing_bytes(storage: Storage, ecr: Any, registry: Registry) -> None:
    ecr.create_repository(repositoryName="team/gone")
    image = build_image(layers=1, layer_size=1000)
    registry.push("team/gone", image, "v1")
    storage.blob_path(image.layers[0].digest).unlink()
    result = storage.cli("fsck", check=False)
    assert result.returncode == 1
    problems = json.loads(result.stdout)["problems"]
    assert any(image.layers[0].digest in p and "missing" in p for p in problems), problems
