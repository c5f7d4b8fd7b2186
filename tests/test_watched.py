import logging
import os

import pytest
from conftest import settled

from shetphone.settings import ConfigError
from shetphone.watched import WatchedFile


def parse_numbers(text, path):
    values = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip().isdigit():
            raise ConfigError(path, "value", f"{line!r} is not a number", number)
        values.append(int(line))
    return values


def touch_later(path, text):
    # A new mtime even on file systems with coarse timestamps.
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def test_first_load_is_strict(tmp_path):
    path = tmp_path / "n.txt"
    with pytest.raises(ConfigError, match="file not found"):
        WatchedFile(path, parse_numbers)
    path.write_text("1\nx\n")
    with pytest.raises(ConfigError, match=r"n.txt:2: value: 'x' is not a number"):
        WatchedFile(path, parse_numbers)


def test_good_edit_takes_effect_at_the_second_check_and_is_announced(tmp_path):
    path = tmp_path / "n.txt"
    path.write_text("1\n")
    changes = []
    watched = WatchedFile(path, parse_numbers, on_change=lambda old, new: changes.append((old, new)), interval=0)
    assert watched.current == [1]
    touch_later(path, "1\n2\n")
    assert watched.current == [1]  # seen once: maybe still being written
    assert watched.current == [1, 2]  # unchanged since: taken
    assert changes == [([1], [1, 2])]
    assert watched.refresh() is False  # nothing changed since


def test_malformed_edit_is_logged_and_the_last_good_version_stays(tmp_path, caplog):
    path = tmp_path / "n.txt"
    path.write_text("1\n")
    changes = []
    watched = WatchedFile(path, parse_numbers, on_change=lambda old, new: changes.append(new), interval=0)
    touch_later(path, "1\noops\n")
    with caplog.at_level(logging.ERROR):
        assert watched.current == [1]
        assert watched.current == [1]
    assert f"{path}:2: value: 'oops' is not a number; keeping the last good version" in caplog.text
    assert changes == []
    touch_later(path, "3\n")
    assert settled(watched) == [3]


def test_a_deleted_file_keeps_the_last_good_version(tmp_path, caplog):
    path = tmp_path / "n.txt"
    path.write_text("5\n")
    watched = WatchedFile(path, parse_numbers, interval=0)
    path.unlink()
    with caplog.at_level(logging.ERROR):
        assert settled(watched) == [5]
    assert "file not found" in caplog.text


def test_checks_are_throttled(tmp_path):
    path = tmp_path / "n.txt"
    path.write_text("1\n")
    watched = WatchedFile(path, parse_numbers, interval=3600)
    touch_later(path, "2\n")
    assert watched.current == [1]  # not looked at again within the interval
    assert watched.refresh() is False  # seen changed once
    assert watched.refresh() is True  # and the same again
    assert watched.current == [2]


def test_a_file_still_being_written_is_never_taken(tmp_path):
    # `htpasswd` and editors rewrite in place: a check between two writes sees a short file
    # that may parse (here: half of the numbers), and must not take it.
    path = tmp_path / "n.txt"
    path.write_text("1\n2\n3\n4\n")
    changes = []
    # checked only when the test says (refresh), so reading `current` checks nothing
    watched = WatchedFile(path, parse_numbers, on_change=lambda old, new: changes.append(new), interval=3600)
    touch_later(path, "1\n2\n")  # the first half of a rewrite
    assert watched.refresh() is False
    with path.open("a") as rest:
        rest.write("3\n4\n5\n")  # the rest, before the next check
    assert watched.refresh() is False  # changed again since the last check: not yet
    assert watched.current == [1, 2, 3, 4]
    assert watched.refresh() is True  # the same for two checks: taken
    assert watched.current == [1, 2, 3, 4, 5]
    assert changes == [[1, 2, 3, 4, 5]]


def test_a_file_rewritten_while_being_read_waits_to_settle_again(tmp_path):
    path = tmp_path / "n.txt"
    path.write_text("1\n")

    class RewrittenDuringTheRead(WatchedFile):
        def _read(self):
            text = super()._read()
            if text == "1\n2\n":
                touch_later(path, "1\n2\n3\n")  # the writer came back between our stat and our read
            return text

    watched = RewrittenDuringTheRead(path, parse_numbers, interval=3600)
    touch_later(path, "1\n2\n")
    assert watched.refresh() is False
    assert watched.refresh() is False  # settled at the stat, but changed under the read
    assert watched.current == [1]
    assert settled(watched) == [1, 2, 3]


def test_an_optional_file_is_absent_without_error_and_comes_and_goes(tmp_path, caplog):
    path = tmp_path / "n.txt"
    with caplog.at_level(logging.ERROR):
        watched = WatchedFile(path, parse_numbers, interval=0, absent=None, settle=False)
    assert watched.current is None
    assert caplog.text == ""
    path.write_text("7\n")
    assert watched.current == [7]  # settle=False: taken at the first check
    path.unlink()
    assert watched.current is None


def test_an_optional_file_malformed_at_the_start_is_logged_not_raised(tmp_path, caplog):
    path = tmp_path / "n.txt"
    path.write_text("x\n")
    with caplog.at_level(logging.ERROR):
        watched = WatchedFile(path, parse_numbers, interval=0, absent=None, settle=False)
    assert watched.current is None
    assert f"{path}:1: value: 'x' is not a number" in caplog.text


def test_a_byte_that_is_not_utf8_is_logged_with_its_line_and_the_last_good_version_stays(tmp_path, caplog):
    path = tmp_path / "n.txt"
    path.write_text("1\n")
    watched = WatchedFile(path, parse_numbers, interval=0)
    path.write_bytes(b"1\n2\xf6\n")  # another size: a change whatever the clock
    with caplog.at_level(logging.ERROR):
        assert settled(watched) == [1]
    assert f"{path}:2: byte 0xf6 is not UTF-8; save the file as UTF-8; keeping the last good version" in caplog.text


def test_a_missing_required_file_says_what_to_do_at_the_start_and_while_running(tmp_path, caplog):
    path = tmp_path / "n.txt"
    with pytest.raises(ConfigError) as caught:
        WatchedFile(path, parse_numbers, when_missing="write one number per line")
    assert str(caught.value) == f"{path}: file not found; write one number per line"
    path.write_text("7\n")
    watched = WatchedFile(path, parse_numbers, interval=0, when_missing="write one number per line")
    path.unlink()
    with caplog.at_level(logging.ERROR):
        assert settled(watched) == [7]
    assert f"{path}: file not found; write one number per line; keeping the last good version" in caplog.text
