"""The team's presence routes (shetphone/web/team.py: GET /team, POST /me/dnd) and the team built at start
(shetphone/team.py): teammates, do-not-disturb across a restart, the phones it may ring."""

from __future__ import annotations

import pytest
from conftest import INI, ROOT, browser_with_phone, csrf_token_from, login

from shetphone import create_app
from shetphone.dialing import DialPolicy
from shetphone.settings import ConfigError, load_settings
from shetphone.team import check_phones_rung, names_not_in_htpasswd
from shetphone.users import parse_htpasswd


def logged_in(app, name: str):
    http = app.test_client()
    assert login(http, name).status_code == 302
    http.csrf = csrf_token_from(http.get("/").get_data(as_text=True))
    return http


def set_dnd(http, on, token: str | None = None):
    headers = {"X-CSRFToken": http.csrf if token is None else token} if token != "" else {}
    return http.post("/me/dnd", json={"dnd": on} if not isinstance(on, dict) else on, headers=headers)


def test_the_team_is_who_shares_a_number_with_their_states(app):
    browser_with_phone(app, "bob")
    alice = logged_in(app, "alice")
    assert alice.get("/team").get_json() == {"team": [
        {"user": "alice", "state": "offline"}, {"user": "bob", "state": "available"}]}
    carol = logged_in(app, "carol")  # alone on +441595000004
    assert carol.get("/team").get_json() == {"team": [{"user": "carol", "state": "offline"}]}


def test_the_team_needs_a_login(client):
    assert client.get("/team").status_code == 401


def test_dnd_on_and_off_is_announced_to_the_team_and_only_them(app):
    bob = browser_with_phone(app, "bob")
    carol = browser_with_phone(app, "carol")
    alice_browser = browser_with_phone(app, "alice")
    for browser in (bob, carol, alice_browser):
        browser.get_received()
    alice = logged_in(app, "alice")
    answer = set_dnd(alice, True)
    assert answer.status_code == 200
    assert answer.get_json() == {"user": "alice", "dnd": True, "state": "dnd"}
    assert [e["args"][0] for e in bob.get_received() if e["name"] == "presence"] == [
        {"user": "alice", "state": "dnd"}]
    assert [e["args"][0] for e in alice_browser.get_received() if e["name"] == "presence"] == [
        {"user": "alice", "state": "dnd"}]  # her other pages' switches follow
    assert carol.get_received() == []
    assert {m["user"]: m["state"] for m in alice.get("/team").get_json()["team"]}["alice"] == "dnd"
    assert set_dnd(alice, False).get_json()["state"] == "available"  # her phone is still started
    assert [e["args"][0] for e in bob.get_received() if e["name"] == "presence"] == [
        {"user": "alice", "state": "available"}]
    assert set_dnd(alice, False).status_code == 200
    assert bob.get_received() == []  # no change, no event


@pytest.mark.parametrize("body", [{"dnd": "yes"}, {"dnd": 1}, {}, {"on": True}, ["dnd"]])
def test_a_bad_dnd_body_is_400(app, body):
    alice = logged_in(app, "alice")
    response = alice.post("/me/dnd", json=body, headers={"X-CSRFToken": alice.csrf})
    assert response.status_code == 400 and "dnd" in response.get_json()["error"]


def test_dnd_needs_the_csrf_token_and_a_login(app, client):
    alice = logged_in(app, "alice")
    for token in ("", "not-the-token"):
        refused = set_dnd(alice, True, token=token)
        assert refused.status_code == 400 and "CSRF" in refused.get_json()["error"]  # JSON, as the page reads it
    assert alice.get("/team").get_json()["team"][0]["state"] == "offline"  # nothing changed
    page = client.get("/login").get_data(as_text=True)
    assert client.post("/me/dnd", json={"dnd": True},
                       headers={"X-CSRFToken": csrf_token_from(page)}).status_code == 401


def test_dnd_lasts_across_a_restart_and_a_new_login(team_files, settings):
    first = create_app(settings, async_mode="threading", overrides={"TESTING": True})
    try:
        assert set_dnd(logged_in(first, "bob"), True).status_code == 200
    finally:
        first.extensions["shetphone"].store.close()
    again = create_app(load_settings(team_files.root, team_files.environ), async_mode="threading",
                       overrides={"TESTING": True})  # the same database, a new process's app
    try:
        browser_with_phone(again, "bob")  # a browser with its phone started does not lift it
        team = logged_in(again, "alice").get("/team").get_json()["team"]
        assert {m["user"]: m["state"] for m in team}["bob"] == "dnd"
    finally:
        again.extensions["shetphone"].store.close()


# ----------------------------------------------------------------------------- the team at start


