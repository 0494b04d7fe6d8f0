"""Concurrent pushes into one repository, on both backends: nothing acknowledged is lost,
the tag rules hold under races, and the image quota is never exceeded.

On PostgreSQL these pushes run side by side (a shared repository lock, one lock per tag,
sharded image counters); on SQLite they queue. The outcomes must be the same.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from ecr_helpers import make_ecr_client, raises_ecr
from harness import ServerProcess, postgres_database
from images import build_image, canonical_json
from lifecycle_gc_helpers import SeedImage, Storage, fake_digest, seed_images
from oci_helpers import ecr_push, ecr_upload_layer

from openecr.services.images import MAX_IMAGES_PER_REPOSITORY

PUSHERS = 8

ResultT = TypeVar("ResultT")


def in_parallel(
    server: ServerProcess, calls: list[Callable[[Any], ResultT]], timeout: float = 120
) -> list[ResultT]:
    """Runs the calls on ``PUSHERS`` threads, each thread with a boto3 client of its own;
    the results in order of the list."""
    clients = [make_ecr_client(server.url) for _ in range(PUSHERS)]
    with ThreadPoolExecutor(PUSHERS) as pool:
        futures = [pool.submit(call, clients[i % PUSHERS]) for i, call in enumerate(calls)]
        return [future.result(timeout=timeout) for future in futures]


def manifest_variants(ecr: Any, repository: str, count: int) -> list[str]:
    """``count`` distinct manifests over one set of pushed blobs (they differ by an
    annotation), so that the pushes race on PutImage alone."""
    base = build_image(layers=1, layer_size=1024)
    ecr_push(ecr, repository, base)
    document = json.loads(base.manifest)
    return [
        canonical_json({**document, "annotations": {"variant": str(i)}}).decode()
        for i in range(count)
    ]


def outcome(call: Callable[[], Any]) -> str:
    try:
        call()
    except Exception as error:  # boto3's ClientError: keep its ECR error name
        response = getattr(error, "response", None)
        if response is None:
            raise
        return str(response["Error"]["Code"])
    return "ok"


def put(manifest: str, repository: str, tag: str | None = None) -> Callable[[Any], str]:
    options = {"imageTag": tag} if tag else {}
    return lambda client: outcome(
        lambda: client.put_image(repositoryName=repository, imageManifest=manifest, **options)
    )


def listed(ecr: Any, repository: str) -> set[tuple[str, str | None]]:
    found: set[tuple[str, str | None]] = set()
    for page in ecr.get_paginator("list_images").paginate(repositoryName=repository):
        found |= {(i["imageDigest"], i.get("imageTag")) for i in page["imageIds"]}
    return found


def test_concurrent_pushes_of_distinct_images_all_land(
    server: ServerProcess, ecr: Any, repo: str
) -> None:
    manifests = manifest_variants(ecr, repo, 48)
    results = in_parallel(server, [put(m, repo, f"t{i}") for i, m in enumerate(manifests)])
    assert results == ["ok"] * 48
    found = listed(ecr, repo)
    # The base image pushed by manifest_variants is untagged.
    assert len(found) == 49
    assert {tag for _, tag in found} == {None} | {f"t{i}" for i in range(48)}

    # The image count went up by every push and comes down by every delete: a repository
    # emptied image by image deletes without force.
    with raises_ecr("RepositoryNotEmptyException"):
        ecr.delete_repository(repositoryName=repo)
    digests = sorted({digest for digest, _ in found})
    for start in range(0, len(digests), 20):
        ids = [{"imageDigest": d} for d in digests[start : start + 20]]
        assert not ecr.batch_delete_image(repositoryName=repo, imageIds=ids)["failures"]
    ecr.delete_repository(repositoryName=repo)


def test_concurrent_pushes_of_one_mutable_tag_leave_it_on_one_image(
    server: ServerProcess, ecr: Any, repo: str
) -> None:
    manifests = manifest_variants(ecr, repo, 16)
    results = in_parallel(server, [put(m, repo, "latest") for m in manifests])
    assert results == ["ok"] * 16
    found = listed(ecr, repo)
    tagged = [digest for digest, tag in found if tag == "latest"]
    assert len(tagged) == 1
    # Every pushed image is kept; all but the winner are untagged.
    assert len({digest for digest, _ in found}) == 17
    described = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "latest"}])
    assert described["imageDetails"][0]["imageDigest"] == tagged[0]


def test_concurrent_pushes_of_one_immutable_tag_admit_exactly_one(
    server: ServerProcess, ecr: Any, repo_name: str
) -> None:
    ecr.create_repository(repositoryName=repo_name, imageTagMutability="IMMUTABLE")
    manifests = manifest_variants(ecr, repo_name, 16)
    results = in_parallel(server, [put(m, repo_name, "v1") for m in manifests])
    assert sorted(results) == ["ImageTagAlreadyExistsException"] * 15 + ["ok"]
    winner = manifests[results.index("ok")]
    image = ecr.batch_get_image(repositoryName=repo_name, imageIds=[{"imageTag": "v1"}])
    assert image["images"][0]["imageManifest"] == winner
    # The losers left nothing behind: the base image and the winner only.
    assert len({digest for digest, _ in listed(ecr, repo_name)}) == 2


def test_concurrent_pushes_of_one_manifest_under_many_tags_make_one_image(
    server: ServerProcess, ecr: Any, repo: str
) -> None:
    (manifest,) = manifest_variants(ecr, repo, 1)
    results = in_parallel(server, [put(manifest, repo, f"tag-{i}") for i in range(24)])
    assert results == ["ok"] * 24
    described = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "tag-0"}])
    (detail,) = described["imageDetails"]
    assert sorted(detail["imageTags"]) == sorted(f"tag-{i}" for i in range(24))
    assert len({digest for digest, _ in listed(ecr, repo)}) == 2


def test_the_image_quota_holds_against_concurrent_pushes(
    server: ServerProcess, ecr: Any, repo: str
) -> None:
    manifests = manifest_variants(ecr, repo, PUSHERS)  # the base image is the first image
    room = 3
    seeded = MAX_IMAGES_PER_REPOSITORY - 1 - room
    seed_images(
        Storage.of(server),
        repo,
        [SeedImage(fake_digest(f"{repo}/{i}"), (), 1_700_000_000.0) for i in range(seeded)],
    )
    results = in_parallel(server, [put(m, repo, f"q{i}") for i, m in enumerate(manifests)])
    assert sorted(results) == ["LimitExceededException"] * (PUSHERS - room) + ["ok"] * room

    # At the quota, one more image only fits after one is deleted.
    refused = manifests[results.index("LimitExceededException")]
    with raises_ecr(
        "LimitExceededException",
        f"The repository '{repo}' already holds the maximum of {MAX_IMAGES_PER_REPOSITORY} images.",
    ):
        ecr.put_image(repositoryName=repo, imageManifest=refused)
    accepted_tag = f"q{results.index('ok')}"
    deleted = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": accepted_tag}])
    assert not deleted["failures"]
    ecr.put_image(repositoryName=repo, imageManifest=refused)


@pytest.fixture
def small_pool_server(backend: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server allowed two metadata connections: far fewer than requests in flight."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres_database()) if backend == "postgres" else None
        process = ServerProcess(
            tmp_path / "data", database_url=url, extra_args=["--database-pool-size", "2"]
        ).start()
        stack.callback(process.kill)
        yield process


def test_uploads_of_one_layer_racing_on_a_small_pool_all_finish(
    small_pool_server: ServerProcess,
) -> None:
    """Completing an upload holds the blob's lock while it writes; lock waiters must not
    take the connections the holder needs (it would wait for them forever)."""
    ecr = make_ecr_client(small_pool_server.url)
    ecr.create_repository(repositoryName="race/layers")
    image = build_image(layers=1, layer_size=4096)
    layer = image.layers[0].data

    def upload(client: Any) -> str:
        return outcome(lambda: ecr_upload_layer(client, "race/layers", layer))

    results = in_parallel(small_pool_server, [upload] * 16, timeout=60)
    # Each upload either published the layer or found it already there.
    assert set(results) <= {"ok", "LayerAlreadyExistsException"}, results
    assert "ok" in results
    ecr_push(ecr, "race/layers", image, tag="done")
    assert listed(ecr, "race/layers") == {(image.digest, "done")}
