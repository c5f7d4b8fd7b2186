"""Several bots: which one takes a call, and a busy server heard by the caller, at discord.py's boundary."""

from __future__ import annotations

import asyncio
import base64
import json
import wave

import numpy as np
import pytest
from bridge_helpers import ThreadedBridge, bridge_config, open_stream, tone
from discord_helpers import FakeClient, FakeGuild, FakeTextChannel, FakeVoiceChannel, until
from websockets.exceptions import ConnectionClosed

from shetphone.bridge import server as server_module
from shetphone.bridge.audio import FRAME_BYTES, ulaw_decode
from shetphone.bridge.server import make_targets
from shetphone.bridge.targets.discord import DiscordHub, DiscordTarget, call_busy_text
from shetphone.bridge.targets.discord import target as target_module
from shetphone.bridge.targets.discord.target import BUSY_RECORDING, busy_frames

GUILD, OTHER_GUILD = 11111111111111111, 22222222222222222
A, B, C = 100000000000000001, 100000000000000002, 100000000000000003  # voice channels of GUILD
ELSEWHERE = 200000000000000001  # a voice channel of OTHER_GUILD
TEXT = 300000000000000001


def pool(*bots: dict[int, int], text: FakeTextChannel | None = None) -> tuple[DiscordHub, list[FakeClient]]:
    """Bots seeing the channels given (channel -> guild), one guild object per guild as in Discord."""
    clients = [FakeClient(900 + n, channels, {TEXT: text} if text else None) for n, channels in enumerate(bots)]
    return DiscordHub(clients, TEXT if text else None, keeper_interval=0.01), clients


def joined(client: FakeClient, channel: int) -> bool:
    return ("join", channel) in client.events


async def call(hub: DiscordHub, channel: int, n: int) -> DiscordTarget:
    target = DiscordTarget(hub, channel, f"MZ{n}", f"+4415950000{n:02d}")
    await target.open()
    return target


def test_calls_into_one_channel_share_its_bot_and_another_channel_of_the_guild_gets_the_next_bot():
    async def scenario():
        hub, (first, second) = pool({A: GUILD, B: GUILD}, {A: GUILD, B: GUILD})
        one = await call(hub, A, 1)
        await until(lambda: joined(first, A))
        two = await call(hub, A, 2)
        three = await call(hub, B, 3)
        await until(lambda: joined(second, B))
        await asyncio.sleep(0.05)
        for target in (one, two, three):
            await target.close()
        await hub.close()
        return first, second

    first, second = asyncio.run(scenario())
    assert [e for e in first.events if e[0] == "join"] == [("join", A)]  # one connection for both calls
    assert [e for e in second.events if e[0] == "join"] == [("join", B)]


def test_one_bot_serves_channels_of_different_guilds_at_once():
    async def scenario():
        hub, (bot,) = pool({A: GUILD, ELSEWHERE: OTHER_GUILD})
        calls = [await call(hub, A, 1), await call(hub, ELSEWHERE, 2)]
        await until(lambda: joined(bot, A) and joined(bot, ELSEWHERE))
        for target in calls:
            await target.close()
        await hub.close()

    asyncio.run(scenario())


def test_a_bot_that_cannot_see_the_channel_is_passed_over():
    async def scenario():
        hub, (outsider, member) = pool({ELSEWHERE: OTHER_GUILD}, {A: GUILD})
        target = await call(hub, A, 1)
        await until(lambda: joined(member, A))
        await target.close()
        await hub.close()
        return outsider

    assert asyncio.run(scenario()).events == []


def test_a_bot_in_the_guild_through_discord_py_but_not_for_us_counts_as_busy():
    async def scenario():
        hub, (taken, free) = pool({A: GUILD}, {A: GUILD})
        taken.guilds[GUILD].voice_client = object()  # discord.py still holds a connection there
        target = await call(hub, A, 1)
        await until(lambda: joined(free, A))
        await target.close()
        await hub.close()

    asyncio.run(scenario())


def test_when_every_bot_is_busy_in_the_guild_the_caller_is_told_and_the_text_channel_says_why():
    async def scenario():
        text = FakeTextChannel()
        hub, (first, second) = pool({A: GUILD, B: GUILD, C: GUILD}, {A: GUILD, B: GUILD, C: GUILD}, text=text)
        one, two = await call(hub, A, 1), await call(hub, B, 2)
        await until(lambda: joined(first, A) and joined(second, B))
        refused = await call(hub, C, 3)
        await until(lambda: refused._farewell is not None)
        said = []
        while refused.hangup() is None:
            frame = refused.returned()
            if frame is not None:
                said.append(frame)
        await refused.close()
        for target in (one, two):
            await target.close()
        await until(lambda: len(text.messages) == 5)
        await hub.close()
        return first, second, text, said, refused.hangup()

    first, second, text, said, reason = asyncio.run(scenario())
    assert not joined(first, C) and not joined(second, C)
    assert said == list(busy_frames())  # the spoken message, whole, then the call ends
    assert reason == "every Discord bot is busy in that server"
    assert call_busy_text("+441595000003", C) in text.messages
    assert not [m for m in text.messages if "+441595000003" in m and m.startswith(("📞", "📴"))]


