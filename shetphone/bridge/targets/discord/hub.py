"""The voice channels the bots are in on behalf of calls, and the text channel they report to.

Calls into one voice channel share its :class:`ChannelLink`: one bot, one
voice connection, one :class:`ChannelSource` the bot plays and one
:class:`VoiceReceiver` for what it hears. A link's keeper task picks the bot
(:meth:`BotPool.choose`), joins, keeps the connection up (reconnecting when it
drops) and leaves when the link's last call ends.

The discord.py boundary is small on purpose, so tests can stand a fake in:
``client.is_ready()``, ``client.get_channel(id)``, ``client.fetch_channel(id)``,
``client.user.id``, a channel's ``guild`` (``id``, ``voice_client``),
``channel.connect(cls=..., ...)`` and ``channel.send(...)``, and on a voice
client ``play``, ``is_playing``, ``is_connected``, ``stop`` and ``disconnect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import discord

from .bots import BACKOFF_FIRST, BACKOFF_MAX, Bot, BotPool, Choice
from .receive import VoiceReceiver
from .send import ChannelSource
from .voice import ReceivingVoiceClient, voice_internals_problems

if TYPE_CHECKING:
    from .target import DiscordTarget

log = logging.getLogger(__name__)

KEEPER_INTERVAL = 1.0  # seconds between checks that a channel's connection is up
RECONNECT_GRACE = 10.0  # seconds discord.py may spend reconnecting on its own before we start over
CONNECT_TIMEOUT = 30.0


@dataclass(eq=False)
class ChannelLink:
    """A bot's presence in one voice channel, for as long as calls use it."""

    channel_id: int
    source: ChannelSource = field(default_factory=ChannelSource)
    calls: dict[str, DiscordTarget] = field(default_factory=dict)
    receiver: VoiceReceiver | None = None
    bot: Bot | None = None
    channel: Any = None  # the voice channel as the bot sees it
    voice: Any = None  # discord.VoiceClient once connected
    keeper: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    connects: int = 0
    # What each call hears, for the receiver's thread: replaced whole, never changed in place.
    listeners: tuple[Any, ...] = ()

    def deliver(self, ssrc: int, frame: bytes) -> None:
        """A member's 20 ms frame (socket reader thread): every call of the channel hears it."""
        for voices in self.listeners:
            voices.push(("speaker", ssrc), frame)

    def forget(self, ssrc: int) -> None:
        for voices in self.listeners:
            voices.forget(("speaker", ssrc))

    @property
    def guild_id(self) -> int | None:
        return self.channel.guild.id if self.channel is not None else None


