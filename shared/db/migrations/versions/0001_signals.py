"""BRAIN's signals table.

Revision ID: 0001
Revises:
Create Date: 2026-11-20
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signals",
        sa.Column("signal_id", sa.String(36), primary_key=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("price", sa.Float, nullable=False),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("timeframe", sa.String(8)),
        sa.Column("alert_id", sa.String(128)),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_ip", sa.String(45)),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("phoenix95_score", sa.Float),
        sa.Column("raw", sa.JSON, nullable=False),
        sa.Column("analysis", sa.JSON, nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_signals_symbol", "signals", ["symbol"])
    op.create_index("ix_signals_received_at", "signals", ["received_at"])
    op.create_index("ix_signals_decision", "signals", ["decision"])
    op.create_index("ix_signals_published_at", "signals", ["published_at"])


def downgrade() -> None:
    op.drop_table("signals")
