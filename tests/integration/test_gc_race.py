"""Online garbage collection racing pushes, deletes and lifecycle expiry: no image lost.

One server per backend runs GC every second (grace 5 s) and lifecycle enforcement every
2 s. Meanwhile, for ~15 s:

* pusher threads push images built from a small pool of shared layers plus unique ones,
  to four repositories, three ways: raw /v2/ HTTP (cross-repository mounts
  ``POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<other>`` with the upload fallback,
  HEAD-then-skip like real clients, and image indexes), ``skopeo copy``, and the ECR layer
  API (BatchCheckLayerAvailability, Initiate/UploadLayerPart/CompleteLayerUpload,
  PutImage);
* a deleter thread deletes acknowledged images with BatchDeleteImage;
* one repository has a lifecycle policy keeping only its newest images;
* ``openecr gc`` child processes also sweep the same storage, over and over (the blob
  locks must hold across processes: on PostgreSQL advisory locks, on SQLite lock files;
  see also test_gc.py::test_gc_command_never_deletes_a_blob_the_server_is_publishing).

A push may fail (and is then retried once, uploading everything): a client that saw a
blob with HEAD or BatchCheckLayerAvailability and skipped it can find its repository link
collected before its manifest arrives (see test_gc.py::
test_a_blob_seen_by_a_pushing_client_is_not_collected_under_it). Such a push was never
acknowledged, so it is not tracked. The test tracks every image the registry
acknowledged, minus those it deleted and those the server logged as expired. At the end
(after the grace period has passed twice) every one of them is pulled with skopeo into an
OCI layout and every blob digest is verified, DescribeImages lists exactly them,
``openecr fsck`` is clean, and a last ``openecr gc --gc-grace 0`` leaves on disk exactly
the blobs those images use.
"""

from __future__ import annotations

import ast
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from ecr_helpers import make_ecr_client
from harness import ServerProcess
from images import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Blob,
    Image,
    Index,
    Layout,
    build_index,
    canonical_json,
    image_digests,
    random_tar_gz,
    write_oci_layout,
)
from lifecycle_gc_helpers import (
    BACKENDS,
    Storage,
    database_for,
    describe_all,
    gc_log_reports,
    lifecycle_log,
    policy_text,
    rule,
    start_server,
)
from oci_helpers import Registry, login_password, skopeo_copy

REPOSITORIES = ["race/r0", "race/r1", "race/r2", "race/expiring"]
EXPIRING = "race/expiring"
CHURN_SECONDS = 15.0
GRACE = 5


# -- images from a pool of shared layers ----------------------------------------------------


@dataclass(frozen=True)
class Layer:
    blob: Blob
    diff_id: str


def make_layer(size: int) -> Layer:
    data, diff_id = random_tar_gz(size)
    return Layer(Blob(OCI_LAYER, data), diff_id)


def compose(shared: list[Layer], rng: random.Random, platform: str | None = None) -> Image:
    """An image of 1-2 shared layers and one layer of its own, with a config of its own."""
    layers = [*rng.sample(shared, rng.randint(1, 2)), make_layer(rng.randint(500, 3000))]
    config_document = {
        "architecture": platform or "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Labels": {"unique": os.urandom(8).hex()}},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
    }
    config = Blob(OCI_CONFIG, canonical_json(config_document))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.blob.descriptor() for layer in layers],
    }
    return Image(
        canonical_json(manifest),
        OCI_MANIFEST,
        config,
        [layer.blob for layer in layers],
        {"architecture": platform, "os": "linux"} if platform else None,
    )


# -- what the registry acknowledged ---------------------------------------------------------


