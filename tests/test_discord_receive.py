"""Discord to the phone: packets as Discord's voice server sends them, through the receiver to each voice.

The packets are built as the server builds them (PyNaCl's XChaCha20-Poly1305,
the RTP header and extension profile as additional data), the Opus frames by
discord.py's own encoder, and the DAVE frames by a real davey session in one
MLS group with the bot's (see discord_helpers.DaveGroup).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import threading
import time
from types import SimpleNamespace

import davey
import discord
import numpy as np
import pytest
from bridge_helpers import ThreadedBridge, open_stream, stream_sid, wait_for
from discord_helpers import (
    BOT,
    OTHER_SPEAKER,
    SPEAKER,
    DaveGroup,
    FakeClient,
    discord_packet,
    opus_tone,
    peak_hz,
    rms,
    rtcp_packet,
    tone_pcm,
)

from shetphone.bridge.audio import FRAME_BYTES, SILENCE_FRAME, ulaw_decode
from shetphone.bridge.server import make_targets
from shetphone.bridge.targets.discord import DiscordHub
from shetphone.bridge.targets.discord.receive import (
    MAX_CONCEALED,
    OPUS_SILENCE,
    PACKET_BURST,
    PACKETS_PER_SECOND,
    TRANSPORT_MODE,
    BadPacket,
    VoiceReceiver,
    open_packet,
    rtp_kind,
)
from shetphone.bridge.targets.discord.voices import (
    VOICE_IDLE_TICKS,
    VOICE_MAX_FRAMES,
    VOICE_PAUSE_TICKS,
    VOICE_PREFILL_FRAMES,
    Voices,
)

KEY = bytes(range(32))
BOT_SSRC = 1
SSRC = 0x1A2B3C4D
OTHER_SSRC = 0x22222222


def connection(**changes) -> SimpleNamespace:
    """What the receiver reads of discord.py's VoiceConnectionState, as a plain namespace."""
    values = {
        "secret_key": list(KEY),
        "mode": TRANSPORT_MODE,
        "ssrc": BOT_SSRC,
        "dave_session": None,
        "dave_protocol_version": 0,
    }
    return SimpleNamespace(**{**values, **changes})


class Clock:
    """Time for the receiver's packet budget, moved by the test (no timed assertions)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Listener:
    """A receiver with what it delivered, per SSRC."""

    def __init__(self, conn: SimpleNamespace | None = None, **kwargs) -> None:
        self.frames: dict[int, list[bytes]] = {}
        self.forgotten: list[int] = []
        self.clock = Clock()
        self.receiver = VoiceReceiver(self._deliver, self.forgotten.append, clock=self.clock, **kwargs)
        self.receiver.bind(conn or connection())
        self.nonce = 0

    def _deliver(self, ssrc: int, frame: bytes) -> None:
        assert len(frame) == FRAME_BYTES
        self.frames.setdefault(ssrc, []).append(frame)

    def send(self, ssrc: int, sequence: int, payload: bytes, **kwargs) -> None:
        """One packet, paced like a client: 20 ms of the receiver's clock each."""
        self.nonce += 1
        self.clock.now += 0.02
        self.receiver.on_datagram(discord_packet(ssrc, sequence, payload, KEY, self.nonce, **kwargs))


# ----------------------------------------------------------------------------- the transport


@pytest.mark.parametrize("extension", [None, b"\x10\xff\x00\x00", bytes(range(8))])
def test_a_packet_as_discords_server_sends_it_opens_to_its_payload(extension):
    payload = b"opus frame \x00\xff" * 5
    datagram = discord_packet(SSRC, 513, payload, KEY, 77, timestamp=96000, extension=extension)
    packet = open_packet(datagram, KEY)
    assert (packet.ssrc, packet.sequence, packet.timestamp, packet.payload) == (SSRC, 513, 96000, payload)


def test_rtp_padding_is_removed():
    datagram = discord_packet(SSRC, 1, b"opus", KEY, 1, padding=6)
    assert open_packet(datagram, KEY).payload == b"opus"


@pytest.mark.parametrize("where", [0, 5, 13, 20, -3])  # the header, the extension header, the body, the nonce
def test_a_packet_changed_anywhere_does_not_authenticate(where):
    datagram = bytearray(discord_packet(SSRC, 1, b"x" * 40, KEY, 9, extension=bytes(4)))
    datagram[where] ^= 0x01
    with pytest.raises(BadPacket):
        open_packet(bytes(datagram), KEY)


