"""The built front end reaches the pages through Vite's manifest."""

from __future__ import annotations

import json
import logging
import os

from conftest import login
from markupsafe import escape

from shetphone.web.assets import IMMUTABLE, NOT_BUILT, Manifest

MANIFEST = {
    "_shared-abc.js": {"file": "assets/shared-abc.js", "css": ["assets/shared-abc.css"]},
    "src/main.js": {
        "file": "assets/dialer-123.js", "isEntry": True, "src": "src/main.js",
        "imports": ["_shared-abc.js"], "dynamicImports": ["node_modules/@twilio/voice-sdk/esm/twilio.js"],
        "css": ["assets/dialer-123.css"],
    },
    "node_modules/@twilio/voice-sdk/esm/twilio.js": {"file": "assets/twilio-456.js", "isDynamicEntry": True},
    "src/login.js": {"file": "assets/login-789.js", "isEntry": True, "css": ["assets/shared-abc.css"]},
}


def use_manifest(app, path):
    app.extensions["shetphone_assets"].path = path


def test_an_entry_brings_its_css_and_static_imports_but_not_the_lazy_sdk(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(MANIFEST), encoding="utf-8")
    entry = Manifest(path).entry("src/main.js", lambda file: "/static/dist/" + file)
    assert entry.missing is None
    assert entry.scripts == ("/static/dist/assets/dialer-123.js",)
    assert entry.preloads == ("/static/dist/assets/shared-abc.js",)
    assert entry.styles == ("/static/dist/assets/shared-abc.css", "/static/dist/assets/dialer-123.css")
    assert "twilio" not in str(entry.tags())


def test_the_pages_use_the_hashed_files(app, client, tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(MANIFEST), encoding="utf-8")
    use_manifest(app, path)
    login_page = client.get("/login").get_data(as_text=True)
    assert '<script type="module" src="/static/dist/assets/login-789.js"></script>' in login_page
    assert '<link rel="stylesheet" href="/static/dist/assets/shared-abc.css">' in login_page
    login(client, "alice")
    dialer = client.get("/").get_data(as_text=True)
    assert '<script type="module" src="/static/dist/assets/dialer-123.js"></script>' in dialer
    assert '<link rel="modulepreload" href="/static/dist/assets/shared-abc.js">' in dialer


def test_a_rebuild_is_picked_up_without_a_restart(app, client, tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(MANIFEST), encoding="utf-8")
    use_manifest(app, path)
    assert "login-789.js" in client.get("/login").get_data(as_text=True)
    rebuilt = {**MANIFEST, "src/login.js": {"file": "assets/login-000000.js", "isEntry": True}}
    path.write_text(json.dumps(rebuilt), encoding="utf-8")
    assert "login-000000.js" in client.get("/login").get_data(as_text=True)


def test_a_manifest_cut_short_by_a_rebuild_keeps_the_last_good_one(app, client, tmp_path, caplog):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(MANIFEST), encoding="utf-8")
    use_manifest(app, path)
    assert "login-789.js" in client.get("/login").get_data(as_text=True)
    path.write_text(json.dumps(MANIFEST)[:40], encoding="utf-8")  # Vite is still writing it
    with caplog.at_level(logging.ERROR):
        page = client.get("/login").get_data(as_text=True)
    assert "login-789.js" in page  # the last good build's files, not "not built"
    assert f"{path}: is not valid JSON" in caplog.text
    path.write_text(json.dumps(MANIFEST).replace("login-789", "login-790"), encoding="utf-8")
    assert "login-790.js" in client.get("/login").get_data(as_text=True)


def test_a_build_removed_says_not_built_again(app, client, tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(MANIFEST), encoding="utf-8")
    use_manifest(app, path)
    assert "login-789.js" in client.get("/login").get_data(as_text=True)
    path.unlink()  # make clean
    assert str(escape(NOT_BUILT)) in client.get("/login").get_data(as_text=True)


def test_without_a_build_the_pages_say_so_instead_of_failing(app, client, tmp_path):
    use_manifest(app, tmp_path / "not-built" / "manifest.json")
    response = client.get("/login")
    assert response.status_code == 200
    assert str(escape(NOT_BUILT)) in response.get_data(as_text=True)
    login(client, "alice")
    page = client.get("/")
    assert page.status_code == 200
    assert "make frontend" in page.get_data(as_text=True)


def test_hashed_assets_are_cached_for_a_year_and_others_are_not(app, client, tmp_path):
    app.static_folder = str(tmp_path)  # a build of its own, not the one the browser tests use
    os.makedirs(tmp_path / "dist" / "assets")
    (tmp_path / "dist" / "assets" / "dialer-123.js").write_text("export {}\n", encoding="utf-8")
    response = client.get("/static/dist/assets/dialer-123.js")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == IMMUTABLE
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    response.close()
    assert client.get("/healthz").headers.get("Cache-Control") != IMMUTABLE
