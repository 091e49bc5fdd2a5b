"""Foundation: branches, investors and their accounts, instruments, SIP extensions, agents.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _created_at():
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


def upgrade():
    op.create_table(
        "branches",
        sa.Column("code", sa.String(8), primary_key=True),
        sa.Column("name_zh", sa.String(64), nullable=False),
        sa.Column("name_en", sa.String(128), nullable=False),
        sa.Column("city", sa.String(32), nullable=False),
        sa.Column("phone", sa.String(32)),
        _created_at(),
    )
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("branch_code", sa.String(8), sa.ForeignKey("branches.code"), nullable=False),
        sa.Column("name_zh", sa.String(64), nullable=False),
        sa.Column("name_en", sa.String(128)),
        sa.Column("mobile", sa.String(32)),
        sa.Column("language", sa.String(2), nullable=False, server_default="zh"),
        _created_at(),
    )
    op.create_table(
        "fund_accounts",
        sa.Column("account_no", sa.String(20), primary_key=True),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False, server_default="CNY"),
        sa.Column("cash_available_fen", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cash_frozen_fen", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_at", sa.DateTime(timezone=True)),
        _created_at(),
        sa.CheckConstraint("cash_available_fen >= 0", name="ck_fund_accounts_available"),
        sa.CheckConstraint("cash_frozen_fen >= 0", name="ck_fund_accounts_frozen"),
    )
    op.create_index("ix_fund_accounts_customer", "fund_accounts", ["customer_id"])
    op.create_table(
        "shareholder_accounts",
        sa.Column("account_no", sa.String(20), primary_key=True),
        sa.Column(
            "fund_account_no",
            sa.String(20),
            sa.ForeignKey("fund_accounts.account_no"),
            nullable=False,
        ),
        sa.Column("exchange", sa.String(4), nullable=False),
        sa.CheckConstraint("exchange IN ('SSE', 'SZSE')", name="ck_shareholder_exchange"),
        sa.UniqueConstraint("fund_account_no", "exchange", name="uq_shareholder_per_exchange"),
    )
    op.create_table(
        "instruments",
        sa.Column("code", sa.String(6), nullable=False),
        sa.Column("exchange", sa.String(4), nullable=False),
        sa.Column("name_zh", sa.String(32), nullable=False),
        sa.Column("name_en", sa.String(96), nullable=False),
        sa.Column("board", sa.String(8), nullable=False),
        sa.Column("prev_close_fen", sa.BigInteger, nullable=False),
        sa.Column("is_st", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("lot_size", sa.Integer, nullable=False, server_default="100"),
        sa.PrimaryKeyConstraint("code", "exchange"),
        sa.CheckConstraint("exchange IN ('SSE', 'SZSE')", name="ck_instrument_exchange"),
        sa.CheckConstraint(
            "board IN ('main', 'chinext', 'star', 'etf')", name="ck_instrument_board"
        ),
        sa.CheckConstraint("prev_close_fen > 0", name="ck_instrument_prev_close"),
    )
    op.create_table(
        "sip_accounts",
        sa.Column("username", sa.String(32), primary_key=True),
        sa.Column("display_name", sa.String(64), nullable=False),
        # RFC 8760 digest needs H(user:realm:password) per algorithm; the
        # password itself is never stored.
        sa.Column("realm", sa.String(64), nullable=False),
        sa.Column("ha1_md5", sa.String(32), nullable=False),
        sa.Column("ha1_sha256", sa.String(64), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        _created_at(),
    )
    op.create_table(
        "agents",
        sa.Column("agent_id", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("extension", sa.String(32), sa.ForeignKey("sip_accounts.username")),
        sa.Column("role", sa.String(16), nullable=False, server_default="agent"),
        _created_at(),
        sa.CheckConstraint("role IN ('agent', 'supervisor', 'admin')", name="ck_agent_role"),
    )


def downgrade():
    for table in (
        "agents",
        "sip_accounts",
        "instruments",
        "shareholder_accounts",
        "fund_accounts",
        "customers",
        "branches",
    ):
        op.drop_table(table)
