"""A call's state, without a database: the ladder a leg climbs, a call's summary, and how both are told.

Twilio sends a status callback per leg (the root call that reached ``/voice``
and its ``<Dial>`` children). A leg's status only moves up :data:`STATUS_RANK`,
and a callback only applies when it is newer (:func:`advances`), so repeated
and reordered callbacks are inert. A root call's status, as ``GET /calls``
shows it, is :func:`summarise` of its legs.

The two forms the browser gets are built here too: the ``call_status`` event
(:func:`call_status_event`, SPEC §4) and an entry of ``GET /calls``
(:func:`listed_call`, SPEC §3). Times are naive UTC inside, ISO 8601 with a
``Z`` outside.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple, Protocol

# A leg's status only moves up this ladder; the last rung is final.
STATUS_RANK = {
    "queued": 0,
    "initiated": 1,
    "ringing": 2,
    "in-progress": 3,
    "answered": 3,
    "completed": 4,
    "busy": 4,
    "no-answer": 4,
    "failed": 4,
    "canceled": 4,
}
TERMINAL_RANK = 4
ANSWERED_RANK = 3
TERMINAL_STATUSES = frozenset(status for status, rank in STATUS_RANK.items() if rank == TERMINAL_RANK)
# When no leg of a ring group answered, the one status that best says why.
UNANSWERED_PRECEDENCE = ("no-answer", "busy", "canceled", "failed")


class LegState(NamedTuple):
    """What the summary needs of one leg."""

    call_sid: str
    status: str
    status_rank: int
    answered: bool
    duration: int


class AppliedLeg(Protocol):
    """A leg as last recorded (a row of the store will do)."""

    sequence: int | None
    status_rank: int
    answered: bool


class StatusUpdate(NamedTuple):
    """One status callback, read from Twilio's form."""

    call_sid: str
    status: str
    rank: int
    sequence: int | None  # SequenceNumber, when Twilio sent one
    duration: int  # CallDuration, 0 when absent
    event_at: datetime | None  # Timestamp, naive UTC; None when absent or unreadable
    parent_call_sid: str | None
    from_: str | None
    to: str | None


def status_update(form: Mapping[str, str]) -> StatusUpdate | None:
    """The callback in ``form``; None without a CallSid or with a CallStatus not on the ladder."""
    call_sid = form.get("CallSid") or ""
    status = (form.get("CallStatus") or "").strip().lower()
    rank = STATUS_RANK.get(status)
    if not call_sid or rank is None:
        return None
    return StatusUpdate(
        call_sid=call_sid,
        status=status,
        rank=rank,
        sequence=int_or_none(form.get("SequenceNumber")),
        duration=int_or_none(form.get("CallDuration")) or 0,
        event_at=twilio_time(form.get("Timestamp")),
        parent_call_sid=form.get("ParentCallSid") or None,
        from_=form.get("From"),
        to=form.get("To"),
    )


def call_from_callback(update: StatusUpdate, team_numbers: Container[str]) -> dict[str, Any] | None:
    """The root call a status callback of an unknown call stands for, or None when it is none of the team's.

    The root is the leg's parent when it has one (a ``<Dial>``'s child), else the leg
    itself. ``From`` a team number is the team calling out (a browser's dialled leg,
    a call placed from Discord); ``To`` one is a call coming in.
    """
    caller, called = update.from_ or "", update.to or ""
    if caller in team_numbers:
        direction, number = "outbound", caller
    elif called in team_numbers:
        direction, number = "inbound", called
    else:
        return None
    return {
        "call_sid": update.parent_call_sid or update.call_sid,
        "direction": direction,
        "number": number,
        "from_number": caller,
        "to_number": called,
        "client": None,
    }


def advances(leg: AppliedLeg, sequence: int | None, rank: int) -> bool:
    """Whether a callback moves this leg forward: newer, higher on the ladder, not after the end."""
    if sequence is not None and leg.sequence is not None and sequence <= leg.sequence:
        return False  # a repeat, or older than what was applied
    return leg.status_rank < TERMINAL_RANK and rank > leg.status_rank


def answered_after(previous: AppliedLeg | None, update: StatusUpdate) -> bool:
    """A leg that was answered stays answered; ``completed`` without ``in-progress`` was answered too."""
    return update.rank == ANSWERED_RANK or update.status == "completed" or bool(previous and previous.answered)


