"""Volume migration across backends: its state, progress and the backend name.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Cinder's values: starting migrating completing success error, and
    # 'target:<source id>' on the temporary destination row; NULL: never moved.
    op.add_column('volumes', sa.Column('migration_status', sa.String(255), nullable=True))
    op.add_column('volumes', sa.Column('migration_progress', sa.Integer, nullable=True))
    # The id the backend knows the data by (Cinder's _name_id): after a
    # migration the volume keeps its id while its data carries the temporary
    # destination row's; NULL: the volume's own id.
    op.add_column('volumes', sa.Column('name_id', sa.String(36), nullable=True))
