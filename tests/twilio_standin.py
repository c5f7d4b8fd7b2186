"""One stand-in for Twilio, shared by every test that needs it: its REST API and its callbacks.

A real HTTP server on 127.0.0.1 (a thread) answers the REST resources the app uses,
with Twilio's JSON shapes and error shapes, Basic auth checked; behind it a small
model of calls, their legs, conferences and participants runs the TwiML it is
given or fetches, and posts to the app the requests Twilio would, signed as Twilio
signs them (the twilio library's ``RequestValidator``).

Where each behaviour comes from (Twilio's documentation):

- REST errors are ``{"code", "message", "more_info", "status"}`` with the HTTP status
  (https://www.twilio.com/docs/usage/twilios-response); a wrong account or password
  is 401 code 20003, an unknown resource 404 code 20404
  (https://www.twilio.com/docs/errors/20404); redirecting a call that is over is
  400 code 21220 (https://www.twilio.com/docs/errors/21220).
- Modifying a call in progress (``POST .../Calls/CA.json``): ``Twiml`` or ``Url``
  makes the call run the new TwiML at once; ``Status=completed`` hangs it up even
  when in progress, ``canceled`` only when queued or ringing
  (https://www.twilio.com/docs/voice/api/call-resource#update-a-call-resource,
  https://www.twilio.com/docs/voice/tutorials/how-to-modify-calls-in-progress).
- ``<Dial>`` (https://www.twilio.com/docs/voice/twiml/dial): its nouns ``<Client>``,
  ``<Number>`` ring child calls whose ``ParentCallSid`` is the dialling call; the
  first to answer is bridged, the others are canceled. When the dialled call ends,
  Twilio requests ``action`` with ``DialCallStatus`` (completed when the child had
  answered: so also when the child was redirected away by REST, the bridge being
  over) and runs the TwiML answered; without ``action`` the next verb runs.
  A parent modified by REST while in ``<Dial>`` drops its child; ``action`` is
  requested then too (https://www.twilio.com/docs/voice/twiml/changelog, 2021-05-13),
  its answer unused since the call runs the new TwiML.
- Call progress callbacks (``statusCallback`` with ``statusCallbackEvent`` on
  ``<Number>``/``<Client>``, ``StatusCallback``/``StatusCallbackEvent`` on REST calls
  and participants): initiated, ringing, answered (``CallStatus=in-progress``) and
  completed (the final status), each with a ``SequenceNumber`` from 0 and, for a
  child leg, ``ParentCallSid``
  (https://www.twilio.com/docs/voice/twiml/number#attributes-status-callback-event,
  https://www.twilio.com/docs/voice/api/call-resource#statuscallbackevent).
- ``<Conference>`` (https://www.twilio.com/docs/voice/twiml/conference,
  https://www.twilio.com/docs/voice/conference): joining a name creates the
  conference (a ``CF`` SID) if none of that name is in progress; it starts when a
  participant with ``startConferenceOnEnter`` (default true) is in it; it ends when
  one with ``endConferenceOnExit`` leaves or the last one leaves, and every
  remaining participant's call goes on after its ``<Dial>``. Callbacks to
  ``statusCallback`` for the events in ``statusCallbackEvent`` (start end join leave
  mute hold) as ``conference-start``, ``participant-join``, ``participant-hold`` /
  ``participant-unhold``, ... with ``ConferenceSid``, ``FriendlyName``, ``CallSid``,
  ``Hold``, ``Muted``, ``ParticipantLabel``, ``SequenceNumber``; the conference's
  callback is the one given by the participant that created it.
- ``participant-leave`` carries ``ParticipantCallStatus`` and ``ReasonParticipantLeft``,
  also for a participant added by REST who never answered
  (https://www.twilio.com/en-us/changelog/participantcallstatus-and-reasonparticipantleft-attributes-added).
- The Participants resource
  (https://www.twilio.com/docs/voice/api/conference-participant-resource): create
  (``From``, ``To``, ``Label``, ``Timeout``, ``StatusCallback``, ``StatusCallbackEvent``,
  ``Beep``, ...) calls ``To`` and joins it when answered; update ``Hold`` (with
  ``HoldUrl``: what the held participant hears, Twilio's music by default) and
  ``Muted``; delete takes the participant out, their call going on after its
  ``<Dial>``. A participant whose call was modified to new TwiML is no longer listed.
- The Conference resource (https://www.twilio.com/docs/voice/api/conference-resource):
  list by ``FriendlyName`` and ``Status``; update ``Status=completed`` ends it.
- Connection overrides (https://www.twilio.com/docs/usage/webhooks/webhooks-connection-overrides):
  a callback URL's fragment (``#rc=3&rp=ct,rt,5xx``) is never sent; with ``5xx`` in
  ``rp`` an answer of 5xx is tried again, ``rc`` more times at most. The signature is
  computed over the URL as given, fragment and all (the docs say "the webhook URL set
  in Twilio"; the app accepts it either way).
- ``<Record>`` (https://www.twilio.com/docs/voice/twiml/record): ``recordingStatusCallback``
  gets ``RecordingSid``, ``RecordingUrl``, ``RecordingStatus``, ``RecordingDuration``;
  then ``action`` is requested. With ``transcribe="true"``, ``transcribeCallback`` later
  gets ``TranscriptionSid``, ``TranscriptionText``, ``TranscriptionStatus`` (completed or
  failed), ``TranscriptionUrl``, ``RecordingSid`` and ``RecordingUrl`` (the test says when,
  with :meth:`TwilioStandIn.transcribe`). A recording's audio is ``GET .../Recordings/RE.mp3``
  (or ``.wav``) with the account's Basic auth
  (https://www.twilio.com/docs/voice/api/recording#fetch-a-recording-media-file).
- Every request to the app is signed: ``X-Twilio-Signature`` over the full URL and
  the POST fields (https://www.twilio.com/docs/usage/security#validating-requests).
- ``<Connect><Stream url>`` (https://www.twilio.com/docs/voice/twiml/stream,
  https://www.twilio.com/docs/voice/media-streams/websocket-messages): with
  :meth:`TwilioStandIn.stream_to`, a websocket to the URL, its upgrade signed like a
  request without parameters; ``connected``, then ``start`` with the call's
  ``callSid``, the account and the ``<Parameter>``s as ``customParameters``; the test
  plays the caller's ``media``; a ``mark`` the far side sends is echoed back once the
  audio before it has played (here: at once). The call waits in ``<Connect>`` while
  the websocket is open; when the far side closes it, the TwiML after ``<Connect>``
  runs (none: the call ends, completed); when the call ends, ``stop`` is sent and the
  websocket closed.

Nothing happens by the clock: a call rings until the test says ``answer``, ``no_answer``,
``busy`` or ``hang_up`` (``timeout`` and ``Timeout`` are only recorded).

What Twilio's documentation leaves open, this stand-in does the cautious way, and
the app must cope: a call still ringing toward a conference that ends keeps ringing;
a caller who hangs up during ``<Dial>`` gets no ``action`` request.

Callbacks are queued, not posted at once. ``mode="manual"`` (the default) posts them
when the test calls :meth:`TwilioStandIn.run`, in order, with the app's answers run
as Twilio would: every test sees one order, no timing. ``mode="auto"`` posts them
from a thread as they come (for a live server); :meth:`wait_idle` waits for quiet.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import secrets
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, parse_qsl, urlsplit

import requests
from twilio.request_validator import RequestValidator

API = "/2010-04-01"
DEFAULT_HOLD_MUSIC = "twilio-default-hold-music"
FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
CONFERENCE_EVENT_NAMES = {
    "start": ("conference-start",), "end": ("conference-end",), "join": ("participant-join",),
    "leave": ("participant-leave",), "mute": ("participant-mute", "participant-unmute"),
    "hold": ("participant-hold", "participant-unhold"),
}


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _now_rfc2822(clock: Callable[[], float]) -> str:
    return formatdate(clock(), usegmt=True)


# ------------------------------------------------------------------ transports


class HttpCallbacks:
    """Posts callbacks to the URLs as Twilio would (a live server whose public_url is its address)."""

    def post(self, url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> tuple[int, str]:
        try:
            response = requests.post(url, data=dict(params), headers=dict(headers), timeout=30)
        except requests.RequestException as exc:
            return 0, f"unreachable: {exc}"
        return response.status_code, response.text


class FlaskCallbacks:
    """Posts callbacks through a Flask test client: the URL's path under ``public_url``."""

    def __init__(self, client, public_url: str):
        self.client = client
        self.public_url = public_url.rstrip("/")

    def post(self, url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> tuple[int, str]:
        if not url.startswith(self.public_url):
            return 0, f"unreachable: {url} is not under {self.public_url}"
        response = self.client.post(url[len(self.public_url):] or "/", data=dict(params), headers=dict(headers))
        return response.status_code, response.get_data(as_text=True)


# ----------------------------------------------------------------------- model


@dataclass
class Call:
    sid: str
    from_: str
    to: str
    direction: str  # inbound, outbound-dial, outbound-api
    parent_sid: str | None = None
    status: str = "queued"
    status_callback: str | None = None
    status_events: frozenset[str] = frozenset({"completed"})
    sequence: int = 0
    program: list[ET.Element] = field(default_factory=list)
    dial: Dial | None = None
    conference_sid: str | None = None
    recording: dict | None = None
    heard: list[str] = field(default_factory=list)  # what the call was played: "say:...", "play:URL", "hold:URL"
    answered_at: float | None = None
    ended_at: float | None = None
    waiting: bool = False  # a TwiML request of this call is on its way to the app
    participant: dict | None = None  # for calls created by the Participants resource, until they join
    timeout: int = 60
    twiml_on_answer: str | None = None  # for calls created by the Calls resource
    url_on_answer: str | None = None
    streams: list[MediaStream] = field(default_factory=list)  # every <Connect><Stream> it ran (stream_to)

    @property
    def active(self) -> bool:
        return self.status not in FINAL_STATUSES

    def __repr__(self) -> str:
        return f"<Call {self.sid[:8]} {self.from_}->{self.to} {self.status}>"


@dataclass
class Dial:
    action: str | None
    children: list[str] = field(default_factory=list)
    bridged: str | None = None  # the child that answered
    conference: bool = False


@dataclass
class Participant:
    call_sid: str
    label: str | None
    end_on_exit: bool = False
    start_on_enter: bool = True
    hold: bool = False
    muted: bool = False
    hold_url: str | None = None
    status: str = "connected"


@dataclass
class Conference:
    sid: str
    friendly_name: str
    status: str = "init"  # init, in-progress, completed
    status_callback: str | None = None
    events: frozenset[str] = frozenset()
    sequence: int = 0
    participants: dict[str, Participant] = field(default_factory=dict)
    reason_ended: str | None = None
    call_sid_ending: str | None = None


@dataclass
class RestRequest:
    method: str
    path: str
    params: dict[str, list[str]]
    authorization: str
    range: str | None

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[-1] if values else None


@dataclass
class Delivery:
    kind: str  # "fetch" (TwiML answered) or "notify"
    url: str
    params: dict[str, str]
    status: int | None = None
    body: str | None = None
    attempts: int = 0  # more than one: Twilio retried it, as its connection overrides asked


@dataclass
class _Outgoing:
    kind: str
    url: str
    params: dict[str, str]
    on_answer: Callable[[int, str], None] | None = None


class RestFailure(Exception):
    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# ------------------------------------------------------------------ the stand-in


class TwilioStandIn:
    """Twilio's REST API and call engine for one account, on 127.0.0.1; see the module's docstring."""

    def __init__(self, account_sid: str = "", auth_token: str = "", *, mode: str = "manual",
                 clock: Callable[[], float] = time.time):
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.mode = mode
        self.clock = clock
        self.calls: dict[str, Call] = {}
        self.conferences: dict[str, Conference] = {}
        self.recordings: dict[str, dict] = {}
        self.requests_seen: list[RestRequest] = []
        self.delivered: list[Delivery] = []
        self.unreachable = False  # connections are dropped without an answer
        self.stalled = False  # connections are held open without an answer
        self._while_answering: list[tuple[re.Pattern | None, Callable[[], None]]] = []
        self._failures: list[list] = []  # [path pattern, method, failure, matches still to let through]
        self._callbacks = None
        self._stream_to: Callable[[str], str] | None = None
        self.public_url = ""
        self.voice_path = "/voice"
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._outbox: deque[_Outgoing] = deque()
        self._delivering = 0
        self._stopping = False
        self._release = threading.Event()
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        if mode == "auto":
            threading.Thread(target=self._deliver_forever, daemon=True).start()

    # -------------------------------------------------------------- set-up

    def accept(self, account_sid: str, auth_token: str) -> None:
        """Serve this account, as Twilio would for its SID and auth token."""
        self.account_sid, self.auth_token = account_sid, auth_token

    def connect(self, callbacks, public_url: str, voice_path: str = "/voice") -> None:
        """Where the app is: ``callbacks`` posts (HttpCallbacks or FlaskCallbacks); URLs are signed as given."""
        self._callbacks = callbacks
        self.public_url = public_url.rstrip("/")
        self.voice_path = voice_path

    def stream_to(self, local_url: Callable[[str], str]) -> None:
        """Open the Media Streams of ``<Connect><Stream>`` as Twilio would, at ``local_url(the TwiML's url)``."""
        self._stream_to = local_url

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._changed.notify_all()
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def expected_auth(self) -> str:
        return "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()

    # ----------------------------------------------------- REST failure hooks

    def fail_next(self, status: int = 500, message: str = "Internal error", code: int = 20500,
                  path: str | None = None, method: str | None = None, skip: int = 0) -> None:
        """The next REST request matching ``path`` (a regex) and ``method``, after ``skip`` of them, gets this error."""
        with self._lock:
            self._failures.append([re.compile(path) if path else None, method, RestFailure(status, code, message),
                                   skip])

    def while_answering(self, action: Callable[[], None], path: str | None = None) -> None:
        """Run ``action`` once, while the next REST request (matching ``path``) waits for its answer.

        Twilio may call back before its REST answer arrives; ``action`` can post callbacks
        then (``run``), or make another request, to see the app cope with that race.
        """
        with self._lock:
            self._while_answering.append((re.compile(path) if path else None, action))

    # ----------------------------------------------------------- call hooks

    def incoming_call(self, from_: str, to: str, **params: str) -> Call:
        """A phone calls a team number: Twilio asks the app's Voice URL what to do."""
        with self._lock:
            call = self._new_call(from_, to, "inbound", status="ringing")
            self._fetch(call, self.public_url + self.voice_path, params)
            return call

    def browser_call(self, client: str, to: str, **params: str) -> Call:
        """A browser's Device.connect({To, ...}): the TwiML App's Voice URL is asked, From=client:NAME."""
        return self.incoming_call(f"client:{client}", to, **params)

    def answer(self, call_sid: str) -> None:
        """The called party picks up."""
        with self._lock:
            call = self._call(call_sid)
            if call.status not in ("queued", "initiated", "ringing"):
                raise AssertionError(f"{call} is not ringing")
            self._answered(call)

    def no_answer(self, call_sid: str) -> None:
        """A ringing call (a child, a participant, a REST call) rings out; for a dialling parent, all its children."""
        self._unanswered(call_sid, "no-answer")

    def busy(self, call_sid: str) -> None:
        self._unanswered(call_sid, "busy")

    def hang_up(self, call_sid: str) -> None:
        """The party on this call hangs up."""
        with self._lock:
            call = self._call(call_sid)
            if not call.active:
                raise AssertionError(f"{call} is already over")
            if call.status in ("queued", "initiated", "ringing"):
                self._end(call, "canceled")
            else:
                self._hang_up_in_progress(call)

    def finish_recording(self, call_sid: str, audio: bytes = b"ID3 stand-in audio", seconds: int = 5) -> str:
        """The caller stops talking at a <Record> (presses a key): the recording is saved and reported."""
        with self._lock:
            call = self._call(call_sid)
            if call.recording is None:
                raise AssertionError(f"{call} is not recording")
            return self._recording_done(call, audio, seconds)

    def transcribe(self, recording_sid: str, text: str, status: str = "completed") -> None:
        """Twilio's transcription of a recording made with ``transcribe="true"`` is done (or failed)."""
        with self._lock:
            recording = self.recordings[recording_sid]
            callback = recording.get("transcribe_callback")
            if not callback:
                raise AssertionError(f"{recording_sid} was not recorded with transcribe and a transcribeCallback")
            url = f"{self.url}{API}/Accounts/{self.account_sid}/Recordings/{recording_sid}"
            self._queue("notify", callback, {
                "AccountSid": self.account_sid, "CallSid": recording["call_sid"], "RecordingSid": recording_sid,
                "RecordingUrl": url, "TranscriptionSid": new_sid("TR"), "TranscriptionStatus": status,
                "TranscriptionText": text if status == "completed" else "(blank)",
                "TranscriptionUrl": f"{self.url}{API}/Accounts/{self.account_sid}/Transcriptions/TR.json"})

    def add_recording(self, recording_sid: str, audio: bytes, call_sid: str | None = None, seconds: int = 0) -> None:
        with self._lock:
            self.recordings[recording_sid] = {"audio": audio, "call_sid": call_sid, "duration": seconds}

    # ------------------------------------------------------------- queries

    def call(self, call_sid: str) -> Call:
        with self._lock:
            return self._call(call_sid)

    def calls_to(self, to: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls.values() if c.to == to]

    def children_of(self, call_sid: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls.values() if c.parent_sid == call_sid]

    def conference_named(self, name: str) -> Conference | None:
        with self._lock:
            found = [c for c in self.conferences.values() if c.friendly_name == name]
            return found[-1] if found else None

    def participant(self, call_sid: str) -> Participant | None:
        with self._lock:
            call = self._call(call_sid)
            conference = self.conferences.get(call.conference_sid or "")
            return conference.participants.get(call_sid) if conference else None

    def deliveries_to(self, path: str) -> list[Delivery]:
        return [d for d in self.delivered if urlsplit(d.url).path.endswith(path)]

    # ------------------------------------------------------------ delivery

    def run(self, limit: int = 1000) -> list[Delivery]:
        """Post every queued callback, in order, running the app's answers, until none is left."""
        done = []
        for _ in range(limit):
            with self._lock:
                if not self._outbox:
                    return done
                outgoing = self._outbox.popleft()
            done.append(self._deliver(outgoing))
        raise AssertionError(f"still delivering after {limit} callbacks: a loop between the app and Twilio?")

    def wait_idle(self, timeout: float = 15) -> None:
        """(auto mode) Wait until every queued callback has been posted and answered."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._outbox or self._delivering:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"callbacks still queued after {timeout} s: {list(self._outbox)}")
                self._changed.wait(left)

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
        """(auto mode) Wait until ``condition()`` holds, checked at each REST request and callback answered.

        The app may act after its answer to a callback (a claim's holder applying what
        waited for it), so the stand-in being idle does not mean the app is done.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"not within {timeout} s: {what}")
                self._changed.wait(left)

    def _deliver_forever(self) -> None:
        while True:
            with self._lock:
                while not self._outbox and not self._stopping:
                    self._changed.wait()
                if self._stopping:
                    return
                outgoing = self._outbox.popleft()
                self._delivering += 1
            try:
                self._deliver(outgoing)
            finally:
                with self._lock:
                    self._delivering -= 1
                    self._changed.notify_all()

    def _deliver(self, outgoing: _Outgoing) -> Delivery:
        delivery = Delivery(outgoing.kind, outgoing.url, outgoing.params)
        if self._callbacks is None:
            delivery.status, delivery.body = 0, "no app connected"
        else:
            # The URL as given is what is signed; its fragment (connection overrides) is never sent,
            # and asks for retries: rc more attempts when the answer is a 5xx and rp names 5xx.
            requested, _, fragment = outgoing.url.partition("#")
            overrides = dict(parse_qsl(fragment))
            retries = int(overrides.get("rc", "0")) if "5xx" in overrides.get("rp", "").split(",") else 0
            headers = {"X-Twilio-Signature": RequestValidator(self.auth_token).compute_signature(
                outgoing.url, outgoing.params)}
            for _attempt in range(1 + retries):
                delivery.status, delivery.body = self._callbacks.post(requested, outgoing.params, headers)
                delivery.attempts += 1
                if not 500 <= (delivery.status or 0) < 600:
                    break
        self.delivered.append(delivery)
        if outgoing.on_answer is not None:
            with self._lock:
                outgoing.on_answer(delivery.status or 0, delivery.body or "")
        return delivery

    def _queue(self, kind: str, url: str, params: dict[str, str], on_answer=None) -> None:
        self._outbox.append(_Outgoing(kind, url, params, on_answer))
        self._changed.notify_all()

    # ---------------------------------------------------------- call engine

    def _new_call(self, from_: str, to: str, direction: str, parent: str | None = None,
                  status: str = "queued") -> Call:
        call = Call(sid=new_sid("CA"), from_=from_, to=to, direction=direction, parent_sid=parent, status=status)
        self.calls[call.sid] = call
        return call

    def _call(self, call_sid: str) -> Call:
        try:
            return self.calls[call_sid]
        except KeyError:
            raise AssertionError(f"no call {call_sid}") from None

    def _call_params(self, call: Call) -> dict[str, str]:
        params = {"AccountSid": self.account_sid, "ApiVersion": "2010-04-01", "CallSid": call.sid,
                  "CallStatus": call.status, "Direction": call.direction, "From": call.from_, "To": call.to,
                  "Caller": call.from_, "Called": call.to}
        if call.parent_sid:
            params["ParentCallSid"] = call.parent_sid
        return params

    def _fetch(self, call: Call, url: str, extra: Mapping[str, str] | None = None,
               then: Callable[[Call, int, str], None] | None = None) -> None:
        """A TwiML request: the call waits for the app's answer, then runs it."""
        call.waiting = True

        def answered(status: int, body: str) -> None:
            call.waiting = False
            (then or self._run_answer)(call, status, body)

        self._queue("fetch", url, {**self._call_params(call), **(extra or {})}, answered)

    def _run_answer(self, call: Call, status: int, body: str) -> None:
        if not call.active:
            return
        if status != 200:
            # What a caller hears when the app's webhook fails: Twilio's apology, then the end.
            call.heard.append("application-error")
            self._end(call, "completed" if call.answered_at else "failed")
            return
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            call.heard.append("application-error")
            self._end(call, "completed" if call.answered_at else "failed")
            return
        call.program = list(root)
        self._step(call)

    def _notify_status(self, call: Call, event: str) -> None:
        if not call.status_callback or event not in call.status_events:
            return
        params = {**self._call_params(call), "SequenceNumber": str(call.sequence),
                  "CallbackSource": "call-progress-events", "Timestamp": _now_rfc2822(self.clock)}
        call.sequence += 1
        if call.status in FINAL_STATUSES:
            params["CallDuration"] = str(self._duration(call))
        self._queue("notify", call.status_callback, params)

    def _duration(self, call: Call) -> int:
        if call.answered_at is None:
            return 0
        return max(0, int((call.ended_at or self.clock()) - call.answered_at))

    def _set_status(self, call: Call, status: str) -> None:
        call.status = status
        event = {"initiated": "initiated", "ringing": "ringing", "in-progress": "answered"}.get(status, "completed")
        self._notify_status(call, event)

    def _ring(self, call: Call) -> None:
        self._set_status(call, "initiated")
        self._set_status(call, "ringing")

    def _answered(self, call: Call) -> None:
        call.answered_at = self.clock()
        if call.parent_sid:  # a <Dial> child: bridge it, cancel its siblings
            parent = self.calls[call.parent_sid]
            self._set_status(call, "in-progress")
            dial = parent.dial
            if dial is None:
                return
            dial.bridged = call.sid
            for sibling in dial.children:
                other = self.calls[sibling]
                if other.sid != call.sid and other.active:
                    self._end(other, "canceled")
            if parent.status == "ringing":
                parent.answered_at = self.clock()
                parent.status = "in-progress"  # answerOnBridge: the caller is answered now
            return
        if call.participant is not None:  # rung by the Participants resource: join its conference
            self._set_status(call, "in-progress")
            details, call.participant = call.participant, None
            conference = self.conferences[details["conference_sid"]]
            if conference.status == "completed":
                self._end(call, "completed")
                return
            self._join(call, conference, details["label"], details["end_on_exit"], details["start_on_enter"])
            return
        # a call of the Calls resource
        self._set_status(call, "in-progress")
        if call.twiml_on_answer is not None:
            self._run_answer(call, 200, call.twiml_on_answer)
        elif call.url_on_answer:
            self._fetch(call, call.url_on_answer)

    def _unanswered(self, call_sid: str, outcome: str) -> None:
        with self._lock:
            call = self._call(call_sid)
            if call.dial is not None and call.dial.children and call.dial.bridged is None:
                for child in list(call.dial.children):  # the <Dial> timed out: every child rings out
                    if self.calls[child].active:
                        self._end(self.calls[child], outcome)
                return
            if call.status not in ("queued", "initiated", "ringing"):
                raise AssertionError(f"{call} is not ringing")
            self._end(call, outcome)

    def _hang_up_in_progress(self, call: Call) -> None:
        if call.conference_sid:
            self._leave(call, "participant_hung_up", "completed", go_on=False)
        if call.dial is not None and call.dial.bridged:
            child = self.calls[call.dial.bridged]
            call.dial = None
            self._end(call, "completed")
            if child.active:
                self._end(child, "completed")
            return
        self._end(call, "completed")

    def _end(self, call: Call, status: str) -> None:
        """A call is over (hung up, rang out, canceled): its legs and its <Dial> follow."""
        if not call.active:
            return
        was_ringing = call.status in ("queued", "initiated", "ringing")
        call.ended_at = self.clock()
        call.program = []
        call.recording = None
        for stream in call.streams:
            stream.stop()  # Twilio tells the stream the call is over, and closes it
        if call.conference_sid:
            self._leave(call, "participant_hung_up", status, go_on=False)
        if call.participant is not None:
            # A participant rung by REST that never answered: the conference says it left.
            details, call.participant = call.participant, None
            conference = self.conferences.get(details["conference_sid"])
            if conference is not None and conference.status != "completed":
                self._conference_event(conference, "participant-leave", call.sid, details["label"],
                                       ParticipantCallStatus=status, ReasonParticipantLeft="participant_not_answered")
        if call.dial is not None:
            dial, call.dial = call.dial, None
            for child in dial.children:
                if self.calls[child].active:
                    self._end(self.calls[child], "canceled" if self.calls[child].status != "in-progress"
                              else "completed")
        # A ringing call we hang up was never answered: Twilio calls that canceled.
        hung_up_ringing = was_ringing and status == "completed" and call.direction != "inbound"
        self._set_status(call, "canceled" if hung_up_ringing else status)
        if call.parent_sid:
            self._child_over(call)

    def _child_over(self, child: Call) -> None:
        parent = self.calls.get(child.parent_sid or "")
        if parent is None or parent.dial is None or not parent.active or child.sid not in parent.dial.children:
            return  # (a child moved away long ago no longer belongs to its parent's <Dial>)
        dial = parent.dial
        if dial.bridged == child.sid:
            self._dial_over(parent, "completed", child)
        elif dial.bridged is None and all(not self.calls[c].active for c in dial.children):
            statuses = {self.calls[c].status for c in dial.children}
            outcome = "busy" if statuses == {"busy"} else "failed" if statuses == {"failed"} else "no-answer"
            self._dial_over(parent, outcome, child)

    def _dial_over(self, call: Call, dial_status: str, child: Call | None) -> None:
        """The <Dial> ends: ask its action, or go on with the next verb."""
        dial, call.dial = call.dial, None
        if dial is None:
            return
        if dial.action:
            extra = {"DialCallStatus": dial_status, "DialBridged": "true" if dial_status == "completed" else "false"}
            if child is not None:
                extra["DialCallSid"] = child.sid
                extra["DialCallDuration"] = str(self._duration(child))
            call.program = []
            self._fetch(call, dial.action, extra)
        else:
            self._step(call)

    def _step(self, call: Call) -> None:
        """Run the call's TwiML until a verb waits (Dial, Record, Connect) or the document ends."""
        while call.active and not call.waiting and call.dial is None and call.recording is None \
                and call.conference_sid is None:
            if not call.program:
                self._end(call, "completed")  # no more TwiML: Twilio hangs up
                return
            verb = call.program.pop(0)
            if verb.tag in ("Say", "Play", "Record", "Connect", "Pause", "Gather"):
                self._pick_up(call)  # an incoming call is answered by the first verb that needs audio
            if verb.tag == "Say":
                call.heard.append("say:" + (verb.text or "").strip())
            elif verb.tag == "Play":
                call.heard.append("play:" + (verb.text or "").strip())
            elif verb.tag in ("Pause", "Gather"):
                continue
            elif verb.tag in ("Hangup", "Reject"):
                self._end(call, "busy" if verb.tag == "Reject" and not call.answered_at else "completed")
                return
            elif verb.tag == "Redirect":
                call.program = []
                self._fetch(call, (verb.text or "").strip())
                return
            elif verb.tag == "Record":
                self._start_recording(call, verb)
                return
            elif verb.tag == "Dial":
                self._dial(call, verb)
                return
            elif verb.tag == "Connect":
                call.heard.append("stream:" + ",".join(s.get("url", "") for s in verb.iter("Stream")))
                call.recording = None
                call.dial = Dial(action=None)  # streaming: it waits until hung up or redirected
                if self._stream_to is not None:
                    for element in verb.iter("Stream"):
                        parameters = {p.get("name", ""): p.get("value", "") for p in element.iter("Parameter")}
                        url = element.get("url", "")
                        call.streams.append(MediaStream(self, call, url, self._stream_to(url), parameters))
                else:
                    call.program = []
                return
            else:
                raise AssertionError(f"the stand-in does not run <{verb.tag}>")

    def _stream_over(self, call: Call, stream: MediaStream) -> None:
        """The far side closed a stream: the call goes on after its <Connect>."""
        with self._lock:
            if call.active and stream in call.streams and call.dial is not None and not call.dial.children:
                call.streams.remove(stream)
                call.dial = None
                self._step(call)

    def _pick_up(self, call: Call) -> None:
        if call.status == "ringing" and call.direction == "inbound":
            call.status, call.answered_at = "in-progress", self.clock()

    def _dial(self, call: Call, verb: ET.Element) -> None:
        if verb.get("answerOnBridge") != "true":
            self._pick_up(call)
        dial = Dial(action=verb.get("action"))
        call.dial = dial
        nouns = list(verb) or [ET.Element("Number")]
        if not list(verb):
            nouns[0].text = verb.text
        for noun in nouns:
            if noun.tag == "Conference":
                dial.conference = True
                self._pick_up(call)
                self._enter_conference(call, noun)
                return
            if noun.tag not in ("Client", "Number"):
                raise AssertionError(f"the stand-in does not dial <{noun.tag}>")
            identity = noun.find("Identity")
            text = ((identity.text if identity is not None else noun.text) or "").strip()
            target = f"client:{text}" if noun.tag == "Client" else text
            from_ = call.from_ if noun.tag == "Client" else (verb.get("callerId") or call.from_)
            child = self._new_call(from_, target, "outbound-dial", parent=call.sid)
            child.status_callback = noun.get("statusCallback")
            child.status_events = frozenset((noun.get("statusCallbackEvent") or "completed").split())
            child.timeout = int(verb.get("timeout") or 30)
            dial.children.append(child.sid)
            self._ring(child)

    # ----------------------------------------------------------- conferences

    def _enter_conference(self, call: Call, noun: ET.Element) -> None:
        name = (noun.text or "").strip()
        conference = next((c for c in self.conferences.values()
                           if c.friendly_name == name and c.status != "completed"), None)
        if conference is None:
            conference = Conference(sid=new_sid("CF"), friendly_name=name, status_callback=noun.get("statusCallback"),
                                    events=frozenset((noun.get("statusCallbackEvent") or "").split()))
            self.conferences[conference.sid] = conference
        self._join(call, conference, noun.get("participantLabel"), noun.get("endConferenceOnExit") == "true",
                   noun.get("startConferenceOnEnter", "true") != "false", muted=noun.get("muted") == "true")

    def _join(self, call: Call, conference: Conference, label: str | None, end_on_exit: bool, start_on_enter: bool,
              muted: bool = False) -> None:
        call.conference_sid = conference.sid
        if call.dial is None:
            call.dial = Dial(action=None, conference=True)
        participant = Participant(call_sid=call.sid, label=label, end_on_exit=end_on_exit,
                                  start_on_enter=start_on_enter, muted=muted)
        conference.participants[call.sid] = participant
        self._conference_event(conference, "participant-join", call.sid, label)
        if conference.status == "init" and start_on_enter:
            conference.status = "in-progress"
            self._conference_event(conference, "conference-start")

    def _leave(self, call: Call, reason: str, call_status: str, go_on: bool) -> None:
        """The call leaves its conference; with ``go_on`` its TwiML goes on after the <Dial>."""
        conference = self.conferences[call.conference_sid or ""]
        participant = conference.participants.pop(call.sid, None)
        call.conference_sid = None
        if participant is None:
            return
        self._conference_event(conference, "participant-leave", call.sid, participant.label,
                               ParticipantCallStatus=call_status, ReasonParticipantLeft=reason, _p=participant)
        if conference.status != "completed":
            if participant.end_on_exit:
                self._end_conference(conference, "participant-with-end-conference-on-exit-left", call.sid)
            elif not conference.participants:
                self._end_conference(conference, "last-participant-left", call.sid)
        if go_on and call.active:
            self._dial_over(call, "completed", None)

    def _end_conference(self, conference: Conference, reason: str, ending_call: str | None) -> None:
        conference.status = "completed"
        conference.reason_ended, conference.call_sid_ending = reason, ending_call
        for call_sid in list(conference.participants):
            self._leave(self.calls[call_sid], "conference_ended", "in-progress", go_on=True)
        self._conference_event(conference, "conference-end", ReasonConferenceEnded=reason,
                               CallSidEndingConference=ending_call or "")

    def _conference_event(self, conference: Conference, event: str, call_sid: str | None = None,
                          label: str | None = None, _p: Participant | None = None, **extra: str) -> None:
        subscribed = {name for key in conference.events for name in CONFERENCE_EVENT_NAMES.get(key, ())}
        if not conference.status_callback or event not in subscribed:
            return
        conference.sequence += 1
        params = {"AccountSid": self.account_sid, "ConferenceSid": conference.sid,
                  "FriendlyName": conference.friendly_name, "StatusCallbackEvent": event,
                  "SequenceNumber": str(conference.sequence), "Timestamp": _now_rfc2822(self.clock)}
        if call_sid:
            participant = _p or conference.participants.get(call_sid)
            params["CallSid"] = call_sid
            if participant is not None:
                params.update({"Hold": _bool(participant.hold), "Muted": _bool(participant.muted),
                               "Coaching": "false", "EndConferenceOnExit": _bool(participant.end_on_exit),
                               "StartConferenceOnEnter": _bool(participant.start_on_enter)})
            if label:
                params["ParticipantLabel"] = label
        params.update({k: v for k, v in extra.items() if v is not None})
        self._queue("notify", conference.status_callback, params)

    # ------------------------------------------------------------- recording

    def _start_recording(self, call: Call, verb: ET.Element) -> None:
        call.recording = {"action": verb.get("action"), "callback": verb.get("recordingStatusCallback"),
                          "events": (verb.get("recordingStatusCallbackEvent") or "completed").split(),
                          "transcribe_callback": verb.get("transcribeCallback")
                          if verb.get("transcribe") == "true" else None}

    def _recording_done(self, call: Call, audio: bytes, seconds: int) -> str:
        details, call.recording = call.recording or {}, None
        sid = new_sid("RE")
        self.recordings[sid] = {"audio": audio, "call_sid": call.sid, "duration": seconds,
                                "transcribe_callback": details.get("transcribe_callback")}
        url = f"{self.url}{API}/Accounts/{self.account_sid}/Recordings/{sid}"
        fields = {"RecordingSid": sid, "RecordingUrl": url, "RecordingStatus": "completed",
                  "RecordingDuration": str(seconds), "RecordingChannels": "1", "RecordingSource": "RecordVerb"}
        if details.get("callback") and "completed" in details["events"]:
            self._queue("notify", details["callback"], {"AccountSid": self.account_sid, "CallSid": call.sid, **fields})
        if details.get("action"):
            self._fetch(call, details["action"], {"RecordingUrl": url, "RecordingDuration": str(seconds),
                                                  "Digits": "#"})
        else:
            self._step(call)
        return sid

    # ---------------------------------------------------------------- REST

    def handle_rest(self, method: str, path: str, params: dict[str, list[str]], authorization: str,
                    range_header: str | None) -> tuple[int, dict | bytes | None, dict[str, str]]:
        with self._lock:
            self._changed.notify_all()  # for wait_until: the model may change now (the lock is let go after)
            self.requests_seen.append(RestRequest(method, path, params, authorization, range_header))
            if authorization != self.expected_auth or not self.account_sid:
                return _error(401, 20003, "Authenticate")
            for index, entry in enumerate(self._failures):
                pattern, wanted_method, failure, skip = entry
                if (pattern is None or pattern.search(path)) and (wanted_method in (None, method)):
                    if skip:
                        entry[3] -= 1
                        continue
                    del self._failures[index]
                    return _error(failure.status, failure.code, failure.message)
            prefix = f"{API}/Accounts/{self.account_sid}/"
            if not path.startswith(prefix):
                return _not_found(path)
            try:
                return self._route(method, path, path[len(prefix):], {k: v[-1] for k, v in params.items()},
                                   params, range_header)
            except RestFailure as failure:
                return _error(failure.status, failure.code, failure.message)

    def _route(self, method: str, path: str, rest: str, one: dict[str, str], many: dict[str, list[str]],
               range_header: str | None):
        if match := re.fullmatch(r"Recordings/(RE[0-9a-f]{32})\.(mp3|wav)", rest):
            return self._recording_media(path, match.group(1), match.group(2), range_header)
        if match := re.fullmatch(r"Recordings/(RE[0-9a-f]{32})\.json", rest):
            recording = self.recordings.get(match.group(1)) or _raise_not_found(path)
            return 200, {"sid": match.group(1), "call_sid": recording["call_sid"],
                         "duration": str(recording["duration"]), "status": "completed"}, {}
        if rest == "Calls.json" and method == "POST":
            return 201, self._create_call(one, many), {}
        if match := re.fullmatch(r"Calls/(CA[0-9a-f]{32})\.json", rest):
            call = self.calls.get(match.group(1)) or _raise_not_found(path)
            if method == "POST":
                self._update_call(call, one)
            return 200, self._call_json(call), {}
        if rest == "Conferences.json" and method == "GET":
            found = [c for c in self.conferences.values()
                     if one.get("FriendlyName") in (None, c.friendly_name) and one.get("Status") in (None, c.status)]
            return 200, self._page("conferences", path, [self._conference_json(c) for c in found]), {}
        if match := re.fullmatch(r"Conferences/(CF[0-9a-f]{32})\.json", rest):
            conference = self.conferences.get(match.group(1)) or _raise_not_found(path)
            if method == "POST" and one.get("Status") == "completed" and conference.status != "completed":
                self._end_conference(conference, "conference-ended-via-api", None)
            return 200, self._conference_json(conference), {}
        if match := re.fullmatch(r"Conferences/([^/]+)/Participants\.json", rest):
            conference = self._conference_for(match.group(1), path)
            if method == "POST":
                return 201, self._add_participant(conference, one, many), {}
            return 200, self._page("participants", path, [self._participant_json(conference, p)
                                                          for p in conference.participants.values()]), {}
        if match := re.fullmatch(r"Conferences/(CF[0-9a-f]{32})/Participants/([^/]+)\.json", rest):
            conference = self.conferences.get(match.group(1)) or _raise_not_found(path)
            participant = self._participant_by(conference, match.group(2)) or _raise_not_found(path)
            if method == "DELETE":
                self._leave(self.calls[participant.call_sid], "participant_was_kicked", "in-progress", go_on=True)
                return 204, None, {}
            if method == "POST":
                self._update_participant(conference, participant, one)
            return 200, self._participant_json(conference, participant), {}
        return _not_found(path)

    def _create_call(self, one: dict[str, str], many: dict[str, list[str]]) -> dict:
        if not one.get("To") or not one.get("From"):
            raise RestFailure(400, 21201 if not one.get("To") else 21213,
                              "Required parameter 'To' is missing" if not one.get("To")
                              else "Required parameter 'From' is missing")
        if not (one.get("Twiml") or one.get("Url")):
            raise RestFailure(400, 21205, "Url or Twiml parameter is required")
        call = self._new_call(one["From"], one["To"], "outbound-api")
        call.status_callback = one.get("StatusCallback")
        call.status_events = _events(many.get("StatusCallbackEvent")) if call.status_callback else frozenset()
        call.twiml_on_answer, call.url_on_answer = one.get("Twiml"), one.get("Url")
        call.timeout = int(one.get("Timeout") or 60)
        self._ring(call)
        return self._call_json(call)

    def _update_call(self, call: Call, one: dict[str, str]) -> None:
        status = one.get("Status")
        if status in ("completed", "canceled"):
            if not call.active:
                return
            if status == "canceled" and call.status == "in-progress":
                return  # "canceled" only touches queued or ringing calls
            if call.status in ("queued", "initiated", "ringing"):
                self._end(call, "canceled")
            else:
                self._hang_up_in_progress(call)
            return
        if not (one.get("Twiml") or one.get("Url")):
            return
        if call.status != "in-progress":
            raise RestFailure(400, 21220, "Call is not in-progress. Cannot redirect.")
        self._redirect(call, one)

    def _redirect(self, call: Call, one: dict[str, str]) -> None:
        """A call in progress runs new TwiML: it leaves what it is doing, and its <Dial> partners react."""
        call.recording = None
        if call.conference_sid:
            self._leave(call, "participant_updated_via_api", "in-progress", go_on=False)
        dial, call.dial = call.dial, None
        if dial is not None and dial.children:
            # The parent was modified: its children are dropped; its action is still asked (answer unused).
            for child in dial.children:
                if self.calls[child].active:
                    self._end(self.calls[child], "completed" if self.calls[child].status == "in-progress"
                              else "canceled")
            if dial.action:
                self._queue("fetch", dial.action, {**self._call_params(call), "DialCallStatus": "completed",
                                                    "DialCallSid": dial.bridged or ""})
        parent = self.calls.get(call.parent_sid or "")
        if parent is not None and parent.dial is not None and parent.dial.bridged == call.sid:
            self._dial_over(parent, "completed", call)  # the child was moved: the bridge is over
        if one.get("Twiml"):
            self._run_answer(call, 200, one["Twiml"])
        else:
            call.program = []
            self._fetch(call, one["Url"])

    def _conference_for(self, sid_or_name: str, path: str) -> Conference:
        conference = self.conferences.get(sid_or_name)
        if conference is None:
            conference = next((c for c in self.conferences.values()
                               if c.friendly_name == sid_or_name and c.status != "completed"), None)
        if conference is None:
            raise RestFailure(404, 20404, f"The requested resource {path} was not found")
        return conference

    def _participant_by(self, conference: Conference, sid_or_label: str) -> Participant | None:
        return conference.participants.get(sid_or_label) or next(
            (p for p in conference.participants.values() if p.label == sid_or_label), None)

    def _add_participant(self, conference: Conference, one: dict[str, str], many: dict[str, list[str]]) -> dict:
        if conference.status == "completed":
            raise RestFailure(400, 16003, "Could not recognize conference sid or friendly name")
        if not one.get("To") or not one.get("From"):
            raise RestFailure(400, 21201, "Required parameters 'From' and 'To' are missing")
        label = one.get("Label")
        if label and any(p.label == label for p in conference.participants.values()):
            raise RestFailure(400, 16025, f"A participant with label {label} already exists")
        call = self._new_call(one["From"], one["To"], "outbound-api")
        call.status_callback = one.get("StatusCallback")
        call.status_events = _events(many.get("StatusCallbackEvent")) if call.status_callback else frozenset()
        call.timeout = int(one.get("Timeout") or 60)
        call.participant = {"conference_sid": conference.sid, "label": label,
                            "end_on_exit": one.get("EndConferenceOnExit") == "true",
                            "start_on_enter": one.get("StartConferenceOnEnter", "true") != "false"}
        self._ring(call)
        return {**self._participant_json(conference, Participant(call_sid=call.sid, label=label, status="queued")),
                "status": "queued"}

    def _update_participant(self, conference: Conference, participant: Participant, one: dict[str, str]) -> None:
        call = self.calls[participant.call_sid]
        if "Hold" in one:
            hold = one["Hold"] == "true"
            if hold:
                participant.hold_url = one.get("HoldUrl") or None
                call.heard.append("hold:" + (participant.hold_url or DEFAULT_HOLD_MUSIC))
            if hold != participant.hold:
                participant.hold = hold
                self._conference_event(conference, "participant-hold" if hold else "participant-unhold",
                                       call.sid, participant.label)
        if "Muted" in one:
            muted = one["Muted"] == "true"
            if muted != participant.muted:
                participant.muted = muted
                self._conference_event(conference, "participant-mute" if muted else "participant-unmute",
                                       call.sid, participant.label)

    # ----------------------------------------------------------- JSON shapes

    def _uri(self, tail: str) -> str:
        return f"{API}/Accounts/{self.account_sid}/{tail}"

    def _call_json(self, call: Call) -> dict:
        stamp = _now_rfc2822(self.clock)
        return {"sid": call.sid, "account_sid": self.account_sid, "parent_call_sid": call.parent_sid,
                "to": call.to, "from": call.from_, "status": call.status, "direction": call.direction,
                "api_version": "2010-04-01", "date_created": stamp, "date_updated": stamp,
                "start_time": None, "end_time": None, "duration": str(self._duration(call)) if not call.active
                else None, "price": None, "answered_by": None, "uri": self._uri(f"Calls/{call.sid}.json")}

    def _conference_json(self, conference: Conference) -> dict:
        stamp = _now_rfc2822(self.clock)
        return {"sid": conference.sid, "account_sid": self.account_sid, "friendly_name": conference.friendly_name,
                "status": conference.status, "region": "us1", "api_version": "2010-04-01",
                "date_created": stamp, "date_updated": stamp, "reason_conference_ended": conference.reason_ended,
                "call_sid_ending_conference": conference.call_sid_ending,
                "uri": self._uri(f"Conferences/{conference.sid}.json")}

    def _participant_json(self, conference: Conference, participant: Participant) -> dict:
        stamp = _now_rfc2822(self.clock)
        return {"account_sid": self.account_sid, "call_sid": participant.call_sid,
                "conference_sid": conference.sid, "label": participant.label, "status": participant.status,
                "hold": participant.hold, "muted": participant.muted, "coaching": False, "call_sid_to_coach": None,
                "end_conference_on_exit": participant.end_on_exit,
                "start_conference_on_enter": participant.start_on_enter, "date_created": stamp,
                "date_updated": stamp, "queue_time": "0",
                "uri": self._uri(f"Conferences/{conference.sid}/Participants/{participant.call_sid}.json")}

    def _page(self, key: str, path: str, records: list[dict]) -> dict:
        return {key: records, "first_page_uri": path, "next_page_uri": None, "previous_page_uri": None,
                "page": 0, "page_size": 50, "start": 0, "end": max(0, len(records) - 1), "uri": path}

    def _recording_media(self, path: str, sid: str, audio_format: str, range_header: str | None):
        recording = self.recordings.get(sid) or _raise_not_found(path)
        audio = recording["audio"]
        body, status, first, last = audio, 200, 0, len(audio) - 1
        if range_header and range_header.startswith("bytes="):
            start, _, end = range_header[6:].partition("-")
            first, last = int(start), min(int(end) if end else last, last)
            body, status = audio[first:last + 1], 206
        headers = {"Content-Type": "audio/mpeg" if audio_format == "mp3" else "audio/x-wav",
                   "Accept-Ranges": "bytes"}
        if status == 206:
            headers["Content-Range"] = f"bytes {first}-{last}/{len(audio)}"
        return status, body, headers


