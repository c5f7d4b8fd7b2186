"""Response headers that keep the page safe by default.

The Content-Security-Policy allows the page's own assets only, its Socket.IO
endpoint (same origin, ws/wss included) and the Twilio hosts the Voice SDK
talks to: signalling (wss://voice-js.roaming.twilio.com and the edges,
wss://voice-js.EDGE.twilio.com), insights (https://eventgw.twilio.com) and its
sounds (https://sdk.twilio.com). No inline script or style: the page's
configuration travels as a JSON block, and Vite writes CSS to files.
"""

from __future__ import annotations

import re
from functools import lru_cache

from flask import Flask, request

from . import assets

TWILIO_CONNECT = (
    "wss://voice-js.roaming.twilio.com",
    "wss://*.twilio.com",
    "https://eventgw.twilio.com",
    "https://*.twilio.com",
)
TWILIO_MEDIA = ("https://sdk.twilio.com",)

PERMISSIONS_POLICY = "microphone=(self), camera=(), geolocation=()"
PLAIN_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


@lru_cache(maxsize=64)  # one string per Host; built for every response otherwise
def content_security_policy(host: str) -> str:
    # 'self' covers ws/wss of this origin in CSP 3; the explicit ones are for older browsers.
    # A Host header that is not a plain host[:port] gets no entry of its own (no header injection).
    own = [f"ws://{host}", f"wss://{host}"] if PLAIN_HOST.fullmatch(host) else []
    connect = ["'self'", *own, *TWILIO_CONNECT]
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": connect,
        "media-src": ["'self'", "blob:", *TWILIO_MEDIA],
        # The page's own service worker (/sw.js) only; the Voice SDK starts no worker of its own.
        "worker-src": ["'self'"],
        "manifest-src": ["'self'"],
        "object-src": ["'none'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


def init_app(app: Flask) -> None:
    assets.init_app(app)

    @app.after_request
    def _headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", content_security_policy(request.host))
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        return response
