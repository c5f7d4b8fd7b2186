"""One database: the engine for its URL, and transactions that wait for it cooperatively and within bounds.

Every store reaches the database through :class:`Database`. Its ``write`` and
``read`` run a piece of work in one transaction and turn SQLAlchemy's errors
into the store's own (:mod:`.errors`), so nothing outside ``store/`` sees them.

Waiting never blocks the process and never lasts long:

- SQLite: its busy timeout is 0. sqlite3's own busy wait sleeps in C, and under
  gevent that stops every greenlet of the process (``/healthz`` and every
  callback with it) for as long as another process holds the write lock. A
  transaction that finds the lock taken is retried here instead, sleeping with
  ``time.sleep`` (gevent's once monkey-patched), for at most ``wait`` seconds,
  then :class:`StoreUnavailable`.
- PostgreSQL: ``connect_timeout`` and ``statement_timeout``, so an overloaded
  or locked server answers within seconds. A server stopped outright cannot
  time itself out, so under gevent each operation also has a deadline of its
  own; past it the connection is dropped and the operation fails with
  :class:`StoreUnavailable`.

Under uWSGI a forked worker opens its own connections (see
:func:`forget_connections_after_fork`).
"""

from __future__ import annotations

import os
import random
import sqlite3
import sys
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from .errors import StoreError, StoreRefused, StoreUnavailable

T = TypeVar("T")

WAIT_SECONDS = 3.0  # how long one operation waits for a locked or slow database before StoreUnavailable
DEADLINE_MARGIN_SECONDS = 2.0  # under gevent, one operation as a whole may take this much more than ``wait``
CONNECT_TIMEOUT_SECONDS = 3  # PostgreSQL; libpq counts whole seconds
SQLITE_BUSY_TIMEOUT_MS = 0  # never wait inside sqlite3: the retry loop here waits instead
FIRST_RETRY_SECONDS = 0.001
LONGEST_RETRY_SECONDS = 0.05
# SQLite connections the hot statements keep between calls (see Database.borrow): about the webhooks a
# process answers at once; more than that come from the pool and go back to it.
SPARE_SQLITE_CONNECTIONS = 8

_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
# Serialization failure and deadlock: PostgreSQL rolled the transaction back, so running it again is safe.
_POSTGRESQL_RETRYABLE = frozenset({"40001", "40P01"})
# The database did not answer, or not in time; anything else from it is a StoreError.
_UNAVAILABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError, sa.exc.TimeoutError)
# The database refused the values themselves (too long, a NUL byte in text, out of range, a constraint): the
# same write fails every time. So does sqlite3 binding an int beyond 64 bits: an OverflowError, no DBAPI error.
_REFUSED = (sa.exc.DataError, sa.exc.IntegrityError)


def _sqlite_engine(url: sa.URL) -> Engine:
    name = url.render_as_string(hide_password=True)
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if in_memory:
        # One shared connection, or every checkout would see its own empty database.
        engine = sa.create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False, "timeout": 0})
    else:
        _make_directory(name, Path(database).expanduser().parent)
        # No rollback when a connection goes back to the pool: sqlite3 here is in autocommit
        # mode (see configure), so a transaction is only ever one that BEGIN opened, and every
        # path that opens one ends it. The rollback cost as much as /voice's INSERT.
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                                  pool_reset_on_return=None)

    @sa.event.listens_for(engine, "connect")
    def configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (sqlite3's legacy mode breaks SAVEPOINT).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if not in_memory:
            # WAL: readers never block the writer, so several processes share the file.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        # A writer takes the write lock up front, so the one place it waits for another
        # writer is here, before it did anything.
        options = connection.get_execution_options()
        dbapi_connection = connection.connection.dbapi_connection
        if not options.get("shetphone_writes", False):
            dbapi_connection.execute("BEGIN")
            return
        patience = None
        while True:
            try:
                dbapi_connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _sqlite_busy(exc):
                    raise StoreUnavailable(f"database {name}: {_first_line(exc)}") from exc
                patience = patience or _Patience(options.get("shetphone_wait", WAIT_SECONDS))
                if not patience.sleep():
                    raise StoreUnavailable(
                        f"database {name}: locked by another writer for more than {patience.wait:g} s"
                    ) from exc
            except sqlite3.Error as exc:
                raise StoreError(f"database {name}: {_first_line(exc)}") from exc

    return engine


def _make_directory(name: str, directory: Path) -> None:
    """The SQLite file's directory, made if missing; a StoreError (one line) when it cannot be."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        in_the_way = next((path for path in (directory, *directory.parents) if path.exists() and not path.is_dir()),
                          None)
        why = f"{in_the_way} is a file, not a directory" if in_the_way else f"{directory}: {exc.strerror}"
        raise StoreError(f"database {name}: cannot make its directory: {why}") from None


def _postgresql_engine(url: sa.URL, wait: float) -> Engine:
    statement_timeout = f"-c statement_timeout={max(1, int(wait * 1000))}"
    options = " ".join(part for part in (url.query.get("options"), statement_timeout) if part)
    connect_args = {"options": options}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def create_engine(database_url: str | sa.URL, wait: float = WAIT_SECONDS) -> Engine:
    """The engine for a URL; ``wait``: PostgreSQL's statement timeout (SQLite's lock wait is per transaction)."""
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    if url.get_backend_name() == "postgresql":
        return _postgresql_engine(url, wait)
    raise StoreError(f"database {url.render_as_string(hide_password=True)}: only SQLite and PostgreSQL are supported")


def forget_connections_after_fork(engine: Engine) -> None:
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


def _gevent_deadline(seconds: float) -> Any:
    """A started gevent.Timeout when this process runs on gevent, else None.

    The Timeout is a BaseException: SQLAlchemy then drops the connection it
    interrupted instead of handing it back to the pool mid-statement.
    """
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("socket"):
        return None
    import gevent

    return gevent.Timeout.start_new(seconds)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _sqlite_busy(error: sqlite3.Error) -> bool:
    """Another connection holds the lock (SQLITE_BUSY, or SQLITE_LOCKED within one process)."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(error)