@dataclass
class Tracker:
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[tuple[str, str], Image | Index] = field(default_factory=dict)
    top_level: list[tuple[str, str]] = field(default_factory=list)
    deleted: set[tuple[str, str]] = field(default_factory=set)
    blob_homes: dict[str, set[str]] = field(default_factory=dict)
    events: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    push_failures: list[str] = field(default_factory=list)

    def ack(self, repository: str, item: Image | Index, *, top: bool = True) -> None:
        with self.lock:
            self.acked[(repository, item.digest)] = item
            if top:
                self.top_level.append((repository, item.digest))
            for digest in item.blobs:
                self.blob_homes.setdefault(digest, set()).add(repository)

    def count(self, event: str) -> None:
        with self.lock:
            self.events[event] += 1

    def mount_source(self, digest: str, repository: str, rng: random.Random) -> str | None:
        with self.lock:
            homes = sorted(self.blob_homes.get(digest, set()) - {repository})
        return rng.choice(homes) if homes else None


# -- the three ways of pushing --------------------------------------------------------------


def raw_push(
    registry: Registry,
    tracker: Tracker,
    repository: str,
    item: Image | Index,
    tag: str | None,
    *,
    head_first: bool,
) -> bool:
    """/v2/ by hand. Per blob: HEAD and skip it when present (``head_first``, as docker
    and skopeo do), else mount it from another repository where the test has seen it
    (falling back to the upload the registry then offers), else a monolithic upload."""
    rng = random.Random()
    http = registry.http
    for digest, data in item.blobs.items():
        if head_first and http.head(f"/v2/{repository}/blobs/{digest}").status_code == 200:
            tracker.count("raw blob present, skipped")
            continue
        source = tracker.mount_source(digest, repository, rng)
        if source is None:
            registry.upload_blob(repository, data)
            continue
        response = http.post(
            f"/v2/{repository}/blobs/uploads/", params={"mount": digest, "from": source}
        )
        if response.status_code == 201:
            tracker.count("raw mount 201")
            continue
        assert response.status_code == 202, response.text
        tracker.count("raw mount fell back to upload")
        done = http.put(
            response.headers["Location"],
            params={"digest": digest},
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert done.status_code == 201, done.text
    children = item.images if isinstance(item, Index) else []
    for child in children:
        response = registry.put_manifest(repository, child.digest, child.manifest, OCI_MANIFEST)
        if response.status_code != 201:
            tracker.count(f"raw child manifest {response.status_code}")
            return False
        tracker.ack(repository, child, top=False)
    response = registry.put_manifest(repository, tag or item.digest, item.manifest, item.media_type)
    if response.status_code != 201:
        tracker.count(f"raw manifest {response.status_code}")
        tracker.push_failures.append(response.text[:300])
        return False
    tracker.ack(repository, item)
    tracker.count("pushed raw (index)" if children else "pushed raw")
    return True


def skopeo_push(
    registry: Registry, tracker: Tracker, repository: str, image: Image, tag: str, work: Path
) -> bool:
    layout = write_oci_layout(work / f"push-{image.digest[7:19]}", {"v": image})
    result = skopeo_copy(
        registry,
        f"oci:{layout}:v",
        registry.ref(repository, tag),
        "--preserve-digests",
        check=False,
    )
    if result.returncode != 0:
        tracker.count("skopeo push failed")
        tracker.push_failures.append(result.stderr.strip()[-300:])
        return False
    tracker.ack(repository, image)
    tracker.count("pushed skopeo")
    return True


def ecr_api_push(ecr: Any, tracker: Tracker, repository: str, image: Image, tag: str) -> bool:
    present = ecr.batch_check_layer_availability(
        repositoryName=repository, layerDigests=list(image.blobs)
    )
    available = {layer["layerDigest"] for layer in present["layers"]}
    for digest, data in image.blobs.items():
        if digest in available:
            tracker.count("ecr layer available, skipped")
            continue
        upload_id = ecr.initiate_layer_upload(repositoryName=repository)["uploadId"]
        ecr.upload_layer_part(
            repositoryName=repository,
            uploadId=upload_id,
            partFirstByte=0,
            partLastByte=len(data) - 1,
            layerPartBlob=data,
        )
        try:
            ecr.complete_layer_upload(
                repositoryName=repository, uploadId=upload_id, layerDigests=[digest]
            )
        except ecr.exceptions.LayerAlreadyExistsException:
            tracker.count("ecr layer uploaded concurrently")
    try:
        ecr.put_image(
            repositoryName=repository, imageManifest=image.manifest.decode(), imageTag=tag
        )
    except ClientError as error:
        tracker.count(f"ecr PutImage {error.response['Error']['Code']}")
        tracker.push_failures.append(str(error)[:300])
        return False
    tracker.ack(repository, image)
    tracker.count("pushed ecr")
    return True


# -- the test -------------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    with database_for(request.param) as url:
        yield Storage(tmp_path / "data", url)


def _loop(stop: threading.Event, tracker: Tracker, name: str, step: Callable[[int], None]) -> None:
    n = 0
    while not stop.is_set():
        try:
            step(n)
        except Exception as exc:  # recorded and failed on below, never swallowed
            tracker.errors.append(f"{name}: {exc!r}")
            return
        n += 1


def test_no_acknowledged_image_is_lost_to_online_gc(storage: Storage, tmp_path: Path) -> None:
    server = start_server(
        storage,
        "--gc-interval", "1",
        "--gc-grace", str(GRACE),
        "--lifecycle-interval", "2",
        "--log-level", "info",
    )  # fmt: skip
    try:
        _race(server, storage, tmp_path)
    finally:
        server.kill()


def _race(server: ServerProcess, storage: Storage, tmp_path: Path) -> None:
    ecr = make_ecr_client(server.url)
    password = login_password(ecr)
    for repository in REPOSITORIES:
        ecr.create_repository(repositoryName=repository)
    ecr.put_lifecycle_policy(
        repositoryName=EXPIRING,
        lifecyclePolicyText=policy_text(
            rule(1, "untagged", "imageCountMoreThan", 2),
            rule(2, "any", "imageCountMoreThan", 4),
        ),
    )
    shared = [make_layer(random.randint(2000, 8000)) for _ in range(8)]
    tracker = Tracker()
    stop = threading.Event()

    def raw_pusher(seed: int) -> Callable[[int], None]:
        rng = random.Random(seed)
        registry = Registry(server, password)

        def step(n: int) -> None:
            repository = rng.choice(REPOSITORIES)
            if n % 7 == 3:
                item: Image | Index = build_index(
                    [compose(shared, rng, "amd64"), compose(shared, rng, "arm64")]
                )
            else:
                item = compose(shared, rng)
            tag = None if n % 4 == 1 else f"raw{seed}-{n}"
            head_first = n % 2 == 1
            if not raw_push(registry, tracker, repository, item, tag, head_first=head_first):
                # Once more, as a client would: everything uploaded again.
                raw_push(registry, tracker, repository, item, tag, head_first=False)
            time.sleep(0.15)

        return step

    def skopeo_pusher(n: int) -> None:
        rng = random.Random(1000 + n)
        registry = Registry(server, password)
        try:
            image = compose(shared, rng)
            repository = rng.choice(REPOSITORIES)
            if not skopeo_push(registry, tracker, repository, image, f"sk-{n}", tmp_path):
                skopeo_push(registry, tracker, repository, image, f"sk-{n}", tmp_path)
        finally:
            registry.close()

    def ecr_pusher(n: int) -> None:
        rng = random.Random(2000 + n)
        client = make_ecr_client(server.url)
        image = compose(shared, rng)
        repository = rng.choice(REPOSITORIES)
        if not ecr_api_push(client, tracker, repository, image, f"ecr-{n}"):
            ecr_api_push(client, tracker, repository, image, f"ecr-{n}")
        time.sleep(0.1)

    deleter_rng = random.Random(7)

    def deleter(n: int) -> None:
        time.sleep(0.25)
        with tracker.lock:
            candidates = [key for key in tracker.top_level if key not in tracker.deleted]
        if len(candidates) < 5:
            return
        repository, digest = deleter_rng.choice(candidates[:-3])  # not the very newest
        result = ecr.batch_delete_image(
            repositoryName=repository, imageIds=[{"imageDigest": digest}]
        )
        if any(i.get("imageDigest") == digest for i in result["imageIds"]):
            with tracker.lock:
                tracker.deleted.add((repository, digest))
            tracker.count("deleted")
        for failure in result["failures"]:
            tracker.count(f"delete failure {failure['failureCode']}")

    cli_runs: list[dict[str, Any]] = []

    def cli_collector(n: int) -> None:
        result = storage.cli("gc", "--gc-grace", str(GRACE), check=False)
        if result.returncode != 0:
            raise AssertionError(f"openecr gc failed: {result.stderr[-500:]}")
        cli_runs.append(json.loads(result.stdout))

    workers = [
        ("raw-a", raw_pusher(1)),
        ("raw-b", raw_pusher(2)),
        ("skopeo", skopeo_pusher),
        ("ecr", ecr_pusher),
        ("deleter", deleter),
    ]
    workers.append(("openecr gc", cli_collector))
    threads = [
        threading.Thread(target=_loop, args=(stop, tracker, name, step), name=name)
        for name, step in workers
    ]
    for thread in threads:
        thread.start()
    time.sleep(CHURN_SECONDS)
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    assert not tracker.errors, tracker.errors

    # Let the lifecycle settle, then let GC sweep past the grace period twice.
    ecr.delete_lifecycle_policy(repositoryName=EXPIRING)
    time.sleep(2 * GRACE + 2)

    output = server.output()
    expired = {(line.repository, line.digest) for line in lifecycle_log(output)}
    assert expired, "the lifecycle policy expired nothing: the scenario is too weak"
    assert all(key in tracker.acked for key in expired), "expired an image nobody pushed"
    assert not expired & tracker.deleted
    expected = {key: item for key, item in tracker.acked.items() if key not in tracker.deleted}
    expected = {key: item for key, item in expected.items() if key not in expired}
    sweeps = gc_log_reports(output)
    assert len(sweeps) >= CHURN_SECONDS // 2, "the server's GC did not run throughout"
    collected = sum(ast.literal_eval(s.split(":", 1)[1].strip())["blobsDeleted"] for s in sweeps)
    collected += sum(run["blobsDeleted"] for run in cli_runs)
    assert collected > 0, "GC collected nothing: the scenario is too weak"

    # DescribeImages lists exactly the images that should exist.
    for repository in REPOSITORIES:
        listed = {d["imageDigest"] for d in describe_all(ecr, repository)}
        wanted = {digest for (repo, digest) in expected if repo == repository}
        assert listed - wanted == set(), f"{repository}: unexpected images"
        assert wanted - listed == set(), f"{repository}: LOST images {wanted - listed}"

    # Each of them pulls completely, every blob verified against its digest.
    def pull(entry: tuple[tuple[str, str], Image | Index]) -> None:
        (repository, digest), item = entry
        registry = Registry(server, password)
        try:
            where = tmp_path / "pulled" / repository.replace("/", "_") / digest[7:23]
            where.parent.mkdir(parents=True, exist_ok=True)
            extra = ("--all",) if isinstance(item, Index) else ()
            skopeo_copy(registry, registry.ref(repository, digest), f"oci:{where}:x", *extra)
            layout = Layout(where)
            assert layout.manifest("x") == item.manifest
            assert layout.all_digests() >= image_digests(item), f"{repository}@{digest}"
        finally:
            registry.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(pull, expected.items()))

    fsck = storage.cli_json("fsck")
    assert fsck["ok"] is True, fsck["problems"]
    assert fsck["blobsChecked"] > 0

    # With the registry idle, a sweep without grace leaves exactly the blobs in use.
    storage.cli_json("gc", "--gc-grace", "0")
    in_use = {d for item in expected.values() for d in item.blobs}
    assert storage.stored_blobs() == in_use
    assert storage.cli_json("fsck")["ok"] is True

    print(
        f"\n{len(tracker.acked)} images acknowledged, {len(tracker.deleted)} deleted, "
        f"{len(expired)} expired, {len(expected)} verified; {len(sweeps)} server sweeps, "
        f"{len(cli_runs)} gc commands, {collected} blobs collected; {dict(tracker.events)}; "
        f"failed pushes: {tracker.push_failures[:2]}"
    )
