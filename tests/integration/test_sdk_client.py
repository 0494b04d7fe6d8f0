"""The typed SDK clients (``ECR`` and ``AsyncECR``) against a real openecr server, on both
metadata backends.

* Every one of the 41 operations is called through each client with typed arguments
  (structs of ``openecr.models``); each result is checked to be the operation's typed
  response, its ``response_metadata.request_id`` equal to the ``x-amzn-RequestId`` header of
  ``raw_response`` (the ``httpx.Response``). The set of operations called is asserted to be
  all 41.
* Errors come back as their classes with code, message, status, request id and extras.
* Paginators walk real pages (``max_results=2``), batch operations split at the ECR limits,
  the lifecycle preview waiter completes, ``with_options`` clones share the connection pool,
  and a caller's own ``httpx`` client is used and left open.

Behaviours a healthy server cannot produce are in ``tests/unit/test_sdk_*.py``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from ecr_helpers import expire_untagged_rule, lifecycle_text, registry_policy, repository_policy
from harness import (
    TEST_ACCESS_KEY,
    TEST_ACCOUNT,
    TEST_REGION,
    TEST_SECRET_KEY,
    ServerProcess,
    free_port,
)
from images import OCI_MANIFEST, Blob, build_image

from openecr import ECR, AsyncECR, ECRError, EndpointConnectionError, WaiterError
from openecr import models as m
from openecr.errors import (
    ImageNotFoundError,
    InvalidLayerPartError,
    InvalidParameterError,
    LayersNotFoundError,
    LifecyclePolicyNotFoundError,
    LifecyclePolicyPreviewNotFoundError,
    PullThroughCacheRuleNotFoundError,
    RepositoryAlreadyExistsError,
    RepositoryNotEmptyError,
    RepositoryNotFoundError,
    RepositoryPolicyNotFoundError,
    ScanNotFoundError,
    UnsupportedImageTypeError,
    UploadNotFoundError,
)
from openecr.sdk._operations import SyncOperations

TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
ALL_OPERATIONS = frozenset(
    name
    for name in vars(SyncOperations)
    if not name.startswith(("_", "iter_")) and not name.endswith("_pages")
)


def camel(operation: str) -> str:
    return "".join(part.title() for part in operation.split("_"))


def test_the_sdk_has_exactly_the_41_operations() -> None:
    assert len(ALL_OPERATIONS) == 41
    assert all(hasattr(m, camel(op) + "Response") for op in ALL_OPERATIONS)


# --- clients that record what they send -------------------------------------------------------


@dataclass
class Wire:
    """What an httpx client's event hooks saw: targets sent, request ids received."""

    targets: list[str] = field(default_factory=list)
    request_ids: list[str | None] = field(default_factory=list)

    def on_request(self, request: httpx.Request) -> None:
        self.targets.append(request.headers.get("X-Amz-Target", "").removeprefix(TARGET_PREFIX))

    def on_response(self, response: httpx.Response) -> None:
        self.request_ids.append(response.headers.get("x-amzn-RequestId"))

    async def aon_request(self, request: httpx.Request) -> None:
        self.on_request(request)

    async def aon_response(self, response: httpx.Response) -> None:
        self.on_response(response)

    def client(self) -> httpx.Client:
        return httpx.Client(
            event_hooks={"request": [self.on_request], "response": [self.on_response]}
        )

    def async_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            event_hooks={"request": [self.aon_request], "response": [self.aon_response]}
        )


def sdk(server: ServerProcess, **options: Any) -> ECR:
    return ECR(
        endpoint_url=server.url,
        region=TEST_REGION,
        access_key_id=TEST_ACCESS_KEY,
        secret_access_key=TEST_SECRET_KEY,
        **options,
    )


def async_sdk(server: ServerProcess, **options: Any) -> AsyncECR:
    return AsyncECR(
        endpoint_url=server.url,
        region=TEST_REGION,
        access_key_id=TEST_ACCESS_KEY,
        secret_access_key=TEST_SECRET_KEY,
        **options,
    )


def check_result(operation: str, result: Any) -> None:
    """A typed response whose metadata matches the HTTP exchange it came from."""
    assert type(result) is getattr(m, camel(operation) + "Response"), (operation, result)
    metadata = result.response_metadata
    assert isinstance(metadata, m.ResponseMetadata)
    raw = metadata.raw_response
    assert isinstance(raw, httpx.Response)
    assert metadata.http_status_code == raw.status_code == 200
    assert metadata.request_id and metadata.request_id == raw.headers["x-amzn-RequestId"]
    assert metadata.retry_attempts == 0
    assert raw.request.headers["X-Amz-Target"] == TARGET_PREFIX + camel(operation)


