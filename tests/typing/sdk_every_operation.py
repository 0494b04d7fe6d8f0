"""Type-checked, never executed: every one of the 41 ECR operations through ``ECR`` and
``AsyncECR`` with correctly typed arguments, plus paginators, waiters and options.

``tests/unit/test_sdk_typing.py`` runs ``mypy --strict`` on this file and requires it to pass;
``assert_type`` pins each operation's declared result type, so a change that loosened a
return type to ``Any`` (or to the wrong struct) fails the check too.
"""

from __future__ import annotations

from typing import assert_type

import httpx

from openecr import ECR, AsyncECR, ECRError, WaiterError
from openecr import models as m
from openecr.errors import InvalidLayerPartError, RepositoryNotFoundError

IMAGE = m.ImageIdentifier(image_digest="sha256:" + "0" * 64, image_tag="v1")
TAGS = [m.Tag(key="team", value="sdk")]
RULE = m.RegistryScanningRule(
    scan_frequency="SCAN_ON_PUSH",
    repository_filters=[m.ScanningRepositoryFilter(filter="team/*", filter_type="WILDCARD")],
)
REPLICATION = m.ReplicationConfiguration(
    rules=[
        m.ReplicationRule(
            destinations=[m.ReplicationDestination(region="eu-west-1", registry_id="1")],
            repository_filters=[m.RepositoryFilter(filter="team", filter_type="PREFIX_MATCH")],
        )
    ]
)
ARN = "arn:aws:ecr:us-east-1:123456789012:repository/team/app"


