"""Socket.IO against the real server (``python app.py``, gevent) with real python-socketio clients."""

from __future__ import annotations

import os
import threading
import time

import pytest
import requests
import socketio
from conftest import PASSWORDS, csrf_token_from, live_login, make_team_files, phone_started_on, start_server

ROOT_ALICE = "CA" + "a" * 32
ROOT_CAROL = "CA" + "c" * 32
LEG_ALICE = "CA" + "b" * 32  # a leg of ROOT_ALICE


class Listener:
    """A logged-in browser's Socket.IO connection that records what it receives."""

    def __init__(self, server, name: str, session: requests.Session | None = None):
        self.session = session or live_login(server, name)
        self.events: list[tuple[str, dict]] = []
        self.changed = threading.Condition()
        self.client = socketio.Client(http_session=self.session, reconnection=False)
        for event in ("call_status", "voicemail", "presets_changed", "session_ended"):
            self.client.on(event, self._recorder(event))
        self.disconnected = threading.Event()
        self.client.on("disconnect", lambda *args: self.disconnected.set())
        self.client.connect(server.url, transports=["websocket"], wait_timeout=10)

    def _recorder(self, event: str):
        def record(payload=None):
            with self.changed:
                self.events.append((event, payload))
                self.changed.notify_all()

        return record

    def wait_for(self, predicate, timeout: float = 10) -> list[tuple[str, dict]]:
        with self.changed:
            self.changed.wait_for(lambda: predicate(self.events), timeout)
            return list(self.events)

    def named(self, event: str) -> list[dict]:
        return [payload for name, payload in self.events if name == event]

    def close(self) -> None:
        # websocket-client waits up to 3 s for the server's close frame; nothing here needs that wait.
        if self.client.connected:
            threading.Thread(target=self.client.disconnect, daemon=True).start()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_server(make_team_files(tmp_path_factory.mktemp("realtime")))
    yield server
    server.stop()


def open_inbound(server, call_sid: str, number: str) -> None:
    response = server.post_signed("/voice", {"CallSid": call_sid, "From": "+447700900123", "To": number})
    assert response.status_code == 200, response.text


def status(server, root: str, leg: str, call_status: str, sequence: int, to: str = "client:x"):
    return server.post_signed("/voice/status", {
        "CallSid": leg, "ParentCallSid": root, "CallStatus": call_status, "SequenceNumber": str(sequence),
        "From": "+447700900123", "To": to, "Direction": "outbound-dial",
    })


def test_login_over_http_success_failure_and_missing_csrf(server):
    session = requests.Session()
    page = session.get(server.url + "/login", timeout=10)
    token = csrf_token_from(page.text)
    wrong = session.post(server.url + "/login", data={"username": "bob", "password": "nope", "csrf_token": token},
                         allow_redirects=False, timeout=10)
    assert wrong.status_code == 401
    no_csrf = session.post(server.url + "/login", data={"username": "bob", "password": PASSWORDS["bob"]},
                           allow_redirects=False, timeout=10)
    assert no_csrf.status_code == 400
    good = session.post(server.url + "/login", data={"username": "bob", "password": PASSWORDS["bob"],
                                                     "csrf_token": token}, allow_redirects=False, timeout=10)
    assert good.status_code == 302
    assert session.get(server.url + "/token", timeout=10).json()["identity"] == "bob"


def test_lockout_over_http(live_server):
    # Its own server: a lockout of 127.0.0.1 would lock the other tests out too.
    session = requests.Session()
    token = csrf_token_from(session.get(live_server.url + "/login", timeout=10).text)
    responses = [
        session.post(live_server.url + "/login", data={"username": "dave", "password": "x", "csrf_token": token},
                     allow_redirects=False, timeout=10)
        for _ in range(6)
    ]
    assert [r.status_code for r in responses] == [401] * 5 + [429]
    assert 0 < int(responses[-1].headers["Retry-After"]) <= 900


def test_a_socket_without_a_session_is_refused(server):
    client = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(server.url, transports=["websocket"], wait_timeout=5)
    assert not client.connected


