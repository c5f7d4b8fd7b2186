"""Twilio's webhooks: TwiML for calls, status and recording callbacks."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING

from flask import Blueprint, Response, abort, request, url_for

from .. import current_team, realtime, ringing, stream_auth, twilio_fields, twiml
from ..callstate import call_status_event, int_or_none
from ..dialing import DialRefused, plan_outbound_call
from ..mail import Voicemail
from ..presence import State
from ..settings import NumberTarget
from ..store import StoreError, StoreRefused
from ..voicemail import is_recording_sid
from . import control as call_control
from .dialer import url_for_voicemail
from .signature import twilio_signed

if TYPE_CHECKING:
    from ..team import Team

log = logging.getLogger(__name__)
bp = Blueprint("voice", __name__, url_prefix="/voice")

VOICEMAIL_STATUSES = {"no-answer", "busy", "failed"}
QUIET_STATUSES = {"queued", "ringing"}  # nobody is busier or freer for them
NOBODY_TO_RING = "Sorry, nobody can take your call. Please try again later."

# The fields each route stores, checked before it does (twilio_fields): a value no real Twilio request
# carries is answered as done, never stored, rather than refused by the database on every retry.
CALL_FIELDS = {"CallSid": twilio_fields.call_sid, "From": twilio_fields.address}
STATUS_FIELDS = {"CallSid": twilio_fields.call_sid, "ParentCallSid": twilio_fields.call_sid,
                 "From": twilio_fields.address, "To": twilio_fields.address}
DIAL_FIELDS = {"CallSid": twilio_fields.call_sid}
RECORDING_FIELDS = {"CallSid": twilio_fields.call_sid, "RecordingSid": twilio_fields.recording_sid,
                    "RecordingUrl": twilio_fields.url}


_ROUTE_PATHS: dict[str, str] = {}  # endpoint -> its path, for routes without values: the same in every app


def public_url_for(endpoint: str, team: Team | None = None, **values) -> str:
    """An absolute URL Twilio can reach: ``public_url`` + the route's path (``team``: the current one)."""
    path = _ROUTE_PATHS.get(endpoint) if not values else None
    if path is None:
        path = url_for(endpoint, _external=False, **values).removeprefix(request.script_root)
        if not values:
            _ROUTE_PATHS[endpoint] = path  # url_for is a tenth of /voice's work; the rules never change
    return (team or current_team()).settings.public_url + path


def callback_url_for(endpoint: str, team: Team | None = None) -> str:
    """A status or recording callback's URL: Twilio retries it on a 5xx (the store busy), see twiml.RETRIES."""
    return twiml.with_retries(public_url_for(endpoint, team))


def xml(document: str) -> Response:
    return Response(document, mimetype="text/xml")


@bp.post("")
@twilio_signed
def incoming():
    form = request.form
    caller, called = form.get("From", ""), form.get("To", "")
    call_sid: str | None = form.get("CallSid", "")
    team = current_team()  # once: each lookup goes through Flask's context locals
    wrong = twilio_fields.problem(form, CALL_FIELDS)
    if wrong is not None:
        log.warning("a call goes ahead without being logged: %s", wrong)
        call_sid = None  # not logged, and nothing more said of it
    if caller.startswith("client:"):  # a client of that name is one of the team's, or the call is refused
        return _from_browser(team, caller.removeprefix("client:"), called, call_sid)
    if wrong is not None and twilio_fields.address(caller) is not None:
        caller = ""  # no real caller's: kept out of the TwiML too (a NUL byte is no XML)
    return _to_team_number(team, caller, called, call_sid)


def _from_browser(team: Team, client: str, dialled: str, call_sid: str | None) -> Response:
    if client not in team.users.current:
        return xml(twiml.refusal("Sorry, your account can no longer make calls."))
    try:
        call = plan_outbound_call(
            dialled, team.directory.caller_ids_for(client), team.policy, request.form.get("CallerId") or None
        )
    except DialRefused as refused:
        log.info("refused a call from %s to %r: %s", client, dialled, refused.reason)
        return xml(twiml.refusal(refused.reason))
    _open_call(team, call_sid, "outbound", call.caller_id, call.caller_id, call.destination, client)
    # The action lets the browser's leg follow its child into a conference (call control, SPEC §6).
    return xml(twiml.outbound_dial(call.destination, call.caller_id, callback_url_for("voice.status", team),
                                   action_url=public_url_for("voice.dial_complete", team)))


def _to_team_number(team: Team, caller: str, number: str, call_sid: str | None) -> Response:
    target = team.directory.target_for(number)
    if target is None:
        return xml(twiml.refusal("Sorry, this number is not in service."))
    logged = _open_call(team, call_sid, "inbound", number, caller, number, None)
    if target.kind == "clients":
        return xml(_ring(team, target, caller, number, call_sid, database_answers=logged))
    stream_url = f"wss://{team.settings.public_host}/media/stream"
    stream_target = target.stream_target
    # The bridge admits the stream only with this, once, for this call and target (SPEC §5).
    auth = stream_auth.mint(team.settings.secret_key, call_sid or "", stream_target)
    return xml(twiml.media_stream(stream_url, {"target": stream_target, "from": caller, "auth": auth}))


