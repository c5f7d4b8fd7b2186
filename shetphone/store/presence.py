"""What presence needs of the database (SPEC §7): who has do-not-disturb on, and who is on a call.

Both answer for a set of users at once (``users -> the subset that is dnd / busy``),
the shape :class:`shetphone.presence.Presence` takes, and both come from one
statement (:meth:`PresenceStore.flags_of`), so one ``/voice`` asks once,
whatever the size of the ring group.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import callstate
from ..callstate import naive_utc, utc_now
from .calls import LONGEST_CALL, _insert_unless_present
from .engine import Database, OneStatement
from .schema import calls, dnd, legs

STARTING_STATUSES = ["queued", "initiated"]
RINGING_OR_TALKING = sorted(set(callstate.STATUS_RANK) - callstate.TERMINAL_STATUSES - set(STARTING_STATUSES))
# A call placed from a browser that Twilio never reported on (its callbacks lost) would keep its caller busy
# for a day; a call still "initiated" after this long is not being dialled any more.
DIALLING_AT_MOST = timedelta(minutes=2)


def _flags_statement(count: int) -> sa.CompoundSelect:
    """Rows (flag, who) for ``count`` users at once: ('dnd', user), ('placed', user), ('answered', client:user).

    One statement with a parameter per user (``user0``..., ``client0``...) rather than
    expanding ones, so it is compiled once per ring-group size and run on the driver:
    /voice asks it for every incoming call. The constant lists are written into the SQL.
    """
    users = [sa.bindparam(f"user{index}") for index in range(count)]
    clients = [sa.bindparam(f"client{index}") for index in range(count)]

    def words(values: list[str]) -> list[sa.ColumnElement]:
        return [sa.literal_column(f"'{value}'") for value in values]  # status names: our own constants

    dnd_on = sa.select(sa.literal_column("'dnd'").label("flag"), dnd.c.user_name.label("who")).where(
        dnd.c.user_name.in_(users)
    )
    placed = sa.select(sa.literal_column("'placed'"), calls.c.client).where(
        calls.c.client.in_(users),
        calls.c.direction == sa.literal_column("'outbound'"),
        calls.c.started_at >= sa.bindparam("since"),
        sa.or_(
            calls.c.status.in_(words(RINGING_OR_TALKING)),
            sa.and_(calls.c.status.in_(words(STARTING_STATUSES)), calls.c.started_at >= sa.bindparam("dialling_since")),
        ),
    )
    answered = (
        sa.select(sa.literal_column("'answered'"), legs.c.to_number)
        .join(calls, calls.c.call_sid == legs.c.root_call_sid)
        .where(
            legs.c.status_rank < sa.literal_column(str(callstate.TERMINAL_RANK)),
            legs.c.answered.is_(True),
            legs.c.to_number.in_(clients),
            calls.c.started_at >= sa.bindparam("since"),
        )
    )
    return sa.union_all(dnd_on, placed, answered)


class PresenceStore:
    """Do-not-disturb flags and calls in progress per user, on one :class:`Database`."""

    def __init__(self, database: Database, clock: Callable[[], datetime] = utc_now):
        self.database = database
        self._clock = clock
        self._turn_on = _insert_unless_present(database.dialect, dnd, dnd.c.user_name)
        self._flags_for_count: dict[int, OneStatement] = {}

    def set_dnd(self, user: str, on: bool) -> None:
        """Turn ``user``'s do-not-disturb on or off; it stays so until they change it."""

        def work(conn: Connection) -> None:
            if on:
                conn.execute(self._turn_on, {"user_name": user, "since": naive_utc(self._clock())})
            else:
                conn.execute(dnd.delete().where(dnd.c.user_name == user))

        self.database.write(work)

    def flags_of(self, users: Collection[str]) -> tuple[frozenset[str], frozenset[str]]:
        """(:meth:`dnd_of`, :meth:`busy_of`) of ``users`` in one statement: ``/voice`` asks both for every call.

        Indexed reads: the dnd table's key, calls by client (``calls_by_client``), and legs by
        whom they rang (``legs_by_callee``)."""
        users = sorted(set(users))
        if not users:
            return frozenset(), frozenset()
        query = self._flags_for_count.get(len(users))
        if query is None:
            query = self._flags_for_count[len(users)] = self.database.one_statement(_flags_statement(len(users)))
        now = naive_utc(self._clock())
        values = {"since": now - LONGEST_CALL, "dialling_since": now - DIALLING_AT_MOST}
        for index, user in enumerate(users):
            values[f"user{index}"] = user
            values[f"client{index}"] = f"client:{user}"
        dnd_on: set[str] = set()
        busy: set[str] = set()
        for flag, who in query.rows(values):
            if flag == "dnd":
                dnd_on.add(who)
            else:
                busy.add(who.removeprefix("client:"))
        return frozenset(dnd_on), frozenset(busy)

    def dnd_of(self, users: Collection[str]) -> frozenset[str]:
        """The users among ``users`` whose do-not-disturb is on."""
        return self.flags_of(users)[0]

    def busy_of(self, users: Collection[str]) -> frozenset[str]:
        """The users among ``users`` with a call in progress: one they placed that is not over (and, when
        Twilio said nothing of it yet, is at most two minutes old), or an incoming one they answered
        whose leg is not over. A call older than a day lost its last callback and counts no more.
        """
        return self.flags_of(users)[1]
