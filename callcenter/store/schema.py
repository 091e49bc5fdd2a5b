"""
The tables as the code sees them, for SQLAlchemy Core queries.  The
migrations in C{migrations/versions} are what creates them; a test checks the
two agree.
"""

import sqlalchemy as sa

metadata = sa.MetaData()


def _created_at():
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


branches = sa.Table(
    "branches",
    metadata,
    sa.Column("code", sa.String(8), primary_key=True),
    sa.Column("name_zh", sa.String(64), nullable=False),
    sa.Column("name_en", sa.String(128), nullable=False),
    sa.Column("city", sa.String(32), nullable=False),
    sa.Column("phone", sa.String(32)),
    _created_at(),
)

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("branch_code", sa.String(8), sa.ForeignKey("branches.code"), nullable=False),
    sa.Column("name_zh", sa.String(64), nullable=False),
    sa.Column("name_en", sa.String(128)),
    sa.Column("mobile", sa.String(32)),
    sa.Column("language", sa.String(2), nullable=False, server_default="zh"),
    _created_at(),
)

fund_accounts = sa.Table(
    "fund_accounts",
    metadata,
    sa.Column("account_no", sa.String(20), primary_key=True),
    sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False, server_default="CNY"),
    sa.Column("cash_available_fen", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cash_frozen_fen", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_at", sa.DateTime(timezone=True)),
    _created_at(),
    sa.Column("phone_daily_limit_fen", sa.BigInteger),
)

shareholder_accounts = sa.Table(
    "shareholder_accounts",
    metadata,
    sa.Column("account_no", sa.String(20), primary_key=True),
    sa.Column(
        "fund_account_no", sa.String(20), sa.ForeignKey("fund_accounts.account_no"), nullable=False
    ),
    sa.Column("exchange", sa.String(4), nullable=False),
)

