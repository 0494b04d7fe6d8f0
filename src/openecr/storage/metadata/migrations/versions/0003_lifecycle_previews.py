"""Lifecycle policy previews: one per repository, with their results.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "lifecycle_previews",
        sa.Column("registry_id", sa.String(12), primary_key=True),
        sa.Column("repository_name", sa.String(256), primary_key=True),
        sa.Column("policy_text", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("results", sa.Text),
    )
