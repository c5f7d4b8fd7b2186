"""The page as an installable app: its web app manifest, its service worker, its colour theme.

Both the manifest and the worker are served at the root of the app (``/`` or, behind a
proxy, ``/prefix/``), not under ``/static/dist``: a worker's scope is the folder it is
served from, and it must cover every page. Neither needs a login: the browser fetches a
manifest without cookies, and neither says anything that the built files do not.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, current_app, jsonify, request, send_file, url_for

from .assets import DIST

bp = Blueprint("appshell", __name__)

NAME = "Shetphone"
DESCRIPTION = "Your team’s telephone, in this browser."
THEME_COOKIE = "shetphone_theme"  # written by the page's theme switch (frontend/src/theme.js)
THEMES = ("light", "dark")
# The browser's title bar and the installed window's frame, per theme; the page's own
# colours are in frontend/src/styles/base.css.
THEME_COLORS = {"light": "#0b6e69", "dark": "#16202b"}
BACKGROUND = "#eef2f6"  # the splash screen of an installed window, before the page paints
ICONS = (
    ("icons/icon.svg", "any", "image/svg+xml", "any"),
    ("icons/icon-192.png", "192x192", "image/png", "any"),
    ("icons/icon-512.png", "512x512", "image/png", "any"),
    ("icons/icon-maskable-512.png", "512x512", "image/png", "maskable"),
)
NO_CACHE = "no-cache"  # a new build's worker and manifest are seen at the next open


def dist_url(file: str) -> str:
    return url_for("static", filename=f"{DIST}/{file}")


@bp.get("/manifest.webmanifest")
def manifest():
    home = url_for("dialer.index")  # "/" or "/prefix/": the scope follows the path prefix
    body = {
        "id": home,
        "name": NAME,
        "short_name": NAME,
        "description": DESCRIPTION,
        "start_url": home,
        "scope": home,
        "display": "standalone",
        "background_color": BACKGROUND,
        "theme_color": THEME_COLORS["light"],
        "icons": [{"src": dist_url(file), "sizes": sizes, "type": kind, "purpose": purpose}
                  for file, sizes, kind, purpose in ICONS],
        # An installed window opens tel: links, as the tab can (registerProtocolHandler).
        "protocol_handlers": [{"protocol": "tel", "url": f"{home}?dial=%s"}],
    }
    response = jsonify(body)
    response.mimetype = "application/manifest+json"
    response.headers["Cache-Control"] = NO_CACHE
    return response


@bp.get("/sw.js")
def service_worker():
    path = Path(current_app.static_folder or "static") / DIST / "sw.js"
    if not path.is_file():
        abort(404)  # not built yet; the page says so itself
    response: Response = send_file(path, mimetype="text/javascript", max_age=0, conditional=True)
    response.headers["Cache-Control"] = NO_CACHE
    return response


def page_theme() -> str | None:
    """The theme the person chose, or None to follow the system's (prefers-color-scheme)."""
    chosen = request.cookies.get(THEME_COOKIE)
    return chosen if chosen in THEMES else None


def theme_color_media(scheme: str, chosen: str | None) -> str:
    """The media query of the theme-color meta for ``scheme`` (the same rule as theme.js)."""
    if chosen is None:
        return f"(prefers-color-scheme: {scheme})"
    return "all" if scheme == chosen else "not all"


def init_app(app) -> None:
    app.register_blueprint(bp)

    @app.context_processor
    def _theme():
        return {"page_theme": page_theme, "theme_colors": THEME_COLORS, "theme_color_media": theme_color_media,
                "dist_url": dist_url}
