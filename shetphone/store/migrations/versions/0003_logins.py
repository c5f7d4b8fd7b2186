"""Logins are kept on the server, so logging out (or being removed) ends a session everywhere.

Revision ID: 0003
Revises: 0002
Created: 2026-12-01

Frozen: it spells the table out rather than importing schema.py.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "logins",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user_name", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("last_seen_at", sa.DateTime, nullable=False),
        sa.Column("user_agent", sa.String(255)),
    )
    op.create_index("logins_by_user", "logins", ["user_name"])
    op.create_index("logins_by_last_seen", "logins", ["last_seen_at"])


def downgrade() -> None:
    op.drop_table("logins")
