"""Login, logout, CSRF, lockout and sessions through the Flask test client."""

import logging
import threading

import pytest
from conftest import PASSWORDS, csrf_token_from, login, settled

from shetphone.lockout import Lockout


def test_the_dialer_needs_a_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/"


def test_json_routes_answer_401_json(client):
    for path in ("/token", "/presets", "/calls"):
        response = client.get(path)
        assert response.status_code == 401
        assert response.get_json() == {"error": "not logged in"}


def test_login_success_goes_to_next(client):
    page = client.get("/login?next=/")
    token = csrf_token_from(page.get_data(as_text=True))
    response = client.post("/login?next=/", data={"username": "alice", "password": PASSWORDS["alice"],
                                                  "csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.get("/token").get_json()["identity"] == "alice"


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:x"])
def test_next_is_only_same_site(client, next_url):
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", query_string={"next": next_url},
                           data={"username": "alice", "password": PASSWORDS["alice"], "csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_wrong_password_is_401_with_the_form(client):
    response = login(client, "alice", "not her password")
    assert response.status_code == 401
    body = response.get_data(as_text=True)
    assert "Wrong user name or password." in body
    assert 'name="csrf_token"' in body
    assert client.get("/token").status_code == 401


def test_unknown_user_is_401(client):
    assert login(client, "mallory", "anything").status_code == 401


def test_missing_csrf_token_is_400(client):
    response = client.post("/login", data={"username": "alice", "password": PASSWORDS["alice"]})
    assert response.status_code == 400
    assert client.get("/token").status_code == 401


def test_wrong_csrf_token_is_400(client):
    client.get("/login")
    response = client.post("/login", data={"username": "alice", "password": PASSWORDS["alice"],
                                           "csrf_token": "forged"})
    assert response.status_code == 400


def test_more_than_five_failures_for_one_user_lock_it_out(client):
    for _ in range(5):
        assert login(client, "alice", "wrong").status_code == 401
    locked = login(client, "alice")  # even the right password, for now
    assert locked.status_code == 429
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60
    assert "Too many failed attempts. Please try again in 15 minutes." in locked.get_data(as_text=True)


def test_lockout_per_user_counts_across_addresses(app):
    for number in range(5):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"192.0.2.{number + 1}"
        assert login(client, "alice", "wrong").status_code == 401
    fresh = app.test_client()
    fresh.environ_base["REMOTE_ADDR"] = "192.0.2.99"
    assert login(fresh, "alice").status_code == 429
    assert login(fresh, "bob").status_code == 302  # bob is not locked out


def test_lockout_per_address_counts_across_user_names(app):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    for name in ("u1", "u2", "u3", "u4", "u5"):
        assert login(client, name, "guess").status_code == 401
    assert login(client, "carol").status_code == 429
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "198.51.100.8"
    assert login(elsewhere, "carol").status_code == 302


def test_successes_do_not_count(client):
    for _ in range(7):
        assert login(client, "alice").status_code == 302
        assert client.post("/logout", data={"csrf_token": csrf_token_from(client.get("/").get_data(as_text=True))})


def test_session_cookie_flags(client):
    response = login(client, "alice")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" in cookie  # public_url is https


def test_session_is_renewed_at_login(client):
    client.get("/login")
    before = client.get_cookie("shetphone_session").value
    login(client, "alice")
    after = client.get_cookie("shetphone_session").value
    assert before != after


def test_logout_needs_the_csrf_token(client):
    login(client, "alice")
    assert client.post("/logout").status_code == 400
    page = client.get("/").get_data(as_text=True)
    response = client.post("/logout", data={"csrf_token": csrf_token_from(page)})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert client.get("/token").status_code == 401


def test_a_removed_user_loses_access_at_the_next_request(client, team_files, app):
    login(client, "bob")
    assert client.get("/presets").status_code == 200
    team_files.write_users({n: p for n, p in PASSWORDS.items() if n != "bob"})
    settled(app.extensions["shetphone"].users)
    assert client.get("/presets").status_code == 401
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("password", ["x" * 73, "é" * 40, "y" * 1000, "y" * 5000])
def test_a_password_of_any_length_is_a_counted_401(client, password):
    for _ in range(5):
        response = login(client, "alice", password)
        assert response.status_code == 401
        assert "Wrong user name or password." in response.get_data(as_text=True)
    assert login(client, "alice").status_code == 429  # the five counted like any failure


def test_an_unknown_user_with_a_long_password_is_a_401_too(client):
    assert login(client, "mallory", "z" * 100).status_code == 401


def test_a_forwarded_request_without_a_trusted_proxy_is_logged_once(client, caplog):
    with caplog.at_level(logging.WARNING, logger="shetphone.web.auth"):
        client.get("/login")
        assert caplog.text == ""  # no proxy, nothing to say
        for _ in range(3):
            client.get("/login", headers={"X-Forwarded-For": "203.0.113.50"})
            client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.51"})
    assert caplog.text.count("X-Forwarded-For") == 1
    assert "proxy_hops = 0" in caplog.text and "set proxy_hops = 1 behind nginx" in caplog.text


def test_a_trusted_proxy_is_not_logged(app_with, caplog):
    app = app_with("proxy_hops = 1")
    with caplog.at_level(logging.WARNING, logger="shetphone.web.auth"):
        app.test_client().get("/login", headers={"X-Forwarded-For": "203.0.113.50"})
    assert "X-Forwarded-For" not in caplog.text


def test_logins_go_on_while_redis_never_answers_and_still_lock(app, client, silent_server):
    app.extensions["shetphone"].lockout = Lockout(silent_server.url)
    statuses = []

    def attempts() -> None:
        statuses.extend(login(client, "alice", "wrong").status_code for _ in range(5))
        statuses.append(login(client, "alice").status_code)

    worker = threading.Thread(target=attempts, daemon=True)
    worker.start()
    worker.join(timeout=10)  # a guard, not a measurement: without timeouts this waits for ever
    assert not worker.is_alive(), "a login hung on a Redis that never answers"
    assert statuses == [401] * 5 + [429]  # counted in this process meanwhile
    assert len(silent_server.accepted) == 1  # one timeout, then Redis is left alone for a while


# ------------------------------------------------------------------ logins kept on the server


def copy_of(app, client):
    """Another browser holding a copy of ``client``'s session cookie (as a thief would)."""
    thief = app.test_client()
    thief.set_cookie("shetphone_session", client.get_cookie("shetphone_session").value)
    return thief


def log_out(client):
    page = client.get("/").get_data(as_text=True)
    response = client.post("/logout", data={"csrf_token": csrf_token_from(page)})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    return response


def assert_logged_out(client) -> None:
    page = client.get("/")
    assert page.status_code == 302 and page.headers["Location"] == "/login?next=/"
    for path in ("/token", "/presets", "/calls"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.get_json() == {"error": "not logged in"}


def test_a_cookie_copied_before_logout_is_refused_after_it(app, client):
    login(client, "alice")
    thief = copy_of(app, client)
    assert thief.get("/token").get_json()["identity"] == "alice"  # the copy works while the login lives
    log_out(client)
    assert_logged_out(thief)
    assert_logged_out(client)


def test_logout_ends_only_that_login(app, client):
    login(client, "alice")
    other_browser = app.test_client()
    login(other_browser, "alice")
    log_out(client)
    assert other_browser.get("/token").get_json()["identity"] == "alice"


def test_a_dead_cookie_is_replaced_by_an_empty_session(app, client):
    login(client, "alice")
    thief = copy_of(app, client)
    log_out(client)
    response = thief.get("/presets")
    assert response.status_code == 401
    assert "shetphone_session=" in response.headers["Set-Cookie"]  # the browser drops the dead one
    assert thief.get_cookie("shetphone_session") is None


def test_a_login_ends_after_session_hours_without_use(app_with, clock):
    from shetphone.store import Logins

    app = app_with("session_hours = 2")
    store = app.extensions["shetphone"].store
    store.logins = Logins(store.database, session_hours=2, clock=clock)
    client = app.test_client()
    login(client, "alice")
    for _ in range(3):  # used every 110 minutes: still in after more than 5 hours
        clock.advance(minutes=110)
        assert client.get("/token").status_code == 200
    clock.advance(hours=2)
    assert_logged_out(client)


def test_session_hours_is_read_and_bounded(app_with, team_files):
    from shetphone.settings import ConfigError, load_settings

    assert app_with("session_hours = 720").extensions["shetphone"].store.logins.lifetime.days == 30
    team_files.write_ini(extra="session_hours = 721\n")
    with pytest.raises(ConfigError, match=r"\[shetphone\] session_hours: 721 is out of range \(1 to 720 hours\)"):
        load_settings(team_files.root, team_files.environ)


def test_a_removed_user_who_is_added_again_must_log_in_again(client, team_files, app):
    login(client, "bob")
    team_files.write_users({n: p for n, p in PASSWORDS.items() if n != "bob"})
    settled(app.extensions["shetphone"].users)  # the app sees bob go, and ends his logins
    team_files.write_users(PASSWORDS)
    settled(app.extensions["shetphone"].users)
    assert client.get("/token").status_code == 401
    assert login(client, "bob").status_code == 302


def test_a_remember_cookie_alone_logs_nobody_in(app):
    from flask_login.utils import encode_cookie

    with app.app_context():
        remember = encode_cookie("alice")  # signed with the app's own key: as good as a real one
    client = app.test_client()
    client.set_cookie("remember_token", remember)
    assert client.get("/token").status_code == 401
    client.delete_cookie("remember_token")
    logged_in = login(client, "alice")
    assert [c for c in logged_in.headers.getlist("Set-Cookie") if "remember_token" in c] == []  # never set


def test_the_session_cookie_is_ours_by_name_and_path(client):
    response = login(client, "alice")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("shetphone_session=") and "; Path=/;" in cookie + ";"


def test_under_a_path_prefix_the_cookie_stays_under_it(team_files):
    from shetphone import create_app
    from shetphone.settings import load_settings

    team_files.write_ini(public_url="https://host.example.test/shetphone")
    app = create_app(load_settings(team_files.root, team_files.environ), async_mode="threading",
                     overrides={"TESTING": True})
    try:
        client = app.test_client()
        page = client.get("/login", base_url="https://host.example.test/shetphone")  # SCRIPT_NAME, as nginx's prefix
        cookie = page.headers["Set-Cookie"]
        assert cookie.startswith("shetphone_session=") and "Path=/shetphone;" in cookie + ";"
    finally:
        app.extensions["shetphone"].store.close()


def test_twilio_webhooks_never_check_a_login(app, twilio_post, monkeypatch):
    def no_reads(*args):
        raise AssertionError("a webhook read the logins")

    monkeypatch.setattr(app.extensions["shetphone"].store.logins, "check", no_reads)
    response = twilio_post("/voice", {"CallSid": "CA1", "From": "+447700900123", "To": "+441595000001"})
    assert response.status_code == 200
    status = twilio_post("/voice/status", {"CallSid": "CA2", "ParentCallSid": "CA1", "CallStatus": "ringing",
                                           "SequenceNumber": "0"})
    assert status.status_code == 204


def test_a_login_that_cannot_be_checked_is_a_503_not_a_login_page(app, client, monkeypatch):
    from shetphone.store import StoreUnavailable

    login(client, "alice")

    def unavailable(*args):
        raise StoreUnavailable("database sqlite:///x: no answer within 5 s")

    monkeypatch.setattr(app.extensions["shetphone"].store.logins, "check", unavailable)
    response = client.get("/token")
    assert response.status_code == 503
    assert "try again" in response.get_json()["error"]


def test_logging_in_again_ends_the_login_it_replaces(app, client):
    login(client, "alice")
    thief = copy_of(app, client)
    token = csrf_token_from(client.get("/").get_data(as_text=True))  # /login sends her to the dialer
    again = client.post("/login", data={"username": "bob", "password": PASSWORDS["bob"], "csrf_token": token})
    assert again.status_code == 302  # over alice's session, without logging out
    assert thief.get("/token").status_code == 401
    assert client.get("/token").get_json()["identity"] == "bob"
