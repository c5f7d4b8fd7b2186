"""The WebSocket server Twilio opens Media Streams to: signed upgrade, stream auth, one session per stream.

Thin on purpose: the upgrade is checked here (path, ``X-Twilio-Signature``,
room for another call), so is each ``start`` (its ``auth`` parameter, once,
for its own call and target; the account; a configured target), messages are
parsed by :mod:`.protocol`, and the audio lives in :mod:`.session`. A bad
message is logged and skipped; one that makes the stream meaningless (a bad
target, a second stream with the same SID) ends that stream only. A refused
stream reaches no target: every check comes before one is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections import deque
from collections.abc import Callable, Container
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

from twilio.request_validator import RequestValidator
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..stream_auth import StreamAuthError, verify
from .placing import PLACED_PARAMETER, PlacedCalls
from .protocol import (
    MAX_MESSAGE_CHARS,
    Connected,
    Dtmf,
    Mark,
    Media,
    ProtocolError,
    Start,
    Stop,
    TargetSpec,
    parse_message,
    parse_target,
)
from .replay import ReplayGuard
from .session import HANGUP_MARK, Outbox, Session
from .targets import Target
from .targets.discord import DiscordHub, DiscordTarget
from .targets.echo import EchoTarget
from .targets.recorder import WavRecorder

log = logging.getLogger(__name__)

MEDIA_PATH = "/media/stream"
# Incoming frames websockets may hold before it stops reading the socket: the
# network, not our memory, then buffers a sender that outpaces us.
MAX_QUEUED_FRAMES = 32
# A stream that sends nothing but garbage is not Twilio: stop listening to it.
MAX_BAD_MESSAGES_IN_A_ROW = 100
# Logging every bad message of a flood would flood the log instead.
LOGGED_BAD_MESSAGES = 10
DTMF_KEPT = 32
# Audio for the caller that cannot be sent should wait in our bounded outbox,
# where the oldest is dropped, not in kernel and library buffers that hold
# seconds of stale audio: 16 KiB is about a second of media messages, plenty
# for any real round trip at 12.5 kB/s.
SEND_BUFFER_BYTES = 16 * 1024
WRITE_LIMIT_BYTES = 8 * 1024
# A peer that does not answer our close frame is not waited for long: shutdown
# (SIGTERM) should be quick, and the sessions are already over by then.
CLOSE_TIMEOUT = 2.0
# A target that ends the call (its last words sent) waits this long at most for
# Twilio to echo the mark that says they were played.
HANGUP_PLAYED_TIMEOUT = 5.0

# A stream that sends no media for this long is dead, or not Twilio (which
# sends 20 ms every 20 ms, silence included): end it.
MEDIA_TIMEOUT = 10.0  # seconds
DEFAULT_MAX_CALLS = 100
DEFAULT_MAX_CALL_SECONDS = 240 * 60

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008  # the peer broke the protocol, or a limit
CLOSE_UNAVAILABLE = 1011  # we cannot serve this stream
CLOSE_TRY_LATER = 1013  # no room for another call

TargetFactory = Callable[[TargetSpec, Start, str], Target]  # spec, start message, caller


class TargetUnavailable(Exception):
    """The stream names a target this bridge cannot serve (e.g. Discord without a token)."""


@dataclass(frozen=True)
class BridgeConfig:
    auth_token: str
    public_host: str  # host[:port] of public_url: what Twilio signed the wss:// URL with
    account_sid: str  # TWILIO_ACCOUNT_SID: a start from any other account is refused
    secret_key: str  # the app's secret key, which signs the streams' auth parameter
    # The targets a stream may name ("echo", "discord:ID"): those of [shetphone:numbers].
    # Anything with `in` will do, so calls placed from Discord can add theirs.
    allowed_targets: Container[str]
    record_dir: Path | None = None
    max_calls: int = DEFAULT_MAX_CALLS  # streams at once; more are refused
    max_call_seconds: float = DEFAULT_MAX_CALL_SECONDS  # a stream is ended after this long
    media_timeout: float = MEDIA_TIMEOUT  # a stream without media for this long is ended


def make_targets(hub: DiscordHub | None) -> TargetFactory:
    """The bridge's targets: echo always, Discord when there is a bot (``hub``)."""

    def make_target(spec: TargetSpec, start: Start, caller: str) -> Target:
        if spec.kind == "echo":
            return EchoTarget()
        if hub is None or spec.channel_id is None:
            raise TargetUnavailable(f"target {spec} needs DISCORD_BOT_TOKENS (or DISCORD_BOT_TOKEN), which is not set")
        # The server admits a "placed" stream only for a call it placed itself (placing.py).
        outgoing = PLACED_PARAMETER in start.custom_parameters
        return DiscordTarget(hub, spec.channel_id, start.stream_sid, caller, outgoing=outgoing)

    return make_target


