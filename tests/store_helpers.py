"""Calls as Twilio sends them, and a SQLite lock held by "another process", for the store's tests."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from shetphone.store import CallLog, Database

ALICE_NUMBER = "+441595000001"
BOB_NUMBER = "+441595000002"
CALLER = "+447700900123"


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


def open_inbound(calllog: CallLog, call_sid: str, number: str = ALICE_NUMBER, caller: str = CALLER) -> None:
    calllog.open_call(call_sid, direction="inbound", number=number, from_=caller, to=number, client=None)


def open_outbound(calllog: CallLog, call_sid: str, client: str, number: str, to: str) -> None:
    calllog.open_call(call_sid, direction="outbound", number=number, from_=number, to=to, client=client)


def only_call(calllog: CallLog, numbers: list[str], client: str | None = None) -> dict:
    listed = calllog.calls_for(numbers, client)
    assert len(listed) == 1, listed
    return listed[0]


@contextlib.contextmanager
def sqlite_locked(database: Database, *, readers_too: bool = False) -> Iterator[None]:
    """Hold ``database``'s write lock from another connection, as another process would.

    ``readers_too``: an exclusive lock that no reader passes either (WAL lets readers
    through a write lock); it needs the store's own connections closed first.
    """
    if readers_too:
        database.release_connections()
    # It waits its turn (the app's own housekeeping may be writing just now), then holds the lock.
    holder = sqlite3.connect(database.url.database, isolation_level=None, timeout=5)
    try:
        if readers_too:
            holder.execute("PRAGMA locking_mode=EXCLUSIVE")
            holder.execute("BEGIN EXCLUSIVE")
        else:
            holder.execute("BEGIN IMMEDIATE")
        yield
    finally:
        holder.close()  # rolls back, and lets go of an exclusive lock too