class Operations:
    """Calls operations by name on a sync or async client, checking every result and
    recording which operations were exercised."""

    def __init__(self, client: ECR | AsyncECR, wire: Wire) -> None:
        self.client = client
        self.wire = wire
        self.called: set[str] = set()

    async def _invoke(self, operation: str, **kwargs: Any) -> Any:
        outcome = getattr(self.client, operation)(**kwargs)
        if isinstance(self.client, AsyncECR):
            outcome = await outcome
        return outcome

    async def call(self, operation: str, **kwargs: Any) -> Any:
        self.called.add(operation)
        result = await self._invoke(operation, **kwargs)
        check_result(operation, result)
        return result

    async def fails(self, operation: str, cls: type[ECRError], **kwargs: Any) -> ECRError:
        self.called.add(operation)
        with pytest.raises(cls) as info:
            await self._invoke(operation, **kwargs)
        check_error(info.value, cls, self.wire)
        return info.value

    async def wait_for_preview(self, repository_name: str) -> Any:
        outcome = self.client.wait_for_lifecycle_policy_preview_complete(
            repository_name=repository_name, delay=0.05, max_attempts=200
        )
        if isinstance(self.client, AsyncECR):
            outcome = await outcome
        return outcome


def check_error(error: ECRError, cls: type[ECRError], wire: Wire) -> None:
    assert type(error) is cls
    assert error.code == cls.code
    assert error.http_status == 400
    assert error.message and str(error) == f"{cls.code}: {error.message}"
    assert error.request_id is not None and error.request_id == wire.request_ids[-1]


# --- pushing through the layer API --------------------------------------------------------


def upload_blob(ecr: ECR, repository: str, blob: Blob) -> None:
    upload = ecr.initiate_layer_upload(repository_name=repository)
    assert upload.upload_id is not None
    ecr.upload_layer_part(
        repository_name=repository,
        upload_id=upload.upload_id,
        part_first_byte=0,
        part_last_byte=blob.size - 1,
        layer_part_blob=blob.data,
    )
    ecr.complete_layer_upload(
        repository_name=repository, upload_id=upload.upload_id, layer_digests=[blob.digest]
    )


def push_images(ecr: ECR, repository: str, count: int) -> list[m.ImageIdentifier]:
    """``count`` distinct small images tagged t0..t<count-1>; their identifiers."""
    pushed = []
    for i in range(count):
        image = build_image(layers=1, layer_size=32 + i)
        for blob in (image.config, *image.layers):
            upload_blob(ecr, repository, blob)
        ecr.put_image(
            repository_name=repository,
            image_manifest=image.manifest.decode(),
            image_manifest_media_type=image.media_type,
            image_tag=f"t{i}",
        )
        pushed.append(m.ImageIdentifier(image_digest=image.digest, image_tag=f"t{i}"))
    return pushed


def reset_registry(server: ServerProcess) -> None:
    with sdk(server) as ecr:
        with contextlib.suppress(ECRError):
            ecr.delete_registry_policy()
        ecr.put_registry_scanning_configuration(scan_type="BASIC", rules=[])
        ecr.put_replication_configuration(
            replication_configuration=m.ReplicationConfiguration(rules=[])
        )


# --- all 41 operations --------------------------------------------------------------------


