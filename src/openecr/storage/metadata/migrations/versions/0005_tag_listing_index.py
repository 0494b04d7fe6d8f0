"""The digest index of image tags also holds the tag, so ListImages reads each image's tags
from the index alone, already in order.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.drop_index("image_tags_by_digest", table_name="image_tags")
    op.create_index(
        "image_tags_by_digest", "image_tags", ["registry_id", "repository_name", "digest", "tag"]
    )
