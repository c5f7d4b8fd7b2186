"""A call's state without a database: the leg ladder, the summary, and the forms the browser gets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from shetphone import callstate
from shetphone.callstate import LegState


def _legs(*states: tuple[str, str, int]) -> list[LegState]:
    return [
        LegState(sid, status, callstate.STATUS_RANK[status], status in ("in-progress", "completed"), duration)
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
        ([], "answered", ("in-progress", True, 0)),  # the <Dial> answered, the legs' callbacks lost
        (_legs(("A", "busy", 0), ("B", "no-answer", 0)), None, ("no-answer", False, 0)),  # the likeliest reason
        (_legs(("A", "initiated", 0), ("B", "ringing", 0)), None, ("ringing", False, 0)),  # the furthest leg
    ],
)
def test_summarise(leg_states: list, dial_status: str | None, summary: tuple[str, bool, int]) -> None:
    assert callstate.summarise("ROOT", leg_states, dial_status) == summary


def _applied(sequence: int | None, status: str, answered: bool = False) -> SimpleNamespace:
    return SimpleNamespace(sequence=sequence, status_rank=callstate.STATUS_RANK[status], answered=answered)


@pytest.mark.parametrize(
    ("leg", "sequence", "status", "moves"),
    [
        (_applied(1, "ringing"), 2, "in-progress", True),
        (_applied(1, "ringing"), 1, "in-progress", False),  # the same SequenceNumber: a repeat
        (_applied(3, "ringing"), 2, "in-progress", False),  # older than what was applied
        (_applied(1, "ringing"), 2, "ringing", False),  # the same rung again
        (_applied(1, "in-progress"), 2, "ringing", False),  # never backwards
        (_applied(1, "completed"), 2, "failed", False),  # the last rung is final
        (_applied(None, "ringing"), None, "completed", True),  # without sequence numbers, the ladder decides
        (_applied(None, "ringing"), 5, "ringing", False),
        (_applied(4, "initiated"), None, "ringing", True),
    ],
)
def test_a_callback_advances_a_leg_only_forward(leg, sequence: int | None, status: str, moves: bool) -> None:
    assert callstate.advances(leg, sequence, callstate.STATUS_RANK[status]) is moves


def test_status_update_reads_twilios_form() -> None:
    update = callstate.status_update({
        "CallSid": "CAleg", "ParentCallSid": "CAroot", "CallStatus": " In-Progress ", "SequenceNumber": "3",
        "CallDuration": "42", "Timestamp": "Sun, 22 Nov 2026 17:03:27 +0100", "From": "+447700900123",
        "To": "client:alice",
    })
    assert update == callstate.StatusUpdate(
        call_sid="CAleg", status="in-progress", rank=3, sequence=3, duration=42,
        event_at=datetime(2026, 11, 22, 16, 3, 27), parent_call_sid="CAroot", from_="+447700900123",
        to="client:alice",
    )


def test_status_update_without_optional_fields() -> None:
    update = callstate.status_update({"CallSid": "CAroot", "CallStatus": "ringing", "SequenceNumber": "x",
                                      "Timestamp": "not a date", "ParentCallSid": ""})
    assert (update.sequence, update.duration, update.event_at, update.parent_call_sid) == (None, 0, None, None)


@pytest.mark.parametrize("text", ["99999999999999999999", str(2**31), "-1", "1e5", "nan", " "])
def test_a_number_no_column_can_hold_is_no_number(text: str) -> None:
    update = callstate.status_update({"CallSid": "CA1", "CallStatus": "completed", "SequenceNumber": text,
                                      "CallDuration": text})
    assert (update.sequence, update.duration) == (None, 0)


def test_the_largest_count_is_kept() -> None:
    assert callstate.int_or_none(str(callstate.LARGEST_COUNT)) == callstate.LARGEST_COUNT


@pytest.mark.parametrize("form", [{"CallStatus": "ringing"}, {"CallSid": "CA1", "CallStatus": "teleported"},
                                  {"CallSid": "CA1"}])
def test_status_update_refuses_what_is_not_a_callback(form: dict) -> None:
    assert callstate.status_update(form) is None


def test_an_answered_leg_stays_answered() -> None:
    ringing = callstate.status_update({"CallSid": "CA1", "CallStatus": "ringing"})
    completed = callstate.status_update({"CallSid": "CA1", "CallStatus": "completed"})
    canceled = callstate.status_update({"CallSid": "CA1", "CallStatus": "canceled"})
    assert callstate.answered_after(None, ringing) is False
    assert callstate.answered_after(None, completed) is True  # in-progress was lost, completed says it all
    assert callstate.answered_after(_applied(2, "in-progress", answered=True), canceled) is True
    assert callstate.answered_after(_applied(2, "ringing"), canceled) is False


@pytest.mark.parametrize(
    ("direction", "status", "answered", "missed"),
    [
        ("inbound", "no-answer", False, True),
        ("inbound", "canceled", False, True),  # the caller gave up while it rang
        ("inbound", "completed", True, False),
        ("inbound", "ringing", False, False),  # not over yet
        ("outbound", "busy", False, False),  # nobody on the team missed anything
    ],
)
def test_missed(direction: str, status: str, answered: bool, missed: bool) -> None:
    assert callstate.is_missed(direction, status, answered) is missed


def test_times_are_utc_whole_seconds_with_a_z() -> None:
    aware = datetime(2026, 11, 22, 17, 3, 27, 999_999, tzinfo=timezone(timedelta(hours=1)))
    assert callstate.naive_utc(aware) == datetime(2026, 11, 22, 16, 3, 27)
    assert callstate.iso_utc(aware) == "2026-11-22T16:03:27Z"
    assert callstate.iso_utc(datetime(2026, 11, 22, 16, 3, 27)) == "2026-11-22T16:03:27Z"  # naive is UTC
    assert callstate.twilio_time("Sun, 22 Nov 2026 16:03:27 +0000") == datetime(2026, 11, 22, 16, 3, 27)
    assert callstate.twilio_time("") is None
    assert callstate.utc_now().tzinfo is UTC


def test_the_call_status_event_and_a_listed_call() -> None:
    call = SimpleNamespace(number="+441595000001", direction="inbound", from_number="+447700900123",
                           to_number="+441595000001")
    assert callstate.call_status_event(call, "CAleg", "CAroot", "ringing", datetime(2026, 11, 22, 16, 0, 1), 1) == {
        "call_sid": "CAleg", "parent_call_sid": "CAroot", "number": "+441595000001", "direction": "inbound",
        "from": "+447700900123", "to": "+441595000001", "status": "ringing", "timestamp": "2026-11-22T16:00:01Z",
        "sequence": 1,
    }
    listed = callstate.listed_call("CAroot", "inbound", "+447700900123", "+441595000001", "+441595000001",
                                   "no-answer", datetime(2026, 11, 22, 16, 0), 0, False, "RE1")
    assert listed == {
        "call_sid": "CAroot", "direction": "inbound", "from": "+447700900123", "to": "+441595000001",
        "number": "+441595000001", "status": "no-answer", "started_at": "2026-11-22T16:00:00Z", "duration": 0,
        "voicemail_url": None, "recording_sid": "RE1", "voicemail_transcript": None, "missed": True,
    }