def test_another_key_or_a_stub_of_a_packet_is_refused():
    datagram = discord_packet(SSRC, 1, b"x" * 40, KEY, 9)
    with pytest.raises(BadPacket):
        open_packet(datagram, bytes(32))
    with pytest.raises(BadPacket, match="too short"):
        open_packet(datagram[:20], KEY)


def test_what_is_not_an_opus_rtp_packet_is_told_apart():
    assert [rtp_kind(rtcp_packet(pt)) for pt in range(200, 205)] == ["rtcp"] * 5
    ip_discovery = b"\x00\x02\x00\x46" + bytes(70)
    assert rtp_kind(ip_discovery) == "not rtp"
    assert rtp_kind(discord_packet(SSRC, 1, b"v", KEY, 1, payload_type=101)) == "other"  # video
    assert rtp_kind(discord_packet(SSRC, 1, b"a", KEY, 1)) == "opus"


# ----------------------------------------------------------------------------- Opus per speaker


def test_a_speakers_opus_arrives_as_their_voice_in_20ms_frames():
    listener = Listener()
    for n, frame in enumerate(opus_tone(440, 25)):
        listener.send(SSRC, 100 + n, frame, extension=b"\x10\x80\x00\x00")
    frames = listener.frames[SSRC]
    assert len(frames) == 25
    assert abs(peak_hz(frames[5:]) - 440) < 5
    assert rms(frames[-1]) > 2000


def test_rtcp_our_own_ssrc_and_other_payload_types_are_never_heard():
    listener = Listener()
    for pt in range(200, 205):
        listener.receiver.on_datagram(rtcp_packet(pt))
    tone = opus_tone(440, 3)
    listener.send(BOT_SSRC, 1, tone[0])
    listener.send(SSRC, 1, tone[1], payload_type=101)
    stats = listener.receiver.stats
    assert listener.frames == {}
    assert (stats.rtcp, stats.own, stats.not_opus) == (5, 1, 1)


def test_before_the_connection_has_its_key_nothing_is_decoded():
    listener = Listener(connection(secret_key=discord.utils.MISSING))
    listener.send(SSRC, 1, opus_tone(440, 1)[0])
    assert listener.frames == {}
    assert listener.receiver.stats.not_ready == 1


def test_the_opus_silence_frame_is_not_decoded():
    listener = Listener()
    tone = opus_tone(440, 3)
    for n in range(3):
        listener.send(SSRC, n, tone[n])
    for n in range(3, 8):  # what a client sends as it stops talking
        listener.send(SSRC, n, OPUS_SILENCE)
    assert len(listener.frames[SSRC]) == 3
    assert listener.receiver.stats.silence == 5


def test_a_short_gap_is_concealed_and_late_or_repeated_packets_are_dropped():
    listener = Listener()
    tone = opus_tone(440, 20)
    for n in (0, 1, 2, 4, 5, 1, 5, 6, 6 + MAX_CONCEALED + 2, 6 + MAX_CONCEALED + 3):
        listener.send(SSRC, n, tone[min(n, 19)])
    stats = listener.receiver.stats
    assert stats.concealed == 1  # packet 3; the long gap after 6 is a new spurt, not made up
    assert stats.late == 2  # 1 again, and 5 twice
    assert len(listener.frames[SSRC]) == 8 + 1


def test_the_sequence_wraps_round_without_a_gap():
    listener = Listener()
    tone = opus_tone(440, 4)
    for n, sequence in enumerate((65534, 65535, 0, 1)):
        listener.send(SSRC, sequence, tone[n])
    assert len(listener.frames[SSRC]) == 4
    assert listener.receiver.stats.late == listener.receiver.stats.concealed == 0


def test_each_speaker_has_a_decoder_of_their_own():
    listener = Listener()
    low, high = opus_tone(300, 20), opus_tone(1200, 20)
    for n in range(20):  # interleaved: a shared decoder would smear the two
        listener.send(SSRC, n, low[n])
        listener.send(OTHER_SSRC, 5000 + n, high[n])
    assert abs(peak_hz(listener.frames[SSRC][5:]) - 300) < 5
    assert abs(peak_hz(listener.frames[OTHER_SSRC][5:]) - 1200) < 5


# ----------------------------------------------------------------------------- floods and garbage


