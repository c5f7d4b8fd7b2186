"""The call log (shetphone.store.calls) on SQLite and on a real PostgreSQL server.

Every test runs on both backends (conftest's ``database_url``: a SQLite file,
and a new database on the session's PostgreSQL, from Debian's ``postgresql``
package; when its binaries are missing the tests fail, never skip).
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from itertools import count

import pytest
import sqlalchemy as sa
from conftest import STORE_START as START
from conftest import FakeClock
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from store_helpers import ALICE_NUMBER, BOB_NUMBER, CALLER, callback, only_call, open_inbound, open_outbound

from shetphone.store import CallLog, Recording, Store, StoreRefused, StoreUnavailable, migrate, schema

# --------------------------------------------------------------------------- call sequences


def test_ring_group_where_alice_answers_and_bob_is_canceled(calllog: CallLog) -> None:
    open_inbound(calllog, "CAroot")
    first = calllog.record_status(callback("CAalice", "initiated", 0, parent="CAroot"))
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
    calllog.record_status(callback("CAbob", "initiated", 0, parent="CAroot", To="client:bob"))
    assert calllog.record_status(callback("CAalice", "ringing", 1, parent="CAroot"))["status"] == "ringing"
    bob_ringing = calllog.record_status(callback("CAbob", "ringing", 1, parent="CAroot", To="client:bob"))
    assert bob_ringing["status"] == "ringing"
    assert only_call(calllog, [ALICE_NUMBER])["status"] == "ringing"

    assert calllog.record_status(callback("CAalice", "in-progress", 2, parent="CAroot"))["status"] == "in-progress"
    bob_canceled = calllog.record_status(callback("CAbob", "canceled", 2, parent="CAroot", To="client:bob"))
    assert bob_canceled["status"] == "canceled"
    live = calllog.calls_in_progress([ALICE_NUMBER])
    assert [(p["call_sid"], p["status"]) for p in live] == [("CAalice", "in-progress")]
    entry = only_call(calllog, [ALICE_NUMBER])
    assert (entry["status"], entry["missed"], entry["duration"]) == ("in-progress", False, 0)

    done = calllog.record_status(callback("CAalice", "completed", 3, parent="CAroot", CallDuration="42"))
    assert done["status"] == "completed" and done["sequence"] == 3
    calllog.record_dial_outcome("CAroot", "completed")
    assert calllog.calls_in_progress([ALICE_NUMBER]) == []
    assert only_call(calllog, [ALICE_NUMBER]) == {
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
        "voicemail_transcript": None,
        "missed": False,
    }


def test_repeats_and_callbacks_out_of_order_change_nothing(calllog: CallLog) -> None:
    open_inbound(calllog, "CAroot")
    assert calllog.record_status(callback("CAleg", "ringing", 1, parent="CAroot")) is not None
    assert calllog.record_status(callback("CAleg", "ringing", 1, parent="CAroot")) is None  # Twilio retried
    assert calllog.record_status(callback("CAleg", "ringing", 2, parent="CAroot")) is None  # same status again
    assert calllog.record_status(callback("CAleg", "initiated", 0, parent="CAroot")) is None  # older sequence
    assert calllog.record_status(callback("CAleg", "completed", 4, parent="CAroot", CallDuration="7"))["status"] == (
        "completed"
    )
    assert calllog.record_status(callback("CAleg", "in-progress", 3, parent="CAroot")) is None  # late, older
    assert calllog.record_status(callback("CAleg", "ringing", 5, parent="CAroot")) is None  # never backwards
    assert calllog.record_status(callback("CAleg", "failed", 6, parent="CAroot")) is None  # terminal is final
    entry = only_call(calllog, [ALICE_NUMBER])
    assert (entry["status"], entry["duration"], entry["missed"]) == ("completed", 7, False)


def test_a_callback_without_sequence_number_is_ordered_by_status(calllog: CallLog) -> None:
    open_inbound(calllog, "CAroot")
    form = callback("CAleg", "ringing", 0, parent="CAroot")
    del form["SequenceNumber"]
    assert calllog.record_status(form)["sequence"] is None
    assert calllog.record_status(form) is None
    assert calllog.record_status({**form, "CallStatus": "no-answer"})["status"] == "no-answer"


def test_inbound_call_nobody_answers_goes_to_voicemail(calllog: CallLog) -> None:
    open_inbound(calllog, "CAroot")
    for sequence, status in enumerate(["initiated", "ringing", "no-answer"]):
        assert calllog.record_status(callback("CAalice", status, sequence, parent="CAroot"))["status"] == status
        assert calllog.record_status(callback("CAbob", status, sequence, parent="CAroot", To="client:bob"))
    calllog.record_dial_outcome("CAroot", "no-answer")
    # The root leg is answered by <Record>: that must not make the call look answered.
    assert calllog.record_status(callback("CAroot", "in-progress", 0))["parent_call_sid"] is None
    assert only_call(calllog, [ALICE_NUMBER])["missed"] is True
    voicemail = calllog.record_voicemail(
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
        calllog.record_voicemail("CAroot", recording_sid="RE1", recording_url="https://api.twilio.com/RE1", duration=9)
        is None
    )
    calllog.record_status(callback("CAroot", "completed", 1, CallDuration="15"))

    entry = only_call(calllog, [ALICE_NUMBER])
    assert (entry["status"], entry["missed"], entry["duration"], entry["recording_sid"]) == (
        "no-answer",
        True,
        0,
        "RE1",
    )
    assert calllog.recording_for("RE1") == Recording("CAroot", ALICE_NUMBER, None, "https://api.twilio.com/RE1")
    assert calllog.recording_for("REunknown") is None
    assert calllog.record_voicemail("CAroot", recording_sid="", recording_url="https://x", duration=1) is None
    assert calllog.calls_in_progress([ALICE_NUMBER]) == []


def test_inbound_call_the_caller_abandons_is_missed_and_canceled(calllog: CallLog) -> None:
    open_inbound(calllog, "CAroot")
    calllog.record_status(callback("CAalice", "ringing", 1, parent="CAroot"))
    calllog.record_status(callback("CAalice", "canceled", 2, parent="CAroot"))
    entry = only_call(calllog, [ALICE_NUMBER])
    assert (entry["status"], entry["missed"]) == ("canceled", True)


def test_outbound_call_from_a_browser(calllog: CallLog) -> None:
    open_outbound(calllog, "CAout", client="alice", number=ALICE_NUMBER, to="+441632960001")
    assert only_call(calllog, [], "alice")["status"] == "initiated"
    child = {"From": ALICE_NUMBER, "To": "+441632960001"}
    payloads = [
        calllog.record_status(callback("CAdest", status, sequence, parent="CAout", **child))
        for sequence, status in enumerate(["initiated", "ringing", "in-progress"])
    ]
    assert [p["status"] for p in payloads] == ["initiated", "ringing", "in-progress"]
    assert {(p["number"], p["direction"], p["from"], p["to"]) for p in payloads} == {
        (ALICE_NUMBER, "outbound", ALICE_NUMBER, "+441632960001")
    }
    assert [p["call_sid"] for p in calllog.calls_in_progress([], "alice")] == ["CAdest"]
    calllog.record_status(callback("CAdest", "completed", 3, parent="CAout", CallDuration="120", **child))
    entry = only_call(calllog, [], "alice")
    assert (entry["direction"], entry["status"], entry["duration"], entry["missed"]) == (
        "outbound",
        "completed",
        120,
        False,
    )
    assert calllog.calls_in_progress([], "alice") == []


def test_outbound_call_nobody_answers_is_not_missed(calllog: CallLog) -> None:
    open_outbound(calllog, "CAout", client="alice", number=ALICE_NUMBER, to="+441632960001")
    calllog.record_status(callback("CAdest", "ringing", 1, parent="CAout"))
    calllog.record_status(callback("CAdest", "busy", 2, parent="CAout"))
    entry = only_call(calllog, [ALICE_NUMBER])
    assert (entry["status"], entry["missed"]) == ("busy", False)


def test_call_without_dial_children_takes_its_root_legs_status(calllog: CallLog) -> None:
    open_inbound(calllog, "CAdiscord", number=BOB_NUMBER)
    calllog.record_status(callback("CAdiscord", "in-progress", 1))
    assert only_call(calllog, [BOB_NUMBER])["status"] == "in-progress"
    calllog.record_status(callback("CAdiscord", "completed", 2, CallDuration="33"))
    entry = only_call(calllog, [BOB_NUMBER])
    assert (entry["status"], entry["duration"], entry["missed"]) == ("completed", 33, False)


def test_a_voicemail_of_an_unknown_call_is_dropped_with_one_line_and_a_repeat_in_silence(
        calllog: CallLog, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="shetphone")
    assert calllog.record_voicemail("CAstranger", recording_sid="RE9", recording_url="https://x", duration=1) is None
    (line,) = caplog.messages
    assert "RE9" in line and "CAstranger" in line and "does not know" in line
    open_inbound(calllog, "CAroot")
    assert calllog.record_voicemail("CAroot", recording_sid="RE1", recording_url="https://x", duration=1) is not None
    caplog.clear()
    assert calllog.record_voicemail("CAroot", recording_sid="RE1", recording_url="https://x", duration=1) is None
    assert caplog.messages == []  # Twilio's retry of one it already gave


def test_unknown_calls_are_ignored(calllog: CallLog) -> None:
    assert calllog.record_status(callback("CAstranger", "ringing", 1)) is None
    assert calllog.record_status(callback("CAchild", "ringing", 1, parent="CAstranger")) is None
    assert calllog.record_voicemail("CAstranger", recording_sid="RE9", recording_url="https://x", duration=1) is None
    calllog.record_dial_outcome("CAstranger", "no-answer")
    assert calllog.calls_for([ALICE_NUMBER], "alice") == []
    assert calllog.calls_in_progress([ALICE_NUMBER], "alice") == []
    assert calllog.recording_for("RE9") is None


TEAM = frozenset({ALICE_NUMBER, BOB_NUMBER})


def test_a_callback_of_an_unlogged_incoming_call_opens_it_from_its_own_fields(calllog: CallLog) -> None:
    # /voice could not write the call (the database was down), but the root leg's callback comes.
    root = callback("CAlost", "in-progress", 1, To=ALICE_NUMBER)
    payload = calllog.record_status(root, TEAM)
    assert (payload["call_sid"], payload["number"], payload["direction"]) == ("CAlost", ALICE_NUMBER, "inbound")
    assert payload["from"] == CALLER and payload["to"] == ALICE_NUMBER
    child = calllog.record_status(callback("CAlost-alice", "ringing", 2, parent="CAlost"), TEAM)
    assert child["parent_call_sid"] == "CAlost" and child["number"] == ALICE_NUMBER
    entry = only_call(calllog, [ALICE_NUMBER])
    assert (entry["call_sid"], entry["direction"], entry["status"]) == ("CAlost", "inbound", "ringing")


def test_a_callback_of_an_unlogged_outgoing_leg_opens_its_parent_as_the_teams_call(calllog: CallLog) -> None:
    # A browser's dialled leg (From: the caller ID) or a call Twilio placed from Discord.
    leg = callback("CAdialled", "ringing", 1, parent="CAbrowser", From=BOB_NUMBER, To="+15005550123")
    payload = calllog.record_status(leg, TEAM)
    assert (payload["number"], payload["direction"], payload["parent_call_sid"]) == (BOB_NUMBER, "outbound",
                                                                                      "CAbrowser")
    entry = only_call(calllog, [BOB_NUMBER])
    assert (entry["call_sid"], entry["from"], entry["to"]) == ("CAbrowser", BOB_NUMBER, "+15005550123")
    placed = calllog.record_status(callback("CAplaced", "initiated", 0, From=BOB_NUMBER, To="+15005550199"), TEAM)
    assert placed["call_sid"] == "CAplaced" and placed["direction"] == "outbound"


def test_a_callback_naming_no_team_number_opens_nothing(calllog: CallLog) -> None:
    assert calllog.record_status(callback("CAstranger", "ringing", 1, To="+15005550000"), TEAM) is None
    assert calllog.record_status(callback("CAchild", "ringing", 1, parent="CAstranger"), TEAM) is None
    assert calllog.calls_for(sorted(TEAM), "alice") == []


def test_ringing_legs_that_lost_their_final_callback_are_closed(calllog: CallLog, clock: FakeClock) -> None:
    open_inbound(calllog, "CAroot")
    calllog.record_status(callback("CAroot-alice", "ringing", 1, parent="CAroot", Timestamp=""))
    calllog.record_status(callback("CAroot-bob", "in-progress", 2, parent="CAroot", To="client:bob",
                                   Timestamp=""))
    clock.advance(seconds=60)
    assert calllog.close_stale_legs(timedelta(seconds=90)) == []  # still within its dial's timeout
    open_inbound(calllog, "CAlater")
    calllog.record_status(callback("CAlater-alice", "ringing", 1, parent="CAlater", Timestamp=""))
    clock.advance(seconds=31)
    closed = calllog.close_stale_legs(timedelta(seconds=90))
    assert [(p["call_sid"], p["status"], p["number"]) for p in closed] == [("CAroot-alice", "no-answer",
                                                                            ALICE_NUMBER)]
    # The answered leg stays (a call lasts hours), the later one rings on, and a second look closes nothing.
    live = [(p["call_sid"], p["status"]) for p in calllog.calls_in_progress([ALICE_NUMBER])]
    assert live == [("CAroot-bob", "in-progress"), ("CAlater-alice", "ringing")]
    assert calllog.close_stale_legs(timedelta(seconds=90)) == []
    statuses = {c["call_sid"]: c["status"] for c in calllog.calls_for([ALICE_NUMBER], None)}
    assert statuses == {"CAroot": "in-progress", "CAlater": "ringing"}


def test_unknown_status_is_ignored(calllog: CallLog) -> None:
    open_inbound(calllog, "CAroot")
    assert calllog.record_status(callback("CAleg", "teleported", 1, parent="CAroot")) is None
    assert calllog.calls_in_progress([ALICE_NUMBER]) == []


def test_open_call_is_idempotent(calllog: CallLog, clock: FakeClock) -> None:
    open_inbound(calllog, "CAroot")
    clock.advance(seconds=5)
    open_inbound(calllog, "CAroot", caller="+447700900999")  # a retry must not rewrite the call
    entry = only_call(calllog, [ALICE_NUMBER])
    assert (entry["from"], entry["started_at"]) == (CALLER, "2026-11-22T16:00:00Z")


def test_a_failed_write_leaves_nothing_half_written(calllog: CallLog, monkeypatch: pytest.MonkeyPatch) -> None:
    open_inbound(calllog, "CAroot")

    def broken(*args: object) -> None:  # the database fails after the leg was written, before the summary
        raise sa.exc.OperationalError("UPDATE calls", {}, Exception("disk I/O error"))

    monkeypatch.setattr(CallLog, "_write_summary", staticmethod(broken))
    with pytest.raises(StoreUnavailable, match="disk I/O error"):  # the store's exception, never SQLAlchemy's
        calllog.record_status(callback("CAleg", "ringing", 1, parent="CAroot"))
    monkeypatch.undo()
    assert calllog.calls_in_progress([ALICE_NUMBER]) == []  # the leg insert was rolled back
    assert calllog.record_status(callback("CAleg", "ringing", 1, parent="CAroot"))["status"] == "ringing"  # the retry


# What each backend refuses: PostgreSQL a text over its column's width or with a NUL byte; both, a number
# beyond any column (SQLite's are 64 bits, PostgreSQL's INTEGER 32).
TOO_LONG, WITH_NUL, TOO_BIG = "9" * 256, "+44770090\x00123", 2**70


def test_a_value_the_database_refuses_is_store_refused_and_the_call_is_as_it_was(calllog: CallLog) -> None:
    """Not StoreUnavailable: a webhook would answer 503, and Twilio retry a write that can never succeed."""
    open_inbound(calllog, "CAroot")
    calllog.record_status(callback("CAleg", "ringing", 1, parent="CAroot"))
    before = only_call(calllog, [ALICE_NUMBER]), calllog.calls_in_progress([ALICE_NUMBER])
    with pytest.raises(StoreRefused, match=r"^database .*: "):
        calllog.record_voicemail("CAroot", recording_sid="RE1", recording_url="https://api.twilio.com/RE1",
                                 duration=TOO_BIG)
    refused: list[dict] = []
    if calllog.database.dialect == "postgresql":
        refused = [callback("CAlong", "ringing", 1, parent="CAroot", To=TOO_LONG),
                   callback("CAnul", "ringing", 1, parent="CAroot", From=WITH_NUL),
                   callback("CA" * 40, "ringing", 1, parent="CAroot")]
    for form in refused:
        with pytest.raises(StoreRefused):
            calllog.record_status(form)
    assert (only_call(calllog, [ALICE_NUMBER]), calllog.calls_in_progress([ALICE_NUMBER])) == before
    assert calllog.recording_for("RE1") is None


@pytest.mark.parametrize(("caller", "call_sid"), [(TOO_LONG, "CAlong"), (WITH_NUL, "CAnul"), (CALLER, "CA" * 40)])
def test_a_call_whose_start_postgresql_refuses_is_store_refused(calllog: CallLog, caller: str, call_sid: str) -> None:
    """/voice's one-statement INSERT: SQLite takes these values, PostgreSQL refuses them, never "unavailable"."""
    if calllog.database.dialect == "sqlite":
        open_inbound(calllog, call_sid, caller=caller)
        assert only_call(calllog, [ALICE_NUMBER])["from"] == caller
        return
    with pytest.raises(StoreRefused):
        open_inbound(calllog, call_sid, caller=caller)
    assert calllog.calls_for([ALICE_NUMBER], None) == []
    open_inbound(calllog, "CAafter")  # the connection it failed on was not left broken
    assert only_call(calllog, [ALICE_NUMBER])["call_sid"] == "CAafter"


