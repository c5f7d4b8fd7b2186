"""The bridge's Discord bots (``DISCORD_BOT_TOKENS``), and which of them takes a call.

Discord gives a bot one voice connection per guild (server), so two calls
into two channels of one guild need two bots. A call into a channel goes to
the bot already there (the hub sees to that: calls of one channel share its
link), else to a bot with no voice connection in that guild; when every bot
that can see the channel is in another channel of its guild, the call is
busy. A bot that is still logging in might yet be free, so "busy" waits for
every bot to be logged in or refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import discord

log = logging.getLogger(__name__)

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0


@dataclass(eq=False)
class Bot:
    """One bot: its discord.py client, and the voice channel it serves in each guild."""

    client: Any
    name: str  # "bot 1", for the log (never the token)
    new_client: Callable[[], Any] | None = None
    links: dict[int, Any] = field(default_factory=dict)  # guild id -> the hub's ChannelLink there
    refused: bool = False  # Discord refused the token: this bot never serves
    runner: asyncio.Task[None] | None = None

    def logged_in(self) -> bool:
        is_ready = getattr(self.client, "is_ready", None)
        return bool(is_ready()) if is_ready is not None else True

    @property
    def user_id(self) -> int | None:
        return getattr(getattr(self.client, "user", None), "id", None)

    def free_in(self, guild: Any) -> bool:
        """No voice connection in ``guild``: neither one of ours nor one discord.py still holds."""
        return guild.id not in self.links and getattr(guild, "voice_client", None) is None

    async def find_channel(self, channel_id: int) -> Any:
        return self.client.get_channel(channel_id) or await self.client.fetch_channel(channel_id)

    async def run(self, token: str) -> None:
        """Log in, and again with back-off whenever the connection to Discord fails."""
        backoff = BACKOFF_FIRST
        while True:
            try:
                await self.client.start(token)
                return
            except discord.LoginFailure as exc:
                self.refused = True
                log.error("Discord refused the token of %s (%s); it will serve no call", self.name, exc)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s: disconnected from Discord (%s); retrying in %.1f s", self.name, exc, backoff)
                if self.new_client is not None:
                    # A discord.Client cannot start again once closed, and a failed
                    # start leaves its HTTP session open: close it, make a new one.
                    await self.client.close()
                    self.client = self.new_client()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)


@dataclass(frozen=True)
class Choice:
    """The pool's answer for a channel: a bot and the channel as it sees it, busy, or not yet."""

    bot: Bot | None = None
    channel: Any = None
    busy: bool = False
    problem: str | None = None  # why there is no answer yet, for the log


class BotPool:
    """Every bot of the bridge, in the order their tokens were given."""

    def __init__(self, clients: Sequence[Any], new_client: Callable[[], Any] | None = None) -> None:
        if not clients:
            raise ValueError("a pool needs at least one bot")
        self.bots = [Bot(client, f"bot {n}", new_client) for n, client in enumerate(clients, 1)]

    def start(self, tokens: Sequence[str]) -> None:
        """Log every bot in, in the background; the bridge serves phones meanwhile."""
        for bot, token in zip(self.bots, tokens, strict=True):
            bot.runner = asyncio.create_task(bot.run(token), name=f"discord {bot.name}")

    async def close(self) -> None:
        for bot in self.bots:
            if bot.runner is None:
                continue
            try:
                await asyncio.wait_for(bot.client.close(), timeout=5)
            except Exception as exc:
                log.warning("%s: closing the Discord client failed: %s", bot.name, exc)
            bot.runner.cancel()

    def is_ours(self, user_id: int) -> bool:
        """Whether a member is one of our bots: a bot never hears a bot of the bridge."""
        return any(bot.user_id == user_id for bot in self.bots)

    def logged_in(self) -> list[Bot]:
        return [bot for bot in self.bots if not bot.refused and bot.logged_in()]

    async def choose(self, channel_id: int, link: Any) -> Choice:
        """Which bot should join ``channel_id`` for ``link`` (none of its calls has a bot yet).

        The bot chosen is reserved for ``link`` in its guild before this returns,
        so two channels of one guild chosen for at once never get the same bot.
        """
        seen, unsettled, problem = await self._survey(channel_id)
        # No await from here on: the choice and the reservation are one step.
        for bot, channel in seen:
            if bot.free_in(channel.guild):
                bot.links[channel.guild.id] = link
                return Choice(bot, channel)
        if seen and not unsettled:
            return Choice(busy=True)
        return Choice(problem=problem or f"no bot can see channel {channel_id}")

    async def all_busy(self, channel_id: int) -> bool:
        """Whether a new call into ``channel_id`` would find every bot busy (no reservation: a hint)."""
        seen, unsettled, _ = await self._survey(channel_id)
        return bool(seen) and not unsettled and not any(bot.free_in(channel.guild) for bot, channel in seen)

    async def _survey(self, channel_id: int) -> tuple[list[tuple[Bot, Any]], bool, str | None]:
        """The bots that can see the voice channel (with it as each sees it), whether another might, and why not."""
        seen: list[tuple[Bot, Any]] = []
        unsettled = False  # a bot that might yet be free: logging in, or Discord did not answer
        problem = None
        for bot in self.bots:
            if bot.refused:
                continue
            if not bot.logged_in():
                unsettled = True
                problem = problem or "no bot is logged in to Discord (yet)"
                continue
            try:
                channel = await bot.find_channel(channel_id)
            except (discord.NotFound, discord.Forbidden):
                continue  # not in that guild, or not allowed to see the channel
            except Exception as exc:
                unsettled = True
                problem = f"{bot.name} cannot look channel {channel_id} up: {exc}"
                continue
            if not hasattr(channel, "connect") or getattr(channel, "guild", None) is None:
                problem = f"channel {channel_id} is not a voice channel"
                continue
            seen.append((bot, channel))
        return seen, unsettled, problem
