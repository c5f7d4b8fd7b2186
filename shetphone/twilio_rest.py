"""The one seam to Twilio's REST API: calls, conference participants, recordings.

Everything goes through the twilio library's ``Client`` with the API domain's
base URL set to ``api_base`` (``twilio_api_base``), so tests and proxies can
stand in for ``https://api.twilio.com``. Whatever goes wrong (Twilio refusing,
answering nonsense, or not answering at all) comes out as one
:class:`TwilioRestError` carrying Twilio's own message and status, never as the
library's or requests' exceptions.

:func:`run_plan` performs a :class:`shetphone.control.Plan`: its steps in order,
and, when one fails, the undoing of the steps already done that can be undone,
so the state handed back matches what Twilio is actually doing.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from . import control

log = logging.getLogger(__name__)
# The library logs every request and its headers at INFO (a dozen lines each); failures are ours to say.
logging.getLogger("twilio.http_client").setLevel(logging.WARNING)

DEFAULT_API_BASE = "https://api.twilio.com"
REST_TIMEOUT = 5.0  # seconds per request: a control route must answer, not hang, when Twilio is slow
MEDIA_TIMEOUT = (5.0, 30.0)  # connecting, then between bytes of a recording
CALL_EVENTS = ("initiated", "ringing", "answered", "completed")
# The library prefixes Twilio's message with what it was doing; the user wants Twilio's words.
LIBRARY_PREFIX = re.compile(r"^Unable to (?:create|update|delete|fetch) record(?:: )?")

T = TypeVar("T")


class TwilioRestError(Exception):
    """Twilio's REST API refused a request, answered nonsense, or could not be reached.

    ``message`` is Twilio's own message (``could not be reached`` ones are ours);
    ``status`` is the HTTP status Twilio answered, None when it did not answer;
    ``code`` and ``more_info`` are Twilio's error code and its documentation page.
    """

    def __init__(self, message: str, status: int | None = None, code: int | None = None,
                 more_info: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.more_info = more_info

    @property
    def unreachable(self) -> bool:
        return self.status is None

    def __str__(self) -> str:
        return self.message if self.status is None else f"Twilio answered {self.status}: {self.message}"


@dataclass(frozen=True)
class CallInfo:
    sid: str
    status: str
    parent_call_sid: str | None
    from_: str | None
    to: str | None


@dataclass(frozen=True)
class ParticipantInfo:
    call_sid: str
    conference_sid: str
    label: str | None
    status: str | None
    hold: bool
    muted: bool


@dataclass(frozen=True)
class ConferenceInfo:
    sid: str
    friendly_name: str
    status: str


class RecordingMedia:
    """A recording's audio as Twilio serves it, streamed: close it (or use ``with``) when done."""

    def __init__(self, response: requests.Response):
        self._response = response
        self.status = response.status_code
        self.headers: Mapping[str, str] = response.headers

    def iter_content(self, chunk_size: int = 32 * 1024) -> Iterator[bytes]:
        return self._response.iter_content(chunk_size=chunk_size)

    def close(self) -> None:
        self._response.close()

    def __enter__(self) -> RecordingMedia:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TwilioRest:
    """Twilio's REST API for one account, at ``api_base``."""

    def __init__(self, account_sid: str, auth_token: str, api_base: str = DEFAULT_API_BASE,
                 timeout: float = REST_TIMEOUT, media_timeout: tuple[float, float] = MEDIA_TIMEOUT):
        if not (account_sid and auth_token):
            raise ValueError("TwilioRest needs the account SID and auth token")
        self.account_sid = account_sid
        self.api_base = api_base.rstrip("/")
        self._auth = (account_sid, auth_token)
        self._media_timeout = media_timeout
        self._media = requests.Session()
        # A non-empty environment, so the library never reads os.environ (only settings.py does):
        # a TWILIO_EDGE or TWILIO_REGION there would rewrite the host of api_base.
        self._client = Client(account_sid, auth_token, http_client=TwilioHttpClient(timeout=timeout),
                              environment={"TWILIO_EDGE": "", "TWILIO_REGION": ""})
        # The library keeps one base URL per Twilio domain; calls, conferences and recordings
        # all live on the "api" domain.
        self._client.api.base_url = self.api_base

    # ------------------------------------------------------------------ calls

    def redirect_call(self, call_sid: str, twiml: str) -> CallInfo:
        """Have a call in progress run ``twiml`` instead of what it is doing now."""
        return self._call(lambda: _call_info(self._client.calls(call_sid).update(twiml=twiml)))

    def end_call(self, call_sid: str) -> CallInfo:
        """Hang up a call, ringing or in progress (``Status=completed``)."""
        return self._call(lambda: _call_info(self._client.calls(call_sid).update(status="completed")))

    def create_call(self, to: str, from_: str, twiml: str, status_callback: str | None = None,
                    status_callback_event: Sequence[str] = CALL_EVENTS) -> CallInfo:
        """Place a call from a team number that runs ``twiml`` once answered."""
        options = {}
        if status_callback:
            options = {"status_callback": status_callback, "status_callback_event": list(status_callback_event)}
        return self._call(lambda: _call_info(self._client.calls.create(to=to, from_=from_, twiml=twiml, **options)))

    def fetch_call(self, call_sid: str) -> CallInfo:
        return self._call(lambda: _call_info(self._client.calls(call_sid).fetch()))

    # ------------------------------------------------------------ conferences

    def add_participant(self, conference_sid: str, from_: str, to: str, label: str, timeout: int,
                        status_callback: str, status_callback_event: Sequence[str] = CALL_EVENTS) -> ParticipantInfo:
        """Ring ``to`` (``client:NAME`` or E.164) into a conference; it joins when answered."""
        return self._call(lambda: _participant_info(self._client.conferences(conference_sid).participants.create(
            from_=from_, to=to, label=label, timeout=timeout, status_callback=status_callback,
            status_callback_event=list(status_callback_event), beep="false", end_conference_on_exit=False)))

    def hold_participant(self, conference_sid: str, call_sid: str, hold: bool,
                         hold_url: str | None = None) -> ParticipantInfo:
        """Put a participant on hold (hearing ``hold_url``, or Twilio's music) or take them off."""
        options = {"hold_url": hold_url} if hold and hold_url else {}
        return self._call(lambda: _participant_info(
            self._client.conferences(conference_sid).participants(call_sid).update(hold=hold, **options)))

    def remove_participant(self, conference_sid: str, call_sid: str) -> None:
        """Take a participant out of a conference; their call goes on with the TwiML after its <Dial>."""
        self._call(lambda: self._client.conferences(conference_sid).participants(call_sid).delete())

    def participants(self, conference_sid: str) -> list[ParticipantInfo]:
        return self._call(lambda: [_participant_info(p)
                                   for p in self._client.conferences(conference_sid).participants.list(limit=100)])

    def end_conference(self, conference_sid: str) -> None:
        """End a conference: every participant leaves it at once."""
        self._call(lambda: self._client.conferences(conference_sid).update(status="completed"))

    def conferences_named(self, friendly_name: str, status: str = "in-progress") -> list[ConferenceInfo]:
        return self._call(lambda: [
            ConferenceInfo(sid=c.sid or "", friendly_name=c.friendly_name or "", status=c.status or "")
            for c in self._client.conferences.list(friendly_name=friendly_name, status=status, limit=20)])

    # ------------------------------------------------------------- recordings

    def recording_media_url(self, recording_sid: str, audio_format: str = "mp3") -> str:
        """Twilio's address of a recording's audio, built from its SID, never taken from a request."""
        return f"{self.api_base}/2010-04-01/Accounts/{self.account_sid}/Recordings/{recording_sid}.{audio_format}"

    def recording_media(self, recording_sid: str, audio_format: str = "mp3",
                        headers: Mapping[str, str] | None = None) -> RecordingMedia:
        """The recording's audio, streamed (``headers`` may carry Range); 200 or 206, else TwilioRestError.

        Not through the library: its HTTP client reads whole bodies as text.
        """
        url = self.recording_media_url(recording_sid, audio_format)
        try:
            response = self._media.get(url, auth=self._auth, headers=dict(headers or {}), stream=True,
                                       timeout=self._media_timeout)
        except requests.RequestException as exc:
            raise self._unreachable(exc) from None
        if response.status_code not in (200, 206):
            try:
                error = _error_from_body(response.status_code, response.text)
            finally:
                response.close()
            raise error
        return RecordingMedia(response)

    # --------------------------------------------------------------- the plan

    def perform(self, step: control.Step) -> str | None:
        """Do one step of a control plan; returns the new call's SID for a Ring, else None."""
        match step:
            case control.MoveIntoConference() | control.RedirectCall():
                self.redirect_call(step.call_sid, step.twiml)
            case control.Hold(conference_sid=conference, call_sid=sid, hold=hold, hold_url=hold_url):
                self.hold_participant(conference, sid, hold, hold_url)
            case control.Ring():
                return self.add_participant(step.conference_sid, step.from_, step.to, step.label, step.timeout,
                                            step.status_callback).call_sid
            case control.Remove(conference_sid=conference, call_sid=sid):
                self.remove_participant(conference, sid)
            case control.EndCall(call_sid=sid):
                self.end_call(sid)
            case control.EndConference(conference_sid=conference):
                self.end_conference(conference)
            case _:
                raise TypeError(f"not a control step: {step!r}")
        return None

    # -------------------------------------------------------------- internals

    def _call(self, request: Callable[[], T]) -> T:
        try:
            return request()
        except TwilioRestException as exc:
            raise TwilioRestError(_twilio_message(exc.msg, exc.status), exc.status, _int_or_none(exc.code),
                                  _more_info(exc.code)) from None
        except TwilioServiceException as exc:
            raise TwilioRestError(exc.detail or exc.title, exc.status, _int_or_none(exc.code), exc.type) from None
        except requests.RequestException as exc:
            raise self._unreachable(exc) from None
        except (TwilioException, ValueError, KeyError) as exc:
            # e.g. a proxy's HTML page where JSON should be, or a page the library cannot read
            raise TwilioRestError(f"Twilio's answer could not be read: {exc}") from None

    def _unreachable(self, exc: requests.RequestException) -> TwilioRestError:
        host = urlsplit(self.api_base).netloc or self.api_base
        if isinstance(exc, requests.Timeout):
            why = "it did not answer in time"
        elif isinstance(exc, requests.ConnectionError):
            why = "the connection failed"
        else:
            why = type(exc).__name__
        log.warning("Twilio's REST API at %s could not be reached: %s", host, exc)
        return TwilioRestError(f"Twilio could not be reached ({host}): {why}; try again shortly")