def test_a_ring_group_nobody_answers_says_why(calllog: CallLog) -> None:
    open_inbound(calllog, "CAroot")
    calllog.record_status(callback("CAbob", "initiated", 0, parent="CAroot"))
    calllog.record_status(callback("CAalice", "busy", 1, parent="CAroot"))  # alice declined
    assert only_call(calllog, [ALICE_NUMBER])["status"] == "initiated"  # bob still has a chance
    calllog.record_status(callback("CAbob", "ringing", 1, parent="CAroot"))
    assert only_call(calllog, [ALICE_NUMBER])["status"] == "ringing"
    calllog.record_status(callback("CAbob", "no-answer", 2, parent="CAroot"))
    entry = only_call(calllog, [ALICE_NUMBER])
    assert (entry["status"], entry["missed"]) == ("no-answer", True)


def test_the_dial_outcome_stands_in_for_lost_leg_callbacks(calllog: CallLog) -> None:
    open_inbound(calllog, "CAroot")
    calllog.record_dial_outcome("CAroot", "answered")
    assert only_call(calllog, [ALICE_NUMBER])["status"] == "in-progress"
    calllog.record_dial_outcome("CAroot", "completed")
    entry = only_call(calllog, [ALICE_NUMBER])
    assert (entry["status"], entry["missed"]) == ("completed", False)
    calllog.record_dial_outcome("CAroot", "nonsense")  # ignored, not stored
    assert only_call(calllog, [ALICE_NUMBER])["status"] == "completed"