def sync_client() -> None:
    http = httpx.Client()
    ecr = ECR(
        region="us-east-1",
        endpoint_url="http://127.0.0.1:8080",
        access_key_id="AKIA",
        secret_access_key="secret",
        session_token=None,
        profile=None,
        timeout=30.0,
        max_attempts=5,
        http_client=http,
    )
    faster: ECR = ecr.with_options(timeout=5.0, max_attempts=1)
    region: str = faster.region
    endpoint: str = faster.endpoint_url
    print(region, endpoint)

    created = assert_type(
        ecr.create_repository(
            repository_name="team/app",
            registry_id="123456789012",
            tags=TAGS,
            image_tag_mutability="IMMUTABLE",
            image_tag_mutability_exclusion_filters=[
                m.ImageTagMutabilityExclusionFilter(filter_type="WILDCARD", filter="latest")
            ],
            image_scanning_configuration=m.ImageScanningConfiguration(scan_on_push=True),
            encryption_configuration=m.EncryptionConfiguration(encryption_type="AES256"),
        ),
        m.CreateRepositoryResponse,
    )
    if created.repository is not None:
        arn: str | None = created.repository.repository_arn
        created_at: float | None = created.repository.created_at
        print(arn, created_at)
    metadata = created.response_metadata
    if metadata is not None:
        request_id: str | None = metadata.request_id
        retries: int = metadata.retry_attempts
        print(request_id, retries, metadata.raw_response)

    assert_type(
        ecr.describe_repositories(
            registry_id="1", repository_names=["a"], next_token=None, max_results=10
        ),
        m.DescribeRepositoriesResponse,
    )
    assert_type(ecr.delete_repository(repository_name="a", force=True), m.DeleteRepositoryResponse)
    assert_type(
        ecr.put_image_tag_mutability(
            repository_name="a",
            image_tag_mutability="MUTABLE",
            image_tag_mutability_exclusion_filters=None,
        ),
        m.PutImageTagMutabilityResponse,
    )
    assert_type(
        ecr.put_image_scanning_configuration(
            repository_name="a",
            image_scanning_configuration=m.ImageScanningConfiguration(scan_on_push=False),
        ),
        m.PutImageScanningConfigurationResponse,
    )
    assert_type(
        ecr.set_repository_policy(repository_name="a", policy_text="{}", force=False),
        m.SetRepositoryPolicyResponse,
    )
    assert_type(ecr.get_repository_policy(repository_name="a"), m.GetRepositoryPolicyResponse)
    assert_type(ecr.delete_repository_policy(repository_name="a"), m.DeleteRepositoryPolicyResponse)
    assert_type(ecr.list_tags_for_resource(resource_arn=ARN), m.ListTagsForResourceResponse)
    assert_type(ecr.tag_resource(resource_arn=ARN, tags=TAGS), m.TagResourceResponse)
    assert_type(ecr.untag_resource(resource_arn=ARN, tag_keys=["team"]), m.UntagResourceResponse)

    upload = assert_type(
        ecr.initiate_layer_upload(repository_name="a"), m.InitiateLayerUploadResponse
    )
    upload_id: str = upload.upload_id or ""
    part = assert_type(
        ecr.upload_layer_part(
            repository_name="a",
            upload_id=upload_id,
            part_first_byte=0,
            part_last_byte=2,
            layer_part_blob=b"abc",
        ),
        m.UploadLayerPartResponse,
    )
    last: int | None = part.last_byte_received
    print(last)
    assert_type(
        ecr.complete_layer_upload(
            repository_name="a", upload_id=upload_id, layer_digests=["sha256:" + "0" * 64]
        ),
        m.CompleteLayerUploadResponse,
    )
    layers = assert_type(
        ecr.batch_check_layer_availability(repository_name="a", layer_digests=("sha256:0",)),
        m.BatchCheckLayerAvailabilityResponse,
    )
    for layer in layers.layers or []:
        availability: str | None = layer.layer_availability
        print(availability)
    assert_type(
        ecr.get_download_url_for_layer(repository_name="a", layer_digest="sha256:0"),
        m.GetDownloadUrlForLayerResponse,
    )
    put = assert_type(
        ecr.put_image(
            repository_name="a",
            image_manifest="{}",
            image_manifest_media_type="application/vnd.oci.image.manifest.v1+json",
            image_tag="v1",
            image_digest=None,
        ),
        m.PutImageResponse,
    )
    if put.image is not None and put.image.image_id is not None:
        digest: str | None = put.image.image_id.image_digest
        print(digest)
    fetched = assert_type(
        ecr.batch_get_image(
            repository_name="a",
            image_ids=[IMAGE],
            accepted_media_types=["application/vnd.oci.image.manifest.v1+json"],
        ),
        m.BatchGetImageResponse,
    )
    for failure in fetched.failures or []:
        code: str | None = failure.failure_code
        print(code)
    assert_type(
        ecr.batch_delete_image(repository_name="a", image_ids=[IMAGE]), m.BatchDeleteImageResponse
    )
    assert_type(
        ecr.list_images(
            repository_name="a", max_results=2, filter=m.ListImagesFilter(tag_status="TAGGED")
        ),
        m.ListImagesResponse,
    )
    assert_type(
        ecr.describe_images(
            repository_name="a",
            image_ids=[IMAGE],
            filter=m.DescribeImagesFilter(tag_status="ANY"),
        ),
        m.DescribeImagesResponse,
    )
    assert_type(
        ecr.describe_image_replication_status(repository_name="a", image_id=IMAGE),
        m.DescribeImageReplicationStatusResponse,
    )
    assert_type(ecr.start_image_scan(repository_name="a", image_id=IMAGE), m.StartImageScanResponse)
    assert_type(
        ecr.describe_image_scan_findings(repository_name="a", image_id=IMAGE, max_results=10),
        m.DescribeImageScanFindingsResponse,
    )

    assert_type(
        ecr.put_lifecycle_policy(repository_name="a", lifecycle_policy_text="{}"),
        m.PutLifecyclePolicyResponse,
    )
    assert_type(ecr.get_lifecycle_policy(repository_name="a"), m.GetLifecyclePolicyResponse)
    assert_type(ecr.delete_lifecycle_policy(repository_name="a"), m.DeleteLifecyclePolicyResponse)
    assert_type(
        ecr.start_lifecycle_policy_preview(repository_name="a", lifecycle_policy_text=None),
        m.StartLifecyclePolicyPreviewResponse,
    )
    assert_type(
        ecr.get_lifecycle_policy_preview(
            repository_name="a", filter=m.LifecyclePolicyPreviewFilter(tag_status="UNTAGGED")
        ),
        m.GetLifecyclePolicyPreviewResponse,
    )

    token = assert_type(
        ecr.get_authorization_token(registry_ids=["123456789012"]),
        m.GetAuthorizationTokenResponse,
    )
    for data in token.authorization_data or []:
        expires: float | None = data.expires_at
        print(expires)
    assert_type(ecr.describe_registry(), m.DescribeRegistryResponse)
    assert_type(
        ecr.put_replication_configuration(replication_configuration=REPLICATION),
        m.PutReplicationConfigurationResponse,
    )
    assert_type(ecr.put_registry_policy(policy_text="{}"), m.PutRegistryPolicyResponse)
    assert_type(ecr.get_registry_policy(), m.GetRegistryPolicyResponse)
    assert_type(ecr.delete_registry_policy(), m.DeleteRegistryPolicyResponse)
    assert_type(
        ecr.put_registry_scanning_configuration(scan_type="ENHANCED", rules=[RULE]),
        m.PutRegistryScanningConfigurationResponse,
    )
    assert_type(
        ecr.get_registry_scanning_configuration(), m.GetRegistryScanningConfigurationResponse
    )
    assert_type(
        ecr.batch_get_repository_scanning_configuration(repository_names=["a", "b"]),
        m.BatchGetRepositoryScanningConfigurationResponse,
    )
    assert_type(
        ecr.create_pull_through_cache_rule(
            ecr_repository_prefix="hub",
            upstream_registry_url="registry-1.docker.io",
            upstream_registry="docker-hub",
            credential_arn="arn:aws:secretsmanager:us-east-1:1:secret:ecr-pullthroughcache/x",
        ),
        m.CreatePullThroughCacheRuleResponse,
    )
    assert_type(
        ecr.describe_pull_through_cache_rules(ecr_repository_prefixes=["hub"]),
        m.DescribePullThroughCacheRulesResponse,
    )
    assert_type(
        ecr.delete_pull_through_cache_rule(ecr_repository_prefix="hub"),
        m.DeletePullThroughCacheRuleResponse,
    )

    # paginators
    for repository in ecr.iter_describe_repositories(max_results=2):
        assert_type(repository, m.Repository)
    for page in ecr.describe_repositories_pages(max_results=2):
        assert_type(page, m.DescribeRepositoriesResponse)
    for image_id in ecr.iter_list_images(repository_name="a"):
        assert_type(image_id, m.ImageIdentifier)
    for list_page in ecr.list_images_pages(repository_name="a"):
        assert_type(list_page, m.ListImagesResponse)
    for detail in ecr.iter_describe_images(repository_name="a"):
        assert_type(detail, m.ImageDetail)
    for images_page in ecr.describe_images_pages(repository_name="a"):
        assert_type(images_page, m.DescribeImagesResponse)
    for rule in ecr.iter_describe_pull_through_cache_rules():
        assert_type(rule, m.PullThroughCacheRule)
    for rules_page in ecr.describe_pull_through_cache_rules_pages():
        assert_type(rules_page, m.DescribePullThroughCacheRulesResponse)
    for finding in ecr.iter_describe_image_scan_findings(repository_name="a", image_id=IMAGE):
        assert_type(finding, m.ImageScanFinding)
    for findings_page in ecr.describe_image_scan_findings_pages(
        repository_name="a", image_id=IMAGE
    ):
        assert_type(findings_page, m.DescribeImageScanFindingsResponse)
    for result in ecr.iter_get_lifecycle_policy_preview(repository_name="a"):
        assert_type(result, m.LifecyclePolicyPreviewResult)
    for preview_page in ecr.get_lifecycle_policy_preview_pages(repository_name="a"):
        assert_type(preview_page, m.GetLifecyclePolicyPreviewResponse)

    # waiters and errors
    try:
        ecr.wait_for_image_scan_complete(
            repository_name="a", image_id=IMAGE, delay=1.0, max_attempts=3
        )
        ecr.wait_for_lifecycle_policy_preview_complete(repository_name="a", delay=0.5)
    except WaiterError as waiting:
        print(waiting.last_response)
    except InvalidLayerPartError as bad_part:
        print(bad_part.extra["lastValidByteReceived"])
    except RepositoryNotFoundError as missing:
        status: int = missing.http_status
        print(status, missing.request_id)
    except ECRError as other:
        error_code: str = other.code
        print(error_code, other.message)
    ecr.close()
    with ECR(region="us-east-1") as scoped:
        scoped.describe_registry()


