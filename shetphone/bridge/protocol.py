"""Twilio Media Streams messages, in and out. Pure: no I/O, no asyncio.

Twilio sends JSON text frames: ``connected``, then ``start`` (stream and call
identifiers, the ``<Parameter>`` values), then ``media`` every 20 ms (base64
mu-law, 8 kHz mono), ``dtmf``, ``mark`` (a mark we sent has been played) and
finally ``stop``. On a bidirectional stream we send ``media``, ``mark`` and
``clear`` back. Every way a message can be wrong raises :class:`ProtocolError`
with a one-line reason, so the server can log it and decide what to drop.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# One media message carries 20 ms (160 bytes) in practice; accept any size the
# framer can re-cut, but not so much that one message could flood a buffer.
MAX_MEDIA_PAYLOAD = 8000  # bytes of mu-law: one second
MAX_MESSAGE_CHARS = 64 * 1024
# A SID becomes a file name (the recording) and a log field: keep it to letters and digits.
SID = re.compile(r"^[A-Za-z0-9]{2,64}$")
DTMF_DIGIT = re.compile(r"^[0-9*#A-Da-d]$")
MAX_PARAMETERS = 32
MAX_PARAMETER_CHARS = 1024


class ProtocolError(ValueError):
    """A message that is not what Twilio sends; str() is one clear line."""


@dataclass(frozen=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    encoding: str = "audio/x-mulaw"
    sample_rate: int = 8000
    channels: int = 1


@dataclass(frozen=True)
class Media:
    stream_sid: str
    track: str
    chunk: int | None
    timestamp: int | None
    payload: bytes  # mu-law, 8 kHz mono


@dataclass(frozen=True)
class Dtmf:
    stream_sid: str
    track: str
    digit: str


@dataclass(frozen=True)
class Mark:
    stream_sid: str
    name: str


@dataclass(frozen=True)
class Stop:
    stream_sid: str
    call_sid: str
    account_sid: str


Message = Connected | Start | Media | Dtmf | Mark | Stop


@dataclass(frozen=True)
class TargetSpec:
    """Where a stream's audio goes: the ``target`` stream parameter, parsed."""

    kind: str  # "discord" or "echo"
    channel_id: int | None = None

    def __str__(self) -> str:
        return f"discord:{self.channel_id}" if self.kind == "discord" else self.kind


DISCORD_TARGET = re.compile(r"^discord:([0-9]{15,21})$")


def parse_target(value: str | None) -> TargetSpec:
    """``discord:CHANNEL_ID`` or ``echo``, as the TwiML builder writes them."""
    if not value:
        raise ProtocolError("start has no 'target' custom parameter")
    if value == "echo":
        return TargetSpec("echo")
    match = DISCORD_TARGET.match(value)
    if match:
        return TargetSpec("discord", int(match.group(1)))
    raise ProtocolError(f"unknown target {_short(value)} (expected discord:CHANNEL_ID or echo)")


