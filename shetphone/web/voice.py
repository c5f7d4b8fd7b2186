"""Twilio's webhooks: TwiML for calls, status and recording callbacks."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, request, url_for

from .. import current_team, realtime, stream_auth, twiml
from ..dialing import DialRefused, plan_outbound_call
from ..store import StoreError
from . import control as call_control
from .dialer import url_for_voicemail
from .signature import twilio_signed

log = logging.getLogger(__name__)
bp = Blueprint("voice", __name__, url_prefix="/voice")

VOICEMAIL_STATUSES = {"no-answer", "busy", "failed"}
NOBODY_TO_RING = "Sorry, nobody can take your call. Please try again later."


_ROUTE_PATHS: dict[str, str] = {}  # endpoint -> its path, for routes without values: the same in every app


def public_url_for(endpoint: str, **values) -> str:
    """An absolute URL Twilio can reach: ``public_url`` + the route's path."""
    path = _ROUTE_PATHS.get(endpoint) if not values else None
    if path is None:
        path = url_for(endpoint, _external=False, **values).removeprefix(request.script_root)
        if not values:
            _ROUTE_PATHS[endpoint] = path  # url_for is a tenth of /voice's work; the rules never change
    return current_team().settings.public_url + path


def callback_url_for(endpoint: str) -> str:
    """A status or recording callback's URL: Twilio retries it on a 5xx (the store busy), see twiml.RETRIES."""
    return twiml.with_retries(public_url_for(endpoint))


def xml(document: str) -> Response:
    return Response(document, mimetype="text/xml")


@bp.post("")
@twilio_signed
def incoming():
    form = request.form
    caller, called, call_sid = form.get("From", ""), form.get("To", ""), form.get("CallSid", "")
    if caller.startswith("client:"):
        return _from_browser(caller.removeprefix("client:"), called, call_sid)
    return _to_team_number(caller, called, call_sid)


def _from_browser(client: str, dialled: str, call_sid: str) -> Response:
    team = current_team()
    if client not in team.users.current:
        return xml(twiml.refusal("Sorry, your account can no longer make calls."))
    try:
        call = plan_outbound_call(
            dialled, team.directory.caller_ids_for(client), team.policy, request.form.get("CallerId") or None
        )
    except DialRefused as refused:
        log.info("refused a call from %s to %r: %s", client, dialled, refused.reason)
        return xml(twiml.refusal(refused.reason))
    _open_call(call_sid, "outbound", call.caller_id, call.caller_id, call.destination, client)
    # The action lets the browser's leg follow its child into a conference (call control, SPEC §6).
    return xml(twiml.outbound_dial(call.destination, call.caller_id, callback_url_for("voice.status"),
                                   action_url=public_url_for("voice.dial_complete")))


def _to_team_number(caller: str, number: str, call_sid: str) -> Response:
    team = current_team()
    target = team.directory.target_for(number)
    if target is None:
        return xml(twiml.refusal("Sorry, this number is not in service."))
    _open_call(call_sid, "inbound", number, caller, number, None)
    if target.kind == "clients":
        # A member removed from .htpasswd is never rung, even before the ini is edited.
        users = team.users.current
        clients = tuple(client for client in target.clients if client in users)
        if not clients:
            return xml(_voicemail() or twiml.refusal(NOBODY_TO_RING))
        return xml(
            twiml.ring_group(
                clients,
                team.settings.ring_timeout,
                public_url_for("voice.dial_complete"),
                callback_url_for("voice.status"),
            )
        )
    stream_url = f"wss://{team.settings.public_host}/media/stream"
    stream_target = target.stream_target
    # The bridge admits the stream only with this, once, for this call and target (SPEC §5).
    auth = stream_auth.mint(team.settings.secret_key, call_sid, stream_target)
    return xml(twiml.media_stream(stream_url, {"target": stream_target, "from": caller, "auth": auth}))


def _open_call(call_sid: str, direction: str, number: str, caller: str, called: str, client: str | None) -> None:
    # The call goes ahead even when the log cannot be written: a lost log row is
    # better than a lost call.
    try:
        current_team().store.calls.open_call(
            call_sid, direction=direction, number=number, from_=caller, to=called, client=client
        )
    except StoreError as exc:
        log.warning("could not log the start of call %s: %s", call_sid, exc)


@bp.post("/status")
@twilio_signed
def status():
    if call_control.status_callback(request.form, request.args):  # a target control rang: not a call of the log
        return "", 204
    team = current_team()
    try:
        payload = team.store.calls.record_status(request.form, team.directory.team_numbers())
    except StoreError as exc:
        log.warning("could not record a status callback; Twilio will retry it (%s): %s", twiml.RETRIES, exc)
        abort(503)
    if payload is not None:
        realtime.emit_call_status(payload)
    return "", 204


@bp.post("/dial-complete")
@twilio_signed
def dial_complete():
    team = current_team()
    outcome = request.form.get("DialCallStatus", "")
    call_sid = request.form.get("CallSid", "")
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
    if form.get("RecordingStatus", "completed") != "completed":
        return "", 204
    try:
        duration = int(form.get("RecordingDuration") or 0)
    except ValueError:
        duration = 0
    try:
        stored = current_team().store.calls.record_voicemail(
            form.get("CallSid", ""),
            recording_sid=form.get("RecordingSid", ""),
            recording_url=form.get("RecordingUrl", ""),
            duration=duration,
        )
    except StoreError as exc:
        log.warning("could not store a recording; Twilio will retry it (%s): %s", twiml.RETRIES, exc)
        abort(503)
    if stored is not None:
        realtime.emit_voicemail(
            {
                "call_sid": stored["call_sid"],
                "number": stored["number"],
                "from": stored["from"],
                "recording_url": url_for_voicemail(stored["recording_sid"]),
                "duration": stored["duration"],
            }
        )
    return "", 204