def test_room_isolation_200_status_posts(server):
    alice = Listener(server, "alice")
    carol = Listener(server, "carol")
    try:
        for listener, name in ((alice, "alice"), (carol, "carol")):  # the calls ring their pages
            phone_started_on(server.url, listener.session, listener.client, name)
        open_inbound(server, ROOT_ALICE, "+441595000001")
        open_inbound(server, ROOT_CAROL, "+441595000004")
        sent = {"alice": set(), "carol": set()}
        for index in range(200):
            owner, root = ("alice", ROOT_ALICE) if index % 2 == 0 else ("carol", ROOT_CAROL)
            leg = f"CA{index:032d}"
            assert status(server, root, leg, "ringing", 0).status_code == 204
            sent[owner].add(leg)
        alice.wait_for(lambda events: len(events) >= 100)
        carol.wait_for(lambda events: len(events) >= 100)
        time.sleep(0.5)  # anything misrouted would have arrived by now
        alice_legs = {p["call_sid"] for p in alice.named("call_status")}
        carol_legs = {p["call_sid"] for p in carol.named("call_status")}
        assert alice_legs == sent["alice"]
        assert carol_legs == sent["carol"]
        assert len(alice.named("call_status")) == 100 and len(carol.named("call_status")) == 100
        assert {p["number"] for p in alice.named("call_status")} == {"+441595000001"}
        assert {p["number"] for p in carol.named("call_status")} == {"+441595000004"}
    finally:
        alice.close()
        carol.close()


def test_reconnect_catch_up(server):
    root = "CA" + "e" * 32
    open_inbound(server, root, "+441595000001")
    bob = Listener(server, "bob")
    assert status(server, root, "CA" + "f" * 32, "ringing", 0, to="client:bob").status_code == 204
    bob.wait_for(lambda events: any(p.get("call_sid") == "CA" + "f" * 32 for _, p in events))
    bob.close()
    # while bob is away, the call is answered
    assert status(server, root, "CA" + "f" * 32, "in-progress", 1, to="client:bob").status_code == 204
    again = Listener(server, "bob", session=bob.session)
    try:
        events = again.wait_for(lambda events: any(p.get("call_sid") == "CA" + "f" * 32 for _, p in events))
        caught_up = [p for name, p in events if name == "call_status" and p["call_sid"] == "CA" + "f" * 32]
        assert caught_up[-1]["status"] == "in-progress"
        assert caught_up[-1]["number"] == "+441595000001"
    finally:
        again.close()
    # a finished call is not replayed
    assert status(server, root, "CA" + "f" * 32, "completed", 2, to="client:bob").status_code == 204
    third = Listener(server, "bob", session=bob.session)
    try:
        time.sleep(0.5)
        assert [p for p in third.named("call_status") if p["call_sid"] == "CA" + "f" * 32] == []
    finally:
        third.close()


def test_hot_reload_of_presets_good_then_malformed(server):
    alice = Listener(server, "alice")
    try:
        presets = server.files.presets
        presets.write_text(presets.read_text() + "Office,44,1595 000004\n")
        alice.wait_for(lambda events: any(name == "presets_changed" for name, _ in events))
        aliases = [p["alias"] for p in alice.session.get(server.url + "/presets", timeout=10).json()["presets"]]
        assert "Office" in aliases
        presets.write_text(presets.read_text() + "Broken,44\n")
        deadline = time.monotonic() + 10
        while "presets.csv:5" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert f"{presets}:5: row: has 2 fields" in server.log()
        aliases = [p["alias"] for p in alice.session.get(server.url + "/presets", timeout=10).json()["presets"]]
        assert aliases == ["Mum", "Dad", "Office"]  # the last good version
    finally:
        alice.close()