def _short(value: object, limit: int = 60) -> str:
    """repr() of untrusted input, cut so that a hostile message cannot flood the log."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _object(container: Mapping[str, object], key: str, event: str) -> Mapping[str, object]:
    value = container.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f"{event}: '{key}' is missing or not an object")
    return value


def _string(container: Mapping[str, object], key: str, event: str, *, required: bool = True) -> str:
    value = container.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ProtocolError(f"{event}: '{key}' is missing or not a string")
    return value


def _sid(container: Mapping[str, object], key: str, event: str, *, required: bool = True) -> str:
    value = _string(container, key, event, required=required)
    if value and not SID.match(value):
        raise ProtocolError(f"{event}: '{key}' {_short(value)} is not a SID")
    return value


def _optional_int(container: Mapping[str, object], key: str, event: str) -> int | None:
    """Twilio writes counters as decimal strings ("chunk": "3"); accept ints too."""
    value = container.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ProtocolError(f"{event}: '{key}' is not a number")
    if isinstance(value, str):
        if not value.isascii() or not value.isdigit() or len(value) > 18:
            raise ProtocolError(f"{event}: '{key}' {_short(value)} is not a number")
        return int(value)
    return value


def _parameters(start: Mapping[str, object]) -> Mapping[str, str]:
    raw = start.get("customParameters", {})
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ProtocolError("start: 'customParameters' is not an object")
    if len(raw) > MAX_PARAMETERS:
        raise ProtocolError(f"start: {len(raw)} custom parameters (at most {MAX_PARAMETERS})")
    parameters: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str) or len(key) > MAX_PARAMETER_CHARS or len(value) > MAX_PARAMETER_CHARS:
            raise ProtocolError(f"start: custom parameter {_short(key)} is not a short string")
        parameters[key] = value
    return MappingProxyType(parameters)


def decode_payload(text: str) -> bytes:
    """Base64 (standard alphabet, padded) to bytes; anything else is an error."""
    if len(text) > MAX_MEDIA_PAYLOAD * 4 // 3 + 4:
        raise ProtocolError(f"media: payload longer than {MAX_MEDIA_PAYLOAD} bytes")
    try:
        payload = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("media: payload is not valid base64") from None
    if not payload:
        raise ProtocolError("media: payload is empty")
    if len(payload) > MAX_MEDIA_PAYLOAD:
        raise ProtocolError(f"media: payload longer than {MAX_MEDIA_PAYLOAD} bytes")
    return payload


def parse_message(raw: str | bytes) -> Message:
    """One websocket frame from Twilio -> a message dataclass, or ProtocolError."""
    if isinstance(raw, bytes):
        # Twilio sends text frames only; a binary one is a client that is not Twilio.
        raise ProtocolError("binary frame (Twilio sends JSON text)")
    if len(raw) > MAX_MESSAGE_CHARS:
        raise ProtocolError(f"message longer than {MAX_MESSAGE_CHARS} characters")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise ProtocolError(f"not JSON: {_short(raw)}") from None
    except ValueError:
        # Python refuses to convert an integer literal of more than 4,300 digits.
        raise ProtocolError("a number of more than 4,300 digits") from None
    if not isinstance(data, dict):
        raise ProtocolError("not a JSON object")
    event = data.get("event")
    if not isinstance(event, str):
        raise ProtocolError("no 'event' field")
    parser = _PARSERS.get(event)
    if parser is None:
        raise ProtocolError(f"unknown event {_short(event)}")
    return parser(data)


def _parse_connected(data: Mapping[str, object]) -> Connected:
    return Connected(
        protocol=_string(data, "protocol", "connected", required=False),
        version=_string(data, "version", "connected", required=False),
    )


def _parse_start(data: Mapping[str, object]) -> Start:
    start = _object(data, "start", "start")
    stream_sid = _sid(start, "streamSid", "start", required=False) or _sid(data, "streamSid", "start")
    tracks = start.get("tracks", ["inbound"])
    if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
        raise ProtocolError("start: 'tracks' is not a list of strings")
    media_format = start.get("mediaFormat") or {}
    if not isinstance(media_format, dict):
        raise ProtocolError("start: 'mediaFormat' is not an object")
    encoding = media_format.get("encoding", "audio/x-mulaw")
    sample_rate = media_format.get("sampleRate", 8000)
    channels = media_format.get("channels", 1)
    if (encoding, sample_rate, channels) != ("audio/x-mulaw", 8000, 1):
        raise ProtocolError(
            f"start: media format {_short(encoding)} {_short(sample_rate)} Hz x{_short(channels)} "
            "is not audio/x-mulaw 8000 Hz mono"
        )
    return Start(
        stream_sid=stream_sid,
        call_sid=_sid(start, "callSid", "start"),
        account_sid=_sid(start, "accountSid", "start", required=False),
        tracks=tuple(tracks),
        custom_parameters=_parameters(start),
    )


def _parse_media(data: Mapping[str, object]) -> Media:
    media = _object(data, "media", "media")
    return Media(
        stream_sid=_sid(data, "streamSid", "media"),
        track=_string(media, "track", "media", required=False) or "inbound",
        chunk=_optional_int(media, "chunk", "media"),
        timestamp=_optional_int(media, "timestamp", "media"),
        payload=decode_payload(_string(media, "payload", "media")),
    )


def _parse_dtmf(data: Mapping[str, object]) -> Dtmf:
    dtmf = _object(data, "dtmf", "dtmf")
    digit = _string(dtmf, "digit", "dtmf")
    if not DTMF_DIGIT.match(digit):
        raise ProtocolError(f"dtmf: {_short(digit)} is not a DTMF digit")
    return Dtmf(
        stream_sid=_sid(data, "streamSid", "dtmf"),
        track=_string(dtmf, "track", "dtmf", required=False),
        digit=digit,
    )


def _parse_mark(data: Mapping[str, object]) -> Mark:
    mark = _object(data, "mark", "mark")
    return Mark(stream_sid=_sid(data, "streamSid", "mark"), name=_string(mark, "name", "mark"))


def _parse_stop(data: Mapping[str, object]) -> Stop:
    stop = data.get("stop") or {}
    if not isinstance(stop, dict):
        raise ProtocolError("stop: 'stop' is not an object")
    return Stop(
        stream_sid=_sid(data, "streamSid", "stop"),
        call_sid=_sid(stop, "callSid", "stop", required=False),
        account_sid=_sid(stop, "accountSid", "stop", required=False),
    )


_PARSERS = {
    "connected": _parse_connected,
    "start": _parse_start,
    "media": _parse_media,
    "dtmf": _parse_dtmf,
    "mark": _parse_mark,
    "stop": _parse_stop,
}


# --------------------------------------------------------------------------- outgoing


def media_message(stream_sid: str, payload: bytes) -> str:
    """20 ms of mu-law for the caller, on a bidirectional stream."""
    encoded = base64.b64encode(payload).decode("ascii")
    return json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": encoded}})


def mark_message(stream_sid: str, name: str) -> str:
    """Twilio answers with a mark of the same name once the audio before it has played."""
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    """Drop the audio Twilio has buffered for the caller and not played yet."""
    return json.dumps({"event": "clear", "streamSid": stream_sid})
