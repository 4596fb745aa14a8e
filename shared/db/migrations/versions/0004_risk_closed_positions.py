"""RISK keeps closed positions (closed_at), so late events cannot reopen them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("risk_positions") as batch:
        batch.add_column(sa.Column("closed_at", sa.DateTime(timezone=True)))
        batch.create_index("ix_risk_positions_closed_at", ["closed_at"])


def downgrade() -> None:
    with op.batch_alter_table("risk_positions") as batch:
        batch.drop_index("ix_risk_positions_closed_at")
        batch.drop_column("closed_at")
