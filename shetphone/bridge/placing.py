"""Calls the bridge places itself (``/call`` from Discord), and how their streams are let in.

A call placed with Twilio's Calls resource runs the TwiML sent with it, and
that TwiML, with its ``<Stream>``'s ``auth``, is written before Twilio has
given the call a CallSid: it cannot be minted over the CallSid as ``/voice``
mints it. So, for each call it places, the bridge:

1. makes a random placement id, sent as the ``placed`` stream parameter, and
   mints ``auth`` over ``placed:ID`` and the target (where ``/voice`` puts a
   CallSid, which never starts with ``placed:``);
2. records the CallSid Twilio answers Calls.json with against that id;
3. admits a ``start`` naming a ``placed`` id only when the bridge placed that
   id, for that very target, Twilio's CallSid for it is the start's own
   ``callSid`` (waiting a moment for the REST answer should the stream
   overtake it), and the ``auth`` verifies for ``placed:ID`` and the target.
   The server's replay guard then lets the value in once, as any other.

So a target is let in only when it is configured or the bridge placed a call
to it itself, that placement only for its own call, and a replayed ``auth`` or
upgrade signature is worth nothing (SPEC §5). The records live in memory: a
call placed before a restart of the bridge is refused its stream (it fails
closed), and a record is dropped when its stream starts, when it is hung up,
or when its ``auth`` expires.

:class:`CallPlacer` is ``/call`` and ``/hangup`` without Discord: the number
checked as any outgoing call is, the call placed through :mod:`shetphone.twilio_rest`,
the calls of a channel ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .. import phone_numbers, stream_auth, twiml
from ..dialing import DialPolicy, DialRefused, check_destination
from ..stream_auth import StreamAuthError, StreamGrant
from ..twilio_rest import CALL_EVENTS, CallInfo, TwilioRestError

log = logging.getLogger(__name__)

PLACED_PARAMETER = "placed"  # the stream parameter that names a placement
PLACED_PREFIX = "placed:"  # what auth is minted over instead of a CallSid
# The stream starts when the far end answers: Twilio rings for 60 s by default,
# after queueing the call for as long as the account's calls per second make it.
PLACED_AUTH_TTL = 600  # seconds
# A start that overtakes Twilio's REST answer waits this long for the CallSid;
# the REST request itself gives up after 5 s (twilio_rest.REST_TIMEOUT).
CALL_SID_WAIT = 6.0  # seconds
MAX_PLACED = 100  # placements not yet streaming: each is a real call, and memory stays bounded
FINAL_STATUSES = frozenset({"completed", "canceled", "busy", "no-answer", "failed"})


@dataclass(eq=False)
class PlacedCall:
    """One call the bridge asked Twilio to place, until its stream starts."""

    placed_id: str
    target: str  # the stream target, "discord:ID"
    to: str  # E.164
    placed_by: str  # who asked, in words
    expires: int  # Unix seconds: the auth's expiry
    call_sid: str | None = None  # Twilio's, once Calls.json has answered
    known: asyncio.Event = field(default_factory=asyncio.Event)  # call_sid is set, or the placement withdrawn

    @property
    def party(self) -> str:
        """The other party, as the text channel's notices name it."""
        return f"{phone_numbers.display(self.to)} (called by {self.placed_by})"


class PlacedCalls:
    """The calls the bridge placed whose streams have not started yet; the event loop's only."""

    def __init__(
        self,
        secret_key: str,
        *,
        ttl: int = PLACED_AUTH_TTL,
        call_sid_wait: float = CALL_SID_WAIT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret_key = secret_key
        self._ttl = ttl
        self._call_sid_wait = call_sid_wait
        self._clock = clock
        self._calls: dict[str, PlacedCall] = {}

    def waiting(self) -> int:
        """How many placements wait for their stream (an object, not a container: never falsy)."""
        self._prune()
        return len(self._calls)

    def expect(self, target: str, to: str, placed_by: str) -> tuple[PlacedCall, str]:
        """A call about to be placed to ``to`` for ``target``: its record and its stream's ``auth``."""
        self._prune()
        if len(self._calls) >= MAX_PLACED:
            raise OverflowError(f"already {len(self._calls)} calls placed and not yet answered")
        placed_id = secrets.token_urlsafe(18)
        now = self._clock()
        auth = stream_auth.mint(self._secret_key, PLACED_PREFIX + placed_id, target, ttl=self._ttl, now=now)
        call = PlacedCall(placed_id, target, to, placed_by, expires=int(now) + self._ttl)
        self._calls[placed_id] = call
        return call, auth

    def placed(self, call: PlacedCall, call_sid: str) -> None:
        """Twilio placed it: ``call_sid`` is the only call whose stream the placement admits."""
        call.call_sid = call_sid
        call.known.set()

    def withdraw(self, call: PlacedCall) -> None:
        """Twilio refused it, or it was hung up before its stream: no stream may use it."""
        if self._calls.get(call.placed_id) is call:
            del self._calls[call.placed_id]
        call.known.set()

    def ringing_in(self, target: str) -> list[PlacedCall]:
        """Calls placed to ``target`` whose stream has not started (ringing, or rung out unseen)."""
        self._prune()
        return [call for call in self._calls.values() if call.target == target and call.call_sid is not None]

    async def admit(
        self, placed_id: str, call_sid: str, target: str, auth: str | None
    ) -> tuple[PlacedCall, StreamGrant]:
        """The record and the verified auth of a ``start`` that names ``placed_id``; else StreamAuthError."""
        self._prune()
        call = self._calls.get(placed_id)
        if call is None:
            raise StreamAuthError("the 'placed' stream parameter names no call this bridge is placing")
        if call.target != target:
            raise StreamAuthError("the placed call's stream names another target")
        if call.call_sid is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._call_sid_wait):
                    await call.known.wait()
        if self._calls.get(placed_id) is not call or call.call_sid is None:
            raise StreamAuthError("the placed call's CallSid is not known (Twilio has not answered, or refused)")
        if call.call_sid != call_sid:
            raise StreamAuthError("the 'placed' stream parameter belongs to another call")
        grant = stream_auth.verify(self._secret_key, auth, PLACED_PREFIX + placed_id, target, now=self._clock())
        return call, grant

    def streaming(self, call: PlacedCall) -> None:
        """Its stream started: from now on the call is one of the bridge's sessions."""
        if self._calls.get(call.placed_id) is call:
            del self._calls[call.placed_id]

    def _prune(self) -> None:
        now = self._clock()
        for placed_id in [p for p, call in self._calls.items() if call.expires <= now]:
            call = self._calls.pop(placed_id)
            call.known.set()