def test_a_flooding_speaker_is_held_to_their_rate_and_the_others_are_not_touched():
    listener = Listener()
    flood = opus_tone(300, 1)[0]
    calm = opus_tone(1200, 50)
    sequence = 0
    for n in range(50):  # one second: the calm speaker sends 50, the flood 1,000
        listener.send(OTHER_SSRC, n, calm[n])
        for _ in range(20):
            sequence += 1
            listener.receiver.on_datagram(discord_packet(SSRC, sequence, flood, KEY, 10_000 + sequence))
    stats = listener.receiver.stats
    assert len(listener.frames[OTHER_SSRC]) == 50
    assert len(listener.frames[SSRC]) <= PACKET_BURST + PACKETS_PER_SECOND + 1
    assert stats.flooded >= 1000 - PACKET_BURST - PACKETS_PER_SECOND - 1


def test_garbage_is_counted_never_raised_and_never_stops_a_speaker():
    listener = Listener()
    rng = random.Random(7)
    tone = opus_tone(440, 40)
    for n in range(40):
        listener.send(SSRC, n, tone[n])
        junk = [
            os.urandom(rng.randrange(0, 300)),  # anything at all
            b"\x80\x78" + os.urandom(rng.randrange(10, 200)),  # an RTP header, then noise
            discord_packet(OTHER_SSRC, n, tone[n], bytes(32), n),  # another key
            discord_packet(OTHER_SSRC, n, os.urandom(60), KEY, n),  # authentic, but not Opus
        ]
        for datagram in junk:
            listener.receiver.on_datagram(datagram)
    assert len(listener.frames[SSRC]) == 40
    assert abs(peak_hz(listener.frames[SSRC][5:]) - 440) < 5
    assert listener.receiver.stats.transport_failures >= 40


def test_a_gateway_message_out_of_shape_is_ignored():
    receiver = Listener().receiver
    for message in ({"op": 5}, {"op": 5, "d": {"ssrc": "x", "user_id": 1}}, {"op": 13, "d": None}, {"d": 3}):
        receiver.on_voice_ws(message)
    receiver.on_voice_ws({"op": 5, "d": {"ssrc": SSRC, "user_id": str(SPEAKER), "speaking": 1}})
    assert receiver._users == {SSRC: SPEAKER}


def test_a_member_who_leaves_is_forgotten():
    listener = Listener()
    listener.receiver.on_voice_ws({"op": 5, "d": {"ssrc": SSRC, "user_id": str(SPEAKER), "speaking": 1}})
    listener.send(SSRC, 1, opus_tone(440, 1)[0])
    listener.receiver.on_voice_ws({"op": 13, "d": {"user_id": str(SPEAKER)}})
    assert listener.forgotten == [SSRC]
    assert listener.receiver._users == {}


def test_our_own_bots_are_never_heard():
    listener = Listener(ignore_user=lambda user: user == OTHER_SPEAKER)
    listener.receiver.on_voice_ws({"op": 5, "d": {"ssrc": SSRC, "user_id": str(OTHER_SPEAKER), "speaking": 1}})
    listener.send(SSRC, 1, opus_tone(440, 1)[0])
    assert listener.frames == {}


# ----------------------------------------------------------------------------- DAVE


def dave_listener(**changes) -> tuple[Listener, davey.DaveSession, davey.DaveSession]:
    speaker, bot = DaveGroup().pair(SPEAKER, BOT)
    listener = Listener(connection(**{"dave_session": bot, "dave_protocol_version": 1, **changes}))
    return listener, speaker, bot


def test_dave_frames_from_a_member_of_the_group_are_decrypted_then_decoded():
    listener, speaker, bot = dave_listener()
    listener.receiver.on_voice_ws({"op": 5, "d": {"ssrc": SSRC, "user_id": str(SPEAKER), "speaking": 1}})
    for n, frame in enumerate(opus_tone(660, 25)):
        sealed = speaker.encrypt_opus(frame)
        assert sealed != frame and sealed.endswith(b"\xfa\xfa")
        listener.send(SSRC, n, sealed, extension=b"\x10\x80\x00\x00")
    assert len(listener.frames[SSRC]) == 25
    assert abs(peak_hz(listener.frames[SSRC][5:]) - 660) < 5
    assert listener.receiver.stats.dave_decrypted == 25
    assert bot.get_decryption_stats(SPEAKER).successes == 25


