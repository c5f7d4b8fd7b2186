"""The call log against SQLite and a throwaway PostgreSQL cluster.

Every test runs on both backends. The PostgreSQL cluster is started once per
session from Debian's ``postgresql`` package on a free loopback port; when the
server binaries are missing the tests fail (CI must install them, never skip).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from shetphone import calllog
from shetphone.calllog import CallLog

ALICE_NUMBER = "+441595000001"
BOB_NUMBER = "+441595000002"
CALLER = "+447700900123"
START = datetime(2026, 11, 22, 16, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = START):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


# --------------------------------------------------------------------------- backends


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresCluster:
    """initdb + pg_ctl in a temporary directory, as the postgres user when we are root."""

    def __init__(self) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not binaries:
            pytest.fail(
                "PostgreSQL server binaries are missing (/usr/lib/postgresql/*/bin/initdb): "
                "apt-get install -y postgresql; the call log tests run against PostgreSQL too",
                pytrace=False,
            )
        self.bin = os.path.dirname(binaries[-1])
        self.root = tempfile.mkdtemp(prefix="shetphone-pg-")
        self.data = os.path.join(self.root, "data")
        self.port = _free_port()
        self.as_postgres = os.geteuid() == 0  # the server refuses to run as root
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._databases = count()
        self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -F -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.root, "log"), "-o", options, "-w", "start")
        self.admin = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)

    def _run(self, program: str, *args: str) -> None:
        command = [os.path.join(self.bin, program), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
        if result.returncode != 0:
            pytest.fail(f"{program} failed: {result.stdout}{result.stderr}", pytrace=False)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        name = f"calllog_{next(self._databases)}"
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        return self.url(name)

    def stop(self) -> None:
        self.admin.dispose()
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/instance/shetphone.sqlite3"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def log(database_url: str, clock: FakeClock) -> Iterator[CallLog]:
    store = CallLog(database_url, keep_days=90, clock=clock)
    yield store
    store.close()


# --------------------------------------------------------------------------- helpers


def callback(call_sid: str, status: str, sequence: int, parent: str | None = None, **extra: str) -> dict[str, str]:
    """A status callback form as Twilio posts it."""
    form = {
        "CallSid": call_sid,
        "CallStatus": status,
        "SequenceNumber": str(sequence),
        "Timestamp": f"Sun, 22 Nov 2026 16:00:{sequence % 60:02d} +0000",
        "From": extra.pop("From", CALLER),
        "To": extra.pop("To", "client:alice"),
        "Direction": "outbound-dial" if parent else "inbound",
        **extra,
    }
    if parent:
        form["ParentCallSid"] = parent
    return form


def open_inbound(log: CallLog, call_sid: str, number: str = ALICE_NUMBER, caller: str = CALLER) -> None:
    log.open_call(call_sid, direction="inbound", number=number, from_=caller, to=number, client=None)


def open_outbound(log: CallLog, call_sid: str, client: str, number: str, to: str) -> None:
    log.open_call(call_sid, direction="outbound", number=number, from_=number, to=to, client=client)


def only_call(log: CallLog, numbers: list[str], client: str | None = None) -> dict:
    listed = log.calls_for(numbers, client)
    assert len(listed) == 1, listed
    return listed[0]


# --------------------------------------------------------------------------- call sequences


def test_ring_group_where_alice_answers_and_bob_is_canceled(log: CallLog) -> None:
    open_inbound(log, "CAroot")
    first = log.record_status(callback("CAalice", "initiated", 0, parent="CAroot"))
    assert first == {
        "call_sid": "CAalice",
        "parent_call_sid": "CAroot",
        "number": ALICE_NUMBER,
        "direction": "inbound",
        "from": CALLER,
        "to": ALICE_NUMBER,
        "status": "initiated",
        "timestamp": "2026-11-22T16:00:00Z",
        "sequence": 0,
    }
    log.record_status(callback("CAbob", "initiated", 0, parent="CAroot", To="client:bob"))
    assert log.record_status(callback("CAalice", "ringing", 1, parent="CAroot"))["status"] == "ringing"
    assert log.record_status(callback("CAbob", "ringing", 1, parent="CAroot", To="client:bob"))["status"] == "ringing"
    assert only_call(log, [ALICE_NUMBER])["status"] == "ringing"

    assert log.record_status(callback("CAalice", "in-progress", 2, parent="CAroot"))["status"] == "in-progress"
    assert log.record_status(callback("CAbob", "canceled", 2, parent="CAroot", To="client:bob"))["status"] == "canceled"
    live = log.calls_in_progress([ALICE_NUMBER])
    assert [(p["call_sid"], p["status"]) for p in live] == [("CAalice", "in-progress")]
    entry = only_call(log, [ALICE_NUMBER])
    assert (entry["status"], entry["missed"], entry["duration"]) == ("in-progress", False, 0)

    done = log.record_status(callback("CAalice", "completed", 3, parent="CAroot", CallDuration="42"))
    assert done["status"] == "completed" and done["sequence"] == 3
    log.record_dial_outcome("CAroot", "completed")
    assert log.calls_in_progress([ALICE_NUMBER]) == []
    assert only_call(log, [ALICE_NUMBER]) == {
        "call_sid": "CAroot",
        "direction": "inbound",
        "from": CALLER,
        "to": ALICE_NUMBER,
        "number": ALICE_NUMBER,
        "status": "completed",
        "started_at": "2026-11-22T16:00:00Z",
        "duration": 42,
        "voicemail_url": None,
        "recording_sid": None,
        "missed": False,
    }


def test_repeats_and_callbacks_out_of_order_change_nothing(log: CallLog) -> None:
    open_inbound(log, "CAroot")
    assert log.record_status(callback("CAleg", "ringing", 1, parent="CAroot")) is not None
    assert log.record_status(callback("CAleg", "ringing", 1, parent="CAroot")) is None  # Twilio retried
    assert log.record_status(callback("CAleg", "ringing", 2, parent="CAroot")) is None  # same status again
    assert log.record_status(callback("CAleg", "initiated", 0, parent="CAroot")) is None  # older sequence
    assert log.record_status(callback("CAleg", "completed", 4, parent="CAroot", CallDuration="7"))["status"] == (
        "completed"
    )
    assert log.record_status(callback("CAleg", "in-progress", 3, parent="CAroot")) is None  # late, older
    assert log.record_status(callback("CAleg", "ringing", 5, parent="CAroot")) is None  # never backwards
    assert log.record_status(callback("CAleg", "failed", 6, parent="CAroot")) is None  # terminal is final
    entry = only_call(log, [ALICE_NUMBER])
    assert (entry["status"], entry["duration"], entry["missed"]) == ("completed", 7, False)


def test_a_callback_without_sequence_number_is_ordered_by_status(log: CallLog) -> None:
    open_inbound(log, "CAroot")
    form = callback("CAleg", "ringing", 0, parent="CAroot")
    del form["SequenceNumber"]
    assert log.record_status(form)["sequence"] is None
    assert log.record_status(form) is None
    assert log.record_status({**form, "CallStatus": "no-answer"})["status"] == "no-answer"


def test_inbound_call_nobody_answers_goes_to_voicemail(log: CallLog) -> None:
    open_inbound(log, "CAroot")
    for sequence, status in enumerate(["initiated", "ringing", "no-answer"]):
        assert log.record_status(callback("CAalice", status, sequence, parent="CAroot"))["status"] == status
        assert log.record_status(callback("CAbob", status, sequence, parent="CAroot", To="client:bob"))
    log.record_dial_outcome("CAroot", "no-answer")
    # The root leg is answered by <Record>: that must not make the call look answered.
    assert log.record_status(callback("CAroot", "in-progress", 0))["parent_call_sid"] is None
    assert only_call(log, [ALICE_NUMBER])["missed"] is True
    voicemail = log.record_voicemail(
        "CAroot", recording_sid="RE1", recording_url="https://api.twilio.com/RE1", duration=9
    )
    assert voicemail == {
        "call_sid": "CAroot",
        "number": ALICE_NUMBER,
        "from": CALLER,
        "duration": 9,
        "recording_sid": "RE1",
    }
    assert (
        log.record_voicemail("CAroot", recording_sid="RE1", recording_url="https://api.twilio.com/RE1", duration=9)
        is None
    )
    log.record_status(callback("CAroot", "completed", 1, CallDuration="15"))

    entry = only_call(log, [ALICE_NUMBER])
    assert (entry["status"], entry["missed"], entry["duration"], entry["recording_sid"]) == (
        "no-answer",
        True,
        0,
        "RE1",
    )
    assert log.recording_for("RE1") == calllog.Recording("CAroot", ALICE_NUMBER, None, "https://api.twilio.com/RE1")
    assert log.recording_for("REunknown") is None
    assert log.record_voicemail("CAroot", recording_sid="", recording_url="https://x", duration=1) is None
    assert log.calls_in_progress([ALICE_NUMBER]) == []


def test_inbound_call_the_caller_abandons_is_missed_and_canceled(log: CallLog) -> None:
    open_inbound(log, "CAroot")
    log.record_status(callback("CAalice", "ringing", 1, parent="CAroot"))
    log.record_status(callback("CAalice", "canceled", 2, parent="CAroot"))
    entry = only_call(log, [ALICE_NUMBER])
    assert (entry["status"], entry["missed"]) == ("canceled", True)


def test_outbound_call_from_a_browser(log: CallLog) -> None:
    open_outbound(log, "CAout", client="alice", number=ALICE_NUMBER, to="+441632960001")
    assert only_call(log, [], "alice")["status"] == "initiated"
    child = {"From": ALICE_NUMBER, "To": "+441632960001"}
    payloads = [
        log.record_status(callback("CAdest", status, sequence, parent="CAout", **child))
        for sequence, status in enumerate(["initiated", "ringing", "in-progress"])
    ]
    assert [p["status"] for p in payloads] == ["initiated", "ringing", "in-progress"]
    assert {(p["number"], p["direction"], p["from"], p["to"]) for p in payloads} == {
        (ALICE_NUMBER, "outbound", ALICE_NUMBER, "+441632960001")
    }
    assert [p["call_sid"] for p in log.calls_in_progress([], "alice")] == ["CAdest"]
    log.record_status(callback("CAdest", "completed", 3, parent="CAout", CallDuration="120", **child))
    entry = only_call(log, [], "alice")
    assert (entry["direction"], entry["status"], entry["duration"], entry["missed"]) == (
        "outbound",
        "completed",
        120,
        False,
    )
    assert log.calls_in_progress([], "alice") == []


def test_outbound_call_nobody_answers_is_not_missed(log: CallLog) -> None:
    open_outbound(log, "CAout", client="alice", number=ALICE_NUMBER, to="+441632960001")
    log.record_status(callback("CAdest", "ringing", 1, parent="CAout"))
    log.record_status(callback("CAdest", "busy", 2, parent="CAout"))
    entry = only_call(log, [ALICE_NUMBER])
    assert (entry["status"], entry["missed"]) == ("busy", False)


def test_call_without_dial_children_takes_its_root_legs_status(log: CallLog) -> None:
    open_inbound(log, "CAdiscord", number=BOB_NUMBER)
    log.record_status(callback("CAdiscord", "in-progress", 1))
    assert only_call(log, [BOB_NUMBER])["status"] == "in-progress"
    log.record_status(callback("CAdiscord", "completed", 2, CallDuration="33"))
    entry = only_call(log, [BOB_NUMBER])
    assert (entry["status"], entry["duration"], entry["missed"]) == ("completed", 33, False)


def test_unknown_calls_are_ignored(log: CallLog) -> None:
    assert log.record_status(callback("CAstranger", "ringing", 1)) is None
    assert log.record_status(callback("CAchild", "ringing", 1, parent="CAstranger")) is None
    assert log.record_voicemail("CAstranger", recording_sid="RE9", recording_url="https://x", duration=1) is None
    log.record_dial_outcome("CAstranger", "no-answer")
    assert log.calls_for([ALICE_NUMBER], "alice") == []
    assert log.calls_in_progress([ALICE_NUMBER], "alice") == []
    assert log.recording_for("RE9") is None


def test_unknown_status_is_ignored(log: CallLog) -> None:
    open_inbound(log, "CAroot")
    assert log.record_status(callback("CAleg", "teleported", 1, parent="CAroot")) is None
    assert log.calls_in_progress([ALICE_NUMBER]) == []


def test_open_call_is_idempotent(log: CallLog, clock: FakeClock) -> None:
    open_inbound(log, "CAroot")
    clock.advance(seconds=5)
    open_inbound(log, "CAroot", caller="+447700900999")  # a retry must not rewrite the call
    entry = only_call(log, [ALICE_NUMBER])
    assert (entry["from"], entry["started_at"]) == (CALLER, "2026-11-22T16:00:00Z")


def test_a_failed_write_leaves_nothing_half_written(log: CallLog, monkeypatch: pytest.MonkeyPatch) -> None:
    open_inbound(log, "CAroot")

    def broken(*args: object) -> None:  # fails after the leg was written, before the summary
        raise sa.exc.OperationalError("UPDATE calls", {}, Exception("disk I/O error"))

    monkeypatch.setattr(CallLog, "_write_summary", staticmethod(broken))
    with pytest.raises(sa.exc.OperationalError):
        log.record_status(callback("CAleg", "ringing", 1, parent="CAroot"))
    monkeypatch.undo()
    assert log.calls_in_progress([ALICE_NUMBER]) == []  # the leg insert was rolled back
    assert log.record_status(callback("CAleg", "ringing", 1, parent="CAroot"))["status"] == "ringing"  # the retry


def test_a_ring_group_nobody_answers_says_why(log: CallLog) -> None:
    open_inbound(log, "CAroot")
    log.record_status(callback("CAbob", "initiated", 0, parent="CAroot"))
    log.record_status(callback("CAalice", "busy", 1, parent="CAroot"))  # alice declined
    assert only_call(log, [ALICE_NUMBER])["status"] == "initiated"  # bob still has a chance
    log.record_status(callback("CAbob", "ringing", 1, parent="CAroot"))
    assert only_call(log, [ALICE_NUMBER])["status"] == "ringing"
    log.record_status(callback("CAbob", "no-answer", 2, parent="CAroot"))
    entry = only_call(log, [ALICE_NUMBER])
    assert (entry["status"], entry["missed"]) == ("no-answer", True)


def test_the_dial_outcome_stands_in_for_lost_leg_callbacks(log: CallLog) -> None:
    open_inbound(log, "CAroot")
    log.record_dial_outcome("CAroot", "answered")
    assert only_call(log, [ALICE_NUMBER])["status"] == "in-progress"
    log.record_dial_outcome("CAroot", "completed")
    entry = only_call(log, [ALICE_NUMBER])
    assert (entry["status"], entry["missed"]) == ("completed", False)
    log.record_dial_outcome("CAroot", "nonsense")  # ignored, not stored
    assert only_call(log, [ALICE_NUMBER])["status"] == "completed"


def test_a_grandchild_leg_reaches_its_root(log: CallLog) -> None:
    open_inbound(log, "CAroot")
    log.record_status(callback("CAchild", "in-progress", 1, parent="CAroot"))
    payload = log.record_status(callback("CAgrandchild", "ringing", 1, parent="CAchild"))
    assert (payload["parent_call_sid"], payload["number"]) == ("CAchild", ALICE_NUMBER)


def test_a_callback_without_timestamp_is_stamped_by_the_clock(log: CallLog, clock: FakeClock) -> None:
    open_inbound(log, "CAroot")
    clock.advance(seconds=3)
    form = callback("CAleg", "ringing", 1, parent="CAroot")
    form["Timestamp"] = "not a date"
    assert log.record_status(form)["timestamp"] == "2026-11-22T16:00:03Z"
    form = callback("CAleg", "in-progress", 2, parent="CAroot")
    form["Timestamp"] = "Sun, 22 Nov 2026 17:03:27 +0100"  # converted to UTC
    assert log.record_status(form)["timestamp"] == "2026-11-22T16:03:27Z"


def _legs(*states: tuple[str, str, int]) -> list[calllog._LegState]:
    return [
        calllog._LegState(sid, status, calllog.STATUS_RANK[status], status in ("in-progress", "completed"), duration)
        for sid, status, duration in states
    ]


@pytest.mark.parametrize(
    ("leg_states", "dial_status", "summary"),
    [
        ([], None, ("initiated", False, 0)),
        (_legs(("ROOT", "in-progress", 0)), None, ("in-progress", True, 0)),  # e.g. streamed to Discord
        (_legs(("ROOT", "completed", 61)), None, ("completed", True, 61)),
        (_legs(("ROOT", "in-progress", 0), ("A", "ringing", 0)), None, ("ringing", False, 0)),
        (_legs(("A", "completed", 30), ("B", "canceled", 0)), None, ("completed", True, 30)),
        (_legs(("A", "in-progress", 0), ("B", "canceled", 0)), None, ("in-progress", True, 0)),
        (_legs(("A", "failed", 0), ("B", "canceled", 0)), None, ("canceled", False, 0)),
        (_legs(("A", "failed", 0)), None, ("failed", False, 0)),
        (_legs(("ROOT", "completed", 40), ("A", "no-answer", 0)), "no-answer", ("no-answer", False, 0)),
        ([], "busy", ("busy", False, 0)),
        ([], "completed", ("completed", True, 0)),
    ],
)
def test_summarise(leg_states: list, dial_status: str | None, summary: tuple[str, bool, int]) -> None:
    assert calllog.summarise("ROOT", leg_states, dial_status) == summary


# --------------------------------------------------------------------------- who sees what


def test_two_users_never_see_each_others_calls(log: CallLog) -> None:
    open_inbound(log, "CAtoalice", number=ALICE_NUMBER)
    open_inbound(log, "CAtobob", number=BOB_NUMBER)
    open_outbound(log, "CAbyalice", client="alice", number="+15005550006", to="+441632960001")
    open_outbound(log, "CAbybob", client="bob", number="+15005550007", to="+441632960002")
    for root in ("CAtoalice", "CAtobob", "CAbyalice", "CAbybob"):
        log.record_status(callback(root + "-leg", "ringing", 1, parent=root))

    alice_calls = {c["call_sid"] for c in log.calls_for([ALICE_NUMBER], "alice")}
    bob_calls = {c["call_sid"] for c in log.calls_for([BOB_NUMBER], "bob")}
    assert alice_calls == {"CAtoalice", "CAbyalice"}
    assert bob_calls == {"CAtobob", "CAbybob"}
    assert {p["call_sid"] for p in log.calls_in_progress([ALICE_NUMBER], "alice")} == {
        "CAtoalice-leg",
        "CAbyalice-leg",
    }
    assert {p["call_sid"] for p in log.calls_in_progress([BOB_NUMBER], "bob")} == {"CAtobob-leg", "CAbybob-leg"}
    assert log.calls_for([], None) == []
    assert log.calls_in_progress([], None) == []


# --------------------------------------------------------------------------- persistence


def test_the_log_survives_reopening(database_url: str, clock: FakeClock) -> None:
    first = CallLog(database_url, clock=clock)
    open_inbound(first, "CAroot")
    first.record_status(callback("CAleg", "in-progress", 2, parent="CAroot"))
    first.close()

    second = CallLog(database_url, clock=clock)
    try:
        assert only_call(second, [ALICE_NUMBER])["status"] == "in-progress"
        assert [p["call_sid"] for p in second.calls_in_progress([ALICE_NUMBER])] == ["CAleg"]
        assert second.record_status(callback("CAleg", "in-progress", 2, parent="CAroot")) is None  # still a repeat
        assert second.schema_version() == calllog.SCHEMA_VERSION
    finally:
        second.close()


def test_a_forked_worker_opens_its_own_connections(log: CallLog) -> None:
    """uWSGI forks workers after the app (and its store) was created."""
    open_inbound(log, "CAroot")  # the parent now holds a pooled connection
    pid = os.fork()
    if pid == 0:  # the child: must not talk over the parent's connection
        try:
            ok = log.record_status(callback("CAleg", "ringing", 1, parent="CAroot")) is not None
        finally:
            os._exit(0 if ok else 1)
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert [p["call_sid"] for p in log.calls_in_progress([ALICE_NUMBER])] == ["CAleg"]  # the parent still works


def test_sqlite_creates_its_directory_and_uses_wal(tmp_path) -> None:
    path = tmp_path / "deep" / "er" / "calls.sqlite3"
    store = CallLog(f"sqlite:///{path}")
    try:
        assert path.exists()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == calllog.SQLITE_BUSY_TIMEOUT_MS
    finally:
        store.close()


def test_in_memory_sqlite_keeps_one_database() -> None:
    store = CallLog("sqlite://")
    open_inbound(store, "CAroot")
    assert only_call(store, [ALICE_NUMBER])["call_sid"] == "CAroot"
    store.close()


def test_a_version_2_migration_runs_once(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    CallLog(database_url).close()
    ran: list[int] = []

    def add_notes(conn: sa.Connection) -> None:
        ran.append(1)
        conn.execute(sa.text("ALTER TABLE calls ADD COLUMN notes VARCHAR(200)"))

    monkeypatch.setattr(calllog, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(calllog.MIGRATIONS, 2, add_notes)
    for _ in range(2):
        store = CallLog(database_url)
        assert store.schema_version() == 2
        store.close()
    assert ran == [1]
    with sa.create_engine(database_url).connect() as conn:
        assert "notes" in {column["name"] for column in sa.inspect(conn).get_columns("calls")}

    monkeypatch.setattr(calllog, "SCHEMA_VERSION", 1)
    with pytest.raises(calllog.SchemaTooNew):
        CallLog(database_url)


def test_several_writers_at_once(database_url: str, clock: FakeClock) -> None:
    """Separate stores (as separate processes would) write the same calls concurrently."""
    stores = [CallLog(database_url, clock=clock) for _ in range(4)]
    roots = [f"CAroot{i}" for i in range(20)]
    for root in roots:
        open_inbound(stores[0], root)
    applied: list[dict] = []
    errors: list[BaseException] = []

    def work(store: CallLog) -> None:
        try:
            for root in roots:
                for sequence, status in enumerate(["initiated", "ringing", "in-progress", "completed"]):
                    result = store.record_status(callback(root + "-leg", status, sequence, parent=root))
                    if result:
                        applied.append(result)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        # Writers race, so a step may be overtaken, but none is applied twice and every
        # leg ends completed exactly once.
        steps = [(p["call_sid"], p["sequence"]) for p in applied]
        assert len(steps) == len(set(steps))
        assert sorted(p["call_sid"] for p in applied if p["status"] == "completed") == sorted(r + "-leg" for r in roots)
        assert {c["status"] for c in stores[1].calls_for([ALICE_NUMBER], None)} == {"completed"}
    finally:
        for store in stores:
            store.close()


# --------------------------------------------------------------------------- pruning, listing


def test_prune_deletes_calls_older_than_keep_days(log: CallLog, clock: FakeClock) -> None:
    open_inbound(log, "CAold")
    log.record_status(callback("CAold-leg", "ringing", 1, parent="CAold"))  # never finished
    log.record_voicemail("CAold", recording_sid="REold", recording_url="https://x/REold", duration=3)
    clock.advance(days=89)
    open_inbound(log, "CAkept")
    clock.advance(days=1, seconds=1)  # CAold is now 90 days and a second old; CAkept one day

    assert log.prune() == 1
    assert [c["call_sid"] for c in log.calls_for([ALICE_NUMBER], None)] == ["CAkept"]
    assert log.recording_for("REold") is None
    with log.engine.connect() as conn:  # nothing of the old call is left behind
        assert conn.scalar(sa.select(sa.func.count()).select_from(calllog.legs)) == 0
        assert conn.scalar(sa.select(sa.func.count()).select_from(calllog.recordings)) == 0
    assert log.prune() == 0
    assert log.record_status(callback("CAold-leg", "completed", 2, parent="CAold")) is None


def test_prune_works_in_batches(log: CallLog, clock: FakeClock) -> None:
    log.import_calls(
        {
            "call_sid": f"CA{i:04d}",
            "direction": "inbound",
            "number": ALICE_NUMBER,
            "from": CALLER,
            "to": ALICE_NUMBER,
            "started_at": START - timedelta(days=100, minutes=i),
            "status": "no-answer",
        }
        for i in range(25)
    )
    open_inbound(log, "CArecent")
    assert log.prune(batch=10) == 25
    assert [c["call_sid"] for c in log.calls_for([ALICE_NUMBER], None)] == ["CArecent"]


def test_calls_in_progress_forgets_legs_older_than_any_call(log: CallLog, clock: FakeClock) -> None:
    open_inbound(log, "CAfirst")
    log.record_status(callback("CAfirst-leg", "ringing", 1, parent="CAfirst"))
    clock.advance(hours=1)
    open_inbound(log, "CAsecond")
    log.record_status(callback("CAsecond-leg", "in-progress", 2, parent="CAsecond"))
    assert [p["call_sid"] for p in log.calls_in_progress([ALICE_NUMBER])] == ["CAfirst-leg", "CAsecond-leg"]
    clock.advance(hours=23, seconds=1)  # the first call's final callback was lost
    assert [p["call_sid"] for p in log.calls_in_progress([ALICE_NUMBER])] == ["CAsecond-leg"]


def test_calls_for_limit_and_order(log: CallLog, clock: FakeClock) -> None:
    for i in range(6):
        if i % 2:
            open_inbound(log, f"CA{i}")
        else:
            open_outbound(log, f"CA{i}", client="alice", number="+15005550006", to="+441632960001")
        clock.advance(minutes=1)
    open_inbound(log, "CAsame-b")  # two calls in the same second: the SID breaks the tie
    open_inbound(log, "CAsame-a")

    listed = log.calls_for([ALICE_NUMBER], "alice", limit=4)
    assert [c["call_sid"] for c in listed] == ["CAsame-b", "CAsame-a", "CA5", "CA4"]
    assert [c["call_sid"] for c in log.calls_for([ALICE_NUMBER], "alice")] == [
        "CAsame-b", "CAsame-a", "CA5", "CA4", "CA3", "CA2", "CA1", "CA0",
    ]  # fmt: skip
    assert [c["call_sid"] for c in log.calls_for([ALICE_NUMBER], None, limit=2)] == ["CAsame-b", "CAsame-a"]
    assert [c["call_sid"] for c in log.calls_for([], "alice", limit=2)] == ["CA4", "CA2"]
    assert log.calls_for([ALICE_NUMBER], "alice", limit=0) == []
    # Placed by alice from a number she rings on: found by both walks, listed once.
    clock.advance(seconds=1)
    open_outbound(log, "CAboth", client="alice", number=ALICE_NUMBER, to="+441632960001")
    assert [c["call_sid"] for c in log.calls_for([ALICE_NUMBER], "alice", limit=3)] == [
        "CAboth",
        "CAsame-b",
        "CAsame-a",
    ]


def test_listing_100000_calls(log: CallLog) -> None:
    numbers = [ALICE_NUMBER, BOB_NUMBER, "+441595000003", "+441595000004"]
    clients = ["alice", "bob", "carol"]
    entries = []
    for i in range(100_000):
        outbound = i % 3 == 0
        entries.append(
            {
                "call_sid": f"CA{i:032d}",
                "direction": "outbound" if outbound else "inbound",
                "number": numbers[i % 4],
                "from": numbers[i % 4] if outbound else CALLER,
                "to": "+441632960001" if outbound else numbers[i % 4],
                "client": clients[i % 3] if outbound else None,
                # Two calls in every second, so the tie-break on the SID is exercised too.
                "started_at": START - timedelta(seconds=(i * 7919) % 50_000),
                "status": "completed",
                "answered": True,
                "duration": i % 600,
            }
        )
    # Oldest first, as calls arrive (B-tree appends keep the bulk insert fast); within a
    # second, ascending SIDs, the opposite of the order the listing must give.
    entries.sort(key=lambda e: (e["started_at"], e["call_sid"]))
    assert log.import_calls(entries) == 100_000

    def expected(user_numbers: set[str], client: str | None, limit: int) -> list[str]:
        mine = [e for e in entries if e["number"] in user_numbers or (client and e["client"] == client)]
        mine.sort(key=lambda e: (e["started_at"], e["call_sid"]), reverse=True)
        return [e["call_sid"] for e in mine[:limit]]

    for user_numbers, client in (({ALICE_NUMBER}, "carol"), ({BOB_NUMBER, "+441595000003"}, None), (set(), "bob")):
        listed = log.calls_for(user_numbers, client, limit=50)
        assert [c["call_sid"] for c in listed] == expected(user_numbers, client, 50)
    assert len(log.calls_for(numbers, None, limit=500)) == 500


# --------------------------------------------------------------------------- properties

LEG_LIFE = ["queued", "initiated", "ringing", "in-progress", "completed"]
_roots = count()


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(deliveries=st.lists(st.integers(min_value=0, max_value=len(LEG_LIFE) - 1), min_size=1, max_size=12))
def test_any_delivery_order_only_moves_forward(log: CallLog, deliveries: list[int]) -> None:
    """Twilio may repeat and reorder callbacks: what is emitted only ever moves forward."""
    root = f"CAprop{next(_roots)}"
    open_inbound(log, root)
    emitted = [
        payload
        for sequence in deliveries
        if (payload := log.record_status(callback(root + "-leg", LEG_LIFE[sequence], sequence, parent=root)))
    ]
    sequences = [p["sequence"] for p in emitted]
    assert sequences == sorted(set(sequences))  # strictly increasing: no repeat, nothing older
    assert [p["status"] for p in emitted] == [LEG_LIFE[s] for s in sequences]
    # The first delivery always applies; later ones only when newer than all before them.
    expected = [s for i, s in enumerate(deliveries) if all(s > earlier for earlier in deliveries[:i])]
    assert sequences == expected
    live = [p["status"] for p in log.calls_in_progress([ALICE_NUMBER]) if p["call_sid"] == root + "-leg"]
    assert live == ([] if sequences[-1] == len(LEG_LIFE) - 1 else [LEG_LIFE[sequences[-1]]])
