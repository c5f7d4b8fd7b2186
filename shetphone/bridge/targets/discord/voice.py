"""discord.py's voice client, receiving: the one seam to discord.py's voice internals, pinned.

discord.py 2.7 sends voice (DAVE through davey) but has no receive API. What
receiving needs it keeps, partly behind underscores: a ``VoiceClient``
subclass may build its ``VoiceConnectionState`` with a ``hook`` that sees every
voice gateway message; the state hands every UDP datagram to
``add_socket_listener`` callbacks and holds ``secret_key``, ``mode``, ``ssrc``,
``dave_session`` and ``dave_protocol_version``. :data:`BUILT_AGAINST` names
the versions this was built and tested against, and :func:`voice_internals_problems`
says what has moved in the installed ones (a test fails on it, and the bridge
logs it at start).
"""

from __future__ import annotations

import inspect
from importlib import metadata
from typing import Any

import discord
from discord.gateway import DiscordVoiceWebSocket
from discord.voice_state import VoiceConnectionState

from .receive import OP_CLIENT_DISCONNECT, OP_SESSION_DESCRIPTION, OP_SPEAKING, TRANSPORT_MODE, VoiceReceiver

BUILT_AGAINST = {"discord.py": "2.7.1", "davey": "0.1.7"}
# What receive.py reads on a VoiceConnectionState (set in its __init__).
CONNECTION_ATTRIBUTES = ("secret_key", "mode", "ssrc", "dave_session", "dave_protocol_version", "hook")


class ReceivingVoiceClient(discord.VoiceClient):
    """A ``discord.VoiceClient`` whose connection's datagrams and gateway messages go to a :class:`VoiceReceiver`."""

    # The one mode receive.py opens (Discord requires it of every client since November 2024).
    supported_modes = (TRANSPORT_MODE,)  # type: ignore[assignment]

    def __init__(self, client: discord.Client, channel: Any, receiver: VoiceReceiver) -> None:
        self.receiver = receiver
        self._listening = False
        super().__init__(client, channel)  # calls create_connection_state()
        receiver.bind(self._connection)

    def create_connection_state(self) -> VoiceConnectionState:
        return VoiceConnectionState(self, hook=self._on_voice_gateway)

    async def _on_voice_gateway(self, ws: DiscordVoiceWebSocket, message: dict[str, Any]) -> None:
        # Called after discord.py has handled the message itself.
        self.receiver.on_voice_ws(message)
        if message.get("op") == OP_SESSION_DESCRIPTION and not self._listening:
            # The socket exists by now; a listener registered before it would set
            # discord.py's reader selecting on no socket, in a loop.
            self._connection.add_socket_listener(self.receiver.on_datagram)
            self._listening = True


def installed_versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in BUILT_AGAINST}


def voice_internals_problems(connection: Any = None) -> list[str]:
    """What no longer matches the discord.py internals the receiver reads; empty when all is in place.

    ``connection``: a live VoiceConnectionState to check the attributes of
    (they are set in its ``__init__``, so a class alone cannot show them).
    """
    problems = [
        f"{name} is {version}, not the {BUILT_AGAINST[name]} the Discord receiver was built against"
        for name, version in installed_versions().items()
        if version != BUILT_AGAINST[name]
    ]
    if "hook" not in inspect.signature(VoiceConnectionState.__init__).parameters:
        problems.append("VoiceConnectionState() takes no hook any more")
    for method in ("add_socket_listener", "remove_socket_listener"):
        if not callable(getattr(VoiceConnectionState, method, None)):
            problems.append(f"VoiceConnectionState.{method} is gone")
    if not callable(getattr(discord.VoiceClient, "create_connection_state", None)):
        problems.append("VoiceClient.create_connection_state is gone")
    opcodes = {
        "SESSION_DESCRIPTION": OP_SESSION_DESCRIPTION,
        "SPEAKING": OP_SPEAKING,
        "CLIENT_DISCONNECT": OP_CLIENT_DISCONNECT,
    }
    for name, value in opcodes.items():
        if getattr(DiscordVoiceWebSocket, name, None) != value:
            problems.append(f"DiscordVoiceWebSocket.{name} is not {value}")
    if TRANSPORT_MODE not in discord.VoiceClient.supported_modes:
        problems.append(f"discord.py no longer offers {TRANSPORT_MODE}")
    if connection is not None:
        problems += [
            f"VoiceConnectionState.{name} is gone" for name in CONNECTION_ATTRIBUTES if not hasattr(connection, name)
        ]
    return problems