def test_a_grandchild_leg_reaches_its_root(calllog: CallLog) -> None:
    open_inbound(calllog, "CAroot")
    calllog.record_status(callback("CAchild", "in-progress", 1, parent="CAroot"))
    payload = calllog.record_status(callback("CAgrandchild", "ringing", 1, parent="CAchild"))
    assert (payload["parent_call_sid"], payload["number"]) == ("CAchild", ALICE_NUMBER)


def test_a_callback_without_timestamp_is_stamped_by_the_clock(calllog: CallLog, clock: FakeClock) -> None:
    open_inbound(calllog, "CAroot")
    clock.advance(seconds=3)
    form = callback("CAleg", "ringing", 1, parent="CAroot")
    form["Timestamp"] = "not a date"
    assert calllog.record_status(form)["timestamp"] == "2026-11-22T16:00:03Z"
    form = callback("CAleg", "in-progress", 2, parent="CAroot")
    form["Timestamp"] = "Sun, 22 Nov 2026 17:03:27 +0100"  # converted to UTC
    assert calllog.record_status(form)["timestamp"] == "2026-11-22T16:03:27Z"


# --------------------------------------------------------------------------- who sees what


def test_two_users_never_see_each_others_calls(calllog: CallLog) -> None:
    open_inbound(calllog, "CAtoalice", number=ALICE_NUMBER)
    open_inbound(calllog, "CAtobob", number=BOB_NUMBER)
    open_outbound(calllog, "CAbyalice", client="alice", number="+15005550006", to="+441632960001")
    open_outbound(calllog, "CAbybob", client="bob", number="+15005550007", to="+441632960002")
    for root in ("CAtoalice", "CAtobob", "CAbyalice", "CAbybob"):
        calllog.record_status(callback(root + "-leg", "ringing", 1, parent=root))

    alice_calls = {c["call_sid"] for c in calllog.calls_for([ALICE_NUMBER], "alice")}
    bob_calls = {c["call_sid"] for c in calllog.calls_for([BOB_NUMBER], "bob")}
    assert alice_calls == {"CAtoalice", "CAbyalice"}
    assert bob_calls == {"CAtobob", "CAbybob"}
    assert {p["call_sid"] for p in calllog.calls_in_progress([ALICE_NUMBER], "alice")} == {
        "CAtoalice-leg",
        "CAbyalice-leg",
    }
    assert {p["call_sid"] for p in calllog.calls_in_progress([BOB_NUMBER], "bob")} == {"CAtobob-leg", "CAbybob-leg"}
    assert calllog.calls_for([], None) == []
    assert calllog.calls_in_progress([], None) == []


