"""The schema's history: Alembic revisions in ``migrations/versions``, run at start under a lock.

:func:`upgrade` brings any database Shetphone ever made to the newest revision,
in one transaction, whoever gets there first:

- empty: every revision from the first (``0001``, the schema as it was before
  Alembic) creates the tables;
- made before Alembic (a ``schema_version`` table at 1, no ``alembic_version``):
  it is the baseline, so it is stamped ``0001`` and upgraded from there;
- at a known revision: upgraded from it (nothing to do at the newest);
- newer than this code (a revision it does not know, or ``schema_version``
  above 1 without Alembic): :class:`SchemaTooNew`, and nothing is touched.

Several processes starting at once take turns: PostgreSQL through an advisory
lock held by the transaction, SQLite through its write lock (``BEGIN IMMEDIATE``).

A new revision (a change to :mod:`.schema` needs one; ``tests/test_store_migrations.py``
compares them)::

    .venv/bin/python -c "from alembic import command; from shetphone.store.migrate import alembic_config; \\
        command.revision(alembic_config(), 'add the logins table', rev_id='0003')"

then write its ``upgrade()`` and ``downgrade()`` (on SQLite, alterations go
through ``op.batch_alter_table``).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import NamedTuple

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from .engine import Database
from .errors import SchemaTooNew, StoreError

log = logging.getLogger(__name__)
# Alembic says "Context impl SQLiteImpl." and the like at every start; this module logs what changed.
logging.getLogger("alembic").setLevel(logging.WARNING)

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
BASELINE = "0001"  # equal to the schema of the code before Alembic
LEGACY_VERSION = 1  # what that code wrote into schema_version
SCHEMA_LOCK_KEY = 0x73686574  # "shet": the PostgreSQL advisory lock held while creating or upgrading
SCHEMA_WAIT_SECONDS = 600.0  # another process may be upgrading: wait for it, but not for ever


class Upgrade(NamedTuple):
    before: str | None  # a revision, "schema_version 1" (before Alembic), or None for an empty database
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def alembic_config() -> Config:
    """Alembic's configuration, in code: the revisions ship inside the package, no alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _scripts() -> ScriptDirectory:
    return _scripts_in(MIGRATIONS)


@functools.cache
def _scripts_in(location: Path) -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(location))
    return ScriptDirectory.from_config(config)


def head() -> str:
    """The newest revision this code knows."""
    return _scripts().get_current_head()


def upgrade(database: Database) -> Upgrade:
    """Bring the schema to :func:`head`; raises :class:`SchemaTooNew` for a database from a newer Shetphone."""

    def work(conn: Connection) -> Upgrade:
        if conn.dialect.name == "postgresql":
            # The usual statement timeout would cut a long revision short, or the wait for it.
            conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        before = _current(conn, database.name)
        newest = head()
        if before == newest:
            return Upgrade(before, newest)
        config = alembic_config()
        config.attributes["connection"] = conn  # migrations/env.py runs on this transaction
        if before == _LEGACY:
            command.stamp(config, BASELINE)
        command.upgrade(config, "head")
        return Upgrade(before, newest)

    result = database.write(work, wait=SCHEMA_WAIT_SECONDS)
    if result.changed:
        log.info("database %s: upgraded from %s to revision %s", database.name, result.before or "empty",
                 result.after)
    return result


def current(database: Database) -> str | None:
    """The database's revision (``schema_version 1`` before Alembic, None when empty)."""
    return database.read(lambda conn: _current(conn, database.name))


_LEGACY = f"schema_version {LEGACY_VERSION}"


def _current(conn: Connection, name: str) -> str | None:
    heads = MigrationContext.configure(conn).get_current_heads()
    if heads:
        known = {script.revision for script in _scripts().walk_revisions()}
        unknown = [revision for revision in heads if revision not in known]
        if unknown:
            raise SchemaTooNew(
                f"database {name}: at revision {', '.join(unknown)}, which this Shetphone does not know "
                f"(its newest is {head()}): it was upgraded by a newer Shetphone; run that, or restore a backup"
            )
        return heads[0]
    if not sa.inspect(conn).has_table("schema_version"):
        return None
    version = conn.scalar(sa.text("SELECT version FROM schema_version WHERE id = 1"))
    if version is not None and version > LEGACY_VERSION:
        raise SchemaTooNew(
            f"database {name}: at schema version {version} without Alembic's revision, newer than this "
            f"Shetphone knows: it was written by a newer Shetphone; run that, or restore a backup"
        )
    if version != LEGACY_VERSION:
        raise StoreError(f"database {name}: schema_version holds {version!r}; expected {LEGACY_VERSION}")
    return _LEGACY
