"""The receiving voice client against discord.py's own voice code: its gateway handlers and socket reader.

Only Discord's servers are stood in for: the voice websocket (a stand-in for
aiohttp's socket, fed the messages Discord sends) and the voice server's UDP
end (a socket on 127.0.0.1). discord.py's DiscordVoiceWebSocket handles the
messages, makes and keeps its davey session, and its reader thread hands the
datagrams over, exactly as against Discord.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from types import SimpleNamespace

import discord
import pytest
from discord.gateway import DiscordVoiceWebSocket
from discord.voice_state import VoiceConnectionState
from discord_helpers import BOT, CHANNEL, SPEAKER, DaveGroup, discord_packet, opus_tone, peak_hz, until

from shetphone.bridge.targets.discord import voice as voice_module
from shetphone.bridge.targets.discord.receive import TRANSPORT_MODE, VoiceReceiver
from shetphone.bridge.targets.discord.voice import (
    BUILT_AGAINST,
    ReceivingVoiceClient,
    installed_versions,
    voice_internals_problems,
)

KEY = bytes(range(100, 132))
GUILD = 423456789012345678
BOT_SSRC = 7
SSRC = 0x5EED


class FakeAiohttpSocket:
    """What DiscordVoiceWebSocket sends through aiohttp, kept."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.binary: list[bytes] = []

    async def send_str(self, data: str) -> None:
        self.text.append(data)

    async def send_bytes(self, data: bytes) -> None:
        self.binary.append(data)

    def last_sent(self, opcode: int) -> bytes:
        return [message[1:] for message in self.binary if message[0] == opcode][-1]


def voice_client(receiver: VoiceReceiver) -> ReceivingVoiceClient:
    client = discord.Client(intents=discord.Intents.none())
    client._connection.user = SimpleNamespace(id=BOT)  # logged in, as far as the voice client asks
    channel = SimpleNamespace(id=CHANNEL, guild=SimpleNamespace(id=GUILD))
    return ReceivingVoiceClient(client, channel, receiver)


def test_the_discord_py_and_davey_it_was_built_against_are_the_ones_installed():
    assert installed_versions() == BUILT_AGAINST, "re-check receive.py and voice.py against the new versions"
    assert voice_internals_problems() == []


def test_a_moved_internal_is_reported(monkeypatch):
    monkeypatch.delattr(VoiceConnectionState, "add_socket_listener")
    monkeypatch.setattr(voice_module, "installed_versions", lambda: {"discord.py": "2.8.0", "davey": "0.1.7"})
    problems = voice_internals_problems(SimpleNamespace(secret_key=None))
    assert "VoiceConnectionState.add_socket_listener is gone" in problems
    assert "VoiceConnectionState.dave_session is gone" in problems
    assert any("discord.py is 2.8.0" in p for p in problems)


def test_the_voice_client_builds_its_connection_with_the_receivers_hook_and_only_the_mode_it_opens():
    async def scenario():
        receiver = VoiceReceiver(lambda ssrc, frame: None)
        voice = voice_client(receiver)
        state = voice._connection
        try:
            assert isinstance(state, VoiceConnectionState)
            assert state.hook == voice._on_voice_gateway
            assert receiver._connection is state
            assert voice_internals_problems(state) == []
            assert state.supported_modes == (TRANSPORT_MODE,)
        finally:
            state._socket_reader.stop()

    asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_a_dave_speaker_is_heard_through_discord_pys_gateway_and_socket_reader():
    async def scenario():
        delivered: list[tuple[int, bytes]] = []
        forgotten: list[int] = []
        receiver = VoiceReceiver(lambda ssrc, frame: delivered.append((ssrc, frame)), forgotten.append)
        voice = voice_client(receiver)
        state = voice._connection
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the voice server's end
        server.bind(("127.0.0.1", 0))
        try:
            state._create_socket()  # as on VOICE_SERVER_UPDATE
            state.socket.connect(server.getsockname())  # as on READY
            server.connect(state.socket.getsockname())
            state.ssrc = BOT_SSRC
            aiohttp_socket = FakeAiohttpSocket()
            ws = DiscordVoiceWebSocket(aiohttp_socket, asyncio.get_running_loop(), hook=state.hook)
            ws._connection = state
            state.ws = ws

            # SESSION_DESCRIPTION: the key, and DAVE: discord.py makes its session and sends a key package.
            description = {"mode": TRANSPORT_MODE, "secret_key": list(KEY), "dave_protocol_version": 1}
            await ws.received_message({"op": 4, "d": description})
            await ws.received_message({"op": 4, "d": description})  # a resumed session describes itself again
            assert state._socket_reader._callbacks.count(receiver.on_datagram) == 1
            # Each description re-made the session: the last key package is the one in force.
            key_package = aiohttp_socket.last_sent(DiscordVoiceWebSocket.MLS_KEY_PACKAGE)

            # The voice server's MLS: its external sender, then the welcome into the speaker's group.
            group = DaveGroup(CHANNEL)
            await ws.received_binary_message(
                struct.pack(">HB", 1, DiscordVoiceWebSocket.MLS_EXTERNAL_SENDER) + group.external_sender
            )
            speaker = group.session(SPEAKER)
            speaker.get_serialized_key_package()
            welcome = group.join(speaker, key_package)
            await ws.received_binary_message(struct.pack(">HBH", 2, DiscordVoiceWebSocket.MLS_WELCOME, 0) + welcome)
            assert state.dave_session.ready
            sent_ops = [json.loads(m)["op"] for m in aiohttp_socket.text]
            assert DiscordVoiceWebSocket.SPEAKING in sent_ops  # discord.py's own "not speaking", with our SSRC
            assert DiscordVoiceWebSocket.MLS_INVALID_COMMIT_WELCOME not in sent_ops

            await ws.received_message({"op": 5, "d": {"user_id": str(SPEAKER), "ssrc": SSRC, "speaking": 1}})
            for n, frame in enumerate(opus_tone(550, 25)):
                sealed = speaker.encrypt_opus(frame)
                server.send(discord_packet(SSRC, n, sealed, KEY, n + 1, extension=b"\x10\x80\x00\x00"))
            await until(lambda: len(delivered) == 25)
            await ws.received_message({"op": 13, "d": {"user_id": str(SPEAKER)}})
            return delivered, forgotten, receiver.stats
        finally:
            state._socket_reader.stop()
            server.close()
            if state.socket:
                state.socket.close()

    delivered, forgotten, stats = asyncio.run(scenario())
    assert {ssrc for ssrc, _ in delivered} == {SSRC}
    assert abs(peak_hz([frame for _, frame in delivered][5:]) - 550) < 5
    assert stats.dave_decrypted == 25 and stats.transport_failures == 0
    assert forgotten == [SSRC]
