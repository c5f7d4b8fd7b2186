"""The bridge's targets without a network: echo, the WAV recorder, and Discord up to discord.py's boundary."""

from __future__ import annotations

import asyncio
import threading
import wave

import discord
import numpy as np
import pytest
from bridge_helpers import OTHER_VOICE, TEXT, VOICE, FakeClient

from shetphone.bridge.audio import FRAME_BYTES, SILENCE_FRAME
from shetphone.bridge.protocol import Start
from shetphone.bridge.session import PHASE_GAIN, SINK_LEAD, TICK, Outbox, Session
from shetphone.bridge.targets.discord import (
    ChannelSource,
    DiscordHub,
    DiscordTarget,
    call_ended_text,
    call_started_text,
)
from shetphone.bridge.targets.echo import EchoTarget
from shetphone.bridge.targets.recorder import WavRecorder


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


# ----------------------------------------------------------------------------- the AudioSource


def test_channel_source_is_pcm_and_reads_exactly_one_frame_even_with_no_call():
    source = ChannelSource()
    assert isinstance(source, discord.AudioSource)
    assert source.is_opus() is False
    assert source.read() == SILENCE_FRAME


def test_channel_source_plays_silence_on_underrun_never_an_empty_read():
    source = ChannelSource()
    source.add_call("a")
    source.push("a", frame_of(1000))
    reads = [source.read() for _ in range(5)]
    assert all(len(r) == FRAME_BYTES for r in reads)
    assert reads[0] == frame_of(1000)
    assert reads[1:] == [SILENCE_FRAME] * 4


def test_channel_source_mixes_the_calls_of_one_channel_and_forgets_ended_ones():
    source = ChannelSource()
    source.add_call("a")
    source.add_call("b")
    source.push("a", frame_of(1000))
    source.push("b", frame_of(-300))
    assert source.read() == frame_of(700)
    source.remove_call("b")
    source.push("b", frame_of(5))  # a frame for an ended call goes nowhere
    source.push("a", frame_of(20))
    assert source.read() == frame_of(20)
    assert len(source) == 1


def test_channel_source_is_bounded_when_discord_stops_reading():
    source = ChannelSource()
    source.add_call("a")
    for value in range(1000):
        source.push("a", frame_of(value))
    first = np.frombuffer(source.read(), dtype="<i2")[0]
    assert first >= 990  # only the newest few frames were kept


def test_channel_source_survives_a_reader_thread_and_a_writer_at_once():
    source = ChannelSource()
    source.add_call("a")
    sizes = set()

    def reader():
        for _ in range(2000):
            sizes.add(len(source.read()))

    thread = threading.Thread(target=reader)
    thread.start()
    for value in range(2000):
        source.push("a", frame_of(value % 100))
    thread.join()
    assert sizes == {FRAME_BYTES}


# ----------------------------------------------------------------------------- notifications


def test_notification_texts_name_the_caller_and_channel():
    assert call_started_text("+441595123456", VOICE) == f"📞 Call from +441595123456 started in <#{VOICE}>."
    ended = call_ended_text("+441595123456", VOICE, 125.4)
    assert ended == f"📴 Call from +441595123456 in <#{VOICE}> ended after 2:05."
    assert "unknown caller" in call_started_text("unknown caller", VOICE)


def test_notifications_cannot_mention_or_format():
    text = call_started_text("@everyone **x**", VOICE)
    assert "@everyone" not in text
    assert "**x**" not in text


# ----------------------------------------------------------------------------- the hub, at the fake discord.py boundary