class _Patience:
    """Short sleeps, growing, for at most ``wait`` seconds in all; ``time.sleep`` is gevent's once patched."""

    def __init__(self, wait: float):
        self.wait = wait
        self._give_up = time.monotonic() + wait
        self._pause = FIRST_RETRY_SECONDS

    def sleep(self) -> bool:
        """Sleep before the next try; False when the time is up."""
        left = self._give_up - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(left, self._pause * random.uniform(0.5, 1.0)))  # jitter: writers do not retry in step
        self._pause = min(self._pause * 2, LONGEST_RETRY_SECONDS)
        return True


class OneStatement:
    """One prebuilt statement, run in a transaction of its own on the driver's connection.

    ``/voice`` keeps Twilio (and the caller) waiting until its row is committed, and
    SQLAlchemy's execution around one small INSERT cost twice the INSERT itself
    (bench/webhooks.py; docs/performance.md); presence's read of DND and calls in
    progress, three SELECTs through SQLAlchemy, cost more than the rest of ``/voice``.
    This compiles the statement once and binds values with SQLAlchemy's own type
    processors, so what is stored and matched is the same, then runs it on the pooled
    DBAPI connection as a transaction of its own (SQLite: one autocommitted statement,
    which also reads one consistent snapshot; PostgreSQL: the statement, then COMMIT or,
    for a read, ROLLBACK), with the same waiting rules as :meth:`Database.write`.

    Parameters with a value in the statement itself (a constant compared with) keep it;
    every other one must be given on each call.
    """

    def __init__(self, database: Database, statement: sa.Executable, columns: Sequence[str] | None = None):
        self._database = database
        dialect = database.engine.dialect
        compiled = statement.compile(dialect=dialect, column_keys=list(columns) if columns is not None else None)
        self._sql = str(compiled)
        self._sqlite = dialect.name == "sqlite"
        processors = {key: bind.type._cached_bind_processor(dialect) for key, bind in compiled.binds.items()}
        self._processors = {key: process for key, process in processors.items() if process is not None}
        self._constants = {key: bind.effective_value for key, bind in compiled.binds.items() if not bind.required}
        self._positions = tuple(compiled.positiontup) if compiled.positional else None

    def __call__(self, values: dict[str, Any]) -> None:
        """Run the statement (a write) with ``values``, committed when this returns."""
        self._run(values, fetch=False)

    def rows(self, values: dict[str, Any]) -> list[tuple]:
        """Run the statement (a read) with ``values``: its rows, as the driver gives them."""
        return self._run(values, fetch=True)

    def _run(self, values: dict[str, Any], *, fetch: bool) -> Any:
        if self._constants:
            values = {**self._constants, **values}
        for key, process in self._processors.items():
            values[key] = process(values[key])
        parameters = tuple(values[key] for key in self._positions) if self._positions is not None else values
        database = self._database
        timer = _gevent_deadline(database.deadline)
        try:
            return self._attempts(parameters, fetch)
        except BaseException as exc:
            if timer is not None and (exc is timer or not timer.pending):
                raise StoreUnavailable(f"database {database.name}: no answer within {database.deadline:g} s") from None
            raise
        finally:
            if timer is not None:
                timer.close()

    def _attempts(self, parameters: Any, fetch: bool) -> Any:
        database = self._database
        patience = None
        while True:
            try:
                raw = database.borrow()
            except sa.exc.SQLAlchemyError as exc:  # connecting failed (it came wrapped, or not)
                raise database._store_error(exc) from exc
            except sqlite3.Error as exc:
                raise database.driver_error(exc) from exc
            except Exception as exc:
                if _is_psycopg_error(exc):
                    raise database.driver_error(exc) from exc
                raise
            driver = raw.driver_connection
            try:
                if self._sqlite:
                    # sqlite3 is in autocommit mode here: one statement is its own transaction,
                    # atomic, committed when it returns (BEGIN and COMMIT would be two more calls).
                    cursor = driver.execute(self._sql, parameters)
                    return cursor.fetchall() if fetch else None
                try:
                    with driver.cursor() as cursor:
                        cursor.execute(self._sql, parameters)
                        rows = cursor.fetchall() if fetch else None
                    driver.rollback() if fetch else driver.commit()
                    return rows
                except BaseException:
                    driver.rollback()
                    raise
            except sqlite3.Error as exc:
                raw.invalidate() if not isinstance(exc, sqlite3.OperationalError) else None
                if not _sqlite_busy(exc):
                    raise database.driver_error(exc) from exc
            except OverflowError as exc:  # refused before the statement ran: the connection is as it was
                raise database.driver_error(exc) from exc
            except BaseException as exc:
                if not _is_psycopg_error(exc):
                    raw.invalidate()
                    raise
                if getattr(exc, "sqlstate", None) not in _POSTGRESQL_RETRYABLE:
                    raw.invalidate()
                    raise database.driver_error(exc) from exc
            finally:
                database.give_back(raw)
            patience = patience or _Patience(database.wait)
            if not patience.sleep():
                waited = "locked by another writer" if self._sqlite else "busy"
                raise StoreUnavailable(f"database {database.name}: {waited} for more than {database.wait:g} s")


