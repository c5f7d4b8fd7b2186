"""A file re-read when it changes on disk, keeping its last good version.

The first load is strict: a missing or malformed file is a :class:`ConfigError`
that stops the start. Later, a malformed edit is logged (file:line: what) and
the last good version stays in force, so a typo never locks the team out.

A changed file is taken only once it has stood still for two checks in a row
(same mtime, size and inode): editors and ``htpasswd`` rewrite in place, and a
file read halfway through its rewrite may parse well and still lack half of it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from .settings import ConfigError, read_utf8

log = logging.getLogger(__name__)

T = TypeVar("T")
CHECK_INTERVAL = 1.0  # seconds between stat() calls on the hot path
Stamp = tuple[int, int, int]
_REQUIRED = object()
_NOTHING_PENDING = object()  # not None: None is the stamp of a missing file


class WatchedFile(Generic[T]):
    def __init__(
        self,
        path: Path,
        parse: Callable[[str, Path], T],
        on_change: Callable[[T, T], None] | None = None,
        interval: float = CHECK_INTERVAL,
        *,
        absent: T = _REQUIRED,  # type: ignore[assignment]
        settle: bool = True,
        when_missing: str = "",
    ):
        """``absent``: the file is optional, and this is its value while it is missing (or, at
        the first load, unreadable or malformed: logged, not raised). ``settle=False`` takes a
        change at the first check, for a format whose half-written file never parses (JSON).
        ``when_missing``: what to do about a required file that is not there, added to "file not found"."""
        self.path = Path(path)
        self._parse = parse
        self._on_change = on_change
        self._interval = interval
        self._absent = absent
        self._settle = settle
        self._when_missing = when_missing
        self._lock = threading.Lock()
        self._pending: Stamp | object | None = _NOTHING_PENDING  # a new stamp seen once, waiting to be seen again
        self._stamp, self._value = self._load_first()
        self._checked_at = time.monotonic()  # just read

    def _stamp_now(self) -> Stamp | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _read(self) -> str:
        try:
            return read_utf8(self.path)
        except FileNotFoundError:
            raise ConfigError(self.path, "", "; ".join(filter(None, ("file not found", self._when_missing)))) from None

    def _load_first(self) -> tuple[Stamp | None, T]:
        stamp = self._stamp_now()
        if self._absent is _REQUIRED:
            return stamp, self._parse(self._read(), self.path)
        if stamp is None:
            return None, self._absent
        try:
            return stamp, self._parse(self._read(), self.path)
        except ConfigError as error:
            log.error("%s", error)
            return stamp, self._absent

    @property
    def current(self) -> T:
        """The last good version, re-read first if the file changed (checked at most once per interval)."""
        if time.monotonic() - self._checked_at >= self._interval:
            self.refresh()
        return self._value

    def refresh(self) -> bool:
        """Re-read the file if it changed and has settled; True when a new good version took effect."""
        with self._lock:
            self._checked_at = time.monotonic()
            stamp = self._stamp_now()
            if stamp == self._stamp:
                self._pending = _NOTHING_PENDING
                return False
            if self._settle and stamp != self._pending:
                self._pending = stamp  # changed since the last check: maybe still being written
                return False
            self._pending = _NOTHING_PENDING
            if stamp is None and self._absent is not _REQUIRED:
                value = self._absent
            else:
                try:
                    text = self._read()
                    if self._settle and self._stamp_now() != stamp:
                        return False  # rewritten while being read: it has to settle again
                    value = self._parse(text, self.path)
                except ConfigError as error:
                    self._stamp = stamp  # not read again until it changes
                    log.error("%s; keeping the last good version", error)
                    return False
            self._stamp = stamp
            old, self._value = self._value, value
        log.info("%s reloaded", self.path)
        if self._on_change is not None:
            self._on_change(old, value)
        return True
