"""Shetphone: a browser telephone on Twilio for small teams.

Flask and the team's stores (SQLAlchemy, limits, passlib) are imported inside
``create_app`` and ``current_team``, not here: ``python -m shetphone.bridge``
imports this package too, and must not load the web app to serve audio.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from flask import Flask

    from .team import Team

__all__ = ["ConfigError", "create_app", "current_team", "shut_down"]

ROOT = Path(__file__).resolve().parent.parent
ASYNC_MODES = ("gevent", "gevent_uwsgi", "eventlet", "threading")
log = logging.getLogger("shetphone")


def current_team() -> Team:
    from flask import current_app

    return current_app.extensions["shetphone"]


def create_app(
    settings: Settings | None = None,
    *,
    async_mode: str,
    root: str | os.PathLike[str] = ROOT,
    overrides: dict[str, Any] | None = None,
) -> Flask:
    """Build the app. ``async_mode`` is always explicit: gevent, gevent_uwsgi, eventlet or threading.

    Raises :class:`ConfigError` (one clear line) when anything configured is wrong,
    :class:`~shetphone.store.StoreError` (one line too) when the database cannot be opened
    or was written by a newer Shetphone, and
    :class:`~shetphone.message_queue.MessageQueueUnavailable` (one line) when
    ``message_queue`` does not answer.
    """
    if async_mode not in ASYNC_MODES:
        raise ValueError(f"async_mode must be one of {', '.join(ASYNC_MODES)}")
    from flask import Flask

    from . import message_queue, realtime
    from .extensions import csrf, login_manager
    from .team import build_team
    from .web import appshell, auth, dialer, security, voice
    from .web import control as call_control
    from .web import team as team_routes
    from .web.webhooks import WebhookDispatcher, create_webhook_app, share_url_rules

    settings = settings or load_settings(root)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    app = Flask(
        "shetphone",
        root_path=str(Path(root).resolve()),
        instance_path=str(settings.instance_path),
        static_folder="static",
        template_folder="templates",
    )
    app.config.update(
        SECRET_KEY=settings.secret_key,
        # Our own name and path: never sent to, nor overwritten by, another app on the host.
        SESSION_COOKIE_NAME="shetphone_session",
        SESSION_COOKIE_PATH=settings.public_path,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=settings.secure_cookies,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        JSON_SORT_KEYS=False,
    )
    if overrides:
        app.config.update(overrides)

    message_queue.check_configured(settings)  # down or misnamed: one line now, not log errors for ever
    team = build_team(
        settings,
        on_users_changed=realtime.in_app_context(app, realtime.users_changed),
        on_presets_changed=realtime.in_app_context(app, realtime.presets_changed),
    )
    app.extensions["shetphone"] = team

    csrf.init_app(app)
    login_manager.init_app(app)
    auth.init_login(app, async_mode)
    realtime.init_app(app, async_mode=async_mode, message_queue=settings.message_queue)
    # Twilio's webhooks skip the page app's per-request work (web/webhooks.py says why).
    webhooks = create_webhook_app(app, voice.bp, _answer_503_when_the_store_fails)
    app.wsgi_app = WebhookDispatcher(webhooks.wsgi_app, app.wsgi_app)
    if settings.proxy_hops:
        # Behind nginx: the client's address (the lockout counts by it), scheme, host and
        # path prefix come from X-Forwarded-*, trusted for exactly that many proxies.
        # Wrapping after Socket.IO and the webhook dispatcher so their requests see them too.
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_prefix=hops)
    security.init_app(app)
    _answer_503_when_the_store_fails(app)

    app.register_blueprint(auth.bp)
    app.register_blueprint(dialer.bp)
    app.register_blueprint(voice.bp)  # never reached (see web/webhooks.py): here so url_for builds its URLs
    app.register_blueprint(call_control.bp)
    app.register_blueprint(team_routes.bp)
    appshell.init_app(app)
    csrf.exempt(voice.bp)  # Twilio signs its requests instead

    share_url_rules(app, webhooks)

    from .cli import register_commands

    register_commands(app)

    missing = settings.twilio.missing
    if missing:
        log.warning("Twilio is not configured: set %s; everything but calling works", ", ".join(missing))
    return app


def shut_down(app: Flask) -> None:
    """A clean stop of this process (the built-in server's SIGTERM or Ctrl-C, a uWSGI worker's atexit).

    Its browsers leave shared presence at once, so no other process rings them or shows them
    available until ``presence_ttl`` runs out; the mailer stops taking rows and gives back the one it
    claimed but had not yet sent (due again at once, not after its lease); the database's connections
    close. Once per app: later calls do nothing. Never raises: an outage is a log line.
    """
    if app.extensions.get("shetphone_shut_down"):
        return
    app.extensions["shetphone_shut_down"] = True
    from . import realtime

    team = app.extensions["shetphone"]
    if team.mail is not None:
        team.mail.stop()
    try:
        realtime.withdraw_browsers(app)
    except Exception:  # not an outage (those are handled inside): a bug, worth its traceback, but we still stop
        log.exception("presence: the browsers of this process could not be withdrawn")
    try:
        team.store.close()
    except Exception as exc:
        log.warning("the database's connections did not close cleanly: %s", exc)
    log.info("stopped cleanly")


def _answer_503_when_the_store_fails(app: Flask) -> None:
    """A route the database could not serve in time answers 503 (try again), not 500 and a traceback."""
    from flask import jsonify, request

    from .store import StoreError

    def store_failed(error: StoreError):
        log.warning("%s %s: %s", request.method, request.path, error)
        return jsonify(error="the database is not available just now; try again shortly"), 503

    app.register_error_handler(StoreError, store_failed)
