"""The call log: every call the team made or received, and the state of its legs.

Only this module speaks SQL (SQLAlchemy Core, portable between SQLite and
PostgreSQL through psycopg 3). Three tables:

- ``calls``: one row per *root* call, keyed by the CallSid of the request Twilio
  first sent to ``/voice``. It carries the call as the team sees it (direction,
  the team's Twilio number, from, to, the browser client that placed it) and a
  summary of its legs kept up to date on every write, so listing reads one table.
- ``legs``: one row per CallSid that sent a status callback (the root itself and
  its ``<Dial>`` children), with the last applied SequenceNumber and status rank.
  A leg's state only moves forward, so repeated and reordered callbacks are inert.
- ``recordings``: voicemail left on a call (Twilio's URL stays here; browsers
  only ever get our own URL).

Timestamps are stored as naive UTC and handed out as ISO 8601 with a ``Z``.
"""

from __future__ import annotations

import functools
import logging
import os
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import StaticPool

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

# Twilio ends every call within 24 hours (the largest timeLimit), so a leg still
# "ringing" after that lost its final callback: reconnect catch-up leaves it out.
LONGEST_CALL = timedelta(hours=24)

SQLITE_BUSY_TIMEOUT_MS = 10_000
SCHEMA_LOCK_KEY = 0x73686574  # "shet": the PostgreSQL advisory lock held while creating or migrating

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


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """``2026-11-22T16:03:27Z``: what the browser and the JSON API get."""
    return _naive_utc(moment).isoformat(timespec="seconds") + "Z"


