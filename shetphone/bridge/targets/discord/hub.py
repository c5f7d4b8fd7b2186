"""The ``discord:CHANNEL_ID`` target: the caller is played into a Discord voice channel.

One bot (``DISCORD_BOT_TOKEN``) serves every call. Calls into the same voice
channel share one voice connection and are mixed; the bot joins a channel when
its first call starts, keeps the connection up (reconnecting when it drops) and
leaves when its last call ends. A message in the bridge's ``text_channel`` says
when each call starts and ends.

Receiving Discord voice (the way back to the caller) is not built: see
docs/bridge.md, "Discord". ``DiscordTarget.returned`` therefore stays silent.

The discord.py boundary is small on purpose, so tests can stand a fake in:
``client.wait_until_ready()``, ``client.get_channel(id)``,
``client.fetch_channel(id)``, ``channel.connect(...)``, ``channel.send(...)``,
and on a voice client ``play``, ``is_playing``, ``is_connected``, ``stop`` and
``disconnect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import discord

from ..audio import FRAME_BYTES, mix
from ..jitter import JitterBuffer
from . import Target

log = logging.getLogger(__name__)

# Between the session's clock and discord.py's player thread: the player reads
# at its own 20 ms pace, so one frame of prefill and a short bound are enough.
FEED_PREFILL_FRAMES = 1
FEED_MAX_FRAMES = 5
# A frame that has waited through a whole read is latency nobody wants: when a
# call's feed has held a spare frame for this many reads in a row (the player
# started late, or stalled), the oldest is dropped so the feed is shallow again.
BACKLOG_READS = 10
KEEPER_INTERVAL = 1.0  # seconds between checks that a channel's connection is up
RECONNECT_GRACE = 10.0  # seconds discord.py may spend reconnecting on its own before we start over
CONNECT_TIMEOUT = 30.0
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0


class ChannelSource(discord.AudioSource):
    """The audio of one voice channel: the mix of its calls, 20 ms per read().

    read() runs in discord.py's player thread; push() runs on the event loop.
    It always returns exactly 3,840 bytes (silence when no call has a frame
    ready) and never b"", which would make discord.py stop the player.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._feeds: dict[str, JitterBuffer] = {}
        self._backlogged: dict[str, int] = {}
        self.reads = 0
        self.trimmed = 0
        self.last_read: float | None = None  # time.monotonic() of the latest read()

    def add_call(self, call_key: str) -> None:
        with self._lock:
            self._feeds.setdefault(
                call_key,
                JitterBuffer(prefill_frames=FEED_PREFILL_FRAMES, max_frames=FEED_MAX_FRAMES, frame_bytes=FRAME_BYTES),
            )

    def remove_call(self, call_key: str) -> None:
        with self._lock:
            self._feeds.pop(call_key, None)
            self._backlogged.pop(call_key, None)

    def push(self, call_key: str, frame: bytes) -> None:
        with self._lock:
            feed = self._feeds.get(call_key)
            if feed is not None:
                feed.push(frame)

    def read(self) -> bytes:
        with self._lock:
            self.last_read = time.monotonic()
            frames = [self._next_frame(key, feed) for key, feed in self._feeds.items()]
            self.reads += 1
        return mix(frames)

    def _next_frame(self, call_key: str, feed: JitterBuffer) -> bytes:
        backlogged = self._backlogged.get(call_key, 0) + 1 if len(feed) >= 2 else 0
        if backlogged >= BACKLOG_READS:
            feed.pop()  # the oldest, dropped
            self.trimmed += 1
            backlogged = 0
        self._backlogged[call_key] = backlogged
        return feed.pop()

    def next_read_at(self) -> float | None:
        """When the player will read next, judging by its last read (None if it is not reading)."""
        last = self.last_read
        if last is None or time.monotonic() - last > 0.1:
            return None
        return last + 0.02

    def is_opus(self) -> bool:
        return False

    def __len__(self) -> int:
        with self._lock:
            return len(self._feeds)


def _clean(text: str) -> str:
    """Caller text goes into a Discord message: no markdown tricks, no mentions."""
    return discord.utils.escape_mentions(discord.utils.escape_markdown(text))


def call_started_text(caller: str, channel_id: int) -> str:
    return f"📞 Call from {_clean(caller)} started in <#{channel_id}>."


