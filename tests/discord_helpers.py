"""Discord's side of the wire, for tests that cannot reach Discord.

- :func:`discord_packet`: an RTP voice packet exactly as Discord's voice server
  sends it (``aead_xchacha20_poly1305_rtpsize``, through PyNaCl), with or
  without a header extension;
- :class:`DaveGroup`: real DAVE (davey) sessions sharing one MLS group, with
  the test playing the voice server's part: the MLS external sender whose
  signed proposals add members (ECDSA P-256, in plain Python, below);
- :func:`opus_tone`: Opus frames through discord.py's own encoder;
- fakes of discord.py's client, guild, channels and voice client: the boundary
  the hub uses; and of an interaction (member, response, follow-up): what a
  slash command's callback is given.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import struct
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import davey
import discord
import nacl.bindings
import numpy as np

OPUS_PAYLOAD_TYPE = 0x78
CHANNEL = 927310423890473011
BOT = 158049329150427136
SPEAKER = 158533742254751744
OTHER_SPEAKER = 158533742254751999


# ----------------------------------------------------------------------------- RTP as Discord sends it


def discord_packet(
    ssrc: int,
    sequence: int,
    payload: bytes,
    key: bytes,
    nonce: int,
    *,
    timestamp: int | None = None,
    extension: bytes | None = None,
    padding: int = 0,
    payload_type: int = OPUS_PAYLOAD_TYPE,
) -> bytes:
    """One voice packet as Discord's server relays it: ``extension`` is the body of a 0xBEDE extension.

    The 12-byte header and the extension's 4-byte profile and length go in the
    clear as additional data; the extension body, the payload and any padding
    are encrypted; the 4-byte counter nonce follows the tag.
    """
    first = 0x80 | (0x10 if extension is not None else 0) | (0x20 if padding else 0)
    header = struct.pack(
        ">BBHII", first, payload_type, sequence & 0xFFFF, (timestamp or sequence * 960) & 0xFFFFFFFF, ssrc
    )
    plain = payload
    if extension is not None:
        assert len(extension) % 4 == 0
        header += struct.pack(">HH", 0xBEDE, len(extension) // 4)
        plain = extension + payload
    if padding:
        plain += bytes(padding - 1) + bytes([padding])
    counter = struct.pack(">I", nonce)
    sealed = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, header, counter + bytes(20), key)
    return header + sealed + counter


def rtcp_packet(packet_type: int = 200) -> bytes:
    """A receiver/sender report: version 2, packet type 200-204 in the second byte."""
    return struct.pack(">BBHI", 0x80, packet_type, 6, 0x1234) + bytes(24)


# ----------------------------------------------------------------------------- Opus through discord.py


def tone_pcm(frequency: float, frames: int, level: int = 8000, start: int = 0) -> list[bytes]:
    """``frames`` 20 ms frames of a stereo tone, 48 kHz s16le, continuing from frame ``start``."""
    t = (np.arange(frames * 960) + start * 960) / 48000
    mono = (level * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    stereo = np.repeat(mono, 2)
    return [stereo[i * 1920 : (i + 1) * 1920].tobytes() for i in range(frames)]


def opus_tone(frequency: float, frames: int, encoder: Any = None) -> list[bytes]:
    encoder = encoder or discord.opus.Encoder()
    return [encoder.encode(pcm, 960) for pcm in tone_pcm(frequency, frames)]


def peak_hz(frames: list[bytes]) -> float:
    """The strongest frequency of the left channel over some 48 kHz stereo frames."""
    left = np.frombuffer(b"".join(frames), dtype="<i2")[::2].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(left * np.hanning(len(left))))
    return float(np.fft.rfftfreq(len(left), 1 / 48000)[int(np.argmax(spectrum))])


def rms(frame: bytes) -> float:
    return float(np.sqrt(np.mean(np.frombuffer(frame, dtype="<i2").astype(np.float64) ** 2)))


# ----------------------------------------------------------------------------- ECDSA P-256, for the external sender

_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
_A = _P - 3
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)


def _add(p: tuple[int, int] | None, q: tuple[int, int] | None) -> tuple[int, int] | None:
    if p is None:
        return q
    if q is None:
        return p
    if p[0] == q[0]:
        if (p[1] + q[1]) % _P == 0:
            return None
        slope = (3 * p[0] * p[0] + _A) * pow(2 * p[1], -1, _P) % _P
    else:
        slope = (q[1] - p[1]) * pow(q[0] - p[0], -1, _P) % _P
    x = (slope * slope - p[0] - q[0]) % _P
    return x, (slope * (p[0] - x) - p[1]) % _P


def _times(k: int, point: tuple[int, int] | None = _G) -> tuple[int, int]:
    result = None
    while k:
        if k & 1:
            result = _add(result, point)
        point = _add(point, point)
        k >>= 1
    assert result is not None
    return result


def _der_integer(value: int) -> bytes:
    body = value.to_bytes(33, "big").lstrip(b"\0")
    if body[0] & 0x80:
        body = b"\0" + body
    return b"\x02" + bytes([len(body)]) + body


class SigningKey:
    """An ECDSA P-256 / SHA-256 key: what MLS ciphersuite 2 (DAVE protocol 1) signs with."""

    def __init__(self) -> None:
        self._secret = secrets.randbelow(_N - 1) + 1
        x, y = _times(self._secret)
        self.public = b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")

    def sign(self, message: bytes) -> bytes:
        z = int.from_bytes(hashlib.sha256(message).digest(), "big")
        while True:
            k = secrets.randbelow(_N - 1) + 1
            r = _times(k)[0] % _N
            s = pow(k, -1, _N) * (z + r * self._secret) % _N
            if r and s:
                body = _der_integer(r) + _der_integer(s)
                return b"\x30" + bytes([len(body)]) + body


# ----------------------------------------------------------------------------- MLS, as far as DAVE's voice server goes


def _varint(n: int) -> bytes:
    if n < 0x40:
        return bytes([n])
    if n < 0x4000:
        return struct.pack(">H", 0x4000 | n)
    return struct.pack(">I", 0x80000000 | n)


def _opaque(data: bytes) -> bytes:
    return _varint(len(data)) + data


class DaveGroup:
    """Davey sessions in one MLS group, the test standing in for the voice server (the external sender).

    Discord's voice server adds members with Add proposals it signs as the
    group's external sender (opcodes 25 and 27, daveprotocol.com); here the
    test holds that key, so two real sessions can share a group locally.
    """

    def __init__(self, channel_id: int = CHANNEL) -> None:
        self.channel_id = channel_id
        self._key = SigningKey()
        # ExternalSender: signature_key<V>, credential (basic, identity<V>).
        self.external_sender = _opaque(self._key.public) + struct.pack(">H", 1) + _opaque(b"\x00")

    def proposals(self, key_package: bytes, epoch: int = 0) -> bytes:
        """An MLS PublicMessage from the external sender proposing to add ``key_package``, as op 27 carries it."""
        content = (
            _opaque(self.channel_id.to_bytes(8, "big"))  # group id
            + struct.pack(">Q", epoch)
            + b"\x02"  # sender type: external
            + struct.pack(">I", 0)  # its index in the external senders extension
            + _opaque(b"")  # authenticated data
            + b"\x02"  # content type: proposal
            + struct.pack(">H", 1)  # proposal type: add
            + key_package
        )
        to_be_signed = struct.pack(">HH", 1, 1) + content  # mls10, public message; no group context for external
        signature = self._key.sign(_opaque(b"MLS 1.0 FramedContentTBS") + _opaque(to_be_signed))
        message = struct.pack(">HH", 1, 1) + content + _opaque(signature)
        return _opaque(message)

    def session(self, user_id: int) -> davey.DaveSession:
        session = davey.DaveSession(1, user_id, self.channel_id)
        session.set_external_sender(self.external_sender)
        return session

    def join(self, creator: davey.DaveSession, key_package: bytes) -> bytes:
        """``creator`` commits the Add of ``key_package``; returns the Welcome for its owner."""
        result = creator.process_proposals(davey.ProposalsOperationType.append, self.proposals(key_package))
        assert result is not None and result.welcome is not None
        creator.process_commit(result.commit)
        return result.welcome

    def pair(self, first: int = SPEAKER, second: int = BOT) -> tuple[davey.DaveSession, davey.DaveSession]:
        """Two ready sessions of one group: ``first`` made it, ``second`` was welcomed."""
        a, b = self.session(first), self.session(second)
        a.get_serialized_key_package()
        b.process_welcome(self.join(a, b.get_serialized_key_package()))
        assert a.ready and b.ready
        return a, b


# ----------------------------------------------------------------------------- discord.py's boundary, faked


class FakeVoiceClient:
    def __init__(self, channel: FakeVoiceChannel) -> None:
        self.channel = channel
        self.connected = True
        self.source = None
        self.plays = 0
        self.disconnected = False

    def is_connected(self) -> bool:
        return self.connected and not self.disconnected

    def is_playing(self) -> bool:
        return self.source is not None and self.is_connected()

    def play(self, source: Any, *, after: Any = None) -> None:
        assert isinstance(source, discord.AudioSource)
        self.source = source
        self.plays += 1

    def stop(self) -> None:
        self.source = None

    async def disconnect(self, *, force: bool = False) -> None:
        self.disconnected = True
        self.channel.guild.voice_client = None
        self.channel.client.events.append(("leave", self.channel.id))


class FakeGuild:
    def __init__(self, guild_id: int) -> None:
        self.id = guild_id
        self.voice_client: FakeVoiceClient | None = None


class FakeVoiceChannel:
    def __init__(self, client: FakeClient, channel_id: int, guild: FakeGuild) -> None:
        self.client = client
        self.id = channel_id
        self.guild = guild
        self.voice_clients: list[FakeVoiceClient] = []
        self.failures = 0

    async def connect(
        self, *, cls: Callable[..., Any], timeout: float, reconnect: bool, self_deaf: bool = False
    ) -> FakeVoiceClient:
        assert reconnect is True
        assert self_deaf is False  # a deafened bot hears nobody
        if self.failures:
            self.failures -= 1
            raise discord.ClientException("voice handshake failed")
        if self.guild.voice_client is not None:
            raise discord.ClientException("Already connected to a voice channel.")
        assert callable(cls)  # discord.py would build the hub's receiving voice client with it
        self.client.events.append(("join", self.id))
        voice = FakeVoiceClient(self)
        self.guild.voice_client = voice
        self.voice_clients.append(voice)
        return voice


class UnansweredGateway:
    """The bot's gateway websocket as discord.py uses it to join voice: the op 4 it sends, which Discord never
    answers (a channel deleted mid-call, voice servers that do not reply)."""

    def __init__(self) -> None:
        self.voice_states: list[int | None] = []  # the channel each op 4 asks for; None: leave

    async def voice_state(self, guild_id: int, channel_id: int | None, self_mute: bool = False,
                          self_deaf: bool = False) -> None:
        self.voice_states.append(channel_id)


async def real_voice_channel(channel_id: int, guild_id: int, gateway: UnansweredGateway) -> Any:
    """A real discord.VoiceChannel of a real, logged-in-looking discord.Client whose gateway is ``gateway``:
    discord.py's own connect() and its voice client bookkeeping, Discord's side stood in."""
    client = discord.Client(intents=discord.Intents.none())
    await client._async_setup_hook()  # the loop and the ready event, as start() makes them
    client._ready.set()
    state = client._connection
    state._get_websocket = lambda guild_id=None, *, shard_id=None: gateway
    guild = discord.Guild(data={"id": str(guild_id), "name": "guild", "channels": []}, state=state)
    state._add_guild(guild)
    data = {"id": str(channel_id), "name": "voice", "type": 2, "position": 0, "bitrate": 64000, "user_limit": 0}
    channel = discord.VoiceChannel(state=state, guild=guild, data=data)  # type: ignore[arg-type]
    guild._add_channel(channel)
    return client, channel


class FakeTextChannel:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def send(self, content: str, *, allowed_mentions: Any = None) -> None:
        assert allowed_mentions is not None
        self.messages.append(content)


class FakeUser:
    def __init__(self, user_id: int) -> None:
        self.id = user_id


class FakeClient:
    """What the hub uses of discord.Client, and nothing more; the channels it can see are given."""

    def __init__(self, user_id: int, channels: dict[int, int], texts: dict[int, FakeTextChannel] | None = None) -> None:
        """``channels``: the voice channels this bot can see, id -> guild id; ``texts``: text channels by id."""
        self.user = FakeUser(user_id)
        self.ready = True
        self.events: list[tuple[str, int]] = []
        self.guilds: dict[int, FakeGuild] = {}
        for guild_id in channels.values():
            self.guilds.setdefault(guild_id, FakeGuild(guild_id))
        self.voice = {cid: FakeVoiceChannel(self, cid, self.guilds[gid]) for cid, gid in channels.items()}
        self.texts = texts or {}

    def is_ready(self) -> bool:
        return self.ready

    def get_channel(self, channel_id: int) -> Any:
        return self.voice.get(channel_id) or self.texts.get(channel_id)

    async def fetch_channel(self, channel_id: int) -> Any:
        raise discord.NotFound(response=type("R", (), {"status": 404, "reason": "Not Found"})(), message="gone")


# ----------------------------------------------------------------------------- an interaction (slash command)


class FakeRole:
    def __init__(self, role_id: int) -> None:
        self.id = role_id


class FakeMember:
    """A guild member as an interaction carries them: roles, and the voice state the bot's cache holds."""

    def __init__(self, name: str, roles: Sequence[int] = (), voice_channel: int | None = None) -> None:
        self.display_name = name
        self.roles = [FakeRole(role) for role in roles]
        self.voice = SimpleNamespace(channel=SimpleNamespace(id=voice_channel)) if voice_channel else None