async def every_operation(ops: Operations, repo: str) -> None:
    """One pass over the whole API; ``ops`` checks each result's type and metadata."""
    arn = f"arn:aws:ecr:{TEST_REGION}:{TEST_ACCOUNT}:repository/{repo}"

    # repositories, tags, settings, repository policy
    created = await ops.call(
        "create_repository",
        repository_name=repo,
        tags=[m.Tag(key="team", value="sdk")],
        image_tag_mutability="MUTABLE",
        image_scanning_configuration=m.ImageScanningConfiguration(scan_on_push=False),
        encryption_configuration=m.EncryptionConfiguration(encryption_type="AES256"),
    )
    repository = created.repository
    assert (repository.repository_name, repository.repository_arn) == (repo, arn)
    assert repository.registry_id == TEST_ACCOUNT
    assert repository.repository_uri.endswith("/" + repo)
    assert repository.image_tag_mutability == "MUTABLE"
    assert repository.encryption_configuration == m.EncryptionConfiguration(
        encryption_type="AES256"
    )
    assert isinstance(repository.created_at, float)
    described = await ops.call("describe_repositories", repository_names=[repo])
    assert [r.repository_arn for r in described.repositories] == [arn]
    tags = await ops.call("list_tags_for_resource", resource_arn=arn)
    assert tags.tags == [m.Tag(key="team", value="sdk")]
    await ops.call("tag_resource", resource_arn=arn, tags=[m.Tag(key="stage", value="test")])
    await ops.call("untag_resource", resource_arn=arn, tag_keys=["team"])
    tags = await ops.call("list_tags_for_resource", resource_arn=arn)
    assert tags.tags == [m.Tag(key="stage", value="test")]
    mutability = await ops.call(
        "put_image_tag_mutability", repository_name=repo, image_tag_mutability="IMMUTABLE"
    )
    assert (mutability.repository_name, mutability.registry_id) == (repo, TEST_ACCOUNT)
    assert mutability.image_tag_mutability == "IMMUTABLE"
    scanning = await ops.call(
        "put_image_scanning_configuration",
        repository_name=repo,
        image_scanning_configuration=m.ImageScanningConfiguration(scan_on_push=True),
    )
    assert scanning.image_scanning_configuration == m.ImageScanningConfiguration(scan_on_push=True)
    policy = repository_policy()
    for operation in ("set_repository_policy", "get_repository_policy"):
        kwargs = {"policy_text": policy} if operation.startswith("set") else {}
        answer = await ops.call(operation, repository_name=repo, **kwargs)
        assert (answer.repository_name, answer.registry_id) == (repo, TEST_ACCOUNT)
        assert json.loads(answer.policy_text) == json.loads(policy)
    removed = await ops.call("delete_repository_policy", repository_name=repo)
    assert json.loads(removed.policy_text) == json.loads(policy)

    # layers and images
    image = build_image(layers=1, layer_size=512)
    layer = image.layers[0]
    for blob in (image.config, layer):
        upload = await ops.call("initiate_layer_upload", repository_name=repo)
        assert upload.upload_id and upload.part_size > 0
        part = await ops.call(
            "upload_layer_part",
            repository_name=repo,
            upload_id=upload.upload_id,
            part_first_byte=0,
            part_last_byte=blob.size - 1,
            layer_part_blob=blob.data,
        )
        assert (part.upload_id, part.last_byte_received) == (upload.upload_id, blob.size - 1)
        done = await ops.call(
            "complete_layer_upload",
            repository_name=repo,
            upload_id=upload.upload_id,
            layer_digests=[blob.digest],
        )
        assert (done.layer_digest, done.repository_name) == (blob.digest, repo)
    missing = "sha256:" + "0" * 64
    availability = await ops.call(
        "batch_check_layer_availability",
        repository_name=repo,
        layer_digests=[layer.digest, missing],
    )
    assert [(x.layer_digest, x.layer_availability, x.layer_size) for x in availability.layers] == [
        (layer.digest, "AVAILABLE", layer.size)
    ]
    assert [(f.layer_digest, f.failure_code) for f in availability.failures] == [
        (missing, "MissingLayerDigest")
    ]
    manifest = image.manifest.decode()
    put = await ops.call(
        "put_image",
        repository_name=repo,
        image_manifest=manifest,
        image_manifest_media_type=OCI_MANIFEST,
        image_tag="v1",
    )
    assert put.image.image_id == m.ImageIdentifier(image_digest=image.digest, image_tag="v1")
    assert put.image.image_manifest == manifest
    download = await ops.call(
        "get_download_url_for_layer", repository_name=repo, layer_digest=layer.digest
    )
    assert download.layer_digest == layer.digest
    assert httpx.get(download.download_url, timeout=10).content == layer.data
    fetched = await ops.call(
        "batch_get_image",
        repository_name=repo,
        image_ids=[m.ImageIdentifier(image_tag="v1"), m.ImageIdentifier(image_tag="absent")],
        accepted_media_types=[OCI_MANIFEST],
    )
    assert [(i.image_manifest, i.image_manifest_media_type) for i in fetched.images] == [
        (manifest, OCI_MANIFEST)
    ]
    assert [(f.image_id, f.failure_code) for f in fetched.failures] == [
        (m.ImageIdentifier(image_tag="absent"), "ImageNotFound")
    ]
    listed = await ops.call(
        "list_images", repository_name=repo, filter=m.ListImagesFilter(tag_status="TAGGED")
    )
    assert listed.image_ids == [m.ImageIdentifier(image_digest=image.digest, image_tag="v1")]
    details = await ops.call(
        "describe_images",
        repository_name=repo,
        image_ids=[m.ImageIdentifier(image_digest=image.digest)],
    )
    detail = details.image_details[0]
    assert (detail.repository_name, detail.registry_id) == (repo, TEST_ACCOUNT)
    assert (detail.image_digest, detail.image_tags) == (image.digest, ["v1"])
    assert detail.image_manifest_media_type == OCI_MANIFEST
    assert detail.image_size_in_bytes > 0 and isinstance(detail.image_pushed_at, float)

    # scanning: openecr has no scanner, and says so with ECR's errors
    v1 = m.ImageIdentifier(image_tag="v1")
    await ops.fails(
        "start_image_scan", UnsupportedImageTypeError, repository_name=repo, image_id=v1
    )
    await ops.fails(
        "describe_image_scan_findings", ScanNotFoundError, repository_name=repo, image_id=v1
    )

    # lifecycle policy and its preview (through the waiter)
    text = lifecycle_text(expire_untagged_rule())
    stored = await ops.call(
        "put_lifecycle_policy", repository_name=repo, lifecycle_policy_text=text
    )
    assert (stored.repository_name, stored.registry_id) == (repo, TEST_ACCOUNT)
    assert json.loads(stored.lifecycle_policy_text) == json.loads(text)
    read = await ops.call("get_lifecycle_policy", repository_name=repo)
    assert json.loads(read.lifecycle_policy_text) == json.loads(text)
    started = await ops.call("start_lifecycle_policy_preview", repository_name=repo)
    assert started.status in ("IN_PROGRESS", "COMPLETE")
    waited = await ops.wait_for_preview(repo)
    assert isinstance(waited, m.GetLifecyclePolicyPreviewResponse)
    assert waited.status == "COMPLETE"
    preview = await ops.call(
        "get_lifecycle_policy_preview",
        repository_name=repo,
        filter=m.LifecyclePolicyPreviewFilter(tag_status="ANY"),
    )
    assert preview.status == "COMPLETE"
    assert not preview.preview_results  # the only image is tagged; the rule expires untagged
    assert preview.summary is not None and preview.summary.expiring_image_total_count == 0
    dropped = await ops.call("delete_lifecycle_policy", repository_name=repo)
    assert json.loads(dropped.lifecycle_policy_text) == json.loads(text)

    # registry-wide operations (restored by the caller)
    token = await ops.call("get_authorization_token")
    data = token.authorization_data[0]
    assert base64.b64decode(data.authorization_token).startswith(b"AWS:")
    assert data.proxy_endpoint and isinstance(data.expires_at, float)
    replication = m.ReplicationConfiguration(
        rules=[
            m.ReplicationRule(
                destinations=[
                    m.ReplicationDestination(region="eu-west-1", registry_id=TEST_ACCOUNT)
                ],
                repository_filters=[m.RepositoryFilter(filter=repo, filter_type="PREFIX_MATCH")],
            )
        ]
    )
    echoed = await ops.call("put_replication_configuration", replication_configuration=replication)
    assert echoed.replication_configuration == replication
    registry = await ops.call("describe_registry")
    assert registry.registry_id == TEST_ACCOUNT
    assert registry.replication_configuration == replication
    status = await ops.call("describe_image_replication_status", repository_name=repo, image_id=v1)
    assert status.repository_name == repo
    assert status.image_id.image_digest == image.digest
    assert [(s.region, s.registry_id, s.status) for s in status.replication_statuses] == [
        ("eu-west-1", TEST_ACCOUNT, "FAILED")
    ]
    rule = m.RegistryScanningRule(
        scan_frequency="SCAN_ON_PUSH",
        repository_filters=[m.ScanningRepositoryFilter(filter=repo, filter_type="WILDCARD")],
    )
    expected = m.RegistryScanningConfiguration(scan_type="BASIC", rules=[rule])
    put_scanning = await ops.call(
        "put_registry_scanning_configuration", scan_type="BASIC", rules=[rule]
    )
    assert put_scanning.registry_scanning_configuration == expected
    got_scanning = await ops.call("get_registry_scanning_configuration")
    assert got_scanning.registry_id == TEST_ACCOUNT
    assert got_scanning.scanning_configuration == expected
    per_repo = await ops.call(
        "batch_get_repository_scanning_configuration", repository_names=[repo, repo + "-absent"]
    )
    assert [(c.repository_name, c.scan_frequency) for c in per_repo.scanning_configurations] == [
        (repo, "SCAN_ON_PUSH")
    ]
    assert [(f.repository_name, f.failure_code) for f in per_repo.failures] == [
        (repo + "-absent", "REPOSITORY_NOT_FOUND")
    ]
    registry_text = registry_policy()
    for operation in ("put_registry_policy", "get_registry_policy", "delete_registry_policy"):
        kwargs = {"policy_text": registry_text} if operation.startswith("put") else {}
        answer = await ops.call(operation, **kwargs)
        assert answer.registry_id == TEST_ACCOUNT
        assert json.loads(answer.policy_text) == json.loads(registry_text)

    # pull-through cache rules
    prefix = f"sdk{uuid.uuid4().hex[:10]}"
    rule_created = await ops.call(
        "create_pull_through_cache_rule",
        ecr_repository_prefix=prefix,
        upstream_registry_url="public.ecr.aws",
    )
    assert (rule_created.ecr_repository_prefix, rule_created.upstream_registry) == (
        prefix,
        "ecr-public",
    )
    assert rule_created.registry_id == TEST_ACCOUNT
    assert isinstance(rule_created.created_at, float)
    rules = await ops.call("describe_pull_through_cache_rules", ecr_repository_prefixes=[prefix])
    assert [
        (r.ecr_repository_prefix, r.upstream_registry_url) for r in rules.pull_through_cache_rules
    ] == [(prefix, "public.ecr.aws")]
    rule_deleted = await ops.call("delete_pull_through_cache_rule", ecr_repository_prefix=prefix)
    assert rule_deleted.ecr_repository_prefix == prefix

    # clean up
    deleted = await ops.call(
        "batch_delete_image",
        repository_name=repo,
        image_ids=[m.ImageIdentifier(image_digest=image.digest), m.ImageIdentifier(image_tag="x")],
    )
    assert [i.image_digest for i in deleted.image_ids] == [image.digest]
    assert [f.failure_code for f in deleted.failures] == ["ImageNotFound"]
    gone = await ops.call("delete_repository", repository_name=repo, force=True)
    assert gone.repository.repository_name == repo


