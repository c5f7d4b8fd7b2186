"""How the store waits under gevent, in a process of its own (monkey-patched, as the server is).

    python tests/store_gevent_probe.py sqlite-lock PATH
    python tests/store_gevent_probe.py postgresql-paused URL POSTMASTER_PID

Prints one JSON object for tests/test_store_engine.py to check. While a write
waits (for SQLite's write lock held by another connection, or for a PostgreSQL
server stopped with SIGSTOP), a second greenlet, standing in for ``/healthz``
and every other request of the process, counts the turns it gets.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sqlite3  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

TESTS = Path(__file__).resolve().parent
sys.path[:0] = [str(TESTS.parent), str(TESTS)]

from deployment_helpers import server_processes  # noqa: E402

from shetphone.store import Store, StoreError  # noqa: E402

CALLER = "+447700900123"
NUMBER = "+441595000001"


def open_call(store: Store, call_sid: str) -> None:
    store.calls.open_call(call_sid, direction="inbound", number=NUMBER, from_=CALLER, to=NUMBER, client=None)


def while_pending(writer: gevent.Greenlet) -> int:
    """The turns another greenlet gets while ``writer`` runs (0 if the writer blocks the loop)."""
    turns = 0
    while not writer.ready():
        turns += 1
        gevent.sleep(0.01)
    return turns


def outcome(writer: gevent.Greenlet) -> dict:
    if writer.successful():
        return {"succeeded": True}
    error = writer.exception
    return {"succeeded": False, "error": type(error).__name__, "message": str(error),
            "is_store_error": isinstance(error, StoreError)}


def sqlite_lock(path: str) -> dict:
    url = f"sqlite:///{path}"
    report = {}
    holder = sqlite3.connect(path, isolation_level=None)  # another writer, as another process would be

    # 1. The lock is released while the write waits: the write then goes through.
    patient = Store(url, wait=60)
    holder.execute("BEGIN IMMEDIATE")
    writer = gevent.spawn(open_call, patient, "CAwaited")
    gevent.sleep(0.2)  # this greenlet runs again only if the writer's wait lets the loop run
    report["writer_pending_when_another_greenlet_ran"] = not writer.ready()
    report["reads_while_locked"] = len(patient.calls.calls_for([NUMBER], None))  # WAL: readers never wait
    holder.execute("COMMIT")
    writer.join()
    report["released"] = outcome(writer)
    report["listed_after_release"] = [c["call_sid"] for c in patient.calls.calls_for([NUMBER], None)]
    patient.close()

    # 2. The lock is held past the bound: StoreUnavailable, and the loop kept running meanwhile.
    hasty = Store(url, wait=0.5)
    holder.execute("BEGIN IMMEDIATE")
    writer = gevent.spawn(open_call, hasty, "CAgivenup")
    report["turns_while_waiting"] = while_pending(writer)
    report["held"] = outcome(writer)
    holder.execute("ROLLBACK")
    report["listed_at_the_end"] = [c["call_sid"] for c in hasty.calls.calls_for([NUMBER], None)]
    hasty.close()
    return report


def postgresql_paused(url: str, postmaster: int) -> dict:
    store = Store(url, wait=1.0, deadline=2.0)
    open_call(store, "CAbefore")  # the pool now holds a connection to the server about to stop
    report = {}
    pids = server_processes(postmaster)  # its backend included
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        writer = gevent.spawn(open_call, store, "CApaused")
        report["turns_while_waiting"] = while_pending(writer)
        report["paused"] = outcome(writer)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    open_call(store, "CAafter")
    report["listed_after_resume"] = sorted(c["call_sid"] for c in store.calls.calls_for([NUMBER], None))
    store.close()
    return report


if __name__ == "__main__":
    mode, target, *rest = sys.argv[1:]
    result = sqlite_lock(target) if mode == "sqlite-lock" else postgresql_paused(target, int(rest[0]))
    print(json.dumps(result))
