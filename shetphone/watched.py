"""A file re-read when it changes on disk, keeping its last good version.

The first load is strict: a missing or malformed file is a :class:`ConfigError`
that stops the start. Later, a malformed edit is logged (file:line: what) and
the last good version stays in force, so a typo never locks the team out.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from .settings import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")
CHECK_INTERVAL = 1.0  # seconds between stat() calls on the hot path


class WatchedFile(Generic[T]):
    def __init__(
        self,
        path: Path,
        parse: Callable[[str, Path], T],
        on_change: Callable[[T, T], None] | None = None,
        interval: float = CHECK_INTERVAL,
    ):
        self.path = Path(path)
        self._parse = parse
        self._on_change = on_change
        self._interval = interval
        self._lock = threading.Lock()
        self._stamp, self._value = self._load_strict()
        self._checked_at = time.monotonic()  # just read

    def _stamp_now(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _read(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(self.path, "", "file not found") from None
        except UnicodeDecodeError:
            raise ConfigError(self.path, "", "is not UTF-8 text") from None
        except OSError as exc:
            raise ConfigError(self.path, "", f"cannot be read: {exc.strerror}") from None

    def _load_strict(self) -> tuple[tuple[int, int, int] | None, T]:
        stamp = self._stamp_now()
        return stamp, self._parse(self._read(), self.path)

    @property
    def current(self) -> T:
        """The last good version, re-read first if the file changed (checked at most once per interval)."""
        if time.monotonic() - self._checked_at >= self._interval:
            self.refresh()
        return self._value

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when a new good version took effect."""
        with self._lock:
            self._checked_at = time.monotonic()
            stamp = self._stamp_now()
            if stamp == self._stamp:
                return False
            self._stamp = stamp
            try:
                value = self._parse(self._read(), self.path)
            except ConfigError as error:
                log.error("%s; keeping the last good version", error)
                return False
            old, self._value = self._value, value
        log.info("%s reloaded", self.path)
        if self._on_change is not None:
            self._on_change(old, value)
        return True