def test_hot_reload_of_users_removal_closes_the_socket(server):
    carol = Listener(server, "carol")
    bob = Listener(server, "bob")
    try:
        htpasswd = server.files.htpasswd
        kept = [line for line in htpasswd.read_text().splitlines(keepends=True) if not line.startswith("carol:")]
        htpasswd.write_text("".join(kept))
        carol.wait_for(lambda events: any(name == "session_ended" for name, _ in events))
        assert carol.disconnected.wait(10)
        assert carol.session.get(server.url + "/token", timeout=10).status_code == 401
        assert bob.client.connected  # nobody else is touched
        assert bob.named("session_ended") == []
        # a malformed edit keeps the last good users
        htpasswd.write_text(htpasswd.read_text() + "mallory:plaintext\n")
        deadline = time.monotonic() + 10
        while "plaintext is refused" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "plaintext is refused" in server.log()
        assert bob.session.get(server.url + "/token", timeout=10).status_code == 200
        assert bob.client.connected
    finally:
        carol.close()
        bob.close()


def test_a_phone_event_with_more_arguments_than_its_one_counts_its_first(app, caplog):
    from conftest import browser_with_phone, login

    browser = browser_with_phone(app, "alice", ready=False)
    browser.emit("phone", {"ready": True}, "extra", 3)  # the handler raised TypeError: a traceback per event
    assert browser.is_connected()
    assert not [record for record in caplog.records if record.exc_info]
    http = app.test_client()
    login(http, "bob")
    assert {"user": "alice", "state": "available"} in http.get("/team").get_json()["team"]


def test_a_new_password_in_the_user_file_logs_that_user_out_everywhere(app, team_files):
    """However the file changed (`users add`, an editor): their logins end and their pages go to /login."""
    from conftest import htpasswd_line, login, settled

    app.extensions["shetphone_watcher_pid"] = os.getpid()  # this test notices the change, not a thread meanwhile
    clients, sockets = {}, {}
    for name in ("bob", "alice"):
        clients[name] = app.test_client()
        assert login(clients[name], name).status_code == 302
        sockets[name] = app.extensions["socketio"].test_client(app, flask_test_client=clients[name])
        assert sockets[name].is_connected()
    lines = team_files.htpasswd.read_text().splitlines(keepends=True)
    team_files.htpasswd.write_text("".join(htpasswd_line("bob", "bob's new password") if line.startswith("bob:")
                                           else line for line in lines))
    settled(app.extensions["shetphone"].users)
    assert not sockets["bob"].is_connected()  # told session_ended, then closed
    assert clients["bob"].get("/token").status_code == 401
    again = app.extensions["socketio"].test_client(app, flask_test_client=clients["bob"])
    assert not again.is_connected()
    assert sockets["alice"].is_connected()
    assert [e for e in sockets["alice"].get_received() if e["name"] == "session_ended"] == []
    assert clients["alice"].get("/token").status_code == 200


def test_logout_ends_that_sessions_sockets(server):
    session = live_login(server, "alice")
    alice = Listener(server, "alice", session=session)
    other_tab = Listener(server, "alice")  # another browser of alice's stays logged in
    try:
        page = session.get(server.url + "/", timeout=10).text
        response = session.post(server.url + "/logout", data={"csrf_token": csrf_token_from(page)},
                                allow_redirects=False, timeout=10)
        assert response.status_code == 302
        alice.wait_for(lambda events: any(name == "session_ended" for name, _ in events))
        assert alice.disconnected.wait(10)
        time.sleep(0.3)
        assert other_tab.named("session_ended") == []
        assert other_tab.client.connected
    finally:
        alice.close()
        other_tab.close()


