"""Call control in the database: each controlled call's state, its claim, its parties and its inbox.

:mod:`shetphone.control` decides; this keeps what it decided where every process
sees it (docs/call-control.md, "Wiring"):

- one ``call_controls`` row per root call put under control, holding
  ``CallControl.to_dict()`` as JSON and a *claim*: the token of the one request or
  callback whose Twilio steps are running. Taking it is a compare-and-set on a row
  locked for the transaction (``SELECT ... FOR UPDATE`` on PostgreSQL, the write
  lock on SQLite), so of two people pressing Hold at once one gets it and the other
  is answered 409;
- ``control_parties``: each party's CallSid to its root call (a rung target's
  status callback carries no ParentCallSid);
- ``control_inbox``: callbacks that arrive while the claim is held, applied in
  order by the holder before it lets go (:meth:`CallControls.next_or_release`),
  so none is lost under a request's commit.

A claim older than :data:`CLAIM_SECONDS` belongs to a holder that died (its
process, mid-plan): the next request or callback takes it over.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import control
from ..callstate import naive_utc, utc_now
from .calls import LONGEST_CALL, _insert_unless_present
from .engine import Database
from .schema import call_controls, calls, control_inbox, control_parties, legs

log = logging.getLogger(__name__)

# Longer than any plan takes: a few REST requests of at most 5 s each, and their undoing.
CLAIM_SECONDS = 60.0

_CONTROL = sa.select(call_controls).where(call_controls.c.root_call_sid == sa.bindparam("root"))
_CONTROL_FOR_UPDATE = _CONTROL.with_for_update()
_ROOT_OF_PARTY = sa.select(control_parties.c.root_call_sid).where(control_parties.c.call_sid == sa.bindparam("sid"))
_UPDATE_CONTROL = call_controls.update().where(call_controls.c.root_call_sid == sa.bindparam("root"))
_RECENT_CONTROLS = (  # every connecting browser's catch-up reads it
    sa.select(call_controls.c.state)
    .join(calls, calls.c.call_sid == call_controls.c.root_call_sid)
    .where(calls.c.started_at >= sa.bindparam("since"))
    .order_by(calls.c.started_at, calls.c.call_sid)
)
_OLDEST_IN_INBOX = (
    sa.select(control_inbox.c.id, control_inbox.c.kind, control_inbox.c.payload)
    .where(control_inbox.c.root_call_sid == sa.bindparam("root"))
    .order_by(control_inbox.c.id)
    .limit(1)
)


class Controlled(NamedTuple):
    state: control.CallControl
    version: int  # one more at every write
    claimed: bool  # someone's Twilio steps are running for the call


class Begun(NamedTuple):
    """What :meth:`CallControls.begin` decided: ``outcome`` was planned on ``before``."""

    before: control.CallControl
    outcome: control.Plan | control.Refusal
    claimed: bool  # this request holds the claim now: run the plan, then store and let go


class AnsweredLeg(NamedTuple):
    call_sid: str
    to: str  # client:NAME, or a phone's number
    status: str


class CallFacts(NamedTuple):
    """What the call log knows of a root call, for the state of a call never under control."""

    direction: str
    number: str
    from_: str
    to: str
    client: str | None  # the browser that placed an outgoing call
    answered: AnsweredLeg | None  # the <Dial> child that answered, the latest if several did


class Queued(NamedTuple):
    kind: str  # conference, status, dial
    payload: dict


class CallControls:
    """Call control's rows on one :class:`Database`. Thread- and greenlet-safe; one per process.

    Every method may raise :class:`StoreUnavailable` or another :class:`StoreError`.
    """

    def __init__(self, database: Database, clock: Callable[[], datetime] = utc_now,
                 claim_seconds: float = CLAIM_SECONDS):
        self.database = database
        self._clock = clock
        self._claim_for = timedelta(seconds=claim_seconds)
        self._insert_control = _insert_unless_present(database.dialect, call_controls, call_controls.c.root_call_sid)
        self._index_party = _insert_unless_present(database.dialect, control_parties, control_parties.c.call_sid)

    # ----------------------------------------------------------------- reads

    def get(self, root: str) -> Controlled | None:
        row = self.database.read(lambda conn: conn.execute(_CONTROL, {"root": root}).one_or_none())
        if row is None:
            return None
        return Controlled(_state_of(row), row.version, self._held(row, naive_utc(self._clock())))

    def root_of(self, call_sid: str) -> str | None:
        """The root call of which ``call_sid`` is a party (a rung target's call, say), if any."""
        return self.database.read(lambda conn: conn.scalar(_ROOT_OF_PARTY, {"sid": call_sid}))

    def in_conference(self) -> list[control.CallControl]:
        """The calls in their conference now (a reconnecting browser's catch-up), oldest first.

        Not the call log's in-progress legs: a call transferred to a teammate goes on
        after every leg the log knows has ended. Calls older than the longest call the
        log keeps live are left out: a conference whose end was never told is not shown for ever.
        """
        since = naive_utc(self._clock()) - LONGEST_CALL
        texts = self.database.read(lambda conn: conn.scalars(_RECENT_CONTROLS, {"since": since}).all())
        states = (control.CallControl.from_dict(json.loads(text)) for text in texts)
        return [state for state in states if state.phase == "conference"]

    def call_facts(self, root: str) -> CallFacts | None:
        """The call log's row of ``root`` and the child leg that answered it, or None for no such call."""

        def work(conn: Connection) -> CallFacts | None:
            call = conn.execute(sa.select(calls).where(calls.c.call_sid == root)).one_or_none()
            if call is None:
                return None
            leg = conn.execute(
                sa.select(legs.c.call_sid, legs.c.to_number, legs.c.status)
                .where(legs.c.root_call_sid == root, legs.c.call_sid != root, legs.c.answered.is_(True))
                .order_by(legs.c.event_at.desc(), legs.c.call_sid)
                .limit(1)
            ).one_or_none()
            answered = AnsweredLeg(leg.call_sid, leg.to_number or "", leg.status) if leg is not None else None
            return CallFacts(call.direction, call.number, call.from_number, call.to_number, call.client, answered)

        return self.database.read(work)

    # ----------------------------------------------------------------- writes

    def begin(self, root: str, token: str,
              decide: Callable[[control.CallControl], control.Plan | control.Refusal],
              initial: control.CallControl | None = None) -> Begun | None:
        """A control request: ``decide`` on the stored state (``initial`` when the call has none yet).

        In one transaction on the locked row: a refusal changes nothing; while someone
        else's claim is held, any other answer becomes ``ANOTHER_CHANGE_UNDER_WAY``; a
        plan with steps takes the claim for ``token`` and stores its ``early_state`` (the
        <Dial action> reads it before the steps' answers are back); a plan without steps
        stores its state. None when the call is not under control and no ``initial`` was given.
        """
        now = naive_utc(self._clock())

        def work(conn: Connection) -> Begun | None:
            if initial is not None:
                inserted = conn.execute(self._insert_control, {
                    "root_call_sid": root, "number": initial.number, "state": _json_of(initial), "version": 0,
                    "claim": None, "claimed_at": None, "updated_at": now})
                if inserted.rowcount:
                    self._index(conn, root, initial)
            row = conn.execute(_CONTROL_FOR_UPDATE, {"root": root}).one_or_none()
            if row is None:
                return None
            before = _state_of(row)
            outcome = decide(before)
            if isinstance(outcome, control.Refusal):
                return Begun(before, outcome, False)
            if self._held(row, now):
                return Begun(before, control.ANOTHER_CHANGE_UNDER_WAY, False)
            if outcome.steps:
                self._write(conn, row, outcome.early_state or before, now, claim=token)
                return Begun(before, outcome, True)
            if outcome.state != before:
                self._write(conn, row, outcome.state, now)
            return Begun(before, outcome, False)

        return self.database.write(work)

    def store(self, root: str, token: str, state: control.CallControl) -> bool:
        """Store ``state`` for the claim's holder; False (nothing written) when ``token`` no longer holds it."""
        now = naive_utc(self._clock())

        def work(conn: Connection) -> bool:
            row = conn.execute(_CONTROL_FOR_UPDATE, {"root": root}).one_or_none()
            if row is None or row.claim != token:
                return False
            self._write(conn, row, state, now, claim=token)  # a fresh claimed_at: the holder is alive
            return True

        stored = self.database.write(work)
        if not stored:
            log.warning("call %s: a claim held too long was taken over; this holder's state is dropped", root)
        return stored

    def enqueue(self, root: str, token: str, kind: str, payload: Mapping[str, str]) -> bool | None:
        """A callback for the call: into its inbox; and the claim for ``token`` when nobody holds it.

        True: ``token`` holds the claim now and drains the inbox (:meth:`next_or_release`);
        False: the holder will apply it; None: the call is not under control (nothing kept).
        """
        now = naive_utc(self._clock())

        def work(conn: Connection) -> bool | None:
            row = conn.execute(_CONTROL_FOR_UPDATE, {"root": root}).one_or_none()
            if row is None:
                return None
            conn.execute(control_inbox.insert(), {"root_call_sid": root, "kind": kind,
                                                  "payload": json.dumps(dict(payload)), "received_at": now})
            if self._held(row, now):
                return False
            conn.execute(_UPDATE_CONTROL, {"root": root, "claim": token, "claimed_at": now})
            return True

        return self.database.write(work)

    def next_or_release(self, root: str, token: str) -> Queued | None:
        """The oldest callback in the inbox (taken out of it), or None once the claim is let go."""
        now = naive_utc(self._clock())

        def work(conn: Connection) -> Queued | None:
            row = conn.execute(_CONTROL_FOR_UPDATE, {"root": root}).one_or_none()
            if row is None or row.claim != token:
                return None
            oldest = conn.execute(_OLDEST_IN_INBOX, {"root": root}).one_or_none()
            if oldest is None:
                conn.execute(_UPDATE_CONTROL, {"root": root, "claim": None, "claimed_at": None})
                return None
            conn.execute(control_inbox.delete().where(control_inbox.c.id == oldest.id))
            conn.execute(_UPDATE_CONTROL, {"root": root, "claimed_at": now})
            return Queued(oldest.kind, json.loads(oldest.payload))

        return self.database.write(work)

    # ----------------------------------------------------------------- helpers

    def _held(self, row, now: datetime) -> bool:
        return row.claim is not None and row.claimed_at is not None and now - row.claimed_at < self._claim_for

    def _write(self, conn: Connection, row, state: control.CallControl, now: datetime,
               claim: str | None = None) -> None:
        values = {"root": row.root_call_sid, "state": _json_of(state), "version": row.version + 1,
                  "updated_at": now}
        if claim is not None:
            values.update(claim=claim, claimed_at=now)
        conn.execute(_UPDATE_CONTROL, values)
        self._index(conn, row.root_call_sid, state)

    def _index(self, conn: Connection, root: str, state: control.CallControl) -> None:
        parties = [{"call_sid": p.call_sid, "root_call_sid": root} for p in state.parties if p.call_sid]
        if parties:
            conn.execute(self._index_party, parties)


def _json_of(state: control.CallControl) -> str:
    return json.dumps(state.to_dict(), separators=(",", ":"))


def _state_of(row) -> control.CallControl:
    return control.CallControl.from_dict(json.loads(row.state))
