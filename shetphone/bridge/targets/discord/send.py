"""Phone to Discord: the ``discord.AudioSource`` a voice channel's bot plays.

discord.py's player thread calls ``read()`` every 20 ms; each read takes the
next frame of every call in the channel straight from that call's jitter
buffer (the session's ``take_frame``), so the caller's audio waits on one
clock, the player's, and never for a second one. The mix goes to Discord;
each call's frame also goes to the other calls' voices, so two callers in one
channel hear each other as they hear its members.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import discord

from ...audio import SILENCE_FRAME, mix
from .voices import Voices

# A player that has not read for this long (five reads) has stopped: the session's
# own clock takes the caller's frames again.
READING_WINDOW = 0.1  # seconds


@dataclass(frozen=True)
class Feed:
    """One call into the channel: how to take its next frame, and what it hears."""

    take: Callable[[], bytes]
    voices: Voices


class ChannelSource(discord.AudioSource):
    """The audio of one voice channel: the mix of its calls, 20 ms per read().

    read() runs in discord.py's player thread; the calls come and go on the
    event loop. It always returns exactly 3,840 bytes (silence when no call has
    a frame ready) and never b"", which would make discord.py stop the player.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._feeds: dict[str, Feed] = {}
        self.reads = 0
        self.last_read: float | None = None  # time.monotonic() of the latest read()

    def add_call(self, call_key: str, take: Callable[[], bytes], voices: Voices) -> None:
        with self._lock:
            self._feeds[call_key] = Feed(take, voices)

    def remove_call(self, call_key: str) -> None:
        with self._lock:
            self._feeds.pop(call_key, None)
            others = list(self._feeds.values())
        for feed in others:
            feed.voices.forget(("call", call_key))

    def read(self) -> bytes:
        with self._lock:
            self.last_read = time.monotonic()
            self.reads += 1
            frames = {key: feed.take() for key, feed in self._feeds.items()}
            if len(frames) > 1:
                for key, feed in self._feeds.items():
                    for other, frame in frames.items():
                        if other != key and frame is not SILENCE_FRAME:
                            feed.voices.push(("call", other), frame)
        return mix(list(frames.values()))

    def reading(self) -> bool:
        """Whether the player is reading (it read within the last five frames)."""
        last = self.last_read
        return last is not None and time.monotonic() - last <= READING_WINDOW

    def is_opus(self) -> bool:
        return False

    def __len__(self) -> int:
        with self._lock:
            return len(self._feeds)
