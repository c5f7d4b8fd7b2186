"""Do-not-disturb, the voicemail e-mail outbox, and transcripts with the recordings (SPEC §7, §8).

Revision ID: 0006
Revises: 0005
Created: 2026-12-02

Frozen: the tables are spelled out here rather than imported from schema.py.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("transcript", sa.Text))
    op.create_table(
        "dnd",
        sa.Column("user_name", sa.String(128), primary_key=True),
        sa.Column("since", sa.DateTime, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("recording_sid", sa.String(64), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("address_key", sa.String(320), nullable=False),
        sa.Column("caller", sa.String(255), nullable=False),
        sa.Column("number", sa.String(64), nullable=False),
        sa.Column("duration", sa.Integer, nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("transcript", sa.Text),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("due_at", sa.Double, nullable=False),
        sa.Column("lease_until", sa.Double, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.UniqueConstraint("recording_sid", "address_key", name="outbox_once_per_address"),
    )
    op.create_index("outbox_due", "outbox", ["status", "due_at"])


def downgrade() -> None:
    op.drop_index("outbox_due", table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("dnd")
    with op.batch_alter_table("recordings") as batch:
        batch.drop_column("transcript")