def test_a_speaker_heard_before_speaking_is_found_by_whose_key_decrypts():
    listener, speaker, _ = dave_listener()
    for n, frame in enumerate(opus_tone(660, 10)):
        listener.send(SSRC, n, speaker.encrypt_opus(frame))
    assert len(listener.frames[SSRC]) == 10
    assert listener.receiver._users == {SSRC: SPEAKER}


def test_unencrypted_frames_pass_only_while_davey_allows_passthrough():
    listener, _, bot = dave_listener()
    listener.receiver.on_voice_ws({"op": 5, "d": {"ssrc": SSRC, "user_id": str(SPEAKER), "speaking": 1}})
    plain = opus_tone(440, 10)
    for n in range(5):
        listener.send(SSRC, n, plain[n])
    assert SSRC not in listener.frames  # DAVE is on: a clear frame is refused, never played as noise
    assert listener.receiver.stats.dave_failures == 5
    bot.set_passthrough_mode(True, 10)  # what discord.py does during a protocol transition
    for n in range(5, 10):
        listener.send(SSRC, n, plain[n])
    assert len(listener.frames[SSRC]) == 5
    assert listener.receiver.stats.dave_passthrough == 5


def test_after_a_downgrade_to_protocol_0_plain_opus_is_decoded_as_is():
    listener, _, _ = dave_listener(dave_protocol_version=0)
    listener.receiver.on_voice_ws({"op": 5, "d": {"ssrc": SSRC, "user_id": str(SPEAKER), "speaking": 1}})
    for n, frame in enumerate(opus_tone(440, 5)):
        listener.send(SSRC, n, frame)
    assert len(listener.frames[SSRC]) == 5


def test_dave_frames_without_a_ready_session_are_dropped_not_decoded_as_noise():
    group = DaveGroup()
    speaker, _ = group.pair(SPEAKER, BOT)
    listener = Listener(connection(dave_session=group.session(BOT), dave_protocol_version=1))  # not welcomed yet
    for n, frame in enumerate(opus_tone(440, 5)):
        listener.send(SSRC, n, speaker.encrypt_opus(frame))
    assert listener.frames == {}
    assert listener.receiver.stats.dave_failures == 5
    assert listener.receiver.stats.opus_failures == 0


def test_a_frame_under_another_members_key_is_not_decrypted():
    group = DaveGroup()
    speaker, bot = group.pair(SPEAKER, BOT)
    stranger, _ = DaveGroup().pair(OTHER_SPEAKER, BOT)  # another group: its key is nobody's here
    listener = Listener(connection(dave_session=bot, dave_protocol_version=1))
    listener.receiver.on_voice_ws({"op": 5, "d": {"ssrc": SSRC, "user_id": str(SPEAKER), "speaking": 1}})
    tone = opus_tone(440, 6)
    for n in range(3):
        listener.send(SSRC, n, stranger.encrypt_opus(tone[n]))
    for n in range(3, 6):
        listener.send(SSRC, n, speaker.encrypt_opus(tone[n]))
    assert len(listener.frames[SSRC]) == 3
    assert listener.receiver.stats.dave_failures == 3


# ----------------------------------------------------------------------------- what a call hears


def test_speakers_are_mixed_and_one_falling_silent_never_stalls_the_other():
    voices = Voices()
    low, high = tone_pcm(300, 100), tone_pcm(1200, 100)
    mixed = []
    for n in range(100):
        voices.push("low", low[n])
        if n < 40:  # the high voice stops after 0.8 s and sends nothing more
            voices.push("high", high[n])
        mixed.append(voices.mix())
    assert all(len(frame) == FRAME_BYTES for frame in mixed)
    both = np.frombuffer(b"".join(mixed[10:38]), dtype="<i2")[::2].astype(float)
    spectrum = np.abs(np.fft.rfft(both))
    bins = np.fft.rfftfreq(len(both), 1 / 48000)
    assert spectrum[np.argmin(abs(bins - 300))] > 100 * np.median(spectrum)
    assert spectrum[np.argmin(abs(bins - 1200))] > 100 * np.median(spectrum)
    assert abs(peak_hz(mixed[50:]) - 300) < 5  # the low voice goes on alone, without a gap
    assert min(rms(frame) for frame in mixed[50:]) > 4000


