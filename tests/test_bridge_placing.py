"""Calls the bridge places itself: their streams let in by its own record; the placer against the Twilio stand-in."""

from __future__ import annotations

import asyncio
import contextlib
import xml.etree.ElementTree as ET

import pytest
from bridge_helpers import SECRET_KEY, VOICE, ThreadedBridge, bridge_config, call_sid, open_stream, tone
from websockets.exceptions import ConnectionClosed

from shetphone import stream_auth, twiml
from shetphone.bridge.placing import (
    PLACED_PREFIX,
    CallPlacer,
    CallRefused,
    PlacedCalls,
    PlacerConfig,
)
from shetphone.dialing import DialPolicy
from shetphone.stream_auth import StreamAuthError
from shetphone.twilio_rest import TwilioRest, TwilioRestError

PLACED_CHANNEL = 723456789012345678  # a voice channel of no number: only a placed call may stream into it
TARGET = f"discord:{PLACED_CHANNEL}"
CALL_FROM = "+441595000002"
DIALLED = "01595 123456"
E164 = "+441595123456"
STREAM_URL = "wss://phone.example.org/media/stream"
STATUS_URL = "https://phone.example.org/voice/status"
UK = DialPolicy(allowed_countries=frozenset({"GB"}), allow_premium=False)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ----------------------------------------------------------------------------- the record of placed calls


def test_a_placement_admits_its_own_call_to_its_own_target_with_its_auth():
    async def scenario():
        placed = PlacedCalls(SECRET_KEY)
        call, auth = placed.expect(TARGET, E164, "Alice")
        placed.placed(call, call_sid(1))
        record, grant = await placed.admit(call.placed_id, call_sid(1), TARGET, auth)
        return call, auth, record, grant

    call, auth, record, grant = asyncio.run(scenario())
    assert record is call and record.party == "+44 1595 123456 (called by Alice)"
    # The auth is the same HMAC /voice makes, over "placed:ID" where /voice puts the CallSid.
    assert grant == stream_auth.verify(SECRET_KEY, auth, PLACED_PREFIX + call.placed_id, TARGET)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"placed_id": "made-up"}, "names no call this bridge is placing"),
        ({"target": f"discord:{VOICE}"}, "names another target"),
        ({"call": call_sid(2)}, "belongs to another call"),
        ({"auth": "v1.9999999999." + "A" * 43}, "not made for this call and target"),
        ({"auth": None}, "no 'auth'"),
        ({"voice_auth": True}, "not made for this call and target"),  # what /voice mints for the CallSid
        ({"withdrawn": True}, "names no call this bridge is placing"),
        ({"expired": True}, "names no call this bridge is placing"),
    ],
)
def test_a_start_that_is_not_the_placed_calls_own_is_refused(change, why):
    clock = Clock()

    async def scenario():
        placed = PlacedCalls(SECRET_KEY, clock=clock)
        call, auth = placed.expect(TARGET, E164, "Alice")
        placed.placed(call, call_sid(1))
        if change.get("voice_auth"):
            auth = stream_auth.mint(SECRET_KEY, call_sid(1), TARGET)
        if change.get("withdrawn"):
            placed.withdraw(call)
        if change.get("expired"):
            clock.now += 601
        await placed.admit(
            change.get("placed_id", call.placed_id), change.get("call", call_sid(1)), change.get("target", TARGET),
            change.get("auth", auth),
        )

    with pytest.raises(StreamAuthError) as refused:
        asyncio.run(scenario())
    assert why in str(refused.value)


def test_a_start_that_overtakes_twilios_rest_answer_waits_for_the_call_sid():
    async def scenario():
        placed = PlacedCalls(SECRET_KEY)
        call, auth = placed.expect(TARGET, E164, "Alice")
        admitted = asyncio.create_task(placed.admit(call.placed_id, call_sid(1), TARGET, auth))
        await asyncio.sleep(0.05)
        waited = not admitted.done()
        placed.placed(call, call_sid(1))
        record, _ = await admitted
        return waited, record is call

    assert asyncio.run(scenario()) == (True, True)


def test_a_start_whose_call_twilio_never_confirmed_is_refused_after_the_wait():
    async def scenario():
        placed = PlacedCalls(SECRET_KEY, call_sid_wait=0.05)
        call, auth = placed.expect(TARGET, E164, "Alice")
        await placed.admit(call.placed_id, call_sid(1), TARGET, auth)

    with pytest.raises(StreamAuthError, match="CallSid is not known"):
        asyncio.run(scenario())