def test_a_forward_number_the_dialing_policy_refuses_stops_the_start_naming_its_line(team_files):
    # 07911 numbers are Guernsey's: not among the regions of the team's own numbers (GB, US).
    team_files.ini_template = INI.replace("[shetphone:bridge]", "[shetphone:forward]\nbob = +447911123401\n\n"
                                                                "[shetphone:bridge]")
    team_files.write_ini()
    with pytest.raises(ConfigError) as refused:
        create_app(load_settings(team_files.root, team_files.environ), async_mode="threading")
    line = team_files.ini.read_text().splitlines().index("bob = +447911123401") + 1
    # The region is named: to the operator +447911 looks British.
    assert str(refused.value) == (f"{team_files.ini}:{line}: [shetphone:forward] bob: +447911123401 cannot be rung: "
                                  "calls to GG are not allowed (allowed_countries: GB US; add GG to ring it)")


def test_the_examples_outside_phone_and_forward_number_pass_its_own_allowed_countries(tmp_path):
    # The example ini shows them commented out; an operator who uncomments them must not be refused.
    text = (ROOT / "shetphone.ini.example").read_text(encoding="utf-8")
    outside = text.split("; (E.164) on the line: +441595000001 = admin alice ", 1)[1].split()[0]
    forward = "alice = " + text.split("\n; alice = ", 1)[1].split()[0]
    text = text.replace("\n+441595000001 = admin\n", f"\n+441595000001 = admin {outside}\n")
    (tmp_path / "shetphone.ini").write_text(text.replace(f"\n; {forward}\n", f"\n{forward}\n"), encoding="utf-8")
    settings = load_settings(tmp_path, {"SHETPHONE_SECRET_KEY": "k"})
    assert settings.forward == {"alice": forward.split()[-1]}
    assert settings.numbers["+441595000001"].outside_numbers == (outside,)
    check_phones_rung(settings, DialPolicy.configured(settings.allowed_countries, settings.allow_premium, ()))


def test_every_map_section_entry_naming_someone_not_in_htpasswd_is_a_warning_with_its_line(team_files):
    team_files.ini_template = (
        INI.replace("+441595000004 = carol", "+441595000004 = carol gina")
        .replace("carol = +441595000004", "frank = +441595000004")
        .replace("[shetphone:bridge]", "[shetphone:forward]\ndave = +441595123456\n\n[shetphone:email]\n"
                 "alice = a@example.test\nerin = e@example.test\n\n[shetphone:bridge]"))
    team_files.write_ini()
    settings = load_settings(team_files.root, team_files.environ)
    users = parse_htpasswd(team_files.htpasswd.read_text(), team_files.htpasswd)
    lines = team_files.ini.read_text().splitlines()
    assert [(warning.line, warning.where) for warning in names_not_in_htpasswd(settings, users)] == [
        (lines.index("+441595000004 = carol gina") + 1, "[shetphone:numbers] +441595000004"),
        (lines.index("frank = +441595000004") + 1, "[shetphone:clients] frank"),
        (lines.index("dave = +441595123456") + 1, "[shetphone:forward] dave"),
        (lines.index("erin = e@example.test") + 1, "[shetphone:email] erin"),
    ]
    assert "gina is not a user in" in str(names_not_in_htpasswd(settings, users)[0])


def test_a_missing_htpasswd_or_presets_file_stops_the_start_saying_what_to_do(team_files):
    team_files.presets.unlink()
    with pytest.raises(ConfigError) as refused:
        create_app(load_settings(team_files.root, team_files.environ), async_mode="threading")
    assert str(refused.value) == (f"{team_files.presets}: file not found; copy presets.csv.example, or for no presets "
                                  "write the line alias,country code,number")
    team_files.htpasswd.unlink()
    with pytest.raises(ConfigError) as refused:
        create_app(load_settings(team_files.root, team_files.environ), async_mode="threading")
    assert str(refused.value) == (f"{team_files.htpasswd}: file not found; add a user with "
                                  "`flask --app app users add NAME`")


def test_a_premium_rate_outside_phone_stops_the_start(team_files):
    team_files.ini_template = INI.replace("+441595000004 = carol", "+441595000004 = carol +449098790000")
    team_files.write_ini()
    with pytest.raises(ConfigError, match=r"shetphone.ini:\d+: \[shetphone:numbers\] \+441595000004: "
                                          r"\+449098790000 cannot be rung: calls to premium rate numbers"):
        create_app(load_settings(team_files.root, team_files.environ), async_mode="threading")


def test_voicemail_goes_to_the_ring_groups_current_members_with_an_address(team_files, app_with):
    team_files.ini_template = INI.replace("[shetphone:bridge]", "[shetphone:email]\nalice = a@example.test\n"
                                          "bob = b@example.test, bob@example.test\ncarol = c@example.test\n\n"
                                          "[shetphone:bridge]")
    without_mail = app_with()
    assert without_mail.extensions["shetphone"].mail_addresses_for("+441595000001") == []  # no smtp_url
    team = app_with("smtp_url = smtp://127.0.0.1:2525\nmail_from = phone@example.test").extensions["shetphone"]
    assert team.mail_addresses_for("+441595000001") == ["a@example.test", "b@example.test", "bob@example.test"]
    assert team.mail_addresses_for("+441595000004") == ["c@example.test"]
    assert team.mail_addresses_for("+441595000002") == []  # a Discord number has no members
