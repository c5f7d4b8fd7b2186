"""Each stream auth value admits one stream: in memory, across restarts, across two bridge processes."""

from __future__ import annotations

import stat

import pytest

from shetphone.bridge.replay import FILE_NAME, ReplayGuard

NOW = 1_800_000_000


def key(n: int) -> str:
    return f"{n:043d}"  # 43 base64url characters, like a MAC


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_in_memory_a_value_is_claimed_once():
    guard = ReplayGuard()
    assert guard.claim(key(1), NOW + 300) is True
    assert guard.claim(key(1), NOW + 300) is False
    assert guard.claim(key(2), NOW + 300) is True


def test_a_value_used_before_a_restart_is_refused_after_it(tmp_path):
    first = ReplayGuard.in_directory(tmp_path / "state")
    assert first.claim(key(1), NOW + 300)
    first.close()  # the bridge stops (or dies: the line was fsync'd before the claim returned)
    again = ReplayGuard.in_directory(tmp_path / "state")
    assert again.claim(key(1), NOW + 300) is False
    assert again.claim(key(2), NOW + 300) is True
    assert stat.S_IMODE((tmp_path / "state" / FILE_NAME).stat().st_mode) == 0o600


def test_expired_values_are_forgotten_and_pruned_from_the_file_at_start(tmp_path):
    clock = Clock()
    guard = ReplayGuard(tmp_path / FILE_NAME, clock=clock)
    guard.claim(key(1), NOW + 10)
    guard.claim(key(2), NOW + 300)
    clock.now = NOW + 10  # key 1 has expired: it would be refused as expired anyway
    assert len(guard) == 2
    assert guard.claim(key(3), NOW + 300)
    assert len(guard) == 2  # keys 2 and 3
    guard.close()
    restarted = ReplayGuard(tmp_path / FILE_NAME, clock=clock)
    assert (tmp_path / FILE_NAME).read_text() == f"{NOW + 300} {key(2)}\n{NOW + 300} {key(3)}\n"
    assert restarted.claim(key(2), NOW + 300) is False


def test_two_bridge_processes_on_one_directory_see_each_others_values(tmp_path):
    path = tmp_path / FILE_NAME
    a = ReplayGuard(path)
    b = ReplayGuard(path)  # b starts second and compacts: a's file is replaced under it
    assert a.claim(key(1), NOW + 3600)
    assert b.claim(key(1), NOW + 3600) is False
    assert b.claim(key(2), NOW + 3600)
    assert a.claim(key(2), NOW + 3600) is False
    c = ReplayGuard(path)  # a third start compacts again while a and b run
    assert c.claim(key(1), NOW + 3600) is False
    assert c.claim(key(3), NOW + 3600)
    assert a.claim(key(3), NOW + 3600) is False
    assert b.claim(key(3), NOW + 3600) is False


def test_a_damaged_line_is_skipped_and_the_rest_still_counts(tmp_path, caplog):
    path = tmp_path / FILE_NAME
    path.write_text(f"{NOW + 300} {key(1)}\ngarbage\n{NOW + 300} {key(2)}\n{NOW + 300} {key(3)[:20]}")
    guard = ReplayGuard(path, clock=Clock())
    assert "3 malformed lines skipped" not in caplog.text and "2 malformed lines skipped" in caplog.text
    assert guard.claim(key(1), NOW + 300) is False
    assert guard.claim(key(2), NOW + 300) is False
    assert guard.claim(key(3), NOW + 300) is True  # its line was cut short: never recorded whole


def test_a_directory_that_cannot_be_written_is_an_oserror_at_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError):
        ReplayGuard.in_directory(blocker / "state")
