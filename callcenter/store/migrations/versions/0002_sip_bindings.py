"""SIP registrations: where each extension can be reached.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    # Kept in the database, not only in memory: phones re-register about
    # hourly, so a restart that forgot them would leave them unreachable.
    op.create_table(
        "sip_bindings",
        sa.Column(
            "aor",
            sa.String(32),
            sa.ForeignKey("sip_accounts.username", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("contact", sa.String(512), nullable=False),
        # Seconds on the server's clock (epoch), when the binding lapses.
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("call_id", sa.String(255), nullable=False),
        sa.Column("cseq", sa.BigInteger, nullable=False),
        # Where the REGISTER really came from ("udp:203.0.113.5:40312"):
        # behind NAT that, not the Contact, is how the phone is reached.
        sa.Column("source", sa.String(80), nullable=False),
        sa.Column("user_agent", sa.String(255)),
        sa.PrimaryKeyConstraint("aor", "contact"),
    )
    op.create_index("ix_sip_bindings_expires_at", "sip_bindings", ["expires_at"])


def downgrade():
    op.drop_index("ix_sip_bindings_expires_at", "sip_bindings")
    op.drop_table("sip_bindings")
