"""Internet access for investors (RADIUS): tiers, accounts, sessions, monthly usage, disconnects.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _at(name):
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade():
    op.create_table(
        "internet_tiers",
        sa.Column("name", sa.String(16), primary_key=True),
        # NULL: unlimited.  Counted per calendar month in China Standard Time.
        sa.Column("monthly_seconds", sa.BigInteger),
        # NULL: the NAS's own idle timeout.
        sa.Column("idle_timeout", sa.Integer),
        sa.Column("simultaneous_use", sa.Integer, nullable=False, server_default="1"),
        sa.CheckConstraint("monthly_seconds IS NULL OR monthly_seconds >= 0", name="ck_internet_tier_seconds"),
        sa.CheckConstraint("idle_timeout IS NULL OR idle_timeout > 0", name="ck_internet_tier_idle"),
        sa.CheckConstraint("simultaneous_use >= 1", name="ck_internet_tier_simultaneous"),
    )
    op.create_table(
        "internet_accounts",
        # What the investor types on the NAS's login page (User-Name).
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column(
            "fund_account_no", sa.String(20), sa.ForeignKey("fund_accounts.account_no"), nullable=False,
            unique=True,
        ),
        # argon2id, for PAP.  Not the trading password.
        sa.Column("password_hash", sa.String(255), nullable=False),
        # The password encrypted (AES-GCM, key from the environment) for
        # CHAP, which needs it in clear at the server; NULL: no CHAP.
        sa.Column("chap_secret", sa.String(255)),
        sa.Column("tier", sa.String(16), sa.ForeignKey("internet_tiers.name"), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_at", sa.DateTime(timezone=True)),
        _at("created_at"),
        # Of the Reply-Message the NAS may show.
        sa.Column("language", sa.String(2), nullable=False, server_default="zh"),
        sa.CheckConstraint("language IN ('zh', 'en')", name="ck_internet_account_language"),
    )
    op.create_table(
        "radius_sessions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        # The NAS's name in the [radius] clients configuration.
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("acct_session_id", sa.String(253), nullable=False),
        # As the NAS sends it; not a foreign key: accounting is kept for
        # whatever the NAS reports.
        sa.Column("username", sa.String(253)),
        sa.Column("nas_ip", sa.String(45)),
        # Unsigned 32 bits on the wire (RFC 2865 §5.5).
        sa.Column("nas_port", sa.BigInteger),
        sa.Column("framed_ip", sa.String(45)),
        sa.Column("calling_station_id", sa.String(253)),
        _at("started_at"),
        _at("updated_at"),
        # NULL: online.
        sa.Column("stopped_at", sa.DateTime(timezone=True)),
        # The NAS's cumulative counters, the highest reported.
        sa.Column("session_time", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("input_octets", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("output_octets", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("terminate_cause", sa.String(32)),
        sa.UniqueConstraint("client", "acct_session_id", name="uq_radius_session"),
    )
    op.create_index("ix_radius_sessions_username", "radius_sessions", ["username", "stopped_at"])
    op.create_index("ix_radius_sessions_client", "radius_sessions", ["client", "stopped_at"])
    op.create_table(
        "internet_usage",
        sa.Column("username", sa.String(253), nullable=False),
        # "2026-12", in China Standard Time.
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("seconds", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("input_octets", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("output_octets", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("username", "month"),
    )
    op.create_table(
        # Disconnect-Requests (RFC 5176) sent, and how the NAS answered.
        "radius_disconnects",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("radius_sessions.id"), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("outcome", sa.String(8)),
        # RFC 5176 §3.5 Error-Cause of a NAK.
        sa.Column("error_cause", sa.Integer),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.CheckConstraint("outcome IN ('ack', 'nak', 'timeout')", name="ck_radius_disconnect_outcome"),
    )
    op.create_index("ix_radius_disconnects_session", "radius_disconnects", ["session_id"])


def downgrade():
    for table in ("radius_disconnects", "internet_usage", "radius_sessions", "internet_accounts", "internet_tiers"):
        op.drop_table(table)
