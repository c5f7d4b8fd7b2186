"""Presence: the rule of SPEC §7, one process in memory, several through a real redis-server.

Processes are played by independent Presence objects (each with its own Redis
client and process id) and, once, by a real second OS process killed with
SIGKILL. Expiry uses a TTL of a second or so, waited for by polling.
"""

from __future__ import annotations

import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import ROOT
from deployment_helpers import wait_until

from shetphone.presence import (
    Change,
    MemoryBrowsers,
    Presence,
    RedisBrowsers,
    State,
    browsers_for,
    state_of,
)

EXPIRY_WAIT = 30  # seconds to wait for a browser to expire; never asserted on


# ----------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    ("dnd", "busy", "ready", "expected"),
    [
        (True, True, True, State.DND),
        (True, False, False, State.DND),
        (True, True, False, State.DND),
        (True, False, True, State.DND),
        (False, True, True, State.BUSY),
        (False, True, False, State.BUSY),
        (False, False, True, State.AVAILABLE),
        (False, False, False, State.OFFLINE),
    ],
)
def test_the_first_state_that_holds_wins(dnd, busy, ready, expected):
    assert state_of(dnd=dnd, busy=busy, phone_ready=ready) is expected


def test_a_change_is_the_presence_event():
    assert Change("bob", State.OFFLINE, State.AVAILABLE).as_event() == {"user": "bob", "state": "available"}


def test_browsers_for_picks_the_backend():
    assert isinstance(browsers_for(None), MemoryBrowsers)
    assert isinstance(browsers_for(""), MemoryBrowsers)
    redis_backed = browsers_for("redis://127.0.0.1:9/0")
    assert isinstance(redis_backed, RedisBrowsers)
    redis_backed.close()


# ----------------------------------------------------------------------------- one process


def test_phone_ready_makes_a_user_available_until_every_browser_stops():
    presence = Presence(MemoryBrowsers())
    assert presence.state("alice") is State.OFFLINE
    assert presence.phone("alice", "sid-1", True) == Change("alice", State.OFFLINE, State.AVAILABLE)
    assert presence.phone("alice", "sid-2", True) is None  # a second browser changes nothing
    assert presence.phone("alice", "sid-1", False) is None  # one is still ready
    assert presence.state("alice") is State.AVAILABLE
    assert presence.disconnected("sid-2") == Change("alice", State.AVAILABLE, State.OFFLINE)
    assert presence.state("alice") is State.OFFLINE


def test_a_socket_that_never_started_its_phone_changes_nothing_when_it_goes():
    presence = Presence(MemoryBrowsers())
    presence.phone("alice", "sid-1", True)
    assert presence.disconnected("sid-unknown") is None
    assert presence.state("alice") is State.AVAILABLE


def test_dnd_and_busy_come_from_their_callables_and_win():
    dnd: set[str] = set()
    busy: set[str] = set()
    presence = Presence(MemoryBrowsers(), dnd=dnd.intersection, busy=busy.intersection)
    presence.phone("alice", "a1", True)
    presence.phone("bob", "b1", True)
    busy.add("bob")
    dnd.add("carol")  # dnd lasts without any browser
    assert presence.states(["alice", "bob", "carol", "dave"]) == {
        "alice": State.AVAILABLE,
        "bob": State.BUSY,
        "carol": State.DND,
        "dave": State.OFFLINE,
    }
    dnd.add("bob")
    assert presence.state("bob") is State.DND


def test_publish_reports_each_change_once():
    dnd: set[str] = set()
    presence = Presence(MemoryBrowsers(), dnd=dnd.intersection)
    assert presence.publish(["alice", "bob"]) == []  # offline was the last word on everyone
    presence.phone("alice", "a1", True)
    dnd.add("bob")
    assert presence.publish(["alice", "bob"]) == [Change("bob", State.OFFLINE, State.DND)]
    assert presence.publish(["alice", "bob"]) == []
    dnd.discard("bob")
    assert presence.publish(["bob"]) == [Change("bob", State.DND, State.OFFLINE)]


def test_memory_presence_needs_no_heartbeat():
    assert Presence(MemoryBrowsers()).heartbeat_interval is None


def test_no_users_no_lookups():
    def refuse(users):
        raise AssertionError("looked up nobody")

    presence = Presence(MemoryBrowsers(), dnd=refuse, busy=refuse)
    assert presence.states([]) == {}
    assert presence.publish([]) == []


# ----------------------------------------------------------------------------- several processes (Redis)


@pytest.fixture
def prefix() -> str:
    """Each test its own keys on the module's redis-server."""
    return f"test-{secrets.token_hex(4)}"


