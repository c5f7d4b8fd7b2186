"""The bridge's targets without a network: echo, the WAV recorder, and Discord up to discord.py's boundary."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import wave

import discord
import numpy as np
from discord_helpers import FakeClient, FakeTextChannel, UnansweredGateway, real_voice_channel, until

from shetphone.bridge.audio import FRAME_BYTES, SILENCE_FRAME, ulaw_decode, ulaw_encode
from shetphone.bridge.protocol import Start
from shetphone.bridge.session import BACKLOG_TICKS_BEFORE_TRIM, Outbox, Session
from shetphone.bridge.targets.discord import (
    ChannelSource,
    DiscordHub,
    DiscordTarget,
    call_busy_text,
    call_ended_text,
    call_started_text,
)
from shetphone.bridge.targets.discord.voices import Voices
from shetphone.bridge.targets.echo import EchoTarget
from shetphone.bridge.targets.recorder import WavRecorder

VOICE = 123456789012345678
OTHER_VOICE = 223456789012345678
TEXT = 323456789012345679
GUILD = 423456789012345678
OTHER_GUILD = 523456789012345678
BOT_USER = 623456789012345678


def frame_of(value: int) -> bytes:
    return np.full(FRAME_BYTES // 2, value, dtype="<i2").tobytes()


# ----------------------------------------------------------------------------- echo and recorder


def test_echo_returns_each_frame_once():
    echo = EchoTarget()
    assert echo.returned() is None
    echo.play(frame_of(1))
    assert echo.returned() == frame_of(1)
    assert echo.returned() is None


def test_recorder_finalises_a_48k_stereo_wav_and_only_then_names_it_wav(tmp_path):
    recorder = WavRecorder.for_call(tmp_path, "CA1", "MZ1")
    for value in (100, 200, 300):
        recorder.write(frame_of(value))
    assert not (tmp_path / "CA1.wav").exists()  # still CA1.wav.part
    recorder.close()
    recorder.close()  # twice is harmless
    with wave.open(str(tmp_path / "CA1.wav"), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 48000)
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert len(data) == 3 * FRAME_BYTES // 2
    assert list(data[:: FRAME_BYTES // 2]) == [100, 200, 300]
    assert [p.name for p in tmp_path.iterdir()] == ["CA1.wav"]


def test_a_second_stream_of_one_call_does_not_overwrite_the_first(tmp_path):
    WavRecorder.for_call(tmp_path, "CA1", "MZ1").close()
    second = WavRecorder.for_call(tmp_path, "CA1", "MZ2")
    second.close()
    assert second.path.name == "CA1-MZ2.wav"


def test_a_recording_that_fills_the_disk_stops_in_one_line_and_the_call_goes_on(tmp_path, caplog):
    (tmp_path / "CA1.wav.part").symlink_to("/dev/full")  # every write that reaches the disk: ENOSPC
    recorder = WavRecorder(tmp_path / "CA1.wav")
    session = Session(start_of("MZ1"), EchoTarget(), Outbox(), recorder)
    for _ in range(10):
        session.receive_media(ulaw_encode(np.full(160, 3000, dtype=np.int16)))
        session.tick()
    session.tick()
    assert len(session.outbox) == 11  # the caller hears every tick's echo
    recorder.close()
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"recording {tmp_path / 'CA1.wav'} stopped: [Errno 28] No space left on device"]
    assert not any(r.exc_info for r in caplog.records)
    assert not (tmp_path / "CA1.wav").exists()  # never named .wav: it is not complete


# ----------------------------------------------------------------------------- the AudioSource


class Feed:
    """A call's side of the source: the frames its session would hand over, one per take."""

    def __init__(self, *frames: bytes) -> None:
        self.frames = list(frames)
        self.voices = Voices()

    def take(self) -> bytes:
        return self.frames.pop(0) if self.frames else SILENCE_FRAME


def test_channel_source_is_pcm_and_reads_exactly_one_frame_even_with_no_call():
    source = ChannelSource()
    assert isinstance(source, discord.AudioSource)
    assert source.is_opus() is False
    assert not source.reading()
    assert source.read() == SILENCE_FRAME
    assert source.reading()


def test_each_read_takes_the_next_frame_of_every_call_and_mixes_them():
    source = ChannelSource()
    a, b = Feed(frame_of(1000), frame_of(10)), Feed(frame_of(-300))
    source.add_call("a", a.take, a.voices)
    source.add_call("b", b.take, b.voices)
    assert source.read() == frame_of(700)
    assert source.read() == frame_of(10)  # b has nothing: silence from it, never a wait
    source.remove_call("b")
    assert len(source) == 1
    assert source.read() == SILENCE_FRAME


