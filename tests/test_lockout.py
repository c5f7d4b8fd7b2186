import logging

from shetphone.lockout import Lockout


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
