"""Servers and live images (blessed VM snapshots).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def _timestamps() -> list[sa.Column]:
    return [sa.Column('created_at', sa.DateTime, nullable=False),
            sa.Column('updated_at', sa.DateTime, nullable=True)]


def upgrade() -> None:
    op.create_table(
        'servers',
        sa.Column('id', sa.String(36), primary_key=True),
        sa.Column('name', sa.String(255), nullable=False),
        sa.Column('project_id', sa.String(255), nullable=True),
        sa.Column('user_id', sa.String(255), nullable=True),
        sa.Column('host', sa.String(255), nullable=True),
        sa.Column('availability_zone', sa.String(255), nullable=True),
        sa.Column('status', sa.String(16), nullable=False),
        sa.Column('task_state', sa.String(32), nullable=True),
        sa.Column('fault', sa.Text, nullable=True),
        sa.Column('memory_mb', sa.Integer, nullable=False),
        sa.Column('vcpus', sa.Integer, nullable=False),
        sa.Column('kernel', sa.String(1024), nullable=True),
        sa.Column('initrd', sa.String(1024), nullable=True),
        sa.Column('cmdline', sa.String(2048), nullable=True),
        sa.Column('volume_id', sa.String(36), nullable=True),
        sa.Column('mac', sa.String(17), nullable=True),
        sa.Column('vmgenid', sa.String(36), nullable=True),
        sa.Column('live_image_id', sa.String(36), nullable=True),
        sa.Column('launch_index', sa.Integer, nullable=True),
        sa.Column('key_name', sa.String(255), nullable=True),
        sa.Column('user_data', sa.Text, nullable=True),
        sa.Column('guest', sa.JSON, nullable=False),
        sa.Column('extra', sa.JSON, nullable=False),
        *_timestamps(),
    )
    op.create_index('servers_project_idx', 'servers', ['project_id'])
    op.create_index('servers_host_idx', 'servers', ['host'])
    op.create_index('servers_live_image_idx', 'servers', ['live_image_id'])
    op.create_table(
        'live_images',
        sa.Column('id', sa.String(36), primary_key=True),
        sa.Column('name', sa.String(255), nullable=False),
        sa.Column('project_id', sa.String(255), nullable=True),
        sa.Column('user_id', sa.String(255), nullable=True),
        sa.Column('server_id', sa.String(36), nullable=False),
        sa.Column('host', sa.String(255), nullable=False),
        sa.Column('status', sa.String(16), nullable=False),
        sa.Column('status_reason', sa.Text, nullable=True),
        sa.Column('memory_mb', sa.Integer, nullable=False),
        sa.Column('vcpus', sa.Integer, nullable=False),
        sa.Column('artifacts', sa.JSON, nullable=True),
        *_timestamps(),
    )
    op.create_index('live_images_server_idx', 'live_images', ['server_id'])