class Bridge:
    """Every stream the bridge serves, and the server they arrive on."""

    def __init__(
        self,
        config: BridgeConfig,
        make_target: TargetFactory | None = None,
        *,
        on_tick: Callable[[Session, bytes], None] | None = None,
        replay: ReplayGuard | None = None,
        placed: PlacedCalls | None = None,
    ) -> None:
        self.config = config
        self.make_target = make_target or make_targets(None)
        self.on_tick = on_tick
        # Owned: closed by stop(). In memory only unless given one with a file.
        self.replay = replay if replay is not None else ReplayGuard()
        # The calls the bridge placed itself (/call), whose streams it lets in; none without.
        self.placed = placed if placed is not None else PlacedCalls(config.secret_key)
        self.sessions: dict[str, Session] = {}
        self.server: Server | None = None
        self._validator = RequestValidator(config.auth_token)
        self.connections: set[_Stream] = set()  # every websocket being served, started or not

    def target_allowed(self, target: str) -> bool:
        """May a stream that the bridge did not place name ``target``? (The configured targets.)"""
        return target in self.config.allowed_targets

    def calls_to(self, target: str) -> list[tuple[str, str]]:
        """The (CallSid, other party) of every stream into ``target`` now, for /hangup."""
        return [(s.call_sid, s.caller) for s in self.sessions.values() if s.target_name == target]

    # ----------------------------------------------------------------- the upgrade

    def check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Before the handshake: right path and a valid Twilio signature, else 404 / 403."""
        if urlsplit(request.path).path != MEDIA_PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        signature = request.headers.get("X-Twilio-Signature")
        url = f"wss://{self.config.public_host}{request.path}"
        if not signature or not self._validator.validate(url, {}, signature):
            log.warning(
                "refused %s from %s: %s X-Twilio-Signature",
                request.path,
                _peer(connection),
                "invalid" if signature else "no",
            )
            return connection.respond(HTTPStatus.FORBIDDEN, "Forbidden\n")
        if len(self.connections) >= self.config.max_calls:
            # Counted by connection, started or not: idle ones cannot pile up either.
            log.warning(
                "refused %s from %s: already %d streams (max_calls)", request.path, _peer(connection),
                len(self.connections),
            )
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "Too many calls\n")
        return None

    # ----------------------------------------------------------------- serving

    async def start(self, host: str, port: int) -> Server:
        """Listen; ``port`` 0 picks a free port (see :attr:`port`)."""
        self.server = await serve(
            self.handle,
            host,
            port,
            process_request=self.check_request,
            max_size=MAX_MESSAGE_CHARS,
            max_queue=MAX_QUEUED_FRAMES,
            compression=None,  # 20 ms of audio per message: deflate costs more than it saves
            write_limit=WRITE_LIMIT_BYTES,
            close_timeout=CLOSE_TIMEOUT,
        )
        return self.server

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """End every session (recordings finalised first), then close the connections (going away)."""
        for session in list(self.sessions.values()):
            await session.close()
        if self.server is not None:
            self.server.close(close_connections=True)
            closed = asyncio.ensure_future(self.server.wait_closed())  # the handlers end any stream started meanwhile
            if not (await asyncio.wait({closed}, timeout=2 * CLOSE_TIMEOUT))[0]:
                # A peer that stopped reading holds websockets' close for ever (see close_websocket).
                for stream in list(self.connections):
                    stream.websocket.transport.abort()
                await closed
        self.sessions.clear()
        self.replay.close()

    async def handle(self, websocket: ServerConnection) -> None:
        sock = websocket.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        stream = _Stream(self, websocket)
        self.connections.add(stream)
        try:
            await stream.run()
        finally:
            self.connections.discard(stream)


class _Stream:
    """One websocket connection: Twilio's messages for one stream, in order."""

    def __init__(self, bridge: Bridge, websocket: ServerConnection) -> None:
        self.bridge = bridge
        self.websocket = websocket
        self.session: Session | None = None
        self.outbox = Outbox()
        self.dtmf: deque[str] = deque(maxlen=DTMF_KEPT)
        self._sender: asyncio.Task[None] | None = None
        self._bad_in_a_row = 0
        self._bad_total = 0
        self._close_code, self._close_reason = CLOSE_NORMAL, ""
        self._name = _peer(websocket)
        # The watchdog's deadlines, on the loop's clock: media_timeout after the
        # last media (or the connection), max_call_seconds after the start.
        self._loop = asyncio.get_running_loop()
        self._last_media = self._loop.time()
        self._ends_at = math.inf
        self._rearm = asyncio.Event()  # a deadline moved, or a start finished
        self._watchdog: asyncio.Task[None] | None = None
        self._starting = False
        self._ended = False
        self._hangup: asyncio.Task[None] | None = None
        self._played = asyncio.Event()  # Twilio echoed HANGUP_MARK

    async def run(self) -> None:
        self._watchdog = asyncio.create_task(self._watch(), name=f"watchdog {self._name}")
        try:
            async for raw in self.websocket:
                try:
                    message = parse_message(raw)
                except ProtocolError as exc:
                    if self._bad(str(exc)):
                        return
                    continue
                self._bad_in_a_row = 0
                if not await self._dispatch(message):
                    return
        except ConnectionClosed as exc:
            log.info("%s: connection lost (%s)", self._name, exc)
        finally:
            await self._end()
            # When the watchdog ended the stream, its session is closed once this returns.
            await asyncio.wait({self._watchdog})

    async def _watch(self) -> None:
        """End the stream when it sends no media for media_timeout, or has lasted max_call_seconds."""
        config = self.bridge.config
        while True:
            self._rearm.clear()
            if self._ended:
                return
            if self._starting:  # a start is being checked: never pull the session from under it
                await self._rearm.wait()
                continue
            now = self._loop.time()
            silent_until = self._last_media + config.media_timeout
            if now >= self._ends_at:
                reason = f"longer than max_call_minutes ({_duration(config.max_call_seconds)})"
                break
            if now >= silent_until:
                reason = f"no media for {config.media_timeout:g} s"
                break
            # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a cancel that
            # arrives as the event is set, and the watchdog would outlive its stream.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(silent_until, self._ends_at) - now):
                    await self._rearm.wait()
        log.warning("%s: %s; ending the stream", self._name, reason)
        self._close_code, self._close_reason = CLOSE_POLICY, reason
        await self._end()

    async def _dispatch(self, message: object) -> bool:
        """Act on one message; False ends the stream."""
        match message:
            case Media():
                if self.session is None:
                    return not self._bad("media before start")
                if message.stream_sid != self.session.stream_sid:
                    return not self._bad(f"media for stream {message.stream_sid}, not {self.session.stream_sid}")
                self._last_media = self._loop.time()  # the watchdog reads it when it wakes: no timer per message
                if message.track == "inbound":  # a both_tracks stream also carries our own audio
                    self.session.receive_media(message.payload)
                return True
            case Start():
                return await self._start(message)
            case Connected():
                log.debug("%s: connected (protocol %s %s)", self._name, message.protocol, message.version)
                return True
            case Dtmf():
                if self.session is None:  # logged as a bad message: capped, so a peer cannot flood the log
                    return not self._bad("dtmf before start")
                log.info("%s: DTMF %s", self._name, message.digit)
                self.dtmf.append(message.digit)
                return True
            case Mark():
                log.debug("%s: mark %r played", self._name, message.name)
                if message.name == HANGUP_MARK:
                    self._played.set()
                return True
            case Stop():
                # The session ends (recording finalised) before the websocket closes.
                log.info("%s: stop", self._name)
                self._close_code, self._close_reason = CLOSE_NORMAL, "stream stopped"
                return False
        return True

    async def _start(self, start: Start) -> bool:
        if self.session is not None:
            return not self._bad("a second start on one stream")
        self._name = f"stream {start.stream_sid}"
        self._starting = True
        try:
            return await self._check_and_open(start)
        finally:
            self._starting = False
            self._rearm.set()

    async def _check_and_open(self, start: Start) -> bool:
        """Every check a start must pass, then its session; a refused stream reaches no target."""
        bridge, config = self.bridge, self.bridge.config
        parameters = start.custom_parameters
        caller = parameters.get("from") or "unknown caller"
        target_text = parameters.get("target")
        try:
            spec = parse_target(target_text)
        except ProtocolError as exc:
            return await self._refuse(CLOSE_POLICY, str(exc))
        assert target_text is not None
        if start.account_sid != config.account_sid:
            return await self._refuse(CLOSE_POLICY, f"accountSid {start.account_sid or '(none)'} is not ours")
        placed = None
        try:
            if (placed_id := parameters.get(PLACED_PARAMETER)) is not None:
                # A call the bridge placed (/call): its own record admits that call to that target only.
                auth = parameters.get("auth")
                placed, grant = await bridge.placed.admit(placed_id, start.call_sid, target_text, auth)
                caller = placed.party
            elif not bridge.target_allowed(target_text):
                return await self._refuse(CLOSE_POLICY, f"target {spec} is not configured")
            else:
                grant = verify(config.secret_key, parameters.get("auth"), start.call_sid, target_text)
        except StreamAuthError as exc:
            return await self._refuse(CLOSE_POLICY, str(exc))
        if self._ended:  # the peer went away while a placed call's CallSid was awaited
            return False
        if start.stream_sid in bridge.sessions:
            return await self._refuse(CLOSE_POLICY, f"stream {start.stream_sid} is already running")
        try:
            # In a thread: the claim is fsync'd, which must not stall every call's clock.
            fresh = await asyncio.to_thread(bridge.replay.claim, grant.key, grant.expires)
        except OSError as exc:
            # Fail closed: a use that is not on disk could be replayed after a restart.
            log.error("%s: cannot record its auth as used: %s", self._name, exc)
            return await self._refuse(CLOSE_UNAVAILABLE, "cannot record the stream's auth as used")
        if not fresh:
            return await self._refuse(CLOSE_POLICY, "the 'auth' stream parameter was used already")
        if placed is not None:
            bridge.placed.streaming(placed)
        if self._ended:  # the peer went away while the claim was written
            return False
        if start.stream_sid in bridge.sessions:
            return await self._refuse(CLOSE_POLICY, f"stream {start.stream_sid} is already running")
        if len(bridge.sessions) >= config.max_calls:
            # Upgrades that raced past the check in check_request end here.
            return await self._refuse(CLOSE_TRY_LATER, f"already {len(bridge.sessions)} calls (max_calls)")
        try:
            target = bridge.make_target(spec, start, caller)
        except TargetUnavailable as exc:
            return await self._refuse(CLOSE_UNAVAILABLE, str(exc))
        recorder = None
        if config.record_dir is not None:
            try:
                recorder = WavRecorder.for_call(config.record_dir, start.call_sid, start.stream_sid)
            except OSError as exc:
                log.error("stream %s: cannot record into %s: %s", start.stream_sid, config.record_dir, exc)
        session = Session(
            start, target, self.outbox, recorder, caller=caller, on_tick=bridge.on_tick, on_hangup=self._hang_up
        )
        self.session = session
        bridge.sessions[start.stream_sid] = session
        self._ends_at = self._loop.time() + config.max_call_seconds
        log.info("%s: call %s from %s to %s", self._name, start.call_sid, caller, spec)
        self._sender = asyncio.create_task(self._send_outbox(), name=f"sender {start.stream_sid}")
        await session.open()
        return True

    def _hang_up(self, reason: str) -> None:
        """The target ended the call: close the stream once Twilio has played its last words."""
        if self._hangup is None:
            self._hangup = asyncio.create_task(self._close_when_played(reason), name=f"hangup {self._name}")

    async def _close_when_played(self, reason: str) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._played.wait(), HANGUP_PLAYED_TIMEOUT)
        log.info("%s: ended by its target: %s", self._name, reason)
        self._close_code, self._close_reason = CLOSE_NORMAL, reason[:120]
        # <Connect><Stream> ends with the websocket, and with it the call.
        await close_websocket(self.websocket, CLOSE_NORMAL, reason[:120])

    async def _refuse(self, code: int, reason: str) -> bool:
        log.error("%s: stream refused: %s", self._name, reason)
        await close_websocket(self.websocket, code, reason[:120])  # a close reason is at most 123 bytes
        return False

    def _bad(self, reason: str) -> bool:
        """Log a bad message; True when there have been so many that the stream should end."""
        self._bad_in_a_row += 1
        self._bad_total += 1
        if self._bad_total <= LOGGED_BAD_MESSAGES or self._bad_total % 100 == 0:
            log.warning("%s: bad message skipped (%d so far): %s", self._name, self._bad_total, reason)
        if self._bad_in_a_row >= MAX_BAD_MESSAGES_IN_A_ROW:
            log.error("%s: %d bad messages in a row; ending the stream", self._name, self._bad_in_a_row)
            self._close_code, self._close_reason = CLOSE_POLICY, "too many bad messages"
            return True
        return False

    async def _send_outbox(self) -> None:
        """Audio for the caller, in order; a stalled reader only fills the bounded outbox."""
        try:
            while True:
                message = await self.outbox.get()
                await self.websocket.send(message)
        except ConnectionClosed:
            pass

    async def _end(self) -> None:
        """End the session, then the websocket; once, whoever calls first (the stream or its watchdog)."""
        if self._ended:
            return
        self._ended = True
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        if self._sender is not None:
            self._sender.cancel()
        if self._hangup is not None:
            self._hangup.cancel()  # waiting for a mark that no longer matters; _end closes below
        session, self.session = self.session, None
        if session is not None:
            if self.bridge.sessions.get(session.stream_sid) is session:
                del self.bridge.sessions[session.stream_sid]
            await session.close()
        await close_websocket(self.websocket, self._close_code, self._close_reason)


async def close_websocket(websocket: ServerConnection, code: int, reason: str) -> None:
    """``websocket.close()``, bounded: websockets waits for its write buffer to drain before its own
    close timeout starts, so a peer that stopped reading would hold the close (and the stream's place
    under max_calls) for as long as its TCP connection lives."""
    try:
        async with asyncio.timeout(2 * CLOSE_TIMEOUT):
            await websocket.close(code, reason)
    except TimeoutError:
        websocket.transport.abort()


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds % 60 == 0 else f"{seconds:g} s"


def _peer(connection: ServerConnection) -> str:
    try:
        host, port = connection.remote_address[:2]
    except (TypeError, ValueError):
        return "connection"
    return f"{host}:{port}"
