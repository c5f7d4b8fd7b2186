"""The store: the only package that speaks SQL (SQLAlchemy Core; SQLite, or PostgreSQL through psycopg 3).

``Store(url)`` opens the database, brings its schema to the newest revision
(:mod:`.migrate`) and holds the stores built on it (``calls``, the call log;
``logins``, the live logins).
Callers see the store's exceptions only: :class:`StoreUnavailable` when the
database did not answer in time (a webhook answers 503 and Twilio retries),
:class:`StoreRefused` when it refused a value (retrying cannot help),
:class:`SchemaTooNew` at start for a database from a newer Shetphone, and
:class:`StoreError`, their base, for anything else.

- ``engine.py``: the engine for a URL, SQLite pragmas, bounded cooperative waits, fork safety
- ``schema.py``: the tables; ``migrations/``: their history (Alembic); ``migrate.py``: running it
- ``calls.py``: the call log
- ``control.py``: call control's state, claims and inbox (hold, transfer, three-way)
- ``logins.py``: the logins kept on the server (revocable sessions)
- ``presence.py``: do-not-disturb flags and who is on a call (SPEC §7)
- ``outbox.py``: the voicemail e-mail outbox (SPEC §8)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..callstate import utc_now
from .calls import CallLog, Recording
from .control import CallControls
from .engine import Database
from .errors import SchemaTooNew, StoreError, StoreRefused, StoreUnavailable
from .logins import Logins, login_key
from .migrate import Upgrade, upgrade
from .outbox import MailOutbox
from .presence import PresenceStore

__all__ = [
    "CallControls", "CallLog", "Database", "Logins", "MailOutbox", "PresenceStore", "Recording", "SchemaTooNew",
    "Store", "StoreError", "StoreRefused", "StoreUnavailable", "Upgrade", "login_key",
]


class Store:
    """One database and every store on it, its schema upgraded. Thread- and greenlet-safe; one per process."""

    def __init__(
        self,
        database_url: str,
        *,
        keep_days: int = 90,
        session_hours: int = 12,
        clock: Callable[[], datetime] = utc_now,
        wait: float | None = None,
        deadline: float | None = None,
    ):
        """Raises :class:`StoreError` (one line) when the database cannot be opened or is too new.

        ``wait`` and ``deadline`` bound each operation (see :class:`Database`; by default
        a few seconds).
        """
        self.database = Database(database_url, wait=wait, deadline=deadline)
        try:
            self.upgraded: Upgrade = upgrade(self.database)
        except BaseException:
            self.database.close()
            raise
        self.calls = CallLog(self.database, keep_days=keep_days, clock=clock)
        self.control = CallControls(self.database, clock=clock)
        self.logins = Logins(self.database, session_hours=session_hours, clock=clock)
        self.presence = PresenceStore(self.database, clock=clock)
        self.outbox = MailOutbox(self.database)

    def close(self) -> None:
        self.database.close()
