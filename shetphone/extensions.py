"""Flask extensions, created once and bound to the app in ``create_app``."""

from __future__ import annotations

from flask import request
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect


def client_address() -> str:
    # ProxyFix (set up in create_app when behind a proxy) has already put the real
    # client's address here.
    return request.remote_addr or "unknown"


login_manager = LoginManager()
csrf = CSRFProtect()
