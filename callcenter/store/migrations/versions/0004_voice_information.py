"""Voice information (自动声讯): bulletin categories, recorded bulletins, editors; expert mailboxes (名家股评信箱).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _at(name="created_at"):
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade():
    op.create_table(
        "bulletin_categories",
        # The key a caller presses for it: one digit, 1 to 8 (9 is the
        # editors' key and 0 an agent in every menu).
        sa.Column("code", sa.String(4), primary_key=True),
        sa.Column("name_zh", sa.String(64), nullable=False),
        sa.Column("name_en", sa.String(128), nullable=False),
        sa.Column("sort", sa.Integer, nullable=False, server_default="0"),
        sa.CheckConstraint("code IN ('1', '2', '3', '4', '5', '6', '7', '8')", name="ck_bulletin_category_code"),
    )
    op.create_table(
        "editors",
        sa.Column("editor_id", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        # argon2id of the PIN keyed on the phone.
        sa.Column("pin_hash", sa.String(255), nullable=False),
        sa.Column("failed_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "bulletins",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("category", sa.String(4), sa.ForeignKey("bulletin_categories.code"), nullable=False),
        sa.Column("title", sa.String(128)),
        # Relative to the [ivr] recordings directory; generated, never typed.
        sa.Column("audio_path", sa.String(255), nullable=False),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("recorded_by", sa.String(16), sa.ForeignKey("editors.editor_id")),
        sa.Column("publish_at", sa.DateTime(timezone=True), nullable=False),
        # NULL: until a newer bulletin is enough.
        sa.Column("expire_at", sa.DateTime(timezone=True)),
        _at(),
        sa.CheckConstraint("duration_ms >= 0", name="ck_bulletin_duration"),
    )
    op.create_index("ix_bulletins_category_publish", "bulletins", ["category", "publish_at"])
    op.create_table(
        "experts",
        # The mailbox number investors key in.
        sa.Column("expert_no", sa.String(8), primary_key=True),
        sa.Column("name_zh", sa.String(64), nullable=False),
        sa.Column("name_en", sa.String(128), nullable=False),
        sa.Column("pin_hash", sa.String(255), nullable=False),
        sa.Column("failed_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "commentaries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("expert_no", sa.String(8), sa.ForeignKey("experts.expert_no"), nullable=False),
        sa.Column("audio_path", sa.String(255), nullable=False),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("status", sa.String(10), nullable=False, server_default="draft"),
        _at(),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status IN ('draft', 'published', 'deleted')", name="ck_commentary_status"),
        sa.CheckConstraint("duration_ms >= 0", name="ck_commentary_duration"),
    )
    op.create_index("ix_commentaries_expert_status", "commentaries", ["expert_no", "status"])


def downgrade():
    for table in ("commentaries", "experts", "bulletins", "editors", "bulletin_categories"):
        op.drop_table(table)
