"""Twilio's webhooks served by a Flask app of their own, in front of the page's.

Twilio waits on ``POST /voice`` before the caller hears anything, and posts a
status callback for every step of every leg, so these requests should cost the
server little more than answering them at all. The page's app does work on every
request that a signed webhook never needs: it opens the session cookie, loads the
user, checks CSRF, runs Socket.IO's middleware and adds the security headers meant
for pages. Measured (bench/webhooks.py, docs/performance.md), that was about as
much CPU as the webhook's own work.

So POSTs under ``/voice`` go to a second, bare Flask app that holds only the
voice blueprint. It shares the page app's ``extensions`` (the team, Socket.IO, the
housekeeping loop's marker), so ``current_team()``, ``realtime`` and the store
behave the same in both. ``url_for`` builds every URL in either app: the page
app registers the voice blueprint too (its copy is never reached, since the
dispatcher sends every ``POST /voice...`` here first), and the webhook app gets
the page app's other rules for building only (:func:`share_url_rules`).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_plus

import werkzeug.urls  # noqa: F401  (registers the "werkzeug.url_quote" decoding error handler used below)
from flask import Flask, Request

WEBHOOK_PREFIX = "/voice"

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


class WebhookDispatcher:
    """``POST /voice`` and below to the webhook app, everything else to the page app.

    The path is not rewritten (unlike werkzeug's DispatcherMiddleware), so both apps
    see the same ``SCRIPT_NAME`` and ``PATH_INFO``, and the URL a signature covers
    is the one Twilio requested.
    """

    def __init__(self, webhooks: WSGIApp, pages: WSGIApp):
        self.webhooks = webhooks
        self.pages = pages

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") == "POST" and (
            path == WEBHOOK_PREFIX or path.startswith(WEBHOOK_PREFIX + "/")
        ):
            return self.webhooks(environ, start_response)
        return self.pages(environ, start_response)


def url_encoded_fields(body: str) -> list[tuple[str, str]]:
    """The fields of an ``application/x-www-form-urlencoded`` body, as werkzeug parses it.

    The same as ``parse_qsl(body, keep_blank_values=True, errors="werkzeug.url_quote")``
    (a test holds it to that), in a third of the time: only a piece with ``%`` or ``+``
    is unquoted, and Twilio's values are mostly plain.
    """
    fields = []
    for piece in body.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        if "%" in piece or "+" in piece:
            name = unquote_plus(name, errors="werkzeug.url_quote")
            value = unquote_plus(value, errors="werkzeug.url_quote")
        fields.append((name, value))
    return fields


class WebhookRequest(Request):
    """A request whose url-encoded form (all Twilio ever posts) is read in one go.

    werkzeug's general form parser (stream wrappers, content-type options, the
    multipart machinery's set-up) cost twice as much as parsing the form itself,
    on every webhook. The result is the same: the fields ``parse_qsl`` gives, an
    immutable MultiDict with every value of a repeated field, and the body
    consumed; only a body that is not UTF-8 is kept percent-quoted (so its
    signature fails: 403) where werkzeug would fail with a 500. Anything else
    (chunked, no length, over the size limit, another type) goes to werkzeug.
    """

    def _load_form_data(self) -> None:
        if "form" in self.__dict__:
            return
        environ = self.environ
        content_type = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        length = self.content_length
        limit = self.max_content_length
        # With a length the body is read to it, whether or not the server also ends the stream there
        # (gevent sets wsgi.input_terminated); without one (chunked), werkzeug reads it.
        if content_type != "application/x-www-form-urlencoded" or length is None or (
            limit is not None and length > limit
        ):
            super()._load_form_data()
            return
        body = environ["wsgi.input"].read(length)
        fields = url_encoded_fields(body.decode(errors="werkzeug.url_quote"))
        d = self.__dict__
        d["stream"], d["form"], d["files"] = io.BytesIO(), self.parameter_storage_class(fields), \
            self.parameter_storage_class()


def create_webhook_app(pages: Flask, blueprint: Any, on_store_error: Callable[[Flask], None]) -> Flask:
    """The bare app for ``blueprint``, sharing ``pages``' configuration and extensions."""
    from .. import realtime

    webhooks = Flask(pages.import_name, root_path=pages.root_path, static_folder=None, template_folder=None)
    webhooks.request_class = WebhookRequest
    webhooks.config.update(pages.config)
    webhooks.config["SECRET_KEY"] = None  # no session here: Twilio sends no cookie, and none is set
    webhooks.extensions = pages.extensions
    webhooks.before_request(realtime.ensure_watcher)  # the same once-per-process loop, whichever app is first
    webhooks.register_blueprint(blueprint)
    on_store_error(webhooks)
    return webhooks


def share_url_rules(pages: Flask, webhooks: Flask) -> None:
    """Let ``url_for`` in a webhook build the page app's URLs (a voicemail's, the page's): build-only rules."""
    own = {rule.endpoint for rule in webhooks.url_map.iter_rules()}
    for rule in pages.url_map.iter_rules():
        if rule.endpoint not in own:
            copy = rule.empty()
            copy.build_only = True  # never matched: the page app serves these
            webhooks.url_map.add(copy)
