"""A bounded jitter buffer between bursty network arrival and a steady 20 ms clock.

Pure: no asyncio. The caller's clock calls pop() every 20 ms and always gets a
whole frame, so a player never sees an empty read.
"""

from __future__ import annotations

from collections import deque

from .audio import FRAME_BYTES, SILENCE_FRAME


class JitterBuffer:
    """Frames in from the network, one frame out per clock tick.

    Holds back output until `prefill_frames` are queued (2 = 40 ms), plays
    silence on underrun and prefills again before resuming, and when full drops
    the oldest frame so a stalled consumer costs audio, never memory.

    `start_prefill_frames` (default: the same) is the prefill before the very
    first frame: until the buffer has once run dry there is no sign of jitter to
    guard against, and the prefill only delays the start.

    Arrivals and pops at one rate never drain a queue, so without trimming the
    latency a burst (or a prefill) leaves behind would stay for the rest of the
    call. With `trim_after`, a frame left standing behind the one popped, at
    every pop for that many pops in a row, is dropped; with
    `trim_backlog_after`, the same for two frames or more, usually sooner. The
    guard a restart after an underrun prefills is so given up slowly (the
    network may be late again), a burst's backlog quickly.
    """

    def __init__(
        self,
        prefill_frames: int = 2,
        max_frames: int = 10,
        frame_bytes: int = FRAME_BYTES,
        *,
        start_prefill_frames: int | None = None,
        trim_after: int | None = None,
        trim_backlog_after: int | None = None,
    ) -> None:
        if frame_bytes <= 0:
            raise ValueError("frame_bytes must be positive")
        if max_frames < 1 or not 0 <= prefill_frames <= max_frames:
            raise ValueError("need 0 <= prefill_frames <= max_frames and max_frames >= 1")
        if any(n is not None and n < 1 for n in (trim_after, trim_backlog_after)):
            raise ValueError("trim_after and trim_backlog_after must be at least 1")
        start = prefill_frames if start_prefill_frames is None else start_prefill_frames
        if not 0 <= start <= max_frames:
            raise ValueError("need 0 <= start_prefill_frames <= max_frames")
        self.prefill_frames = prefill_frames
        self.start_prefill_frames = start
        self.max_frames = max_frames
        self.frame_bytes = frame_bytes
        self.trim_after = trim_after
        self.trim_backlog_after = trim_backlog_after
        self._spare_pops = 0  # pops in a row that left a frame standing
        self._backlog_pops = 0  # ... that left two or more
        # The shared SILENCE_FRAME lets mix() skip idle calls by identity.
        self.silence = SILENCE_FRAME if frame_bytes == FRAME_BYTES else bytes(frame_bytes)
        self._frames: deque[bytes] = deque()
        self._playing = start == 0
        self._ran_dry = False
        self.dropped = 0  # frames thrown away because the buffer was full
        self.underruns = 0  # times the buffer ran dry while playing
        self.trimmed = 0  # frames dropped because they had stood in the queue (trim_after, trim_backlog_after)

    def push(self, frame: bytes) -> None:
        if len(frame) != self.frame_bytes:
            raise ValueError(f"frame must be {self.frame_bytes} bytes, got {len(frame)}")
        if len(self._frames) >= self.max_frames:
            self._frames.popleft()
            self.dropped += 1
        self._frames.append(bytes(frame))

    def pop(self) -> bytes:
        """The next frame, or silence while prefilling or on underrun; always frame_bytes long."""
        if not self._playing:
            if len(self._frames) < (self.prefill_frames if self._ran_dry else self.start_prefill_frames):
                return self.silence
            self._playing = True
        if not self._frames:
            self.underruns += 1
            self._ran_dry = True
            self._playing = self.prefill_frames == 0
            self._spare_pops = self._backlog_pops = 0
            return self.silence
        frame = self._frames.popleft()
        self._spare_pops = self._spare_pops + 1 if self._frames else 0
        self._backlog_pops = self._backlog_pops + 1 if len(self._frames) >= 2 else 0
        if (self.trim_after is not None and self._spare_pops >= self.trim_after) or (
            self.trim_backlog_after is not None and self._backlog_pops >= self.trim_backlog_after
        ):
            self._frames.popleft()  # the oldest left standing: 20 ms less latency from now on
            self.trimmed += 1
            self._spare_pops = self._backlog_pops = 0
        return frame

    @property
    def playing(self) -> bool:
        """False while (re)filling to the prefill level."""
        return self._playing

    def __len__(self) -> int:
        return len(self._frames)
