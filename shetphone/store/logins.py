"""Logins kept on the server: a session cookie is worth something only while its login is here.

A login begins at ``POST /login`` (:meth:`Logins.begin` gives the browser's session a
random id), is checked on every request that carries a session (:meth:`Logins.check`)
and ends at logout (:meth:`Logins.end`), when its user is removed or given a new
password (:meth:`Logins.end_user`) or after ``session_hours`` without use (refused by
``check`` at once, deleted by :meth:`Logins.prune`). A login whose page is open, its
socket connected, is in use even when the page sends no request: each process keeps its
connected logins alive (:meth:`Logins.keep_alive`). Every process shares the table, so a
login ended by one is ended for all.

The database keeps only the SHA-256 of each id (:func:`login_key`): whoever reads
it (a backup, a leak) cannot turn a row into a cookie.

A check is one read by primary key; the write that slides the expiry happens at
most once a minute per login (:data:`REFRESH`), so page loads and API calls stay
cheap.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..callstate import naive_utc, utc_now
from .engine import Database
from .schema import logins

REFRESH = timedelta(seconds=60)  # a login used again within this is not written again
ID_BYTES = 32  # of randomness in a login id
USER_AGENT_LENGTH = 255

_LOGIN = sa.select(logins.c.user_name, logins.c.last_seen_at).where(logins.c.id_hash == sa.bindparam("key"))
_TOUCH = logins.update().where(logins.c.id_hash == sa.bindparam("key")).values(last_seen_at=sa.bindparam("now"))
_END = logins.delete().where(logins.c.id_hash == sa.bindparam("key"))


def login_key(login_id: str) -> str:
    """What the database (and Socket.IO's room names) know of a login: the hex SHA-256 of its id."""
    return hashlib.sha256(login_id.encode("utf-8")).hexdigest()


class Logins:
    """The live logins on one :class:`Database`. Thread- and greenlet-safe.

    Every method may raise :class:`StoreUnavailable` or another :class:`StoreError`.
    """

    def __init__(self, database: Database, session_hours: int = 12, clock: Callable[[], datetime] = utc_now):
        self.database = database
        self.lifetime = timedelta(hours=session_hours)
        self._clock = clock

    def begin(self, user: str, user_agent: str | None = None) -> str:
        """A new login of ``user``: its id, for the session cookie only (the database keeps its hash)."""
        login_id = secrets.token_urlsafe(ID_BYTES)
        now = naive_utc(self._clock())
        row = {
            "id_hash": login_key(login_id),
            "user_name": user,
            "created_at": now,
            "last_seen_at": now,
            "user_agent": (user_agent or None) and user_agent[:USER_AGENT_LENGTH],
        }
        self.database.write(lambda conn: conn.execute(logins.insert(), row))
        return login_id

    def check(self, login_id: object, user: str) -> bool:
        """Is ``login_id`` a live login of ``user``? A yes counts as use (written at most once a minute)."""
        if not isinstance(login_id, str) or not login_id:
            return False
        key = login_key(login_id)
        row = self.database.read(lambda conn: conn.execute(_LOGIN, {"key": key}).one_or_none())
        if row is None or row.user_name != user:
            return False
        now = naive_utc(self._clock())
        if row.last_seen_at <= now - self.lifetime:
            return False  # unused for too long: prune deletes it
        if now - row.last_seen_at >= REFRESH:
            # An UPDATE, never an upsert: a logout that deleted the row meanwhile stays done.
            self.database.write(lambda conn: conn.execute(_TOUCH, {"key": key, "now": now}))
        return True

    def keep_alive(self, keys: Iterable[str], batch: int = 500) -> int:
        """Count the logins of ``keys`` (:func:`login_key`) as used now: their pages are open.

        An UPDATE of rows last written over :data:`REFRESH` ago, never an insert, so a
        login ended meanwhile stays ended. How many were written.
        """
        now = naive_utc(self._clock())
        wanted = sorted(set(keys))
        written = 0
        for start in range(0, len(wanted), batch):  # a bounded IN list, whatever the database
            chunk = wanted[start:start + batch]
            statement = (logins.update()
                         .where(logins.c.id_hash.in_(chunk), logins.c.last_seen_at < now - REFRESH)
                         .values(last_seen_at=now))
            written += self.database.write(lambda conn, statement=statement: conn.execute(statement).rowcount)
        return written

    def end(self, login_id: str) -> bool:
        """End one login (logout); False when it was not live."""
        return self.database.write(lambda conn: conn.execute(_END, {"key": login_key(login_id)}).rowcount) > 0

    def end_user(self, user: str) -> int:
        """End every login of ``user`` (removed from .htpasswd, or a new password); how many there were."""
        statement = logins.delete().where(logins.c.user_name == user)
        return self.database.write(lambda conn: conn.execute(statement).rowcount)

    def prune(self, batch: int = 1000) -> list[str]:
        """Delete the logins unused for ``session_hours``; their keys (:func:`login_key`), to close their sockets."""
        cutoff = naive_utc(self._clock()) - self.lifetime
        expired = sa.select(logins.c.id_hash).where(logins.c.last_seen_at <= cutoff).limit(batch)

        def delete_batch(conn: Connection) -> list[str]:
            keys = list(conn.scalars(expired))
            if keys:
                conn.execute(logins.delete().where(logins.c.id_hash.in_(keys)))
            return keys

        pruned: list[str] = []
        while True:
            keys = self.database.write(delete_batch)
            pruned.extend(keys)
            if len(keys) < batch:
                return pruned
