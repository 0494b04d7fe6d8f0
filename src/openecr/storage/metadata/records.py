"""Plain records the metadata store reads and writes; services build wire shapes from them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AccessKeyRecord",
    "ImageRecord",
    "ImageSummary",
    "LayerRecord",
    "LifecyclePreviewRecord",
    "PullThroughCacheRuleRecord",
    "RegistryRecord",
    "RepositoryRecord",
    "UploadRecord",
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
class PushTarget:
    """What a push checks before it writes, read in one statement (``push_target``)."""

    repository: RepositoryRecord
    image_count: int  # the committed count; see ``exact_image_count``
    image_exists: bool  # the pushed manifest is already an image of the repository
    tag_digest: str | None  # the image the pushed tag names now, if any
    tags_of_image: int  # how many tags the pushed manifest's image has


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


@dataclass(frozen=True, slots=True)
class ImageSummary:
    """An image without its manifest bytes: what listings and descriptions need."""

    registry_id: str
    repository_name: str
    digest: str
    media_type: str
    artifact_media_type: str | None
    size_bytes: int
    pushed_at: float
    last_pulled_at: float | None = None
    subject_digest: str | None = None
    artifact_type: str | None = None


@dataclass(frozen=True, slots=True)
class ImageRecord:
    registry_id: str
    repository_name: str
    digest: str
    manifest: bytes
    media_type: str
    artifact_media_type: str | None
    size_bytes: int
    pushed_at: float
    last_pulled_at: float | None = None
    subject_digest: str | None = None
    artifact_type: str | None = None


@dataclass(frozen=True, slots=True)
class LayerRecord:
    """A blob linked into a repository."""

    registry_id: str
    repository_name: str
    digest: str
    size_bytes: int
    media_type: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class UploadRecord:
    upload_id: str
    registry_id: str
    repository_name: str
    size_bytes: int
    part_count: int
    last_part_size: int | None
    has_small_inner_part: bool
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class LifecyclePreviewRecord:
    registry_id: str
    repository_name: str
    policy_text: str
    status: str
    started_at: float
    results: str | None = None  # JSON list of preview results once COMPLETE
