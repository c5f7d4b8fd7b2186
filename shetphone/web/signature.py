"""The X-Twilio-Signature guard for Twilio's webhooks.

The URL signed is ``public_url`` + path + query, never the Host header: behind
nginx (or under a path prefix) the request we see is not the one Twilio sent.
"""

from __future__ import annotations

import logging
from functools import wraps

from flask import abort, jsonify, request
from twilio.request_validator import RequestValidator

from .. import current_team

log = logging.getLogger(__name__)


def signed_url() -> str:
    url = current_team().settings.public_url + request.path
    query = request.query_string.decode("latin-1")
    return f"{url}?{query}" if query else url


def twilio_signed(view):
    """Refuse (403, before any side effect) a request Twilio did not sign."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        twilio = current_team().settings.twilio
        if not twilio.auth_token:
            log.error("cannot check a webhook's signature: TWILIO_AUTH_TOKEN is not set")
            return jsonify(error="Twilio is not configured: TWILIO_AUTH_TOKEN is missing"), 503
        signature = request.headers.get("X-Twilio-Signature", "")
        # The MultiDict itself: the validator signs every value of a repeated field.
        if not signature or not RequestValidator(twilio.auth_token).validate(signed_url(), request.form, signature):
            log.warning("refused %s %s: %s X-Twilio-Signature", request.method, request.path,
                        "wrong" if signature else "missing")
            abort(403)
        return view(*args, **kwargs)

    return wrapped
