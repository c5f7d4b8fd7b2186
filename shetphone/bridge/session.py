"""One call's media session: caller audio in, target fed every 20 ms, audio back out.

Media messages arrive when the network delivers them; the session decodes them
up to 48 kHz frames into a jitter buffer at once, and its own 20 ms clock takes
one frame out per tick for the recorder and the target, and sends whatever the
target returns back down to 8 kHz mu-law for the caller. A target whose sink
reads on a clock of its own (discord.py's player) takes the frames itself, at
its read, so the caller's audio waits on one clock, not two. Every queue here
is bounded and loses its oldest entry when full, never memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable

from .audio import FRAME_MS, Downlink, Uplink
from .jitter import JitterBuffer
from .protocol import Start, mark_message, media_message
from .targets import Target
from .targets.recorder import WavRecorder

log = logging.getLogger(__name__)

TICK = FRAME_MS / 1000  # seconds
# Two frames of prefill absorb ordinary network jitter; ten frames (200 ms) is the
# most the caller may run ahead before the oldest audio is dropped.
JITTER_PREFILL_FRAMES = 2
# Before the buffer has once run dry there is no jitter to guard against: the
# call's first frame is played at once, and the two-frame guard comes with the
# first late packet.
JITTER_START_PREFILL_FRAMES = 1
JITTER_MAX_FRAMES = 10
# 50 messages is one second of audio for the caller: a Twilio that stops reading
# loses the oldest second, and the bridge's memory stays put.
OUTBOX_MAX_MESSAGES = 50
# If the loop was stalled for longer than this, start the clock afresh instead of
# firing every missed tick at once (which would only flood the buffers).
MAX_CLOCK_LAG = 0.2  # seconds
# A queue deeper than the frame each tick takes is latency, and with arrivals
# and ticks at one rate it never drains: when frames have stood behind the one
# taken at every tick for a while, the oldest is dropped, 20 ms less for the
# rest of the call. Two or more (a burst's backlog): after a second. One (the
# guard a restart after a late packet prefills): after five calm seconds, as
# the network may well be late again.
BACKLOG_TICKS_BEFORE_TRIM = 50
SPARE_TICKS_BEFORE_TRIM = 250
# Frames a sink took (on its own clock) that wait for the next tick's recorder.
TAKEN_MAX_FRAMES = 50
# The mark sent after a target's last words: Twilio echoes it once they are played.
HANGUP_MARK = "hangup"


class Outbox:
    """Messages for Twilio, bounded; when full the oldest message is dropped."""

    def __init__(self, max_messages: int = OUTBOX_MAX_MESSAGES) -> None:
        self._messages: deque[str] = deque(maxlen=max_messages)
        self._ready = asyncio.Event()
        self.max_messages = max_messages
        self.dropped = 0

    def put(self, message: str) -> None:
        if len(self._messages) == self.max_messages:
            self.dropped += 1
        self._messages.append(message)
        self._ready.set()

    async def get(self) -> str:
        while not self._messages:
            self._ready.clear()
            await self._ready.wait()
        return self._messages.popleft()

    def __len__(self) -> int:
        return len(self._messages)


class Session:
    """The media of one stream (one ``streamSid``), from ``start`` to its end."""

    def __init__(
        self,
        start: Start,
        target: Target,
        outbox: Outbox,
        recorder: WavRecorder | None = None,
        *,
        prefill_frames: int = JITTER_PREFILL_FRAMES,
        max_frames: int = JITTER_MAX_FRAMES,
        on_tick: Callable[[Session, bytes], None] | None = None,
        on_hangup: Callable[[str], None] | None = None,
        caller: str | None = None,
    ) -> None:
        self.stream_sid = start.stream_sid
        self.call_sid = start.call_sid
        self.target_name = start.custom_parameters.get("target") or ""
        # The other party, in words: the server's (a placed call's record), else the stream's "from".
        self.caller = caller or start.custom_parameters.get("from") or "unknown caller"
        self.target = target
        self.outbox = outbox
        self.recorder = recorder
        self.jitter = JitterBuffer(
            prefill_frames=prefill_frames,
            max_frames=max_frames,
            start_prefill_frames=min(JITTER_START_PREFILL_FRAMES, prefill_frames),
            trim_after=SPARE_TICKS_BEFORE_TRIM,
            trim_backlog_after=BACKLOG_TICKS_BEFORE_TRIM,
        )
        # The jitter buffer is filled here and emptied either by the clock or by a
        # sink's own thread (take_frame).
        self._lock = threading.Lock()
        self._taken: deque[bytes] = deque(maxlen=TAKEN_MAX_FRAMES)
        self._uplink = Uplink()
        self._downlink = Downlink()
        self._on_tick = on_tick
        self._on_hangup = on_hangup
        self._hung_up = False
        self._clock: asyncio.Task[None] | None = None
        self._closed = False
        self.media_messages = 0
        self.ticks = 0

    @property
    def trimmed(self) -> int:
        """Frames dropped to bring the latency back down."""
        return self.jitter.trimmed

    async def open(self) -> None:
        self.target.feed_from(self.take_frame)
        await self.target.open()
        self._clock = asyncio.create_task(self._run_clock(), name=f"clock {self.stream_sid}")

    def receive_media(self, payload: bytes) -> None:
        """Caller audio (mu-law, any length) -> 48 kHz frames in the jitter buffer."""
        self.media_messages += 1
        frames = self._uplink.process(payload)
        with self._lock:
            for frame in frames:
                self.jitter.push(frame)

    def take_frame(self) -> bytes:
        """The caller's next frame, now: for a sink reading on its own clock, from its own thread."""
        with self._lock:
            frame = self.jitter.pop()
        self._taken.append(frame)  # for the recorder, at the next tick
        return frame

    def tick(self) -> None:
        """One 20 ms step: a frame to the recorder and the target, the target's answer back."""
        self.ticks += 1
        taken = self.target.takes_frames()
        if taken:
            frames = [self._taken.popleft() for _ in range(len(self._taken))]
        else:
            with self._lock:
                frames = [self.jitter.pop()]
        for frame in frames:
            if self.recorder is not None:
                self.recorder.write(frame)
            if not taken:
                self.target.play(frame)
            if self._on_tick is not None:
                self._on_tick(self, frame)
        returned = self.target.returned()
        if returned is not None:
            for payload in self._downlink.process(returned):
                self.outbox.put(media_message(self.stream_sid, payload))
        if not self._hung_up and (reason := self.target.hangup()) is not None:
            # Sent after the last words: when Twilio echoes it, they have been played.
            self._hung_up = True
            self.outbox.put(mark_message(self.stream_sid, HANGUP_MARK))
            if self._on_hangup is not None:
                self._on_hangup(reason)

    async def _run_clock(self) -> None:
        # Drift-free: each tick is scheduled against an absolute loop.time() target,
        # so the sleeps' own overshoot never accumulates.
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + TICK
        while True:
            delay = next_tick - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                if delay < -MAX_CLOCK_LAG:
                    log.warning("stream %s: clock %.0f ms late; restarting it", self.stream_sid, -delay * 1000)
                    next_tick = loop.time()
                # Catching up: let the media that is waiting in other tasks in between ticks.
                await asyncio.sleep(0)
            try:
                self.tick()
            except Exception:
                # One bad frame (a target's bug) must not stop the call's clock.
                log.exception("stream %s: tick failed", self.stream_sid)
            next_tick += TICK

    async def close(self) -> None:
        """Stop the clock, finalise the recording, release the target; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock
        if self.recorder is not None:
            self.recorder.close()
        try:
            await self.target.close()
        except Exception:
            log.exception("stream %s: closing target %s failed", self.stream_sid, type(self.target).__name__)
        log.info(
            "stream %s (call %s) ended: %d media messages, %d ticks, %d frames dropped (%d to cut latency), "
            "%d underruns",
            self.stream_sid,
            self.call_sid,
            self.media_messages,
            self.ticks,
            self.jitter.dropped + self.trimmed,
            self.trimmed,
            self.jitter.underruns,
        )