@pytest.fixture
def shared(redis_server, prefix) -> Iterator:
    """Make Presence objects as separate processes would: each its own client and process id."""
    made: list[Presence] = []

    def make(ttl: float = 45.0, clock=time.monotonic, **flags) -> Presence:
        presence = Presence(RedisBrowsers(redis_server.url, ttl=ttl, prefix=prefix, clock=clock), **flags)
        made.append(presence)
        return presence

    yield make
    for presence in made:
        presence.close()


def test_a_browser_on_one_process_is_seen_by_another(shared):
    one, two = shared(), shared()
    assert one.browsers.process != two.browsers.process
    one.phone("alice", "sid-1", True)
    assert two.state("alice") is State.AVAILABLE
    assert two.states(["alice", "bob"]) == {"alice": State.AVAILABLE, "bob": State.OFFLINE}
    one.phone("alice", "sid-1", False)
    assert two.state("alice") is State.OFFLINE


def test_the_same_socket_id_on_two_processes_is_two_browsers(shared):
    one, two = shared(), shared()
    one.phone("alice", "sid-1", True)
    two.phone("alice", "sid-1", True)
    one.phone("alice", "sid-1", False)
    assert one.state("alice") is State.AVAILABLE  # the other process's browser is still ready


def test_only_one_process_announces_a_change(shared):
    one, two = shared(), shared()
    one.browsers.set_ready("alice", "sid-1", True)
    assert one.publish(["alice"]) == [Change("alice", State.OFFLINE, State.AVAILABLE)]
    assert two.publish(["alice"]) == []  # the same news, already announced by the first
    one.browsers.set_ready("alice", "sid-1", False)
    assert two.publish(["alice"]) == [Change("alice", State.AVAILABLE, State.OFFLINE)]
    assert one.publish(["alice"]) == []


def test_a_silent_process_browsers_expire_and_a_heartbeating_one_stays(shared):
    dead, alive, observer = shared(ttl=1.0), shared(ttl=1.0), shared(ttl=1.0)
    dead.phone("alice", "sid-dead", True)  # and then never a heartbeat: its process died
    alive.phone("bob", "sid-alive", True)
    assert observer.states(["alice", "bob"]) == {"alice": State.AVAILABLE, "bob": State.AVAILABLE}

    def alice_gone() -> bool:
        alive.heartbeat()
        return observer.state("alice") is State.OFFLINE

    started = time.monotonic()
    wait_until(alice_gone, "alice's browser to expire", timeout=EXPIRY_WAIT)
    # Bob's process keeps beating for three TTLs in all: his browser must outlive them.
    wait_until(lambda: alive.heartbeat() or time.monotonic() > started + 3 * 1.0, "three TTLs to pass")
    assert observer.state("bob") is State.AVAILABLE
    # The expiry is news, announced by the next publish (the dead process announced alice available).
    assert observer.publish(["alice", "bob"]) == [Change("alice", State.AVAILABLE, State.OFFLINE)]
    assert alive.publish(["alice", "bob"]) == []


def test_a_clean_close_removes_the_process_browsers_at_once(shared):
    one, two = shared(), shared()
    one.phone("alice", "sid-1", True)
    one.close()
    assert two.state("alice") is State.OFFLINE


def test_a_clean_close_withdraws_every_browser_of_the_process_and_announces_the_changes(shared):
    stopping, staying = shared(), shared()
    stopping.phone("alice", "sid-1", True)
    stopping.phone("alice", "sid-2", True)
    stopping.phone("bob", "sid-3", True)
    staying.phone("carol", "sid-1", True)  # the same socket id on the process that stays: another browser
    assert staying.states(["alice", "bob", "carol"]) == {
        "alice": State.AVAILABLE, "bob": State.AVAILABLE, "carol": State.AVAILABLE}

    assert stopping.close() == [Change("alice", State.AVAILABLE, State.OFFLINE),
                                Change("bob", State.AVAILABLE, State.OFFLINE)]
    # Seen by the other process at once, long before the TTL (45 s) could have done it.
    assert staying.states(["alice", "bob", "carol"]) == {
        "alice": State.OFFLINE, "bob": State.OFFLINE, "carol": State.AVAILABLE}
    assert staying.browsers.ready_users(["alice", "bob", "carol"]).users == {"carol"}
    assert staying.publish(["alice", "bob", "carol"]) == []  # already announced, by the process that stopped


def test_a_second_close_and_a_late_phone_event_change_nothing(shared):
    stopping, staying = shared(), shared()
    stopping.phone("alice", "sid-1", True)
    assert stopping.close() == [Change("alice", State.AVAILABLE, State.OFFLINE)]
    assert stopping.close() == []
    # A browser's phone event racing the stop, and the upkeep's heartbeat: nothing goes back into Redis.
    stopping.phone("bob", "sid-2", True)
    stopping.heartbeat()
    assert staying.states(["alice", "bob"]) == {"alice": State.OFFLINE, "bob": State.OFFLINE}