def test_callers_in_one_channel_hear_each_other_but_never_themselves():
    source = ChannelSource()
    a, b = Feed(frame_of(1000), frame_of(1000)), Feed(frame_of(-300), frame_of(-300))
    source.add_call("a", a.take, a.voices)
    source.add_call("b", b.take, b.voices)
    source.read()
    assert [a.voices.mix(), b.voices.mix()] == [frame_of(-300), frame_of(1000)]
    source.remove_call("b")
    assert len(a.voices) == 0  # b's voice is forgotten at once


def test_channel_source_survives_a_reader_thread_and_calls_coming_and_going():
    source = ChannelSource()
    sizes = set()

    def reader():
        for _ in range(2000):
            sizes.add(len(source.read()))

    thread = threading.Thread(target=reader)
    thread.start()
    for n in range(2000):
        feed = Feed(frame_of(n % 100))
        source.add_call(str(n % 3), feed.take, feed.voices)
        if n % 5 == 0:
            source.remove_call(str(n % 3))
    thread.join()
    assert sizes == {FRAME_BYTES}


# ----------------------------------------------------------------------------- notifications


def test_notification_texts_name_the_caller_and_channel():
    assert call_started_text("+441595123456", VOICE) == f"📞 Call from +441595123456 started in <#{VOICE}>."
    ended = call_ended_text("+441595123456", VOICE, 125.4)
    assert ended == f"📴 Call from +441595123456 in <#{VOICE}> ended after 2:05."
    assert "unknown caller" in call_started_text("unknown caller", VOICE)


def test_a_call_placed_from_discord_is_a_call_to_its_number():
    party = "+44 1595 123456 (called by Alice)"
    assert call_started_text(party, VOICE, outgoing=True) == f"📞 Call to {party} started in <#{VOICE}>."
    ended = call_ended_text(party, VOICE, 61, outgoing=True)
    assert ended == f"📴 Call to {party} in <#{VOICE}> ended after 1:01."
    assert call_busy_text(party, VOICE, outgoing=True).startswith(f"📵 Call to {party} from <#{VOICE}> could not")


def test_notifications_cannot_mention_or_format():
    text = call_started_text("@everyone **x**", VOICE)
    assert "@everyone" not in text
    assert "**x**" not in text


# ----------------------------------------------------------------------------- the hub, at a fake discord.py boundary


def one_bot(**kwargs) -> tuple[DiscordHub, FakeClient, FakeTextChannel]:
    """One bot that sees VOICE and OTHER_VOICE, in two servers, and the text channel."""
    text = FakeTextChannel()
    client = FakeClient(BOT_USER, {VOICE: GUILD, OTHER_VOICE: OTHER_GUILD}, {TEXT: text})
    hub = DiscordHub([client], TEXT, keeper_interval=0.01, reconnect_grace=0.05, **kwargs)
    return hub, client, text


def playing(client: FakeClient, channel_id: int) -> bool:
    voice_clients = client.voice[channel_id].voice_clients
    return bool(voice_clients) and voice_clients[-1].is_playing()


def start_of(sid: str) -> Start:
    return Start(stream_sid=sid, call_sid="CA" + sid[2:], account_sid="AC1", tracks=("inbound",))


def test_one_voice_connection_per_channel_and_leaving_with_the_last_call():
    async def scenario():
        hub, client, text = one_bot()
        first = DiscordTarget(hub, VOICE, "MZ1", "+441595000010")
        second = DiscordTarget(hub, VOICE, "MZ2", "+441595000011")
        elsewhere = DiscordTarget(hub, OTHER_VOICE, "MZ3", "unknown caller")
        for target in (first, second, elsewhere):
            await target.open()
        await until(lambda: playing(client, VOICE) and playing(client, OTHER_VOICE))
        assert sorted(client.events) == [("join", VOICE), ("join", OTHER_VOICE)]
        assert len(hub.channels[VOICE].source) == 2

        await first.close()
        await asyncio.sleep(0.05)
        assert ("leave", VOICE) not in client.events  # the second call is still there
        await second.close()
        await until(lambda: ("leave", VOICE) in client.events)
        await until(lambda: VOICE not in hub.channels)
        assert OTHER_VOICE in hub.channels
        await elsewhere.close()
        await until(lambda: not hub.channels)
        await until(lambda: len(text.messages) == 6)
        assert hub.pool.bots[0].links == {}  # the bot is free in both servers again
        await hub.close()
        return client, text

    client, text = asyncio.run(scenario())
    assert client.events.count(("join", VOICE)) == 1
    started = [m for m in text.messages if m.startswith("📞")]
    ended = [m for m in text.messages if m.startswith("📴")]
    assert len(started) == len(ended) == 3
    assert f"📞 Call from +441595000010 started in <#{VOICE}>." in started
    assert any("unknown caller" in m and str(OTHER_VOICE) in m for m in ended)


