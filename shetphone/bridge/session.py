"""One call's media session: caller audio in, target fed every 20 ms, audio back out.

Media messages arrive when the network delivers them; the session decodes them
up to 48 kHz frames into a jitter buffer at once, and its own 20 ms clock takes
one frame out per tick for the recorder and the target, and sends whatever the
target returns back down to 8 kHz mu-law for the caller. Every queue here is
bounded and loses its oldest entry when full, never memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from .audio import FRAME_MS, Downlink, Uplink
from .jitter import JitterBuffer
from .protocol import Start, media_message
from .targets import Target
from .targets.recorder import WavRecorder

log = logging.getLogger(__name__)

TICK = FRAME_MS / 1000  # seconds
# Two frames of prefill absorb ordinary network jitter; ten frames (200 ms) is the
# most the caller may run ahead before the oldest audio is dropped.
JITTER_PREFILL_FRAMES = 2
JITTER_MAX_FRAMES = 10
# 50 messages is one second of audio for the caller: a Twilio that stops reading
# loses the oldest second, and the bridge's memory stays put.
OUTBOX_MAX_MESSAGES = 50
# If the loop was stalled for longer than this, start the clock afresh instead of
# firing every missed tick at once (which would only flood the buffers).
MAX_CLOCK_LAG = 0.2  # seconds
# A target with its own clock (discord.py's player reads every 20 ms) gets its
# frame this long before it reads (margin for threads that wake a few ms late
# on a busy machine), and the session's clock moves a fifth of the way towards
# that phase at each tick: fast enough to lock in a quarter of a second, gentle
# enough that the player's own jitter does not shake it.
SINK_LEAD = 0.006  # seconds
PHASE_GAIN = 0.2
# The prefill is the guard against late packets; a queue deeper than that is
# latency left behind by a burst (the network or this loop catching up after a
# stall), and with arrivals and ticks at the same rate it would never drain. When
# the buffer has held more than the prefill at every tick for a second, the
# oldest frame is dropped: 20 ms less latency for the rest of the call.
SPARE_TICKS_BEFORE_TRIM = 50


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
    ) -> None:
        self.stream_sid = start.stream_sid
        self.call_sid = start.call_sid
        self.caller = start.custom_parameters.get("from") or "unknown caller"
        self.target = target
        self.outbox = outbox
        self.recorder = recorder
        self.jitter = JitterBuffer(prefill_frames=prefill_frames, max_frames=max_frames)
        self._uplink = Uplink()
        self._downlink = Downlink()
        self._on_tick = on_tick
        self._clock: asyncio.Task[None] | None = None
        self._closed = False
        self.media_messages = 0
        self.ticks = 0
        self.trimmed = 0  # frames dropped to bring the latency back down
        self._deep_ticks = 0

    async def open(self) -> None:
        await self.target.open()
        self._clock = asyncio.create_task(self._run_clock(), name=f"clock {self.stream_sid}")

    def receive_media(self, payload: bytes) -> None:
        """Caller audio (mu-law, any length) -> 48 kHz frames in the jitter buffer."""
        self.media_messages += 1
        for frame in self._uplink.process(payload):
            self.jitter.push(frame)

    def tick(self) -> None:
        """One 20 ms step: a frame to the recorder and the target, the target's answer back."""
        self.ticks += 1
        self._deep_ticks = self._deep_ticks + 1 if len(self.jitter) > self.jitter.prefill_frames else 0
        if self._deep_ticks >= SPARE_TICKS_BEFORE_TRIM:
            self.jitter.pop()  # the oldest frame, dropped
            self.trimmed += 1
            self._deep_ticks = 0
        frame = self.jitter.pop()
        if self.recorder is not None:
            self.recorder.write(frame)
        self.target.play(frame)
        if self._on_tick is not None:
            self._on_tick(self, frame)
        returned = self.target.returned()
        if returned is not None:
            for payload in self._downlink.process(returned):
                self.outbox.put(media_message(self.stream_sid, payload))

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
            next_tick += TICK + self._phase_error(next_tick + TICK) * PHASE_GAIN

    def _phase_error(self, next_tick: float) -> float:
        """How far (seconds, within +-10 ms) the next tick is from just before the sink's read."""
        read_at = self.target.next_read_at()
        if read_at is None:
            return 0.0
        error = (read_at - SINK_LEAD - next_tick) % TICK
        return error - TICK if error > TICK / 2 else error

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