class MediaStream:
    """A Media Stream the stand-in opened for ``<Connect><Stream>``: Twilio's side, in a thread of its own.

    It speaks through ``bridge_helpers.TwilioStream`` (imported when a stream opens),
    the tests' one client of the Media Streams protocol.
    """

    def __init__(self, standin: TwilioStandIn, call: Call, url: str, local_url: str,
                 parameters: Mapping[str, str]) -> None:
        self.url = url
        self.parameters = dict(parameters)
        self.stream_sid = new_sid("MZ")
        self.received: list[dict] = []  # the far side's messages, in order
        self.started = threading.Event()  # start sent
        self.closed = threading.Event()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._standin, self._call, self._local_url = standin, call, local_url
        self._signature = RequestValidator(standin.auth_token).compute_signature(url, {})
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client = None  # bridge_helpers.TwilioStream, once connected
        self._stopping = False
        threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True, name=f"stream {self.stream_sid}").start()

    def media(self) -> list[bytes]:
        """The payloads of the far side's media messages (mu-law)."""
        return [base64.b64decode(m["media"]["payload"]) for m in self.received if m.get("event") == "media"]

    def play(self, samples, timeout: float = 30) -> None:
        """The caller speaks: 8 kHz int16 samples as 20 ms media messages, at real-time pace."""
        assert self.started.wait(timeout), "the stream did not start"
        assert self._loop is not None and self._client is not None
        asyncio.run_coroutine_threadsafe(self._client.play(samples), self._loop).result(timeout)

    def stop(self) -> None:
        """The call is over: ``stop``, then the websocket closed (without waiting)."""
        self._stopping = True
        if self._loop is not None and not self.closed.is_set():
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop)

    async def _stop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.stop()
                await self._client.ws.close()

    async def _run(self) -> None:
        from bridge_helpers import TwilioStream
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, WebSocketException

        self._loop = asyncio.get_running_loop()
        parameters = dict(self.parameters)
        target = parameters.pop("target", "")
        auth = parameters.pop("auth", "")
        try:
            async with connect(self._local_url, additional_headers={"X-Twilio-Signature": self._signature},
                               open_timeout=10) as websocket:
                client = TwilioStream(websocket, self.stream_sid, self._call.sid)
                await client.connected()
                await client.start(target, auth=auth, account_sid=self._standin.account_sid, **parameters)
                self._client = client
                self.started.set()
                if self._stopping:
                    await self._stop()
                with contextlib.suppress(ConnectionClosed):
                    async for raw in websocket:
                        message = json.loads(raw)
                        self.received.append(message)
                        if message.get("event") == "mark":
                            await client.mark(message["mark"]["name"])
                self.close_code, self.close_reason = websocket.close_code, websocket.close_reason
        except (OSError, TimeoutError, WebSocketException) as exc:  # refused, or unreachable
            self.close_reason = f"{type(exc).__name__}: {exc}"
        finally:
            self.closed.set()
            if not self._stopping:
                self._standin._stream_over(self._call, self)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _events(values: Iterable[str] | None) -> frozenset[str]:
    # The library sends one StatusCallbackEvent field per event; a space-separated list works too.
    return frozenset(word for value in (values or ["completed"]) for word in value.split())


