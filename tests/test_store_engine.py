"""The store's engine: SQLite pragmas, fork safety, and waiting for a locked or stuck database within bounds.

The waits are checked against real databases: another SQLite connection holds
the write lock; a real PostgreSQL server holds a row lock, or is stopped with
SIGSTOP (it keeps its sockets and answers nothing). What gevent does while a
write waits is checked in a monkey-patched process of its own
(tests/store_gevent_probe.py), as the server runs.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import new_postgres_database
from store_helpers import ALICE_NUMBER, callback, only_call, open_inbound

from shetphone.store import CallLog, Store, StoreError, StoreRefused, StoreUnavailable
from shetphone.store import engine as store_engine

PROBE = Path(__file__).resolve().with_name("store_gevent_probe.py")


def probe(*args: str) -> dict:
    result = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --------------------------------------------------------------------------- connections


def test_a_forked_worker_opens_its_own_connections(calllog: CallLog) -> None:
    """uWSGI forks workers after the app (and its store) was created."""
    open_inbound(calllog, "CAroot")  # the parent now holds a pooled connection
    pid = os.fork()
    if pid == 0:  # the child: must not talk over the parent's connection
        try:
            ok = calllog.record_status(callback("CAleg", "ringing", 1, parent="CAroot")) is not None
        finally:
            os._exit(0 if ok else 1)
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert [p["call_sid"] for p in calllog.calls_in_progress([ALICE_NUMBER])] == ["CAleg"]  # the parent still works


def test_hot_statements_reuse_a_few_sqlite_connections_and_a_fork_drops_them(tmp_path: Path) -> None:
    """/voice's INSERT and presence read skip the pool's checkout: a spare connection is kept between them."""
    store = Store(f"sqlite:///{tmp_path}/calls.sqlite3")
    try:
        database = store.database
        open_inbound(store.calls, "CAfirst")
        (spare,) = database._spares
        open_inbound(store.calls, "CAsecond")
        assert database._spares == [spare]  # the same one again, not one per call
        driver = spare.driver_connection
        pid = os.fork()
        if pid == 0:  # the child must never use the parent's handle
            try:
                ok = database._spares == []
                open_inbound(store.calls, "CAchild")
                ok = ok and len(database._spares) == 1 and database._spares[0] is not spare
            finally:
                os._exit(0 if ok else 1)
        _, wait_status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(wait_status) == 0
        assert database._spares == [spare]
        listed = {call["call_sid"] for call in store.calls.calls_for([ALICE_NUMBER], None)}
        assert listed == {"CAfirst", "CAsecond", "CAchild"}
    finally:
        store.close()
    with pytest.raises(sqlite3.ProgrammingError):  # closed with the store, not left open
        driver.execute("SELECT 1")


def test_a_connection_that_failed_a_statement_is_not_kept(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/calls.sqlite3")
    try:
        database = store.database
        from shetphone.store.schema import calls

        broken = database.one_statement(calls.insert(), ["call_sid"])  # NOT NULL columns left out
        with pytest.raises(StoreError):
            broken({"call_sid": "CAbroken"})
        assert database._spares == []
        open_inbound(store.calls, "CAafter")  # a fresh connection from the pool
        assert only_call(store.calls, [ALICE_NUMBER])["call_sid"] == "CAafter"
    finally:
        store.close()


def test_a_prebuilt_read_gives_rows_keeps_its_constants_and_ends_its_transaction(database_url: str) -> None:
    from shetphone.store.schema import calls

    store = Store(database_url)
    try:
        open_inbound(store.calls, "CAone")
        open_inbound(store.calls, "CAtwo")
        store.calls.missed_at_once("CAtwo")
        # "initiated" is a value written in the statement: it stays; ``number`` comes with each call.
        initiated = store.database.one_statement(
            sa.select(calls.c.call_sid).where(calls.c.status == "initiated", calls.c.number == sa.bindparam("number"))
        )
        assert initiated.rows({"number": ALICE_NUMBER}) == [("CAone",)]
        assert initiated.rows({"number": "+15550000000"}) == []
        if store.database.dialect == "postgresql":
            import psycopg

            raw = store.database.borrow()
            try:  # the read's transaction was ended, not left open on a pooled connection
                assert raw.driver_connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            finally:
                store.database.give_back(raw)
    finally:
        store.close()


def test_a_write_the_database_refuses_is_store_refused_and_tried_once(database_url: str) -> None:
    """A constraint or a value out of range fails the same way every time: StoreRefused, not StoreUnavailable
    (which a webhook answers 503, for Twilio to retry), and not tried again within the write either."""
    from shetphone.store.schema import calls

    store = Store(database_url)
    try:
        database = store.database
        attempts = []

        def out_of_range(conn: sa.Connection) -> None:
            attempts.append(1)
            conn.execute(calls.insert(), {"call_sid": "CAbig", "direction": "inbound", "number": ALICE_NUMBER,
                                          "from_number": "x", "to_number": "y", "started_at": datetime(2026, 11, 22),
                                          "status": "initiated", "answered": False, "duration": 2**70})

        with pytest.raises(StoreRefused, match="^" + re.escape(f"database {database.name}: ")):
            database.write(out_of_range)
        assert attempts == [1]
        no_direction = database.one_statement(calls.insert(), ["call_sid"])  # NOT NULL columns left out
        with pytest.raises(StoreRefused, match="^" + re.escape(f"database {database.name}: ")):
            no_direction({"call_sid": "CAbroken"})
        assert store.calls.calls_for([ALICE_NUMBER], None) == []
    finally:
        store.close()


def test_sqlite_creates_its_directory_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "calls.sqlite3"
    store = Store(f"sqlite:///{path}")
    try:
        assert path.exists()
        with store.database.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            # sqlite3 never waits itself: its busy wait would stop every greenlet of the process.
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == store_engine.SQLITE_BUSY_TIMEOUT_MS == 0
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        store.close()


def test_in_memory_sqlite_keeps_one_database() -> None:
    store = Store("sqlite://")
    open_inbound(store.calls, "CAroot")
    assert only_call(store.calls, [ALICE_NUMBER])["call_sid"] == "CAroot"
    store.close()


def test_postgresql_gets_a_connect_and_a_statement_timeout(postgres) -> None:
    store = Store(new_postgres_database(postgres), wait=1.5)
    try:
        with store.database.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "1500ms"
            assert conn.connection.dbapi_connection.info.get_parameters()["connect_timeout"] == str(
                store_engine.CONNECT_TIMEOUT_SECONDS
            )
    finally:
        store.close()


def test_only_sqlite_and_postgresql() -> None:
    with pytest.raises(StoreError, match="only SQLite and PostgreSQL are supported"):
        Store("mysql://shetphone:secret@127.0.0.1/shetphone")


def test_an_unreachable_server_is_one_line_without_the_password(postgres) -> None:
    from conftest import free_port

    url = f"postgresql://postgres:secret-password@127.0.0.1:{free_port()}/shetphone"
    with pytest.raises(StoreUnavailable) as raised:
        Store(url)
    message = str(raised.value)
    assert message.startswith("database postgresql://postgres:***@127.0.0.1:")
    assert "secret-password" not in message and "\n" not in message
    assert "refused" in message.lower()


# --------------------------------------------------------------------------- SQLite's write lock


def test_a_write_waits_for_the_sqlite_lock_then_goes_through(tmp_path: Path) -> None:
    path = tmp_path / "shetphone.sqlite3"
    store = Store(f"sqlite:///{path}", wait=60)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process's write
        done = threading.Event()
        writer = threading.Thread(target=lambda: (open_inbound(store.calls, "CAwaited"), done.set()))
        writer.start()
        assert not done.wait(0.3)  # still waiting for the lock
        assert store.calls.calls_for([ALICE_NUMBER], None) == []  # WAL: reading never waits
        holder.execute("COMMIT")
        writer.join(30)
        assert done.is_set()
        assert only_call(store.calls, [ALICE_NUMBER])["call_sid"] == "CAwaited"
    finally:
        holder.close()
        store.close()


def test_a_write_gives_up_on_a_held_sqlite_lock_with_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "shetphone.sqlite3"
    store = Store(f"sqlite:///{path}", wait=0.3)
    open_inbound(store.calls, "CAroot")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable, match=r"locked by another writer for more than 0\.3 s"):
            store.calls.record_status(callback("CAleg", "ringing", 1, parent="CAroot"))
        assert store.calls.calls_in_progress([ALICE_NUMBER]) == []
        holder.execute("ROLLBACK")
        assert store.calls.record_status(callback("CAleg", "ringing", 1, parent="CAroot"))["status"] == "ringing"
    finally:
        holder.close()
        store.close()


def test_under_gevent_the_wait_for_sqlites_lock_lets_every_other_greenlet_run(tmp_path: Path) -> None:
    report = probe("sqlite-lock", str(tmp_path / "shetphone.sqlite3"))
    # The lock released during the wait: the loop ran meanwhile, and the write went through.
    assert report["writer_pending_when_another_greenlet_ran"] is True
    assert report["reads_while_locked"] == 0
    assert report["released"] == {"succeeded": True}
    assert report["listed_after_release"] == ["CAwaited"]
    # The lock held past the bound: StoreUnavailable (the webhook's 503), and the loop ran throughout.
    assert report["turns_while_waiting"] > 1
    assert report["held"]["error"] == "StoreUnavailable" and report["held"]["is_store_error"] is True
    assert "locked by another writer for more than 0.5 s" in report["held"]["message"]
    assert report["listed_at_the_end"] == ["CAwaited"]


# --------------------------------------------------------------------------- PostgreSQL stuck


def test_a_statement_stuck_on_a_postgresql_lock_ends_with_store_unavailable(postgres) -> None:
    url = new_postgres_database(postgres)
    store = Store(url, wait=0.5)
    open_inbound(store.calls, "CAroot")
    other = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with other.connect() as conn:
            # Another session holds the root call's row, and never lets go in time.
            conn.execute(sa.text("SELECT * FROM calls WHERE call_sid = 'CAroot' FOR UPDATE"))
            with pytest.raises(StoreUnavailable, match="statement timeout"):
                store.calls.record_status(callback("CAleg", "ringing", 1, parent="CAroot"))
            conn.rollback()
        assert store.calls.calls_in_progress([ALICE_NUMBER]) == []  # nothing half written
        assert store.calls.record_status(callback("CAleg", "ringing", 1, parent="CAroot"))["status"] == "ringing"
    finally:
        other.dispose()
        store.close()


def test_a_postgresql_server_that_does_not_answer_the_connection_is_store_unavailable(postgres) -> None:
    store = Store(new_postgres_database(postgres))
    store.database.release_connections()  # no pooled connection: the next operation connects
    stopped = postgres.pause([postgres.postmaster_pid])  # accepts on its socket, answers nothing
    try:
        with pytest.raises(StoreUnavailable, match="timeout"):
            open_inbound(store.calls, "CAroot")
    finally:
        postgres.resume(stopped)
    open_inbound(store.calls, "CAroot")
    assert only_call(store.calls, [ALICE_NUMBER])["call_sid"] == "CAroot"
    store.close()


def test_under_gevent_a_stopped_postgresql_server_fails_the_operation_at_its_deadline(postgres) -> None:
    url = new_postgres_database(postgres)
    Store(url).close()  # the schema, before the probe's store opens it
    report = probe("postgresql-paused", url, str(postgres.postmaster_pid))
    assert report["turns_while_waiting"] > 1
    assert report["paused"]["error"] == "StoreUnavailable" and report["paused"]["is_store_error"] is True
    assert "no answer within 2 s" in report["paused"]["message"]
    assert report["listed_after_resume"] == ["CAafter", "CAbefore"]  # the dropped connection was replaced
