"""The schema's history (shetphone.store.migrate and migrations/): fresh, upgraded, too new, several at once.

The upgrade is tested from a real version-1 database: tests/data/shetphone-v1.sqlite3
was written by the code before Alembic (tests/data/make_v1_database.py), and
shetphone-v1.expected.json holds what that code listed from it. On PostgreSQL
the same rows are copied into the schema the version-1 code created there
(shetphone-v1.postgresql.sql, recorded from it too).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import INI, ROOT, FakeClock, login, make_team_files, new_postgres_database
from store_helpers import ALICE_NUMBER, open_inbound

from shetphone.store import SchemaTooNew, Store, migrate, schema

DATA = Path(__file__).resolve().parent / "data"
V1_DATABASE = DATA / "shetphone-v1.sqlite3"
V1_POSTGRESQL_DDL = DATA / "shetphone-v1.postgresql.sql"
EXPECTED = json.loads((DATA / "shetphone-v1.expected.json").read_text(encoding="utf-8"))
USERS = ("alice", "bob", "carol")
LOG_TABLES = (schema.calls, schema.legs, schema.recordings)
# Columns later revisions added: a version-1 database has none of them, and they never change its rows.
ADDED_SINCE_V1 = {("recordings", "transcript")}


def v1_columns(table: sa.Table) -> list[sa.Column]:
    return [column for column in table.c if (table.name, column.name) not in ADDED_SINCE_V1]


def schema_differences(url: str) -> list:
    """What Alembic's autogenerate would change to make the database match schema.py (nothing, we hope)."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), schema.metadata)
    finally:
        engine.dispose()


def rows_of(url: str) -> dict[str, list[tuple]]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return {
                table.name: [tuple(row) for row in
                             conn.execute(sa.select(*v1_columns(table)).order_by(*table.primary_key))]
                for table in LOG_TABLES
            }
    finally:
        engine.dispose()


def schema_version_of(url: str) -> int:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return conn.scalar(sa.text("SELECT version FROM schema_version WHERE id = 1"))
    finally:
        engine.dispose()


@pytest.fixture
def v1_sqlite(tmp_path: Path) -> str:
    """A copy of the version-1 file (the committed one is never written)."""
    copy = tmp_path / "v1" / "shetphone.sqlite3"
    copy.parent.mkdir()
    shutil.copy(V1_DATABASE, copy)
    return f"sqlite:///{copy}"


@pytest.fixture
def v1_rows(tmp_path: Path) -> dict[str, list[tuple]]:
    pristine = tmp_path / "pristine.sqlite3"
    shutil.copy(V1_DATABASE, pristine)
    return rows_of(f"sqlite:///{pristine}")


@pytest.fixture
def v1_postgresql(postgres, tmp_path: Path) -> str:
    """A PostgreSQL database as the version-1 code made it, holding the version-1 file's rows."""
    url = new_postgres_database(postgres)
    pristine = tmp_path / "source.sqlite3"
    shutil.copy(V1_DATABASE, pristine)
    source = sa.create_engine(f"sqlite:///{pristine}", poolclass=sa.NullPool)
    target = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with source.connect() as read, target.begin() as write:
            for statement in V1_POSTGRESQL_DDL.read_text(encoding="utf-8").split(";\n"):
                if statement.strip():
                    write.exec_driver_sql(statement)
            for table in (schema.schema_version, *LOG_TABLES):  # parents before children
                rows = [row._asdict() for row in read.execute(sa.select(*v1_columns(table)))]
                write.execute(table.insert(), rows)
    finally:
        source.dispose()
        target.dispose()
    return url


def without_transcripts(listing):
    """A listing as version 1 made it: entries gained ``voicemail_transcript`` since, None for its voicemails."""
    if isinstance(listing, dict):
        assert listing.pop("voicemail_transcript", None) is None
        return {key: without_transcripts(value) for key, value in listing.items()}
    if isinstance(listing, list):
        return [without_transcripts(item) for item in listing]
    return listing