def _error(status: int, code: int, message: str) -> tuple[int, dict, dict]:
    return status, {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                    "status": status}, {}


def _not_found(path: str):
    return _error(404, 20404, f"The requested resource {path} was not found")


def _raise_not_found(path: str):
    raise RestFailure(404, 20404, f"The requested resource {path} was not found")


class _Handler(BaseHTTPRequestHandler):
    standin: TwilioStandIn
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body leave in two writes: without this, Nagle's algorithm holds the body
        # for the client's delayed ACK (40 ms), which Twilio's own API never adds.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_DELETE(self):
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        standin = self.standin
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if standin.unreachable or standin.stalled:
            if standin.stalled:
                standin._release.wait(60)
            self.close_connection = True
            self.connection.close()  # no answer at all: what an unreachable API looks like to a client
            return
        split = urlsplit(self.path)
        params = parse_qs(split.query, keep_blank_values=True)
        for key, values in parse_qs(body, keep_blank_values=True).items():
            params.setdefault(key, []).extend(values)
        with standin._lock:
            hooks = [hook for hook in standin._while_answering if hook[0] is None or hook[0].search(split.path)][:1]
            for hook in hooks:
                standin._while_answering.remove(hook)
        status, payload, headers = standin.handle_rest(method, split.path, params,
                                                       self.headers.get("Authorization", ""),
                                                       self.headers.get("Range"))
        for _, action in hooks:
            action()  # after Twilio acted on the request, before its answer reaches the app
        if isinstance(payload, dict):
            data, content_type = json.dumps(payload).encode(), "application/json"
        else:
            data, content_type = payload or b"", headers.pop("Content-Type", "application/octet-stream")
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if status != 204:
            self.wfile.write(data)

    def log_message(self, *args):
        pass

