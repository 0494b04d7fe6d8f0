"""Pull-through cache rules: which repository prefix mirrors which upstream registry.

The rules are validated and stored here; the engine that fetches from upstream on a pull
comes later.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from openecr.errors import (
    InvalidParameterError,
    LimitExceededError,
    PullThroughCacheRuleAlreadyExistsError,
    PullThroughCacheRuleNotFoundError,
    UnsupportedUpstreamRegistryError,
)
from openecr.services.context import CallerContext
from openecr.services.pagination import (
    DEFAULT_PAGE_SIZE,
    decode_next_token,
    page_with_token,
)
from openecr.services.repositories import check_registry_access
from openecr.storage.metadata.records import PullThroughCacheRuleRecord
from openecr.storage.metadata.store import DuplicateKeyError, MetadataStore

__all__ = ["MAX_RULES_PER_REGISTRY", "PullThroughCacheRulePage", "PullThroughCacheService"]

MAX_RULES_PER_REGISTRY = 50

# upstreamRegistry value -> (pattern of its upstreamRegistryUrl, needs credentialArn)
_UPSTREAMS: dict[str, tuple[re.Pattern[str], bool]] = {
    "ecr-public": (re.compile(r"public\.ecr\.aws"), False),
    "k8s": (re.compile(r"registry\.k8s\.io"), False),
    "quay": (re.compile(r"quay\.io"), False),
    "docker-hub": (re.compile(r"registry-1\.docker\.io"), True),
    "github-container-registry": (re.compile(r"ghcr\.io"), True),
    "gitlab-container-registry": (re.compile(r"registry\.gitlab\.com"), True),
    "azure-container-registry": (re.compile(r"[a-z0-9-]+\.azurecr\.io"), True),
    "chainguard": (re.compile(r"cgr\.dev"), True),
    "ecr": (re.compile(r"[0-9]{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"), False),
}


@dataclass(frozen=True, slots=True)
class PullThroughCacheRulePage:
    rules: list[PullThroughCacheRuleRecord]
    next_token: str | None


def _normalise_prefix(prefix: str) -> str:
    """``ecr-public/`` and ``ecr-public`` name the same rule: a ``/`` is always implied."""
    return prefix if prefix == "ROOT" else prefix.rstrip("/")


def _host_of(url: str) -> str:
    return re.sub(r"^[a-z]+://", "", url).rstrip("/")


def _identify_upstream(url: str, declared: str | None) -> str:
    host = _host_of(url)
    for name, (pattern, _) in _UPSTREAMS.items():
        if pattern.fullmatch(host) and declared in (None, name):
            return name
    raise UnsupportedUpstreamRegistryError(
        f"The upstream registry URL '{url}' is not supported"
        + (f" for upstreamRegistry '{declared}'" if declared else "")
    )


def _rule_not_found(registry_id: str, prefix: str) -> PullThroughCacheRuleNotFoundError:
    return PullThroughCacheRuleNotFoundError(
        f"The pull through cache rule with prefix '{prefix}' does not exist in the registry "
        f"with id '{registry_id}'"
    )


class PullThroughCacheService:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    async def create_rule(
        self,
        caller: CallerContext,
        *,
        registry_id: str | None,
        ecr_repository_prefix: str,
        upstream_registry_url: str,
        upstream_registry: str | None,
        credential_arn: str | None,
        custom_role_arn: str | None,
        upstream_repository_prefix: str | None,
    ) -> PullThroughCacheRuleRecord:
        registry = check_registry_access(caller, registry_id)
        upstream = _identify_upstream(upstream_registry_url, upstream_registry)
        needs_credentials = _UPSTREAMS[upstream][1]
        if needs_credentials and credential_arn is None:
            raise InvalidParameterError(
                "Invalid parameter at 'credentialArn' failed to satisfy constraint: "
                f"'A credentialArn is required for upstream registry {upstream}'"
            )
        if upstream == "ecr" and custom_role_arn is None:
            raise InvalidParameterError(
                "Invalid parameter at 'customRoleArn' failed to satisfy constraint: "
                "'A customRoleArn is required for an ECR upstream registry'"
            )
        if upstream_repository_prefix is not None and upstream != "ecr":
            raise InvalidParameterError(
                "Invalid parameter at 'upstreamRepositoryPrefix' failed to satisfy "
                "constraint: 'upstreamRepositoryPrefix is only supported for ECR upstreams'"
            )
        rule = PullThroughCacheRuleRecord(
            registry_id=registry,
            ecr_repository_prefix=_normalise_prefix(ecr_repository_prefix),
            upstream_registry_url=upstream_registry_url,
            created_at=round(time.time(), 3),
            upstream_registry=upstream,
            credential_arn=credential_arn,
            custom_role_arn=custom_role_arn,
            upstream_repository_prefix=upstream_repository_prefix,
        )
        async with self._store.write() as session:
            if await session.count_pull_through_cache_rules(registry) >= MAX_RULES_PER_REGISTRY:
                raise LimitExceededError(
                    "The operation did not succeed because it would have exceeded a service "
                    f"limit for your account: at most {MAX_RULES_PER_REGISTRY} pull through "
                    "cache rules per registry."
                )
            try:
                await session.insert_pull_through_cache_rule(rule)
            except DuplicateKeyError:
                raise PullThroughCacheRuleAlreadyExistsError(
                    f"A pull through cache rule with prefix '{rule.ecr_repository_prefix}' "
                    f"already exists in the registry with id '{registry}'"
                ) from None
        return rule

    async def describe_rules(
        self,
        caller: CallerContext,
        *,
        registry_id: str | None,
        prefixes: Sequence[str] | None,
        next_token: str | None,
        max_results: int | None,
    ) -> PullThroughCacheRulePage:
        registry = check_registry_access(caller, registry_id)
        if prefixes:
            wanted = list(dict.fromkeys(_normalise_prefix(p) for p in prefixes))
            async with self._store.read() as session:
                found = await session.get_pull_through_cache_rules(registry, wanted)
            for prefix in wanted:
                if prefix not in found:
                    raise _rule_not_found(registry, prefix)
            return PullThroughCacheRulePage([found[p] for p in wanted], None)

        limit = max_results or DEFAULT_PAGE_SIZE
        after = decode_next_token("pull-through-cache-rules", next_token)
        async with self._store.read() as session:
            page = await session.list_pull_through_cache_rules(
                registry, after=after, limit=limit + 1
            )
        page, token = page_with_token(
            page, limit, "pull-through-cache-rules", lambda rule: rule.ecr_repository_prefix
        )
        return PullThroughCacheRulePage(page, token)

    async def delete_rule(
        self, caller: CallerContext, *, registry_id: str | None, ecr_repository_prefix: str
    ) -> PullThroughCacheRuleRecord:
        registry = check_registry_access(caller, registry_id)
        prefix = _normalise_prefix(ecr_repository_prefix)
        async with self._store.write() as session:
            found = await session.get_pull_through_cache_rules(registry, [prefix])
            if prefix not in found:
                raise _rule_not_found(registry, prefix)
            await session.delete_pull_through_cache_rule(registry, prefix)
        return found[prefix]
