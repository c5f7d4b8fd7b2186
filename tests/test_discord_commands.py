"""/call and /hangup: the commands' callbacks given a fake interaction, Twilio's stand-in behind them.

The whole path is played where it can be: /call -> Calls.json at the stand-in -> the
call answered -> the stand-in opens the Media Stream its TwiML names, to a real
bridge -> the caller heard in the fake voice channel -> /hangup -> Status=completed
-> the stand-in ends the call and its stream -> the text channel told how long it was.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from urllib.parse import urlsplit

import discord
import numpy as np
import pytest
from bridge_helpers import SECRET_KEY, VOICE, ThreadedBridge, bridge_config, tone
from discord_helpers import BOT, FakeClient, FakeInteraction, FakeMember, FakeTextChannel, peak_hz

from shetphone.bridge.placing import CallPlacer, PlacedCalls, PlacerConfig
from shetphone.bridge.server import make_targets
from shetphone.bridge.targets.discord import DiscordHub
from shetphone.bridge.targets.discord.commands import (
    NOBODY_MAY,
    NOT_ALLOWED,
    NOT_IN_A_SERVER,
    NOT_IN_VOICE,
    CallCommands,
)
from shetphone.dialing import DialPolicy
from shetphone.twilio_rest import TwilioRest

ROLE, OTHER_ROLE = 823456789012345678, 823456789012345679
GUILD = 923456789012345678
TEXT = 323456789012345679
CALL_FROM = "+441595000002"
E164 = "+441595123456"
STREAM_URL = "wss://phone.example.org/media/stream"
STATUS_URL = "https://phone.example.org/voice/status"
UK = DialPolicy(allowed_countries=frozenset({"GB"}), allow_premium=False)


def rest_of(standin) -> TwilioRest:
    return TwilioRest(standin.account_sid, standin.auth_token, api_base=standin.url)


def commands_for(standin, placed: PlacedCalls | None = None, calls_to=lambda target: [], hub=None,
                 roles=frozenset({ROLE})) -> CallCommands:
    config = PlacerConfig(call_from=CALL_FROM, policy=UK, stream_url=STREAM_URL, status_url=STATUS_URL)
    placer = CallPlacer(config, rest_of(standin), placed or PlacedCalls(SECRET_KEY), calls_to)
    return CallCommands(placer, roles, all_busy=hub.all_busy if hub else None)


def bot_client() -> discord.Client:
    return discord.Client(intents=discord.Intents(guilds=True, voice_states=True))


def tree_of(commands: CallCommands) -> discord.app_commands.CommandTree:
    return commands.install(bot_client())


def eventually(condition, timeout: float = 10.0) -> None:
    """Poll until ``condition()`` holds; a timeout fails the test (it is not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


ALICE = FakeMember("Alice", [ROLE], VOICE)


# ----------------------------------------------------------------------------- the commands, as Discord sees them


def test_the_commands_are_call_with_a_number_and_hangup_in_servers_only(standin):
    tree = tree_of(commands_for(standin))
    call, hangup = tree.get_command("call"), tree.get_command("hangup")
    assert [(p.name, p.type, p.required) for p in call.parameters] == [
        ("number", discord.AppCommandOptionType.string, True)]
    assert hangup.parameters == []
    assert call.guild_only and hangup.guild_only
    assert call.description and hangup.description


def test_the_commands_are_registered_with_discord_once_the_bot_has_logged_in(standin, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    client = bot_client()
    tree = commands_for(standin).install(client)
    synced = []

    async def sync(*, guild=None):
        synced.append(guild)
        return [tree.get_command("call"), tree.get_command("hangup")]

    monkeypatch.setattr(tree, "sync", sync)
    asyncio.run(client.setup_hook())
    assert synced == [None]  # global commands: every server the bot is in
    assert "registered with Discord: /call, /hangup" in caplog.text

    async def refused(*, guild=None):
        raise discord.Forbidden(type("R", (), {"status": 403, "reason": "Forbidden"})(), "Missing Access")

    monkeypatch.setattr(tree, "sync", refused)
    asyncio.run(client.setup_hook())  # logged, never raised into discord.py's login
    assert "did not take the slash commands" in caplog.text


# ----------------------------------------------------------------------------- refusals, in plain words


@pytest.mark.parametrize(
    ("member", "guild", "roles", "answer"),
    [
        (ALICE, None, frozenset({ROLE}), NOT_IN_A_SERVER),
        (ALICE, GUILD, frozenset(), NOBODY_MAY),
        (FakeMember("Bob", [OTHER_ROLE], VOICE), GUILD, frozenset({ROLE}), NOT_ALLOWED),
        (FakeMember("Bob", [], VOICE), GUILD, frozenset({ROLE}), NOT_ALLOWED),
        (FakeMember("Carol", [ROLE], None), GUILD, frozenset({ROLE}), NOT_IN_VOICE),
    ],
    ids=["direct message", "no call_roles", "another role", "no role", "not in a voice channel"],
)
@pytest.mark.parametrize("command", ["call", "hangup"])
def test_who_may_not_use_a_command_is_told_why_and_twilio_hears_nothing(standin, member, guild, roles, answer,
                                                                         command):
    tree = tree_of(commands_for(standin, roles=roles))
    asked = FakeInteraction(member, guild)
    arguments = {"number": "01595 123456"} if command == "call" else {}
    asyncio.run(tree.get_command(command).callback(asked, **arguments))
    assert asked.answers == [("message", answer, True)]  # seen by the member only
    assert standin.requests_seen == []


@pytest.mark.parametrize(
    ("number", "answer"),
    [
        ("09098790000", "Not calling 09098790000: Sorry, calls to premium rate numbers are not allowed."),
        ("+33 1 42 68 53 00", "Not calling +33 1 42 68 53 00: Sorry, calls to that country are not allowed."),
        ("*not a number*", "Not calling \\*not a number\\*: Sorry, that is not a valid phone number."),
    ],
)
def test_a_number_an_outgoing_call_may_not_dial_is_refused_and_why(standin, number, answer):
    tree = tree_of(commands_for(standin))
    asked = FakeInteraction(ALICE, GUILD)
    asyncio.run(tree.get_command("call").callback(asked, number=number))
    assert asked.answers == [("message", answer, True)]
    assert standin.requests_seen == []


def test_twilios_refusal_is_told_in_its_own_words(standin):
    tree = tree_of(commands_for(standin))
    standin.fail_next(400, "The source phone number provided is not yet verified for your account.", 21210)
    asked = FakeInteraction(ALICE, GUILD)
    asyncio.run(tree.get_command("call").callback(asked, number="01595 123456"))
    assert asked.texts == ["Twilio did not place the call to 01595 123456: The source phone number provided is "
                           "not yet verified for your account."]
    assert asked.answers[0][0] == "thinking"  # Twilio may take longer than Discord's 3 seconds


def test_a_call_no_bot_could_take_is_not_placed(standin):
    client = FakeClient(BOT, {VOICE: GUILD})
    client.guilds[GUILD].voice_client = object()  # the only bot is in another channel of the server
    hub = DiscordHub([client], None)
    tree = tree_of(commands_for(standin, hub=hub))
    asked = FakeInteraction(ALICE, GUILD)
    asyncio.run(tree.get_command("call").callback(asked, number="01595 123456"))
    assert asked.texts == [
        "Not calling 01595 123456: every bot of the bridge is already in another voice channel of this server."]
    assert standin.requests_seen == []


def test_hangup_with_no_call_in_the_channel_says_so(standin):
    tree = tree_of(commands_for(standin))
    asked = FakeInteraction(ALICE, GUILD)
    asyncio.run(tree.get_command("hangup").callback(asked))
    assert asked.answers == [("message", f"There is no call in <#{VOICE}> to end.", True)]
    assert standin.requests_seen == []


# ----------------------------------------------------------------------------- the whole path


class Player:
    """discord.py's player thread, for the fake voice client: reads the channel's source every 20 ms."""

    def __init__(self, source) -> None:
        self.frames: list[bytes] = []
        self._source = source
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_read = time.monotonic()
        while not self._stop.is_set():
            self.frames.append(self._source.read())
            next_read += 0.02
            time.sleep(max(0.0, next_read - time.monotonic()))

    def stop(self) -> list[bytes]:
        self._stop.set()
        self._thread.join(5)
        return self.frames


def test_a_call_placed_from_discord_is_heard_in_the_channel_and_hangup_ends_it(standin):
    text = FakeTextChannel()
    client = FakeClient(BOT, {VOICE: GUILD}, {TEXT: text})
    hub = DiscordHub([client], TEXT, keeper_interval=0.01)
    placed = PlacedCalls(SECRET_KEY)
    # No number streams into VOICE: only the call the bridge places may.
    config = bridge_config(auth_token=standin.auth_token, account_sid=standin.account_sid,
                           allowed_targets=frozenset())
    with ThreadedBridge(config=config, make_target=make_targets(hub), placed=placed) as bridge:
        tree = tree_of(commands_for(standin, placed, bridge.bridge.calls_to, hub))
        standin.stream_to(lambda url: f"ws://127.0.0.1:{bridge.port}{urlsplit(url).path}")

        asked = FakeInteraction(ALICE, GUILD)
        bridge.run(tree.get_command("call").callback(asked, number="01595 123456"))
        assert asked.texts == [f"📞 Calling +44 1595 123456 from +44 1595 000002 into <#{VOICE}>: ringing. They "
                               "are put through to the channel when they answer; /hangup ends the call."]
        (call,) = standin.calls_to(E164)
        created = standin.requests_seen[-1]
        assert (created.param("To"), created.param("From"), created.param("StatusCallback")) == (
            E164, CALL_FROM, STATUS_URL)
        assert created.params["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]

        standin.answer(call.sid)  # the stand-in runs the TwiML: <Connect><Stream> to the bridge
        (stream,) = call.streams
        assert stream.started.wait(10) and stream.parameters["target"] == f"discord:{VOICE}"
        eventually(lambda: bridge.call(lambda: ("join", VOICE) in client.events and hub.channels[VOICE].voice
                                       is not None and hub.channels[VOICE].voice.is_playing()))
        player = Player(client.voice[VOICE].voice_clients[-1].source)
        stream.play(tone(440, 1.0))
        frames = player.stop()
        eventually(lambda: any("started" in m for m in text.messages))

        hung = FakeInteraction(ALICE, GUILD)
        bridge.run(tree.get_command("hangup").callback(hung))
        assert hung.texts == ["📴 Ended the call with +44 1595 123456 (called by Alice)."]
        assert stream.closed.wait(10)
        eventually(lambda: any("ended" in m for m in text.messages))

    heard = [f for f in frames if np.any(np.frombuffer(f, dtype="<i2"))]
    assert len(heard) >= 40  # most of the second the caller spoke
    assert abs(peak_hz(heard[5:]) - 440) < 5
    ended = standin.requests_seen[-1]
    assert (ended.path, ended.param("Status")) == (
        f"/2010-04-01/Accounts/{standin.account_sid}/Calls/{call.sid}.json", "completed")
    started, finished = text.messages
    assert started == f"📞 Call to +44 1595 123456 (called by Alice) started in <#{VOICE}>."
    assert re.fullmatch(rf"📴 Call to \+44 1595 123456 \(called by Alice\) in <#{VOICE}> ended after 0:0[12]\.",
                        finished)
    # What the call log hears: every status of an outgoing call from call_from.
    standin.run()
    statuses = standin.deliveries_to("/voice/status")
    assert [d.params["CallStatus"] for d in statuses] == ["initiated", "ringing", "in-progress", "completed"]
    assert {(d.params["From"], d.params["To"], d.params["Direction"]) for d in statuses} == {
        (CALL_FROM, E164, "outbound-api")}


def test_hangup_before_the_far_end_answers_cancels_the_call_and_its_stream_can_never_start(standin):
    placed = PlacedCalls(SECRET_KEY)
    config = bridge_config(auth_token=standin.auth_token, account_sid=standin.account_sid,
                           allowed_targets=frozenset())
    with ThreadedBridge(config=config, placed=placed) as bridge:
        tree = tree_of(commands_for(standin, placed, bridge.bridge.calls_to))
        bridge.run(tree.get_command("call").callback(FakeInteraction(ALICE, GUILD), number="01595 123456"))
        (call,) = standin.calls_to(E164)
        hung = FakeInteraction(ALICE, GUILD)
        bridge.run(tree.get_command("hangup").callback(hung))
        assert bridge.call(lambda: placed.waiting()) == 0
    assert hung.texts == ["📴 Ended the call with +44 1595 123456 (called by Alice)."]
    assert standin.call(call.sid).status == "canceled"
