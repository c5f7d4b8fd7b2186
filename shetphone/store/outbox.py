"""The voicemail e-mail outbox (SPEC §8): :class:`shetphone.mail.Outbox` and ``OutboxWriter`` in the database.

One row per recording and address (a unique key on both, the address without
case), holding the voicemail's facts as the mail tells them, so a claim reads
one row. A claim is one transaction: SQLite's write lock serialises it,
PostgreSQL's ``FOR UPDATE SKIP LOCKED`` lets several processes claim
different rows at once, and neither ever hands one row to two senders while
its lease runs. A claim is named by its row and its lease's end (``OutboxItem.lease_until``), so a
stopping sender gives back only a row its own claim still holds. ``tests/outbox_contract.py`` is the
contract.

The transcript is stored with the recording (``recordings.transcript``, for
``GET /calls``) and on the rows still to be sent (for the mail).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from ..callstate import naive_utc
from ..mail import TRANSCRIPT_WAIT, OutboxItem, Voicemail
from .engine import Database
from .schema import calls, outbox, recordings

QUEUED, SENT, GIVEN_UP = "queued", "sent", "given up"


def _voicemail_of(row: Any) -> Voicemail:
    return Voicemail(recording_sid=row.recording_sid, caller=row.caller, number=row.number, duration=row.duration,
                     received_at=row.received_at.replace(tzinfo=UTC), transcript=row.transcript)


class MailOutbox:
    """The outbox on one :class:`Database`. Thread- and greenlet-safe; shared by every process on the database."""

    def __init__(self, database: Database):
        self.database = database
        insert = sqlite.insert if database.dialect == "sqlite" else postgresql.insert
        self._add = (insert(outbox).on_conflict_do_nothing(index_elements=["recording_sid", "address_key"])
                     .returning(outbox.c.id))
        due = sa.select(outbox).where(
            outbox.c.status == QUEUED,
            outbox.c.due_at <= sa.bindparam("now"),
            outbox.c.lease_until <= sa.bindparam("now"),
        ).order_by(outbox.c.due_at, outbox.c.id).limit(1)
        # SQLite: the write transaction already holds the lock. PostgreSQL: a row another sender is
        # claiming right now is skipped, not waited for.
        self._due = due if database.dialect == "sqlite" else due.with_for_update(skip_locked=True)

    # ------------------------------------------------------------------ the webhooks

    def add(self, voicemail: Voicemail, addresses: Iterable[str], *, now: float,
            wait_for_transcript: bool = False) -> int:
        return self.database.write(lambda conn: self.add_in(conn, voicemail, addresses, now=now,
                                                            wait_for_transcript=wait_for_transcript))

    def add_in(self, conn: Connection, voicemail: Voicemail, addresses: Iterable[str], *, now: float,
               wait_for_transcript: bool = False) -> int:
        """:meth:`add` inside the caller's transaction (the recording's own, so both are kept or neither)."""
        due = now + TRANSCRIPT_WAIT if wait_for_transcript and voicemail.transcript is None else now
        unique = {address.strip().lower(): address.strip() for address in reversed(list(addresses))}
        added = 0
        for key, address in sorted(unique.items()):
            row = {
                "recording_sid": voicemail.recording_sid, "address": address, "address_key": key,
                "caller": voicemail.caller, "number": voicemail.number, "duration": int(voicemail.duration),
                "received_at": naive_utc(voicemail.received_at), "transcript": voicemail.transcript,
                "created_at": now, "due_at": due, "lease_until": 0.0, "failures": 0, "status": QUEUED,
                "error": None,
            }
            if conn.execute(self._add, row).first() is not None:
                added += 1
        return added

    def add_transcript(self, recording_sid: str, text: str | None, *, now: float) -> None:
        self.database.write(lambda conn: self._transcript_in(conn, recording_sid, text, now))

    def transcribed(self, recording_sid: str, text: str | None, *, now: float) -> dict | None:
        """:meth:`add_transcript`, and the facts of the recording's ``voicemail`` event (None: no such recording)."""

        def work(conn: Connection) -> dict | None:
            self._transcript_in(conn, recording_sid, text, now)
            row = conn.execute(
                sa.select(recordings.c.call_sid, recordings.c.duration, recordings.c.transcript, calls.c.number,
                          calls.c.from_number)
                .join(calls, calls.c.call_sid == recordings.c.call_sid)
                .where(recordings.c.recording_sid == recording_sid)
            ).one_or_none()
            if row is None:
                return None
            return {"call_sid": row.call_sid, "number": row.number, "from": row.from_number,
                    "duration": row.duration, "recording_sid": recording_sid, "transcript": row.transcript}

        return self.database.write(work)

    @staticmethod
    def _transcript_in(conn: Connection, recording_sid: str, text: str | None, now: float) -> None:
        mine = outbox.c.recording_sid == recording_sid
        if text:
            conn.execute(recordings.update().where(recordings.c.recording_sid == recording_sid)
                         .values(transcript=text))
            conn.execute(outbox.update().where(mine, outbox.c.status == QUEUED).values(transcript=text))
        # The rows waiting for it (not yet tried) go now; a back-off after a failure keeps its time.
        conn.execute(outbox.update().where(mine, outbox.c.status == QUEUED, outbox.c.failures == 0,
                                           outbox.c.due_at > now).values(due_at=now))

    # ------------------------------------------------------------------ the sender loop

    def claim(self, now: float, lease: float) -> OutboxItem | None:
        def work(conn: Connection) -> OutboxItem | None:
            row = conn.execute(self._due, {"now": now}).first()
            if row is None:
                return None
            lease_until = now + lease
            conn.execute(outbox.update().where(outbox.c.id == row.id).values(lease_until=lease_until))
            return OutboxItem(row.id, row.address, _voicemail_of(row), row.failures, row.created_at, lease_until)

        return self.database.write(work)

    def sent(self, item_id: int) -> None:
        self._update(item_id, status=SENT)

    def retry(self, item_id: int, due_at: float, error: str) -> None:
        self._update(item_id, failures=outbox.c.failures + 1, due_at=due_at, error=error, lease_until=0.0)

    def give_up(self, item_id: int, error: str) -> None:
        self._update(item_id, failures=outbox.c.failures + 1, status=GIVEN_UP, error=error)

    def release(self, item: OutboxItem) -> bool:
        # lease_until is a double both ways (SQLite REAL, PostgreSQL double precision), so the float the claim
        # wrote compares equal; due_at is untouched: it was due when claimed, and keeps its place.
        statement = outbox.update().where(outbox.c.id == item.id, outbox.c.status == QUEUED,
                                          outbox.c.lease_until == item.lease_until).values(lease_until=0.0)
        return self.database.write(lambda conn: conn.execute(statement).rowcount) == 1

    def _update(self, item_id: int, **values: Any) -> None:
        self.database.write(lambda conn: conn.execute(outbox.update().where(outbox.c.id == item_id).values(**values)))

    # ------------------------------------------------------------------ upkeep and diagnostics

    def prune(self, before: float) -> int:
        """Forget rows sent or given up before ``before`` (unix seconds); queued ones stay."""
        statement = outbox.delete().where(outbox.c.status.in_([SENT, GIVEN_UP]), outbox.c.created_at < before)
        return self.database.write(lambda conn: conn.execute(statement).rowcount)

    def status(self, recording_sid: str, address: str) -> tuple[str, int, str | None]:
        """(status, failures, last error) of one row: for tests and diagnostics."""
        query = sa.select(outbox.c.status, outbox.c.failures, outbox.c.error).where(
            outbox.c.recording_sid == recording_sid, outbox.c.address_key == address.strip().lower())
        row = self.database.read(lambda conn: conn.execute(query).one_or_none())
        if row is None:
            raise KeyError((recording_sid, address))
        return tuple(row)