def _ring(team: Team, target: NumberTarget, caller: str, number: str, call_sid: str | None, *,
          database_answers: bool) -> str:
    """SPEC §7: the members who are available, the number's outside phones and the forward number of each
    member who is offline; nobody: straight to voicemail. A member removed from .htpasswd is never rung.

    ``database_answers`` False: the call could not be logged just now, so DND and calls in progress are
    not waited for either (the caller would hear silence twice as long)."""
    users = team.users.current
    members = [member for member in target.clients if member in users]
    everyone = {member: State.AVAILABLE for member in members}  # as before presence: a call rings
    try:
        # While shared presence is unreachable every member who is not dnd or busy rings: a browser
        # that is not there costs nothing, a missed call does.
        states = team.presence.ringing_states(members, team.settings.forward) if database_answers else everyone
    except StoreError as exc:
        log.warning("presence unknown for a call to %s, every member rings: %s", number, exc)
        states = everyone
    group = ringing.RingGroup(target.clients, target.outside_numbers)
    plan = ringing.plan_ringing(group, states, team.settings.forward, users)
    if plan.voicemail:
        _missed_at_once(team, call_sid, caller, number)
    return ringing.ring_twiml(
        plan,
        caller=caller,
        team_number=number,
        timeout=team.settings.ring_timeout,
        action_url=public_url_for("voice.dial_complete", team),
        status_url=callback_url_for("voice.status", team),
        voicemail=lambda: _voicemail() or twiml.refusal(NOBODY_TO_RING),
    )


def _missed_at_once(team: Team, call_sid: str | None, caller: str, number: str) -> None:
    """A call sent straight to voicemail is missed from the start: no leg and no <Dial action> will say so,
    so the log is told here, and the pages of the number (their recent calls) too."""
    if not call_sid:  # not logged (_open_call or incoming said why): no call for the pages either
        return
    try:
        team.store.calls.missed_at_once(call_sid)
    except StoreError as exc:
        log.warning("could not record call %s as missed: %s", call_sid, exc)
        return
    facts = SimpleNamespace(number=number, direction="inbound", from_number=caller, to_number=number)
    realtime.emit_call_status(call_status_event(facts, call_sid, None, "no-answer", datetime.now(UTC), None))


def _open_call(team: Team, call_sid: str | None, direction: str, number: str, caller: str, called: str,
               client: str | None) -> bool:
    """Log the call's start; False when the database could not. ``call_sid`` None: not to be logged
    (a field the store would refuse; ``incoming`` said which)."""
    # The call goes ahead even when the log cannot be written: a lost log row is
    # better than a lost call.
    if call_sid is None:
        return True
    if not call_sid:  # every request without one would fold into one row keyed ""
        log.warning("a call from %s to %s came without a CallSid: not logged", caller, called)
        return True  # the database is well: presence is still asked
    try:
        team.store.calls.open_call(
            call_sid, direction=direction, number=number, from_=caller, to=called, client=client
        )
    except StoreError as exc:
        log.warning("could not log the start of call %s: %s", call_sid, exc)
        return False
    return True


def _fields_refused(what: str, checks: dict[str, twilio_fields.Check]) -> bool:
    """Whether a field of the request could not be Twilio's (one line says which): then nothing is stored."""
    wrong = twilio_fields.problem(request.form, checks)
    if wrong is not None:
        log.warning("%s ignored: %s", what, wrong)
    return wrong is not None


@bp.post("/status")
@twilio_signed
def status():
    if _fields_refused("a status callback", STATUS_FIELDS):
        return "", 204
    if call_control.status_callback(request.form, request.args):  # a target control rang: not a call of the log
        return "", 204
    team = current_team()
    try:
        payload = team.store.calls.record_status(request.form, team.directory.team_numbers())
    except StoreRefused as exc:  # the same every time: Twilio is not asked to retry it
        log.warning("a status callback ignored: %s", exc)
        return "", 204
    except StoreError as exc:
        log.warning("could not record a status callback; Twilio will retry it (%s): %s", twiml.RETRIES, exc)
        abort(503)
    if payload is not None:
        realtime.emit_call_status(payload)
        if payload["status"] not in QUIET_STATUSES:  # a call started or ended: someone may be busy, or free
            realtime.publish_presence_soon(current_team().directory.members_of(payload["number"]))
    return "", 204