class FakeResponse:
    """``interaction.response``: one answer at most, a message or "thinking" (defer)."""

    def __init__(self, interaction: FakeInteraction) -> None:
        self._interaction = interaction
        self.deferred = False

    def is_done(self) -> bool:
        return bool(self._interaction.answers) or self.deferred

    async def send_message(self, content: str, *, ephemeral: bool = False, allowed_mentions: Any = None) -> None:
        assert not self.is_done(), "an interaction is answered once"
        _check_mentions(allowed_mentions)
        self._interaction.answers.append(("message", content, ephemeral))

    async def defer(self, *, ephemeral: bool = False, thinking: bool = False) -> None:
        assert not self.is_done(), "an interaction is answered once"
        self.deferred = True
        self._interaction.answers.append(("thinking", "", ephemeral))


class FakeFollowup:
    """``interaction.followup``: messages after the answer."""

    def __init__(self, interaction: FakeInteraction) -> None:
        self._interaction = interaction

    async def send(self, content: str, *, ephemeral: bool = False, allowed_mentions: Any = None) -> None:
        assert self._interaction.answers, "a follow-up comes after the answer"
        _check_mentions(allowed_mentions)
        self._interaction.answers.append(("followup", content, ephemeral))


class FakeInteraction:
    """What a slash command's callback is given, at discord.py's boundary: who asked, where, and how to answer."""

    def __init__(self, user: Any, guild_id: int | None = 42) -> None:
        self.user = user
        self.guild = FakeGuild(guild_id) if guild_id is not None else None
        self.answers: list[tuple[str, str, bool]] = []  # (kind, text, ephemeral)
        self.response = FakeResponse(self)
        self.followup = FakeFollowup(self)

    @property
    def texts(self) -> list[str]:
        return [text for kind, text, _ in self.answers if kind != "thinking"]


def _check_mentions(allowed: Any) -> None:
    # Numbers and names typed by members go into the answers: they must never ping anyone.
    assert isinstance(allowed, discord.AllowedMentions)
    assert not (allowed.everyone or allowed.users or allowed.roles)


async def until(condition: Callable[[], Any], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)
