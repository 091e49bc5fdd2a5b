"""Notifications: investors' subscriptions, the durable outbox and each message's history.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _at(name):
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade():
    op.create_table(
        "notify_subscriptions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fund_account_no", sa.String(20), sa.ForeignKey("fund_accounts.account_no"), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        # A mobile number, a pager id, an e-mail address, a webhook subscriber id.
        sa.Column("address", sa.String(254), nullable=False),
        # Comma-separated event kinds: fill, alert, rejection (later complaint, bulletin).
        sa.Column("events", sa.String(128), nullable=False),
        sa.Column("language", sa.String(2), nullable=False, server_default="zh"),
        # Minutes after midnight, China Standard Time; both NULL: no quiet hours.
        # A span may wrap midnight (22:00-07:00 is 1320-420).
        sa.Column("quiet_from", sa.Integer),
        sa.Column("quiet_until", sa.Integer),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        _at("created_at"),
        sa.UniqueConstraint("fund_account_no", "channel", "address", name="uq_notify_subscription"),
        sa.CheckConstraint("channel IN ('sms', 'pager', 'email', 'webhook')", name="ck_notify_subscription_channel"),
        sa.CheckConstraint("language IN ('zh', 'en')", name="ck_notify_subscription_language"),
        sa.CheckConstraint(
            "(quiet_from IS NULL AND quiet_until IS NULL) OR "
            "(quiet_from BETWEEN 0 AND 1439 AND quiet_until BETWEEN 0 AND 1439)",
            name="ck_notify_subscription_quiet",
        ),
    )
    op.create_index("ix_notify_subscriptions_account", "notify_subscriptions", ["fund_account_no"])
    op.create_table(
        "notify_messages",
        sa.Column("message_id", sa.Integer, primary_key=True, autoincrement=True),
        # (event, recipient, channel): a redelivered event or a restart's
        # catch-up never makes a second message.
        sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
        sa.Column("fund_account_no", sa.String(20)),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("address", sa.String(254), nullable=False),
        sa.Column("language", sa.String(2), nullable=False),
        sa.Column("subject", sa.Text, nullable=False, server_default=""),
        sa.Column("body", sa.Text, nullable=False),
        # queued (waiting for its turn or its next attempt), sent (the peer
        # took it), delivered / failed (the peer's receipt), dead (given up).
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        # Not sent before: quiet hours, or the next retry.
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provider_ids", sa.Text, nullable=False, server_default=""),
        sa.Column("last_error", sa.Text),
        # The normal course is kept in the row (created_at, sent_at, and
        # finished_at for delivered, failed or dead); notify_history holds
        # the rest: failed attempts, requeues.  A burst of ten thousand
        # alerts then writes no history rows at all.
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        _at("created_at"),
        _at("updated_at"),
        sa.CheckConstraint(
            "state IN ('queued', 'sent', 'delivered', 'failed', 'dead')", name="ck_notify_message_state"
        ),
    )
    op.create_index("ix_notify_messages_pending", "notify_messages", ["state", "channel", "not_before"])
    op.create_index("ix_notify_messages_account", "notify_messages", ["fund_account_no", "message_id"])
    # A one-segment SMS (most) is found by its receipt's id here, not in notify_provider_ids.
    op.create_index("ix_notify_messages_provider", "notify_messages", ["channel", "provider_ids"])
    op.create_table(
        # Failed attempts and requeues (the normal course is in the message's row).
        "notify_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.Integer, sa.ForeignKey("notify_messages.message_id"), nullable=False),
        _at("at"),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_notify_history_message", "notify_history", ["message_id"])
    op.create_table(
        # The segments of a long SMS, each with the SMSC's own id and receipt.
        "notify_provider_ids",
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("provider_id", sa.String(128), nullable=False),
        sa.Column("message_id", sa.Integer, sa.ForeignKey("notify_messages.message_id"), nullable=False),
        # NULL until its receipt: True delivered, False not.
        sa.Column("delivered", sa.Boolean),
        sa.PrimaryKeyConstraint("channel", "provider_id"),
    )
    op.create_table(
        # How far the catch-up of fills after a restart has looked.
        "notify_cursors",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
    )


def downgrade():
    for table in ("notify_cursors", "notify_provider_ids", "notify_history", "notify_messages", "notify_subscriptions"):
        op.drop_table(table)
