"""``/call number:...`` and ``/hangup``: calls placed from Discord into the member's voice channel.

discord.py's ``app_commands`` on the pool's first bot. Only members holding a
role of ``call_roles`` may use them, and only from a voice channel: the call
goes into (and ``/hangup`` ends the calls of) the voice channel they are in.
The work is :class:`shetphone.bridge.placing.CallPlacer`'s; this module checks
who asks, and answers each command in plain words: ringing, refused and why,
ended, or Twilio's own message when Twilio refuses.

Checks that need nothing from the network are answered at once, seen only by
the member; anything that waits for Discord or Twilio first tells Discord
"thinking" (an interaction must be answered within 3 seconds), then follows up.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord import app_commands

from ....phone_numbers import display
from ....twilio_rest import TwilioRestError
from ... import placing
from .target import safe_text

log = logging.getLogger(__name__)

NOT_IN_A_SERVER = "Calls are placed from a server's channels, not from direct messages."
NOBODY_MAY = "Nobody may place calls from Discord here: no role is allowed to (call_roles in the bridge's settings)."
NOT_ALLOWED = "You may not place or end calls: that needs one of the roles allowed to (call_roles)."
NOT_IN_VOICE = "Join a voice channel first: the call goes into the voice channel you are in."
ALL_BOTS_BUSY = "every bot of the bridge is already in another voice channel of this server"


class CallCommands:
    """What ``/call`` and ``/hangup`` do, for members holding one of ``roles``."""

    def __init__(
        self,
        placer: placing.CallPlacer,
        roles: frozenset[int],
        all_busy: Callable[[int], Awaitable[bool]] | None = None,
    ) -> None:
        """``all_busy(channel_id)``: whether every bot is busy in that channel's server (the hub's)."""
        self.placer = placer
        self.roles = roles
        self.all_busy = all_busy

    # ----------------------------------------------------------------- on a client

    def install(self, client: discord.Client) -> app_commands.CommandTree:
        """Add the commands to ``client``'s command tree, registered with Discord when it logs in."""
        tree = app_commands.CommandTree(client)

        @tree.command(name="call", description="Call a phone number into your voice channel")
        @app_commands.describe(number="the phone number, e.g. +44 1595 123456, or 01595 123456 in the UK")
        @app_commands.guild_only()
        async def call(interaction: discord.Interaction, number: str) -> None:
            await self.call(interaction, number)

        @tree.command(name="hangup", description="End the calls of your voice channel")
        @app_commands.guild_only()
        async def hangup(interaction: discord.Interaction) -> None:
            await self.hangup(interaction)

        async def setup_hook() -> None:
            # After login, before the gateway: the commands are known to Discord by the time members see the bot.
            try:
                synced = await tree.sync()
            except discord.DiscordException as exc:  # Discord refused, or the app has no ID yet
                log.warning("Discord did not take the slash commands /call and /hangup: %s", exc)
                return
            log.info("slash commands registered with Discord: %s", ", ".join(f"/{c.name}" for c in synced))

        client.setup_hook = setup_hook  # type: ignore[method-assign]  # discord.py awaits it after login
        return tree

    # ----------------------------------------------------------------- the commands

    async def call(self, interaction: Any, number: str) -> None:
        """``/call number:...``: ring ``number`` from ``call_from`` into the member's voice channel."""
        channel, refusal = self._voice_channel_of(interaction)
        if channel is None:
            return await _answer_now(interaction, refusal)
        shown = safe_text(number.strip()) or "nothing"
        try:
            self.placer.check(number)
        except placing.CallRefused as exc:
            return await _answer_now(interaction, f"Not calling {shown}: {exc.reason}")
        await interaction.response.defer(thinking=True)
        if self.all_busy is not None and await self.all_busy(channel.id):
            return await _follow_up(interaction, f"Not calling {shown}: {ALL_BOTS_BUSY}.")
        who = getattr(interaction.user, "display_name", None) or str(interaction.user)
        try:
            placed = await self.placer.place(number, f"discord:{channel.id}", who)
        except placing.CallRefused as exc:
            return await _follow_up(interaction, f"Not calling {shown}: {exc.reason}")
        except TwilioRestError as exc:
            return await _follow_up(interaction, f"Twilio did not place the call to {shown}: {exc.message}")
        await _follow_up(
            interaction,
            f"📞 Calling {display(placed.to)} from {display(self.placer.config.call_from)} into <#{channel.id}>: "
            "ringing. They are put through to the channel when they answer; /hangup ends the call.",
        )

    async def hangup(self, interaction: Any) -> None:
        """``/hangup``: end every call of the member's voice channel, ringing or in progress."""
        channel, refusal = self._voice_channel_of(interaction)
        if channel is None:
            return await _answer_now(interaction, refusal)
        target = f"discord:{channel.id}"
        if not self.placer.calls_of(target):
            return await _answer_now(interaction, f"There is no call in <#{channel.id}> to end.")
        await interaction.response.defer(thinking=True)
        ended = await self.placer.hang_up(target)
        if not ended:
            return await _follow_up(interaction, f"The calls in <#{channel.id}> had ended already.")
        await _follow_up(interaction, "\n".join(_ended_text(e) for e in ended))

    def _voice_channel_of(self, interaction: Any) -> tuple[Any, str]:
        """The member's voice channel, or None and why they may not use the commands."""
        member = interaction.user
        if interaction.guild is None or not hasattr(member, "roles"):
            return None, NOT_IN_A_SERVER
        if not self.roles:
            return None, NOBODY_MAY
        if not {role.id for role in member.roles} & self.roles:
            return None, NOT_ALLOWED
        voice = getattr(member, "voice", None)
        channel = getattr(voice, "channel", None)
        if channel is None:
            return None, NOT_IN_VOICE
        return channel, ""


def _ended_text(ended: placing.Ended) -> str:
    party = safe_text(ended.party)
    if ended.error is not None:
        return f"Could not end the call with {party}: Twilio said: {ended.error}"
    if ended.was_over:
        return f"The call to {party} was over already ({ended.status})."
    return f"📴 Ended the call with {party}."


async def _answer_now(interaction: Any, text: str) -> None:
    """An answer that needs no waiting, seen only by the member who asked."""
    await interaction.response.send_message(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())


async def _follow_up(interaction: Any, text: str) -> None:
    """The answer after "thinking": it takes the place of Discord's "thinking..." message."""
    await interaction.followup.send(text, allowed_mentions=discord.AllowedMentions.none())
