"""Repositories and everything attached to one: settings, policies, resource tags.

The rules of ECR live here; the wire adapter only decodes requests and renders results.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from openecr.errors import (
    AccessDeniedError,
    InvalidParameterError,
    InvalidTagParameterError,
    LifecyclePolicyNotFoundError,
    LimitExceededError,
    RepositoryAlreadyExistsError,
    RepositoryNotEmptyError,
    RepositoryNotFoundError,
    RepositoryPolicyNotFoundError,
    TooManyTagsError,
)
from openecr.services.context import CallerContext
from openecr.services.iam_policy import validate_repository_policy
from openecr.services.lifecycle import parse_lifecycle_policy
from openecr.services.naming import parse_repository_arn
from openecr.services.pagination import (
    DEFAULT_PAGE_SIZE,
    decode_next_token,
    page_with_token,
)
from openecr.storage.metadata.records import RepositoryRecord
from openecr.storage.metadata.store import DuplicateKeyError, MetadataSession, MetadataStore

__all__ = [
    "MAX_REPOSITORIES_PER_REGISTRY",
    "MAX_TAGS_PER_RESOURCE",
    "RepositoryPage",
    "RepositoryService",
    "TagMutabilityFilter",
    "check_registry_access",
    "repository_not_found",
    "require_repository",
]

MAX_TAGS_PER_RESOURCE = 50
MAX_REPOSITORIES_PER_REGISTRY = 100_000
_MUTABILITY_WITH_EXCLUSIONS = {"IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION"}
# AWS's tag character rule (letters, digits, spaces and _ . : / = + - @), in Python's terms.
_TAG_CHARACTERS = re.compile(r"[\w\s.:/=+\-@]*")

TagMutabilityFilter = tuple[str, str]  # (filterType, filter)


@dataclass(frozen=True, slots=True)
class RepositoryPage:
    repositories: list[RepositoryRecord]
    next_token: str | None


def check_registry_access(caller: CallerContext, registry_id: str | None) -> str:
    """The registry a request may act on.

    Cross-account access in ECR is granted by repository and registry policies; openecr
    stores those policies but does not evaluate them yet, so it refuses every foreign
    registry instead of silently allowing it.
    """
    target = caller.registry(registry_id)
    if target != caller.account_id:
        raise AccessDeniedError(
            f"User: arn:aws:iam::{caller.account_id}:root is not authorized to access "
            f"registry {target}: cross-account access is not enabled on this server"
        )
    return target


async def require_repository(
    session: MetadataSession,
    registry_id: str,
    name: str,
    *,
    for_update: bool = False,
) -> RepositoryRecord:
    repository = await session.get_repository(registry_id, name, for_update=for_update)
    if repository is None:
        raise repository_not_found(registry_id, name)
    return repository


def repository_not_found(registry_id: str, name: str) -> RepositoryNotFoundError:
    return RepositoryNotFoundError(
        f"The repository with name '{name}' does not exist in the registry with id '{registry_id}'"
    )


def _validate_resource_tags(tags: Sequence[tuple[str, str]]) -> None:
    _validate_tag_keys([key for key, _ in tags])
    seen: set[str] = set()
    for key, value in tags:
        if len(value) > 256 or not _TAG_CHARACTERS.fullmatch(value):
            raise InvalidTagParameterError(f"Invalid tag value for key '{key}'")
        if key in seen:
            raise InvalidTagParameterError(f"Duplicate tag key: '{key}'")
        seen.add(key)


def _validate_tag_keys(keys: Sequence[str]) -> None:
    for key in keys:
        if not 1 <= len(key) <= 128 or not _TAG_CHARACTERS.fullmatch(key):
            raise InvalidTagParameterError(f"Invalid tag key: '{key}'")
        if key.lower().startswith("aws:"):
            raise InvalidTagParameterError(
                f"Invalid tag key: '{key}'. Tag keys starting with 'aws:' are reserved."
            )


def _mutability_filters_json(
    mutability: str, filters: Sequence[TagMutabilityFilter] | None
) -> str | None:
    """Checks that exclusion filters come exactly with the ``*_WITH_EXCLUSION`` settings."""
    if mutability in _MUTABILITY_WITH_EXCLUSIONS:
        if not filters:
            raise InvalidParameterError(
                "Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy "
                f"constraint: 'Exclusion filters are required when imageTagMutability is "
                f"{mutability}'"
            )
        return json.dumps([{"filterType": kind, "filter": value} for kind, value in filters])
    if filters:
        raise InvalidParameterError(
            "Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy "
            f"constraint: 'Exclusion filters are not allowed when imageTagMutability is "
            f"{mutability}'"
        )
    return None


def _as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else [value]


def _policy_would_lock_out(policy_text: str, caller: CallerContext) -> bool:
    """True when a Deny statement stops the caller's account from managing the policy.

    This is the safety check AWS skips on ``force``: a policy that denies
    ``ecr:SetRepositoryPolicy`` to everyone (or to the caller's own account) could never be
    replaced again. Conditional denies are not counted: they may not always apply.
    """
    target = "ecr:setrepositorypolicy"
    own = {"*", caller.account_id, f"arn:aws:iam::{caller.account_id}:root"}
    document = json.loads(policy_text)
    for statement in _as_list(document["Statement"]):
        if not isinstance(statement, dict) or statement.get("Effect") != "Deny":
            continue
        if "Condition" in statement:
            continue

        def matches(action: object) -> bool:
            pattern = re.escape(str(action).lower()).replace(r"\*", ".*").replace(r"\?", ".")
            return re.fullmatch(pattern, target) is not None

        if "Action" in statement:
            covers = any(matches(a) for a in _as_list(statement["Action"]))
        else:  # NotAction denies everything it does not list
            covers = not any(matches(a) for a in _as_list(statement.get("NotAction", [])))
        principal = statement.get("Principal")
        if principal == "*":
            everyone = True
        elif isinstance(principal, dict):
            everyone = any(str(p) in own for p in _as_list(principal.get("AWS", [])))
        else:
            everyone = False
        if covers and everyone:
            return True
    return False


class RepositoryService:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    # -- lifecycle of a repository --------------------------------------------------------

    async def create_repository(
        self,
        caller: CallerContext,
        *,
        registry_id: str | None,
        name: str,
        tags: Sequence[tuple[str, str]] = (),
        image_tag_mutability: str = "MUTABLE",
        mutability_exclusion_filters: Sequence[TagMutabilityFilter] | None = None,
        scan_on_push: bool = False,
        encryption_type: str = "AES256",
        kms_key: str | None = None,
    ) -> tuple[RepositoryRecord, list[tuple[str, str]]]:
        registry = check_registry_access(caller, registry_id)
        _validate_resource_tags(tags)
        if len(tags) > MAX_TAGS_PER_RESOURCE:
            raise TooManyTagsError(
                f"Too many tags: {len(tags)}. A repository can have at most "
                f"{MAX_TAGS_PER_RESOURCE} tags."
            )
        filters_json = _mutability_filters_json(image_tag_mutability, mutability_exclusion_filters)
        if encryption_type == "AES256" and kms_key is not None:
            raise InvalidParameterError(
                "Invalid parameter at 'encryptionConfiguration' failed to satisfy constraint: "
                "'kmsKey can only be specified when encryptionType is KMS or KMS_DSSE'"
            )
        record = RepositoryRecord(
            registry_id=registry,
            name=name,
            created_at=round(time.time(), 3),
            image_tag_mutability=image_tag_mutability,
            scan_on_push=scan_on_push,
            encryption_type=encryption_type,
            kms_key=kms_key,
            tag_mutability_exclusion_filters=filters_json,
        )
        async with self._store.write() as session:
            if await session.count_repositories(registry) >= MAX_REPOSITORIES_PER_REGISTRY:
                raise LimitExceededError(
                    "The operation did not succeed because it would have exceeded a service "
                    f"limit for your account: at most {MAX_REPOSITORIES_PER_REGISTRY} "
                    "repositories per registry."
                )
            try:
                await session.insert_repository(record)
            except DuplicateKeyError:
                raise RepositoryAlreadyExistsError(
                    f"The repository with name '{name}' already exists in the registry with "
                    f"id '{registry}'"
                ) from None
            await session.put_repository_tags(registry, name, tags)
        return record, list(tags)

    async def describe_repositories(
        self,
        caller: CallerContext,
        *,
        registry_id: str | None,
        names: Sequence[str] | None,
        next_token: str | None,
        max_results: int | None,
    ) -> RepositoryPage:
        registry = check_registry_access(caller, registry_id)
        if names:
            if next_token is not None or max_results is not None:
                raise InvalidParameterError(
                    "Invalid parameter at 'repositoryNames' failed to satisfy constraint: "
                    "'nextToken and maxResults cannot be used with repositoryNames'"
                )
            async with self._store.read() as session:
                found = await session.get_repositories(registry, list(dict.fromkeys(names)))
            ordered: list[RepositoryRecord] = []
            for name in dict.fromkeys(names):
                if name not in found:
                    raise RepositoryNotFoundError(
                        f"The repository with name '{name}' does not exist in the registry "
                        f"with id '{registry}'"
                    )
                ordered.append(found[name])
            return RepositoryPage(ordered, None)

        limit = max_results or DEFAULT_PAGE_SIZE
        after = decode_next_token("repositories", next_token)
        async with self._store.read() as session:
            page = await session.list_repositories(registry, after=after, limit=limit + 1)
        page, token = page_with_token(page, limit, "repositories", lambda r: r.name)
        return RepositoryPage(page, token)

    async def delete_repository(
        self, caller: CallerContext, *, registry_id: str | None, name: str, force: bool
    ) -> RepositoryRecord:
        registry = check_registry_access(caller, registry_id)
        async with self._store.write() as session:
            repository = await require_repository(session, registry, name, for_update=True)
            if not force and await session.count_images(registry, name) > 0:
                raise RepositoryNotEmptyError(
                    f"The repository with name '{name}' in registry with id '{registry}' "
                    "cannot be deleted because it still contains images"
                )
            await session.delete_repository(registry, name)
        return repository

    async def ensure_repository(self, registry_id: str, name: str) -> None:
        """Creates the repository with default settings unless it exists (push-to-create)."""
        record = RepositoryRecord(
            registry_id=registry_id,
            name=name,
            created_at=round(time.time(), 3),
            image_tag_mutability="MUTABLE",
            scan_on_push=False,
            encryption_type="AES256",
        )
        async with self._store.write() as session:
            if await session.get_repository(registry_id, name) is None:
                await session.insert_repository(record)

    async def list_names(self, registry_id: str, *, after: str | None, limit: int) -> list[str]:
        """Repository names in lexical order after ``after`` (the /v2/_catalog listing)."""
        async with self._store.read() as session:
            page = await session.list_repositories(registry_id, after=after, limit=limit)
        return [repository.name for repository in page]

    async def get_repository(
        self, caller: CallerContext, *, registry_id: str | None, name: str
    ) -> RepositoryRecord:
        registry = check_registry_access(caller, registry_id)
        async with self._store.read() as session:
            return await require_repository(session, registry, name)

    # -- settings -------------------------------------------------------------------------

    async def put_image_tag_mutability(
        self,
        caller: CallerContext,
        *,
        registry_id: str | None,
        name: str,
        image_tag_mutability: str,
        mutability_exclusion_filters: Sequence[TagMutabilityFilter] | None,
    ) -> RepositoryRecord:
        registry = check_registry_access(caller, registry_id)
        filters_json = _mutability_filters_json(image_tag_mutability, mutability_exclusion_filters)
        async with self._store.write() as session:
            await require_repository(session, registry, name, for_update=True)
            await session.update_repository(
                registry,
                name,
                image_tag_mutability=image_tag_mutability,
                tag_mutability_exclusion_filters=filters_json,
            )
            return await require_repository(session, registry, name)

    async def put_image_scanning_configuration(
        self, caller: CallerContext, *, registry_id: str | None, name: str, scan_on_push: bool
    ) -> RepositoryRecord:
        registry = check_registry_access(caller, registry_id)
        async with self._store.write() as session:
            await require_repository(session, registry, name, for_update=True)
            await session.update_repository(registry, name, scan_on_push=scan_on_push)
            return await require_repository(session, registry, name)

    # -- repository policy ----------------------------------------------------------------

    async def set_repository_policy(
        self,
        caller: CallerContext,
        *,
        registry_id: str | None,
        name: str,
        policy_text: str,
        force: bool,
    ) -> str:
        registry = check_registry_access(caller, registry_id)
        validate_repository_policy(policy_text)
        if not force and _policy_would_lock_out(policy_text, caller):
            raise InvalidParameterError(
                "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'The policy "
                "would prevent you from setting a repository policy in the future; use force "
                "to set it anyway'"
            )
        async with self._store.write() as session:
            await require_repository(session, registry, name, for_update=True)
            await session.update_repository(registry, name, policy_text=policy_text)
        return policy_text

    async def get_repository_policy(
        self, caller: CallerContext, *, registry_id: str | None, name: str
    ) -> str:
        registry = check_registry_access(caller, registry_id)
        async with self._store.read() as session:
            repository = await require_repository(session, registry, name)
        if repository.policy_text is None:
            raise self._policy_not_found(registry, name)
        return repository.policy_text

    async def delete_repository_policy(
        self, caller: CallerContext, *, registry_id: str | None, name: str
    ) -> str:
        registry = check_registry_access(caller, registry_id)
        async with self._store.write() as session:
            repository = await require_repository(session, registry, name, for_update=True)
            if repository.policy_text is None:
                raise self._policy_not_found(registry, name)
            await session.update_repository(registry, name, policy_text=None)
        return repository.policy_text

    @staticmethod
    def _policy_not_found(registry: str, name: str) -> RepositoryPolicyNotFoundError:
        return RepositoryPolicyNotFoundError(
            f"Repository policy does not exist for the repository with name '{name}' in the "
            f"registry with id '{registry}'"
        )

    # -- lifecycle policy -----------------------------------------------------------------

    async def put_lifecycle_policy(
        self, caller: CallerContext, *, registry_id: str | None, name: str, policy_text: str
    ) -> str:
        registry = check_registry_access(caller, registry_id)
        parse_lifecycle_policy(policy_text)
        async with self._store.write() as session:
            await require_repository(session, registry, name, for_update=True)
            await session.update_repository(
                registry, name, lifecycle_policy_text=policy_text, lifecycle_evaluated_at=None
            )
        return policy_text

    async def get_lifecycle_policy(
        self, caller: CallerContext, *, registry_id: str | None, name: str
    ) -> RepositoryRecord:
        registry = check_registry_access(caller, registry_id)
        async with self._store.read() as session:
            repository = await require_repository(session, registry, name)
        if repository.lifecycle_policy_text is None:
            raise self._lifecycle_not_found(registry, name)
        return repository

    async def delete_lifecycle_policy(
        self, caller: CallerContext, *, registry_id: str | None, name: str
    ) -> RepositoryRecord:
        registry = check_registry_access(caller, registry_id)
        async with self._store.write() as session:
            repository = await require_repository(session, registry, name, for_update=True)
            if repository.lifecycle_policy_text is None:
                raise self._lifecycle_not_found(registry, name)
            await session.update_repository(
                registry, name, lifecycle_policy_text=None, lifecycle_evaluated_at=None
            )
        return repository

    @staticmethod
    def _lifecycle_not_found(registry: str, name: str) -> LifecyclePolicyNotFoundError:
        return LifecyclePolicyNotFoundError(
            f"Lifecycle policy does not exist for the repository with name '{name}' in the "
            f"registry with id '{registry}'"
        )

    # -- resource tags --------------------------------------------------------------------

    async def _tagged_repository(
        self, caller: CallerContext, session: MetadataSession, resource_arn: str
    ) -> RepositoryRecord:
        arn = parse_repository_arn(resource_arn)
        registry = check_registry_access(caller, arn.registry_id)
        return await require_repository(session, registry, arn.repository_name, for_update=True)

    async def tag_resource(
        self, caller: CallerContext, *, resource_arn: str, tags: Sequence[tuple[str, str]]
    ) -> None:
        _validate_resource_tags(tags)
        async with self._store.write() as session:
            repository = await self._tagged_repository(caller, session, resource_arn)
            existing = dict(
                await session.list_repository_tags(repository.registry_id, repository.name)
            )
            merged = existing | dict(tags)
            if len(merged) > MAX_TAGS_PER_RESOURCE:
                raise TooManyTagsError(
                    f"Too many tags: the repository would have {len(merged)} tags; the limit "
                    f"is {MAX_TAGS_PER_RESOURCE}."
                )
            await session.put_repository_tags(repository.registry_id, repository.name, tags)

    async def untag_resource(
        self, caller: CallerContext, *, resource_arn: str, tag_keys: Sequence[str]
    ) -> None:
        _validate_tag_keys(tag_keys)
        async with self._store.write() as session:
            repository = await self._tagged_repository(caller, session, resource_arn)
            await session.delete_repository_tags(
                repository.registry_id, repository.name, list(tag_keys)
            )

    async def list_tags_for_resource(
        self, caller: CallerContext, *, resource_arn: str
    ) -> list[tuple[str, str]]:
        arn = parse_repository_arn(resource_arn)
        registry = check_registry_access(caller, arn.registry_id)
        async with self._store.read() as session:
            await require_repository(session, registry, arn.repository_name)
            return await session.list_repository_tags(registry, arn.repository_name)