# ----------------------------------------------------------------------------- /call and /hangup


class CallsApi(Protocol):
    """What the placer uses of :class:`shetphone.twilio_rest.TwilioRest` (blocking; run in a thread)."""

    def create_call(self, to: str, from_: str, twiml: str, status_callback: str | None = None,
                    status_callback_event: Sequence[str] = CALL_EVENTS) -> CallInfo: ...

    def end_call(self, call_sid: str) -> CallInfo: ...


class CallRefused(Exception):
    """The call is not placed; ``reason`` is a plain sentence for the member."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Placed:
    call_sid: str
    to: str  # E.164


@dataclass(frozen=True)
class Ended:
    """What /hangup did to one call: Twilio's status after it, or Twilio's error."""

    call_sid: str
    party: str
    status: str | None = None
    error: str | None = None

    @property
    def was_over(self) -> bool:
        # Ending a call that is over already leaves its final status as it was.
        return self.status in FINAL_STATUSES - {"completed", "canceled"}


@dataclass(frozen=True)
class PlacerConfig:
    call_from: str  # E.164, a team number
    policy: DialPolicy  # the outgoing-call policy (allowed_countries, allow_premium)
    stream_url: str  # wss://HOST/media/stream, as /voice writes it
    status_url: str  # PUBLIC/voice/status: the call log and the page hear of the call


class CallPlacer:
    """Places calls into a target through Twilio's REST API, and ends the calls of a target."""

    def __init__(
        self,
        config: PlacerConfig,
        rest: CallsApi,
        placed: PlacedCalls,
        calls_to: Callable[[str], list[tuple[str, str]]],
    ) -> None:
        """``calls_to(target)``: the (CallSid, other party) of every stream into ``target`` now."""
        self.config = config
        self.rest = rest
        self.placed = placed
        self.calls_to = calls_to

    def check(self, dialled: str) -> str:
        """The number as E.164, checked as an outgoing call is (country, premium rate); else CallRefused."""
        try:
            number = check_destination(dialled, phone_numbers.region_of(self.config.call_from), self.config.policy)
        except DialRefused as exc:
            raise CallRefused(exc.reason) from None
        return number.e164

    async def place(self, dialled: str, target: str, placed_by: str) -> Placed:
        """Have Twilio call ``dialled`` from ``call_from`` and stream it into ``target``.

        Raises CallRefused (the number, too many calls) or TwilioRestError (Twilio's words).
        """
        to = self.check(dialled)
        if to == self.config.call_from:
            raise CallRefused("That is the number the call would come from.")
        try:
            call, auth = self.placed.expect(target, to, placed_by)
        except OverflowError as exc:
            raise CallRefused(f"Too many calls are ringing already ({exc}); try again shortly.") from None
        document = twiml.media_stream(
            self.config.stream_url, {"target": target, PLACED_PARAMETER: call.placed_id, "auth": auth}
        )
        try:
            info = await asyncio.to_thread(
                self.rest.create_call, to, self.config.call_from, document, status_callback=self.config.status_url
            )
        except BaseException:
            self.placed.withdraw(call)
            raise
        self.placed.placed(call, info.sid)
        log.info("placed call %s to %s into %s for %s", info.sid, to, target, placed_by)
        return Placed(info.sid, to)

    def calls_of(self, target: str) -> list[tuple[str, str]]:
        """The (CallSid, other party) of the calls of ``target``: its streams, then calls placed and ringing."""
        calls = dict(self.calls_to(target))
        for call in self.placed.ringing_in(target):
            if call.call_sid is not None:
                calls.setdefault(call.call_sid, call.party)
        return list(calls.items())

    async def hang_up(self, target: str) -> list[Ended]:
        """End every call of ``target``, streaming or still ringing (``Status=completed``)."""
        calls = self.calls_of(target)
        for call in self.placed.ringing_in(target):
            self.placed.withdraw(call)  # its stream, should it start after all, is refused
        ended = await asyncio.gather(*(self._end(sid, party) for sid, party in calls))
        return list(ended)

    async def _end(self, call_sid: str, party: str) -> Ended:
        try:
            info = await asyncio.to_thread(self.rest.end_call, call_sid)
        except TwilioRestError as exc:
            log.warning("could not end call %s: %s", call_sid, exc)
            return Ended(call_sid, party, error=exc.message)
        log.info("ended call %s (now %s)", call_sid, info.status)
        return Ended(call_sid, party, status=info.status)
