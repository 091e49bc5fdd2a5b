"""Trading: positions, orders, fills, cash journal, price alerts, the audit chain, API sessions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _at(name="created_at"):
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade():
    with op.batch_alter_table("fund_accounts") as batch:
        # NULL: no limit.  Counted over today's phone orders (amount at order price).
        batch.add_column(sa.Column("phone_daily_limit_fen", sa.BigInteger))
    op.create_table(
        # 主叫限拨: when an account has rows here, phone trading is allowed
        # only from these caller numbers.
        "allowed_callers",
        sa.Column("fund_account_no", sa.String(20), sa.ForeignKey("fund_accounts.account_no"), nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("fund_account_no", "number"),
    )
    op.create_table(
        "positions",
        sa.Column("fund_account_no", sa.String(20), sa.ForeignKey("fund_accounts.account_no"), nullable=False),
        sa.Column("code", sa.String(6), nullable=False),
        sa.Column("exchange", sa.String(4), nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False, server_default="0"),
        # Bought on trading_day: not sellable before the next one (T+1).
        sa.Column("bought_today", sa.BigInteger, nullable=False, server_default="0"),
        # Held by pending sell orders.
        sa.Column("frozen", sa.BigInteger, nullable=False, server_default="0"),
        # What the holding cost, fees included, in fen.
        sa.Column("cost_fen", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("trading_day", sa.String(10), nullable=False),
        sa.PrimaryKeyConstraint("fund_account_no", "code", "exchange"),
        sa.CheckConstraint("quantity >= 0", name="ck_position_quantity"),
        sa.CheckConstraint("bought_today >= 0", name="ck_position_bought_today"),
        sa.CheckConstraint("frozen >= 0", name="ck_position_frozen"),
        sa.CheckConstraint("frozen + bought_today <= quantity", name="ck_position_sellable"),
    )
    op.create_table(
        "orders",
        # 合同号: what the investor is told and keys in to cancel.
        sa.Column("order_no", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("client_order_id", sa.String(64), nullable=False),
        sa.Column("fund_account_no", sa.String(20), sa.ForeignKey("fund_accounts.account_no"), nullable=False),
        sa.Column("code", sa.String(6), nullable=False),
        sa.Column("exchange", sa.String(4), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("order_type", sa.String(16), nullable=False, server_default="limit"),
        sa.Column("price_fen", sa.BigInteger, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("filled_quantity", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("filled_amount_fen", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("fees_fen", sa.BigInteger, nullable=False, server_default="0"),
        # Cash still frozen for this buy (amount plus estimated fees of the unfilled part).
        sa.Column("frozen_fen", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reject_code", sa.String(32)),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("caller", sa.String(64)),
        sa.Column("call_id", sa.String(255)),
        sa.Column("agent_id", sa.String(16)),
        sa.Column("trading_day", sa.String(10), nullable=False),
        _at(),
        _at("updated_at"),
        sa.UniqueConstraint("fund_account_no", "client_order_id", name="uq_order_client_id"),
        sa.CheckConstraint("side IN ('buy', 'sell')", name="ck_order_side"),
        sa.CheckConstraint(
            "status IN ('new', 'accepted', 'partially_filled', 'filled', 'cancelled', 'rejected')",
            name="ck_order_status",
        ),
        sa.CheckConstraint("channel IN ('phone', 'web', 'agent', 'api', 'staff')", name="ck_order_channel"),
        sa.CheckConstraint("quantity > 0", name="ck_order_quantity"),
        sa.CheckConstraint("filled_quantity >= 0 AND filled_quantity <= quantity", name="ck_order_filled"),
        sa.CheckConstraint("frozen_fen >= 0", name="ck_order_frozen"),
    )
    op.create_index("ix_orders_account_day", "orders", ["fund_account_no", "trading_day"])
    op.create_index("ix_orders_status", "orders", ["status"])
    op.create_table(
        "fills",
        sa.Column("fill_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_no", sa.Integer, sa.ForeignKey("orders.order_no"), nullable=False),
        # The gateway's execution id: a fill reported twice is applied once.
        sa.Column("exec_id", sa.String(64), nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("price_fen", sa.BigInteger, nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("commission_fen", sa.BigInteger, nullable=False),
        sa.Column("stamp_duty_fen", sa.BigInteger, nullable=False),
        sa.Column("transfer_fee_fen", sa.BigInteger, nullable=False),
        _at("filled_at"),
        sa.UniqueConstraint("order_no", "exec_id", name="uq_fill_exec"),
        sa.CheckConstraint("quantity > 0", name="ck_fill_quantity"),
    )
    op.create_table(
        # Money in and out of the fund account (bank transfers, 银证转账).
        "cash_journal",
        sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fund_account_no", sa.String(20), sa.ForeignKey("fund_accounts.account_no"), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("reference", sa.String(64)),
        _at(),
        sa.CheckConstraint("kind IN ('deposit', 'withdraw')", name="ck_cash_journal_kind"),
        sa.CheckConstraint("amount_fen > 0", name="ck_cash_journal_amount"),
    )
    op.create_table(
        "alert_rules",
        sa.Column("rule_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fund_account_no", sa.String(20), sa.ForeignKey("fund_accounts.account_no"), nullable=False),
        sa.Column("code", sa.String(6), nullable=False),
        sa.Column("exchange", sa.String(4), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        # Fen for price rules; basis points of the previous close for change rules.
        sa.Column("threshold", sa.BigInteger, nullable=False),
        sa.Column("rearm", sa.String(10), nullable=False, server_default="once"),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("last_fired_at", sa.DateTime(timezone=True)),
        _at(),
        sa.CheckConstraint(
            "kind IN ('price_above', 'price_below', 'change_up', 'change_down')", name="ck_alert_kind"
        ),
        sa.CheckConstraint("rearm IN ('once', 'daily', 'recross')", name="ck_alert_rearm"),
        sa.CheckConstraint("threshold > 0", name="ck_alert_threshold"),
    )
    op.create_index("ix_alert_rules_account", "alert_rules", ["fund_account_no"])
    op.create_table(
        # Append-only; each row's hash covers its fields and the previous
        # row's hash, so an edited or deleted row breaks the chain.
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        # ISO 8601 UTC text, hashed as stored: no database time-zone round trip.
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("fund_account_no", sa.String(20)),
        sa.Column("caller", sa.String(64)),
        sa.Column("call_id", sa.String(255)),
        sa.Column("agent_id", sa.String(16)),
        sa.Column("correlation_id", sa.String(64)),
        # JSON text, keys sorted.
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_account", "audit_log", ["fund_account_no"])
    op.create_table(
        "api_sessions",
        # SHA-256 of the bearer token: a leaked table does not leak sessions.
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("fund_account_no", sa.String(20), sa.ForeignKey("fund_accounts.account_no"), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        _at(),
    )


def downgrade():
    for table in ("api_sessions", "audit_log", "alert_rules", "cash_journal", "fills", "orders", "positions",
                  "allowed_callers"):
        op.drop_table(table)
    with op.batch_alter_table("fund_accounts") as batch:
        batch.drop_column("phone_daily_limit_fen")