# --------------------------------------------------------------------------- persistence


def test_the_log_survives_reopening(database_url: str, clock: FakeClock) -> None:
    first = Store(database_url, clock=clock)
    open_inbound(first.calls, "CAroot")
    first.calls.record_status(callback("CAleg", "in-progress", 2, parent="CAroot"))
    first.close()

    second = Store(database_url, clock=clock)
    try:
        assert only_call(second.calls, [ALICE_NUMBER])["status"] == "in-progress"
        assert [p["call_sid"] for p in second.calls.calls_in_progress([ALICE_NUMBER])] == ["CAleg"]
        # still a repeat
        assert second.calls.record_status(callback("CAleg", "in-progress", 2, parent="CAroot")) is None
        assert migrate.current(second.database) == migrate.head()
        assert not second.upgraded.changed
    finally:
        second.close()


def test_several_writers_at_once(database_url: str, clock: FakeClock) -> None:
    """Separate stores (as separate processes would) write the same calls concurrently."""
    stores = [Store(database_url, clock=clock) for _ in range(4)]
    roots = [f"CAroot{i}" for i in range(20)]
    for root in roots:
        open_inbound(stores[0].calls, root)
    applied: list[dict] = []
    errors: list[BaseException] = []

    def work(store: Store) -> None:
        try:
            for root in roots:
                for sequence, status in enumerate(["initiated", "ringing", "in-progress", "completed"]):
                    result = store.calls.record_status(callback(root + "-leg", status, sequence, parent=root))
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
        assert {c["status"] for c in stores[1].calls.calls_for([ALICE_NUMBER], None)} == {"completed"}
    finally:
        for store in stores:
            store.close()


