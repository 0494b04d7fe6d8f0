"""ECR operations on pull-through cache rules."""

from __future__ import annotations

from openecr import models as m
from openecr.ecr_api._operations import operation
from openecr.server.services import Services
from openecr.services.context import CallerContext
from openecr.storage.metadata.records import PullThroughCacheRuleRecord

__all__: list[str] = []


def _render(rule: PullThroughCacheRuleRecord) -> m.PullThroughCacheRule:
    return m.PullThroughCacheRule(
        ecr_repository_prefix=rule.ecr_repository_prefix,
        upstream_registry_url=rule.upstream_registry_url,
        created_at=rule.created_at,
        registry_id=rule.registry_id,
        credential_arn=rule.credential_arn,
        custom_role_arn=rule.custom_role_arn,
        upstream_repository_prefix=rule.upstream_repository_prefix,
        upstream_registry=rule.upstream_registry,
        updated_at=rule.updated_at,
    )


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
    return m.CreatePullThroughCacheRuleResponse(
        ecr_repository_prefix=rule.ecr_repository_prefix,
        upstream_registry_url=rule.upstream_registry_url,
        created_at=rule.created_at,
        registry_id=rule.registry_id,
        upstream_registry=rule.upstream_registry,
        credential_arn=rule.credential_arn,
        custom_role_arn=rule.custom_role_arn,
        upstream_repository_prefix=rule.upstream_repository_prefix,
    )


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
        pull_through_cache_rules=[_render(rule) for rule in page.rules],
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
    return m.DeletePullThroughCacheRuleResponse(
        ecr_repository_prefix=rule.ecr_repository_prefix,
        upstream_registry_url=rule.upstream_registry_url,
        created_at=rule.created_at,
        registry_id=rule.registry_id,
        credential_arn=rule.credential_arn,
        custom_role_arn=rule.custom_role_arn,
        upstream_repository_prefix=rule.upstream_repository_prefix,
    )
