"""Paginators, batch splitting and waiters of ``ECR``/``AsyncECR``, against the scripted
stand-in of ``test_sdk_transport`` (which counts and inspects every request).

The same behaviours against a real openecr server are in
``tests/integration/test_sdk_client.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_sdk_transport import (
    Reply,
    ScriptedServer,
    Seen,
    async_client_for,
    client_for,
    error,
    ok,
    scripted_server,
)

from openecr import ECRError, WaiterError
from openecr import models as m
from openecr.errors import ScanNotFoundError


@pytest.fixture
def stub() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        yield server


# --- a paginating stand-in ----------------------------------------------------------------


def paginating(
    list_key: str, items: list[Any], *, repeat_token: bool = False
) -> Callable[[Seen], Reply]:
    """Answers each request with the page starting at ``nextToken`` (an index), honouring
    ``maxResults``. ``repeat_token`` makes every page after the first hand out the same
    token again, as a broken service would."""

    def respond(seen: Seen) -> Reply:
        body = seen.json or {}
        start = int(body.get("nextToken") or 0)
        size = int(body.get("maxResults") or 100)
        page: dict[str, Any] = {list_key: items[start : start + size]}
        if start + size < len(items):
            page["nextToken"] = str(start + size)
        if repeat_token and start > 0:
            page["nextToken"] = str(start)
        return ok(page)

    return respond


REPOSITORIES = [{"repositoryName": f"r{i}", "registryId": "123456789012"} for i in range(7)]
IMAGE_IDS = [{"imageDigest": f"sha256:{i:064x}", "imageTag": f"t{i}"} for i in range(7)]
IMAGE_DETAILS = [{"imageDigest": f"sha256:{i:064x}", "imageTags": [f"t{i}"]} for i in range(7)]
RULES = [
    {"ecrRepositoryPrefix": f"p{i}", "upstreamRegistryUrl": "public.ecr.aws"} for i in range(7)
]


def tokens_sent(server: ScriptedServer) -> list[str | None]:
    return [(seen.json or {}).get("nextToken") for seen in server.requests]


def test_iter_describe_repositories_walks_every_page(stub: ScriptedServer) -> None:
    stub.respond_with(paginating("repositories", REPOSITORIES))
    with client_for(stub) as ecr:
        names = [r.repository_name for r in ecr.iter_describe_repositories(max_results=2)]
    assert names == [f"r{i}" for i in range(7)]
    assert stub.operations() == ["DescribeRepositories"] * 4
    assert tokens_sent(stub) == [None, "2", "4", "6"]
    assert all(seen.json["maxResults"] == 2 for seen in stub.requests)


def test_describe_repositories_pages_yields_typed_pages(stub: ScriptedServer) -> None:
    stub.respond_with(paginating("repositories", REPOSITORIES))
    with client_for(stub) as ecr:
        pages = list(ecr.describe_repositories_pages(max_results=2))
    assert [len(page.repositories or []) for page in pages] == [2, 2, 2, 1]
    assert [page.next_token for page in pages] == ["2", "4", "6", None]
    assert all(isinstance(page, m.DescribeRepositoriesResponse) for page in pages)
    assert [page.response_metadata.request_id for page in pages if page.response_metadata] == [
        "req-1",
        "req-2",
        "req-3",
        "req-4",
    ]


def test_iter_list_images_describe_images_and_ptc_rules(stub: ScriptedServer) -> None:
    with client_for(stub) as ecr:
        stub.respond_with(paginating("imageIds", IMAGE_IDS))
        ids = list(ecr.iter_list_images(repository_name="app", max_results=2))
        assert stub.operations() == ["ListImages"] * 4
        assert all(seen.json["repositoryName"] == "app" for seen in stub.requests)
        stub.reset()
        stub.respond_with(paginating("imageDetails", IMAGE_DETAILS))
        details = list(
            ecr.iter_describe_images(
                repository_name="app",
                max_results=2,
                filter=m.DescribeImagesFilter(tag_status="TAGGED"),
            )
        )
        assert stub.operations() == ["DescribeImages"] * 4
        assert all(seen.json["filter"] == {"tagStatus": "TAGGED"} for seen in stub.requests)
        stub.reset()
        stub.respond_with(paginating("pullThroughCacheRules", RULES))
        rules = list(ecr.iter_describe_pull_through_cache_rules(max_results=2))
        assert stub.operations() == ["DescribePullThroughCacheRules"] * 4
    assert ids == [
        m.ImageIdentifier(image_digest=f"sha256:{i:064x}", image_tag=f"t{i}") for i in range(7)
    ]
    assert [d.image_tags for d in details] == [[f"t{i}"] for i in range(7)]
    assert [r.ecr_repository_prefix for r in rules] == [f"p{i}" for i in range(7)]


def test_async_paginators_walk_every_page(stub: ScriptedServer) -> None:
    async def run() -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        async with async_client_for(stub) as ecr:
            stub.respond_with(paginating("repositories", REPOSITORIES))
            out["repos"] = [r async for r in ecr.iter_describe_repositories(max_results=2)]
            out["pages"] = [p async for p in ecr.describe_repositories_pages(max_results=2)]
            stub.respond_with(paginating("imageIds", IMAGE_IDS))
            out["ids"] = [i async for i in ecr.iter_list_images(repository_name="a", max_results=2)]
            stub.respond_with(paginating("imageDetails", IMAGE_DETAILS))
            out["details"] = [
                d async for d in ecr.iter_describe_images(repository_name="a", max_results=2)
            ]
            stub.respond_with(paginating("pullThroughCacheRules", RULES))
            out["rules"] = [
                r async for r in ecr.iter_describe_pull_through_cache_rules(max_results=2)
            ]
        return out

    out = asyncio.run(run())
    assert [r.repository_name for r in out["repos"]] == [f"r{i}" for i in range(7)]
    assert [len(p.repositories) for p in out["pages"]] == [2, 2, 2, 1]
    assert len(out["ids"]) == len(out["details"]) == len(out["rules"]) == 7
    assert stub.operations() == (
        ["DescribeRepositories"] * 8
        + ["ListImages"] * 4
        + ["DescribeImages"] * 4
        + ["DescribePullThroughCacheRules"] * 4
    )


def test_an_empty_string_token_ends_pagination(stub: ScriptedServer) -> None:
    stub.script(ok({"repositories": REPOSITORIES[:2], "nextToken": ""}))
    with client_for(stub) as ecr:
        assert len(list(ecr.iter_describe_repositories(max_results=2))) == 2
    assert len(stub.requests) == 1


def test_the_same_next_token_twice_raises(stub: ScriptedServer) -> None:
    stub.respond_with(paginating("repositories", REPOSITORIES, repeat_token=True))
    seen: list[str | None] = []
    with client_for(stub) as ecr, pytest.raises(ECRError, match="same nextToken"):
        for repository in ecr.iter_describe_repositories(max_results=2):
            seen.append(repository.repository_name)
    assert seen == ["r0", "r1", "r2", "r3"]  # it stops instead of looping forever
    assert tokens_sent(stub) == [None, "2"]


def test_async_same_next_token_twice_raises(stub: ScriptedServer) -> None:
    stub.respond_with(paginating("imageIds", IMAGE_IDS, repeat_token=True))

    async def run() -> int:
        count = 0
        async with async_client_for(stub) as ecr:
            with pytest.raises(ECRError, match="same nextToken"):
                async for _ in ecr.iter_list_images(repository_name="a", max_results=2):
                    count += 1
        return count

    assert asyncio.run(run()) == 4
    assert len(stub.requests) == 2


def test_an_error_on_a_later_page_surfaces(stub: ScriptedServer) -> None:
    stub.script(
        ok({"repositories": REPOSITORIES[:2], "nextToken": "x"}),
        error("InvalidParameterException", "Invalid parameter at 'nextToken'"),
    )
    with client_for(stub) as ecr, pytest.raises(ECRError) as info:
        list(ecr.iter_describe_repositories())
    assert info.value.code == "InvalidParameterException"


# --- batch splitting ----------------------------------------------------------------------


def batch_images(seen: Seen) -> Reply:
    """BatchGetImage/BatchDeleteImage: ids tagged ``miss*`` fail, the others succeed."""
    body = seen.json
    found = [i for i in body["imageIds"] if not i["imageTag"].startswith("miss")]
    missing = [i for i in body["imageIds"] if i["imageTag"].startswith("miss")]
    failures = [
        {"imageId": i, "failureCode": "ImageNotFound", "failureReason": "Requested image not found"}
        for i in missing
    ]
    if seen.operation == "BatchGetImage":
        images = [{"imageId": i, "imageManifest": "{}", "repositoryName": "a"} for i in found]
        return ok({"images": images, "failures": failures})
    return ok({"imageIds": found, "failures": failures})


def two_fifty_ids() -> list[m.ImageIdentifier]:
    return [m.ImageIdentifier(image_tag=f"miss{i}" if i % 10 == 0 else f"t{i}") for i in range(250)]


@pytest.mark.parametrize("operation", ["batch_get_image", "batch_delete_image"])
def test_250_image_ids_go_in_three_calls_and_merge(stub: ScriptedServer, operation: str) -> None:
    stub.respond_with(batch_images)
    ids = two_fifty_ids()
    with client_for(stub) as ecr:
        result = getattr(ecr, operation)(repository_name="a", image_ids=ids)
    assert [len(seen.json["imageIds"]) for seen in stub.requests] == [100, 100, 50]
    sent = [i["imageTag"] for seen in stub.requests for i in seen.json["imageIds"]]
    assert sent == [i.image_tag for i in ids]  # in order, each id once
    assert all(seen.json["repositoryName"] == "a" for seen in stub.requests)
    succeeded = result.images if operation == "batch_get_image" else result.image_ids
    succeeded_tags = [
        (x.image_id if operation == "batch_get_image" else x).image_tag for x in succeeded
    ]
    assert succeeded_tags == [i.image_tag for i in ids if not i.image_tag.startswith("miss")]
    assert [f.image_id.image_tag for f in result.failures] == [
        f"miss{i}" for i in range(0, 250, 10)
    ]
    assert {f.failure_code for f in result.failures} == {"ImageNotFound"}


def test_batch_get_image_passes_accepted_media_types_to_every_chunk(stub: ScriptedServer) -> None:
    stub.respond_with(batch_images)
    with client_for(stub) as ecr:
        ecr.batch_get_image(
            repository_name="a",
            image_ids=two_fifty_ids(),
            accepted_media_types=["application/vnd.oci.image.manifest.v1+json"],
            registry_id="123456789012",
        )
    for seen in stub.requests:
        assert seen.json["acceptedMediaTypes"] == ["application/vnd.oci.image.manifest.v1+json"]
        assert seen.json["registryId"] == "123456789012"


def test_batch_get_repository_scanning_configuration_splits_60_names(stub: ScriptedServer) -> None:
    def respond(seen: Seen) -> Reply:
        names = seen.json["repositoryNames"]
        return ok(
            {
                "scanningConfigurations": [
                    {"repositoryName": n, "scanOnPush": False, "scanFrequency": "MANUAL"}
                    for n in names
                    if not n.startswith("gone")
                ],
                "failures": [
                    {"repositoryName": n, "failureCode": "REPOSITORY_NOT_FOUND"}
                    for n in names
                    if n.startswith("gone")
                ],
            }
        )

    stub.respond_with(respond)
    names = [f"gone{i}" if i % 20 == 0 else f"repo{i}" for i in range(60)]
    with client_for(stub) as ecr:
        result = ecr.batch_get_repository_scanning_configuration(repository_names=names)
    assert [len(seen.json["repositoryNames"]) for seen in stub.requests] == [25, 25, 10]
    assert [c.repository_name for c in result.scanning_configurations] == [
        n for n in names if not n.startswith("gone")
    ]
    assert [f.repository_name for f in result.failures] == ["gone0", "gone20", "gone40"]


def test_batch_check_layer_availability_splits_250_digests(stub: ScriptedServer) -> None:
    def respond(seen: Seen) -> Reply:
        return ok(
            {
                "layers": [
                    {"layerDigest": d, "layerAvailability": "AVAILABLE"}
                    for d in seen.json["layerDigests"]
                ],
                "failures": [],
            }
        )

    stub.respond_with(respond)
    digests = [f"sha256:{i:064x}" for i in range(250)]
    with client_for(stub) as ecr:
        result = ecr.batch_check_layer_availability(repository_name="a", layer_digests=digests)
    assert [len(seen.json["layerDigests"]) for seen in stub.requests] == [100, 100, 50]
    assert [layer.layer_digest for layer in result.layers] == digests
    assert result.failures == []


def test_small_batches_make_one_call(stub: ScriptedServer) -> None:
    stub.respond_with(batch_images)
    with client_for(stub) as ecr:
        result = ecr.batch_get_image(
            repository_name="a",
            image_ids=[m.ImageIdentifier(image_tag=f"t{i}") for i in range(100)],
        )
    assert len(stub.requests) == 1
    assert len(result.images) == 100


def test_async_batches_split_and_merge(stub: ScriptedServer) -> None:
    stub.respond_with(batch_images)

    async def run() -> tuple[m.BatchGetImageResponse, m.BatchDeleteImageResponse]:
        async with async_client_for(stub) as ecr:
            got = await ecr.batch_get_image(repository_name="a", image_ids=two_fifty_ids())
            deleted = await ecr.batch_delete_image(repository_name="a", image_ids=two_fifty_ids())
        return got, deleted

    got, deleted = asyncio.run(run())
    assert [len(seen.json["imageIds"]) for seen in stub.requests] == [100, 100, 50] * 2
    assert len(got.images or []) == len(deleted.image_ids or []) == 225
    assert len(got.failures or []) == len(deleted.failures or []) == 25


# --- waiters ------------------------------------------------------------------------------


def preview(status: str) -> Reply:
    return ok({"repositoryName": "a", "registryId": "123456789012", "status": status})


def scan(status: str) -> Reply:
    return ok(
        {
            "repositoryName": "a",
            "imageId": {"imageDigest": "sha256:" + "a" * 64},
            "imageScanStatus": {"status": status, "description": f"status {status}"},
        }
    )


IMAGE = m.ImageIdentifier(image_digest="sha256:" + "a" * 64)


def test_lifecycle_preview_waiter_returns_once_complete(stub: ScriptedServer) -> None:
    stub.script(preview("IN_PROGRESS"), preview("IN_PROGRESS"), preview("COMPLETE"))
    with client_for(stub) as ecr:
        result = ecr.wait_for_lifecycle_policy_preview_complete(
            repository_name="a", delay=0.05, max_attempts=5
        )
    assert isinstance(result, m.GetLifecyclePolicyPreviewResponse)
    assert result.status == "COMPLETE"
    assert stub.operations() == ["GetLifecyclePolicyPreview"] * 3
    assert all(gap >= 0.045 for gap in stub.gaps())  # it sleeps `delay` between polls


def test_lifecycle_preview_waiter_fails_at_once_on_failed(stub: ScriptedServer) -> None:
    stub.script(preview("FAILED"))
    with client_for(stub) as ecr, pytest.raises(WaiterError) as info:
        ecr.wait_for_lifecycle_policy_preview_complete(repository_name="a", delay=5.0)
    assert len(stub.requests) == 1
    assert isinstance(info.value.last_response, m.GetLifecyclePolicyPreviewResponse)
    assert info.value.last_response.status == "FAILED"


def test_lifecycle_preview_waiter_gives_up_after_max_attempts(stub: ScriptedServer) -> None:
    stub.script(preview("IN_PROGRESS"))
    started = time.monotonic()
    with client_for(stub) as ecr, pytest.raises(WaiterError, match="4 attempts") as info:
        ecr.wait_for_lifecycle_policy_preview_complete(
            repository_name="a", delay=0.02, max_attempts=4
        )
    assert len(stub.requests) == 4
    assert time.monotonic() - started < 2.0  # no sleep after the last attempt
    assert info.value.last_response.status == "IN_PROGRESS"


def test_lifecycle_preview_waiter_error_response_is_a_waiter_error(stub: ScriptedServer) -> None:
    stub.script(error("LifecyclePolicyPreviewNotFoundException", "no preview"))
    with client_for(stub) as ecr, pytest.raises(WaiterError) as info:
        ecr.wait_for_lifecycle_policy_preview_complete(repository_name="a", delay=0.01)
    assert len(stub.requests) == 1
    assert isinstance(info.value.last_response, ECRError)
    assert info.value.last_response.code == "LifecyclePolicyPreviewNotFoundException"
    assert isinstance(info.value.__cause__, ECRError)


@pytest.mark.parametrize("done", ["COMPLETE", "ACTIVE"])
def test_image_scan_waiter_succeeds_on(stub: ScriptedServer, done: str) -> None:
    stub.script(scan("IN_PROGRESS"), scan("PENDING"), scan(done))
    with client_for(stub) as ecr:
        result = ecr.wait_for_image_scan_complete(
            repository_name="a", image_id=IMAGE, delay=0.01, max_attempts=10
        )
    assert isinstance(result, m.DescribeImageScanFindingsResponse)
    assert result.image_scan_status is not None
    assert result.image_scan_status.status == done
    assert stub.operations() == ["DescribeImageScanFindings"] * 3
    assert stub.requests[0].json["imageId"] == {"imageDigest": "sha256:" + "a" * 64}


@pytest.mark.parametrize("pending", ["IN_PROGRESS", "PENDING", "SOME_FUTURE_STATUS"])
def test_image_scan_waiter_keeps_polling_on(stub: ScriptedServer, pending: str) -> None:
    stub.script(scan(pending))
    with client_for(stub) as ecr, pytest.raises(WaiterError, match="3 attempts"):
        ecr.wait_for_image_scan_complete(
            repository_name="a", image_id=IMAGE, delay=0.01, max_attempts=3
        )
    assert len(stub.requests) == 3


@pytest.mark.parametrize(
    "dead_end",
    [
        "FAILED",
        "UNSUPPORTED_IMAGE",
        "FINDINGS_UNAVAILABLE",
        "SCAN_ELIGIBILITY_EXPIRED",
        "LIMIT_EXCEEDED",
    ],
)
def test_image_scan_waiter_fails_at_once_on(stub: ScriptedServer, dead_end: str) -> None:
    stub.script(scan("IN_PROGRESS"), scan(dead_end))
    with client_for(stub) as ecr, pytest.raises(WaiterError, match=dead_end) as info:
        ecr.wait_for_image_scan_complete(
            repository_name="a", image_id=IMAGE, delay=0.01, max_attempts=60
        )
    assert len(stub.requests) == 2
    assert info.value.last_response.image_scan_status.status == dead_end


def test_image_scan_waiter_error_response_is_a_waiter_error(stub: ScriptedServer) -> None:
    stub.script(error("ScanNotFoundException", "Image scan does not exist"))
    with client_for(stub) as ecr, pytest.raises(WaiterError) as info:
        ecr.wait_for_image_scan_complete(repository_name="a", image_id=IMAGE, delay=0.01)
    assert isinstance(info.value.last_response, ScanNotFoundError)
    assert len(stub.requests) == 1


def test_async_waiters(stub: ScriptedServer) -> None:
    async def run() -> list[Any]:
        outcomes: list[Any] = []
        async with async_client_for(stub) as ecr:
            stub.script(preview("IN_PROGRESS"), preview("COMPLETE"))
            done = await ecr.wait_for_lifecycle_policy_preview_complete(
                repository_name="a", delay=0.01
            )
            outcomes.append(done.status)
            stub.script(preview("FAILED"))
            with pytest.raises(WaiterError):
                await ecr.wait_for_lifecycle_policy_preview_complete(
                    repository_name="a", delay=0.01
                )
            stub.script(preview("IN_PROGRESS"))
            with pytest.raises(WaiterError, match="2 attempts"):
                await ecr.wait_for_lifecycle_policy_preview_complete(
                    repository_name="a", delay=0.01, max_attempts=2
                )
            stub.script(error("RepositoryNotFoundException"))
            with pytest.raises(WaiterError):
                await ecr.wait_for_lifecycle_policy_preview_complete(
                    repository_name="a", delay=0.01
                )
            for status in ("COMPLETE", "ACTIVE"):
                stub.script(scan("PENDING"), scan(status))
                result = await ecr.wait_for_image_scan_complete(
                    repository_name="a", image_id=IMAGE, delay=0.01
                )
                outcomes.append(result.image_scan_status.status)
            for status in ("FAILED", "UNSUPPORTED_IMAGE", "FINDINGS_UNAVAILABLE"):
                stub.script(scan(status))
                with pytest.raises(WaiterError, match=status):
                    await ecr.wait_for_image_scan_complete(
                        repository_name="a", image_id=IMAGE, delay=0.01
                    )
        return outcomes

    assert asyncio.run(run()) == ["COMPLETE", "COMPLETE", "ACTIVE"]
    assert len(stub.requests) == 2 + 1 + 2 + 1 + 2 + 2 + 3
