"""The ``discord:CHANNEL_ID`` target: one call, heard in a voice channel and hearing it back."""

from __future__ import annotations

import functools
import time
import wave
from collections import deque
from collections.abc import Callable
from pathlib import Path

import discord
import numpy as np

from ...audio import PHONE_FRAME_BYTES, SILENCE_FRAME, Framer, Upsampler, to_stereo
from .. import Target
from .hub import DiscordHub
from .voices import Voices

BUSY_RECORDING = Path(__file__).with_name("busy.wav")  # 8 kHz 16-bit mono, espeak-ng's voice
BUSY_REASON = "every Discord bot is busy in that server"


def safe_text(text: str) -> str:
    """Caller text goes into a Discord message: no markdown tricks, no mentions."""
    return discord.utils.escape_mentions(discord.utils.escape_markdown(text))


def _call(party: str, outgoing: bool) -> str:
    return f"Call {'to' if outgoing else 'from'} {safe_text(party)}"


def call_started_text(caller: str, channel_id: int, *, outgoing: bool = False) -> str:
    """``caller``: the other party (the number called, for a call placed from Discord)."""
    return f"📞 {_call(caller, outgoing)} started in <#{channel_id}>."


def call_ended_text(caller: str, channel_id: int, seconds: float, *, outgoing: bool = False) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"📴 {_call(caller, outgoing)} in <#{channel_id}> ended after {minutes}:{secs:02d}."


def call_busy_text(caller: str, channel_id: int, *, outgoing: bool = False) -> str:
    return (
        f"📵 {_call(caller, outgoing)} {'from' if outgoing else 'to'} <#{channel_id}> could not be put through: "
        "every bot of the bridge is already in another voice channel of this server. Add a bot to "
        "DISCORD_BOT_TOKENS for more."
    )


@functools.cache
def busy_frames() -> tuple[bytes, ...]:
    """The spoken "all lines busy" message as 20 ms 48 kHz stereo frames, a last silent frame included."""
    with wave.open(str(BUSY_RECORDING), "rb") as recording:
        if (recording.getnchannels(), recording.getsampwidth(), recording.getframerate()) != (1, 2, 8000):
            raise ValueError(f"{BUSY_RECORDING} is not 8 kHz 16-bit mono")
        samples = np.frombuffer(recording.readframes(recording.getnframes()), dtype="<i2")
    # Whole frames, and 20 ms more for the filter to ring out in; up to 48 kHz here
    # and down again on the way out, like every other voice the caller hears.
    padded = np.concatenate([samples, np.zeros(PHONE_FRAME_BYTES + (-len(samples)) % PHONE_FRAME_BYTES, np.int16)])
    return (*Framer().push(to_stereo(Upsampler().process(padded))), SILENCE_FRAME)


class DiscordTarget(Target):
    """One call: the caller played into a voice channel, the channel's voices returned to the caller."""

    def __init__(self, hub: DiscordHub, channel_id: int, call_key: str, caller: str, *, outgoing: bool = False) -> None:
        self.hub = hub
        self.channel_id = channel_id
        self.call_key = call_key
        self.caller = caller  # the other party
        self.outgoing = outgoing  # placed from Discord (/call), not a call in
        self.voices = Voices()
        self._take: Callable[[], bytes] = lambda: SILENCE_FRAME
        self._link = None
        self._started = 0.0
        self._put_through = False
        self._farewell: deque[bytes] | None = None
        self._hangup: str | None = None

    # ----------------------------------------------------------------- the session's side

    def feed_from(self, take: Callable[[], bytes]) -> None:
        self._take = take

    def take(self) -> bytes:
        """The caller's next frame, for the channel's player (its thread)."""
        return self._take()

    async def open(self) -> None:
        self._started = time.monotonic()
        self._link = self.hub.attach(self.channel_id, self)

    def takes_frames(self) -> bool:
        link = self._link
        return link is not None and self._farewell is None and link.source.reading()

    def play(self, frame: bytes) -> None:
        # The player takes the caller's frames itself while it reads (takes_frames);
        # while it does not, nobody in the channel can hear them.
        return None

    def returned(self) -> bytes | None:
        if self._farewell is not None:
            if self._farewell:
                return self._farewell.popleft()
            self._hangup = BUSY_REASON
            return None
        return self.voices.mix()

    def hangup(self) -> str | None:
        return self._hangup

    async def close(self) -> None:
        if self._link is None:
            return
        self._link = None
        self.hub.detach(self.channel_id, self.call_key)
        if self._put_through:
            seconds = time.monotonic() - self._started
            self.hub.notify(call_ended_text(self.caller, self.channel_id, seconds, outgoing=self.outgoing))

    # ----------------------------------------------------------------- the hub's side

    def put_through(self) -> None:
        """A bot has the channel: the call is on."""
        if not self._put_through:
            self._put_through = True
            self.hub.notify(call_started_text(self.caller, self.channel_id, outgoing=self.outgoing))

    def busy(self) -> None:
        """No bot can join: the caller is told so, then the call ends (``hangup``)."""
        if self._farewell is None:
            self._farewell = deque(busy_frames())
            self.hub.notify(call_busy_text(self.caller, self.channel_id, outgoing=self.outgoing))
