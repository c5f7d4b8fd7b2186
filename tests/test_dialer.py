"""The dialer's JSON: token, presets, health, and the page config."""

import json

import jwt
from conftest import login, make_team_files

from shetphone import create_app
from shetphone.settings import load_settings


def test_token_for_the_logged_in_user(client, team_files):
    login(client, "alice")
    body = client.get("/token").get_json()
    assert body["identity"] == "alice"
    assert body["ttl"] == 3600
    claims = jwt.decode(body["token"], team_files.environ["TWILIO_API_SECRET"], algorithms=["HS256"])
    assert claims["grants"]["identity"] == "alice"
    assert claims["grants"]["voice"]["outgoing"]["application_sid"] == team_files.environ["TWILIO_APP_SID"]
    assert claims["grants"]["voice"]["incoming"]["allow"] is True


def test_token_503_names_the_missing_variables(tmp_path):
    files = make_team_files(tmp_path)
    del files.environ["TWILIO_API_SECRET"]
    del files.environ["TWILIO_APP_SID"]
    app = create_app(load_settings(files.root, files.environ), async_mode="threading", overrides={"TESTING": True})
    client = app.test_client()
    login(client, "alice")
    response = client.get("/token")
    assert response.status_code == 503
    assert response.get_json()["error"] == "Twilio is not configured: set TWILIO_APP_SID, TWILIO_API_SECRET"
    page = client.get("/").get_data(as_text=True)
    assert "TWILIO_API_SECRET" in page  # the page can say what is missing
    app.extensions["shetphone"].store.close()


def test_presets(client):
    login(client, "bob")
    assert client.get("/presets").get_json() == {
        "presets": [
            {"alias": "Mum", "country_code": "44", "number": "1595 123456", "e164": "+441595123456"},
            {"alias": "Dad", "country_code": "1", "number": "201 555 0123", "e164": "+12015550123"},
        ]
    }


def test_healthz_needs_no_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def page_config_of(client) -> dict:
    page = client.get("/").get_data(as_text=True)
    start = page.index('<script type="application/json" id="shetphone-config">') + len(
        '<script type="application/json" id="shetphone-config">')
    return json.loads(page[start : page.index("</script>", start)])


def test_page_config_is_the_users_own(client):
    login(client, "alice")
    config = page_config_of(client)
    assert config["identity"] == "alice"
    assert config["caller_ids"] == ["+441595000001", "+15005550006"]
    assert config["default_region"] == "GB"
    assert config["allowed_regions"] == ["GB", "US"]  # no allowed_countries: the regions of the team's numbers
    assert config["numbers"] == ["+15005550006", "+441595000001"]
    assert config["twilio_missing"] == []


def test_page_config_offers_no_region_for_the_non_geographic_numbers(tmp_path):
    files = make_team_files(tmp_path, extra="allowed_countries = GB 001")
    app = create_app(load_settings(files.root, files.environ), async_mode="threading", overrides={"TESTING": True})
    client = app.test_client()
    login(client, "alice")
    assert page_config_of(client)["allowed_regions"] == ["GB"]
    app.extensions["shetphone"].store.close()


def test_calls_answers_503_when_the_database_does_not_answer_in_time(impatient_app):
    from store_helpers import sqlite_locked

    client = impatient_app.test_client()
    login(client, "alice")
    store = impatient_app.extensions["shetphone"].store
    with sqlite_locked(store.database, readers_too=True):
        response = client.get("/calls")
        assert response.status_code == 503
        assert response.get_json() == {"error": "the database is not available just now; try again shortly"}
        assert client.get("/healthz").status_code == 200
    assert client.get("/calls").get_json() == {"calls": []}
