"""The metadata tables, as SQLAlchemy Core objects used by the queries.

The schema itself is created and evolved only by the versioned migrations in
``migrations/versions``; this module must describe the state after the newest one.
Every table that belongs to an account carries ``registry_id`` in its primary key.
Timestamps are epoch seconds (floats), the unit of the ECR wire format.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)

metadata = MetaData()

access_keys = Table(
    "access_keys",
    metadata,
    Column("access_key_id", String(128), primary_key=True),
    Column("secret_access_key", String(256), nullable=False),
    Column("account_id", String(12), nullable=False),
    Column("created_at", Float, nullable=False),
)

server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

registries = Table(
    "registries",
    metadata,
    Column("registry_id", String(12), primary_key=True),
    Column("policy_text", Text),
    Column("scanning_configuration", Text),
    Column("replication_configuration", Text),
)

repositories = Table(
    "repositories",
    metadata,
    Column("registry_id", String(12), primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("image_tag_mutability", String(32), nullable=False),
    Column("tag_mutability_exclusion_filters", Text),
    Column("scan_on_push", Boolean, nullable=False),
    Column("encryption_type", String(16), nullable=False),
    Column("kms_key", String(2048)),
    Column("policy_text", Text),
    Column("lifecycle_policy_text", Text),
    Column("lifecycle_evaluated_at", Float),
)

# A repository's image count is the sum of its rows here, kept in step with every image
# insert and delete. Concurrent pushes add to different rows ("shards") so that they do not
# queue on one row lock (migration 0006).
repository_image_counts = Table(
    "repository_image_counts",
    metadata,
    Column("registry_id", String(12), primary_key=True),
    Column("repository_name", String(256), primary_key=True),
    Column("shard", SmallInteger, primary_key=True),
    Column("image_count", BigInteger, nullable=False),
)

repository_tags = Table(
    "repository_tags",
    metadata,
    Column("registry_id", String(12), primary_key=True),
    Column("repository_name", String(256), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", String(256), nullable=False),
)

pull_through_cache_rules = Table(
    "pull_through_cache_rules",
    metadata,
    Column("registry_id", String(12), primary_key=True),
    Column("ecr_repository_prefix", String(64), primary_key=True),
    Column("upstream_registry_url", Text, nullable=False),
    Column("upstream_registry", String(64)),
    Column("credential_arn", String(612)),
    Column("custom_role_arn", String(2048)),
    Column("upstream_repository_prefix", String(64)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float),
)

images = Table(
    "images",
    metadata,
    Column("registry_id", String(12), primary_key=True),
    Column("repository_name", String(256), primary_key=True),
    Column("digest", String(160), primary_key=True),
    Column("manifest", LargeBinary, nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("artifact_media_type", String(255)),
    Column("size_bytes", BigInteger, nullable=False),
    Column("pushed_at", Float, nullable=False),
    Column("last_pulled_at", Float),
    Column("subject_digest", String(160)),
    Column("artifact_type", String(255)),
)

image_tags = Table(
    "image_tags",
    metadata,
    Column("registry_id", String(12), primary_key=True),
    Column("repository_name", String(256), primary_key=True),
    Column("tag", String(300), primary_key=True),
    Column("digest", String(160), nullable=False),
    Column("tagged_at", Float, nullable=False),
)

blobs = Table(
    "blobs",
    metadata,
    Column("digest", String(160), primary_key=True),
    Column("size_bytes", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
)

# A blob is usable in a repository once it was uploaded to it, mounted into it, or pushed
# as part of one of its images: the OCI "repository link" and ECR's layer availability.
repository_layers = Table(
    "repository_layers",
    metadata,
    Column("registry_id", String(12), primary_key=True),
    Column("repository_name", String(256), primary_key=True),
    Column("digest", String(160), primary_key=True),
    Column("size_bytes", BigInteger, nullable=False),
    Column("media_type", String(255)),
    Column("created_at", Float, nullable=False),
)

uploads = Table(
    "uploads",
    metadata,
    Column("upload_id", String(36), primary_key=True),
    Column("registry_id", String(12), nullable=False),
    Column("repository_name", String(256), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("part_count", Integer, nullable=False),
    Column("last_part_size", BigInteger),
    Column("has_small_inner_part", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# What each image needs: its config and layer blobs, or (for an index) its child manifests.
image_references = Table(
    "image_references",
    metadata,
    Column("registry_id", String(12), primary_key=True),
    Column("repository_name", String(256), primary_key=True),
    Column("image_digest", String(160), primary_key=True),
    Column("referenced_digest", String(160), primary_key=True),
    Column("is_manifest", Boolean, nullable=False),
)

lifecycle_previews = Table(
    "lifecycle_previews",
    metadata,
    Column("registry_id", String(12), primary_key=True),
    Column("repository_name", String(256), primary_key=True),
    Column("policy_text", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("results", Text),
)
