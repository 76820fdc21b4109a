"""What a compute host can do (e.g. whether it has a hypervisor), per service.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: rows of services started before this column keep NULL
    # ("unknown"), which placement reads as "has a hypervisor", as before.
    op.add_column('services', sa.Column('capabilities', sa.JSON, nullable=True))
