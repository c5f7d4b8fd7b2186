"""The call log: every call the team made or received, and the state of its legs.

Writes come from Twilio's webhooks (``open_call`` at ``/voice``, ``record_status``
at ``/voice/status``, ...), reads from the page (``calls_for``), Socket.IO's
catch-up (``calls_in_progress``) and the voicemail route (``recording_for``).
What a leg's callback does to the call is :mod:`shetphone.callstate`'s to
decide; this module keeps it, in the tables of :mod:`.schema`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Container, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from .. import callstate
from ..callstate import LegState, StatusUpdate, naive_utc, utc_now
from .engine import Database
from .schema import calls, legs, recordings

log = logging.getLogger(__name__)

# Twilio ends every call within 24 hours (the largest timeLimit), so a leg still
# "ringing" after that lost its final callback: reconnect catch-up leaves it out.
LONGEST_CALL = timedelta(hours=24)

# The hot path's statements, built once (building a statement costs more than running it).
_LEG = sa.select(legs).where(legs.c.call_sid == sa.bindparam("call_sid"))
_LEG_ROOT = sa.select(legs.c.root_call_sid).where(legs.c.call_sid == sa.bindparam("call_sid"))
_LEGS_OF_CALL = sa.select(legs).where(legs.c.root_call_sid == sa.bindparam("root_call_sid"))
_CALL = sa.select(calls).where(calls.c.call_sid == sa.bindparam("call_sid"))
_CALL_FOR_UPDATE = _CALL.with_for_update()
_UPDATE_LEG = legs.update().where(legs.c.call_sid == sa.bindparam("key"))
_UPDATE_SUMMARY = calls.update().where(calls.c.call_sid == sa.bindparam("key"))

# What GET /calls shows of a call.
LISTED_COLUMNS = (
    calls.c.call_sid,
    calls.c.direction,
    calls.c.from_number,
    calls.c.to_number,
    calls.c.number,
    calls.c.status,
    calls.c.started_at,
    calls.c.duration,
    calls.c.answered,
)


# What /voice writes of a new call (the rest comes with its callbacks).
OPENED_CALL_COLUMNS = ("call_sid", "direction", "number", "from_number", "to_number", "client", "started_at",
                       "status", "answered", "duration")


class Recording(NamedTuple):
    call_sid: str
    number: str
    client: str | None
    twilio_url: str


def _newest_first(columns: Any) -> tuple[sa.UnaryExpression, sa.UnaryExpression]:
    return columns.started_at.desc(), columns.call_sid.desc()  # the SID breaks ties in the same second


@functools.lru_cache(maxsize=64)
def _listing_query(number_count: int, with_client: bool) -> sa.Select:
    """``calls_for``'s query for a user of this many numbers, built once per shape.

    One indexed, limited walk per number and for the client: each reads its index
    backwards and stops at ``limit``, where one query with OR/IN would sort every call
    of the user. The database merges them, so only ``limit`` rows come back.
    (Building this statement costs ten times what SQLite takes to run it.)
    """
    selections = [calls.c.number == sa.bindparam(f"number_{i}") for i in range(number_count)]
    if with_client:
        selections.append(calls.c.client == sa.bindparam("client"))
    limit = sa.bindparam("limit", type_=sa.Integer)
    walks = [
        sa.select(*LISTED_COLUMNS).where(selection).order_by(*_newest_first(calls.c)).limit(limit).subquery()
        for selection in selections
    ]
    # UNION, not UNION ALL: a call of one of the user's numbers they placed themselves comes once.
    merged = sa.union(*(sa.select(walk) for walk in walks)).subquery()
    def latest_recording(column: sa.Column) -> sa.ScalarSelect:
        return (
            sa.select(column)
            .where(recordings.c.call_sid == merged.c.call_sid)
            .order_by(recordings.c.created_at.desc(), recordings.c.recording_sid.desc())
            .limit(1)
            .scalar_subquery()
        )

    return sa.select(
        merged,
        latest_recording(recordings.c.recording_sid).label("recording_sid"),
        latest_recording(recordings.c.transcript).label("voicemail_transcript"),
    ).order_by(*_newest_first(merged.c)).limit(limit)


def _insert_unless_present(dialect_name: str, table: sa.Table, key: sa.Column) -> sa.Insert:
    """INSERT ... ON CONFLICT DO NOTHING: one statement, and a repeat changes nothing (both backends have it)."""
    insert = sqlite.insert if dialect_name == "sqlite" else postgresql.insert
    return insert(table).on_conflict_do_nothing(index_elements=[key])


def _belongs(numbers: Iterable[str], client: str | None) -> sa.ColumnElement[bool] | None:
    numbers = list(numbers)
    conditions = []
    if numbers:
        conditions.append(calls.c.number.in_(numbers))
    if client:
        conditions.append(calls.c.client == client)
    return sa.or_(*conditions) if conditions else None


class CallLog:
    """The call log on one :class:`Database`. Thread- and greenlet-safe; one per process is enough.

    Every method may raise :class:`StoreUnavailable` (the database did not answer
    in time) or another :class:`StoreError`; none leaves a write half done.
    """

    def __init__(self, database: Database, keep_days: int = 90, clock: Callable[[], datetime] = utc_now):
        self.database = database
        self.keep_days = keep_days
        self._clock = clock
        self._insert_call = _insert_unless_present(database.dialect, calls, calls.c.call_sid)
        # A call that rang nobody has no legs: its summary is its dial's outcome (callstate.summarise).
        self._missed_at_once = database.one_statement(
            calls.update()
            .where(calls.c.call_sid == sa.bindparam("key"), calls.c.dial_status.is_(None))
            .values(dial_status=sa.bindparam("outcome"), status=sa.bindparam("outcome_status"),
                    answered=sa.bindparam("answered"), duration=sa.bindparam("duration")))
        self._open_call = database.one_statement(self._insert_call, OPENED_CALL_COLUMNS)
        # RETURNING: a row back only when the recording was new (psycopg's rowcount says -1 here).
        store_recording = _insert_unless_present(database.dialect, recordings, recordings.c.recording_sid)
        self._store_recording = store_recording.returning(recordings.c.recording_sid)

    # ----------------------------------------------------------------- writes

    def open_call(self, call_sid: str, *, direction: str, number: str, from_: str, to: str, client: str | None) -> None:
        """Record a root call at ``POST /voice``. A retry of the same request changes nothing."""
        if direction not in ("inbound", "outbound"):
            raise ValueError(f"direction must be inbound or outbound, not {direction!r}")
        row = {
            "call_sid": call_sid,
            "direction": direction,
            "number": number,
            "from_number": from_,
            "to_number": to,
            "client": client,
            "started_at": naive_utc(self._clock()),
            "status": "initiated",
            "answered": False,
            "duration": 0,
        }
        self._open_call(row)  # one statement, straight to the driver: /voice waits on it

    def record_status(self, form: Mapping[str, str], team_numbers: Container[str] = frozenset()) -> dict | None:
        """Apply one status callback; the ``call_status`` payload, or None if nothing changed.

        A callback for a call the log does not know (its ``/voice`` could not be written,
        or Twilio placed it without one: a call from Discord) opens the call from its own
        fields when its ``From`` or ``To`` is one of ``team_numbers`` (SPEC §3).
        """
        update = callstate.status_update(form)
        if update is None:
            if form.get("CallSid"):
                log.warning("status callback for %s with unknown CallStatus %r ignored", form["CallSid"],
                            form.get("CallStatus"))
            return None
        return self.database.write(lambda conn: self._apply_status(conn, update, team_numbers))

    def _open_from_callback(self, conn: Connection, update: StatusUpdate, team_numbers: Container[str]) -> str | None:
        """Open the root call of an unknown leg from the callback's fields; its CallSid, or None."""
        opened = callstate.call_from_callback(update, team_numbers)
        if opened is None:
            return None
        conn.execute(self._insert_call, {**opened, "started_at": update.event_at or naive_utc(self._clock()),
                                         "status": "initiated", "answered": False, "duration": 0})
        log.info("call %s was not in the log; opened from a status callback of %s", opened["call_sid"],
                 update.call_sid)
        return opened["call_sid"]

    def _apply_status(self, conn: Connection, update: StatusUpdate, team_numbers: Container[str] = ()) -> dict | None:
        call_sid, sequence, rank = update.call_sid, update.sequence, update.rank
        # A leg only moves forward, so a callback this unlocked read already rejects
        # stays rejected: Twilio's retries cost one indexed read.
        leg = conn.execute(_LEG, {"call_sid": call_sid}).one_or_none()
        if leg is not None and not callstate.advances(leg, sequence, rank):
            return None
        if leg is not None:
            root_call_sid = leg.root_call_sid
        else:
            root_call_sid = self._find_root(conn, call_sid, update.parent_call_sid)
            if root_call_sid is None:
                root_call_sid = self._open_from_callback(conn, update, team_numbers)
        if root_call_sid is None:
            return None
        # Lock the root call so its callbacks apply one at a time (PostgreSQL; SQLite's
        # BEGIN IMMEDIATE already serialises writers), then decide on fresh state.
        call = conn.execute(_CALL_FOR_UPDATE, {"call_sid": root_call_sid}).one()
        leg_rows = {row.call_sid: row for row in conn.execute(_LEGS_OF_CALL, {"root_call_sid": root_call_sid})}
        leg = leg_rows.get(call_sid)
        if leg is not None and not callstate.advances(leg, sequence, rank):
            return None  # another worker applied this or a newer callback meanwhile
        values = {
            "status": update.status,
            "status_rank": rank,
            "sequence": sequence if sequence is not None else (leg.sequence if leg is not None else None),
            "answered": callstate.answered_after(leg, update),
            "duration": update.duration,
            "event_at": update.event_at or naive_utc(self._clock()),
        }
        if leg is None:
            parent_call_sid = None if call_sid == root_call_sid else update.parent_call_sid
            conn.execute(
                legs.insert(),
                {
                    "call_sid": call_sid,
                    "root_call_sid": root_call_sid,
                    "parent_call_sid": parent_call_sid,
                    "from_number": update.from_,
                    "to_number": update.to,
                    **values,
                },
            )
        else:
            parent_call_sid = leg.parent_call_sid
            conn.execute(_UPDATE_LEG, {"key": call_sid, **values})
        states = {sid: _leg_state(row) for sid, row in leg_rows.items()}
        states[call_sid] = LegState(call_sid, update.status, rank, values["answered"], values["duration"])
        self._write_summary(conn, call, list(states.values()), call.dial_status)
        return callstate.call_status_event(call, call_sid, parent_call_sid, update.status, values["event_at"],
                                           sequence)

    def close_stale_legs(self, older_than: timedelta, batch: int = 100) -> list[dict]:
        """Close legs still queued, initiated or ringing whose last callback is older than ``older_than``.

        Twilio rings a leg for its ``<Dial>`` timeout at most, so such a leg lost its
        final callback (Twilio gave up on it, or never sent one: a number without a status
        callback). It is closed as ``no-answer``, so browsers stop showing it ringing and
        reconnect catch-up leaves it out, instead of both replaying it for a day. The
        ``call_status`` payloads of the closed legs, for the caller to emit.
        """
        cutoff = naive_utc(self._clock()) - older_than
        stale = (
            sa.select(legs.c.call_sid)
            .where(legs.c.status_rank < callstate.ANSWERED_RANK, legs.c.event_at < cutoff)
            .order_by(legs.c.event_at)
            .limit(batch)
        )

        def work(conn: Connection) -> list[dict]:
            closed = []
            for call_sid in list(conn.scalars(stale)):
                update = callstate.status_update({"CallSid": call_sid, "CallStatus": "no-answer"})
                payload = self._apply_status(conn, update)
                if payload is not None:
                    closed.append(payload)
            return closed

        return self.database.write(work)

    def missed_at_once(self, call_sid: str) -> None:
        """The call went straight to voicemail (nobody to ring): missed, without a leg. One statement:
        ``/voice`` waits on it."""
        self._missed_at_once({"key": call_sid, "outcome": "no-answer", "outcome_status": "no-answer",
                              "answered": False, "duration": 0})

    def record_dial_outcome(self, call_sid: str, dial_call_status: str) -> None:
        """The ``DialCallStatus`` of the root call's ``<Dial>`` (from ``/voice/dial-complete``)."""
        dial_status = dial_call_status.strip().lower()
        if dial_status not in callstate.STATUS_RANK:
            log.warning("DialCallStatus %r of %s ignored", dial_call_status, call_sid)
            return

        def work(conn: Connection) -> None:
            call = conn.execute(_CALL_FOR_UPDATE, {"call_sid": call_sid}).one_or_none()
            if call is None or call.dial_status == dial_status:
                return
            conn.execute(calls.update().where(calls.c.call_sid == call_sid).values(dial_status=dial_status))
            leg_rows = conn.execute(_LEGS_OF_CALL, {"root_call_sid": call_sid})
            self._write_summary(conn, call, [_leg_state(row) for row in leg_rows], dial_status)

        self.database.write(work)

    def record_voicemail(self, call_sid: str, *, recording_sid: str, recording_url: str, duration: int,
                         also: Callable[[Connection, dict], object] | None = None) -> dict | None:
        """Store a voicemail; the ``voicemail`` event's facts, or None for an unknown call or a repeat.

        ``also(conn, facts)`` runs in the same transaction when the voicemail is new (its e-mail's
        outbox rows: kept with the recording, or neither)."""
        if not recording_sid or not recording_url:
            log.warning("recording callback for %s without a RecordingSid or RecordingUrl ignored", call_sid)
            return None
        row = {
            "recording_sid": recording_sid,
            "call_sid": call_sid,
            "twilio_url": recording_url,
            "duration": int(duration),
        }

        def work(conn: Connection) -> dict | bool | None:
            call = conn.execute(_CALL, {"call_sid": call_sid}).one_or_none()
            if call is None:
                return False  # told after the transaction: a retried one would say it twice
            stored = conn.execute(self._store_recording, {**row, "created_at": naive_utc(self._clock())}).first()
            if stored is None:
                return None  # the same callback again (Twilio's retry)
            facts = {
                "call_sid": call_sid,
                "number": call.number,
                "from": call.from_number,
                "duration": row["duration"],
                "recording_sid": recording_sid,
            }
            if also is not None:
                also(conn, facts)
            return facts

        stored = self.database.write(work)
        if stored is False:  # its /voice could not be logged, and a recording callback has no From or To to open it
            log.warning("recording %s of call %s, which the call log does not know, dropped", recording_sid, call_sid)
            return None
        return stored

    def prune(self, batch: int = 1000) -> int:
        """Delete calls started more than ``keep_days`` ago, with their legs and recordings.

        In transactions of ``batch`` calls, so a first prune of a long history never
        holds SQLite's write lock long enough to make status callbacks time out.
        """
        cutoff = naive_utc(self._clock()) - timedelta(days=self.keep_days)
        oldest = sa.select(calls.c.call_sid).where(calls.c.started_at < cutoff).order_by(calls.c.started_at)

        def delete_batch(conn: Connection) -> int:
            call_sids = list(conn.scalars(oldest.limit(batch)))
            if call_sids:
                conn.execute(recordings.delete().where(recordings.c.call_sid.in_(call_sids)))
                conn.execute(legs.delete().where(legs.c.root_call_sid.in_(call_sids)))
                conn.execute(calls.delete().where(calls.c.call_sid.in_(call_sids)))
            return len(call_sids)

        deleted = 0
        while True:
            count = self.database.write(delete_batch)
            deleted += count
            if count < batch:
                return deleted

    def import_calls(self, entries: Iterable[Mapping[str, Any]], batch: int = 10_000) -> int:
        """Bulk insert finished calls (history from elsewhere, benchmarks, tests).

        Each entry: call_sid, direction, number, from, to, client, started_at
        (datetime), status, answered, duration. Returns how many were inserted.
        """
        rows = [
            {
                "call_sid": entry["call_sid"],
                "direction": entry["direction"],
                "number": entry["number"],
                "from_number": entry["from"],
                "to_number": entry["to"],
                "client": entry.get("client"),
                "started_at": naive_utc(entry["started_at"]),
                "status": entry["status"],
                "answered": bool(entry.get("answered", False)),
                "duration": int(entry.get("duration", 0)),
            }
            for entry in entries
        ]

        def work(conn: Connection) -> None:
            for start in range(0, len(rows), batch):
                conn.execute(calls.insert(), rows[start : start + batch])

        if rows:
            self.database.write(work)
        return len(rows)

    # ----------------------------------------------------------------- reads

    def recording_for(self, recording_sid: str) -> Recording | None:
        query = (
            sa.select(recordings.c.call_sid, calls.c.number, calls.c.client, recordings.c.twilio_url)
            .join(calls, calls.c.call_sid == recordings.c.call_sid)
            .where(recordings.c.recording_sid == recording_sid)
        )
        row = self.database.read(lambda conn: conn.execute(query).one_or_none())
        return Recording(*row) if row is not None else None

    def calls_in_progress(self, numbers: Iterable[str], client: str | None = None) -> list[dict]:
        """The latest ``call_status`` payload of every leg still live in these rooms, oldest first."""
        belongs = _belongs(numbers, client)
        if belongs is None:
            return []
        since = naive_utc(self._clock()) - LONGEST_CALL
        query = (
            sa.select(
                legs.c.call_sid,
                legs.c.parent_call_sid,
                legs.c.status,
                legs.c.event_at,
                legs.c.sequence,
                calls.c.number,
                calls.c.direction,
                calls.c.from_number,
                calls.c.to_number,
            )
            .join(calls, calls.c.call_sid == legs.c.root_call_sid)
            .where(legs.c.status_rank < callstate.TERMINAL_RANK, calls.c.started_at >= since, belongs)
            .order_by(legs.c.event_at, legs.c.call_sid)
        )
        rows = self.database.read(lambda conn: conn.execute(query).all())
        return [
            callstate.call_status_event(row, row.call_sid, row.parent_call_sid, row.status, row.event_at, row.sequence)
            for row in rows
        ]

    def calls_for(self, numbers: Iterable[str], client: str | None, limit: int = 50) -> list[dict]:
        """The calls a user may see (of their numbers, or placed by them), newest first."""
        numbers = sorted(set(numbers))
        limit = max(0, int(limit))
        if limit == 0 or (not numbers and not client):
            return []
        parameters: dict[str, Any] = {f"number_{i}": number for i, number in enumerate(numbers)}
        parameters.update(client=client, limit=limit)
        query = _listing_query(len(numbers), bool(client))
        rows = self.database.read(lambda conn: conn.execute(query, parameters).all())
        return [callstate.listed_call(*row) for row in rows]

    # ----------------------------------------------------------------- helpers

    @staticmethod
    def _find_root(conn: Connection, call_sid: str, parent_call_sid: str | None) -> str | None:
        """The root call of a leg seen for the first time: itself, or its parent's root."""
        candidates = [sid for sid in (call_sid, parent_call_sid) if sid]
        known = set(conn.scalars(sa.select(calls.c.call_sid).where(calls.c.call_sid.in_(candidates))))
        for candidate in candidates:
            if candidate in known:
                return candidate
        if parent_call_sid:  # a child of a child: Twilio does not do this today, but follow it
            return conn.scalar(_LEG_ROOT, {"call_sid": parent_call_sid})
        return None

    @staticmethod
    def _write_summary(conn: Connection, call: Any, leg_states: list[LegState], dial_status: str | None) -> None:
        """Rewrite the call's summary of its legs when it changed."""
        summary = callstate.summarise(call.call_sid, leg_states, dial_status)
        if summary != (call.status, call.answered, call.duration):
            status, answered, duration = summary
            conn.execute(
                _UPDATE_SUMMARY, {"key": call.call_sid, "status": status, "answered": answered, "duration": duration}
            )


def _leg_state(row: Any) -> LegState:
    return LegState(row.call_sid, row.status, row.status_rank, row.answered, row.duration)
