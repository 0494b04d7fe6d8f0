"""Plain records the metadata store reads and writes; services build wire shapes from them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AccessKeyRecord",
    "PullThroughCacheRuleRecord",
    "RegistryRecord",
    "RepositoryRecord",
]


@dataclass(frozen=True, slots=True)
class AccessKeyRecord:
    access_key_id: str
    secret_access_key: str
    account_id: str


@dataclass(frozen=True, slots=True)
class RegistryRecord:
    registry_id: str
    policy_text: str | None = None
    scanning_configuration: str | None = None
    replication_configuration: str | None = None


@dataclass(frozen=True, slots=True)
class RepositoryRecord:
    registry_id: str
    name: str
    created_at: float
    image_tag_mutability: str
    scan_on_push: bool
    encryption_type: str
    kms_key: str | None = None
    tag_mutability_exclusion_filters: str | None = None
    policy_text: str | None = None
    lifecycle_policy_text: str | None = None
    lifecycle_evaluated_at: float | None = None


@dataclass(frozen=True, slots=True)
class PullThroughCacheRuleRecord:
    registry_id: str
    ecr_repository_prefix: str
    upstream_registry_url: str
    created_at: float
    upstream_registry: str | None = None
    credential_arn: str | None = None
    custom_role_arn: str | None = None
    upstream_repository_prefix: str | None = None
    updated_at: float | None = None