def _call_info(call) -> CallInfo:
    return CallInfo(sid=call.sid or "", status=call.status or "", parent_call_sid=call.parent_call_sid,
                    from_=call._from, to=call.to)


def _participant_info(participant) -> ParticipantInfo:
    return ParticipantInfo(call_sid=participant.call_sid or "", conference_sid=participant.conference_sid or "",
                           label=participant.label, status=participant.status, hold=bool(participant.hold),
                           muted=bool(participant.muted))


def _twilio_message(library_message: str, status: int) -> str:
    message = LIBRARY_PREFIX.sub("", str(library_message or "")).strip()
    return message or f"HTTP {status} with no message"


def _error_from_body(status: int, body: str) -> TwilioRestError:
    """Twilio's error document (``code``, ``message``, ``more_info``, ``status``), or the bare status."""
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict) and document.get("message"):
        return TwilioRestError(str(document["message"]), status, _int_or_none(document.get("code")),
                               document.get("more_info"))
    return TwilioRestError(f"HTTP {status} with no message", status)


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _more_info(code) -> str | None:
    number = _int_or_none(code)
    return f"https://www.twilio.com/docs/errors/{number}" if number else None


# ------------------------------------------------------------------ running a plan


@dataclass(frozen=True)
class PlanOutcome:
    """What :func:`run_plan` did: the state to store, and the error that stopped it, if one did."""

    state: control.CallControl
    error: TwilioRestError | None = None
    done: tuple[control.Step, ...] = ()  # the steps Twilio carried out and that were not undone
    failed: control.Step | None = None  # the step that failed (for control.on_step_failed)
    undo_failed: bool = False  # an undo failed too: ``state`` says what is left in place
    rung: dict[str, str] = field(default_factory=dict)  # label -> call SID of each Ring that succeeded


