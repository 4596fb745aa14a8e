"""EXECUTE's tables and the paper exchange

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 00:12:31.397619
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_snapshots",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("wallet_balance", sa.Float(), nullable=False),
        sa.Column("equity", sa.Float(), nullable=False),
        sa.Column("used_margin", sa.Float(), nullable=False),
        sa.Column("free_margin", sa.Float(), nullable=False),
        sa.Column("day_start_equity", sa.Float(), nullable=False),
        sa.Column("daily_pnl", sa.Float(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("account_snapshots", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_account_snapshots_taken_at"), ["taken_at"], unique=False
        )

    op.create_table(
        "fills",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("client_order_id", sa.String(length=36), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("fee", sa.Float(), nullable=False),
        sa.Column("filled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fills_client_order_id"), ["client_order_id"], unique=False
        )

    op.create_table(
        "orders",
        sa.Column("client_order_id", sa.String(length=36), nullable=False),
        sa.Column("signal_id", sa.String(length=36), nullable=True),
        sa.Column("position_id", sa.String(length=36), nullable=True),
        sa.Column("purpose", sa.String(length=24), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("type", sa.String(length=24), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("stop_price", sa.Float(), nullable=True),
        sa.Column("reduce_only", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("exchange_order_id", sa.String(length=64), nullable=True),
        sa.Column("filled_quantity", sa.Float(), nullable=False),
        sa.Column("average_price", sa.Float(), nullable=True),
        sa.Column("fee", sa.Float(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_order_id"),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_orders_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_position_id"), ["position_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_signal_id"), ["signal_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_symbol"), ["symbol"], unique=False)

    op.create_table(
        "paper_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("wallet_balance", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "paper_orders",
        sa.Column("client_order_id", sa.String(length=40), nullable=False),
        sa.Column("exchange_order_id", sa.String(length=40), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("type", sa.String(length=24), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("filled_quantity", sa.Float(), nullable=False),
        sa.Column("average_price", sa.Float(), nullable=True),
        sa.Column("stop_price", sa.Float(), nullable=True),
        sa.Column("reduce_only", sa.Boolean(), nullable=False),
        sa.Column("fee", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_order_id"),
    )
    with op.batch_alter_table("paper_orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_paper_orders_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_paper_orders_symbol"), ["symbol"], unique=False)

    op.create_table(
        "paper_positions",
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("entry_price", sa.Float(), nullable=False),
        sa.Column("leverage", sa.Integer(), nullable=False),
        sa.Column("isolated_margin", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("symbol"),
    )
    op.create_table(
        "positions",
        sa.Column("position_id", sa.String(length=36), nullable=False),
        sa.Column("signal_id", sa.String(length=36), nullable=True),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("initial_quantity", sa.Float(), nullable=False),
        sa.Column("entry_price", sa.Float(), nullable=False),
        sa.Column("margin", sa.Float(), nullable=False),
        sa.Column("leverage", sa.Integer(), nullable=False),
        sa.Column("stop_loss", sa.Float(), nullable=True),
        sa.Column("take_profit", sa.Float(), nullable=True),
        sa.Column("liquidation_price", sa.Float(), nullable=False),
        sa.Column("stop_order_id", sa.String(length=40), nullable=True),
        sa.Column("target_order_id", sa.String(length=40), nullable=True),
        sa.Column("partial_taken", sa.Boolean(), nullable=False),
        sa.Column("fees", sa.Float(), nullable=False),
        sa.Column("realized_pnl", sa.Float(), nullable=False),
        sa.Column("exit_price", sa.Float(), nullable=True),
        sa.Column("roe", sa.Float(), nullable=True),
        sa.Column("close_reason", sa.String(length=24), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("position_id"),
    )
    with op.batch_alter_table("positions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_positions_closed_at"), ["closed_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_positions_opened_at"), ["opened_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_positions_signal_id"), ["signal_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_positions_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_positions_symbol"), ["symbol"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("positions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_positions_symbol"))
        batch_op.drop_index(batch_op.f("ix_positions_status"))
        batch_op.drop_index(batch_op.f("ix_positions_signal_id"))
        batch_op.drop_index(batch_op.f("ix_positions_opened_at"))
        batch_op.drop_index(batch_op.f("ix_positions_closed_at"))

    op.drop_table("positions")
    op.drop_table("paper_positions")
    with op.batch_alter_table("paper_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paper_orders_symbol"))
        batch_op.drop_index(batch_op.f("ix_paper_orders_status"))

    op.drop_table("paper_orders")
    op.drop_table("paper_account")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_symbol"))
        batch_op.drop_index(batch_op.f("ix_orders_status"))
        batch_op.drop_index(batch_op.f("ix_orders_signal_id"))
        batch_op.drop_index(batch_op.f("ix_orders_position_id"))
        batch_op.drop_index(batch_op.f("ix_orders_created_at"))

    op.drop_table("orders")
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fills_client_order_id"))

    op.drop_table("fills")
    with op.batch_alter_table("account_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_snapshots_taken_at"))

    op.drop_table("account_snapshots")