def test_every_operation_through_the_sync_client(server: ServerProcess, repo_name: str) -> None:
    wire = Wire()
    http = wire.client()
    ecr = sdk(server, http_client=http)
    ops = Operations(ecr, wire)
    try:
        asyncio.run(every_operation(ops, repo_name))
    finally:
        reset_registry(server)
    assert ops.called == ALL_OPERATIONS
    # every request went through the caller's client (the waiter polled at least once more)
    assert len(wire.targets) > len(ops.called)
    assert wire.targets.count("GetLifecyclePolicyPreview") >= 2
    assert set(wire.targets) == {camel(op) for op in ALL_OPERATIONS}
    ecr.close()
    assert not http.is_closed  # not ours to close
    assert http.get(server.url + "/healthz").status_code == 200
    http.close()


def test_every_operation_through_the_async_client(server: ServerProcess, repo_name: str) -> None:
    wire = Wire()

    async def run() -> tuple[Operations, bool]:
        http = wire.async_client()
        client = async_sdk(server, http_client=http)
        ops = Operations(client, wire)
        async with client:
            await every_operation(ops, repo_name + "-async")
        closed = http.is_closed
        await http.aclose()
        return ops, closed

    try:
        ops, closed = asyncio.run(run())
    finally:
        reset_registry(server)
    assert ops.called == ALL_OPERATIONS
    assert set(wire.targets) == {camel(op) for op in ALL_OPERATIONS}
    assert closed is False