def call_ended_text(caller: str, channel_id: int, seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"📴 Call from {_clean(caller)} in <#{channel_id}> ended after {minutes}:{secs:02d}."


@dataclass
class ChannelLink:
    """The bot's presence in one voice channel, for as long as calls use it."""

    channel_id: int
    source: ChannelSource = field(default_factory=ChannelSource)
    calls: set[str] = field(default_factory=set)
    voice: Any = None  # discord.VoiceClient once connected
    keeper: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    connects: int = 0


class DiscordHub:
    """The one bot, and the voice channels it is in on behalf of calls."""

    def __init__(
        self,
        client: Any,
        text_channel_id: int | None = None,
        *,
        keeper_interval: float = KEEPER_INTERVAL,
        reconnect_grace: float = RECONNECT_GRACE,
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.client = client
        self._client_factory = client_factory
        self.text_channel_id = text_channel_id
        self.channels: dict[int, ChannelLink] = {}
        self._keeper_interval = keeper_interval
        self._reconnect_grace = reconnect_grace
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None

    @classmethod
    def with_bot(cls, text_channel_id: int | None) -> DiscordHub:
        # Voice needs the guilds and voice_states intents, nothing privileged.
        def new_client() -> discord.Client:
            intents = discord.Intents.none()
            intents.guilds = True
            intents.voice_states = True
            return discord.Client(intents=intents)

        return cls(new_client(), text_channel_id, client_factory=new_client)

    # ----------------------------------------------------------------- the bot

    def start(self, token: str) -> None:
        """Log the bot in, in the background; the bridge serves phones meanwhile."""
        self._runner = asyncio.create_task(self._run_bot(token), name="discord bot")

    async def _run_bot(self, token: str) -> None:
        backoff = BACKOFF_FIRST
        while True:
            try:
                await self.client.start(token)
                return
            except discord.LoginFailure as exc:
                log.error("Discord refused DISCORD_BOT_TOKEN (%s); Discord calls will not be heard", exc)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("Discord bot disconnected (%s); retrying in %.1f s", exc, backoff)
                if self._client_factory is not None:
                    # A discord.Client cannot start again once closed, and a failed
                    # start leaves its HTTP session open: close it, make a new one.
                    await self.client.close()
                    self.client = self._client_factory()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def close(self) -> None:
        """Leave every channel and log the bot out."""
        for link in list(self.channels.values()):
            link.calls.clear()
            if link.keeper is not None:
                link.keeper.cancel()  # it may be waiting on Discord; it leaves the channel as it goes
        keepers = [link.keeper for link in self.channels.values() if link.keeper is not None]
        if keepers:
            await asyncio.wait(keepers, timeout=5)
        if self._tasks:
            # The last "call ended" notices, if Discord is there to take them.
            _, late = await asyncio.wait(self._tasks, timeout=2)
            for task in late:
                task.cancel()
        if self._runner is not None:
            try:
                await asyncio.wait_for(self.client.close(), timeout=5)
            except Exception as exc:
                log.warning("closing the Discord client failed: %s", exc)
            self._runner.cancel()

    # ----------------------------------------------------------------- calls

    def attach(self, channel_id: int, call_key: str) -> ChannelSource:
        """A call starts in ``channel_id``: join the channel if the bot is not there yet."""
        link = self.channels.get(channel_id)
        if link is None:
            link = self.channels[channel_id] = ChannelLink(channel_id)
        link.calls.add(call_key)
        link.source.add_call(call_key)
        if link.keeper is None or link.keeper.done():
            link.keeper = asyncio.create_task(self._keep(link), name=f"voice {channel_id}")
        link.wake.set()
        return link.source

    def detach(self, channel_id: int, call_key: str) -> None:
        """A call in ``channel_id`` ended; the bot leaves with the channel's last call."""
        link = self.channels.get(channel_id)
        if link is None:
            return
        link.calls.discard(call_key)
        link.source.remove_call(call_key)
        link.wake.set()

    async def _keep(self, link: ChannelLink) -> None:
        """Keep the voice connection of one channel up while it has calls, then leave."""
        try:
            while True:
                await self._keep_while_in_use(link)
                await self._disconnect(link)
                # No await since the check: a call attached now finds this keeper gone.
                if not link.calls:
                    if self.channels.get(link.channel_id) is link:
                        del self.channels[link.channel_id]
                    return
        finally:
            await self._disconnect(link)

    async def _keep_while_in_use(self, link: ChannelLink) -> None:
        backoff = BACKOFF_FIRST
        down_since: float | None = None
        while link.calls:
            # Cleared before the checks, so a call that comes or goes during them
            # cuts the next wait short.
            link.wake.clear()
            try:
                if link.voice is None:
                    link.voice = await asyncio.wait_for(self._connect(link.channel_id), timeout=CONNECT_TIMEOUT)
                    link.connects += 1
                    backoff = BACKOFF_FIRST
                    down_since = None
                if not link.voice.is_connected():
                    # discord.py (reconnect=True) tries on its own first; if that
                    # takes too long, drop the connection and make a new one.
                    down_since = down_since or time.monotonic()
                    if time.monotonic() - down_since >= self._reconnect_grace:
                        log.warning("voice channel %s: connection lost; reconnecting", link.channel_id)
                        await self._disconnect(link)
                        continue
                else:
                    down_since = None
                    if not link.voice.is_playing():
                        link.voice.play(link.source, after=self._player_ended(link.channel_id))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "voice channel %s: cannot connect (%s); retrying in %.0f s", link.channel_id, exc, backoff
                )
                await self._disconnect(link)
                await self._sleep(link, backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            await self._sleep(link, self._keeper_interval)

    @staticmethod
    async def _sleep(link: ChannelLink, seconds: float) -> None:
        """Wait for the next check, or less when a call comes or goes."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(link.wake.wait(), timeout=seconds)

    @staticmethod
    def _player_ended(channel_id: int) -> Callable[[Exception | None], None]:
        def after(error: Exception | None) -> None:
            # Runs in the player thread; the keeper notices and plays again.
            if error is not None:
                log.warning("voice channel %s: player stopped: %s", channel_id, error)

        return after

    async def _ready_client(self) -> Any:
        """The logged-in client; discord.py raises an unhelpful RuntimeError before login."""
        is_ready = getattr(self.client, "is_ready", None)
        if is_ready is not None and not is_ready():
            raise ConnectionError("the bot is not logged in to Discord (yet)")
        await self.client.wait_until_ready()
        return self.client

    async def _connect(self, channel_id: int) -> Any:
        await self._ready_client()
        channel = self.client.get_channel(channel_id) or await self.client.fetch_channel(channel_id)
        if not hasattr(channel, "connect"):
            raise ValueError(f"channel {channel_id} is not a voice channel")
        log.info("joining voice channel %s", channel_id)
        return await channel.connect(timeout=CONNECT_TIMEOUT, reconnect=True, self_deaf=True)

    @staticmethod
    async def _disconnect(link: ChannelLink) -> None:
        voice, link.voice = link.voice, None
        if voice is None:
            return
        log.info("leaving voice channel %s", link.channel_id)
        try:
            voice.stop()
            await voice.disconnect(force=True)
        except Exception as exc:
            log.warning("voice channel %s: disconnect failed: %s", link.channel_id, exc)

    # ----------------------------------------------------------------- the text channel

    def notify(self, text: str) -> None:
        """Post to the text channel in the background; a failure is logged, the call goes on."""
        if self.text_channel_id is None:
            return
        task = asyncio.create_task(self._send(text), name="discord notify")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, text: str) -> None:
        try:
            await asyncio.wait_for(self._ready_client(), timeout=CONNECT_TIMEOUT)
            channel = self.client.get_channel(self.text_channel_id) or await self.client.fetch_channel(
                self.text_channel_id
            )
            await channel.send(text, allowed_mentions=discord.AllowedMentions.none())
        except Exception as exc:
            log.warning("could not post to Discord text channel %s: %s", self.text_channel_id, exc)


class DiscordTarget(Target):
    """One call played into one voice channel."""

    def __init__(self, hub: DiscordHub, channel_id: int, call_key: str, caller: str) -> None:
        self.hub = hub
        self.channel_id = channel_id
        self.call_key = call_key
        self.caller = caller
        self._source: ChannelSource | None = None
        self._started = 0.0

    async def open(self) -> None:
        self._started = time.monotonic()
        self._source = self.hub.attach(self.channel_id, self.call_key)
        self.hub.notify(call_started_text(self.caller, self.channel_id))

    def play(self, frame: bytes) -> None:
        if self._source is not None:
            self._source.push(self.call_key, frame)

    def next_read_at(self) -> float | None:
        return self._source.next_read_at() if self._source is not None else None

    async def close(self) -> None:
        if self._source is None:
            return
        self._source = None
        self.hub.detach(self.channel_id, self.call_key)
        self.hub.notify(call_ended_text(self.caller, self.channel_id, time.monotonic() - self._started))
