"""The online-GC race of test_gc_race.py, on three replicas sharing PostgreSQL and S3.

Storage of its own (a moto S3 server and a fresh PostgreSQL database). Every replica runs
GC every second (grace 5 s) and lifecycle enforcement every 2 s, so the jobs move between
replicas run by run; ``openecr gc`` child processes sweep the same database and bucket
over and over as well. For ~10 s the pushers and the deleter of test_gc_race.py run, with
their requests spread over the replicas as a load balancer would spread them:

* raw /v2/ pushes (HEAD-then-skip, cross-repository mounts with the upload fallback, image
  indexes) through an HTTP client that sends each request to the next replica, so one
  push's HEADs, uploads and manifests land on different replicas;
* ECR layer-API pushes through a client that sends each call to the next replica
  (BatchCheckLayerAvailability on one, InitiateLayerUpload on the next, ...);
* skopeo pushes, each through the next replica;
* BatchDeleteImage through rotating replicas; a lifecycle policy on one repository.

At the end (after the grace period has passed twice): DescribeImages lists exactly the
acknowledged images less the deleted and expired ones, each of them is pulled with skopeo
(through rotating replicas) and every digest verified, ``openecr fsck`` is clean and a last
``openecr gc --gc-grace 0`` leaves in the bucket exactly the blobs those images use.
"""

from __future__ import annotations

import ast
import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from ecr_helpers import make_ecr_client
from harness import ServerProcess
from images import Image, Index, Layout, build_index, image_digests
from lifecycle_gc_helpers import describe_all, gc_log_reports, lifecycle_log, policy_text, rule
from oci_helpers import Registry, login_password, skopeo_copy
from replica_helpers import Fleet, fleet
from test_gc_race import (
    EXPIRING,
    GRACE,
    REPOSITORIES,
    Tracker,
    compose,
    ecr_api_push,
    make_layer,
    raw_push,
    skopeo_push,
)

pytestmark = pytest.mark.postgres

CHURN_SECONDS = 10.0


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with fleet(tmp_path_factory.mktemp("gc-race")) as shared:
        yield shared


class RoundRobinTransport(httpx.BaseTransport):
    """Sends each request to the next replica's port: a load balancer in the client."""

    def __init__(self, ports: list[int]) -> None:
        self._ports = itertools.cycle(ports)
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        port = next(self._ports)
        request.url = request.url.copy_with(port=port)
        request.headers["Host"] = f"127.0.0.1:{port}"
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def spread_registry(replicas: list[ServerProcess], password: str, offset: int) -> Registry:
    """A ``Registry`` whose every request goes to the next replica."""
    ports = [server.port for server in replicas]
    ports = ports[offset % len(ports) :] + ports[: offset % len(ports)]
    client = httpx.Client(
        base_url=replicas[0].url,
        auth=("AWS", password),
        timeout=60,
        transport=RoundRobinTransport(ports),
    )
    return Registry(replicas[0], password, _client=client)


class SpreadEcr:
    """A boto3 ECR client stand-in whose every call goes to the next replica."""

    def __init__(self, replicas: list[ServerProcess]) -> None:
        self._clients = [make_ecr_client(server.url) for server in replicas]
        self._next = itertools.cycle(self._clients)
        self.exceptions = self._clients[0].exceptions

    def __getattr__(self, name: str) -> Any:
        return getattr(next(self._next), name)


def _loop(stop: threading.Event, tracker: Tracker, name: str, step: Callable[[int], None]) -> None:
    n = 0
    while not stop.is_set():
        try:
            step(n)
        except Exception as exc:  # recorded and failed on below, never swallowed
            tracker.errors.append(f"{name}: {exc!r}")
            return
        n += 1


