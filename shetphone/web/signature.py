"""The X-Twilio-Signature guard for Twilio's webhooks.

The URL signed is ``public_url`` + path + query, never the Host header: behind
nginx (or under a path prefix) the request we see is not the one Twilio sent.

Twilio signs the URL as configured, but has been seen to add or drop the
default port (its own library checks both forms). The twilio library's
``RequestValidator.validate`` parses the URL three times and computes both
HMACs on every request; here the two base forms are worked out once, and the
second HMAC is computed only when the first does not match, so a genuine
request costs one HMAC. The HMAC itself is still the library's
(``compute_signature``), so what is signed is exactly what Twilio documents.
"""

from __future__ import annotations

import hmac
import logging
from functools import lru_cache, wraps
from urllib.parse import urlsplit, urlunsplit

from flask import abort, jsonify, request
from twilio.request_validator import RequestValidator

from .. import current_team
from ..twiml import RETRIES

log = logging.getLogger(__name__)
DEFAULT_PORTS = {"https": 443, "http": 80}
SIGNED_SUFFIXES = ("", "#" + RETRIES)  # as requested; with the callback's retry fragment


class WebhookSignature:
    """Checks ``X-Twilio-Signature`` for requests to one ``public_url`` with one auth token."""

    def __init__(self, auth_token: str, public_url: str):
        self._validator = RequestValidator(auth_token)
        parts = urlsplit(public_url)
        host = parts.hostname or ""
        if ":" in host:  # an IPv6 literal keeps its brackets
            host = f"[{host}]"
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 80)
        with_port = urlunsplit((parts.scheme, f"{host}:{port}", parts.path, "", ""))
        without_port = urlunsplit((parts.scheme, host, parts.path, "", ""))
        # The form written in public_url first: that is the one Twilio signs.
        self._bases = (with_port, without_port) if parts.port else (without_port, with_port)

    def valid(self, path_and_query: str, form, signature: str) -> bool:
        """Whether ``signature`` signs public_url + ``path_and_query`` with ``form`` (a MultiDict or dict).

        Twilio signs "the webhook URL set in Twilio"; a callback URL the app gave with
        its retry fragment (:data:`~shetphone.twiml.RETRIES`) may be signed with it or
        without it (the fragment is never sent, and the docs do not say), so both are
        accepted. The fragment is the app's own constant: accepting it lets nobody choose
        what is signed.
        """
        if not signature:
            return False
        expected_bytes = signature.encode()
        for suffix in SIGNED_SUFFIXES:
            for base in self._bases:
                expected = self._validator.compute_signature(base + path_and_query + suffix, form)
                if hmac.compare_digest(expected.encode(), expected_bytes):
                    return True
        return False


@lru_cache(maxsize=8)
def signature_for(auth_token: str, public_url: str) -> WebhookSignature:
    return WebhookSignature(auth_token, public_url)


def signed_path() -> str:
    query = request.query_string.decode("latin-1")
    return f"{request.path}?{query}" if query else request.path


def twilio_signed(view):
    """Refuse (403, before any side effect) a request Twilio did not sign."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        settings = current_team().settings
        token = settings.twilio.auth_token
        if not token:
            log.error("cannot check a webhook's signature: TWILIO_AUTH_TOKEN is not set")
            return jsonify(error="Twilio is not configured: TWILIO_AUTH_TOKEN is missing"), 503
        signature = request.headers.get("X-Twilio-Signature", "")
        # The MultiDict itself: the validator signs every value of a repeated field.
        if not signature_for(token, settings.public_url).valid(signed_path(), request.form, signature):
            log.warning("refused %s %s: %s X-Twilio-Signature", request.method, request.path,
                        "wrong" if signature else "missing")
            abort(403)
        return view(*args, **kwargs)

    return wrapped
