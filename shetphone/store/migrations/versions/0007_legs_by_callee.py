"""Legs found by whom they rang: who is on a call (presence's busy) reads this for every incoming call.

Revision ID: 0007
Revises: 0006
Created: 2026-12-01

Without it, "is alice on a call" walked every leg not yet final (``legs_by_rank``),
a cost that grew with the legs ringing at once.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("legs_by_callee", "legs", ["to_number", "status_rank"])


def downgrade() -> None:
    op.drop_index("legs_by_callee", table_name="legs")
