import logging
import os

import pytest

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


def test_good_edit_takes_effect_and_is_announced(tmp_path):
    path = tmp_path / "n.txt"
    path.write_text("1\n")
    changes = []
    watched = WatchedFile(path, parse_numbers, on_change=lambda old, new: changes.append((old, new)), interval=0)
    assert watched.current == [1]
    touch_later(path, "1\n2\n")
    assert watched.current == [1, 2]
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
    assert f"{path}:2: value: 'oops' is not a number; keeping the last good version" in caplog.text
    assert changes == []
    touch_later(path, "3\n")
    assert watched.current == [3]


def test_a_deleted_file_keeps_the_last_good_version(tmp_path, caplog):
    path = tmp_path / "n.txt"
    path.write_text("5\n")
    watched = WatchedFile(path, parse_numbers, interval=0)
    path.unlink()
    with caplog.at_level(logging.ERROR):
        assert watched.current == [5]
    assert "file not found" in caplog.text


def test_checks_are_throttled(tmp_path):
    path = tmp_path / "n.txt"
    path.write_text("1\n")
    watched = WatchedFile(path, parse_numbers, interval=3600)
    touch_later(path, "2\n")
    assert watched.current == [1]  # not looked at again within the interval
    assert watched.refresh() is True
    assert watched.current == [2]