# --- errors --------------------------------------------------------------------------------


def test_errors_map_to_their_classes(server: ServerProcess, repo_name: str) -> None:
    wire = Wire()
    ecr = sdk(server, http_client=wire.client())

    def raises(cls: type[ECRError], call: Callable[[], object]) -> ECRError:
        with pytest.raises(cls) as info:
            call()
        check_error(info.value, cls, wire)
        return info.value

    missing = "sha256:" + "0" * 64
    gone = raises(
        RepositoryNotFoundError, lambda: ecr.describe_repositories(repository_names=[repo_name])
    )
    assert gone.message == (
        f"The repository with name '{repo_name}' does not exist in the registry with id "
        f"'{TEST_ACCOUNT}'"
    )
    ecr.create_repository(repository_name=repo_name)
    raises(RepositoryAlreadyExistsError, lambda: ecr.create_repository(repository_name=repo_name))
    invalid = raises(
        InvalidParameterError, lambda: ecr.create_repository(repository_name="Not/Valid")
    )
    assert "repositoryName" in invalid.message
    raises(
        LayersNotFoundError,
        lambda: ecr.get_download_url_for_layer(repository_name=repo_name, layer_digest=missing),
    )
    raises(
        ImageNotFoundError,
        lambda: ecr.describe_images(
            repository_name=repo_name, image_ids=[m.ImageIdentifier(image_tag="nope")]
        ),
    )
    raises(
        LifecyclePolicyNotFoundError, lambda: ecr.get_lifecycle_policy(repository_name=repo_name)
    )
    raises(
        LifecyclePolicyPreviewNotFoundError,
        lambda: ecr.get_lifecycle_policy_preview(repository_name=repo_name),
    )
    raises(
        RepositoryPolicyNotFoundError, lambda: ecr.get_repository_policy(repository_name=repo_name)
    )
    raises(
        PullThroughCacheRuleNotFoundError,
        lambda: ecr.delete_pull_through_cache_rule(ecr_repository_prefix="sdk-nope"),
    )
    raises(
        UploadNotFoundError,
        lambda: ecr.upload_layer_part(
            repository_name=repo_name,
            upload_id=str(uuid.uuid4()),
            part_first_byte=0,
            part_last_byte=0,
            layer_part_blob=b"x",
        ),
    )
    upload = ecr.initiate_layer_upload(repository_name=repo_name)
    assert upload.upload_id is not None
    ecr.upload_layer_part(
        repository_name=repo_name,
        upload_id=upload.upload_id,
        part_first_byte=0,
        part_last_byte=9,
        layer_part_blob=b"0123456789",
    )
    part = raises(
        InvalidLayerPartError,
        lambda: ecr.upload_layer_part(
            repository_name=repo_name,
            upload_id=upload.upload_id or "",
            part_first_byte=20,
            part_last_byte=21,
            layer_part_blob=b"ab",
        ),
    )
    assert part.extra == {
        "registryId": TEST_ACCOUNT,
        "repositoryName": repo_name,
        "uploadId": upload.upload_id,
        "lastValidByteReceived": 9,
    }
    push_images(ecr, repo_name, 1)
    raises(RepositoryNotEmptyError, lambda: ecr.delete_repository(repository_name=repo_name))
    # A waiter meeting an error response gives up at once (ScanNotFound: no scanner here).
    with pytest.raises(WaiterError) as waiting:
        ecr.wait_for_image_scan_complete(
            repository_name=repo_name, image_id=m.ImageIdentifier(image_tag="t0"), delay=0.01
        )
    assert isinstance(waiting.value.last_response, ScanNotFoundError)
    ecr.delete_repository(repository_name=repo_name, force=True)
    # Each error was answered once: client errors are not retried.
    assert len(wire.targets) == len(wire.request_ids)
    ecr.close()


