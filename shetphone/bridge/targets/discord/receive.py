"""Discord's voices received: UDP datagrams in, 20 ms 48 kHz stereo frames per speaker out.

discord.py 2.7 has no receive API, but it keeps what receiving needs: every
datagram of the voice socket goes to the listeners registered with
``VoiceConnectionState.add_socket_listener`` (on its socket reader thread),
and the connection holds the transport key (``secret_key``), the ``mode`` and
the DAVE session (``dave_session``, a ``davey.DaveSession`` discord.py keeps
in step with the voice gateway). :class:`VoiceReceiver` is such a listener.
Per datagram:

1. not RTP (the IP discovery reply), RTCP (packet types 200-204), not Opus
   (payload type 120: video and the rest), or our own SSRC: dropped;
2. the transport encryption removed (``aead_xchacha20_poly1305_rtpsize``:
   the RTP header, with the extension's first 4 bytes when the extension bit
   is set, is the additional data; the 4-byte nonce at the end, zero-padded
   to 24); a packet that does not authenticate is dropped;
3. the decrypted extension body, and RTP padding, stripped;
4. per SSRC: at most :data:`PACKETS_PER_SECOND` (a flood costs its sender
   its own audio, never anybody else's), in sequence (late packets dropped,
   a short gap concealed by the Opus decoder);
5. the Opus silence frame (what a client sends as it stops talking) is not
   decoded: the speaker's buffer runs dry and plays silence;
6. DAVE, once the session is ready: ``dave_session.decrypt(user_id, ...)``,
   with the user from the voice gateway's SPEAKING (op 5) or, for a speaker
   heard before any SPEAKING, found by trying the MLS group's members once;
   davey passes unencrypted frames through while it allows passthrough
   (protocol transitions), and a frame it cannot decrypt is dropped;
7. decoded by the speaker's own Opus decoder (48 kHz stereo) and cut into
   exact 20 ms frames for ``deliver(ssrc, frame)``.

Nothing here raises into discord.py's reader: every failure is counted in
:attr:`VoiceReceiver.stats` (and logged the first time, then rarely).
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import davey
import nacl.bindings
import nacl.exceptions
from discord import opus

from ...audio import FRAME_BYTES, Framer

log = logging.getLogger(__name__)

TRANSPORT_MODE = "aead_xchacha20_poly1305_rtpsize"
RTP_VERSION = 2
OPUS_PAYLOAD_TYPE = 120
RTCP_PACKET_TYPES = range(200, 205)
RTP_HEADER_BYTES = 12
EXTENSION_HEADER_BYTES = 4  # profile (0xBEDE) and length in 32-bit words: sent in the clear
NONCE_BYTES = 4  # sent; zero-padded to XChaCha20's 24
TAG_BYTES = 16
OPUS_SILENCE = b"\xf8\xff\xfe"
DAVE_MAGIC = b"\xfa\xfa"  # the last two bytes of every DAVE-encrypted frame

# The voice gateway's opcodes this listens to (discord.py's DiscordVoiceWebSocket names them too).
OP_SESSION_DESCRIPTION = 4
OP_SPEAKING = 5
OP_CLIENT_DISCONNECT = 13

# A client sends 50 packets a second; half as much again absorbs a burst after a
# network stall. Beyond that a speaker's packets are dropped before any Opus or
# DAVE work is spent on them.
PACKETS_PER_SECOND = 75
PACKET_BURST = 25
# A gap of up to 3 packets (60 ms) is a loss the decoder conceals; a longer one is
# a new talk spurt or a lost second, and concealing it would only add latency.
MAX_CONCEALED = 3
# Speakers tracked per voice connection; when full, one unheard for this long makes room.
MAX_SPEAKERS = 64
SPEAKER_STALE_SECONDS = 5.0
# Members tried, at most, to find whose key decrypts a speaker heard before SPEAKING.
MAX_MEMBERS_TRIED = 25


class BadPacket(ValueError):
    """A datagram that is not an authentic Discord RTP packet."""


@dataclass(frozen=True)
class RtpPacket:
    """One voice packet with the transport encryption removed."""

    ssrc: int
    sequence: int
    timestamp: int
    payload: bytes  # the Opus frame, still DAVE-encrypted if the sender uses DAVE


def rtp_kind(datagram: bytes) -> str:
    """What a datagram is: ``"opus"``, ``"rtcp"``, ``"other"`` (video, ...) or ``"not rtp"``."""
    if len(datagram) < RTP_HEADER_BYTES or datagram[0] >> 6 != RTP_VERSION:
        return "not rtp"
    if datagram[1] in RTCP_PACKET_TYPES:
        return "rtcp"
    if datagram[1] & 0x7F != OPUS_PAYLOAD_TYPE:
        return "other"
    return "opus"


def open_packet(datagram: bytes, key: bytes) -> RtpPacket:
    """Remove ``aead_xchacha20_poly1305_rtpsize`` from one RTP datagram; BadPacket if it does not authenticate."""
    first = datagram[0]
    header_bytes = RTP_HEADER_BYTES + 4 * (first & 0x0F)  # CSRCs, if any, are header too
    has_extension = bool(first & 0x10)
    clear_bytes = header_bytes + (EXTENSION_HEADER_BYTES if has_extension else 0)
    if len(datagram) < clear_bytes + TAG_BYTES + NONCE_BYTES:
        raise BadPacket(f"{len(datagram)} bytes is too short for an encrypted RTP packet")
    nonce = datagram[-NONCE_BYTES:] + bytes(24 - NONCE_BYTES)
    try:
        plain = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            datagram[clear_bytes:-NONCE_BYTES], datagram[:clear_bytes], nonce, key
        )
    except nacl.exceptions.CryptoError:
        raise BadPacket("transport decryption failed") from None
    if has_extension:
        # The extension's body (its length is in the clear header) is encrypted with the payload.
        (words,) = struct.unpack_from(">H", datagram, header_bytes + 2)
        if 4 * words > len(plain):
            raise BadPacket("header extension longer than the packet")
        plain = plain[4 * words :]
    if first & 0x20:  # RTP padding: its length is the last byte
        padding = plain[-1] if plain else 0
        if not 0 < padding <= len(plain):
            raise BadPacket("bad RTP padding")
        plain = plain[:-padding]
    sequence, timestamp, ssrc = struct.unpack_from(">HII", datagram, 2)
    return RtpPacket(ssrc, sequence, timestamp, plain)


@dataclass
class ReceiveStats:
    """Counts of what happened to the datagrams of one voice connection."""

    datagrams: int = 0
    frames: int = 0  # 20 ms frames delivered
    rtcp: int = 0
    not_opus: int = 0  # not RTP, or RTP of another payload type
    own: int = 0  # our own SSRC, or one of our bots
    not_ready: int = 0  # before the connection had a transport key
    transport_failures: int = 0
    flooded: int = 0  # over a speaker's packet rate
    too_many_speakers: int = 0
    late: int = 0  # behind the speaker's sequence
    silence: int = 0
    concealed: int = 0  # frames made up by the decoder for lost packets
    dave_decrypted: int = 0
    dave_passthrough: int = 0
    dave_failures: int = 0
    dave_unidentified: int = 0  # DAVE frames of a speaker nobody's key decrypts (yet)
    opus_failures: int = 0
    errors: int = 0  # anything else: a bug, counted rather than raised into discord.py

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _Speaker:
    """One SSRC: whose it is, its decoder, its place in the sequence, its packet budget."""

    __slots__ = ("decoder", "framer", "heard_at", "last_sequence", "refilled_at", "ssrc", "tokens", "user_id")

    def __init__(self, ssrc: int, user_id: int | None, now: float) -> None:
        self.ssrc = ssrc
        self.user_id = user_id
        self.decoder: Any = None  # made at the first frame to decode
        self.framer = Framer(FRAME_BYTES)
        self.last_sequence: int | None = None
        self.tokens = float(PACKET_BURST)
        self.refilled_at = now
        self.heard_at = now

    def allow(self, now: float) -> bool:
        """Token bucket: PACKETS_PER_SECOND sustained, PACKET_BURST at once."""
        self.tokens = min(float(PACKET_BURST), self.tokens + (now - self.refilled_at) * PACKETS_PER_SECOND)
        self.refilled_at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def missing_before(self, sequence: int) -> int | None:
        """Packets lost just before ``sequence``; None if it is a duplicate or comes late."""
        if self.last_sequence is None:
            self.last_sequence = sequence
            return 0
        ahead = (sequence - self.last_sequence) & 0xFFFF
        if ahead == 0 or ahead >= 0x8000:
            return None
        self.last_sequence = sequence
        return ahead - 1


class VoiceReceiver:
    """The listener on one voice connection's socket: every speaker's audio, decoded, to ``deliver``.

    ``deliver(ssrc, frame)`` and ``forget(ssrc)`` are called on the socket
    reader's thread (``forget`` also on the event loop, from the gateway hook).
    ``ignore_user(user_id)`` says which members are never heard (our bots).
    """

    def __init__(
        self,
        deliver: Callable[[int, bytes], None],
        forget: Callable[[int], None] | None = None,
        *,
        ignore_user: Callable[[int], bool] | None = None,
        new_decoder: Callable[[], Any] = opus.Decoder,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._deliver = deliver
        self._forget = forget or (lambda ssrc: None)
        self._ignore_user = ignore_user or (lambda user_id: False)
        self._new_decoder = new_decoder
        self._clock = clock
        self._lock = threading.Lock()
        self._connection: Any = None
        self._key_source: Any = None
        self._key = b""
        self._users: dict[int, int] = {}  # ssrc -> user id, from SPEAKING or found by DAVE
        self._speakers: dict[int, _Speaker] = {}
        self.stats = ReceiveStats()
        self._logged: set[str] = set()

    def bind(self, connection: Any) -> None:
        """The connection to read the key, mode, own SSRC and DAVE session from (discord.py's VoiceConnectionState)."""
        self._connection = connection

    # ----------------------------------------------------------------- the voice gateway

    def on_voice_ws(self, message: Mapping[str, Any]) -> None:
        """A voice gateway message (discord.py's hook): who speaks on which SSRC, who left."""
        try:
            op, data = message.get("op"), message.get("d") or {}
            if op == OP_SPEAKING:
                self._learn(int(data["ssrc"]), int(data["user_id"]))
            elif op == OP_CLIENT_DISCONNECT:
                self._left(int(data["user_id"]))
            elif op == OP_SESSION_DESCRIPTION:
                with self._lock:
                    # A new voice session (a reconnect): sequences start afresh.
                    for speaker in self._speakers.values():
                        speaker.last_sequence = None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self._note("gateway", f"voice gateway message {message.get('op')!r} not understood: {exc!r}")

    def _learn(self, ssrc: int, user_id: int) -> None:
        with self._lock:
            self._users[ssrc] = user_id
            speaker = self._speakers.get(ssrc)
            if speaker is not None:
                speaker.user_id = user_id

    def _left(self, user_id: int) -> None:
        with self._lock:
            gone = [ssrc for ssrc, user in self._users.items() if user == user_id]
            for ssrc in gone:
                del self._users[ssrc]
                self._speakers.pop(ssrc, None)
        for ssrc in gone:
            self._forget(ssrc)

    # ----------------------------------------------------------------- the socket

    def on_datagram(self, datagram: bytes) -> None:
        """One UDP datagram (discord.py's socket reader thread). Never raises."""
        try:
            with self._lock:
                frames = self._receive(datagram)
        except Exception as exc:  # a bug must not kill discord.py's reader, nor flood its log
            self.stats.errors += 1
            self._note("error", f"voice packet failed: {exc!r}")
            return
        for ssrc, frame in frames:
            self._deliver(ssrc, frame)

    def _receive(self, datagram: bytes) -> list[tuple[int, bytes]]:
        stats = self.stats
        stats.datagrams += 1
        kind = rtp_kind(datagram)
        if kind != "opus":
            if kind == "rtcp":
                stats.rtcp += 1
            else:
                stats.not_opus += 1
            return []
        connection = self._connection
        key = self._transport_key(connection)
        if key is None:
            stats.not_ready += 1
            return []
        (ssrc,) = struct.unpack_from(">I", datagram, 8)
        if ssrc == getattr(connection, "ssrc", None):
            stats.own += 1
            return []
        try:
            packet = open_packet(datagram, key)
        except BadPacket as exc:
            stats.transport_failures += 1
            self._note("transport", f"voice packet of SSRC {ssrc} dropped: {exc}")
            return []
        now = self._clock()
        speaker = self._speaker(ssrc, now)
        if speaker is None:
            stats.too_many_speakers += 1
            return []
        if speaker.user_id is not None and self._ignore_user(speaker.user_id):
            stats.own += 1
            return []
        if not speaker.allow(now):
            stats.flooded += 1
            self._note("flood", f"SSRC {ssrc} sends more than {PACKETS_PER_SECOND} packets a second; dropping")
            return []
        speaker.heard_at = now
        missing = speaker.missing_before(packet.sequence)
        if missing is None:
            stats.late += 1
            return []
        if packet.payload == OPUS_SILENCE:
            stats.silence += 1
            return []
        opus_frame = self._end_to_end(speaker, packet.payload, connection)
        if opus_frame is None:
            return []
        return [(ssrc, frame) for frame in self._decode(speaker, opus_frame, missing)]

    def _transport_key(self, connection: Any) -> bytes | None:
        source = getattr(connection, "secret_key", None)
        if not source or getattr(connection, "mode", None) != TRANSPORT_MODE:
            return None
        if source is not self._key_source:  # a new voice session has a new key
            self._key, self._key_source = bytes(source), source
        return self._key

    def _speaker(self, ssrc: int, now: float) -> _Speaker | None:
        speaker = self._speakers.get(ssrc)
        if speaker is not None:
            return speaker
        if len(self._speakers) >= MAX_SPEAKERS:
            stalest = min(self._speakers.values(), key=lambda s: s.heard_at)
            if now - stalest.heard_at < SPEAKER_STALE_SECONDS:
                return None
            del self._speakers[stalest.ssrc]
            self._forget(stalest.ssrc)
        speaker = self._speakers[ssrc] = _Speaker(ssrc, self._users.get(ssrc), now)
        return speaker

    # ----------------------------------------------------------------- DAVE

    def _end_to_end(self, speaker: _Speaker, frame: bytes, connection: Any) -> bytes | None:
        """The Opus frame under DAVE, or None when it cannot be had."""
        stats = self.stats
        session = getattr(connection, "dave_session", None)
        encrypted = frame.endswith(DAVE_MAGIC)
        if session is None or not session.ready:
            if encrypted:  # end-to-end encrypted, and we have no key (yet): never noise for the caller
                stats.dave_failures += 1
                return None
            return frame
        version = getattr(connection, "dave_protocol_version", 0)
        user_id = speaker.user_id
        if user_id is None:
            if not encrypted:
                return frame if version == 0 or self._anyone_may_pass(session) else self._unidentified()
            plain = self._identify(speaker, frame, session)
            if plain is None:
                return self._unidentified()
            stats.dave_decrypted += 1
            return plain
        if version == 0 and not session.can_passthrough(user_id):
            return frame  # downgraded, and the transition is over: plain Opus
        try:
            plain = session.decrypt(user_id, davey.MediaType.audio, frame)
        except ValueError as exc:
            stats.dave_failures += 1
            self._note("dave", f"DAVE frame of user {user_id} not decrypted: {exc}")
            return None
        if encrypted:
            stats.dave_decrypted += 1
        else:
            stats.dave_passthrough += 1
        return plain

    def _unidentified(self) -> None:
        self.stats.dave_unidentified += 1
        return None

    def _anyone_may_pass(self, session: Any) -> bool:
        return any(session.can_passthrough(int(user)) for user in session.get_user_ids()[:MAX_MEMBERS_TRIED])

    def _identify(self, speaker: _Speaker, frame: bytes, session: Any) -> bytes | None:
        """A speaker heard before SPEAKING: the member whose key decrypts the frame is the speaker."""
        known = set(self._users.values())
        own = getattr(session, "user_id", None)
        for member in session.get_user_ids()[:MAX_MEMBERS_TRIED]:
            user_id = int(member)
            if user_id == own or user_id in known:
                continue
            try:
                plain = session.decrypt(user_id, davey.MediaType.audio, frame)
            except ValueError:
                continue
            self._users[speaker.ssrc] = speaker.user_id = user_id
            if self._ignore_user(user_id):
                return None
            return plain
        return None

    # ----------------------------------------------------------------- Opus

    def _decode(self, speaker: _Speaker, frame: bytes, missing: int) -> list[bytes]:
        if speaker.decoder is None:
            speaker.decoder = self._new_decoder()
        pcm = []
        try:
            if 0 < missing <= MAX_CONCEALED:
                for _ in range(missing):
                    pcm.append(speaker.decoder.decode(None, fec=False))
                self.stats.concealed += missing
            pcm.append(speaker.decoder.decode(frame, fec=False))
        except opus.OpusError as exc:
            self.stats.opus_failures += 1
            self._note("opus", f"Opus frame of SSRC {speaker.ssrc} not decoded: {exc}")
        frames = [frame for chunk in pcm for frame in speaker.framer.push(chunk)]
        self.stats.frames += len(frames)
        return frames

    # ----------------------------------------------------------------- logging

    def _note(self, kind: str, text: str) -> None:
        """Log the first failure of each kind; the counts in ``stats`` tell the rest."""
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning("%s (further ones are counted, not logged)", text)