def test_a_clean_close_keeps_the_other_process_browsers_of_the_same_user(shared):
    stopping, staying = shared(), shared()
    stopping.phone("alice", "sid-1", True)
    staying.phone("alice", "sid-2", True)
    assert stopping.close() == []  # she is still available, on the other process
    assert staying.state("alice") is State.AVAILABLE


def test_a_clean_close_announces_dnd_and_busy_users_as_they_are(shared):
    dnd = {"alice"}
    stopping, staying = shared(dnd=dnd.intersection), shared(dnd=dnd.intersection)
    stopping.phone("alice", "sid-1", True)
    stopping.phone("bob", "sid-2", True)
    assert stopping.close() == [Change("bob", State.AVAILABLE, State.OFFLINE)]  # alice is dnd either way
    assert staying.states(["alice", "bob"]) == {"alice": State.DND, "bob": State.OFFLINE}


def test_a_clean_close_sends_a_removal_redis_missed_too(shared, redis_server):
    stopping, staying = shared(clock=FakeClock()), shared()
    stopping.phone("alice", "sid-1", True)
    admin = redis_server.client()
    admin.client_pause(3000, all=False)  # as in the heartbeat test: the next request trips the breaker
    try:
        stopping.state("bob")
    finally:
        admin.client_unpause()
        admin.close()
    stopping.phone("alice", "sid-1", False)  # while the breaker is open: kept for later
    assert staying.state("alice") is State.AVAILABLE
    stopping.close()
    assert staying.state("alice") is State.OFFLINE


def test_memory_presence_closes_too():
    presence = Presence(MemoryBrowsers())
    presence.phone("alice", "sid-1", True)
    assert presence.close() == [Change("alice", State.AVAILABLE, State.OFFLINE)]
    assert presence.state("alice") is State.OFFLINE
    assert presence.close() == []


def test_heartbeat_restores_browsers_after_redis_restarts_empty(shared, redis_server):
    one, two = shared(), shared()
    one.phone("alice", "sid-1", True)
    redis_server.stop()
    redis_server.start()  # the same port, nothing saved
    assert two.state("alice") is State.OFFLINE
    one.heartbeat()
    assert two.state("alice") is State.AVAILABLE


def test_a_removal_redis_missed_is_sent_at_the_next_heartbeat(shared, redis_server):
    one, two = shared(clock=FakeClock()), shared()
    one.phone("alice", "sid-1", True)
    admin = redis_server.client()
    # Writes (and our scripts) wait: one's next request times out and trips its breaker. UNPAUSE still passes.
    admin.client_pause(3000, all=False)
    try:
        one.state("bob")
    finally:
        admin.client_unpause()
        admin.close()
    one.phone("alice", "sid-1", False)  # while the breaker is open: not sent
    assert one.state("alice") is State.OFFLINE  # this process knows
    assert two.state("alice") is State.AVAILABLE  # the others do not, yet
    one.heartbeat()
    assert two.state("alice") is State.OFFLINE


def test_heartbeat_interval_is_a_third_of_the_ttl(shared):
    assert shared(ttl=45.0).heartbeat_interval == 15.0


# ----------------------------------------------------------------------------- Redis out of reach


