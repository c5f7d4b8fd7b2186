"""Login, logout, the user loader and the login lockout."""

from __future__ import annotations

import secrets
from functools import wraps
from urllib.parse import quote, urlsplit

from flask import Blueprint, Flask, jsonify, redirect, render_template, request, session, url_for
from flask_login import UserMixin, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from .. import current_team, realtime
from ..extensions import client_address, limiter, login_manager

bp = Blueprint("auth", __name__)

LOCKOUT = "5 per 15 minutes"  # failures, per user name and per address


class User(UserMixin):
    def __init__(self, name: str):
        self.id = name

    @property
    def name(self) -> str:
        return self.id


class LoginForm(FlaskForm):
    username = StringField("User name", validators=[DataRequired(), Length(max=121)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


def init_login(app: Flask) -> None:
    login_manager.login_message = None
    login_manager.unauthorized_handler(_to_login_page)
    login_manager.session_protection = "basic"
    app.errorhandler(429)(_locked_out)


@login_manager.user_loader
def _load_user(name: str) -> User | None:
    # Checked on every request: a user removed from .htpasswd is out at once.
    return User(name) if name in current_team().users.current else None


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


def _login_failed(response) -> bool:
    return response.status_code == 401


def _username_key() -> str:
    return "user:" + (request.form.get("username") or "").strip().lower()


def _address_key() -> str:
    return "address:" + client_address()


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
@limiter.limit(LOCKOUT, key_func=_username_key, methods=["POST"], deduct_when=_login_failed, scope="login-user")
@limiter.limit(LOCKOUT, key_func=_address_key, methods=["POST"], deduct_when=_login_failed, scope="login-address")
def login():
    form = LoginForm()
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(safe_next(request.args.get("next")))
        return render_template("login.html", form=form, error=None)
    name = (form.username.data or "").strip()
    if form.validate_on_submit() and current_team().users.current.verify(name, form.password.data or ""):
        next_url = safe_next(request.args.get("next") or request.form.get("next"))
        session.clear()  # a new session at login: nothing from before carries over
        login_user(User(name))
        session["login_id"] = secrets.token_urlsafe(16)
        return redirect(next_url)
    return render_template("login.html", form=form, error="Wrong user name or password."), 401


def _locked_out(error):
    retry_after = getattr(error, "retry_after", None)
    form = LoginForm()
    message = "Too many failed attempts. Please wait a few minutes and try again."
    response = render_template("login.html", form=form, error=message, locked=True)
    headers = {"Retry-After": str(retry_after)} if retry_after else {}
    return response, 429, headers


@bp.post("/logout")
@login_required
def logout():
    login_id = session.get("login_id")
    logout_user()
    session.clear()
    if login_id:
        realtime.end_sessions(f"session:{login_id}")
    return redirect(url_for("auth.login"))
