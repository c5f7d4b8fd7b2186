"""The schema as it was before Alembic (the hand-written schema_version 1).

Revision ID: 0001
Revises:
Created: 2026-12-01

Frozen: it spells the tables out rather than importing schema.py, which moves
on with later revisions. A database made before Alembic is stamped with this
revision instead of running it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema_version = op.create_table(
        "schema_version",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.bulk_insert(schema_version, [{"id": 1, "version": 1}])
    op.create_table(
        "calls",
        sa.Column("call_sid", sa.String(64), primary_key=True),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("number", sa.String(64), nullable=False),
        sa.Column("from_number", sa.String(255), nullable=False),
        sa.Column("to_number", sa.String(255), nullable=False),
        sa.Column("client", sa.String(128)),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("dial_status", sa.String(16)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("answered", sa.Boolean, nullable=False),
        sa.Column("duration", sa.Integer, nullable=False),
    )
    op.create_index("calls_by_number", "calls", ["number", "started_at", "call_sid"])
    op.create_index("calls_by_client", "calls", ["client", "started_at", "call_sid"])
    op.create_index("calls_by_start", "calls", ["started_at"])
    op.create_table(
        "legs",
        sa.Column("call_sid", sa.String(64), primary_key=True),
        sa.Column("root_call_sid", sa.String(64), sa.ForeignKey("calls.call_sid", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("parent_call_sid", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_rank", sa.Integer, nullable=False),
        sa.Column("sequence", sa.Integer),
        sa.Column("answered", sa.Boolean, nullable=False),
        sa.Column("duration", sa.Integer, nullable=False),
        sa.Column("from_number", sa.String(255)),
        sa.Column("to_number", sa.String(255)),
        sa.Column("event_at", sa.DateTime, nullable=False),
    )
    op.create_index("legs_by_root", "legs", ["root_call_sid"])
    op.create_index("legs_by_rank", "legs", ["status_rank"])
    op.create_table(
        "recordings",
        sa.Column("recording_sid", sa.String(64), primary_key=True),
        sa.Column("call_sid", sa.String(64), sa.ForeignKey("calls.call_sid", ondelete="CASCADE"), nullable=False),
        sa.Column("twilio_url", sa.String(1024), nullable=False),
        sa.Column("duration", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("recordings_by_call", "recordings", ["call_sid"])


def downgrade() -> None:
    for table in ("recordings", "legs", "calls", "schema_version"):
        op.drop_table(table)
