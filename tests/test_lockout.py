import logging
import threading

import pytest
from deployment_helpers import Redis

from shetphone import lockout as lockout_module
from shetphone.lockout import Lockout, address_key


def test_five_failures_are_allowed_the_sixth_attempt_waits():
    lockout = Lockout()
    for _ in range(5):
        assert lockout.retry_after("alice", "192.0.2.1") is None
        lockout.record_failure("alice", "192.0.2.1")
    wait = lockout.retry_after("alice", "192.0.2.1")
    assert wait is not None and 890 <= wait <= 900


def test_the_user_name_counts_from_any_address_and_without_case():
    lockout = Lockout()
    for number in range(5):
        lockout.record_failure("Alice" if number % 2 else "alice", f"192.0.2.{number}")
    assert lockout.retry_after("ALICE", "198.51.100.1") is not None
    assert lockout.retry_after("bob", "198.51.100.1") is None


def test_the_address_counts_across_user_names():
    lockout = Lockout()
    for number in range(5):
        lockout.record_failure(f"guess{number}", "203.0.113.9")
    assert lockout.retry_after("carol", "203.0.113.9") is not None
    assert lockout.retry_after("carol", "203.0.113.10") is None


def test_storage_outage_falls_back_to_counting_in_the_process(caplog):
    lockout = Lockout("redis://127.0.0.1:9/0")  # nothing listens on the discard port
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            assert lockout.retry_after("alice", "192.0.2.1") is None
            lockout.record_failure("alice", "192.0.2.1")
        assert lockout.retry_after("alice", "192.0.2.1") is not None
    assert "unreachable" in caplog.text


@pytest.mark.parametrize(
    ("failing", "same_client", "other_client"),
    [
        # IPv6: a client holds a whole /64, so it counts as one
        ([f"2001:db8:1:2::{n}" for n in range(1, 6)], "2001:db8:1:2:ffff:ffff:ffff:9", "2001:db8:1:3::1"),
        # IPv4 seen through an IPv6 socket is the IPv4 address
        ([f"::ffff:192.0.2.{n}" for n in (7, 7, 7, 7, 7)], "192.0.2.7", "192.0.2.8"),
    ],
)
def test_an_address_counts_as_its_client(failing, same_client, other_client):
    lockout = Lockout()
    for number, address in enumerate(failing):
        lockout.record_failure(f"guess{number}", address)
    assert lockout.retry_after("carol", same_client) is not None
    assert lockout.retry_after("carol", other_client) is None


@pytest.mark.parametrize(("address", "key"), [
    ("2001:db8:aa:bb:1:2:3:4", "2001:db8:aa:bb::/64"),
    ("fe80::1%eth0", "fe80::/64"),
    ("203.0.113.5", "203.0.113.5"),
    ("unknown", "unknown"),
])
def test_address_key(address, key):
    assert address_key(address) == key


def attempts_in_a_thread(lockout: Lockout, count: int) -> list:
    """``count`` failed logins then a check, in a thread: a hung storage shows as a thread still running."""
    results: list = []

    def attempts() -> None:
        for _ in range(count):
            results.append(lockout.retry_after("alice", "192.0.2.1"))
            lockout.record_failure("alice", "192.0.2.1")
        results.append(lockout.retry_after("alice", "192.0.2.1"))

    worker = threading.Thread(target=attempts, daemon=True)
    worker.start()
    # Not a measurement: a guard. Each command gives up after half a second and a failed
    # Redis is then left alone, so 11 commands take about 0.5 s; without timeouts, for ever.
    worker.join(timeout=10)
    assert not worker.is_alive(), "the lockout hung on a Redis that never answers"
    return results


def test_a_redis_that_never_answers_slows_one_command_then_the_process_counts(silent_server, caplog):
    lockout = Lockout(silent_server.url)
    with caplog.at_level(logging.WARNING):
        results = attempts_in_a_thread(lockout, 5)
    assert results[:5] == [None] * 5
    assert results[5] is not None  # still locked after five failures, counted in this process
    assert len(silent_server.accepted) == 1  # tried once, then left alone: not a timeout per request
    assert caplog.text.count("unreachable") == 1
    assert "trying it again in 30 s" in caplog.text


def test_a_refusing_redis_is_not_retried_on_every_request(refusing_url, caplog):
    lockout = Lockout(refusing_url)
    with caplog.at_level(logging.WARNING):
        results = attempts_in_a_thread(lockout, 5)
    assert results[5] is not None
    assert caplog.text.count("unreachable") == 1


def test_redis_is_tried_again_later_and_what_was_counted_meanwhile_still_counts(tmp_path, monkeypatch):
    monkeypatch.setattr(lockout_module, "SHARED_RETRY_AFTER", 0.0)  # try Redis again at once
    redis_server = Redis(tmp_path)  # a real one, not started yet: its port refuses
    lockout = Lockout(redis_server.url)
    for _ in range(5):
        lockout.record_failure("alice", "192.0.2.1")
    redis_server.start()
    try:
        assert lockout.retry_after("alice", "192.0.2.1") is not None  # the outage's failures still count
        lockout.record_failure("bob", "198.51.100.1")
        stored = redis_server.client().keys("shetphone-lockout*")
        assert any(b"bob" in key for key in stored)  # counted in Redis again, shared by every process
        assert not any(b"alice" in key for key in stored)
    finally:
        redis_server.stop()


def test_a_unix_socket_message_queue_is_a_lockout_storage_too(tmp_path):
    # settings accepts message_queue = unix:///path (redis-py's scheme); limits names it redis+unix
    lockout = Lockout(f"unix://{tmp_path}/no-redis-here.sock")
    for _ in range(5):
        lockout.record_failure("alice", "192.0.2.1")
    assert lockout.retry_after("alice", "192.0.2.1") is not None
