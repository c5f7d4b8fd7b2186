"""Login, logout, the user loader and the login lockout.

A login lives on the server (``store.logins``); the session cookie holds only its
random id. The user loader checks it on every request that carries a session, so
a logout, ``users remove`` or ``session_hours`` of disuse ends it in every process
at once. Requests without a session (Twilio's webhooks) never reach the loader.
"""

from __future__ import annotations

import logging
from functools import wraps
from urllib.parse import quote, urlsplit

from flask import Blueprint, Flask, current_app, jsonify, redirect, render_template, request, session, url_for
from flask_login import UserMixin, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from .. import current_team, offload, realtime
from ..extensions import client_address, login_manager

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)


class User(UserMixin):
    def __init__(self, name: str):
        self.id = name

    @property
    def name(self) -> str:
        return self.id


class LoginForm(FlaskForm):
    username = StringField("User name", validators=[DataRequired(), Length(max=121)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


def init_login(app: Flask, async_mode: str) -> None:
    login_manager.login_message = None
    login_manager.unauthorized_handler(_to_login_page)
    login_manager.session_protection = "basic"
    # bcrypt off the event loop, so a login never stalls the webhooks and sockets
    app.extensions["shetphone_run_blocking"] = offload.runner_for(async_mode)
    if not app.extensions["shetphone"].settings.proxy_hops:
        app.before_request(_warn_of_an_untrusted_proxy)


def _warn_of_an_untrusted_proxy() -> None:
    """Once per process: a proxy in front that proxy_hops does not trust makes its address everyone's."""
    app = current_app
    if "X-Forwarded-For" not in request.headers or app.extensions.get("shetphone_warned_of_proxy"):
        return
    app.extensions["shetphone_warned_of_proxy"] = True
    log.warning(
        "a request came through a proxy (X-Forwarded-For) but proxy_hops = 0 in %s: every client behind it "
        "shares the proxy's address, in the log and in the login lockout; set proxy_hops = 1 behind nginx",
        current_team().settings.config_path,
    )


@login_manager.user_loader
def _load_user(name: str) -> User | None:
    # Checked on every request with a session: a user removed from .htpasswd is out at once,
    # and so is a login that was ended (logout, users remove) or went unused for session_hours.
    team = current_team()
    if name in team.users.current and team.store.logins.check(session.get("login_id"), name):
        return User(name)
    session.clear()  # the cookie is worth nothing now: the browser gets an empty one back
    return None


def _to_login_page():
    # /login?next=/ with the path unescaped, as people (and the spec) write it.
    target = request.full_path.rstrip("?") if request.query_string else request.path
    return redirect(url_for("auth.login") + "?next=" + quote(target, safe="/"))


def api_login_required(view):
    """Like login_required, but a JSON 401 instead of a redirect, for the page's fetches."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if not current_user.is_authenticated:
            return jsonify(error="not logged in"), 401
        return view(*args, **kwargs)

    return wrapped


def csrf_error_as_json(error: CSRFError):
    """A JSON route's answer to a missing or wrong CSRF token: the page's fetches read JSON, whatever went wrong."""
    return jsonify(error=f"{error.description} Reload the page and try again."), 400


def safe_next(target: str | None) -> str:
    """Only a path on this site: never another host, scheme, or a //host trick."""
    if not target:
        return url_for("dialer.index")
    parts = urlsplit(target.replace("\\", "/"))
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or target.startswith("//"):
        return url_for("dialer.index")
    root = request.script_root or ""
    if root and not target.startswith(root + "/"):
        target = root + target
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(safe_next(request.args.get("next")))
        return render_template("login.html", form=form, error=None)
    team = current_team()
    name = (form.username.data or "").strip()
    address = client_address()
    wait = team.lockout.retry_after(name, address)
    if wait is not None:
        # Even the right password waits: otherwise the lockout only slows a guesser down.
        minutes = -(-wait // 60)
        message = f"Too many failed attempts. Please try again in {minutes} minute{'s' if minutes != 1 else ''}."
        return render_template("login.html", form=form, error=message, locked=True), 429, {"Retry-After": str(wait)}
    run_blocking = current_app.extensions["shetphone_run_blocking"]
    if form.validate_on_submit() and run_blocking(team.users.current.verify, name, form.password.data or ""):
        next_url = safe_next(request.args.get("next") or request.form.get("next"))
        login_id = team.store.logins.begin(name, request.user_agent.string)
        replaced = session.get("login_id")
        session.clear()  # a new session at login: nothing from before carries over
        login_user(User(name))  # never remember=True: a login outlives no logout
        session["login_id"] = login_id
        if isinstance(replaced, str):  # logged in again over a login: a copy of the old cookie is worth nothing
            team.store.logins.end(replaced)
            realtime.end_login(replaced)
        return redirect(next_url)
    team.lockout.record_failure(name, address)
    return render_template("login.html", form=form, error="Wrong user name or password."), 401


@bp.post("/logout")
@login_required
def logout():
    login_id = session["login_id"]  # login_required: a live login has one
    current_team().store.logins.end(login_id)  # first: should it fail (503), nothing has ended
    logout_user()
    session.clear()
    realtime.end_login(login_id)
    return redirect(url_for("auth.login"))
