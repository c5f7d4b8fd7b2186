"""Each stream ``auth`` value admits one stream, across bridge restarts too.

A value the bridge accepts is appended to a small file in its state directory
(``instance/`` unless ``--state DIR``) as one line, ``EXPIRES KEY``, and
fsync'd before the stream is let in: a restart, or a crash, forgets no value
that could still be replayed. At start the file is rewritten without the
expired lines, so it holds a few minutes of calls, never the whole history.

Two bridge processes sharing the directory see each other's values: each
claim holds an ``flock`` on a lock file beside it (the data file itself is
replaced when compacted, the lock file never is) and first reads what the
others appended since. Plain files and ``fcntl``: no database, so the bridge
does not load SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "stream-auth-used"
_LINE = re.compile(rb"^([0-9]{1,12}) ([A-Za-z0-9_-]{43})$")


class ReplayGuard:
    """The ``auth`` values used so far and not yet expired; in memory only when ``path`` is None."""

    def __init__(self, path: Path | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._used: dict[str, int] = {}  # key -> expires (Unix seconds)
        self._mutex = threading.Lock()  # claims run in worker threads (the fsync must not stall the loop)
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._offset = 0  # bytes of the data file already read into _used
        if path is not None:
            self._open_and_compact(path)

    @classmethod
    def in_directory(cls, directory: Path) -> ReplayGuard:
        """The guard kept in ``directory`` (created if missing); OSError when it cannot be."""
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory / FILE_NAME)

    def claim(self, key: str, expires: int) -> bool:
        """Mark ``key`` used until ``expires``; False when it had been used already.

        Raises OSError when the use cannot be recorded durably: the caller must
        then refuse the stream, or a restart could let the value in again.
        """
        with self._mutex:
            self._forget_expired(self._clock())
            if self.path is None:
                return self._remember(key, expires)
            with self._flocked():
                self._catch_up()
                if key in self._used:
                    return False
                line = f"{expires} {key}\n".encode("ascii")
                assert self._fd is not None
                os.write(self._fd, line)  # O_APPEND: one short write lands whole after everyone else's
                os.fsync(self._fd)
                self._offset += len(line)
                return self._remember(key, expires)

    def __len__(self) -> int:
        with self._mutex:
            return len(self._used)

    def close(self) -> None:
        with self._mutex:
            for fd in (self._fd, self._lock_fd):
                if fd is not None:
                    os.close(fd)
            self._fd = self._lock_fd = None

    # ----------------------------------------------------------------- inside

    def _remember(self, key: str, expires: int) -> bool:
        if key in self._used:
            return False
        self._used[key] = expires
        return True

    def _forget_expired(self, now: float) -> None:
        # A value is refused once expired anyway; what is left is minutes of calls.
        expired = [key for key, expires in self._used.items() if expires <= now]
        for key in expired:
            del self._used[key]

    @contextlib.contextmanager
    def _flocked(self) -> Iterator[None]:
        assert self._lock_fd is not None, "the replay guard is closed"
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _open_and_compact(self, path: Path) -> None:
        self._lock_fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with self._flocked():
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                data = b""
            now = self._clock()
            entries = {key: expires for key, expires in self._parse(data).items() if expires > now}
            kept = b"".join(f"{expires} {key}\n".encode("ascii") for key, expires in entries.items())
            temporary = path.with_name(path.name + ".tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, kept)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, path)
            _fsync_directory(path.parent)
            self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
            self._offset = len(kept)
            self._used = entries
        log.info("%s: %d stream auth values still unexpired", path, len(entries))

    def _catch_up(self) -> None:
        """Read what other processes appended since; reopen if one compacted the file at its start."""
        assert self.path is not None and self._fd is not None
        try:
            replaced = os.stat(self.path).st_ino != os.fstat(self._fd).st_ino
        except FileNotFoundError:
            replaced = True
        if replaced:
            os.close(self._fd)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._offset = 0
        size = os.fstat(self._fd).st_size
        if size <= self._offset:
            return
        data = os.pread(self._fd, size - self._offset, self._offset)
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written is read next time
        self._offset += len(complete)
        now = self._clock()
        for key, expires in self._parse(complete).items():
            if expires > now:
                self._used.setdefault(key, expires)

    def _parse(self, data: bytes) -> dict[str, int]:
        entries: dict[str, int] = {}
        bad = 0
        for line in data.splitlines():
            match = _LINE.match(line)
            if match is None:
                bad += 1  # a line cut short by a crash, or not ours: it admits nothing
                continue
            entries[match.group(2).decode("ascii")] = int(match.group(1))
        if bad:
            log.warning("%s: %d malformed lines skipped", self.path, bad)
        return entries


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory's entry is on disk too.
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