instruments = sa.Table(
    "instruments",
    metadata,
    sa.Column("code", sa.String(6), primary_key=True),
    sa.Column("exchange", sa.String(4), primary_key=True),
    sa.Column("name_zh", sa.String(32), nullable=False),
    sa.Column("name_en", sa.String(96), nullable=False),
    sa.Column("board", sa.String(8), nullable=False),
    sa.Column("prev_close_fen", sa.BigInteger, nullable=False),
    sa.Column("is_st", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("lot_size", sa.Integer, nullable=False, server_default="100"),
)

sip_accounts = sa.Table(
    "sip_accounts",
    metadata,
    sa.Column("username", sa.String(32), primary_key=True),
    sa.Column("display_name", sa.String(64), nullable=False),
    sa.Column("realm", sa.String(64), nullable=False),
    sa.Column("ha1_md5", sa.String(32), nullable=False),
    sa.Column("ha1_sha256", sa.String(64), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    _created_at(),
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("agent_id", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("extension", sa.String(32), sa.ForeignKey("sip_accounts.username")),
    sa.Column("role", sa.String(16), nullable=False, server_default="agent"),
    _created_at(),
)

sip_bindings = sa.Table(
    "sip_bindings",
    metadata,
    sa.Column(
        "aor", sa.String(32), sa.ForeignKey("sip_accounts.username", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("contact", sa.String(512), primary_key=True),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("call_id", sa.String(255), nullable=False),
    sa.Column("cseq", sa.BigInteger, nullable=False),
    sa.Column("source", sa.String(80), nullable=False),
    sa.Column("user_agent", sa.String(255)),
)


def _at(name):
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


allowed_callers = sa.Table(
    "allowed_callers",
    metadata,
    sa.Column("fund_account_no", sa.String(20), sa.ForeignKey("fund_accounts.account_no"), primary_key=True),
    sa.Column("number", sa.String(32), primary_key=True),
)

positions = sa.Table(
    "positions",
    metadata,
    sa.Column("fund_account_no", sa.String(20), sa.ForeignKey("fund_accounts.account_no"), primary_key=True),
    sa.Column("code", sa.String(6), primary_key=True),
    sa.Column("exchange", sa.String(4), primary_key=True),
    sa.Column("quantity", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("bought_today", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("frozen", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cost_fen", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("trading_day", sa.String(10), nullable=False),
)

orders = sa.Table(
    "orders",
    metadata,
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
    sa.Column("frozen_fen", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("reject_code", sa.String(32)),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("channel", sa.String(8), nullable=False),
    sa.Column("caller", sa.String(64)),
    sa.Column("call_id", sa.String(255)),
    sa.Column("agent_id", sa.String(16)),
    sa.Column("trading_day", sa.String(10), nullable=False),
    _at("created_at"),
    _at("updated_at"),
)

fills = sa.Table(
    "fills",
    metadata,
    sa.Column("fill_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("order_no", sa.Integer, sa.ForeignKey("orders.order_no"), nullable=False),
    sa.Column("exec_id", sa.String(64), nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("price_fen", sa.BigInteger, nullable=False),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    sa.Column("commission_fen", sa.BigInteger, nullable=False),
    sa.Column("stamp_duty_fen", sa.BigInteger, nullable=False),
    sa.Column("transfer_fee_fen", sa.BigInteger, nullable=False),
    _at("filled_at"),
)

cash_journal = sa.Table(
    "cash_journal",
    metadata,
    sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fund_account_no", sa.String(20), sa.ForeignKey("fund_accounts.account_no"), nullable=False),
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    sa.Column("reference", sa.String(64)),
    _at("created_at"),
)

alert_rules = sa.Table(
    "alert_rules",
    metadata,
    sa.Column("rule_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fund_account_no", sa.String(20), sa.ForeignKey("fund_accounts.account_no"), nullable=False),
    sa.Column("code", sa.String(6), nullable=False),
    sa.Column("exchange", sa.String(4), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("threshold", sa.BigInteger, nullable=False),
    sa.Column("rearm", sa.String(10), nullable=False, server_default="once"),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("last_fired_at", sa.DateTime(timezone=True)),
    _at("created_at"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(8), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("fund_account_no", sa.String(20)),
    sa.Column("caller", sa.String(64)),
    sa.Column("call_id", sa.String(255)),
    sa.Column("agent_id", sa.String(16)),
    sa.Column("correlation_id", sa.String(64)),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

api_sessions = sa.Table(
    "api_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("fund_account_no", sa.String(20), sa.ForeignKey("fund_accounts.account_no"), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    _at("created_at"),
)

bulletin_categories = sa.Table(
    "bulletin_categories",
    metadata,
    sa.Column("code", sa.String(4), primary_key=True),
    sa.Column("name_zh", sa.String(64), nullable=False),
    sa.Column("name_en", sa.String(128), nullable=False),
    sa.Column("sort", sa.Integer, nullable=False, server_default="0"),
)

editors = sa.Table(
    "editors",
    metadata,
    sa.Column("editor_id", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("pin_hash", sa.String(255), nullable=False),
    sa.Column("failed_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_at", sa.DateTime(timezone=True)),
)

editor_categories = sa.Table(
    "editor_categories",
    metadata,
    sa.Column("editor_id", sa.String(16), sa.ForeignKey("editors.editor_id"), primary_key=True),
    sa.Column("category", sa.String(4), sa.ForeignKey("bulletin_categories.code"), primary_key=True),
)

bulletins = sa.Table(
    "bulletins",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("category", sa.String(4), sa.ForeignKey("bulletin_categories.code"), nullable=False),
    sa.Column("title", sa.String(128)),
    sa.Column("audio_path", sa.String(255), nullable=False),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("recorded_by", sa.String(16), sa.ForeignKey("editors.editor_id")),
    sa.Column("publish_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expire_at", sa.DateTime(timezone=True)),
    _at("created_at"),
)

experts = sa.Table(
    "experts",
    metadata,
    sa.Column("expert_no", sa.String(8), primary_key=True),
    sa.Column("name_zh", sa.String(64), nullable=False),
    sa.Column("name_en", sa.String(128), nullable=False),
    sa.Column("pin_hash", sa.String(255), nullable=False),
    sa.Column("failed_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_at", sa.DateTime(timezone=True)),
)

commentaries = sa.Table(
    "commentaries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("expert_no", sa.String(8), sa.ForeignKey("experts.expert_no"), nullable=False),
    sa.Column("audio_path", sa.String(255), nullable=False),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("status", sa.String(10), nullable=False, server_default="draft"),
    _at("created_at"),
    sa.Column("published_at", sa.DateTime(timezone=True)),
)

internet_tiers = sa.Table(
    "internet_tiers",
    metadata,
    sa.Column("name", sa.String(16), primary_key=True),
    sa.Column("monthly_seconds", sa.BigInteger),
    sa.Column("idle_timeout", sa.Integer),
    sa.Column("simultaneous_use", sa.Integer, nullable=False, server_default="1"),
)

internet_accounts = sa.Table(
    "internet_accounts",
    metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column(
        "fund_account_no", sa.String(20), sa.ForeignKey("fund_accounts.account_no"), nullable=False, unique=True
    ),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("chap_secret", sa.String(255)),
    sa.Column("tier", sa.String(16), sa.ForeignKey("internet_tiers.name"), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_at", sa.DateTime(timezone=True)),
    _created_at(),
    sa.Column("language", sa.String(2), nullable=False, server_default="zh"),
)

radius_sessions = sa.Table(
    "radius_sessions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("client", sa.String(64), nullable=False),
    sa.Column("acct_session_id", sa.String(253), nullable=False),
    sa.Column("username", sa.String(253)),
    sa.Column("nas_ip", sa.String(45)),
    sa.Column("nas_port", sa.BigInteger),
    sa.Column("framed_ip", sa.String(45)),
    sa.Column("calling_station_id", sa.String(253)),
    _at("started_at"),
    _at("updated_at"),
    sa.Column("stopped_at", sa.DateTime(timezone=True)),
    sa.Column("session_time", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("input_octets", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("output_octets", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("terminate_cause", sa.String(32)),
    sa.UniqueConstraint("client", "acct_session_id", name="uq_radius_session"),
)

internet_usage = sa.Table(
    "internet_usage",
    metadata,
    sa.Column("username", sa.String(253), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("seconds", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("input_octets", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("output_octets", sa.BigInteger, nullable=False, server_default="0"),
)

radius_disconnects = sa.Table(
    "radius_disconnects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("session_id", sa.Integer, sa.ForeignKey("radius_sessions.id"), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("outcome", sa.String(8)),
    sa.Column("error_cause", sa.Integer),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
)

notify_subscriptions = sa.Table(
    "notify_subscriptions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fund_account_no", sa.String(20), sa.ForeignKey("fund_accounts.account_no"), nullable=False),
    sa.Column("channel", sa.String(8), nullable=False),
    sa.Column("address", sa.String(254), nullable=False),
    sa.Column("events", sa.String(128), nullable=False),
    sa.Column("language", sa.String(2), nullable=False, server_default="zh"),
    sa.Column("quiet_from", sa.Integer),
    sa.Column("quiet_until", sa.Integer),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    _at("created_at"),
    sa.UniqueConstraint("fund_account_no", "channel", "address", name="uq_notify_subscription"),
)

notify_messages = sa.Table(
    "notify_messages",
    metadata,
    sa.Column("message_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
    sa.Column("fund_account_no", sa.String(20)),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("channel", sa.String(8), nullable=False),
    sa.Column("address", sa.String(254), nullable=False),
    sa.Column("language", sa.String(2), nullable=False),
    sa.Column("subject", sa.Text, nullable=False, server_default=""),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("state", sa.String(10), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
    sa.Column("provider_ids", sa.Text, nullable=False, server_default=""),
    sa.Column("last_error", sa.Text),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    _at("created_at"),
    _at("updated_at"),
    sa.Index("ix_notify_messages_pending", "state", "channel", "not_before"),
    sa.Index("ix_notify_messages_account", "fund_account_no", "message_id"),
    sa.Index("ix_notify_messages_provider", "channel", "provider_ids"),
)

notify_history = sa.Table(
    "notify_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.Integer, sa.ForeignKey("notify_messages.message_id"), nullable=False),
    _at("at"),
    sa.Column("state", sa.String(10), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
)

notify_provider_ids = sa.Table(
    "notify_provider_ids",
    metadata,
    sa.Column("channel", sa.String(8), primary_key=True),
    sa.Column("provider_id", sa.String(128), primary_key=True),
    sa.Column("message_id", sa.Integer, sa.ForeignKey("notify_messages.message_id"), nullable=False),
    sa.Column("delivered", sa.Boolean),
)

notify_cursors = sa.Table(
    "notify_cursors",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
)