def run_plan(rest: TwilioRest, plan: control.Plan, before: control.CallControl) -> PlanOutcome:
    """Perform ``plan``'s steps in order; on a failure, undo what can be undone, newest first.

    The outcome's state is the plan's final state when every step succeeded, ``before``
    when a failure was fully undone, else the checkpoint of the last step still in
    force. ``before``: for a request, the state it was planned from (refused whole);
    for a callback, ``plan.base`` (what the callback told stays true).
    """
    checkpoints = list(plan.checkpoints)
    final = plan.state
    rung: dict[str, str] = {}
    done: list[int] = []
    for index, step in enumerate(plan.steps):
        try:
            call_sid = rest.perform(step)
        except TwilioRestError as error:
            log.warning("control step %s for %s failed: %s", type(step).__name__, before.root_sid, error)
            return _undo(rest, plan, before, checkpoints, done, rung, error, step)
        if isinstance(step, control.Ring) and call_sid:
            rung[step.label] = call_sid
            # Later checkpoints learn the rung call's SID, so callbacks about it find their party.
            checkpoints = [control.with_call_sid(c, step.label, call_sid) for c in checkpoints]
            final = control.with_call_sid(final, step.label, call_sid)
        done.append(index)
    return PlanOutcome(state=final, done=plan.steps, rung=rung)


def _undo(rest: TwilioRest, plan: control.Plan, before: control.CallControl, checkpoints: list,
          done: list[int], rung: dict[str, str], error: TwilioRestError, failed: control.Step) -> PlanOutcome:
    remaining = list(done)
    while remaining:
        index = remaining[-1]
        step = plan.steps[index]
        undo = control.undo_of(step, rung.get(step.label) if isinstance(step, control.Ring) else None)
        if undo is None:
            break  # cannot be undone: what came before it stays too
        try:
            rest.perform(undo)
        except TwilioRestError as undo_error:
            log.warning("could not undo %s for %s: %s", type(step).__name__, before.root_sid, undo_error)
            return PlanOutcome(state=checkpoints[index], error=error,
                               done=tuple(plan.steps[i] for i in remaining), failed=failed, undo_failed=True,
                               rung=dict(rung))
        remaining.pop()
        if isinstance(step, control.Ring):
            rung.pop(step.label, None)
    state = checkpoints[remaining[-1]] if remaining else before
    return PlanOutcome(state=state, error=error, done=tuple(plan.steps[i] for i in remaining), failed=failed,
                       rung=rung)