async def async_client() -> None:
    ecr = AsyncECR(region="us-east-1", http_client=httpx.AsyncClient(), max_attempts=2)
    faster: AsyncECR = ecr.with_options(timeout=5.0)
    print(faster.region)

    assert_type(
        await ecr.create_repository(repository_name="team/app", tags=TAGS),
        m.CreateRepositoryResponse,
    )
    assert_type(
        await ecr.describe_repositories(repository_names=["a"]), m.DescribeRepositoriesResponse
    )
    assert_type(await ecr.delete_repository(repository_name="a"), m.DeleteRepositoryResponse)
    assert_type(
        await ecr.put_image_tag_mutability(repository_name="a", image_tag_mutability="MUTABLE"),
        m.PutImageTagMutabilityResponse,
    )
    assert_type(
        await ecr.put_image_scanning_configuration(
            repository_name="a",
            image_scanning_configuration=m.ImageScanningConfiguration(scan_on_push=True),
        ),
        m.PutImageScanningConfigurationResponse,
    )
    assert_type(
        await ecr.set_repository_policy(repository_name="a", policy_text="{}"),
        m.SetRepositoryPolicyResponse,
    )
    assert_type(await ecr.get_repository_policy(repository_name="a"), m.GetRepositoryPolicyResponse)
    assert_type(
        await ecr.delete_repository_policy(repository_name="a"),
        m.DeleteRepositoryPolicyResponse,
    )
    assert_type(await ecr.list_tags_for_resource(resource_arn=ARN), m.ListTagsForResourceResponse)
    assert_type(await ecr.tag_resource(resource_arn=ARN, tags=TAGS), m.TagResourceResponse)
    assert_type(
        await ecr.untag_resource(resource_arn=ARN, tag_keys=["team"]), m.UntagResourceResponse
    )
    assert_type(await ecr.initiate_layer_upload(repository_name="a"), m.InitiateLayerUploadResponse)
    assert_type(
        await ecr.upload_layer_part(
            repository_name="a",
            upload_id="u",
            part_first_byte=0,
            part_last_byte=0,
            layer_part_blob=b"x",
        ),
        m.UploadLayerPartResponse,
    )
    assert_type(
        await ecr.complete_layer_upload(
            repository_name="a", upload_id="u", layer_digests=["sha256:0"]
        ),
        m.CompleteLayerUploadResponse,
    )
    assert_type(
        await ecr.batch_check_layer_availability(repository_name="a", layer_digests=["d"]),
        m.BatchCheckLayerAvailabilityResponse,
    )
    assert_type(
        await ecr.get_download_url_for_layer(repository_name="a", layer_digest="d"),
        m.GetDownloadUrlForLayerResponse,
    )
    assert_type(
        await ecr.put_image(repository_name="a", image_manifest="{}", image_tag="v1"),
        m.PutImageResponse,
    )
    assert_type(
        await ecr.batch_get_image(repository_name="a", image_ids=[IMAGE]),
        m.BatchGetImageResponse,
    )
    assert_type(
        await ecr.batch_delete_image(repository_name="a", image_ids=[IMAGE]),
        m.BatchDeleteImageResponse,
    )
    assert_type(await ecr.list_images(repository_name="a"), m.ListImagesResponse)
    assert_type(await ecr.describe_images(repository_name="a"), m.DescribeImagesResponse)
    assert_type(
        await ecr.describe_image_replication_status(repository_name="a", image_id=IMAGE),
        m.DescribeImageReplicationStatusResponse,
    )
    assert_type(
        await ecr.start_image_scan(repository_name="a", image_id=IMAGE),
        m.StartImageScanResponse,
    )
    assert_type(
        await ecr.describe_image_scan_findings(repository_name="a", image_id=IMAGE),
        m.DescribeImageScanFindingsResponse,
    )
    assert_type(
        await ecr.put_lifecycle_policy(repository_name="a", lifecycle_policy_text="{}"),
        m.PutLifecyclePolicyResponse,
    )
    assert_type(await ecr.get_lifecycle_policy(repository_name="a"), m.GetLifecyclePolicyResponse)
    assert_type(
        await ecr.delete_lifecycle_policy(repository_name="a"), m.DeleteLifecyclePolicyResponse
    )
    assert_type(
        await ecr.start_lifecycle_policy_preview(repository_name="a"),
        m.StartLifecyclePolicyPreviewResponse,
    )
    assert_type(
        await ecr.get_lifecycle_policy_preview(repository_name="a", max_results=10),
        m.GetLifecyclePolicyPreviewResponse,
    )
    assert_type(await ecr.get_authorization_token(), m.GetAuthorizationTokenResponse)
    assert_type(await ecr.describe_registry(), m.DescribeRegistryResponse)
    assert_type(
        await ecr.put_replication_configuration(replication_configuration=REPLICATION),
        m.PutReplicationConfigurationResponse,
    )
    assert_type(await ecr.put_registry_policy(policy_text="{}"), m.PutRegistryPolicyResponse)
    assert_type(await ecr.get_registry_policy(), m.GetRegistryPolicyResponse)
    assert_type(await ecr.delete_registry_policy(), m.DeleteRegistryPolicyResponse)
    assert_type(
        await ecr.put_registry_scanning_configuration(scan_type="BASIC", rules=[RULE]),
        m.PutRegistryScanningConfigurationResponse,
    )
    assert_type(
        await ecr.get_registry_scanning_configuration(),
        m.GetRegistryScanningConfigurationResponse,
    )
    assert_type(
        await ecr.batch_get_repository_scanning_configuration(repository_names=["a"]),
        m.BatchGetRepositoryScanningConfigurationResponse,
    )
    assert_type(
        await ecr.create_pull_through_cache_rule(
            ecr_repository_prefix="q", upstream_registry_url="quay.io"
        ),
        m.CreatePullThroughCacheRuleResponse,
    )
    assert_type(
        await ecr.describe_pull_through_cache_rules(max_results=5),
        m.DescribePullThroughCacheRulesResponse,
    )
    assert_type(
        await ecr.delete_pull_through_cache_rule(ecr_repository_prefix="q"),
        m.DeletePullThroughCacheRuleResponse,
    )

    # paginators
    async for repository in ecr.iter_describe_repositories(max_results=2):
        assert_type(repository, m.Repository)
    async for page in ecr.describe_repositories_pages():
        assert_type(page, m.DescribeRepositoriesResponse)
    async for image_id in ecr.iter_list_images(repository_name="a"):
        assert_type(image_id, m.ImageIdentifier)
    async for detail in ecr.iter_describe_images(repository_name="a"):
        assert_type(detail, m.ImageDetail)
    async for rule in ecr.iter_describe_pull_through_cache_rules():
        assert_type(rule, m.PullThroughCacheRule)
    async for finding in ecr.iter_describe_image_scan_findings(repository_name="a", image_id=IMAGE):
        assert_type(finding, m.ImageScanFinding)
    async for result in ecr.iter_get_lifecycle_policy_preview(repository_name="a"):
        assert_type(result, m.LifecyclePolicyPreviewResult)

    # waiters
    await ecr.wait_for_image_scan_complete(repository_name="a", image_id=IMAGE, delay=1.0)
    await ecr.wait_for_lifecycle_policy_preview_complete(repository_name="a", max_attempts=3)
    await ecr.aclose()
    async with AsyncECR(region="us-east-1") as scoped:
        await scoped.describe_registry()