def test_a_bot_freed_by_a_call_ending_takes_the_next_channel():
    async def scenario():
        hub, (bot,) = pool({A: GUILD, B: GUILD})
        first = await call(hub, A, 1)
        await until(lambda: joined(bot, A))
        await first.close()
        await until(lambda: ("leave", A) in bot.events and not hub.channels)
        second = await call(hub, B, 2)
        await until(lambda: joined(bot, B))
        await second.close()
        await hub.close()

    asyncio.run(scenario())


def test_while_a_bot_is_still_logging_in_a_call_waits_for_it_rather_than_being_busy():
    async def scenario():
        hub, (busy_bot, late_bot) = pool({A: GUILD, B: GUILD}, {A: GUILD, B: GUILD})
        late_bot.ready = False
        first = await call(hub, A, 1)
        await until(lambda: joined(busy_bot, A))
        second = await call(hub, B, 2)
        await asyncio.sleep(0.1)
        assert second._farewell is None  # not told "busy": the late bot may be free
        late_bot.ready = True
        await until(lambda: joined(late_bot, B))
        for target in (first, second):
            await target.close()
        await hub.close()

    asyncio.run(scenario())


def test_two_channels_of_one_guild_never_get_the_same_bot_even_when_joined_at_once():
    async def scenario():
        hub, clients = pool({A: GUILD, B: GUILD}, {A: GUILD, B: GUILD})
        calls = await asyncio.gather(call(hub, A, 1), call(hub, B, 2))
        await until(lambda: sum(len(c.events) for c in clients) == 2)
        await asyncio.sleep(0.05)  # room for a wrong second join to show
        joins = [[e for e in c.events if e[0] == "join"] for c in clients]
        for target in calls:
            await target.close()
        await hub.close()
        return joins

    joins = asyncio.run(scenario())
    assert sorted(len(j) for j in joins) == [1, 1]
    assert {j[0][1] for j in joins} == {A, B}


def test_the_busy_message_is_speech_a_few_seconds_long():
    with wave.open(str(BUSY_RECORDING), "rb") as recording:
        samples = recording.getnframes()
    frames = busy_frames()
    assert 2 < samples / 8000 < 8
    assert all(len(frame) == FRAME_BYTES for frame in frames)
    assert len(frames) == -(-samples // 160) + 2  # all of it, then 20 ms for the filter to ring out, then silence
    levels = [float(np.abs(np.frombuffer(f, dtype="<i2")).max()) for f in frames]
    assert sum(level > 3000 for level in levels) > len(frames) // 2


# ----------------------------------------------------------------------------- through the bridge


@pytest.mark.timeout(30)
@pytest.mark.parametrize("twilio_echoes_the_mark", [True, False])
def test_a_busy_call_hears_the_message_then_twilios_stream_is_closed(monkeypatch, twilio_echoes_the_mark):
    words = [np.full(FRAME_BYTES // 2, 6000, "<i2").tobytes()] * 5  # shorter than the real message
    monkeypatch.setattr(target_module, "busy_frames", lambda: tuple(words))
    monkeypatch.setattr(server_module, "HANGUP_PLAYED_TIMEOUT", 0.3)
    guild = FakeGuild(GUILD)
    bot = FakeClient(901, {A: GUILD, B: GUILD})
    bot.guilds[GUILD] = guild
    for channel_id in (A, B):
        bot.voice[channel_id] = FakeVoiceChannel(bot, channel_id, guild)
    hub = DiscordHub([bot], None, keeper_interval=0.01)

    async def scenario(port: int):
        first = await open_stream(port, 1)
        await first.start(f"discord:{A}")
        await first.play(tone(440, 0.2))
        second = await open_stream(port, 2)
        await second.start(f"discord:{B}")
        media, marks = [], []
        try:
            while True:
                message = json.loads(await asyncio.wait_for(second.ws.recv(), 10))
                if message["event"] == "media":
                    media.append(ulaw_decode(base64.b64decode(message["media"]["payload"])))
                elif message["event"] == "mark":
                    marks.append(message["mark"]["name"])
                    if twilio_echoes_the_mark:
                        await second.mark(message["mark"]["name"])
        except ConnectionClosed:
            pass
        close = (second.ws.close_code, second.ws.close_reason)
        still_up = first.ws.close_code is None
        await first.stop()
        async for _ in first.ws:  # as Twilio does: after stop, the bridge closes
            pass
        return media, marks, close, still_up

    config = bridge_config(allowed_targets={f"discord:{A}", f"discord:{B}"})  # as [shetphone:numbers] would
    with ThreadedBridge(config=config, make_target=make_targets(hub)) as bridge:
        media, marks, close, still_up = asyncio.run(scenario(bridge.port))
    assert marks == ["hangup"]
    assert close == (1000, "every Discord bot is busy in that server")
    assert still_up  # the call that has the bot goes on
    assert sum(int(np.abs(m).max()) > 4000 for m in media) >= 4  # the words were sent before the mark
    assert ("join", B) not in bot.events