def test_no_acknowledged_image_is_lost_to_online_gc_on_replicas(
    storage: Fleet, tmp_path: Path
) -> None:
    flags = (
        "--gc-interval", "1",
        "--gc-grace", str(GRACE),
        "--lifecycle-interval", "2",
        "--log-level", "info",
    )  # fmt: skip
    replicas = [storage.start(f"r{i}", *flags) for i in (1, 2, 3)]
    ecr = SpreadEcr(replicas)
    password = login_password(ecr)
    for repository in REPOSITORIES:
        ecr.create_repository(repositoryName=repository)
    ecr.put_lifecycle_policy(
        repositoryName=EXPIRING,
        lifecyclePolicyText=policy_text(
            rule(1, "untagged", "imageCountMoreThan", 1),
            rule(2, "any", "imageCountMoreThan", 1),
        ),
    )
    shared = [make_layer(random.randint(2000, 8000)) for _ in range(8)]
    tracker = Tracker()
    stop = threading.Event()
    # A few images the policy expires at once, whatever the push rate of a busy machine.
    seed_rng = random.Random(99)
    for n in range(4):
        assert ecr_api_push(ecr, tracker, EXPIRING, compose(shared, seed_rng), f"seed-{n}")

    def raw_pusher(seed: int) -> Callable[[int], None]:
        rng = random.Random(seed)
        registry = spread_registry(replicas, password, seed)

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
                raw_push(registry, tracker, repository, item, tag, head_first=False)
            time.sleep(0.15)

        return step

    def skopeo_pusher(n: int) -> None:
        rng = random.Random(1000 + n)
        registry = Registry(replicas[n % len(replicas)], password)
        try:
            image = compose(shared, rng)
            repository = rng.choice(REPOSITORIES)
            if not skopeo_push(registry, tracker, repository, image, f"sk-{n}", tmp_path):
                skopeo_push(registry, tracker, repository, image, f"sk-{n}", tmp_path)
        finally:
            registry.close()

    ecr_spread = SpreadEcr(replicas)

    def ecr_pusher(n: int) -> None:
        rng = random.Random(2000 + n)
        image = compose(shared, rng)
        repository = rng.choice(REPOSITORIES)
        if not ecr_api_push(ecr_spread, tracker, repository, image, f"ecr-{n}"):
            ecr_api_push(ecr_spread, tracker, repository, image, f"ecr-{n}")
        time.sleep(0.1)

    deleter_rng = random.Random(7)
    deleter_ecr = SpreadEcr(replicas)

    def deleter(n: int) -> None:
        time.sleep(0.6)
        with tracker.lock:
            candidates = [key for key in tracker.top_level if key not in tracker.deleted]
        if len(candidates) < 5:
            return
        repository, digest = deleter_rng.choice(candidates[:-3])
        result = deleter_ecr.batch_delete_image(
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
        cli_runs.append(storage.cli_json("gc", "--gc-grace", str(GRACE)))

    workers = [
        ("raw-a", raw_pusher(1)),
        ("raw-b", raw_pusher(2)),
        ("skopeo", skopeo_pusher),
        ("ecr", ecr_pusher),
        ("deleter", deleter),
        ("openecr gc", cli_collector),
    ]
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

    outputs = [server.output() for server in replicas]
    expired = {(line.repository, line.digest) for out in outputs for line in lifecycle_log(out)}
    assert expired, f"the lifecycle expired nothing (too weak): {dict(tracker.events)}"
    assert all(key in tracker.acked for key in expired), "expired an image nobody pushed"
    assert not expired & tracker.deleted
    expected = {
        key: item
        for key, item in tracker.acked.items()
        if key not in tracker.deleted and key not in expired
    }
    sweeps = [gc_log_reports(out) for out in outputs]
    assert sum(len(s) for s in sweeps) >= CHURN_SECONDS // 2, "GC did not run throughout"
    assert sum(1 for s in sweeps if s) >= 2, "GC never moved between replicas"
    collected = sum(
        ast.literal_eval(s.split(":", 1)[1].strip())["blobsDeleted"]
        for replica_sweeps in sweeps
        for s in replica_sweeps
    )
    collected += sum(run["blobsDeleted"] for run in cli_runs)
    assert collected > 0, "GC collected nothing: the scenario is too weak"

    # DescribeImages lists exactly the images that should exist, on every replica.
    for i, repository in enumerate(REPOSITORIES):
        client = make_ecr_client(replicas[i % len(replicas)].url)
        listed = {d["imageDigest"] for d in describe_all(client, repository)}
        wanted = {digest for (repo, digest) in expected if repo == repository}
        assert listed - wanted == set(), f"{repository}: unexpected images"
        assert wanted - listed == set(), f"{repository}: LOST images {wanted - listed}"

    # Each of them pulls completely through some replica, every blob verified.
    def pull(numbered: tuple[int, tuple[tuple[str, str], Image | Index]]) -> None:
        n, ((repository, digest), item) = numbered
        registry = Registry(replicas[n % len(replicas)], password)
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
        list(pool.map(pull, enumerate(expected.items())))

    fsck = storage.cli_json("fsck")
    assert fsck["ok"] is True, fsck["problems"]
    assert fsck["blobsChecked"] > 0

    # With the registry idle, a sweep without grace leaves exactly the blobs in use.
    storage.cli_json("gc", "--gc-grace", "0")
    in_use = {d for item in expected.values() for d in item.blobs}
    assert storage.blob_keys() == in_use
    assert storage.cli_json("fsck")["ok"] is True

    print(
        f"\n{len(tracker.acked)} images acknowledged, {len(tracker.deleted)} deleted, "
        f"{len(expired)} expired, {len(expected)} verified; GC sweeps per replica "
        f"{[len(s) for s in sweeps]}, {len(cli_runs)} gc commands, {collected} blobs "
        f"collected; {dict(tracker.events)}; failed pushes: {tracker.push_failures[:2]}; "
        f"{json.dumps(fsck)[:200]}"
    )