def _is_psycopg_error(error: BaseException) -> bool:
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(error, psycopg.Error)


class Database:
    """A database URL's engine and the transactions of every store on it. Thread- and greenlet-safe."""

    def __init__(self, database_url: str, *, wait: float | None = None, deadline: float | None = None):
        """``wait``: how long an operation waits for a locked or slow database (default :data:`WAIT_SECONDS`);
        ``deadline``: the bound of a whole operation, connecting included, under gevent (default ``wait``
        + :data:`DEADLINE_MARGIN_SECONDS`)."""
        self.url = sa.make_url(database_url)
        self.name = self.url.render_as_string(hide_password=True)  # for messages: never the password
        self.wait = WAIT_SECONDS if wait is None else wait
        self.deadline = self.wait + DEADLINE_MARGIN_SECONDS if deadline is None else deadline
        self.engine = create_engine(self.url, self.wait)
        self.dialect = self.engine.dialect.name
        self._writer = self.engine.execution_options(shetphone_writes=True, shetphone_wait=self.wait)
        # A file's connections never go stale (PostgreSQL's are pinged by the pool on checkout).
        self._keeps_spares = self.dialect == "sqlite" and not isinstance(self.engine.pool, StaticPool)
        self._spares: list[Any] = []
        forget_connections_after_fork(self.engine)
        if self._keeps_spares:
            database_ref = weakref.ref(self)

            def forget_spares() -> None:  # the parent's handles: dropped in the child, never used or closed
                database = database_ref()
                if database is not None:
                    database._spares = []

            os.register_at_fork(after_in_child=forget_spares)

    def borrow(self) -> Any:
        """A pooled DBAPI connection for one hot statement (:class:`OneStatement`); hand it to :meth:`give_back`.

        On SQLite a few are kept checked out between statements: the pool's checkout
        and checkin cost as much as presence's whole read on ``/voice``. Popping from
        and appending to a list is atomic under threads and greenlets alike."""
        if self._keeps_spares:
            try:
                return self._spares.pop()
            except IndexError:
                pass
        return self.engine.raw_connection()

    def give_back(self, raw: Any) -> None:
        """Return a connection from :meth:`borrow` (one invalidated after an error is closed instead)."""
        if self._keeps_spares and raw.is_valid and len(self._spares) < SPARE_SQLITE_CONNECTIONS:
            self._spares.append(raw)
        else:
            raw.close()  # back to the pool (or closed, when invalidated)

    def write(self, work: Callable[[Connection], T], *, wait: float | None = None) -> T:
        """``work(conn)`` in one write transaction (SQLite: holding the write lock), committed when it returns.

        Run again from the start when the database was locked (SQLite) or rolled
        it back for a conflict (PostgreSQL), so ``work`` must not act outside the
        transaction. ``wait``: a longer bound than the usual few seconds (schema
        upgrades at start); the deadline grows with it.
        """
        if wait is None:
            return self._run(self._writer.begin, work, self.wait, self.deadline)
        deadline = self.deadline - self.wait + wait
        return self._run(self._writer.execution_options(shetphone_wait=wait).begin, work, wait, deadline)

    def read(self, work: Callable[[Connection], T]) -> T:
        """``work(conn)`` on one connection, in a transaction that is rolled back afterwards."""
        return self._run(self.engine.connect, work, self.wait, self.deadline)

    def one_statement(self, statement: sa.Executable, columns: Sequence[str] | None = None) -> OneStatement:
        """``statement`` prebuilt to run alone in its own transaction, on the hot path (see :class:`OneStatement`):
        call it to write, or its ``rows`` to read.

        ``columns``: for an INSERT, the columns every call gives a value for."""
        return OneStatement(self, statement, columns)

    def driver_error(self, error: BaseException) -> StoreError:
        """The store's exception for a DBAPI error: unavailable when the database did not answer, refused when
        it would not take a value."""
        psycopg = sys.modules.get("psycopg")
        unavailable = isinstance(error, sqlite3.OperationalError) or (
            psycopg is not None and isinstance(error, psycopg.OperationalError | psycopg.errors.QueryCanceled)
        )
        refused = isinstance(error, sqlite3.DataError | sqlite3.IntegrityError | OverflowError) or (
            psycopg is not None and isinstance(error, psycopg.DataError | psycopg.IntegrityError)
        )
        kind = StoreUnavailable if unavailable else StoreRefused if refused else StoreError
        return kind(f"database {self.name}: {_first_line(error)}")

    def release_connections(self) -> None:
        """Close every connection not in use (the spares and the pool's); the next operation connects anew."""
        spares, self._spares = self._spares, []
        for raw in spares:
            raw.close()
        self.engine.dispose()

    def close(self) -> None:
        self.release_connections()

    # ------------------------------------------------------------------- helpers

    def _run(self, connect: Callable[[], Any], work: Callable[[Connection], T], wait: float,
             deadline: float) -> T:
        timer = _gevent_deadline(deadline)
        if timer is None:
            return self._attempts(connect, work, wait, None)
        try:
            return self._attempts(connect, work, wait, timer)
        except BaseException as exc:
            # The deadline passed: whatever came out (the Timeout, or what the driver made of being
            # interrupted), the database did not answer in time.
            if exc is timer or not timer.pending:
                raise StoreUnavailable(f"database {self.name}: no answer within {deadline:g} s") from None
            raise
        finally:
            timer.close()

    def _attempts(self, connect: Callable[[], Any], work: Callable[[Connection], T], wait: float,
                  timer: Any) -> T:
        patience = None
        while True:
            try:
                with connect() as conn:
                    try:
                        return work(conn)
                    except BaseException:
                        if timer is not None and not timer.pending:
                            conn.invalidate()  # interrupted mid-statement: never back into the pool
                        raise
            except sa.exc.DBAPIError as exc:
                if not self._worth_retrying(exc):
                    raise self._store_error(exc) from exc
                patience = patience or _Patience(wait)
                if not patience.sleep():
                    raise StoreUnavailable(
                        f"database {self.name}: busy for more than {wait:g} s ({_first_line(exc.orig)})"
                    ) from exc
            except sa.exc.SQLAlchemyError as exc:
                raise self._store_error(exc) from exc
            except OverflowError as exc:
                raise self.driver_error(exc) from exc

    def _worth_retrying(self, exc: sa.exc.DBAPIError) -> bool:
        """The database turned the transaction away before or instead of running it: try again."""
        if isinstance(exc.orig, sqlite3.OperationalError):
            return _sqlite_busy(exc.orig)
        return getattr(exc.orig, "sqlstate", None) in _POSTGRESQL_RETRYABLE

    def _store_error(self, exc: sa.exc.SQLAlchemyError) -> StoreError:
        detail = _first_line(exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc)
        if self.dialect == "sqlite" and detail == "unable to open database file":  # SQLite says no more
            detail += f" (may this user create and write files in {Path(self.url.database).parent}?)"
        if isinstance(exc, _UNAVAILABLE):
            kind: type[StoreError] = StoreUnavailable
        else:
            kind = StoreRefused if isinstance(exc, _REFUSED) else StoreError
        return kind(f"database {self.name}: {detail}")