def test_nobody_speaking_is_silence_and_a_long_silent_voice_is_forgotten():
    voices = Voices()
    assert voices.mix() is SILENCE_FRAME
    for frame in tone_pcm(300, 3):
        voices.push("member", frame)
    for _ in range(VOICE_IDLE_TICKS + 5):
        assert len(voices.mix()) == FRAME_BYTES
    assert len(voices) == 0


def test_a_flooding_voice_only_overflows_its_own_buffer():
    voices = Voices()
    calm = tone_pcm(1200, 60)
    for n in range(60):
        voices.push("calm", calm[n])
        for frame in tone_pcm(300, 30, start=n * 30):
            voices.push("flood", frame)
        voices.mix()
    underruns, dropped, _ = voices.stats()["calm"]
    assert (underruns, dropped) == (0, 0)
    assert voices.stats()["flood"][1] >= 60 * 30 - 60 * VOICE_MAX_FRAMES


def level(value: int) -> bytes:
    return np.full(FRAME_BYTES // 2, value, "<i2").tobytes()


def test_a_talk_spurt_plays_at_once_and_after_a_late_packet_waits_for_the_guard():
    voices = Voices()
    out = []
    for value in (100, 200):
        voices.push("member", level(value))
        out.append(voices.mix())
    out.append(voices.mix())  # a packet late: the voice runs dry
    for value in (300, 400, 500):
        voices.push("member", level(value))
        out.append(voices.mix())
    assert out == [level(100), level(200), SILENCE_FRAME, SILENCE_FRAME, level(300), level(400)]
    assert VOICE_PREFILL_FRAMES == 2  # the guard after a gap, above


def test_after_a_pause_the_next_talk_spurt_starts_at_once_again():
    voices = Voices()
    voices.push("member", level(100))
    voices.mix()
    for _ in range(VOICE_PAUSE_TICKS + 2):  # the member stopped talking
        assert voices.mix() is SILENCE_FRAME
    voices.push("member", level(300))
    assert voices.mix() == level(300)


# ----------------------------------------------------------------------------- end to end


@pytest.mark.timeout(30)
def test_a_dave_speaker_in_the_channel_is_heard_by_the_caller_through_the_bridge():
    """Packets as Discord sends them in, Twilio media messages with the call's streamSid out."""
    channel, guild = 123456789012345678, 42
    hub = DiscordHub([FakeClient(BOT, {channel: guild})], None, keeper_interval=0.01)
    speaker, bot = DaveGroup().pair(SPEAKER, BOT)
    packets = [discord_packet(SSRC, n, speaker.encrypt_opus(f), KEY, n + 1) for n, f in enumerate(opus_tone(660, 50))]

    def feed(receiver: VoiceReceiver) -> None:  # discord.py's socket reader, one packet every 20 ms
        for packet in packets:
            receiver.on_datagram(packet)
            time.sleep(0.02)

    async def call(bridge: ThreadedBridge) -> list[dict]:
        stream = await open_stream(bridge.port, 7)
        await stream.start(f"discord:{channel}")
        await wait_for(lambda: bridge.call(lambda: channel in hub.channels and hub.channels[channel].voice is not None))
        receiver = bridge.call(lambda: hub.channels[channel].receiver)
        receiver.bind(connection(dave_session=bot, dave_protocol_version=1))
        receiver.on_voice_ws({"op": 5, "d": {"ssrc": SSRC, "user_id": str(SPEAKER), "speaking": 1}})
        feeder = threading.Thread(target=feed, args=(receiver,))
        feeder.start()
        messages = []
        while feeder.is_alive() or len(messages) < 50:
            messages.append(json.loads(await asyncio.wait_for(stream.ws.recv(), 10)))
        feeder.join()
        await stream.stop()
        async for _ in stream.ws:
            pass
        return messages

    with ThreadedBridge(make_target=make_targets(hub)) as bridge:
        messages = asyncio.run(call(bridge))
    media = [m for m in messages if m["event"] == "media"]
    assert {m["streamSid"] for m in media} == {stream_sid(7)}
    heard = np.concatenate([ulaw_decode(base64.b64decode(m["media"]["payload"])) for m in media]).astype(float)
    loud = heard[np.abs(heard) > 0]
    assert len(loud) > 8000 * 0.5  # most of the second the member spoke
    spectrum = np.abs(np.fft.rfft(heard * np.hanning(len(heard))))
    assert abs(float(np.fft.rfftfreq(len(heard), 1 / 8000)[int(np.argmax(spectrum))]) - 660) < 10
