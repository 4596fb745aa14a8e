"""RISK's tables and the shared transactional outbox.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-20
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "outbox_messages",
        sa.Column("message_id", sa.String(36), primary_key=True),
        sa.Column("producer", sa.String(16), nullable=False, index=True),
        sa.Column("exchange", sa.String(64), nullable=False),
        sa.Column("routing_key", sa.String(128), nullable=False),
        sa.Column("envelope", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False, index=True),
        sa.Column("published_at", TS, index=True),
    )
    op.create_table(
        "risk_verdicts",
        sa.Column("signal_id", sa.String(36), primary_key=True),
        sa.Column("symbol", sa.String(32), nullable=False, index=True),
        sa.Column("approved", sa.Boolean, nullable=False, index=True),
        sa.Column("stage_failed", sa.Integer),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("order", sa.JSON),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("decided_at", TS, nullable=False, index=True),
    )
    op.create_table(
        "risk_reservations",
        sa.Column("signal_id", sa.String(36), primary_key=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("margin", sa.Float, nullable=False),
        sa.Column("notional", sa.Float, nullable=False),
        sa.Column("stop_pct", sa.Float, nullable=False),
        sa.Column("expires_at", TS, nullable=False, index=True),
        sa.Column("released_at", TS),
    )
    op.create_table(
        "risk_positions",
        sa.Column("position_id", sa.String(64), primary_key=True),
        sa.Column("signal_id", sa.String(36)),
        sa.Column("symbol", sa.String(32), nullable=False, index=True),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("quantity", sa.Float, nullable=False),
        sa.Column("entry_price", sa.Float, nullable=False),
        sa.Column("margin", sa.Float, nullable=False),
        sa.Column("stop_loss", sa.Float),
        sa.Column("liquidation_price", sa.Float, nullable=False),
        sa.Column("opened_at", TS, nullable=False),
    )
    op.create_table(
        "risk_account",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("equity", sa.Float, nullable=False),
        sa.Column("day_start_equity", sa.Float, nullable=False),
        sa.Column("daily_pnl", sa.Float, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "risk_stop_outs",
        sa.Column("symbol", sa.String(32), primary_key=True),
        sa.Column("stopped_at", TS, nullable=False),
    )
    op.create_table(
        "risk_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("trading_state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("changed_by", sa.String(64), nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.Column("limits", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    for table in ("risk_state", "risk_stop_outs", "risk_account", "risk_positions",
                  "risk_reservations", "risk_verdicts", "outbox_messages"):
        op.drop_table(table)