# ----------------------------------------------------------------------------- through the bridge


async def _outcome(stream) -> tuple[int | None, str | None]:
    """Play a little, then read until the bridge closes the stream; its close code and reason."""
    with contextlib.suppress(ConnectionClosed):
        await stream.play(tone(440, 0.1))
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        async with asyncio.timeout(5):
            async for _ in stream.ws:
                pass
    return stream.ws.close_code, stream.ws.close_reason


def test_the_bridge_lets_a_placed_call_to_a_target_no_number_configures_in_once_and_only_that_call():
    placed = PlacedCalls(SECRET_KEY)
    nothing_configured = bridge_config(allowed_targets=frozenset())
    with ThreadedBridge(config=nothing_configured, placed=placed) as bridge:

        async def place() -> tuple[str, str]:
            call, auth = placed.expect("echo", E164, "Alice")  # echo: the stream's audio comes back
            placed.placed(call, call_sid(1))
            return call.placed_id, auth

        placed_id, auth = bridge.run(place())

        async def streams():
            # Another call presenting the placement is refused; then the call itself is let in, once.
            thief = await open_stream(bridge.port, 2)  # callSid call_sid(2)
            await thief.start("echo", auth=auth, placed=placed_id)
            stolen = await _outcome(thief)
            genuine = await open_stream(bridge.port, 1)
            await genuine.start("echo", auth=auth, placed=placed_id)
            await genuine.play(tone(440, 0.2))
            echoed = [await asyncio.wait_for(genuine.ws.recv(), 5) for _ in range(5)]
            replay = await open_stream(bridge.port, 3)
            replay.call_sid = call_sid(1)
            await replay.start("echo", auth=auth, placed=placed_id)
            replayed = await _outcome(replay)
            parties = bridge.call(lambda: [s.caller for s in bridge.bridge.sessions.values()])
            await genuine.stop()
            return stolen, echoed, replayed, parties

        stolen, echoed, replayed, parties = asyncio.run(streams())
    assert stolen == (1008, "the 'placed' stream parameter belongs to another call")
    assert len(echoed) == 5
    # The record is spent once the stream started: a replay names no placement any more.
    assert replayed == (1008, "the 'placed' stream parameter names no call this bridge is placing")
    assert parties == ["+44 1595 123456 (called by Alice)"]


def test_a_placed_channel_is_not_open_to_streams_the_bridge_did_not_place():
    placed = PlacedCalls(SECRET_KEY)
    with ThreadedBridge(placed=placed) as bridge:

        async def place():
            call, _ = placed.expect(TARGET, E164, "Alice")
            placed.placed(call, call_sid(1))

        bridge.run(place())

        async def stream():
            intruder = await open_stream(bridge.port, 1)
            await intruder.start(TARGET)  # a valid /voice-style auth for this call and target
            return await _outcome(intruder)

        assert asyncio.run(stream()) == (1008, f"target {TARGET} is not configured")


# ----------------------------------------------------------------------------- the placer, against Twilio's stand-in


def placer_for(standin, streams: dict[str, list[tuple[str, str]]] | None = None) -> CallPlacer:
    config = PlacerConfig(call_from=CALL_FROM, policy=UK, stream_url=STREAM_URL, status_url=STATUS_URL)
    rest = TwilioRest(standin.account_sid, standin.auth_token, api_base=standin.url)
    return CallPlacer(config, rest, PlacedCalls(SECRET_KEY), lambda target: (streams or {}).get(target, []))


def stream_of(twiml: str) -> tuple[str, dict[str, str]]:
    """The <Connect><Stream> url and parameters of a TwiML document."""
    stream = ET.fromstring(twiml).find("./Connect/Stream")
    assert stream is not None
    return stream.get("url", ""), {p.get("name", ""): p.get("value", "") for p in stream.iter("Parameter")}


