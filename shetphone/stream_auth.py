"""The ``auth`` stream parameter: proof that a Media Stream's ``start`` comes from our own TwiML.

Twilio signs the bridge's websocket upgrade over ``wss://HOST/media/stream``
alone, so that signature is the same for every call and anyone who has seen
one can replay it. ``/voice`` therefore also puts ``<Parameter name="auth">``
in each ``<Stream>``: an HMAC, keyed by the app's secret key, over the call's
SID, the stream's target and an expiry a few minutes ahead. Only the app and
the bridge (which read the same secret key) can make one; the bridge accepts
each value once (see ``shetphone.bridge.replay``).

The value is ``v1.EXPIRES.MAC``: ``EXPIRES`` in Unix seconds, ``MAC`` the
HMAC-SHA256 in unpadded base64url. The version prefix lets the format change
while values of the old one are still in flight.

Plain Python (hmac, no Flask): the web app and the bridge both import it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass

VERSION = "v1"
# Twilio opens the stream as soon as it runs the <Connect>: a few minutes covers
# any delay, and bounds how long a used value must be remembered.
DEFAULT_TTL = 300  # seconds
# No value is valid for longer than this (a call placed from Discord waits for
# the far end to answer before its stream starts; an hour is far beyond that).
MAX_TTL = 3600  # seconds
# The app and the bridge may run on two hosts whose clocks differ a little.
CLOCK_SKEW = 60  # seconds
_FORMAT = re.compile(r"^(v[0-9]+)\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})$")
_KEY_LABEL = b"shetphone stream auth v1"  # the HMAC key is derived, never the session-signing key itself


class StreamAuthError(ValueError):
    """An ``auth`` value that does not admit this stream; ``str()`` is one line, safe to log."""


@dataclass(frozen=True)
class StreamGrant:
    """A verified ``auth`` value: what the bridge must remember (``key``) until ``expires``."""

    key: str  # the MAC: one per value, so the mark of its use
    expires: int  # Unix seconds


def _key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode("utf-8"), _KEY_LABEL, hashlib.sha256).digest()


def _mac(secret_key: str, call_sid: str, target: str, expires: int) -> str:
    # JSON keeps the fields apart whatever characters they hold.
    message = json.dumps([call_sid, target, expires], separators=(",", ":")).encode("utf-8")
    digest = hmac.new(_key(secret_key), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def mint(secret_key: str, call_sid: str, target: str, *, ttl: int = DEFAULT_TTL, now: float | None = None) -> str:
    """The ``auth`` value for the stream of ``call_sid`` to ``target``, valid for ``ttl`` seconds."""
    if not secret_key:
        raise ValueError("no secret key to sign stream auth with")
    if not 0 < ttl <= MAX_TTL:
        raise ValueError(f"ttl must be 1 to {MAX_TTL} seconds")
    expires = int(time.time() if now is None else now) + ttl
    return f"{VERSION}.{expires}.{_mac(secret_key, call_sid, target, expires)}"


def verify(secret_key: str, value: str | None, call_sid: str, target: str, *, now: float | None = None) -> StreamGrant:
    """Check ``value`` for this call and target against the clock (``now``, default the time).

    Raises :class:`StreamAuthError` saying why it is refused: missing, malformed,
    another version, not made for this call and target (or with another key),
    expired, or valid for longer than any value is made for.
    """
    if not value:
        raise StreamAuthError("no 'auth' stream parameter")
    match = _FORMAT.match(value)
    if match is None:
        raise StreamAuthError("the 'auth' stream parameter is malformed")
    version, expires_text, mac = match.groups()
    if version != VERSION:
        raise StreamAuthError(f"the 'auth' stream parameter is of version {version}, not {VERSION}")
    expires = int(expires_text)
    if not secret_key or not hmac.compare_digest(mac, _mac(secret_key, call_sid, target, expires)):
        raise StreamAuthError("the 'auth' stream parameter was not made for this call and target")
    clock = time.time() if now is None else now
    if clock >= expires:
        raise StreamAuthError(f"the 'auth' stream parameter expired {int(clock - expires)} s ago")
    if expires - clock > MAX_TTL + CLOCK_SKEW:
        raise StreamAuthError("the 'auth' stream parameter is valid for longer than any value is made for")
    return StreamGrant(key=mac, expires=expires)