class SilentServer:
    """Accepts TCP connections and never says a word: an unresponsive Redis. Counts connections."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def silent_redis() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_unresponsive_redis_falls_back_to_this_process_and_is_then_skipped(silent_redis, caplog):
    clock = FakeClock()
    browsers = RedisBrowsers(f"redis://127.0.0.1:{silent_redis.port}/0", timeout=0.2, clock=clock)
    presence = Presence(browsers)
    presence.phone("alice", "sid-1", True)  # the write fails: kept here, sent at a later heartbeat
    tried = len(silent_redis.connections)
    assert tried >= 1
    assert "unreachable" in caplog.text

    # Within the breaker's window no request waits on Redis again.
    assert presence.states(["alice", "bob"]) == {"alice": State.AVAILABLE, "bob": State.OFFLINE}
    assert browsers.ready_users(["alice", "bob"]).complete is False
    assert len(silent_redis.connections) == tried

    # Once the window is over, Redis is tried again (and fails again).
    clock.now += 10
    presence.states(["bob"])
    assert len(silent_redis.connections) > tried
    browsers.close()


def test_a_close_while_redis_is_unresponsive_is_one_try_and_one_line(silent_redis, caplog):
    clock = FakeClock()
    browsers = RedisBrowsers(f"redis://127.0.0.1:{silent_redis.port}/0", timeout=0.2, clock=clock)
    presence = Presence(browsers)
    presence.phone("alice", "sid-1", True)  # fails: the breaker is open from now on
    tried = len(silent_redis.connections)
    caplog.clear()

    assert presence.close() == []  # whether she is still available elsewhere is not known: not announced
    # The withdrawal is tried even though the breaker is open; the announcement then skips Redis.
    assert len(silent_redis.connections) == tried + 1
    warnings = [record for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1, caplog.text
    assert "presence_ttl (45 s)" in warnings[0].getMessage()
    assert warnings[0].exc_info is None
    assert presence.close() == []  # again: nothing left to withdraw, not another try
    assert len(silent_redis.connections) == tried + 1


def test_a_close_while_redis_refuses_is_one_line(refusing_url, caplog):
    presence = Presence(RedisBrowsers(refusing_url, timeout=0.2))
    presence.browsers.set_ready("alice", "sid-1", True)
    caplog.clear()
    assert presence.close() == []
    assert [record.levelname for record in caplog.records] == ["WARNING"], caplog.text
    assert "Connection refused" in caplog.text and "presence_ttl" in caplog.text


def test_an_outage_rings_everyone_who_is_not_dnd_or_busy_when_asked(caplog):
    dnd = {"carol"}
    presence = Presence(RedisBrowsers("redis://127.0.0.1:9/0", timeout=0.2), dnd=dnd.intersection)
    users = ["alice", "bob", "carol"]
    assert presence.states(users) == {"alice": State.OFFLINE, "bob": State.OFFLINE, "carol": State.DND}
    assert presence.states(users, unknown_as_ready=True) == {
        "alice": State.AVAILABLE,
        "bob": State.AVAILABLE,
        "carol": State.DND,
    }
    presence.close()


def test_an_outage_announces_only_what_is_certain():
    dnd = {"carol"}
    presence = Presence(RedisBrowsers("redis://127.0.0.1:9/0", timeout=0.2), dnd=dnd.intersection)
    presence.browsers.set_ready("alice", "sid-1", True)
    changes = presence.publish(["alice", "bob", "carol"])
    # bob looks offline only for want of news from other processes: not announced.
    assert changes == [Change("alice", State.OFFLINE, State.AVAILABLE), Change("carol", State.OFFLINE, State.DND)]
    presence.close()


# ----------------------------------------------------------------------------- two real processes

CHILD = """
import sys
from shetphone.presence import Presence, RedisBrowsers
import time

url, ttl, prefix = sys.argv[1], float(sys.argv[2]), sys.argv[3]
presence = Presence(RedisBrowsers(url, ttl=ttl, prefix=prefix))
presence.phone("alice", "sid-child", True)
beats = 0
while True:
    print("beat", beats, flush=True)
    time.sleep(presence.heartbeat_interval)
    presence.heartbeat()
    beats += 1
"""


def test_a_killed_process_browser_is_gone_after_the_ttl(redis_server, prefix):
    ttl = 1.5
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, redis_server.url, str(ttl), prefix],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    here = Presence(RedisBrowsers(redis_server.url, ttl=ttl, prefix=prefix))
    try:
        here.phone("bob", "sid-parent", True)
        # Four heartbeats of the child: more than the TTL has passed, and alice still counts.
        for _ in range(5):
            line = child.stdout.readline()
            assert line.startswith("beat"), line
            here.heartbeat()
        assert here.states(["alice", "bob"]) == {"alice": State.AVAILABLE, "bob": State.AVAILABLE}

        child.send_signal(signal.SIGKILL)
        child.wait(10)

        def alice_gone() -> bool:
            here.heartbeat()  # this process lives on: its browser must not expire
            return here.state("alice") is State.OFFLINE

        wait_until(alice_gone, "the killed process's browser to expire", timeout=EXPIRY_WAIT)
        observer = Presence(RedisBrowsers(redis_server.url, ttl=ttl, prefix=prefix))
        assert observer.state("bob") is State.AVAILABLE  # seen from elsewhere: kept alive by the heartbeats
        observer.close()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        here.close()


def test_keys_expire_in_redis_itself(redis_server, prefix):
    """Nothing is left behind for a user nobody refreshes: the ready set itself expires."""
    presence = Presence(RedisBrowsers(redis_server.url, ttl=1.0, prefix=prefix))
    presence.phone("alice", "sid-1", True)
    client = redis_server.client()
    key = f"{prefix}:ready:alice"
    assert 0 < client.pttl(key) <= 1000
    assert client.ttl(f"{prefix}:published:alice") > 3600
    wait_until(lambda: not client.exists(key), "the ready set to expire", timeout=EXPIRY_WAIT)
    client.close()
    presence.close()
