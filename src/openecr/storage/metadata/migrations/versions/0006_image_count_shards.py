"""A repository's image count moves to rows of its own, several per repository.

Every push adds one to the count. Kept on the repository row, that one row was updated by
every concurrent push into the repository, so on PostgreSQL they queued on its row lock
through each other's commits. Each push now adds to one of several counter rows (its
"shard"), and the count is their sum.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "repository_image_counts",
        sa.Column("registry_id", sa.String(12), primary_key=True),
        sa.Column("repository_name", sa.String(256), primary_key=True),
        sa.Column("shard", sa.SmallInteger, primary_key=True),
        sa.Column("image_count", sa.BigInteger, nullable=False),
    )
    op.execute(
        "INSERT INTO repository_image_counts (registry_id, repository_name, shard, image_count) "
        "SELECT registry_id, name, 0, image_count FROM repositories WHERE image_count <> 0"
    )
    with op.batch_alter_table("repositories") as batch:
        batch.drop_column("image_count")