def test_async_errors_map_to_their_classes(server: ServerProcess, repo_name: str) -> None:
    wire = Wire()

    async def run() -> None:
        async with async_sdk(server, http_client=wire.async_client()) as ecr:
            with pytest.raises(RepositoryNotFoundError) as info:
                await ecr.delete_repository(repository_name=repo_name)
            check_error(info.value, RepositoryNotFoundError, wire)
            await ecr.create_repository(repository_name=repo_name)
            with pytest.raises(RepositoryAlreadyExistsError) as again:
                await ecr.create_repository(repository_name=repo_name)
            check_error(again.value, RepositoryAlreadyExistsError, wire)
            upload = await ecr.initiate_layer_upload(repository_name=repo_name)
            with pytest.raises(InvalidLayerPartError) as part:
                await ecr.upload_layer_part(
                    repository_name=repo_name,
                    upload_id=upload.upload_id or "",
                    part_first_byte=5,
                    part_last_byte=5,
                    layer_part_blob=b"x",
                )
            check_error(part.value, InvalidLayerPartError, wire)
            assert part.value.extra["lastValidByteReceived"] == -1
            await ecr.delete_repository(repository_name=repo_name)

    asyncio.run(run())


# --- pagination and batches over real data -------------------------------------------------------


@dataclass
class World:
    repositories: list[str]
    image_repository: str
    images: list[m.ImageIdentifier]
    prefixes: list[str]


