"""QoS specs, and the specs a volume or a backend is associated with.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'qos_specs',
        sa.Column('id', sa.String(36), primary_key=True),
        sa.Column('name', sa.String(255), nullable=False),
        sa.Column('consumer', sa.String(16), nullable=False),
        sa.Column('specs', sa.JSON, nullable=False),
        sa.Column('created_at', sa.DateTime, nullable=False),
        sa.Column('updated_at', sa.DateTime, nullable=True),
        sa.UniqueConstraint('name', name='uniq_qos_specs0name'))
    # NULL: none of its own (a volume then takes its backend's, if any). No
    # foreign key: deleting specs clears these in the same transaction, and
    # SQLite could only add one by rebuilding the tables.
    op.add_column('volumes', sa.Column('qos_specs_id', sa.String(36), nullable=True))
    op.add_column('backends', sa.Column('qos_specs_id', sa.String(36), nullable=True))