def test_the_players_read_takes_the_callers_frame_from_the_sessions_own_buffer():
    """One clock: while discord.py's player reads, it takes each frame from the session's jitter buffer."""

    async def scenario():
        hub, client, _ = one_bot()
        recorded: list[bytes] = []
        target = DiscordTarget(hub, VOICE, "MZ1", "unknown caller")
        session = Session(start_of("MZ1"), target, Outbox(), on_tick=lambda s, f: recorded.append(f))
        target.feed_from(session.take_frame)
        await target.open()
        await until(lambda: playing(client, VOICE))
        source = client.voice[VOICE].voice_clients[0].source
        assert not target.takes_frames()  # the player has not read yet: the session's clock pops
        session.receive_media(ulaw_encode((8000 * np.sin(np.arange(1600) / 3)).astype(np.int16)))  # 10 frames
        session.tick()  # prefill: nothing yet
        expected = [session.jitter._frames[i] for i in range(len(session.jitter))]
        reads = [source.read() for _ in range(4)]
        assert target.takes_frames()
        session.tick()  # the frames the player took are recorded, none popped besides
        depth = len(session.jitter)
        await target.close()
        await hub.close()
        return expected, reads, recorded, depth

    expected, reads, recorded, depth = asyncio.run(scenario())
    assert reads == expected[:4]  # in order, none lost or doubled between two clocks
    assert recorded[1:] == reads  # the recording has what Discord was given
    assert depth == len(expected) - 4


def test_what_the_channel_says_comes_back_to_the_caller():
    """A member's frames, delivered by the channel's receiver, reach Twilio as media messages."""

    async def scenario():
        hub, client, _ = one_bot()
        outbox = Outbox()
        target = DiscordTarget(hub, VOICE, "MZ1", "unknown caller")
        session = Session(start_of("MZ1"), target, outbox)
        target.feed_from(session.take_frame)
        await target.open()
        await until(lambda: playing(client, VOICE))
        link = hub.channels[VOICE]
        for _ in range(10):
            link.deliver(4321, frame_of(8000))  # the receiver's thread does this, one frame each 20 ms
            session.tick()
        messages = [json.loads(await outbox.get()) for _ in range(len(outbox))]
        await target.close()
        await hub.close()
        return messages

    messages = asyncio.run(scenario())
    assert len(messages) == 10  # one media message per tick
    assert {m["streamSid"] for m in messages} == {"MZ1"}
    levels = [int(np.abs(ulaw_decode(base64.b64decode(m["media"]["payload"]))).max()) for m in messages]
    assert min(levels[1:]) > 7000  # the member at once, through the filter and down to 8 kHz mu-law


def test_a_dropped_voice_connection_is_made_again_and_playback_resumes():
    async def scenario():
        hub, client, _ = one_bot()
        target = DiscordTarget(hub, VOICE, "MZ1", "+441595000010")
        await target.open()
        channel = client.voice[VOICE]
        await until(lambda: playing(client, VOICE))
        channel.voice_clients[0].connected = False  # the network went away and stayed away
        await until(lambda: len(channel.voice_clients) == 2 and channel.voice_clients[1].is_playing())
        assert channel.voice_clients[0].disconnected
        # discord.py's player can also stop on its own: the hub plays again
        channel.voice_clients[1].stop()
        await until(lambda: channel.voice_clients[1].plays == 2)
        await target.close()
        await hub.close()
        return channel

    channel = asyncio.run(scenario())
    assert channel.voice_clients[1].disconnected


def test_a_failed_join_is_retried(monkeypatch):
    from shetphone.bridge.targets.discord import hub as hub_module

    monkeypatch.setattr(hub_module, "BACKOFF_FIRST", 0.01)

    async def scenario():
        hub, client, _ = one_bot()
        client.voice[VOICE].failures = 1
        target = DiscordTarget(hub, VOICE, "MZ1", "x")
        await target.open()
        await until(lambda: client.voice[VOICE].voice_clients)
        await target.close()
        await hub.close()
        return client

    client = asyncio.run(scenario())
    assert client.events[0] == ("join", VOICE)


