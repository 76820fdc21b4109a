"""Snapshots, attachments and the per-backend image template cache.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def _timestamps() -> list[sa.Column]:
    return [sa.Column('created_at', sa.DateTime, nullable=False),
            sa.Column('updated_at', sa.DateTime, nullable=True)]


def upgrade() -> None:
    op.create_table(
        'snapshots',
        sa.Column('id', sa.String(36), primary_key=True),
        sa.Column('name', sa.String(255), nullable=True),
        sa.Column('project_id', sa.String(255), nullable=True),
        sa.Column('user_id', sa.String(255), nullable=True),
        sa.Column('volume_id', sa.String(36), sa.ForeignKey('volumes.id'), nullable=False),
        sa.Column('volume_size', sa.Integer, nullable=False),
        sa.Column('status', sa.String(32), nullable=False),
        sa.Column('status_reason', sa.Text, nullable=True),
        sa.Column('backend_id', sa.String(36), sa.ForeignKey('backends.id'), nullable=False),
        sa.Column('host', sa.String(255), nullable=False),
        sa.Column('provider_location', sa.String(1024), nullable=True),
        *_timestamps(),
    )
    op.create_index('snapshots_volume_idx', 'snapshots', ['volume_id'])
    op.create_index('snapshots_project_idx', 'snapshots', ['project_id'])
    op.create_table(
        'attachments',
        sa.Column('id', sa.String(36), primary_key=True),
        sa.Column('volume_id', sa.String(36), sa.ForeignKey('volumes.id'), nullable=False),
        sa.Column('project_id', sa.String(255), nullable=True),
        sa.Column('host', sa.String(255), nullable=False),
        sa.Column('instance_uuid', sa.String(36), nullable=True),
        sa.Column('mode', sa.String(2), nullable=False),
        sa.Column('status', sa.String(32), nullable=False),
        sa.Column('status_reason', sa.Text, nullable=True),
        sa.Column('connector', sa.JSON, nullable=True),
        sa.Column('connection_info', sa.JSON, nullable=True),
        sa.Column('device_path', sa.String(1024), nullable=True),
        *_timestamps(),
    )
    op.create_index('attachments_volume_idx', 'attachments', ['volume_id'])
    op.create_table(
        'image_cache',
        sa.Column('id', sa.String(36), primary_key=True),
        sa.Column('backend_id', sa.String(36), sa.ForeignKey('backends.id'), nullable=False),
        sa.Column('host', sa.String(255), nullable=False),
        sa.Column('image_id', sa.String(1024), nullable=False),
        sa.Column('image_key', sa.String(64), nullable=False),
        sa.Column('size', sa.Integer, nullable=False),
        sa.Column('status', sa.String(32), nullable=False),
        sa.Column('hits', sa.Integer, nullable=False),
        sa.Column('last_used_at', sa.DateTime, nullable=True),
        *_timestamps(),
        sa.UniqueConstraint('backend_id', 'image_key', name='uniq_image_cache0backend0key'),
    )
    with op.batch_alter_table('volumes') as batch:
        batch.add_column(sa.Column('source_volid', sa.String(36), nullable=True))
        batch.add_column(sa.Column('snapshot_id', sa.String(36), nullable=True))
        batch.add_column(sa.Column('image_id', sa.String(1024), nullable=True))
        batch.add_column(sa.Column('multiattach', sa.Boolean, nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column('provider_auth', sa.String(1024), nullable=True))