def test_a_connection_is_kept_when_its_catch_up_cannot_be_read(impatient_app, team_files, monkeypatch):
    """The database not answering costs the catch-up, not the connection: events from then on arrive."""
    from conftest import PUBLIC_URL, login, signature_for
    from store_helpers import sqlite_locked

    http = impatient_app.test_client()
    login(http, "alice")
    store = impatient_app.extensions["shetphone"].store
    store.calls.open_call(ROOT_ALICE, direction="inbound", number="+441595000001", from_="+447700900123",
                          to="+441595000001", client=None)
    store.calls.record_status({"CallSid": LEG_ALICE, "ParentCallSid": ROOT_ALICE, "CallStatus": "ringing",
                               "SequenceNumber": "0"})
    catch_up = store.calls.calls_in_progress

    def locked_catch_up(*args, **kwargs):  # the login was checked a moment before; then the lock came
        with sqlite_locked(store.database, readers_too=True):
            return catch_up(*args, **kwargs)

    monkeypatch.setattr(store.calls, "calls_in_progress", locked_catch_up)
    browser = impatient_app.extensions["socketio"].test_client(impatient_app, flask_test_client=http)
    assert browser.is_connected()
    assert browser.get_received() == []  # no catch-up
    params = {"CallSid": LEG_ALICE, "ParentCallSid": ROOT_ALICE, "CallStatus": "in-progress",
              "SequenceNumber": "1"}
    signature = signature_for(team_files.auth_token, PUBLIC_URL + "/voice/status", params)
    assert impatient_app.test_client().post("/voice/status", data=params,
                                            headers={"X-Twilio-Signature": signature}).status_code == 204
    assert [(e["name"], e["args"][0]["status"]) for e in browser.get_received()] == [("call_status", "in-progress")]


def test_a_connection_whose_login_cannot_be_checked_is_refused(impatient_app):
    """Without the database nobody can tell a live login from an ended one: refused, never let in."""
    from conftest import login
    from store_helpers import sqlite_locked

    http = impatient_app.test_client()
    login(http, "alice")
    store = impatient_app.extensions["shetphone"].store
    with sqlite_locked(store.database, readers_too=True):
        browser = impatient_app.extensions["socketio"].test_client(impatient_app, flask_test_client=http)
        assert not browser.is_connected()
    assert impatient_app.extensions["socketio"].test_client(impatient_app, flask_test_client=http).is_connected()


# ------------------------------------------------------------------ logins across processes


@pytest.fixture
def two_processes(tmp_path, redis_server):
    """Two app processes (python app.py, gevent) sharing one database and a real Redis, as behind nginx."""
    files = make_team_files(tmp_path, extra=f"message_queue = {redis_server.url}\n")
    first = start_server(files)
    try:
        second = start_server(files)
    except BaseException:
        first.stop()
        raise
    yield first, second
    second.stop()
    first.stop()


def replayed(server, path: str, cookie: str) -> requests.Response:
    """A request carrying exactly this session cookie, whatever the server said to drop."""
    return requests.get(server.url + path, headers={"Cookie": f"shetphone_session={cookie}"},
                        allow_redirects=False, timeout=10)


def test_logout_on_one_process_ends_the_login_on_the_other_and_closes_its_sockets(two_processes):
    a, b = two_processes
    alice = live_login(a, "alice")
    cookie = alice.cookies["shetphone_session"]  # copied before the logout
    thief = requests.Session()
    thief.cookies.set("shetphone_session", cookie)
    assert replayed(b, "/token", cookie).json()["identity"] == "alice"
    stolen = Listener(b, "alice", session=thief)
    own = Listener(b, "alice", session=alice)
    other_login = Listener(b, "alice")  # another browser of alice's, on the same process
    try:
        page = alice.get(a.url + "/", timeout=10).text
        response = alice.post(a.url + "/logout", data={"csrf_token": csrf_token_from(page)},
                              allow_redirects=False, timeout=10)
        assert response.status_code == 302
        # B closes them itself: a client that ignores session_ended is not left connected.
        assert stolen.disconnected.wait(10) and own.disconnected.wait(10)
        assert stolen.named("session_ended") == [{}]
        for server in (a, b):
            for path in ("/token", "/presets", "/calls"):
                assert replayed(server, path, cookie).status_code == 401, (server.url, path)
            page = replayed(server, "/", cookie)
            assert page.status_code == 302 and page.headers["Location"] == "/login?next=/"
        with pytest.raises(socketio.exceptions.ConnectionError):
            Listener(b, "alice", session=thief)
        time.sleep(0.3)
        assert other_login.client.connected and other_login.named("session_ended") == []
        assert other_login.session.get(b.url + "/token", timeout=10).status_code == 200
    finally:
        for listener in (stolen, own, other_login):
            listener.close()


