"""Call control: each controlled call's state and claim, its parties' CallSids, the callbacks waiting.

Revision ID: 0005
Revises: 0003
Created: 2026-12-02

Frozen: the tables are spelt out here, not imported from schema.py.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_controls",
        sa.Column("root_call_sid", sa.String(64), sa.ForeignKey("calls.call_sid", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("number", sa.String(64), nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("claim", sa.String(64)),
        sa.Column("claimed_at", sa.DateTime),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "control_parties",
        sa.Column("call_sid", sa.String(64), primary_key=True),
        sa.Column("root_call_sid", sa.String(64),
                  sa.ForeignKey("call_controls.root_call_sid", ondelete="CASCADE"), nullable=False),
    )
    op.create_index("control_parties_by_root", "control_parties", ["root_call_sid"])
    op.create_table(
        "control_inbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("root_call_sid", sa.String(64),
                  sa.ForeignKey("call_controls.root_call_sid", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
    )
    op.create_index("control_inbox_by_root", "control_inbox", ["root_call_sid", "id"])


def downgrade() -> None:
    for table in ("control_inbox", "control_parties", "call_controls"):
        op.drop_table(table)