def expected_listing_from(store: Store) -> dict:
    numbers_of = EXPECTED["numbers_of"]
    recordings = {
        recording_sid: list(store.calls.recording_for(recording_sid)) for recording_sid in EXPECTED["recording_for"]
    }
    return {
        "calls_for": {user: without_transcripts(store.calls.calls_for(numbers_of[user], user, 50)) for user in USERS},
        "calls_in_progress": {user: store.calls.calls_in_progress(numbers_of[user], user) for user in USERS},
        "recording_for": recordings,
    }


def listed_by_get_calls(root: Path, database: str) -> dict:
    """GET /calls as each user, from an app started on ``database`` (which it upgrades at start)."""
    from shetphone import create_app
    from shetphone.settings import load_settings

    root.mkdir()
    files = make_team_files(root)
    files.ini_template = INI.replace("database = shetphone.sqlite3", f"database = {database}")
    files.write_ini(extra="keep_days = 36500")  # the recorded calls are never pruned by today's date
    app = create_app(load_settings(files.root, files.environ), async_mode="threading", overrides={"TESTING": True})
    # No housekeeping loop: it closes ringing legs by today's date (the recorded ones lost
    # their callbacks years ago, as it were); this compares what the upgrade alone kept.
    app.extensions["shetphone_watcher_pid"] = os.getpid()
    try:
        listed = {}
        for user in USERS:
            client = app.test_client()
            assert login(client, user).status_code == 302
            response = client.get("/calls?limit=50")
            assert response.status_code == 200
            listed[user] = without_transcripts(response.get_json())
        return listed
    finally:
        app.extensions["shetphone"].store.close()


def listed_at() -> FakeClock:
    return FakeClock(datetime.fromisoformat(EXPECTED["listed_at"]))


# --------------------------------------------------------------------------- fresh


def test_a_fresh_database_is_made_by_the_revisions_and_matches_the_schema(database_url: str) -> None:
    store = Store(database_url)
    try:
        assert store.upgraded == migrate.Upgrade(None, migrate.head())
        assert migrate.current(store.database) == migrate.head()
        open_inbound(store.calls, "CAroot")
    finally:
        store.close()
    assert schema_differences(database_url) == []
    assert schema_version_of(database_url) == 2  # the code before Alembic refuses it


def test_every_revision_goes_down_and_up_again(database_url: str) -> None:
    store = Store(database_url)
    try:
        open_inbound(store.calls, "CAroot")
        config = migrate.alembic_config()
        with store.database.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, migrate.BASELINE)
        assert schema_version_of(database_url) == 1
        with store.database.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        assert migrate.current(store.database) == migrate.head()
        assert [c["call_sid"] for c in store.calls.calls_for([ALICE_NUMBER], None)] == ["CAroot"]
    finally:
        store.close()
    assert schema_differences(database_url) == []


# --------------------------------------------------------------------------- from version 1


def test_the_version_1_file_is_what_the_version_1_code_wrote() -> None:
    """The fixture itself: made before Alembic, with calls of every kind."""
    engine = sa.create_engine("sqlite://", poolclass=sa.NullPool,
                              creator=lambda: sqlite3.connect(f"file:{V1_DATABASE}?immutable=1", uri=True))
    try:
        with engine.connect() as conn:
            assert not sa.inspect(conn).has_table("alembic_version")
            assert conn.scalar(sa.text("SELECT version FROM schema_version")) == 1
            statuses = set(conn.scalars(sa.text("SELECT status FROM calls")))
            assert {"completed", "no-answer", "busy", "canceled", "in-progress", "ringing"} <= statuses
            assert conn.scalar(sa.text("SELECT count(*) FROM recordings")) == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize("v1_database", ["v1_sqlite", "v1_postgresql"])