def _naive_utc(moment: datetime) -> datetime:
    """Stored form: naive UTC (aware values are converted; naive ones are taken as UTC)."""
    offset = moment.utcoffset()
    if offset is not None:
        moment = moment - offset
    return moment.replace(tzinfo=None, microsecond=0)


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _twilio_time(text: str | None) -> datetime | None:
    """Twilio's ``Timestamp`` (RFC 2822, e.g. ``Sun, 22 Nov 2026 16:03:27 +0000``)."""
    if not text:
        return None
    try:
        return _naive_utc(parsedate_to_datetime(text))
    except (TypeError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------- schema

metadata = sa.MetaData()

schema_version_table = sa.Table(
    "schema_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),  # always 1: one row
    sa.Column("version", sa.Integer, nullable=False),
)

calls = sa.Table(
    "calls",
    metadata,
    sa.Column("call_sid", sa.String(64), primary_key=True),
    sa.Column("direction", sa.String(8), nullable=False),  # inbound / outbound, seen from the team
    sa.Column("number", sa.String(64), nullable=False),  # the team's Twilio number
    sa.Column("from_number", sa.String(255), nullable=False),
    sa.Column("to_number", sa.String(255), nullable=False),
    sa.Column("client", sa.String(128)),  # the browser client that placed an outbound call
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("dial_status", sa.String(16)),  # DialCallStatus from the <Dial action>
    # The summary of the legs, rewritten with every change so listing reads only this row.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("answered", sa.Boolean, nullable=False, default=False),
    sa.Column("duration", sa.Integer, nullable=False, default=0),
    sa.Index("calls_by_number", "number", "started_at", "call_sid"),
    sa.Index("calls_by_client", "client", "started_at", "call_sid"),
    sa.Index("calls_by_start", "started_at"),  # pruning
)

legs = sa.Table(
    "legs",
    metadata,
    sa.Column("call_sid", sa.String(64), primary_key=True),
    sa.Column("root_call_sid", sa.String(64), sa.ForeignKey("calls.call_sid", ondelete="CASCADE"), nullable=False),
    sa.Column("parent_call_sid", sa.String(64)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_rank", sa.Integer, nullable=False),
    sa.Column("sequence", sa.Integer),  # the last applied SequenceNumber, if Twilio sent one
    sa.Column("answered", sa.Boolean, nullable=False, default=False),
    sa.Column("duration", sa.Integer, nullable=False, default=0),
    sa.Column("from_number", sa.String(255)),  # the leg's own From/To, as Twilio sent them
    sa.Column("to_number", sa.String(255)),
    sa.Column("event_at", sa.DateTime, nullable=False),  # Timestamp of the last applied callback
    sa.Index("legs_by_root", "root_call_sid"),
    sa.Index("legs_by_rank", "status_rank"),  # the few legs not yet terminal, for catch-up
)

recordings = sa.Table(
    "recordings",
    metadata,
    sa.Column("recording_sid", sa.String(64), primary_key=True),
    sa.Column("call_sid", sa.String(64), sa.ForeignKey("calls.call_sid", ondelete="CASCADE"), nullable=False),
    sa.Column("twilio_url", sa.String(1024), nullable=False),
    sa.Column("duration", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Index("recordings_by_call", "call_sid"),
)

# The hot path's statements, built once (building a statement costs more than running it).
_LEG = sa.select(legs).where(legs.c.call_sid == sa.bindparam("call_sid"))
_LEG_ROOT = sa.select(legs.c.root_call_sid).where(legs.c.call_sid == sa.bindparam("call_sid"))
_LEGS_OF_CALL = sa.select(legs).where(legs.c.root_call_sid == sa.bindparam("root_call_sid"))
_CALL_FOR_UPDATE = sa.select(calls).where(calls.c.call_sid == sa.bindparam("call_sid")).with_for_update()
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


def _newest_first(columns: Any) -> tuple[sa.UnaryExpression, sa.UnaryExpression]:
    return columns.started_at.desc(), columns.call_sid.desc()  # the SID breaks ties in the same second


def _listed_call(
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
) -> dict[str, Any]:
    """One entry of GET /calls from a row of ``_listing_query``."""
    return {
        "call_sid": call_sid,
        "direction": direction,
        "from": from_number,
        "to": to_number,
        "number": number,
        "status": status,
        "started_at": iso_utc(started_at),
        "duration": duration,
        "voicemail_url": None,  # the route knows our own URL for recording_sid
        "recording_sid": recording_sid,
        "missed": _is_missed(direction, status, answered),
    }


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
    latest_recording = (
        sa.select(recordings.c.recording_sid)
        .where(recordings.c.call_sid == merged.c.call_sid)
        .order_by(recordings.c.created_at.desc(), recordings.c.recording_sid.desc())
        .limit(1)
        .scalar_subquery()
    )
    return sa.select(merged, latest_recording.label("recording_sid")).order_by(*_newest_first(merged.c)).limit(limit)


# MIGRATIONS[n] brings a database at version n - 1 up to version n, inside the
# start-up transaction. A fresh database is created at SCHEMA_VERSION directly.
Migration = Callable[[Connection], None]
MIGRATIONS: dict[int, Migration] = {}


class SchemaTooNew(RuntimeError):
    """The database was written by a newer Shetphone; refuse rather than corrupt it."""


class Recording(NamedTuple):
    call_sid: str
    number: str
    client: str | None
    twilio_url: str


# --------------------------------------------------------------------------- engine


def _sqlite_engine(url: sa.URL) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if in_memory:
        # One shared connection, or every checkout would see its own empty database.
        engine = sa.create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @sa.event.listens_for(engine, "connect")
    def configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (sqlite3's legacy mode breaks SAVEPOINT).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not in_memory:
            # WAL: readers never block the writer, so several processes share the file.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        # A writer takes the write lock up front: a deferred transaction that reads
        # then writes can fail with SQLITE_BUSY without waiting for the busy timeout.
        immediate = connection.get_execution_options().get("shetphone_writes", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def create_engine(database_url: str) -> Engine:
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    return sa.create_engine(url, pool_pre_ping=True)


def _forget_connections_after_fork(engine: Engine) -> None:
    """A forked child (uWSGI without lazy-apps) must open its own connections.

    Sharing the parent's pooled SQLite handle or PostgreSQL socket across
    processes corrupts both; ``dispose(close=False)`` drops them from the
    child's pool without closing them under the parent.
    """
    if isinstance(engine.pool, StaticPool):
        return  # in-memory SQLite: the child's copy of the one connection is its database
    engine_ref = weakref.ref(engine)  # the hook must not keep a closed store alive

    def forget() -> None:
        forked = engine_ref()
        if forked is not None:
            forked.dispose(close=False)

    os.register_at_fork(after_in_child=forget)


# --------------------------------------------------------------------------- summary


class _LegState(NamedTuple):
    call_sid: str
    status: str
    status_rank: int
    answered: bool
    duration: int


def summarise(root_call_sid: str, leg_states: Sequence[_LegState], dial_status: str | None) -> tuple[str, bool, int]:
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


def _advances(leg: Any, sequence: int | None, rank: int) -> bool:
    """Whether a callback moves this leg forward: newer, higher on the ladder, not after the end."""
    if sequence is not None and leg.sequence is not None and sequence <= leg.sequence:
        return False  # a repeat, or older than what was applied
    return leg.status_rank < TERMINAL_RANK and rank > leg.status_rank


def _is_missed(direction: str, status: str, answered: bool) -> bool:
    return direction == "inbound" and not answered and status in TERMINAL_STATUSES


def _insert_unless_present(dialect_name: str) -> sa.Insert | None:
    """INSERT ... ON CONFLICT DO NOTHING where the dialect has it (SQLite, PostgreSQL), else None."""
    if dialect_name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        return None
    return insert(calls).on_conflict_do_nothing(index_elements=[calls.c.call_sid])


# --------------------------------------------------------------------------- the store


class CallLog:
    """The call log store. Thread- and greenlet-safe; one per process is enough."""

    def __init__(self, database_url: str, keep_days: int = 90, clock: Callable[[], datetime] = utc_now):
        self.keep_days = keep_days
        self._clock = clock
        self.engine = create_engine(database_url)
        self._writer = self.engine.execution_options(shetphone_writes=True)
        self._open_call_statement = _insert_unless_present(self.engine.dialect.name)
        self._migrate()
        _forget_connections_after_fork(self.engine)

    # ----------------------------------------------------------------- schema

    def _migrate(self) -> None:
        with self._writer.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Several workers starting at once: one creates or migrates, the others wait.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            if not sa.inspect(conn).has_table("schema_version"):
                metadata.create_all(conn)
                conn.execute(schema_version_table.insert().values(id=1, version=SCHEMA_VERSION))
                return
            version = conn.scalar(sa.select(schema_version_table.c.version).where(schema_version_table.c.id == 1)) or 0
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"the call log database is at schema version {version}; this Shetphone knows up to "
                    f"{SCHEMA_VERSION}: upgrade Shetphone"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                log.info("migrating the call log to schema version %d", target)
                MIGRATIONS[target](conn)
                conn.execute(schema_version_table.update().where(schema_version_table.c.id == 1).values(version=target))

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return conn.scalar(sa.select(schema_version_table.c.version).where(schema_version_table.c.id == 1))

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
            "started_at": _naive_utc(self._clock()),
            "status": "initiated",
            "answered": False,
            "duration": 0,
        }
        with self._writer.begin() as conn:
            if self._open_call_statement is not None:
                conn.execute(self._open_call_statement, row)  # one statement: it is on /voice's path
                return
            if conn.scalar(sa.select(calls.c.call_sid).where(calls.c.call_sid == call_sid)) is not None:
                return
            try:
                with conn.begin_nested():  # a concurrent retry may insert between the check and here
                    conn.execute(calls.insert().values(**row))
            except IntegrityError:
                pass

    def record_status(self, form: Mapping[str, str]) -> dict | None:
        """Apply one status callback; the ``call_status`` payload, or None if nothing changed."""
        call_sid = form.get("CallSid") or ""
        status = (form.get("CallStatus") or "").strip().lower()
        if not call_sid or status not in STATUS_RANK:
            if call_sid:
                log.warning("status callback for %s with unknown CallStatus %r ignored", call_sid, status)
            return None
        sequence = _int_or_none(form.get("SequenceNumber"))
        rank = STATUS_RANK[status]

        with self._writer.begin() as conn:
            # A leg only moves forward, so a callback this unlocked read already rejects
            # stays rejected: Twilio's retries cost one indexed read.
            leg = conn.execute(_LEG, {"call_sid": call_sid}).one_or_none()
            if leg is not None and not _advances(leg, sequence, rank):
                return None
            if leg is not None:
                root_call_sid = leg.root_call_sid
            else:
                root_call_sid = self._find_root(conn, call_sid, form.get("ParentCallSid") or None)
            if root_call_sid is None:
                return None
            # Lock the root call so its callbacks apply one at a time (PostgreSQL; SQLite's
            # BEGIN IMMEDIATE already serialises writers), then decide on fresh state.
            call = conn.execute(_CALL_FOR_UPDATE, {"call_sid": root_call_sid}).one()
            leg_states = {row.call_sid: row for row in conn.execute(_LEGS_OF_CALL, {"root_call_sid": root_call_sid})}
            leg = leg_states.get(call_sid)
            if leg is not None and not _advances(leg, sequence, rank):
                return None  # another worker applied this or a newer callback meanwhile
            values = {
                "status": status,
                "status_rank": rank,
                "sequence": sequence if sequence is not None else (leg.sequence if leg is not None else None),
                "answered": rank == ANSWERED_RANK or status == "completed" or bool(leg is not None and leg.answered),
                "duration": _int_or_none(form.get("CallDuration")) or 0,
                "event_at": _twilio_time(form.get("Timestamp")) or _naive_utc(self._clock()),
            }
            if leg is None:
                parent_call_sid = None if call_sid == root_call_sid else form.get("ParentCallSid") or None
                conn.execute(
                    legs.insert(),
                    {
                        "call_sid": call_sid,
                        "root_call_sid": root_call_sid,
                        "parent_call_sid": parent_call_sid,
                        "from_number": form.get("From"),
                        "to_number": form.get("To"),
                        **values,
                    },
                )
            else:
                parent_call_sid = leg.parent_call_sid
                conn.execute(_UPDATE_LEG, {"key": call_sid, **values})
            leg_states[call_sid] = _LegState(call_sid, status, rank, values["answered"], values["duration"])
            self._write_summary(conn, call, leg_states.values(), call.dial_status)
        return self._status_payload(call, call_sid, parent_call_sid, status, values["event_at"], sequence)

    def record_dial_outcome(self, call_sid: str, dial_call_status: str) -> None:
        """The ``DialCallStatus`` of the root call's ``<Dial>`` (from ``/voice/dial-complete``)."""
        dial_status = dial_call_status.strip().lower()
        if dial_status not in STATUS_RANK:
            log.warning("DialCallStatus %r of %s ignored", dial_call_status, call_sid)
            return
        with self._writer.begin() as conn:
            call = conn.execute(_CALL_FOR_UPDATE, {"call_sid": call_sid}).one_or_none()
            if call is None or call.dial_status == dial_status:
                return
            conn.execute(calls.update().where(calls.c.call_sid == call_sid).values(dial_status=dial_status))
            leg_states = conn.execute(_LEGS_OF_CALL, {"root_call_sid": call_sid}).all()
            self._write_summary(conn, call, leg_states, dial_status)

    def record_voicemail(self, call_sid: str, *, recording_sid: str, recording_url: str, duration: int) -> dict | None:
        """Store a voicemail; the ``voicemail`` event's facts, or None for an unknown call or a repeat."""
        if not recording_sid or not recording_url:
            log.warning("recording callback for %s without a RecordingSid or RecordingUrl ignored", call_sid)
            return None
        with self._writer.begin() as conn:
            call = conn.execute(sa.select(calls).where(calls.c.call_sid == call_sid)).one_or_none()
            if call is None:
                return None
            known = conn.scalar(
                sa.select(recordings.c.recording_sid).where(recordings.c.recording_sid == recording_sid)
            )
            if known is not None:
                return None
            try:
                with conn.begin_nested():
                    conn.execute(
                        recordings.insert().values(
                            recording_sid=recording_sid,
                            call_sid=call_sid,
                            twilio_url=recording_url,
                            duration=int(duration),
                            created_at=_naive_utc(self._clock()),
                        )
                    )
            except IntegrityError:
                return None  # the same callback, stored by a concurrent retry
        return {
            "call_sid": call_sid,
            "number": call.number,
            "from": call.from_number,
            "duration": int(duration),
            "recording_sid": recording_sid,
        }

    def prune(self, batch: int = 1000) -> int:
        """Delete calls started more than ``keep_days`` ago, with their legs and recordings.

        In transactions of ``batch`` calls, so a first prune of a long history never
        holds SQLite's write lock long enough to make status callbacks time out.
        """
        cutoff = _naive_utc(self._clock()) - timedelta(days=self.keep_days)
        oldest = sa.select(calls.c.call_sid).where(calls.c.started_at < cutoff).order_by(calls.c.started_at)
        deleted = 0
        while True:
            with self._writer.begin() as conn:
                call_sids = list(conn.scalars(oldest.limit(batch)))
                if call_sids:
                    conn.execute(recordings.delete().where(recordings.c.call_sid.in_(call_sids)))
                    conn.execute(legs.delete().where(legs.c.root_call_sid.in_(call_sids)))
                    conn.execute(calls.delete().where(calls.c.call_sid.in_(call_sids)))
            deleted += len(call_sids)
            if len(call_sids) < batch:
                return deleted

    def import_calls(self, entries: Iterable[Mapping[str, Any]], batch: int = 10_000) -> int:
        """Bulk insert finished calls (history from elsewhere, benchmarks, tests).

        Each entry: call_sid, direction, number, from, to, client, started_at
        (datetime), status, answered, duration. Returns how many were inserted.
        """
        count = 0
        rows: list[dict[str, Any]] = []

        def flush(conn: Connection) -> None:
            if rows:
                conn.execute(calls.insert(), rows)
                rows.clear()

        with self._writer.begin() as conn:
            for entry in entries:
                rows.append(
                    {
                        "call_sid": entry["call_sid"],
                        "direction": entry["direction"],
                        "number": entry["number"],
                        "from_number": entry["from"],
                        "to_number": entry["to"],
                        "client": entry.get("client"),
                        "started_at": _naive_utc(entry["started_at"]),
                        "status": entry["status"],
                        "answered": bool(entry.get("answered", False)),
                        "duration": int(entry.get("duration", 0)),
                    }
                )
                count += 1
                if len(rows) >= batch:
                    flush(conn)
            flush(conn)
        return count

    # ----------------------------------------------------------------- reads

    def recording_for(self, recording_sid: str) -> Recording | None:
        query = (
            sa.select(recordings.c.call_sid, calls.c.number, calls.c.client, recordings.c.twilio_url)
            .join(calls, calls.c.call_sid == recordings.c.call_sid)
            .where(recordings.c.recording_sid == recording_sid)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        return Recording(*row) if row is not None else None

    def calls_in_progress(self, numbers: Iterable[str], client: str | None = None) -> list[dict]:
        """The latest ``call_status`` payload of every leg still live in these rooms, oldest first."""
        belongs = self._belongs(numbers, client)
        if belongs is None:
            return []
        since = _naive_utc(self._clock()) - LONGEST_CALL
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
            .where(legs.c.status_rank < TERMINAL_RANK, calls.c.started_at >= since, belongs)
            .order_by(legs.c.event_at, legs.c.call_sid)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            self._status_payload(row, row.call_sid, row.parent_call_sid, row.status, row.event_at, row.sequence)
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
        with self.engine.connect() as conn:
            rows = conn.execute(_listing_query(len(numbers), bool(client)), parameters).all()
        return [_listed_call(*row) for row in rows]

    def close(self) -> None:
        self.engine.dispose()

    # ----------------------------------------------------------------- helpers

    @staticmethod
    def _belongs(numbers: Iterable[str], client: str | None) -> sa.ColumnElement[bool] | None:
        numbers = list(numbers)
        conditions = []
        if numbers:
            conditions.append(calls.c.number.in_(numbers))
        if client:
            conditions.append(calls.c.client == client)
        return sa.or_(*conditions) if conditions else None

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
    def _write_summary(conn: Connection, call: Any, leg_states: Iterable[Any], dial_status: str | None) -> None:
        """Rewrite the call's summary of its legs when it changed."""
        states = [
            _LegState(leg.call_sid, leg.status, leg.status_rank, leg.answered, leg.duration) for leg in leg_states
        ]
        summary = summarise(call.call_sid, states, dial_status)
        if summary != (call.status, call.answered, call.duration):
            status, answered, duration = summary
            conn.execute(
                _UPDATE_SUMMARY, {"key": call.call_sid, "status": status, "answered": answered, "duration": duration}
            )

    @staticmethod
    def _status_payload(
        call: Any, call_sid: str, parent_call_sid: str | None, status: str, event_at: datetime, sequence: int | None
    ) -> dict:
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
