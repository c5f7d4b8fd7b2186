"""What one call hears: every other voice of its channel, one small jitter buffer each, mixed per tick.

A voice is a Discord member speaking (keyed by the SSRC of their audio) or
another call into the same channel. Frames are pushed from whatever thread
produced them (discord.py's socket reader for members, its player for other
calls) and the call's own clock takes one mixed frame every 20 ms. A voice
that falls silent is silence, never a stall; one that floods only overflows
its own bounded buffer; one silent for long is forgotten.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

from ...audio import FRAME_BYTES, SILENCE_FRAME, mix
from ...jitter import JitterBuffer

# A talk spurt's first frame is played at once; once a voice has run dry in
# mid-spurt (a late packet), it waits for two frames (40 ms) after each gap.
# Frames left standing are trimmed as on the way in (session.py): a backlog
# after a second, the guard after five calm seconds.
VOICE_START_PREFILL_FRAMES = 1
VOICE_PREFILL_FRAMES = 2
VOICE_MAX_FRAMES = 6  # 120 ms: a flooding voice loses its oldest frames, nobody else's
VOICE_TRIM_AFTER = 250
VOICE_TRIM_BACKLOG_AFTER = 50
# Nothing for this many ticks (100 ms) is a pause, not jitter: the next spurt
# starts afresh. Nothing for 10 s, and the voice is forgotten.
VOICE_PAUSE_TICKS = 5
VOICE_IDLE_TICKS = 500
# More voices than this at once is not a conversation: the newest is not added.
MAX_VOICES = 32


def _voice_buffer() -> JitterBuffer:
    return JitterBuffer(
        prefill_frames=VOICE_PREFILL_FRAMES,
        max_frames=VOICE_MAX_FRAMES,
        frame_bytes=FRAME_BYTES,
        start_prefill_frames=VOICE_START_PREFILL_FRAMES,
        trim_after=VOICE_TRIM_AFTER,
        trim_backlog_after=VOICE_TRIM_BACKLOG_AFTER,
    )


class _Voice:
    __slots__ = ("buffer", "idle_ticks")

    def __init__(self) -> None:
        self.buffer = _voice_buffer()
        self.idle_ticks = 0


class Voices:
    """The voices one call hears; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._voices: dict[Hashable, _Voice] = {}
        self.refused = 0  # frames of voices beyond MAX_VOICES
        self.forgotten = 0

    def push(self, key: Hashable, frame: bytes) -> None:
        """One 20 ms frame (48 kHz stereo) of the voice ``key``."""
        with self._lock:
            voice = self._voices.get(key)
            if voice is None:
                if len(self._voices) >= MAX_VOICES:
                    self.refused += 1
                    return
                voice = self._voices[key] = _Voice()
            voice.buffer.push(frame)

    def forget(self, key: Hashable) -> None:
        """The voice has left (a member disconnected, a call ended)."""
        with self._lock:
            self._voices.pop(key, None)

    def mix(self) -> bytes:
        """One frame of every voice mixed (saturating); silence when nobody speaks."""
        with self._lock:
            frames = []
            for key, voice in list(self._voices.items()):
                frame = voice.buffer.pop()
                if frame is SILENCE_FRAME and not len(voice.buffer):
                    voice.idle_ticks += 1
                    if voice.idle_ticks == VOICE_PAUSE_TICKS:
                        voice.buffer = _voice_buffer()  # a pause: the next spurt starts at once
                    elif voice.idle_ticks >= VOICE_IDLE_TICKS:
                        del self._voices[key]
                        self.forgotten += 1
                    continue
                voice.idle_ticks = 0
                frames.append(frame)
        return mix(frames)

    def stats(self) -> dict[Hashable, tuple[int, int, int]]:
        """Per voice: (underruns, frames dropped when full, frames trimmed)."""
        with self._lock:
            return {k: (v.buffer.underruns, v.buffer.dropped, v.buffer.trimmed) for k, v in self._voices.items()}

    def __len__(self) -> int:
        with self._lock:
            return len(self._voices)