async def until(condition, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def hub_with_fake(**kwargs) -> tuple[DiscordHub, FakeClient]:
    client = FakeClient()
    return DiscordHub(client, TEXT, keeper_interval=0.01, reconnect_grace=0.05, **kwargs), client


def test_one_voice_connection_per_channel_and_leaving_with_the_last_call():
    async def scenario():
        hub, client = hub_with_fake()
        first = DiscordTarget(hub, VOICE, "MZ1", "+441595000010")
        second = DiscordTarget(hub, VOICE, "MZ2", "+441595000011")
        elsewhere = DiscordTarget(hub, OTHER_VOICE, "MZ3", "unknown caller")
        for target in (first, second, elsewhere):
            await target.open()
        await until(lambda: all(ch.voice_clients and ch.voice_clients[-1].is_playing() for ch in client.voice.values()))
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
        await until(lambda: len(client.text.messages) == 6)
        await hub.close()
        return client

    client = asyncio.run(scenario())
    assert client.events.count(("join", VOICE)) == 1
    started = [m for m in client.text.messages if m.startswith("📞")]
    ended = [m for m in client.text.messages if m.startswith("📴")]
    assert len(started) == len(ended) == 3
    assert f"📞 Call from +441595000010 started in <#{VOICE}>." in started
    assert any("unknown caller" in m and str(OTHER_VOICE) in m for m in ended)


def test_the_callers_frames_reach_the_audio_source_discord_reads():
    async def scenario():
        hub, client = hub_with_fake()
        target = DiscordTarget(hub, VOICE, "MZ1", "+441595000010")
        await target.open()
        await until(lambda: client.voice[VOICE].voice_clients and client.voice[VOICE].voice_clients[0].source)
        source = client.voice[VOICE].voice_clients[0].source
        target.play(frame_of(1234))
        read = source.read()
        await target.close()
        await hub.close()
        return read

    assert asyncio.run(scenario()) == frame_of(1234)


def test_a_dropped_voice_connection_is_made_again_and_playback_resumes():
    async def scenario():
        hub, client = hub_with_fake()
        target = DiscordTarget(hub, VOICE, "MZ1", "+441595000010")
        await target.open()
        channel = client.voice[VOICE]
        await until(lambda: channel.voice_clients and channel.voice_clients[0].is_playing())
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


def test_a_failed_join_is_retried():
    async def scenario():
        hub, client = hub_with_fake()
        client.voice[VOICE].failures = 1
        import shetphone.bridge.targets.discord as module

        module_backoff = module.BACKOFF_FIRST
        module.BACKOFF_FIRST = 0.01
        try:
            target = DiscordTarget(hub, VOICE, "MZ1", "x")
            await target.open()
            await until(lambda: client.voice[VOICE].voice_clients)
        finally:
            module.BACKOFF_FIRST = module_backoff
        await target.close()
        await hub.close()
        return client

    client = asyncio.run(scenario())
    assert client.events[0] == ("join", VOICE)


def test_a_text_channel_that_cannot_be_found_does_not_end_the_call():
    async def scenario():
        client = FakeClient()
        hub = DiscordHub(client, 999999999999999999, keeper_interval=0.01)
        target = DiscordTarget(hub, VOICE, "MZ1", "x")
        await target.open()
        await until(lambda: client.voice[VOICE].voice_clients)
        await target.close()
        await hub.close()
        return client

    client = asyncio.run(scenario())
    assert client.text.messages == []
    assert ("join", VOICE) in client.events


def test_a_session_with_a_discord_target_feeds_the_channel_every_tick():
    """Session -> jitter buffer -> DiscordTarget -> ChannelSource, driven tick by tick."""

    async def scenario():
        hub, _client = hub_with_fake()
        start = Start(stream_sid="MZ1", call_sid="CA1", account_sid="AC1", tracks=("inbound",))
        target = DiscordTarget(hub, VOICE, "MZ1", "unknown caller")
        session = Session(start, target, Outbox(), prefill_frames=1)
        await target.open()
        tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(1600) / 8000)).astype(np.int16)
        from shetphone.bridge.audio import ulaw_encode

        session.receive_media(ulaw_encode(tone))  # 200 ms at once
        source = hub.channels[VOICE].source
        reads = []
        for _ in range(10):
            session.tick()
            reads.append(source.read())
        await session.close()
        await hub.close()
        return reads

    reads = asyncio.run(scenario())
    assert all(len(r) == FRAME_BYTES for r in reads)
    assert sum(r != SILENCE_FRAME for r in reads) >= 8


def test_a_standing_backlog_in_the_channel_source_is_trimmed_away():
    source = ChannelSource()
    source.add_call("a")
    for value in range(3):  # the player started late: three frames wait
        source.push("a", frame_of(value))
    for value in range(3, 60):
        source.push("a", frame_of(value))
        newest = source.read()
    assert newest == frame_of(59)  # nothing waits any more: the frame pushed is the frame read
    assert source.trimmed == 3


class ClockedSink(EchoTarget):
    """A target whose sink reads every 20 ms at a fixed phase, like discord.py's player."""

    def __init__(self, phase: float) -> None:
        super().__init__()
        self.phase = phase
        self.now = 0.0

    def next_read_at(self) -> float | None:
        reads_so_far = (self.now - self.phase) // 0.02
        return self.phase + (reads_so_far + 1) * 0.02


@pytest.mark.parametrize("phase", [0.0, 0.004, 0.013, 0.0199])
def test_the_session_clock_locks_just_before_the_sinks_reads(phase):
    sink = ClockedSink(phase)
    session = Session(Start("MZ1", "CA1", "AC1", ("inbound",)), sink, Outbox())
    next_tick = 1000.0
    for _ in range(60):  # the clock's own arithmetic, without waiting for real time
        sink.now = next_tick
        next_tick += TICK + session._phase_error(next_tick + TICK) * PHASE_GAIN
    offset = (phase - next_tick) % TICK  # how long before a read the tick comes
    assert abs(offset - SINK_LEAD) < 0.0002


def test_without_a_clocked_sink_the_session_keeps_its_own_phase():
    session = Session(Start("MZ1", "CA1", "AC1", ("inbound",)), EchoTarget(), Outbox())
    assert session._phase_error(123.456) == 0.0


def test_a_queue_deeper_than_the_prefill_is_trimmed_back_to_it():
    """After a burst the caller's audio would lag for the rest of the call; the session catches up."""
    from shetphone.bridge.audio import ulaw_encode

    session = Session(Start("MZ1", "CA1", "AC1", ("inbound",)), EchoTarget(), Outbox())
    chunk = ulaw_encode((3000 * np.sin(np.arange(160))).astype(np.int16))
    for _ in range(7):  # a burst: seven frames at once
        session.receive_media(chunk)
    depths = []
    for _ in range(400):  # then one frame per tick, as the network delivers them
        session.receive_media(chunk)
        session.tick()
        depths.append(len(session.jitter))
    assert depths[0] == 7
    assert depths[-1] <= session.jitter.prefill_frames
    assert session.trimmed == 7 - session.jitter.prefill_frames + 1
    assert session.jitter.underruns == 0