def test_a_version_1_database_is_upgraded_in_place_and_lists_the_same(v1_database: str, v1_rows: dict,
                                                                      request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(v1_database)
    assert rows_of(url) == v1_rows  # on PostgreSQL: the copy is faithful before anything else
    store = Store(url, clock=listed_at())
    try:
        assert store.upgraded == migrate.Upgrade("schema_version 1", migrate.head())
        assert expected_listing_from(store) == {key: EXPECTED[key] for key in
                                                ("calls_for", "calls_in_progress", "recording_for")}
    finally:
        store.close()
    assert rows_of(url) == v1_rows  # every call, leg and voicemail, unchanged
    assert schema_differences(url) == []
    assert schema_version_of(url) == 2


@pytest.mark.parametrize("v1_database", ["v1_sqlite", "v1_postgresql"])
def test_get_calls_after_the_upgrade_at_start_is_what_version_1_answered(v1_database: str, tmp_path: Path,
                                                                         request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(v1_database)
    assert listed_by_get_calls(tmp_path / "team", url) == EXPECTED["get_calls"]
    assert schema_version_of(url) == 2  # the app's start upgraded it


# --------------------------------------------------------------------------- newer than this code


def test_a_revision_this_code_does_not_know_stops_it(database_url: str) -> None:
    Store(database_url).close()
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    try:
        with pytest.raises(SchemaTooNew) as raised:
            Store(database_url)
        message = str(raised.value)
        assert f"at revision 0099, which this Shetphone does not know (its newest is {migrate.head()})" in message
        assert "\n" not in message
        with engine.connect() as conn:  # untouched
            assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == "0099"
    finally:
        engine.dispose()


def test_a_schema_version_above_1_without_alembic_stops_it(v1_sqlite: str) -> None:
    engine = sa.create_engine(v1_sqlite, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE schema_version SET version = 3"))
    try:
        with pytest.raises(SchemaTooNew, match="at schema version 3 without Alembic's revision"):
            Store(v1_sqlite)
        with engine.connect() as conn:
            assert not sa.inspect(conn).has_table("alembic_version")
    finally:
        engine.dispose()


def test_a_later_revision_runs_once_and_older_code_then_refuses(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the next schema change will do: a revision file, run at the next start, and only once."""
    Store(database_url).close()
    newest = migrate.head()
    later = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, later, ignore=shutil.ignore_patterns("__pycache__"))
    (later / "versions" / "0900_notes.py").write_text(
        '"""Calls get notes."""\n'
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        f'revision = "0900"\ndown_revision = "{newest}"\nbranch_labels = None\ndepends_on = None\n\n\n'
        "def upgrade():\n"
        '    with op.batch_alter_table("calls") as batch:\n'
        '        batch.add_column(sa.Column("notes", sa.String(200)))\n\n\n'
        "def downgrade():\n"
        '    with op.batch_alter_table("calls") as batch:\n'
        '        batch.drop_column("notes")\n',
        encoding="utf-8",
    )
    monkeypatch.setattr(migrate, "MIGRATIONS", later)
    upgrades = []
    for _ in range(2):  # a second run of the revision would fail: the column exists
        store = Store(database_url)
        upgrades.append(store.upgraded)
        open_inbound(store.calls, f"CA{len(upgrades)}")  # the call log still works on the new table
        store.close()
    assert upgrades == [migrate.Upgrade(newest, "0900"), migrate.Upgrade("0900", "0900")]
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        assert "notes" in {column["name"] for column in sa.inspect(conn).get_columns("calls")}
    engine.dispose()

    monkeypatch.undo()  # this code again, which knows only up to its own newest
    with pytest.raises(SchemaTooNew, match="at revision 0900"):
        Store(database_url)


# --------------------------------------------------------------------------- several at once

STARTER = """
import sys
sys.path.insert(0, {root!r})
from shetphone.store import Store
store = Store(sys.argv[1])
print(store.upgraded.before, store.upgraded.after)
store.close()
"""


@pytest.mark.parametrize("source", ["fresh", "version 1"])
def test_processes_starting_at_once_upgrade_the_database_once(source: str, database_url: str,
                                                              tmp_path: Path, request) -> None:
    if source == "version 1":
        database_url = request.getfixturevalue("v1_postgresql" if "postgresql" in database_url else "v1_sqlite")
    script = STARTER.format(root=str(ROOT))
    starters = [
        subprocess.Popen([sys.executable, "-c", script, database_url], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outcomes = []
    for starter in starters:
        out, err = starter.communicate(timeout=120)
        assert starter.returncode == 0, err
        outcomes.append(tuple(out.split()))
    before = "None" if source == "fresh" else "schema_version"
    upgraded = [outcome for outcome in outcomes if outcome[0] != migrate.head()]
    assert len(upgraded) == 1 and upgraded[0][0] == before  # one did it; the others found it done
    assert all(outcome[-1] == migrate.head() for outcome in outcomes)
    assert schema_differences(database_url) == []
