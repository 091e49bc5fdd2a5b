"""Editors' categories: which bulletin categories each editor may publish in.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        # An editor publishes (by phone or over HTTP) and withdraws only in
        # the categories listed here.
        "editor_categories",
        sa.Column("editor_id", sa.String(16), sa.ForeignKey("editors.editor_id"), nullable=False),
        sa.Column("category", sa.String(4), sa.ForeignKey("bulletin_categories.code"), nullable=False),
        sa.PrimaryKeyConstraint("editor_id", "category"),
    )
    # Until now every editor could publish in every category: after the
    # upgrade they still can, until an administrator revokes some.
    op.execute(
        "INSERT INTO editor_categories (editor_id, category) "
        "SELECT editors.editor_id, bulletin_categories.code FROM editors CROSS JOIN bulletin_categories"
    )


def downgrade():
    op.drop_table("editor_categories")
