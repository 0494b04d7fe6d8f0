"""ECR operations on pull-through cache rules."""

from __future__ import annotations

from typing import TypeVar

import msgspec

from openecr import models as m
from openecr.ecr_api._operations import operation
from openecr.server.services import Services
from openecr.services.context import CallerContext
from openecr.storage.metadata.records import PullThroughCacheRuleRecord

__all__: list[str] = []


ShapeT = TypeVar("ShapeT", bound=msgspec.Struct)


def _render(rule: PullThroughCacheRuleRecord, shape: type[ShapeT]) -> ShapeT:
    """The rule as ``shape``: each operation returns its own subset of the rule's fields
    (DeletePullThroughCacheRule, for one, has no upstreamRegistry)."""
    fields = {name: getattr(rule, name) for name in shape.__struct_fields__ if hasattr(rule, name)}
    return shape(**fields)


@operation("CreatePullThroughCacheRule")
async def create_pull_through_cache_rule(
    services: Services, caller: CallerContext, request: m.CreatePullThroughCacheRuleRequest
) -> m.CreatePullThroughCacheRuleResponse:
    rule = await services.pull_through_cache.create_rule(
        caller,
        registry_id=request.registry_id,
        ecr_repository_prefix=request.ecr_repository_prefix or "",
        upstream_registry_url=request.upstream_registry_url or "",
        upstream_registry=request.upstream_registry,
        credential_arn=request.credential_arn,
        custom_role_arn=request.custom_role_arn,
        upstream_repository_prefix=request.upstream_repository_prefix,
    )
    return _render(rule, m.CreatePullThroughCacheRuleResponse)


@operation("DescribePullThroughCacheRules")
async def describe_pull_through_cache_rules(
    services: Services, caller: CallerContext, request: m.DescribePullThroughCacheRulesRequest
) -> m.DescribePullThroughCacheRulesResponse:
    page = await services.pull_through_cache.describe_rules(
        caller,
        registry_id=request.registry_id,
        prefixes=request.ecr_repository_prefixes,
        next_token=request.next_token,
        max_results=request.max_results,
    )
    return m.DescribePullThroughCacheRulesResponse(
        pull_through_cache_rules=[_render(rule, m.PullThroughCacheRule) for rule in page.rules],
        next_token=page.next_token,
    )


@operation("DeletePullThroughCacheRule")
async def delete_pull_through_cache_rule(
    services: Services, caller: CallerContext, request: m.DeletePullThroughCacheRuleRequest
) -> m.DeletePullThroughCacheRuleResponse:
    rule = await services.pull_through_cache.delete_rule(
        caller,
        registry_id=request.registry_id,
        ecr_repository_prefix=request.ecr_repository_prefix or "",
    )
    return _render(rule, m.DeletePullThroughCacheRuleResponse)
