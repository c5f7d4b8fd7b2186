"""Alembic keeps the revision from here on; schema_version goes to 2 so the code before Alembic refuses the database.

Revision ID: 0002
Revises: 0001
Created: 2026-12-01

That code reads only schema_version: at 2 it stops at start ("schema version 2;
this Shetphone knows up to 1") instead of writing to tables a later revision
has changed under it.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE schema_version SET version = 2 WHERE id = 1")


def downgrade() -> None:
    op.execute("UPDATE schema_version SET version = 1 WHERE id = 1")