@pytest.fixture(scope="module")
def world(server: ServerProcess) -> Iterator[World]:
    """Seven repositories, a repository with seven images, seven pull-through cache rules."""
    base = f"sdkpages/{uuid.uuid4().hex[:8]}"
    repositories = [f"{base}/r{i}" for i in range(7)]
    prefixes = [f"sdkp{uuid.uuid4().hex[:8]}" for _ in range(7)]
    with sdk(server) as ecr:
        for name in repositories:
            ecr.create_repository(repository_name=name)
        images = push_images(ecr, repositories[0], 7)
        for prefix in prefixes:
            ecr.create_pull_through_cache_rule(
                ecr_repository_prefix=prefix, upstream_registry_url="public.ecr.aws"
            )
        yield World(repositories, repositories[0], images, prefixes)
        for prefix in prefixes:
            ecr.delete_pull_through_cache_rule(ecr_repository_prefix=prefix)
        for name in repositories:
            ecr.delete_repository(repository_name=name, force=True)


def test_paginators_walk_every_page(server: ServerProcess, world: World) -> None:
    wire = Wire()
    with sdk(server, http_client=wire.client()) as ecr:
        everything = ecr.describe_repositories(max_results=1000).repositories or []
        total = len(everything)
        wire.targets.clear()

        names = [r.repository_name for r in ecr.iter_describe_repositories(max_results=2)]
        assert set(world.repositories) <= set(names)
        assert len(names) == len(set(names)) == total
        assert wire.targets == ["DescribeRepositories"] * math.ceil(total / 2)

        pages = list(ecr.describe_repositories_pages(max_results=2))
        assert all(isinstance(p, m.DescribeRepositoriesResponse) for p in pages)
        assert all(len(p.repositories or []) <= 2 for p in pages)
        assert all(p.next_token for p in pages[:-1]) and not pages[-1].next_token
        assert sum(len(p.repositories or []) for p in pages) == total

        wire.targets.clear()
        ids = list(ecr.iter_list_images(repository_name=world.image_repository, max_results=2))
        assert sorted(ids, key=lambda i: i.image_tag or "") == world.images
        assert wire.targets == ["ListImages"] * 4

        wire.targets.clear()
        details = list(
            ecr.iter_describe_images(repository_name=world.image_repository, max_results=2)
        )
        assert sorted(d.image_digest or "" for d in details) == sorted(
            i.image_digest or "" for i in world.images
        )
        assert wire.targets == ["DescribeImages"] * 4

        wire.targets.clear()
        rules = list(ecr.iter_describe_pull_through_cache_rules(max_results=2))
        prefixes = [r.ecr_repository_prefix for r in rules]
        assert set(world.prefixes) <= set(prefixes)
        assert len(prefixes) == len(set(prefixes))
        assert wire.targets == ["DescribePullThroughCacheRules"] * math.ceil(len(rules) / 2)


def test_async_paginators_walk_every_page(server: ServerProcess, world: World) -> None:
    async def run() -> dict[str, list[Any]]:
        async with async_sdk(server) as ecr:
            return {
                "repos": [r async for r in ecr.iter_describe_repositories(max_results=2)],
                "pages": [p async for p in ecr.describe_repositories_pages(max_results=2)],
                "ids": [
                    i
                    async for i in ecr.iter_list_images(
                        repository_name=world.image_repository, max_results=2
                    )
                ],
                "details": [
                    d
                    async for d in ecr.iter_describe_images(
                        repository_name=world.image_repository, max_results=2
                    )
                ],
                "rules": [
                    r async for r in ecr.iter_describe_pull_through_cache_rules(max_results=2)
                ],
            }

    out = asyncio.run(run())
    names = [r.repository_name for r in out["repos"]]
    assert set(world.repositories) <= set(names) and len(names) == len(set(names))
    assert sum(len(p.repositories) for p in out["pages"]) == len(names)
    assert all(len(p.repositories) <= 2 for p in out["pages"])
    assert sorted(out["ids"], key=lambda i: i.image_tag) == world.images
    assert len(out["details"]) == 7
    assert set(world.prefixes) <= {r.ecr_repository_prefix for r in out["rules"]}