class DiscordHub:
    """The pool of bots, and the voice channels they are in on behalf of calls."""

    def __init__(
        self,
        clients: Sequence[Any],
        text_channel_id: int | None = None,
        *,
        keeper_interval: float = KEEPER_INTERVAL,
        reconnect_grace: float = RECONNECT_GRACE,
        new_client: Callable[[], Any] | None = None,
    ) -> None:
        self.pool = BotPool(clients, new_client)
        self.text_channel_id = text_channel_id
        self.channels: dict[int, ChannelLink] = {}
        self._keeper_interval = keeper_interval
        self._reconnect_grace = reconnect_grace
        self._tasks: set[asyncio.Task[Any]] = set()

    @classmethod
    def with_bots(
        cls, count: int, text_channel_id: int | None, *, commands: Callable[[discord.Client], None] | None = None
    ) -> DiscordHub:
        """``count`` bots; ``commands`` installs the slash commands on the first one's every client."""

        # Voice needs the guilds and voice_states intents, nothing privileged; so do the
        # commands (a member's voice channel is in the voice states).
        def new_client() -> discord.Client:
            intents = discord.Intents.none()
            intents.guilds = True
            intents.voice_states = True
            return discord.Client(intents=intents)

        # Each bot is an application of its own: one bot registers the commands, or
        # members would see each command once per bot.
        def new_first_client() -> discord.Client:
            client = new_client()
            if commands is not None:
                commands(client)
            return client

        clients = [new_first_client()] + [new_client() for _ in range(count - 1)]
        hub = cls(clients, text_channel_id, new_client=new_client)
        hub.pool.bots[0].new_client = new_first_client  # a client made again after a failure has them too
        return hub

    # ----------------------------------------------------------------- the bots

    def start(self, tokens: Sequence[str]) -> None:
        """Log the bots in, in the background; the bridge serves phones meanwhile."""
        for problem in voice_internals_problems():
            log.warning("Discord voice receive may not work: %s", problem)
        self.pool.start(tokens)

    async def close(self) -> None:
        """Leave every channel and log the bots out."""
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
        await self.pool.close()

    # ----------------------------------------------------------------- calls

    async def all_busy(self, channel_id: int) -> bool:
        """Whether a call into ``channel_id`` now would hear that every bot is busy (a hint, for /call)."""
        return channel_id not in self.channels and await self.pool.all_busy(channel_id)

    def attach(self, channel_id: int, call: DiscordTarget) -> ChannelLink:
        """A call starts in ``channel_id``: it goes with the channel's bot, or a bot is found."""
        link = self.channels.get(channel_id)
        if link is None:
            link = self.channels[channel_id] = ChannelLink(channel_id)
            link.receiver = VoiceReceiver(link.deliver, link.forget, ignore_user=self.pool.is_ours)
        link.calls[call.call_key] = call
        link.source.add_call(call.call_key, call.take, call.voices)
        link.listeners = tuple(c.voices for c in link.calls.values())
        if link.bot is not None:
            call.put_through()
        if link.keeper is None or link.keeper.done():
            link.keeper = asyncio.create_task(self._keep(link), name=f"voice {channel_id}")
        link.wake.set()
        return link

    def detach(self, channel_id: int, call_key: str) -> None:
        """A call in ``channel_id`` ended; the bot leaves with the channel's last call."""
        link = self.channels.get(channel_id)
        if link is None or link.calls.pop(call_key, None) is None:
            return
        link.source.remove_call(call_key)
        link.listeners = tuple(c.voices for c in link.calls.values())
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
                    self._release(link)
                    return
        finally:
            await self._disconnect(link)
            self._release(link)

    async def _keep_while_in_use(self, link: ChannelLink) -> None:
        backoff = BACKOFF_FIRST
        down_since: float | None = None
        while link.calls:
            # Cleared before the checks, so a call that comes or goes during them
            # cuts the next wait short.
            link.wake.clear()
            try:
                if link.bot is None:
                    choice = await asyncio.wait_for(self.pool.choose(link.channel_id, link), timeout=CONNECT_TIMEOUT)
                    if choice.busy:
                        self._busy(link)
                        return
                    if choice.bot is None:
                        raise ConnectionError(choice.problem)
                    self._put_through(link, choice)
                if link.voice is None:
                    link.voice = await asyncio.wait_for(self._connect(link), timeout=CONNECT_TIMEOUT)
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
                log.warning("voice channel %s: cannot connect (%s); retrying in %.0f s", link.channel_id, exc, backoff)
                await self._disconnect(link)
                await self._sleep(link, backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            await self._sleep(link, self._keeper_interval)

    def _put_through(self, link: ChannelLink, choice: Choice) -> None:
        assert choice.bot is not None
        link.bot, link.channel = choice.bot, choice.channel  # the pool has reserved the bot for link
        log.info("voice channel %s: %s takes its calls", link.channel_id, choice.bot.name)
        for call in list(link.calls.values()):
            call.put_through()

    def _busy(self, link: ChannelLink) -> None:
        """Every bot that could join is in another channel of this guild: the link's calls are told so."""
        log.warning(
            "voice channel %s: every bot is busy in its server; %d call(s) refused", link.channel_id, len(link.calls)
        )
        calls = list(link.calls.values())
        for call in calls:
            self.detach(link.channel_id, call.call_key)
        for call in calls:
            call.busy()

    @staticmethod
    def _release(link: ChannelLink) -> None:
        bot, guild_id = link.bot, link.guild_id
        if bot is not None and guild_id is not None and bot.links.get(guild_id) is link:
            del bot.links[guild_id]

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

    async def _connect(self, link: ChannelLink) -> Any:
        receiver = link.receiver
        assert receiver is not None and link.bot is not None

        def voice_client(client: discord.Client, channel: Any) -> ReceivingVoiceClient:
            return ReceivingVoiceClient(client, channel, receiver)

        log.info("%s: joining voice channel %s", link.bot.name, link.channel_id)
        # Not deafened: Discord sends a deafened member nobody's voice.
        return await link.channel.connect(cls=voice_client, timeout=CONNECT_TIMEOUT, reconnect=True, self_deaf=False)

    @staticmethod
    async def _disconnect(link: ChannelLink) -> None:
        voice, link.voice = link.voice, None
        if voice is None and link.channel is not None:
            # discord.py registers a join's voice client before the handshake and keeps it when the
            # join is cancelled (our timeout): every later join would be "Already connected". The
            # bot is reserved for this link in the guild, so what it holds there is this link's.
            voice = getattr(link.channel.guild, "voice_client", None)
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
        assert self.text_channel_id is not None
        bots = self.pool.logged_in()
        if not bots:
            log.warning("could not post to Discord text channel %s: no bot is logged in", self.text_channel_id)
            return
        failure: Exception | None = None
        for bot in bots:  # the first bot that can see the channel posts
            try:
                channel = await asyncio.wait_for(bot.find_channel(self.text_channel_id), timeout=CONNECT_TIMEOUT)
                await channel.send(text, allowed_mentions=discord.AllowedMentions.none())
                return
            except Exception as exc:
                failure = exc
        log.warning("could not post to Discord text channel %s: %s", self.text_channel_id, failure)