def test_a_call_is_placed_from_call_from_with_status_callbacks_and_its_stream_into_the_channel(standin):
    placer = placer_for(standin)
    placed = asyncio.run(placer.place(DIALLED, TARGET, "Alice"))
    request = standin.requests_seen[-1]
    assert (request.method, request.path) == ("POST", f"/2010-04-01/Accounts/{standin.account_sid}/Calls.json")
    assert (request.param("To"), request.param("From")) == (E164, CALL_FROM)
    assert request.param("StatusCallback") == STATUS_URL
    assert request.params["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    url, parameters = stream_of(request.param("Twiml") or "")
    assert url == STREAM_URL
    assert set(parameters) == {"target", "placed", "auth"} and parameters["target"] == TARGET
    assert placed.call_sid == standin.calls_to(E164)[0].sid and placed.to == E164
    # The auth is good for that placement and target only, and the record knows Twilio's CallSid.
    stream_auth.verify(SECRET_KEY, parameters["auth"], PLACED_PREFIX + parameters["placed"], TARGET)
    assert [(c.call_sid, c.target) for c in placer.placed.ringing_in(TARGET)] == [(placed.call_sid, TARGET)]


@pytest.mark.parametrize(
    ("dialled", "why"),
    [
        ("09098790000", "Sorry, calls to premium rate numbers are not allowed."),
        ("+33142685300", "Sorry, calls to that country are not allowed."),
        ("+881612345678", "satellite phones"),
        ("12", "Sorry, that is not a valid phone number."),
        (CALL_FROM, "That is the number the call would come from."),
    ],
)
def test_a_number_an_outgoing_call_may_not_dial_is_refused_before_twilio_hears_of_it(standin, dialled, why):
    placer = placer_for(standin)
    with pytest.raises(CallRefused) as refused:
        asyncio.run(placer.place(dialled, TARGET, "Alice"))
    assert why in refused.value.reason
    assert standin.requests_seen == [] and placer.placed.waiting() == 0


def test_twilio_refusing_the_call_is_its_own_message_and_leaves_no_placement(standin):
    placer = placer_for(standin)
    standin.fail_next(400, "The source phone number provided is not yet verified for your account.", 21210)
    with pytest.raises(TwilioRestError) as refused:
        asyncio.run(placer.place(DIALLED, TARGET, "Alice"))
    assert refused.value.message == "The source phone number provided is not yet verified for your account."
    assert placer.placed.waiting() == 0


def test_hang_up_ends_the_channels_streams_and_its_placed_calls_still_ringing(standin):
    rest = TwilioRest(standin.account_sid, standin.auth_token, api_base=standin.url)
    incoming = rest.create_call(CALL_FROM, "+441595000009", twiml.media_stream(STREAM_URL, {}))  # a stream's call
    standin.answer(incoming.sid)
    placer = placer_for(standin, {TARGET: [(incoming.sid, "+441595000009")]})

    async def scenario():
        ringing = await placer.place(DIALLED, TARGET, "Alice")
        elsewhere = await placer.place("01595 654321", f"discord:{VOICE}", "Bob")
        return ringing, elsewhere, await placer.hang_up(TARGET)

    ringing, elsewhere, ended = asyncio.run(scenario())
    hangups = [r for r in standin.requests_seen if r.param("Status") == "completed"]
    assert sorted(r.path.rsplit("/", 1)[1] for r in hangups) == sorted(
        [f"{incoming.sid}.json", f"{ringing.call_sid}.json"])
    assert {(e.call_sid, e.status, e.error) for e in ended} == {
        (incoming.sid, "completed", None), (ringing.call_sid, "canceled", None)}
    assert standin.call(ringing.call_sid).status == "canceled" and standin.call(elsewhere.call_sid).active
    assert placer.placed.ringing_in(TARGET) == []  # its stream, should it start now, is refused


def test_the_bridges_placer_is_made_from_the_settings(team_files):
    from shetphone.bridge.__main__ import call_placer
    from shetphone.settings import load_settings

    team_files.write_ini("allowed_countries = GB\n")
    text = team_files.ini.read_text().replace("text_channel =", f"call_from = {CALL_FROM}\ntext_channel =")
    team_files.ini.write_text(text)
    settings = load_settings(team_files.root, team_files.environ)
    placer = call_placer(settings, PlacedCalls(SECRET_KEY), lambda target: [])
    assert placer.config == PlacerConfig(
        call_from=CALL_FROM,
        policy=DialPolicy(allowed_countries=frozenset({"GB"}), allow_premium=False),
        stream_url=f"wss://{settings.public_host}/media/stream",
        status_url=f"{settings.public_url}/voice/status",
    )
    assert placer.rest.api_base == settings.twilio_api_base
