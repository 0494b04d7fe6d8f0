"""ECR operations on repositories: create, describe, delete, settings, policies, tags."""

from __future__ import annotations

import json

from openecr import models as m
from openecr.ecr_api._operations import operation
from openecr.server.services import Services
from openecr.services.context import CallerContext
from openecr.services.naming import registry_host, repository_arn
from openecr.storage.metadata.records import RepositoryRecord

__all__ = ["render_repository"]


def render_repository(
    record: RepositoryRecord, caller: CallerContext, services: Services
) -> m.Repository:
    filters = None
    if record.tag_mutability_exclusion_filters:
        filters = [
            m.ImageTagMutabilityExclusionFilter(filter_type=f["filterType"], filter=f["filter"])
            for f in json.loads(record.tag_mutability_exclusion_filters)
        ]
    return m.Repository(
        repository_arn=repository_arn(caller.region, record.registry_id, record.name),
        registry_id=record.registry_id,
        repository_name=record.name,
        repository_uri=f"{registry_host(services.public_url)}/{record.name}",
        created_at=record.created_at,
        image_tag_mutability=record.image_tag_mutability,
        image_tag_mutability_exclusion_filters=filters,
        image_scanning_configuration=m.ImageScanningConfiguration(scan_on_push=record.scan_on_push),
        encryption_configuration=m.EncryptionConfiguration(
            encryption_type=record.encryption_type, kms_key=record.kms_key
        ),
    )


def _exclusion_filters(
    filters: list[m.ImageTagMutabilityExclusionFilter] | None,
) -> list[tuple[str, str]] | None:
    if filters is None:
        return None
    return [(f.filter_type or "", f.filter or "") for f in filters]


@operation("CreateRepository")
async def create_repository(
    services: Services, caller: CallerContext, request: m.CreateRepositoryRequest
) -> m.CreateRepositoryResponse:
    scanning = request.image_scanning_configuration
    encryption = request.encryption_configuration
    record, _ = await services.repositories.create_repository(
        caller,
        registry_id=request.registry_id,
        name=request.repository_name or "",
        tags=[(tag.key or "", tag.value or "") for tag in request.tags or []],
        image_tag_mutability=request.image_tag_mutability or "MUTABLE",
        mutability_exclusion_filters=_exclusion_filters(
            request.image_tag_mutability_exclusion_filters
        ),
        scan_on_push=bool(scanning and scanning.scan_on_push),
        encryption_type=(encryption.encryption_type if encryption else None) or "AES256",
        kms_key=encryption.kms_key if encryption else None,
    )
    return m.CreateRepositoryResponse(repository=render_repository(record, caller, services))


@operation("DescribeRepositories")
async def describe_repositories(
    services: Services, caller: CallerContext, request: m.DescribeRepositoriesRequest
) -> m.DescribeRepositoriesResponse:
    page = await services.repositories.describe_repositories(
        caller,
        registry_id=request.registry_id,
        names=request.repository_names,
        next_token=request.next_token,
        max_results=request.max_results,
    )
    return m.DescribeRepositoriesResponse(
        repositories=[render_repository(r, caller, services) for r in page.repositories],
        next_token=page.next_token,
    )


@operation("DeleteRepository")
async def delete_repository(
    services: Services, caller: CallerContext, request: m.DeleteRepositoryRequest
) -> m.DeleteRepositoryResponse:
    record = await services.repositories.delete_repository(
        caller,
        registry_id=request.registry_id,
        name=request.repository_name or "",
        force=bool(request.force),
    )
    return m.DeleteRepositoryResponse(repository=render_repository(record, caller, services))


@operation("PutImageTagMutability")
async def put_image_tag_mutability(
    services: Services, caller: CallerContext, request: m.PutImageTagMutabilityRequest
) -> m.PutImageTagMutabilityResponse:
    record = await services.repositories.put_image_tag_mutability(
        caller,
        registry_id=request.registry_id,
        name=request.repository_name or "",
        image_tag_mutability=request.image_tag_mutability or "",
        mutability_exclusion_filters=_exclusion_filters(
            request.image_tag_mutability_exclusion_filters
        ),
    )
    rendered = render_repository(record, caller, services)
    return m.PutImageTagMutabilityResponse(
        registry_id=record.registry_id,
        repository_name=record.name,
        image_tag_mutability=record.image_tag_mutability,
        image_tag_mutability_exclusion_filters=rendered.image_tag_mutability_exclusion_filters,
    )


@operation("PutImageScanningConfiguration")
async def put_image_scanning_configuration(
    services: Services, caller: CallerContext, request: m.PutImageScanningConfigurationRequest
) -> m.PutImageScanningConfigurationResponse:
    configuration = request.image_scanning_configuration
    record = await services.repositories.put_image_scanning_configuration(
        caller,
        registry_id=request.registry_id,
        name=request.repository_name or "",
        scan_on_push=bool(configuration and configuration.scan_on_push),
    )
    return m.PutImageScanningConfigurationResponse(
        registry_id=record.registry_id,
        repository_name=record.name,
        image_scanning_configuration=m.ImageScanningConfiguration(scan_on_push=record.scan_on_push),
    )


