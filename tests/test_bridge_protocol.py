"""Twilio Media Streams messages: parsing (every way it can be wrong) and the messages we send."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shetphone.bridge.protocol import (
    MAX_MEDIA_PAYLOAD,
    Connected,
    Dtmf,
    Mark,
    Media,
    ProtocolError,
    Start,
    Stop,
    TargetSpec,
    clear_message,
    mark_message,
    media_message,
    parse_message,
    parse_target,
)

STREAM = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL = "CA362d04e1f1a8d50b4ad7b3f3ea1ca2ce"
ACCOUNT = "AC00000000000000000000000000000000"

# The shapes of Twilio's documented examples.
CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
START = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": ACCOUNT,
        "streamSid": STREAM,
        "callSid": CALL,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"target": "discord:123456789012345678", "from": "+441595123456"},
    },
    "streamSid": STREAM,
}
MEDIA = {
    "event": "media",
    "sequenceNumber": "3",
    "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": base64.b64encode(b"\xff" * 160).decode()},
    "streamSid": STREAM,
}
DTMF = {"event": "dtmf", "streamSid": STREAM, "sequenceNumber": "5", "dtmf": {"track": "inbound_track", "digit": "1"}}
MARK = {"event": "mark", "sequenceNumber": "4", "streamSid": STREAM, "mark": {"name": "my label"}}
STOP = {"event": "stop", "sequenceNumber": "5", "streamSid": STREAM, "stop": {"accountSid": ACCOUNT, "callSid": CALL}}


def with_changes(message: dict, path: tuple[str, ...], value: object) -> str:
    """`message` as JSON with the field at `path` set to `value` (or removed if value is ...)."""
    data = json.loads(json.dumps(message))
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return json.dumps(data)


def test_connected():
    assert parse_message(json.dumps(CONNECTED)) == Connected(protocol="Call", version="1.0.0")


def test_start_carries_the_call_and_the_parameters():
    start = parse_message(json.dumps(START))
    assert isinstance(start, Start)
    assert (start.stream_sid, start.call_sid, start.account_sid) == (STREAM, CALL, ACCOUNT)
    assert start.tracks == ("inbound",)
    assert dict(start.custom_parameters) == {"target": "discord:123456789012345678", "from": "+441595123456"}


def test_media_decodes_the_payload():
    media = parse_message(json.dumps(MEDIA))
    assert media == Media(stream_sid=STREAM, track="inbound", chunk=1, timestamp=5, payload=b"\xff" * 160)


def test_media_accepts_any_size_the_framer_can_recut():
    odd = with_changes(MEDIA, ("media", "payload"), base64.b64encode(b"\x7f" * 161).decode())
    assert parse_message(odd).payload == b"\x7f" * 161


def test_dtmf_mark_stop():
    assert parse_message(json.dumps(DTMF)) == Dtmf(stream_sid=STREAM, track="inbound_track", digit="1")
    assert parse_message(json.dumps(MARK)) == Mark(stream_sid=STREAM, name="my label")
    assert parse_message(json.dumps(STOP)) == Stop(stream_sid=STREAM, call_sid=CALL, account_sid=ACCOUNT)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ("{}", "no 'event'"),
        ('{"event": "hello"}', "unknown event 'hello'"),
        (b'{"event": "connected"}', "binary frame"),
        (with_changes(MEDIA, ("media", "payload"), "!!!not base64!!!"), "not valid base64"),
        (with_changes(MEDIA, ("media", "payload"), "AAA"), "not valid base64"),  # bad padding
        (with_changes(MEDIA, ("media", "payload"), ""), "payload is empty"),
        (
            with_changes(MEDIA, ("media", "payload"), base64.b64encode(bytes(MAX_MEDIA_PAYLOAD + 1)).decode()),
            "longer than",
        ),
        (with_changes(MEDIA, ("media", "payload"), ...), "'payload' is missing"),
        (with_changes(MEDIA, ("media",), "x"), "'media' is missing or not an object"),
        (with_changes(MEDIA, ("streamSid",), ...), "'streamSid' is missing"),
        (with_changes(MEDIA, ("media", "chunk"), "-1"), "'chunk'"),
        (with_changes(START, ("start", "callSid"), "../../etc/passwd"), "is not a SID"),
        (with_changes(START, ("start", "callSid"), ...), "'callSid' is missing"),
        (with_changes(START, ("start", "mediaFormat", "sampleRate"), 16000), "is not audio/x-mulaw 8000 Hz mono"),
        (with_changes(START, ("start", "customParameters"), ["target"]), "'customParameters' is not an object"),
        (with_changes(START, ("start", "customParameters", "target"), 5), "is not a short string"),
        (with_changes(START, ("start", "tracks"), "inbound"), "'tracks' is not a list"),
        (with_changes(DTMF, ("dtmf", "digit"), "12"), "is not a DTMF digit"),
        (with_changes(MARK, ("mark", "name"), ...), "'name' is missing"),
        (with_changes(STOP, ("stop",), "x"), "'stop' is not an object"),
        ("[" * 100_000, "longer than"),
        ('{"event": "media", "chunk": 1' + "0" * 5000 + "}", "a number of more than 4,300 digits"),
    ],
)
def test_bad_messages_raise_one_clear_line(raw, reason):
    with pytest.raises(ProtocolError) as caught:
        parse_message(raw)
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message and len(message) < 200


def test_deep_nesting_is_a_protocol_error_not_a_crash():
    with pytest.raises(ProtocolError):
        parse_message("[" * 5000 + "]" * 5000)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("echo", TargetSpec("echo")), ("discord:123456789012345678", TargetSpec("discord", 123456789012345678))],
)
def test_targets(value, expected):
    assert parse_target(value) == expected
    assert str(parse_target(value)) == value


@pytest.mark.parametrize("value", [None, "", "discord:", "discord:12", "discord:abc", "Echo", "wav:/tmp", "sip:x"])
def test_bad_targets(value):
    with pytest.raises(ProtocolError):
        parse_target(value)


def test_outgoing_media_round_trips_through_our_own_parser():
    payload = bytes(range(160))
    sent = json.loads(media_message(STREAM, payload))
    assert sent == {"event": "media", "streamSid": STREAM, "media": {"payload": base64.b64encode(payload).decode()}}
    echoed = parse_message(json.dumps({**sent, "media": {**sent["media"], "track": "outbound"}}))
    assert echoed.payload == payload and echoed.track == "outbound"


def test_outgoing_mark_and_clear():
    assert json.loads(mark_message(STREAM, "end")) == {"event": "mark", "streamSid": STREAM, "mark": {"name": "end"}}
    assert json.loads(clear_message(STREAM)) == {"event": "clear", "streamSid": STREAM}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=200),
        st.binary(max_size=50),
        json_values.map(json.dumps),
        st.fixed_dictionaries(
            {"event": st.sampled_from(["connected", "start", "media", "dtmf", "mark", "stop"])},
            optional={
                "streamSid": st.text(max_size=40) | st.just(STREAM),
                "start": json_values,
                "media": json_values | st.fixed_dictionaries({"payload": st.text(max_size=40)}),
                "dtmf": json_values,
                "mark": json_values,
                "stop": json_values,
            },
        ).map(json.dumps),
    )
)
def test_nothing_but_protocol_errors_come_out_of_the_parser(raw):
    try:
        message = parse_message(raw)
    except ProtocolError as exc:
        assert str(exc)
    else:
        assert isinstance(message, Connected | Start | Media | Dtmf | Mark | Stop)