def two_fifty(images: list[m.ImageIdentifier]) -> list[m.ImageIdentifier]:
    """The pushed images' tags spread among 250 ids, the rest naming absent tags."""
    ids = [m.ImageIdentifier(image_tag=f"absent{i}") for i in range(250 - len(images))]
    for n, image in enumerate(images):
        ids.insert(n * 37, m.ImageIdentifier(image_tag=image.image_tag))
    return ids


def test_batch_get_image_with_250_ids_makes_three_calls(
    server: ServerProcess, world: World
) -> None:
    wire = Wire()
    with sdk(server, http_client=wire.client()) as ecr:
        result = ecr.batch_get_image(
            repository_name=world.image_repository, image_ids=two_fifty(world.images)
        )
    assert wire.targets == ["BatchGetImage"] * 3
    assert sorted(i.image_id.image_tag for i in result.images) == [f"t{i}" for i in range(7)]
    assert len(result.failures) == 243
    assert {f.failure_code for f in result.failures} == {"ImageNotFound"}


def test_batch_delete_image_with_250_ids_makes_three_calls(
    server: ServerProcess, repo_name: str
) -> None:
    wire = Wire()
    with sdk(server, http_client=wire.client()) as ecr:
        ecr.create_repository(repository_name=repo_name)
        images = push_images(ecr, repo_name, 5)
        wire.targets.clear()
        result = ecr.batch_delete_image(repository_name=repo_name, image_ids=two_fifty(images))
        assert wire.targets == ["BatchDeleteImage"] * 3
        assert sorted(i.image_digest for i in result.image_ids) == sorted(
            i.image_digest for i in images
        )
        assert len(result.failures) == 245
        assert ecr.list_images(repository_name=repo_name).image_ids == []
        ecr.delete_repository(repository_name=repo_name)


def test_batch_get_repository_scanning_configuration_with_60_names(
    server: ServerProcess, world: World
) -> None:
    wire = Wire()
    names = [f"{world.repositories[0]}-absent{i}" for i in range(53)] + world.repositories
    with sdk(server, http_client=wire.client()) as ecr:
        result = ecr.batch_get_repository_scanning_configuration(repository_names=names)
    assert wire.targets == ["BatchGetRepositoryScanningConfiguration"] * 3
    assert [c.repository_name for c in result.scanning_configurations] == world.repositories
    assert len(result.failures) == 53
    assert {f.failure_code for f in result.failures} == {"REPOSITORY_NOT_FOUND"}


# --- with_options and connection sharing ---------------------------------------------------------


def local_port(result: Any) -> int:
    stream = result.response_metadata.raw_response.extensions["network_stream"]
    return int(stream.get_extra_info("client_addr")[1])


def test_with_options_shares_the_pool_and_changes_behaviour(server: ServerProcess) -> None:
    wire = Wire()
    with sdk(server, http_client=wire.client()) as ecr:
        port = local_port(ecr.describe_registry())
        clone = ecr.with_options(timeout=30.0, max_attempts=5)
        assert local_port(clone.describe_registry()) == port  # same kept-alive connection
        clone.close()
        assert local_port(ecr.describe_registry()) == port
        assert wire.targets == ["DescribeRegistry"] * 3  # the clone used the caller's client

        wire.targets.clear()
        dead_end = ecr.with_options(endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=2)
        with pytest.raises(EndpointConnectionError):
            dead_end.describe_registry()
        assert wire.targets == ["DescribeRegistry"] * 2  # refused, retried once, gave up
        wire.targets.clear()
        with pytest.raises(EndpointConnectionError):
            dead_end.with_options(max_attempts=1).describe_registry()
        assert wire.targets == ["DescribeRegistry"]
        assert ecr.describe_registry().registry_id == TEST_ACCOUNT  # the original is unchanged


def test_async_with_options_shares_the_pool(server: ServerProcess) -> None:
    wire = Wire()

    async def run() -> None:
        async with async_sdk(server, http_client=wire.async_client()) as ecr:
            await ecr.describe_registry()
            clone = ecr.with_options(max_attempts=1)
            await clone.describe_registry()
            await clone.aclose()
            await ecr.describe_registry()  # the pool survived the clone's aclose()
            dead_end = ecr.with_options(endpoint_url=f"http://127.0.0.1:{free_port()}")
            with pytest.raises(EndpointConnectionError):
                await dead_end.with_options(max_attempts=3).describe_registry()

    asyncio.run(run())
    assert wire.targets == ["DescribeRegistry"] * 6
