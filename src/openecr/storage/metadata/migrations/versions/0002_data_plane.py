"""The data plane: blobs, their links into repositories, uploads, image references.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("digest", sa.String(160), primary_key=True),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "repository_layers",
        sa.Column("registry_id", sa.String(12), primary_key=True),
        sa.Column("repository_name", sa.String(256), primary_key=True),
        sa.Column("digest", sa.String(160), primary_key=True),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("media_type", sa.String(255)),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("repository_layers_by_digest", "repository_layers", ["digest"])
    op.create_table(
        "uploads",
        sa.Column("upload_id", sa.String(36), primary_key=True),
        sa.Column("registry_id", sa.String(12), nullable=False),
        sa.Column("repository_name", sa.String(256), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("part_count", sa.Integer, nullable=False),
        sa.Column("last_part_size", sa.BigInteger),
        sa.Column("has_small_inner_part", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "image_references",
        sa.Column("registry_id", sa.String(12), primary_key=True),
        sa.Column("repository_name", sa.String(256), primary_key=True),
        sa.Column("image_digest", sa.String(160), primary_key=True),
        sa.Column("referenced_digest", sa.String(160), primary_key=True),
        sa.Column("is_manifest", sa.Boolean, nullable=False),
    )
    op.create_index(
        "image_references_by_target",
        "image_references",
        ["registry_id", "repository_name", "referenced_digest"],
    )
    op.create_index("image_references_by_blob", "image_references", ["referenced_digest"])
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("artifact_type", sa.String(255)))
    op.create_index(
        "images_by_subject", "images", ["registry_id", "repository_name", "subject_digest"]
    )
