"""The team's presence (SPEC §7): ``GET /team`` and ``POST /me/dnd``."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError

from .. import current_team, realtime
from .auth import api_login_required, csrf_error_as_json

bp = Blueprint("team", __name__)
bp.register_error_handler(CSRFError, csrf_error_as_json)  # POST /me/dnd is the page's fetch


@bp.get("/team")
@api_login_required
def team():
    """The users who share a number with the requester, the requester included, and their states."""
    everyone = current_team()
    members = everyone.teammates_of(current_user.get_id())
    states = everyone.presence.states(members)
    return jsonify(team=[{"user": member, "state": states[member].value} for member in members])


@bp.post("/me/dnd")
@api_login_required
def dnd():
    """``{"dnd": true}`` or false: do-not-disturb until turned off, across logins and restarts."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("dnd"), bool):
        return jsonify(error='send {"dnd": true} or {"dnd": false}'), 400
    everyone = current_team()
    name = current_user.get_id()
    everyone.store.presence.set_dnd(name, body["dnd"])
    realtime.publish_presence([name])
    return jsonify(user=name, dnd=body["dnd"], state=everyone.presence.state(name).value)
