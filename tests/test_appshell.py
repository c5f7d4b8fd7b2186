"""The installable app's server side: the web app manifest, the service worker route, the theme cookie."""

from __future__ import annotations

import re

import pytest

from shetphone.web.appshell import THEME_COLORS, THEME_COOKIE


def test_the_manifest_names_the_app_and_its_icons_at_the_root(client):
    response = client.get("/manifest.webmanifest")  # no login: browsers fetch it without cookies
    assert response.status_code == 200
    assert response.mimetype == "application/manifest+json"
    manifest = response.get_json(force=True)
    assert manifest["name"] == manifest["short_name"] == "Shetphone"
    assert manifest["start_url"] == manifest["scope"] == manifest["id"] == "/"
    assert manifest["display"] == "standalone"
    assert manifest["theme_color"] == THEME_COLORS["light"]
    assert re.fullmatch(r"#[0-9a-f]{6}", manifest["background_color"])
    icons = {(icon["sizes"], icon["purpose"]): icon for icon in manifest["icons"]}
    assert icons[("192x192", "any")]["src"] == "/static/dist/icons/icon-192.png"
    assert icons[("512x512", "any")]["type"] == "image/png"
    assert icons[("512x512", "maskable")]["src"] == "/static/dist/icons/icon-maskable-512.png"
    assert manifest["protocol_handlers"] == [{"protocol": "tel", "url": "/?dial=%s"}]


@pytest.fixture
def proxied_client(team_files):
    """The app behind one trusted proxy (nginx.conf.example's path-prefix form)."""
    from shetphone import create_app
    from shetphone.settings import load_settings

    team_files.write_ini(extra="proxy_hops = 1")
    app = create_app(load_settings(team_files.root, team_files.environ), async_mode="threading",
                     overrides={"TESTING": True})
    yield app.test_client()
    app.extensions["shetphone"].store.close()


def test_under_a_path_prefix_the_manifest_and_its_scope_follow_it(proxied_client):
    manifest = proxied_client.get("/manifest.webmanifest", headers={"X-Forwarded-Prefix": "/shetphone"}).get_json(
        force=True)
    assert manifest["start_url"] == manifest["scope"] == "/shetphone/"
    assert all(icon["src"].startswith("/shetphone/static/dist/icons/") for icon in manifest["icons"])
    assert manifest["protocol_handlers"][0]["url"] == "/shetphone/?dial=%s"


def test_the_worker_is_served_at_the_root_uncached(app, client, tmp_path):
    app.static_folder = str(tmp_path)
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "sw.js").write_text("self.SHETPHONE_BUILD = {};\n", encoding="utf-8")
    response = client.get("/sw.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert response.headers["Cache-Control"] == "no-cache"  # a new build's worker is seen at the next open
    assert response.get_data(as_text=True).startswith("self.SHETPHONE_BUILD")


def test_before_a_build_there_is_no_worker(app, client, tmp_path):
    app.static_folder = str(tmp_path)
    assert client.get("/sw.js").status_code == 404


def test_both_pages_link_the_manifest_and_the_icons(client):
    from conftest import login

    pages = [client.get("/login").get_data(as_text=True)]
    login(client, "alice")
    pages.append(client.get("/").get_data(as_text=True))
    for html in pages:
        assert '<link rel="manifest" href="/manifest.webmanifest">' in html
        assert '<link rel="icon" href="/static/dist/icons/icon.svg" type="image/svg+xml">' in html
        assert 'rel="apple-touch-icon"' in html
        assert 'href="data:,"' not in html  # the old empty favicon


def test_without_a_chosen_theme_the_page_follows_the_system(client):
    html = client.get("/login").get_data(as_text=True)
    assert "<html lang=\"en\">" in html
    assert '<meta name="color-scheme" content="light dark">' in html
    for scheme, colour in THEME_COLORS.items():
        assert (f'<meta name="theme-color" content="{colour}" media="(prefers-color-scheme: {scheme})" '
                f'data-scheme="{scheme}">') in html


def test_a_chosen_theme_is_written_into_the_page_before_any_script(client):
    client.set_cookie(THEME_COOKIE, "dark")
    html = client.get("/login").get_data(as_text=True)
    assert '<html lang="en" data-theme="dark">' in html
    assert '<meta name="color-scheme" content="dark">' in html
    assert f'content="{THEME_COLORS["dark"]}" media="all"' in html
    assert f'content="{THEME_COLORS["light"]}" media="not all"' in html


def test_a_strange_theme_cookie_is_ignored(client):
    client.set_cookie(THEME_COOKIE, '"><script>')
    html = client.get("/login").get_data(as_text=True)
    assert "data-theme" not in html.split("<head>")[0]
    assert "<script>" not in html.split("<body>")[0]