@operation("SetRepositoryPolicy")
async def set_repository_policy(
    services: Services, caller: CallerContext, request: m.SetRepositoryPolicyRequest
) -> m.SetRepositoryPolicyResponse:
    registry_id = caller.registry(request.registry_id)
    policy = await services.repositories.set_repository_policy(
        caller,
        registry_id=request.registry_id,
        name=request.repository_name or "",
        policy_text=request.policy_text or "",
        force=bool(request.force),
    )
    return m.SetRepositoryPolicyResponse(
        registry_id=registry_id, repository_name=request.repository_name, policy_text=policy
    )


@operation("GetRepositoryPolicy")
async def get_repository_policy(
    services: Services, caller: CallerContext, request: m.GetRepositoryPolicyRequest
) -> m.GetRepositoryPolicyResponse:
    policy = await services.repositories.get_repository_policy(
        caller, registry_id=request.registry_id, name=request.repository_name or ""
    )
    return m.GetRepositoryPolicyResponse(
        registry_id=caller.registry(request.registry_id),
        repository_name=request.repository_name,
        policy_text=policy,
    )


@operation("DeleteRepositoryPolicy")
async def delete_repository_policy(
    services: Services, caller: CallerContext, request: m.DeleteRepositoryPolicyRequest
) -> m.DeleteRepositoryPolicyResponse:
    policy = await services.repositories.delete_repository_policy(
        caller, registry_id=request.registry_id, name=request.repository_name or ""
    )
    return m.DeleteRepositoryPolicyResponse(
        registry_id=caller.registry(request.registry_id),
        repository_name=request.repository_name,
        policy_text=policy,
    )


@operation("PutLifecyclePolicy")
async def put_lifecycle_policy(
    services: Services, caller: CallerContext, request: m.PutLifecyclePolicyRequest
) -> m.PutLifecyclePolicyResponse:
    policy = await services.repositories.put_lifecycle_policy(
        caller,
        registry_id=request.registry_id,
        name=request.repository_name or "",
        policy_text=request.lifecycle_policy_text or "",
    )
    return m.PutLifecyclePolicyResponse(
        registry_id=caller.registry(request.registry_id),
        repository_name=request.repository_name,
        lifecycle_policy_text=policy,
    )


@operation("GetLifecyclePolicy")
async def get_lifecycle_policy(
    services: Services, caller: CallerContext, request: m.GetLifecyclePolicyRequest
) -> m.GetLifecyclePolicyResponse:
    record = await services.repositories.get_lifecycle_policy(
        caller, registry_id=request.registry_id, name=request.repository_name or ""
    )
    return m.GetLifecyclePolicyResponse(
        registry_id=record.registry_id,
        repository_name=record.name,
        lifecycle_policy_text=record.lifecycle_policy_text,
        last_evaluated_at=record.lifecycle_evaluated_at,
    )


@operation("DeleteLifecyclePolicy")
async def delete_lifecycle_policy(
    services: Services, caller: CallerContext, request: m.DeleteLifecyclePolicyRequest
) -> m.DeleteLifecyclePolicyResponse:
    record = await services.repositories.delete_lifecycle_policy(
        caller, registry_id=request.registry_id, name=request.repository_name or ""
    )
    return m.DeleteLifecyclePolicyResponse(
        registry_id=record.registry_id,
        repository_name=record.name,
        lifecycle_policy_text=record.lifecycle_policy_text,
        last_evaluated_at=record.lifecycle_evaluated_at,
    )


@operation("TagResource")
async def tag_resource(
    services: Services, caller: CallerContext, request: m.TagResourceRequest
) -> m.TagResourceResponse:
    await services.repositories.tag_resource(
        caller,
        resource_arn=request.resource_arn or "",
        tags=[(tag.key or "", tag.value or "") for tag in request.tags or []],
    )
    return m.TagResourceResponse()


@operation("UntagResource")
async def untag_resource(
    services: Services, caller: CallerContext, request: m.UntagResourceRequest
) -> m.UntagResourceResponse:
    await services.repositories.untag_resource(
        caller, resource_arn=request.resource_arn or "", tag_keys=request.tag_keys or []
    )
    return m.UntagResourceResponse()


@operation("ListTagsForResource")
async def list_tags_for_resource(
    services: Services, caller: CallerContext, request: m.ListTagsForResourceRequest
) -> m.ListTagsForResourceResponse:
    tags = await services.repositories.list_tags_for_resource(
        caller, resource_arn=request.resource_arn or ""
    )
    return m.ListTagsForResourceResponse(tags=[m.Tag(key=k, value=v) for k, v in tags])
