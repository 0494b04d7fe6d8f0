"""The control plane: accounts' keys, registries, repositories, policies, PTC rules, images.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "access_keys",
        sa.Column("access_key_id", sa.String(128), primary_key=True),
        sa.Column("secret_access_key", sa.String(256), nullable=False),
        sa.Column("account_id", sa.String(12), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "registries",
        sa.Column("registry_id", sa.String(12), primary_key=True),
        sa.Column("policy_text", sa.Text),
        sa.Column("scanning_configuration", sa.Text),
        sa.Column("replication_configuration", sa.Text),
    )
    op.create_table(
        "repositories",
        sa.Column("registry_id", sa.String(12), primary_key=True),
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("image_tag_mutability", sa.String(32), nullable=False),
        sa.Column("tag_mutability_exclusion_filters", sa.Text),
        sa.Column("scan_on_push", sa.Boolean, nullable=False),
        sa.Column("encryption_type", sa.String(16), nullable=False),
        sa.Column("kms_key", sa.String(2048)),
        sa.Column("policy_text", sa.Text),
        sa.Column("lifecycle_policy_text", sa.Text),
        sa.Column("lifecycle_evaluated_at", sa.Float),
    )
    op.create_table(
        "repository_tags",
        sa.Column("registry_id", sa.String(12), primary_key=True),
        sa.Column("repository_name", sa.String(256), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )
    op.create_table(
        "pull_through_cache_rules",
        sa.Column("registry_id", sa.String(12), primary_key=True),
        sa.Column("ecr_repository_prefix", sa.String(64), primary_key=True),
        sa.Column("upstream_registry_url", sa.Text, nullable=False),
        sa.Column("upstream_registry", sa.String(64)),
        sa.Column("credential_arn", sa.String(612)),
        sa.Column("custom_role_arn", sa.String(2048)),
        sa.Column("upstream_repository_prefix", sa.String(64)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float),
    )
    op.create_table(
        "images",
        sa.Column("registry_id", sa.String(12), primary_key=True),
        sa.Column("repository_name", sa.String(256), primary_key=True),
        sa.Column("digest", sa.String(160), primary_key=True),
        sa.Column("manifest", sa.LargeBinary, nullable=False),
        sa.Column("media_type", sa.String(255), nullable=False),
        sa.Column("artifact_media_type", sa.String(255)),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("pushed_at", sa.Float, nullable=False),
        sa.Column("last_pulled_at", sa.Float),
        sa.Column("subject_digest", sa.String(160)),
    )
    op.create_index(
        "images_by_push_time", "images", ["registry_id", "repository_name", "pushed_at"]
    )
    op.create_table(
        "image_tags",
        sa.Column("registry_id", sa.String(12), primary_key=True),
        sa.Column("repository_name", sa.String(256), primary_key=True),
        sa.Column("tag", sa.String(300), primary_key=True),
        sa.Column("digest", sa.String(160), nullable=False),
        sa.Column("tagged_at", sa.Float, nullable=False),
    )
    op.create_index(
        "image_tags_by_digest", "image_tags", ["registry_id", "repository_name", "digest"]
    )