def open_pages(app, clock, session_hours: int, *names: str):
    """The team, with logins lasting ``session_hours`` on ``clock``, and a logged-in page per name:
    (its HTTP client, its Socket.IO client)."""
    from conftest import login

    from shetphone.store import Logins

    team = app.extensions["shetphone"]
    team.store.logins = Logins(team.store.database, session_hours=session_hours, clock=clock)
    pages = []
    for name in names:
        http = app.test_client()
        login(http, name)
        socket = app.extensions["socketio"].test_client(app, flask_test_client=http)
        assert socket.is_connected()
        pages.append((http, socket))
    return team, pages


def test_a_login_unused_for_session_hours_has_its_sockets_closed_at_the_prune(app, clock):
    from shetphone import realtime

    team, [(idle_http, idle), (busy_http, busy)] = open_pages(app, clock, 12, "alice", "bob")
    # No keep-alive ran for alice's page (its process could not reach the database, say).
    clock.advance(hours=11)
    assert busy_http.get("/token").status_code == 200  # bob's page is in use
    clock.advance(hours=1, seconds=1)
    with app.app_context():
        realtime._prune_logins(team)
    assert not idle.is_connected()
    assert busy.is_connected()
    assert idle_http.get("/token").status_code == 401


def test_housekeeping_does_each_chore_when_due_and_goes_on_past_one_that_fails(caplog):
    from shetphone.realtime import Chore, housekeeping_round

    done: list[str] = []

    def broken() -> None:
        raise RuntimeError("no database")

    chores = [Chore("often", 1.0, lambda: done.append("often")), Chore("broken", 10.0, broken),
              Chore("later", 5.0, lambda: done.append("later"), due_at=5.0)]
    rounds = [housekeeping_round(chores, now) for now in (0.0, 1.0, 4.5, 5.0, 10.0)]
    # Each is next due an interval after it last ran: "often", run at 4.5, waits till 5.5.
    assert rounds == [["often", "broken"], ["often"], ["often"], ["later"], ["often", "broken", "later"]]
    assert done == ["often", "often", "often", "later", "often", "later"]
    assert caplog.text.count("housekeeping: broken failed; trying again in 10 s") == 2


def test_housekeeping_keeps_an_open_page_logged_in_past_session_hours(app, clock):
    from shetphone import realtime

    team, [(open_http, open_page), (closed_http, closed_page)] = open_pages(app, clock, 1, "alice", "bob")
    closed_page.disconnect()
    with app.app_context():
        chores = realtime.housekeeping_chores(team, now=0.0)
        for minute in range(181):  # three hours, a round a minute (time on the monotonic clock and the wall)
            assert ("prune" in realtime.housekeeping_round(chores, now=minute * 60.0)) == (minute % 60 == 0)
            clock.advance(minutes=1)
    assert open_page.is_connected()
    assert open_http.get("/token").status_code == 200
    assert closed_http.get("/token").status_code == 401


def test_an_open_page_keeps_its_login_though_it_sends_no_request(app, clock):
    """A phone left open all day is in use: with a token_ttl over session_hours it asks nothing for hours."""
    from shetphone import realtime
    from shetphone.store import login_key

    team, [(open_http, open_page), (closed_http, closed_page)] = open_pages(app, clock, 1, "alice", "bob")
    closed_page.disconnect()
    open_page.get_received()
    with app.app_context():
        for _ in range(24):  # a day of housekeeping rounds, far apart, and never a request
            clock.advance(seconds=realtime.OPEN_PAGES_INTERVAL * 2)
            assert realtime.keep_open_pages_logged_in(team) == 1
            realtime._prune_logins(team)
    assert open_page.is_connected()
    assert "session_ended" not in [event["name"] for event in open_page.get_received()]
    assert open_http.get("/token").status_code == 200
    assert closed_http.get("/token").status_code == 401
    with open_http.session_transaction() as cookie:
        key = login_key(cookie["login_id"])
    assert team.store.logins.keep_alive([key]) == 0  # just written by the /token above: nothing to do

