"""Make ``shetphone-v1.sqlite3``: a call log written by Shetphone at schema version 1.

The store's migration tests upgrade a copy of that file (and the same rows in
PostgreSQL) and check that every call, leg and voicemail is still there and
listed exactly as the version-1 code listed it. So the file, and what the
version-1 code listed from it, must come from the version-1 code itself, not
from a re-creation of its schema:

- ``shetphone-v1.sqlite3``: made by the version-1 ``CallLog`` (``shetphone/calllog.py``,
  hand-written ``schema_version`` table at 1), from the calls below;
- ``shetphone-v1.expected.json``: what that code answered: ``calls_for`` and
  ``calls_in_progress`` for each user, ``recording_for`` each recording, and
  ``GET /calls`` through the version-1 app, logged in as each user;
- ``shetphone-v1.postgresql.sql``: the DDL the version-1 code runs on an empty
  PostgreSQL database (``metadata.create_all``), so the PostgreSQL test builds
  exactly that schema and copies the rows into it.

This script only runs against the version-1 code: the commit that added it
changed nothing else. To make the files again::

    git worktree add /tmp/shetphone-v1 $(git log --diff-filter=A --format=%h -- tests/data/make_v1_database.py)
    cd /tmp/shetphone-v1 && ln -s /path/to/.venv .venv && .venv/bin/python tests/data/make_v1_database.py

The team (users, numbers) is tests/conftest.py's, as the tests use it.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import sqlalchemy as sa  # noqa: E402
from conftest import login, make_team_files  # noqa: E402

from shetphone import calllog, create_app  # noqa: E402
from shetphone.settings import load_settings  # noqa: E402

DATABASE = HERE / "shetphone-v1.sqlite3"
EXPECTED = HERE / "shetphone-v1.expected.json"
POSTGRESQL_DDL = HERE / "shetphone-v1.postgresql.sql"

ALICE_NUMBER = "+441595000001"  # rings alice and bob
DISCORD_NUMBER = "+441595000002"
CAROL_NUMBER = "+441595000004"
ALICE_CALLER_ID = "+15005550006"
CALLER = "+447700900123"
START = datetime(2026, 11, 22, 16, 0, 0, tzinfo=UTC)
# When the listing was taken: the call in progress is younger than 24 hours.
LISTED_AT = START + timedelta(minutes=30)
USERS = ("alice", "bob", "carol")


def sid(kind: str, n: int) -> str:
    return f"{kind}{n:032x}"


def timestamp(moment: datetime) -> str:
    return moment.strftime("%a, %d %b %Y %H:%M:%S +0000")


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def status(log: calllog.CallLog, clock: Clock, call_sid: str, call_status: str, sequence: int,
           parent: str | None = None, to: str = "client:alice", from_: str = CALLER,
           duration: int | None = None) -> None:
    form = {
        "CallSid": call_sid,
        "CallStatus": call_status,
        "SequenceNumber": str(sequence),
        "Timestamp": timestamp(clock.now),
        "From": from_,
        "To": to,
        "Direction": "outbound-dial" if parent else "inbound",
    }
    if parent:
        form["ParentCallSid"] = parent
    if duration is not None:
        form["CallDuration"] = str(duration)
    assert log.record_status(form) is not None, form


def outbound(log: calllog.CallLog, clock: Clock, n: int, client: str, number: str, to: str,
             steps: list[tuple[str, int]], duration: int | None = None) -> None:
    """A call from a browser (root ``n + 1``) and the dialled leg (``n + 2``) through ``steps``."""
    root, dest = sid("CA", n + 1), sid("CA", n + 2)
    log.open_call(root, direction="outbound", number=number, from_=number, to=to, client=client)
    for leg_status, sequence in steps:
        final = leg_status == "completed"
        clock.now += timedelta(seconds=duration if final and duration else 3)
        status(log, clock, dest, leg_status, sequence, root, to=to, from_=number, duration=duration if final else None)


def fill(log: calllog.CallLog, clock: Clock) -> None:
    # 1. Inbound, answered by alice; bob's leg canceled.
    root, alice, bob = sid("CA", 0x101), sid("CA", 0x102), sid("CA", 0x103)
    log.open_call(root, direction="inbound", number=ALICE_NUMBER, from_=CALLER, to=ALICE_NUMBER, client=None)
    for sequence, leg_status in enumerate(["initiated", "ringing"]):
        status(log, clock, alice, leg_status, sequence, root)
        status(log, clock, bob, leg_status, sequence, root, to="client:bob")
    clock.now += timedelta(seconds=4)
    status(log, clock, alice, "in-progress", 2, root)
    status(log, clock, bob, "canceled", 2, root, to="client:bob")
    clock.now += timedelta(seconds=42)
    status(log, clock, alice, "completed", 3, root, duration=42)
    log.record_dial_outcome(root, "completed")
    status(log, clock, root, "completed", 0, duration=47)

    # 2. Inbound, nobody answers: voicemail.
    clock.now = START + timedelta(minutes=5)
    root, alice, bob = sid("CA", 0x201), sid("CA", 0x202), sid("CA", 0x203)
    log.open_call(root, direction="inbound", number=ALICE_NUMBER, from_="+447700900456", to=ALICE_NUMBER,
                  client=None)
    for sequence, leg_status in enumerate(["initiated", "ringing", "no-answer"]):
        status(log, clock, alice, leg_status, sequence, root, from_="+447700900456")
        status(log, clock, bob, leg_status, sequence, root, to="client:bob", from_="+447700900456")
        clock.now += timedelta(seconds=10)
    log.record_dial_outcome(root, "no-answer")
    status(log, clock, root, "in-progress", 0, from_="+447700900456", to=ALICE_NUMBER)
    clock.now += timedelta(seconds=17)
    recording = sid("RE", 0x201)
    stored = log.record_voicemail(root, recording_sid=recording, duration=17,
                                  recording_url=f"https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/{recording}")
    assert stored is not None
    status(log, clock, root, "completed", 1, from_="+447700900456", to=ALICE_NUMBER, duration=38)

    # 3. Outbound from alice's browser, answered; 4. from bob on the shared number, busy.
    clock.now = START + timedelta(minutes=10)
    outbound(log, clock, 0x300, "alice", ALICE_CALLER_ID, "+441632960001",
             [("initiated", 0), ("ringing", 1), ("in-progress", 2), ("completed", 3)], duration=120)
    clock.now = START + timedelta(minutes=12)
    outbound(log, clock, 0x400, "bob", ALICE_NUMBER, "+441632960002", [("ringing", 1), ("busy", 2)])

    # 5. Inbound to carol, the caller hangs up while it rings: missed, canceled.
    clock.now = START + timedelta(minutes=15)
    root, carol = sid("CA", 0x501), sid("CA", 0x502)
    log.open_call(root, direction="inbound", number=CAROL_NUMBER, from_=CALLER, to=CAROL_NUMBER, client=None)
    status(log, clock, carol, "ringing", 1, root, to="client:carol")
    status(log, clock, carol, "canceled", 2, root, to="client:carol")

    # 6. Inbound into Discord (no <Dial> children), finished.
    clock.now = START + timedelta(minutes=18)
    root = sid("CA", 0x601)
    log.open_call(root, direction="inbound", number=DISCORD_NUMBER, from_=CALLER, to=DISCORD_NUMBER, client=None)
    status(log, clock, root, "in-progress", 1, to=DISCORD_NUMBER)
    status(log, clock, root, "completed", 2, to=DISCORD_NUMBER, duration=95)

    # 7. Inbound, still in progress: bob answered, alice's leg canceled.
    clock.now = START + timedelta(minutes=25)
    root, alice, bob = sid("CA", 0x701), sid("CA", 0x702), sid("CA", 0x703)
    log.open_call(root, direction="inbound", number=ALICE_NUMBER, from_="+447700900789", to=ALICE_NUMBER,
                  client=None)
    status(log, clock, root, "in-progress", 0, from_="+447700900789", to=ALICE_NUMBER)
    status(log, clock, alice, "ringing", 1, root, from_="+447700900789")
    status(log, clock, bob, "ringing", 1, root, to="client:bob", from_="+447700900789")
    clock.now += timedelta(seconds=6)
    status(log, clock, bob, "in-progress", 2, root, to="client:bob", from_="+447700900789")
    status(log, clock, alice, "canceled", 2, root, from_="+447700900789")

    # 8. Outbound from alice, still ringing.
    clock.now = START + timedelta(minutes=28)
    outbound(log, clock, 0x800, "alice", ALICE_CALLER_ID, "+441632960003", [("initiated", 0), ("ringing", 1)])

def listings(log: calllog.CallLog, numbers_of: dict[str, list[str]]) -> dict:
    with log.engine.connect() as conn:
        recording_sids = sorted(conn.scalars(sa.select(calllog.recordings.c.recording_sid)))
    return {
        "calls_for": {user: log.calls_for(numbers_of[user], user, 50) for user in USERS},
        "calls_in_progress": {user: log.calls_in_progress(numbers_of[user], user) for user in USERS},
        "recording_for": {sid_: list(log.recording_for(sid_)) for sid_ in recording_sids},
    }


def listed_through_the_app(database: Path) -> tuple[dict, dict[str, list[str]]]:
    """GET /calls as each user, from the version-1 app serving a copy of the file."""
    with tempfile.TemporaryDirectory(prefix="shetphone-v1-app-") as workdir:
        files = make_team_files(Path(workdir), extra="keep_days = 36500")  # never pruned by the clock
        shutil.copy(database, files.root / "shetphone.sqlite3")  # the ini's `database = shetphone.sqlite3`
        app = create_app(load_settings(files.root, files.environ), async_mode="threading",
                         overrides={"TESTING": True})
        team = app.extensions["shetphone"]
        try:
            numbers_of = {user: sorted(team.directory.numbers_of(user)) for user in USERS}
            listed = {}
            for user in USERS:
                client = app.test_client()
                assert login(client, user).status_code == 302
                response = client.get("/calls?limit=50")
                assert response.status_code == 200
                listed[user] = response.get_json()
        finally:
            team.calllog.close()
    return listed, numbers_of


def postgresql_ddl() -> str:
    """What ``metadata.create_all`` runs on an empty PostgreSQL database, one statement a paragraph."""
    statements: list[str] = []

    def record(sql, *_multiparams, **_params) -> None:
        text = str(sql.compile(dialect=engine.dialect)).strip()
        statements.append("\n".join(line.rstrip() for line in text.splitlines()))

    engine = sa.create_mock_engine("postgresql+psycopg://", record)
    calllog.metadata.create_all(engine, checkfirst=False)
    return ";\n\n".join(statements) + ";\n"


def main() -> None:
    assert calllog.SCHEMA_VERSION == 1, "run this against the version-1 code (see the docstring)"
    with tempfile.TemporaryDirectory(prefix="shetphone-v1-") as workdir:
        made = Path(workdir) / "shetphone.sqlite3"
        clock = Clock()
        log = calllog.CallLog(f"sqlite:///{made}", clock=clock)
        fill(log, clock)
        log.close()
        # One file, no -wal beside it: fold the log into the database.
        with sa.create_engine(f"sqlite:///{made}", poolclass=sa.NullPool).connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.exec_driver_sql("VACUUM")
        shutil.copy(made, DATABASE)

    through_the_app, numbers_of = listed_through_the_app(DATABASE)
    listed_at = Clock()
    listed_at.now = LISTED_AT
    log = calllog.CallLog(f"sqlite:///{DATABASE}", clock=listed_at)
    try:
        expected = {
            "about": "What the schema-version-1 code listed from shetphone-v1.sqlite3 (see make_v1_database.py)",
            "listed_at": calllog.iso_utc(LISTED_AT),
            "numbers_of": numbers_of,
            **listings(log, numbers_of),
            "get_calls": through_the_app,
        }
    finally:
        log.close()
    with sa.create_engine(f"sqlite:///{DATABASE}", poolclass=sa.NullPool).connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    for leftover in (DATABASE.with_name(DATABASE.name + "-wal"), DATABASE.with_name(DATABASE.name + "-shm")):
        leftover.unlink(missing_ok=True)
    EXPECTED.write_text(json.dumps(expected, indent=2) + "\n", encoding="utf-8")
    POSTGRESQL_DDL.write_text(postgresql_ddl(), encoding="utf-8")
    print(f"wrote {DATABASE} ({DATABASE.stat().st_size} bytes), {EXPECTED.name}, {POSTGRESQL_DDL.name}")


if __name__ == "__main__":
    main()