def test_a_join_discord_never_answers_leaves_discord_py_holding_no_voice_client(monkeypatch):
    """discord.py registers its voice client for the guild before the handshake and, when the join is
    cancelled (the hub's own timeout), keeps it: every later join was "Already connected to a voice
    channel.", and the bot was busy in that server until a restart."""
    from shetphone.bridge.targets.discord import hub as hub_module

    monkeypatch.setattr(hub_module, "CONNECT_TIMEOUT", 0.2)
    monkeypatch.setattr(hub_module, "BACKOFF_FIRST", 0.01)

    async def scenario():
        gateway = UnansweredGateway()
        client, channel = await real_voice_channel(VOICE, GUILD, gateway)
        hub = DiscordHub([client], keeper_interval=0.01)
        target = DiscordTarget(hub, VOICE, "MZ1", "+441595000010")
        await target.open()
        await until(lambda: gateway.voice_states.count(VOICE) >= 2)  # the join tried again, afresh
        await target.close()
        await until(lambda: VOICE not in hub.channels)
        bot_free = hub.pool.bots[0].free_in(channel.guild)
        await hub.close()
        return bot_free

    assert asyncio.run(scenario())  # free for the server's next call


def test_a_text_channel_that_cannot_be_found_does_not_end_the_call():
    async def scenario():
        client = FakeClient(BOT_USER, {VOICE: GUILD})
        hub = DiscordHub([client], 999999999999999999, keeper_interval=0.01)
        target = DiscordTarget(hub, VOICE, "MZ1", "x")
        await target.open()
        await until(lambda: client.voice[VOICE].voice_clients)
        await target.close()
        await hub.close()
        return client

    client = asyncio.run(scenario())
    assert ("join", VOICE) in client.events


def test_a_bot_discord_refused_is_left_out_and_the_others_serve(monkeypatch):
    async def scenario():
        refused = FakeClient(BOT_USER, {VOICE: GUILD})
        good = FakeClient(BOT_USER + 1, {VOICE: GUILD})

        async def start_refused(token: str) -> None:
            raise discord.LoginFailure("Improper token has been passed.")

        async def start_good(token: str) -> None:
            await asyncio.Event().wait()  # logged in, until closed

        refused.start, good.start = start_refused, start_good
        refused.close = good.close = lambda: asyncio.sleep(0)
        hub = DiscordHub([refused, good], None, keeper_interval=0.01)
        hub.start(["token-1", "token-2"])
        await until(lambda: hub.pool.bots[0].refused)
        refused.ready = True  # even if discord.py said so, a refused bot never serves
        target = DiscordTarget(hub, VOICE, "MZ1", "x")
        await target.open()
        await until(lambda: good.voice[VOICE].voice_clients)
        await target.close()
        await hub.close()
        return refused, good

    refused, good = asyncio.run(scenario())
    assert refused.events == [] and ("join", VOICE) in good.events


# ----------------------------------------------------------------------------- the session


def test_a_queue_deeper_than_it_needs_is_trimmed_to_the_frame_each_tick_takes():
    """After a burst the caller's audio would lag for the rest of the call; the session catches up."""
    session = Session(start_of("MZ1"), EchoTarget(), Outbox())
    chunk = ulaw_encode((3000 * np.sin(np.arange(160))).astype(np.int16))
    for _ in range(7):  # a burst: seven frames at once
        session.receive_media(chunk)
    depths = []
    for _ in range(600):  # then one frame per tick, as the network delivers them
        session.receive_media(chunk)
        session.tick()
        depths.append(len(session.jitter))
    assert depths[0] == 7
    assert depths[6 * BACKLOG_TICKS_BEFORE_TRIM] == 1  # the backlog is gone one frame a second...
    assert depths[-1] == 0  # ...then, after calm seconds, the last standing frame too
    assert session.trimmed == 7
    assert session.jitter.underruns == 0


class LastWords(EchoTarget):
    """A target with two frames to say, then the call ends."""

    def __init__(self) -> None:
        super().__init__()
        self.words = [frame_of(5000), frame_of(5000)]

    def returned(self) -> bytes | None:
        return self.words.pop(0) if self.words else None

    def hangup(self) -> str | None:
        return None if self.words else "said all"


def test_a_target_that_ends_the_call_is_heard_out_then_marked_and_hung_up():
    async def scenario():
        outbox = Outbox()
        reasons: list[str] = []
        session = Session(start_of("MZ1"), LastWords(), outbox, on_hangup=reasons.append)
        for _ in range(5):
            session.tick()
        return [json.loads(await outbox.get()) for _ in range(len(outbox))], reasons

    messages, reasons = asyncio.run(scenario())
    assert [m["event"] for m in messages] == ["media", "media", "mark"]
    assert messages[-1] == {"event": "mark", "streamSid": "MZ1", "mark": {"name": "hangup"}}
    assert reasons == ["said all"]  # once, however many ticks follow