# --------------------------------------------------------------------------- pruning, listing


def test_prune_deletes_calls_older_than_keep_days(calllog: CallLog, clock: FakeClock) -> None:
    open_inbound(calllog, "CAold")
    calllog.record_status(callback("CAold-leg", "ringing", 1, parent="CAold"))  # never finished
    calllog.record_voicemail("CAold", recording_sid="REold", recording_url="https://x/REold", duration=3)
    clock.advance(days=89)
    open_inbound(calllog, "CAkept")
    clock.advance(days=1, seconds=1)  # CAold is now 90 days and a second old; CAkept one day

    assert calllog.prune() == 1
    assert [c["call_sid"] for c in calllog.calls_for([ALICE_NUMBER], None)] == ["CAkept"]
    assert calllog.recording_for("REold") is None
    with calllog.database.engine.connect() as conn:  # nothing of the old call is left behind
        assert conn.scalar(sa.select(sa.func.count()).select_from(schema.legs)) == 0
        assert conn.scalar(sa.select(sa.func.count()).select_from(schema.recordings)) == 0
    assert calllog.prune() == 0
    assert calllog.record_status(callback("CAold-leg", "completed", 2, parent="CAold")) is None


def test_prune_works_in_batches(calllog: CallLog, clock: FakeClock) -> None:
    calllog.import_calls(
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
    open_inbound(calllog, "CArecent")
    assert calllog.prune(batch=10) == 25
    assert [c["call_sid"] for c in calllog.calls_for([ALICE_NUMBER], None)] == ["CArecent"]


def test_calls_in_progress_forgets_legs_older_than_any_call(calllog: CallLog, clock: FakeClock) -> None:
    open_inbound(calllog, "CAfirst")
    calllog.record_status(callback("CAfirst-leg", "ringing", 1, parent="CAfirst"))
    clock.advance(hours=1)
    open_inbound(calllog, "CAsecond")
    calllog.record_status(callback("CAsecond-leg", "in-progress", 2, parent="CAsecond"))
    assert [p["call_sid"] for p in calllog.calls_in_progress([ALICE_NUMBER])] == ["CAfirst-leg", "CAsecond-leg"]
    clock.advance(hours=23, seconds=1)  # the first call's final callback was lost
    assert [p["call_sid"] for p in calllog.calls_in_progress([ALICE_NUMBER])] == ["CAsecond-leg"]


def test_calls_for_limit_and_order(calllog: CallLog, clock: FakeClock) -> None:
    for i in range(6):
        if i % 2:
            open_inbound(calllog, f"CA{i}")
        else:
            open_outbound(calllog, f"CA{i}", client="alice", number="+15005550006", to="+441632960001")
        clock.advance(minutes=1)
    open_inbound(calllog, "CAsame-b")  # two calls in the same second: the SID breaks the tie
    open_inbound(calllog, "CAsame-a")

    listed = calllog.calls_for([ALICE_NUMBER], "alice", limit=4)
    assert [c["call_sid"] for c in listed] == ["CAsame-b", "CAsame-a", "CA5", "CA4"]
    assert [c["call_sid"] for c in calllog.calls_for([ALICE_NUMBER], "alice")] == [
        "CAsame-b", "CAsame-a", "CA5", "CA4", "CA3", "CA2", "CA1", "CA0",
    ]  # fmt: skip
    assert [c["call_sid"] for c in calllog.calls_for([ALICE_NUMBER], None, limit=2)] == ["CAsame-b", "CAsame-a"]
    assert [c["call_sid"] for c in calllog.calls_for([], "alice", limit=2)] == ["CA4", "CA2"]
    assert calllog.calls_for([ALICE_NUMBER], "alice", limit=0) == []
    # Placed by alice from a number she rings on: found by both walks, listed once.
    clock.advance(seconds=1)
    open_outbound(calllog, "CAboth", client="alice", number=ALICE_NUMBER, to="+441632960001")
    assert [c["call_sid"] for c in calllog.calls_for([ALICE_NUMBER], "alice", limit=3)] == [
        "CAboth",
        "CAsame-b",
        "CAsame-a",
    ]


def test_listing_100000_calls(calllog: CallLog) -> None:
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
    assert calllog.import_calls(entries) == 100_000

    def expected(user_numbers: set[str], client: str | None, limit: int) -> list[str]:
        mine = [e for e in entries if e["number"] in user_numbers or (client and e["client"] == client)]
        mine.sort(key=lambda e: (e["started_at"], e["call_sid"]), reverse=True)
        return [e["call_sid"] for e in mine[:limit]]

    for user_numbers, client in (({ALICE_NUMBER}, "carol"), ({BOB_NUMBER, "+441595000003"}, None), (set(), "bob")):
        listed = calllog.calls_for(user_numbers, client, limit=50)
        assert [c["call_sid"] for c in listed] == expected(user_numbers, client, 50)
    assert len(calllog.calls_for(numbers, None, limit=500)) == 500


# --------------------------------------------------------------------------- properties

LEG_LIFE = ["queued", "initiated", "ringing", "in-progress", "completed"]
_roots = count()


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(deliveries=st.lists(st.integers(min_value=0, max_value=len(LEG_LIFE) - 1), min_size=1, max_size=12))
def test_any_delivery_order_only_moves_forward(calllog: CallLog, deliveries: list[int]) -> None:
    """Twilio may repeat and reorder callbacks: what is emitted only ever moves forward."""
    root = f"CAprop{next(_roots)}"
    open_inbound(calllog, root)
    emitted = [
        payload
        for sequence in deliveries
        if (payload := calllog.record_status(callback(root + "-leg", LEG_LIFE[sequence], sequence, parent=root)))
    ]
    sequences = [p["sequence"] for p in emitted]
    assert sequences == sorted(set(sequences))  # strictly increasing: no repeat, nothing older
    assert [p["status"] for p in emitted] == [LEG_LIFE[s] for s in sequences]
    # The first delivery always applies; later ones only when newer than all before them.
    expected = [s for i, s in enumerate(deliveries) if all(s > earlier for earlier in deliveries[:i])]
    assert sequences == expected
    live = [p["status"] for p in calllog.calls_in_progress([ALICE_NUMBER]) if p["call_sid"] == root + "-leg"]
    assert live == ([] if sequences[-1] == len(LEG_LIFE) - 1 else [LEG_LIFE[sequences[-1]]])