@bp.post("/dial-complete")
@twilio_signed
def dial_complete():
    team = current_team()
    outcome = request.form.get("DialCallStatus", "")
    call_sid = request.form.get("CallSid", "")
    if not _fields_refused("the outcome of a <Dial>", DIAL_FIELDS):  # else the caller still gets voicemail
        try:
            team.store.calls.record_dial_outcome(call_sid, outcome)
        except StoreError as exc:
            log.warning("could not record the outcome of call %s: %s", call_sid, exc)
        moved = call_control.dial_answer(request.form)  # the conference, for a call control is moving into one
        if moved is not None:
            return xml(moved)
    # A browser's outgoing call is over with its <Dial>: nobody there to leave a message for.
    outgoing = request.form.get("From", "").startswith("client:")
    voicemail = _voicemail() if outcome in VOICEMAIL_STATUSES and not outgoing else None
    return xml(voicemail or twiml.hangup())


@bp.post("/conference")
@twilio_signed
def conference():
    """Conference status callbacks (SPEC §6): who joined, left, is held; control reacts."""
    call_control.conference_callback(request.form)
    return "", 204


def _voicemail() -> str | None:
    """The voicemail TwiML, or None when voicemail is off."""
    settings = current_team().settings
    if not settings.voicemail:
        return None
    return twiml.voicemail(
        settings.voicemail_greeting,
        settings.voicemail_greeting_url,
        callback_url_for("voice.recording"),
        public_url_for("voice.recorded"),
        callback_url_for("voice.transcription") if settings.voicemail_transcribe else None,
    )


@bp.post("/recorded")
@twilio_signed
def recorded():
    """The <Record action>: the message is left (it reaches /voice/recording on its own); hang up."""
    return xml(twiml.hangup())


@bp.post("/recording")
@twilio_signed
def recording():
    form = request.form
    if form.get("RecordingStatus", "completed") != "completed" or _fields_refused("a recording callback",
                                                                                    RECORDING_FIELDS):
        return "", 204
    duration = int_or_none(form.get("RecordingDuration")) or 0
    team = current_team()
    try:
        stored = team.store.calls.record_voicemail(
            form.get("CallSid", ""),
            recording_sid=form.get("RecordingSid", ""),
            recording_url=form.get("RecordingUrl", ""),
            duration=duration,
            also=_queue_mail if team.mail is not None else None,
        )
    except StoreRefused as exc:
        log.warning("a recording callback ignored: %s", exc)
        return "", 204
    except StoreError as exc:
        log.warning("could not store a recording; Twilio will retry it (%s): %s", twiml.RETRIES, exc)
        abort(503)
    if stored is not None:
        if team.mail is not None:
            team.mail.wake()
        realtime.emit_voicemail(_voicemail_event(stored))
    return "", 204


def _voicemail_event(stored: dict) -> dict:
    """The ``voicemail`` event (SPEC §4), with ``transcript`` when the facts have one (SPEC §8)."""
    event = {
        "call_sid": stored["call_sid"],
        "number": stored["number"],
        "from": stored["from"],
        "recording_url": url_for_voicemail(stored["recording_sid"]),
        "duration": stored["duration"],
    }
    if stored.get("transcript"):
        event["transcript"] = stored["transcript"]
    return event


def _queue_mail(conn, stored: dict) -> None:
    """In the recording's transaction: its e-mail to each member of the number with an address (SPEC §8)."""
    team = current_team()
    addresses = team.mail_addresses_for(stored["number"])
    if not addresses:
        return
    voicemail = Voicemail(stored["recording_sid"], stored["from"], stored["number"], stored["duration"],
                          received_at=datetime.now(UTC))
    team.store.outbox.add_in(conn, voicemail, addresses, now=time.time(),
                             wait_for_transcript=team.settings.voicemail_transcribe)


@bp.post("/transcription")
@twilio_signed
def transcription():
    """Twilio's transcript of a voicemail (``transcribeCallback``): kept, shown, and put in its e-mail."""
    form = request.form
    recording_sid = form.get("RecordingSid", "")
    if not is_recording_sid(recording_sid):
        log.warning("transcription callback without a valid RecordingSid ignored")
        return "", 204
    completed = form.get("TranscriptionStatus") == "completed"
    text = twilio_fields.without_nul(form.get("TranscriptionText") or "").strip() if completed else ""
    if not text:
        log.info("no transcript for recording %s (%s)", recording_sid, form.get("TranscriptionStatus") or "no status")
    team = current_team()
    try:
        stored = team.store.outbox.transcribed(recording_sid, text or None, now=time.time())
    except StoreRefused as exc:
        log.warning("a transcription callback ignored: %s", exc)
        return "", 204
    except StoreError as exc:
        log.warning("could not store a transcript: %s", exc)
        abort(503)
    if team.mail is not None:
        team.mail.wake()  # the mail waiting for this goes now, with or without it
    if stored is None:
        log.warning("transcript of recording %s, which the call log does not know, dropped", recording_sid)
    elif text:
        realtime.emit_voicemail(_voicemail_event(stored))
    return "", 204
