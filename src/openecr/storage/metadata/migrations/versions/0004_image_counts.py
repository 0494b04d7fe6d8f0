"""Each repository counts its images, so a push checks the quota without counting rows.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("repositories") as batch:
        batch.add_column(sa.Column("image_count", sa.Integer, nullable=False, server_default="0"))
    op.execute(
        "UPDATE repositories SET image_count = (SELECT count(*) FROM images "
        "WHERE images.registry_id = repositories.registry_id "
        "AND images.repository_name = repositories.name)"
    )
