"""The dialer page and the JSON it fetches."""

from __future__ import annotations

import phonenumbers
from flask import Blueprint, jsonify, render_template, request
from flask_login import current_user, login_required

from .. import current_team
from ..tokens import voice_token
from .auth import api_login_required

bp = Blueprint("dialer", __name__)
MAX_CALLS_LISTED = 500


def page_config() -> dict:
    """What the page needs to start, embedded as JSON (not script) so the CSP stays strict."""
    team = current_team()
    name = current_user.get_id()
    caller_ids = team.directory.caller_ids_for(name)
    regions = sorted(team.settings.allowed_countries) if team.settings.allowed_countries is not None else None
    default_region = phonenumbers.region_code_for_number(phonenumbers.parse(caller_ids[0])) if caller_ids else None
    return {
        "identity": name,
        "caller_ids": list(caller_ids),
        "default_region": default_region,
        "allowed_regions": regions,
        "numbers": sorted(team.directory.numbers_of(name)),
        "twilio_missing": list(team.settings.twilio.missing),
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
    listed = team.calllog.calls_for(team.directory.numbers_of(name), name, limit)
    for call in listed:
        recording_sid = call.pop("recording_sid", None)
        call["voicemail_url"] = url_for_voicemail(recording_sid) if recording_sid else None
    return jsonify(calls=listed)


def url_for_voicemail(recording_sid: str) -> str:
    from flask import url_for

    return url_for("dialer.voicemail_audio", recording_sid=recording_sid)


@bp.get("/voicemail/<recording_sid>")
@api_login_required
def voicemail_audio(recording_sid: str):
    return jsonify(error="not yet"), 501


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")
