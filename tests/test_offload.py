"""Password checks run off the event loop: other greenlets keep running meanwhile, in bounded threads."""

from __future__ import annotations

import threading
import time
import warnings

import gevent
import pytest
from conftest import login
from passlib.hash import bcrypt

from shetphone import offload
from shetphone.users import parse_htpasswd

PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def production_hash() -> str:
    # Cost 12, as `users add` writes: about 0.2 s of CPU per check.
    return bcrypt.using(rounds=12, ident="2y").hash(PASSWORD)


class Ticker:
    """A greenlet that notes, each time it runs, whether a check was under way."""

    def __init__(self, spawn, sleep):
        self.checking = False
        self.seen: list[bool] = []
        self._sleep = sleep
        self._greenlet = spawn(self._run)
        sleep(0)  # let it start

    def _run(self) -> None:
        while True:
            self.seen.append(self.checking)
            self._sleep(0.005)

    def ran_during(self, function, *args):
        self.checking = True
        try:
            return function(*args)
        finally:
            self.checking = False

    def stop(self) -> None:
        self._greenlet.kill()


def test_a_bcrypt_check_on_gevent_lets_other_greenlets_run(production_hash, tmp_path):
    users = parse_htpasswd(f"alice:{production_hash}\n", tmp_path / ".htpasswd")
    run = offload.runner_for("gevent")
    ticker = Ticker(gevent.spawn, gevent.sleep)
    try:
        assert ticker.ran_during(run, users.verify, "alice", PASSWORD) is True
        assert True in ticker.seen  # the other greenlet ran while bcrypt did
        ticker.seen.clear()
        # The same check on the loop itself: nothing else runs until it ends (what this guards against).
        assert ticker.ran_during(offload.directly, users.verify, "alice", PASSWORD) is True
        assert True not in ticker.seen
    finally:
        ticker.stop()


def test_a_bcrypt_check_on_eventlet_lets_other_greenthreads_run(production_hash, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eventlet says on import that it is in bugfix mode
        import eventlet

    users = parse_htpasswd(f"alice:{production_hash}\n", tmp_path / ".htpasswd")
    ticker = Ticker(eventlet.spawn, eventlet.sleep)
    try:
        assert ticker.ran_during(offload.runner_for("eventlet"), users.verify, "alice", "wrong") is False
        assert True in ticker.seen
    finally:
        ticker.stop()


def test_threading_mode_calls_directly_its_thread_is_the_requests_own():
    assert offload.runner_for("threading") is offload.directly
    assert offload.runner_for("gevent_uwsgi") is offload.on_gevent_threadpool


def test_a_flood_of_checks_takes_no_more_threads_than_the_pool_has():
    pool = gevent.get_hub().threadpool
    lock = threading.Lock()
    running = [0]
    most = [0]

    def check() -> None:  # stands in for bcrypt: a blocking call that holds its thread a while
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1

    run = offload.runner_for("gevent")
    gevent.joinall([gevent.spawn(run, check) for _ in range(pool.maxsize * 3)], raise_error=True)
    assert 1 < most[0] <= pool.maxsize


def test_the_login_route_checks_off_the_loop(team_files, app_with, production_hash):
    team_files.htpasswd.write_text(f"alice:{production_hash}\n")
    client = app_with(async_mode="gevent").test_client()
    ticker = Ticker(gevent.spawn, gevent.sleep)
    try:
        assert ticker.ran_during(login, client, "alice", PASSWORD).status_code == 302
        assert True in ticker.seen
    finally:
        ticker.stop()
