"""What a live image of a Nova instance was booted from (its clones boot the same).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for live images of this service's own servers.
    op.add_column('live_images', sa.Column('nova_source', sa.JSON, nullable=True))
