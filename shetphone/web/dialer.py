"""The dialer page and the JSON it fetches."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, render_template, request, stream_with_context, url_for
from flask_login import current_user, login_required
from flask_wtf.csrf import generate_csrf

from .. import current_team, phone_numbers, voicemail
from ..tokens import voice_token
from ..twilio_rest import TwilioRestError
from .auth import api_login_required

log = logging.getLogger(__name__)
bp = Blueprint("dialer", __name__)
MAX_CALLS_LISTED = 500


def page_config() -> dict:
    """What the page needs to start, embedded as JSON (not script) so the CSP stays strict."""
    team = current_team()
    name = current_user.get_id()
    caller_ids = team.directory.caller_ids_for(name)
    # The page offers these as regions a national number is typed in: 001 (+8xx) is none, and
    # libphonenumber-js knows no calling code for it.
    policy = team.policy
    regions = None if policy.every_country else sorted(policy.allowed_countries - {phone_numbers.NON_GEOGRAPHIC})
    default_region = phone_numbers.region_of(caller_ids[0]) if caller_ids else None
    return {
        "identity": name,
        "caller_ids": list(caller_ids),
        "default_region": default_region,
        "allowed_regions": regions,
        "numbers": sorted(team.directory.numbers_of(name)),
        "twilio_missing": list(team.settings.twilio.missing),
        "csrf_token": generate_csrf(),  # sent as X-CSRFToken by the page's JSON POSTs (call control)
        # Whom a call can be transferred to or shared with: teammates still in .htpasswd.
        "teammates": sorted((team.directory.teammates_of(name) - {name}) & set(team.users.current.names())),
    }


@bp.get("/")
@login_required
def index():
    return render_template("index.html", config=page_config())


@bp.get("/token")
@api_login_required
def token():
    settings = current_team().settings
    if settings.twilio.missing:
        return jsonify(error="Twilio is not configured: set " + ", ".join(settings.twilio.missing)), 503
    identity = current_user.get_id()
    return jsonify(identity=identity, token=voice_token(settings.twilio, identity, settings.token_ttl),
                   ttl=settings.token_ttl)


@bp.get("/presets")
@api_login_required
def presets():
    return jsonify(presets=[preset.as_json() for preset in current_team().presets.current])


@bp.get("/calls")
@api_login_required
def calls():
    try:
        limit = int(request.args.get("limit", "50"))
    except ValueError:
        return jsonify(error="limit must be a whole number"), 400
    if not 1 <= limit <= MAX_CALLS_LISTED:
        return jsonify(error=f"limit must be between 1 and {MAX_CALLS_LISTED}"), 400
    team = current_team()
    name = current_user.get_id()
    listed = team.store.calls.calls_for(team.directory.numbers_of(name), name, limit)
    for call in listed:
        recording_sid = call.pop("recording_sid", None)
        call["voicemail_url"] = url_for_voicemail(recording_sid) if recording_sid else None
    return jsonify(calls=listed)


def url_for_voicemail(recording_sid: str) -> str:
    return url_for("dialer.voicemail_audio", recording_sid=recording_sid)


# Headers passed between the browser and Twilio's media host, so seeking (Range) works.
RANGE_REQUEST_HEADERS = ("Range", "If-Range")
RANGE_RESPONSE_HEADERS = ("Content-Length", "Content-Range", "Accept-Ranges", "ETag", "Last-Modified")


@bp.get("/voicemail/<recording_sid>")
@api_login_required
def voicemail_audio(recording_sid: str):
    team = current_team()
    name = current_user.get_id()
    recording = team.store.calls.recording_for(recording_sid) if voicemail.is_recording_sid(recording_sid) else None
    # Someone else's recording is "not found", not "forbidden": its existence is not theirs to learn.
    if recording is None or not voicemail.may_hear(recording, team.directory.numbers_of(name), name):
        return jsonify(error="no such voicemail"), 404
    if team.twilio_rest is None:
        return jsonify(error="Twilio is not configured: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"), 503
    headers = {h: request.headers[h] for h in RANGE_REQUEST_HEADERS if h in request.headers}
    try:
        upstream = team.twilio_rest.recording_media(recording_sid, headers=headers)
    except TwilioRestError as exc:
        log.warning("could not fetch recording %s from Twilio: %s", recording_sid, exc)
        if exc.unreachable:
            return jsonify(error="Twilio could not be reached for this voicemail; try again shortly"), 502
        return jsonify(error="the voicemail's audio is not available"), 404 if exc.status == 404 else 502

    def body():
        with upstream:
            yield from upstream.iter_content()

    response = Response(stream_with_context(body()), status=upstream.status,
                        mimetype=voicemail.AUDIO_FORMATS["mp3"])
    for header in RANGE_RESPONSE_HEADERS:
        if header in upstream.headers:
            response.headers[header] = upstream.headers[header]
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")
