"""Live images published to shared storage: publish status and location.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # none publishing published error; NULL rows (older ones) read as none.
    op.add_column('live_images', sa.Column('publish_status', sa.String(16), nullable=True))
    op.add_column('live_images', sa.Column('publish_reason', sa.Text, nullable=True))
    # Where the published copy is (pool, image, snapshot, objects) and what a host
    # checks before mapping it (ram_size, state_sha256, layout_sha256).
    op.add_column('live_images', sa.Column('publish_location', sa.JSON, nullable=True))