def summarise(root_call_sid: str, leg_states: Sequence[LegState], dial_status: str | None) -> tuple[str, bool, int]:
    """(status, answered, duration) of a root call from its legs.

    The children of the ``<Dial>`` and its outcome say what happened to the
    call; the root leg (the caller's, or the browser's) is answered as soon as
    TwiML runs (voicemail answers it too), so it speaks only when there are no
    children, e.g. a call streamed to Discord.
    """
    children = [leg for leg in leg_states if leg.call_sid != root_call_sid]
    root_leg = next((leg for leg in leg_states if leg.call_sid == root_call_sid), None)
    if not children and dial_status is None:
        if root_leg is None:
            return "initiated", False, 0
        return root_leg.status, root_leg.answered, root_leg.duration

    answered_legs = [leg for leg in children if leg.answered]
    if answered_legs or dial_status in ("answered", "completed"):
        still_talking = any(leg.status_rank < TERMINAL_RANK for leg in answered_legs)
        if not answered_legs:  # the <Dial> says answered, but the legs' callbacks are missing
            still_talking = dial_status == "answered"
        duration = max((leg.duration for leg in answered_legs), default=0)
        return ("in-progress" if still_talking else "completed"), True, duration

    ringing = [leg for leg in children if leg.status_rank < TERMINAL_RANK]
    if dial_status is not None:
        return dial_status, False, 0
    if ringing:
        return max(ringing, key=lambda leg: leg.status_rank).status, False, 0
    ended = {leg.status for leg in children}
    status = next((status for status in UNANSWERED_PRECEDENCE if status in ended), "no-answer")
    return status, False, 0


def is_missed(direction: str, status: str, answered: bool) -> bool:
    """An incoming call that ended with nobody answering (voicemail or not)."""
    return direction == "inbound" and not answered and status in TERMINAL_STATUSES


# --------------------------------------------------------------------------- as the browser gets it


class CallFacts(Protocol):
    """The root call as the team sees it (a row of the store will do)."""

    number: str
    direction: str
    from_number: str
    to_number: str


def call_status_event(call: CallFacts, call_sid: str, parent_call_sid: str | None, status: str,
                      event_at: datetime, sequence: int | None) -> dict[str, Any]:
    """The ``call_status`` event of one leg of ``call``."""
    return {
        "call_sid": call_sid,
        "parent_call_sid": parent_call_sid,
        "number": call.number,
        "direction": call.direction,
        "from": call.from_number,
        "to": call.to_number,
        "status": status,
        "timestamp": iso_utc(event_at),
        "sequence": sequence,
    }


def listed_call(
    call_sid: str,
    direction: str,
    from_number: str,
    to_number: str,
    number: str,
    status: str,
    started_at: datetime,
    duration: int,
    answered: bool,
    recording_sid: str | None,
    voicemail_transcript: str | None = None,
) -> dict[str, Any]:
    """One entry of ``GET /calls``; the route turns ``recording_sid`` into our own ``voicemail_url``."""
    return {
        "call_sid": call_sid,
        "direction": direction,
        "from": from_number,
        "to": to_number,
        "number": number,
        "status": status,
        "started_at": iso_utc(started_at),
        "duration": duration,
        "voicemail_url": None,
        "recording_sid": recording_sid,
        "voicemail_transcript": voicemail_transcript,
        "missed": is_missed(direction, status, answered),
    }


# --------------------------------------------------------------------------- times and numbers


def utc_now() -> datetime:
    return datetime.now(UTC)


def naive_utc(moment: datetime) -> datetime:
    """Stored form: naive UTC, whole seconds (aware values are converted; naive ones are taken as UTC)."""
    offset = moment.utcoffset()
    if offset is not None:
        moment = moment - offset
    return moment.replace(tzinfo=None, microsecond=0)


def iso_utc(moment: datetime) -> str:
    """``2026-11-22T16:03:27Z``: what the browser and the JSON API get."""
    return naive_utc(moment).isoformat(timespec="seconds") + "Z"


def twilio_time(text: str | None) -> datetime | None:
    """Twilio's ``Timestamp`` (RFC 2822, e.g. ``Sun, 22 Nov 2026 16:03:27 +0000``), as naive UTC."""
    if not text:
        return None
    try:
        return naive_utc(parsedate_to_datetime(text))
    except (TypeError, ValueError, IndexError):
        return None


# Twilio's counts and seconds are small; anything beyond a 32-bit column (PostgreSQL's INTEGER,
# and SQLite's 64-bit one before it) is not a count to keep, and would fail the whole write.
LARGEST_COUNT = 2**31 - 1


def int_or_none(text: str | None) -> int | None:
    """A whole number from 0 to :data:`LARGEST_COUNT` in ``text``, else None."""
    try:
        number = int(text) if text not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return number if number is not None and 0 <= number <= LARGEST_COUNT else None
