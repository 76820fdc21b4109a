"""Services, storage backends and volumes.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def _timestamps() -> list[sa.Column]:
    return [sa.Column('created_at', sa.DateTime, nullable=False),
            sa.Column('updated_at', sa.DateTime, nullable=True)]


def upgrade() -> None:
    op.create_table(
        'services',
        sa.Column('id', sa.Integer, primary_key=True),
        sa.Column('host', sa.String(255), nullable=False),
        sa.Column('topic', sa.String(255), nullable=False),
        sa.Column('binary', sa.String(255), nullable=False),
        sa.Column('last_seen_at', sa.DateTime, nullable=True),
        *_timestamps(),
        sa.UniqueConstraint('host', 'topic', name='uniq_services0host0topic'),
    )
    op.create_table(
        'backends',
        sa.Column('id', sa.String(36), primary_key=True),
        sa.Column('name', sa.String(255), nullable=False),
        sa.Column('driver', sa.String(64), nullable=False),
        sa.Column('options', sa.JSON, nullable=False),
        sa.Column('state', sa.String(16), nullable=False),
        sa.Column('disabled_reason', sa.String(255), nullable=True),
        sa.Column('role', sa.String(16), nullable=False),
        sa.Column('cost', sa.Integer, nullable=False),
        sa.Column('tags', sa.JSON, nullable=False),
        sa.Column('availability_zone', sa.String(255), nullable=False),
        sa.Column('host', sa.String(255), nullable=False),
        sa.Column('total_capacity_gb', sa.Float, nullable=True),
        sa.Column('free_capacity_gb', sa.Float, nullable=True),
        sa.Column('max_over_subscription_ratio', sa.Float, nullable=True),
        sa.Column('reserved_percentage', sa.Integer, nullable=False),
        sa.Column('capabilities', sa.JSON, nullable=False),
        sa.Column('stats_updated_at', sa.DateTime, nullable=True),
        *_timestamps(),
        sa.UniqueConstraint('name', name='uniq_backends0name'),
    )
    op.create_index('backends_host_idx', 'backends', ['host'])
    op.create_table(
        'volumes',
        sa.Column('id', sa.String(36), primary_key=True),
        sa.Column('name', sa.String(255), nullable=True),
        sa.Column('project_id', sa.String(255), nullable=True),
        sa.Column('user_id', sa.String(255), nullable=True),
        sa.Column('size', sa.Integer, nullable=False),
        sa.Column('status', sa.String(32), nullable=False),
        sa.Column('status_reason', sa.Text, nullable=True),
        sa.Column('backend_id', sa.String(36), sa.ForeignKey('backends.id'), nullable=False),
        sa.Column('host', sa.String(255), nullable=False),
        sa.Column('tags', sa.JSON, nullable=False),
        sa.Column('provider_location', sa.String(1024), nullable=True),
        *_timestamps(),
    )
    op.create_index('volumes_project_idx', 'volumes', ['project_id'])
    op.create_index('volumes_backend_idx', 'volumes', ['backend_id'])
