"""Production as shipped, on loopback: nginx in front of two uWSGI instances sharing Redis and PostgreSQL.

Every server is the real program (redis-server, a PostgreSQL cluster made here
and run as the postgres user, uWSGI with the example's [uwsgi] section, the
media bridge, nginx with nginx.conf.example rendered for loopback and a
self-signed certificate made here). nginx's own route cookie pins a client to
instance A or B; the test's nginx adds one header naming the process that
answered, so the test knows where each request went.

The tests share one cluster and run in order; the faults come last, the one
that stops instance A at the very end. Every program's log is kept under
pytest's temporary directory (deployment0/logs) for a failure's post-mortem.
"""

from __future__ import annotations

import asyncio
import ssl
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
import requests
import socketio
import sqlalchemy as sa
from conftest import PASSWORDS, csrf_token_from, phone_started_on
from deployment_helpers import PREFIX, UPSTREAM_HEADER, Cluster, wait_until

from shetphone.twiml import RETRIES

pytestmark = pytest.mark.timeout(300)

ALICE_NUMBER = "+441595000001"
CALLER = "+447700900123"
EVENT_WAIT = 30  # seconds to wait for an event that must come; never asserted on


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("deployment")).start()
    yield cluster
    cluster.stop()


def login(cluster: Cluster, name: str, instance=None, base_url: str | None = None) -> requests.Session:
    base = base_url or cluster.url
    session = cluster.session(instance)
    page = session.get(base + "/login", timeout=30)
    assert page.status_code == 200
    # Over https Flask-WTF also checks the Referer against the host (as nginx passed it on).
    response = session.post(base + "/login", data={
        "username": name, "password": PASSWORDS[name], "csrf_token": csrf_token_from(page.text),
    }, headers={"Referer": base + "/login"}, allow_redirects=False, timeout=30)
    assert response.status_code == 302, response.text
    return session


class Browser:
    """A logged-in browser's Socket.IO connection (python-socketio) through nginx, recording its events."""

    def __init__(self, cluster: Cluster, name: str, instance=None, *, reconnect: bool = False,
                 base_url: str | None = None, socketio_path: str = "socket.io"):
        self.session = login(cluster, name, instance, base_url)
        self.events: list[tuple[str, dict]] = []
        self.connects = 0
        self.changed = threading.Condition()
        self.client = socketio.Client(http_session=self.session, reconnection=reconnect,
                                      reconnection_delay=0.2, reconnection_delay_max=1)
        self.client.on("connect", self._connected)
        self.client.on("call_status", lambda payload: self._record("call_status", payload))
        origin = cluster.url if base_url is None else base_url.removesuffix(PREFIX)  # scheme://host:port
        self.client.connect(origin, socketio_path=socketio_path, wait_timeout=30,
                            headers={"Origin": origin})

    def _connected(self) -> None:
        with self.changed:
            self.connects += 1
            self.changed.notify_all()

    def _record(self, name: str, payload: dict) -> None:
        with self.changed:
            self.events.append((name, payload))
            self.changed.notify_all()

    def wait_for(self, predicate, timeout: float = EVENT_WAIT) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self), timeout)

    def statuses_of(self, call_sid: str) -> list[str]:
        with self.changed:
            return [p["status"] for name, p in self.events if name == "call_status" and p["call_sid"] == call_sid]

    def close(self) -> None:
        # Also ends a reconnection loop; in a thread: websocket-client waits up to 3 s for the close frame.
        threading.Thread(target=self.client.disconnect, daemon=True).start()


def open_inbound(cluster: Cluster, call_sid: str, instance=None) -> None:
    # A page of bob's, its phone started: the call rings him (SPEC §7). Not alice's: another test leaves a
    # call of hers being dialled, so she is busy for a while.
    page = Browser(cluster, "bob", instance)
    try:
        phone_started_on(cluster.url, page.session, page.client, "bob")
        response = cluster.post_signed("/voice", {"CallSid": call_sid, "From": CALLER, "To": ALICE_NUMBER}, instance)
    finally:
        page.close()
    assert response.status_code == 200, response.text
    assert "<Client" in response.text


def leg_status(root: str, leg: str, status: str, sequence: int, to: str = "client:bob") -> dict[str, str]:
    return {"CallSid": leg, "ParentCallSid": root, "CallStatus": status, "SequenceNumber": str(sequence),
            "From": CALLER, "To": to, "Direction": "outbound-dial"}


def sid(letter: str, n: int = 0) -> str:
    return "CA" + letter * 28 + f"{n:04d}"


# --------------------------------------------------------------------------- without a cluster

FORWARDED = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7", "X-Forwarded-Proto": "https",
             "X-Forwarded-Host": "phone.example.test", "X-Forwarded-Prefix": PREFIX}


@pytest.mark.parametrize(("hops", "login_path"), [(1, f"{PREFIX}/login"), (0, "/login")])
def test_forwarded_headers_count_only_with_proxy_hops(tmp_path, hops, login_path):
    from conftest import make_team_files

    from shetphone import create_app
    from shetphone.settings import load_settings

    files = make_team_files(tmp_path, extra=f"proxy_hops = {hops}")
    app = create_app(load_settings(files.root, files.environ), async_mode="threading", overrides={"TESTING": True})
    try:
        client = app.test_client()
        response = client.get("/", headers=FORWARDED)
        assert response.status_code == 302
        assert response.headers["Location"].startswith(login_path + "?next=")
        page = client.get("/login", headers=FORWARDED).get_data(as_text=True)
        assert f'action="{login_path}' in page
    finally:
        app.extensions["shetphone"].store.close()


# --------------------------------------------------------------------------- shape


def test_the_app_socket_is_not_world_writable(cluster):
    for app in cluster.apps:
        mode = stat.S_IMODE(app.socket.stat().st_mode)
        assert mode == 0o660, oct(mode)


def test_plain_http_is_redirected_to_https(cluster):
    port = cluster.nginx.site.http_port
    response = cluster.session().get(f"http://127.0.0.1:{port}/login", allow_redirects=False, timeout=30)
    assert response.status_code == 301
    assert response.headers["Location"] == "https://127.0.0.1/login"


def test_hsts_and_long_cached_assets_served_by_nginx(cluster):
    session = cluster.session()
    page = session.get(cluster.url + "/login", timeout=30)
    assert page.headers["Strict-Transport-Security"].startswith("max-age=63072000")
    asset = session.get(cluster.url + "/static/dist/assets/probe-3f9a1c.js", timeout=30)
    assert asset.status_code == 200 and asset.text.startswith("export const probe")
    assert "immutable" in asset.headers["Cache-Control"] and "max-age=31536000" in asset.headers["Cache-Control"]
    assert UPSTREAM_HEADER not in asset.headers  # nginx answered alone: no app process was asked


def test_login_through_nginx_and_the_session_works_on_both_instances(cluster):
    a, b = cluster.apps
    session = login(cluster, "alice", a)
    assert session.get(cluster.url + "/token", timeout=30).json()["identity"] == "alice"
    session.cookies.set("shetphone_route", cluster.route_to(b), domain="127.0.0.1", path="/")
    response = session.get(cluster.url + "/token", timeout=30)
    assert response.headers[UPSTREAM_HEADER] == b.upstream
    assert response.json()["identity"] == "alice"
    page = session.get(cluster.url + "/", timeout=30)
    assert page.status_code == 200 and 'action="/logout"' in page.text


def test_a_browser_without_a_route_cookie_gets_one_and_stays(cluster):
    session = cluster.session()
    first = session.get(cluster.url + "/login", timeout=30)
    assert session.cookies.get("shetphone_route")
    upstreams = {session.get(cluster.url + "/healthz", timeout=30).headers[UPSTREAM_HEADER] for _ in range(10)}
    assert upstreams == {first.headers[UPSTREAM_HEADER]}


def test_socketio_upgrades_to_websocket_through_nginx(cluster):
    browser = Browser(cluster, "bob", cluster.apps[1])
    try:
        wait_until(lambda: browser.client.transport() == "websocket", "the upgrade to websocket", 30)
        assert browser.client.transport() == "websocket"
    finally:
        browser.close()


def test_a_socket_without_a_session_is_refused_through_nginx(cluster):
    client = socketio.Client(http_session=cluster.session(), reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(cluster.url, wait_timeout=30)


def test_a_socket_from_another_origin_is_refused_through_nginx(cluster):
    session = login(cluster, "bob", cluster.apps[1])
    client = socketio.Client(http_session=session, reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(cluster.url, wait_timeout=30, headers={"Origin": "https://phone.example.net"})
    assert not client.connected


def test_a_webhook_to_a_reaches_the_browser_on_b(cluster):
    a, b = cluster.apps
    bob = Browser(cluster, "bob", b)
    try:
        root, leg = sid("1"), sid("2")
        open_inbound(cluster, root, a)
        response = cluster.post_signed("/voice/status", leg_status(root, leg, "ringing", 0), a)
        assert response.status_code == 204
        assert response.headers[UPSTREAM_HEADER] == a.upstream
        assert bob.wait_for(lambda br: br.statuses_of(leg) == ["ringing"])
        payload = next(p for name, p in bob.events if p["call_sid"] == leg)
        assert payload["number"] == ALICE_NUMBER and payload["parent_call_sid"] == root
    finally:
        bob.close()


def test_a_forged_webhook_is_refused_through_nginx(cluster):
    params = leg_status(sid("3"), sid("4"), "ringing", 0)
    response = cluster.session(cluster.apps[0]).post(cluster.url + "/voice/status", data=params, timeout=30,
                                                     headers={"X-Twilio-Signature": "Zm9yZ2Vk"})
    assert response.status_code == 403


def test_a_call_logged_by_a_is_listed_by_b(cluster):
    a, b = cluster.apps
    call = sid("5")
    response = cluster.post_signed("/voice", {"CallSid": call, "From": "client:alice", "To": "+441595123456"}, a)
    assert response.status_code == 200 and "<Dial" in response.text
    assert response.headers[UPSTREAM_HEADER] == a.upstream
    # TwiML callbacks name the public URL, not the socket nginx reached
    assert f'statusCallback="{cluster.url}/voice/status#{escape(RETRIES)}"' in response.text  # & is &amp; in XML
    alice = login(cluster, "alice", b)
    listing = alice.get(cluster.url + "/calls", timeout=30)
    assert listing.headers[UPSTREAM_HEADER] == b.upstream
    calls = {c["call_sid"]: c for c in listing.json()["calls"]}
    assert calls[call]["direction"] == "outbound" and calls[call]["to"] == "+441595123456"


def test_a_logout_on_a_ends_that_login_on_b_and_closes_its_socket_there(cluster):
    a, b = cluster.apps
    alice = login(cluster, "alice", a)
    copied = alice.cookies["shetphone_session"]  # taken before the logout

    def replay(path: str) -> requests.Response:
        thief = cluster.session(b)
        return thief.get(cluster.url + path, cookies={"shetphone_session": copied}, allow_redirects=False,
                         timeout=30)

    token = replay("/token")
    assert token.status_code == 200 and token.headers[UPSTREAM_HEADER] == b.upstream
    thief = cluster.session(b)
    thief.cookies.set("shetphone_session", copied, domain="127.0.0.1", path="/")
    closed = threading.Event()
    socket = socketio.Client(http_session=thief, reconnection=False)
    socket.on("disconnect", lambda *args: closed.set())
    socket.connect(cluster.url, wait_timeout=30, headers={"Origin": cluster.url})
    try:
        page = alice.get(cluster.url + "/", timeout=30)
        assert page.headers[UPSTREAM_HEADER] == a.upstream
        response = alice.post(cluster.url + "/logout", data={"csrf_token": csrf_token_from(page.text)},
                              headers={"Referer": cluster.url + "/"}, allow_redirects=False, timeout=30)
        assert response.status_code == 302 and response.headers[UPSTREAM_HEADER] == a.upstream
        assert closed.wait(EVENT_WAIT)  # B closed it, told by A through Redis
        for path in ("/token", "/calls", "/presets"):
            assert replay(path).status_code == 401, path
        assert replay("/").headers["Location"] == "/login?next=/"
    finally:
        threading.Thread(target=socket.disconnect, daemon=True).start()


def test_the_lockout_counts_failures_made_on_both_instances_by_the_real_address(cluster):
    a, b = cluster.apps
    statuses = []
    for index in range(6):
        instance = (a, b)[index % 2]
        session = cluster.session(instance)
        token = csrf_token_from(session.get(cluster.url + "/login", timeout=30).text)
        # A new name and a made-up X-Forwarded-For each time: only the address nginx saw
        # (forwarded headers are trusted for one hop) ties the attempts together.
        response = session.post(cluster.url + "/login", allow_redirects=False, timeout=30,
                                headers={"Referer": cluster.url + "/login", "X-Forwarded-For": f"203.0.113.{index}"},
                                data={"username": f"mallory{index}", "password": "wrong", "csrf_token": token})
        assert response.headers[UPSTREAM_HEADER] == instance.upstream
        statuses.append(response.status_code)
    try:
        # Alone, neither instance has seen more than three failures.
        assert statuses == [401] * 5 + [429]
    finally:
        # 127.0.0.1 is locked out now: free it for the other tests.
        redis = cluster.redis.client()
        for key in redis.scan_iter("*shetphone*"):
            redis.delete(key)
        redis.close()


def test_nginx_caps_login_posts_per_address_and_never_counts_the_login_page(cluster):
    """A flood of login posts from one address is stopped by nginx (429) after its burst.

    The flood comes from 127.0.0.2 (all of 127/8 is loopback), so the other tests'
    address keeps its allowance; nginx keys the limit by the connection's address.
    """
    from requests.adapters import HTTPAdapter

    class FromAddress(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            kwargs["source_address"] = ("127.0.0.2", 0)
            super().init_poolmanager(*args, **kwargs)

    session = cluster.session()
    session.mount("https://", FromAddress())
    pages = [session.get(cluster.url + "/login", timeout=30).status_code for _ in range(25)]
    assert pages == [200] * 25  # the form itself is never limited
    token = csrf_token_from(session.get(cluster.url + "/login", timeout=30).text)
    answers = []  # (status, who answered: the app's upstream address, or "" for nginx itself)
    for _ in range(30):
        response = session.post(cluster.url + "/login", allow_redirects=False, timeout=30,
                                headers={"Referer": cluster.url + "/login"},
                                data={"username": "flooder", "password": "wrong", "csrf_token": token})
        answers.append((response.status_code, response.headers.get(UPSTREAM_HEADER, "")))
    by_app = [status for status, upstream in answers if upstream]
    by_nginx = [status for status, upstream in answers if not upstream]
    # The app's lockout speaks first (5 failures, then 429); nginx stops the flood after its burst.
    assert by_app[:6] == [401] * 5 + [429], answers
    assert by_nginx and set(by_nginx) == {429}, answers
    assert 21 <= len(by_app) < 30, answers  # one, plus a burst of 20 (and what refilled), reach the app
    redis = cluster.redis.client()
    for key in redis.scan_iter("*shetphone*"):
        redis.delete(key)
    redis.close()


def test_media_streams_upgrade_reaches_the_bridge_through_nginx(cluster):
    import xml.etree.ElementTree as ET

    from bridge_helpers import TwilioStream, sign, tone
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    host = f"127.0.0.1:{cluster.https_port}"
    context = ssl.create_default_context(cafile=str(cluster.cert))
    # The stream's parameters as the app gives them to Twilio: the bridge must accept the app's auth.
    answer = cluster.post_signed("/voice", {"CallSid": sid("7"), "From": CALLER, "To": "+441595000003"})
    stream_element = ET.fromstring(answer.text).find("Connect/Stream")
    parameters = {p.get("name"): p.get("value") for p in stream_element.findall("Parameter")}

    async def call() -> tuple[list[dict], int]:
        headers = {"X-Twilio-Signature": sign(host=host, token=cluster.team.auth_token)}
        async with connect(f"wss://{host}/media/stream", ssl=context, additional_headers=headers,
                           proxy=None) as websocket:
            stream = TwilioStream(websocket, "MZ" + "7" * 32, sid("7"))
            await stream.connected()
            await stream.start(account_sid=cluster.team.environ["TWILIO_ACCOUNT_SID"], **parameters)
            echoed = await stream.play_echo_paced(tone(440, 0.4))
            await stream.stop()
        try:
            forged = {"X-Twilio-Signature": sign(host=host, token="not-the-auth-token")}
            async with connect(f"wss://{host}/media/stream", ssl=context, additional_headers=forged, proxy=None):
                refused = 101
        except InvalidStatus as refusal:
            refused = refusal.response.status_code
        return echoed, refused

    echoed, refused = asyncio.run(call())
    assert {message["event"] for message in echoed} == {"media"}
    assert {message["streamSid"] for message in echoed} == {"MZ" + "7" * 32}
    assert refused == 403


# --------------------------------------------------------------------------- under a path prefix


def test_under_a_path_prefix_pages_assets_socketio_and_webhooks_follow_it(cluster):
    base = cluster.prefix_url  # https://127.0.0.1:PORT/shetphone, instance C
    session = cluster.session()
    first = session.get(base + "/", allow_redirects=False, timeout=30)
    assert first.status_code == 302 and first.headers["Location"].startswith(f"{PREFIX}/login")
    login_page = session.get(base + "/login", timeout=30)
    assert login_page.status_code == 200
    alice = login(cluster, "alice", base_url=base)
    page = alice.get(base + "/", timeout=30)
    assert page.status_code == 200 and f'action="{PREFIX}/logout"' in page.text
    asset = alice.get(base + "/static/dist/assets/probe-3f9a1c.js", timeout=30)
    assert asset.status_code == 200 and "immutable" in asset.headers["Cache-Control"]

    team = cluster.prefix_team
    browser = Browser(cluster, "bob", base_url=base, socketio_path=f"{PREFIX}/socket.io")
    try:
        wait_until(lambda: browser.client.transport() == "websocket", "the upgrade to websocket", 30)
        phone_started_on(base, browser.session, browser.client, "bob")  # so the call rings bob's page
        response = cluster.post_signed("/voice", {"CallSid": sid("8"), "From": CALLER, "To": ALICE_NUMBER},
                                       team=team)
        assert response.status_code == 200
        assert f'action="{base}/voice/dial-complete"' in response.text
        status = cluster.post_signed("/voice/status", leg_status(sid("8"), sid("9"), "ringing", 0), team=team)
        assert status.status_code == 204
        assert browser.wait_for(lambda br: br.statuses_of(sid("9")) == ["ringing"])
    finally:
        browser.close()


# --------------------------------------------------------------------------- faults


def test_redis_restart_events_flow_again_once_it_is_back(cluster):
    a, b = cluster.apps
    bob = Browser(cluster, "bob", b)
    root = sid("a")
    try:
        open_inbound(cluster, root, a)
        cluster.redis.stop()
        # Redis is down: the call log is still written; only the event is lost.
        down = cluster.post_signed("/voice/status", leg_status(root, sid("b"), "ringing", 0), a)
        assert down.status_code == 204
        # and logins go on, the lockout counted by each process alone meanwhile
        assert login(cluster, "alice", b).get(cluster.url + "/token", timeout=30).status_code == 200
        cluster.redis.start()
        # The instances resubscribe on their own; an event published before that is lost,
        # so keep sending new legs (as calls would) until one arrives.
        sent: list[str] = []

        def one_arrived() -> bool:
            leg = sid("c", len(sent))
            sent.append(leg)
            assert cluster.post_signed("/voice/status", leg_status(root, leg, "ringing", 0), a).status_code == 204
            return bob.wait_for(lambda br: any(br.statuses_of(s) for s in sent), timeout=1)

        wait_until(one_arrived, "an event across Redis after its restart", 90)
        assert bob.client.connected
    finally:
        bob.close()
        if not cluster.redis.process.running:
            cluster.redis.start()


def test_postgresql_down_a_status_callback_is_503_and_nothing_is_half_written(cluster):
    a, b = cluster.apps
    bob = Browser(cluster, "bob", b)
    root, leg = sid("d"), sid("e")
    database = sa.create_engine(cluster.postgres.url(cluster.database_name).replace(
        "postgresql://", "postgresql+psycopg://"), poolclass=sa.NullPool)
    try:
        open_inbound(cluster, root, a)
        cluster.postgres.stop()
        failed = cluster.post_signed("/voice/status", leg_status(root, leg, "ringing", 0), a)
        assert failed.status_code == 503  # Twilio retries a 5xx
        cluster.postgres.start()
        with database.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM legs WHERE call_sid = :s"), {"s": leg}) == 0
            assert conn.scalar(sa.text("SELECT status FROM calls WHERE call_sid = :s"), {"s": root}) == "initiated"
        assert bob.statuses_of(leg) == []
        # Twilio's retry, now that the database is back, is applied once and announced.
        retried = cluster.post_signed("/voice/status", leg_status(root, leg, "ringing", 0), a)
        assert retried.status_code == 204
        with database.connect() as conn:
            assert conn.scalar(sa.text("SELECT status FROM legs WHERE call_sid = :s"), {"s": leg}) == "ringing"
            assert conn.scalar(sa.text("SELECT status FROM calls WHERE call_sid = :s"), {"s": root}) == "ringing"
        assert bob.wait_for(lambda br: br.statuses_of(leg) == ["ringing"])
    finally:
        bob.close()
        database.dispose()
        if not (Path(cluster.postgres.data) / "postmaster.pid").exists():
            cluster.postgres.start()


def test_postgresql_paused_a_status_callback_is_503_in_time_and_calls_still_ring(cluster):
    """A server stopped with SIGSTOP answers nothing, not even its own timeouts: the app's bound does."""
    a, b = cluster.apps
    root, leg = sid("7"), sid("8")
    open_inbound(cluster, root, a)
    paused = cluster.postgres.pause()
    try:
        # Twilio gives up on a webhook after 15 s: the answer must come well before.
        headers = {"X-Twilio-Signature": cluster.team.sign("/voice/status", leg_status(root, leg, "ringing", 0))}
        failed = cluster.session(a).post(cluster.team.public_url + "/voice/status", headers=headers,
                                         data=leg_status(root, leg, "ringing", 0), timeout=14)
        assert failed.status_code == 503
        # /voice does not wait on the log for long either: the caller still rings the team.
        incoming = {"CallSid": sid("9"), "From": CALLER, "To": ALICE_NUMBER}
        rang = cluster.session(b).post(cluster.team.public_url + "/voice", data=incoming, timeout=14,
                                       headers={"X-Twilio-Signature": cluster.team.sign("/voice", incoming)})
        assert rang.status_code == 200 and "<Client" in rang.text
        assert cluster.session(a).get(cluster.url + "/healthz", timeout=14).json() == {"status": "ok"}
    finally:
        cluster.postgres.resume(paused)
    retried = cluster.post_signed("/voice/status", leg_status(root, leg, "ringing", 0), a)
    assert retried.status_code == 204
    assert "could not record a status callback; Twilio will retry" in cluster.logs_text()


def test_instance_a_stops_its_browser_reconnects_to_b_and_gets_its_calls_in_progress(cluster):
    a, b = cluster.apps
    root, leg = sid("f"), sid("0", 1)
    open_inbound(cluster, root, b)
    bob = Browser(cluster, "bob", a, reconnect=True)
    try:
        assert bob.wait_for(lambda br: br.connects == 1)
        response = cluster.post_signed("/voice/status", leg_status(root, leg, "ringing", 0), b)
        assert response.status_code == 204
        assert bob.wait_for(lambda br: br.statuses_of(leg) == ["ringing"])
        answered = cluster.post_signed("/voice/status", leg_status(root, leg, "in-progress", 1), b)
        assert answered.status_code == 204
        assert bob.wait_for(lambda br: br.statuses_of(leg) == ["ringing", "in-progress"])

        a.stop()
        assert bob.wait_for(lambda br: br.connects >= 2, timeout=60)
        # B sent the call still in progress on connect: a dropped connection loses nothing.
        assert bob.wait_for(lambda br: len(br.statuses_of(leg)) >= 3)
        assert set(bob.statuses_of(leg)[2:]) == {"in-progress"}
        # and the browser now lives on B: new events reach it
        completed = cluster.post_signed("/voice/status", leg_status(root, leg, "completed", 2), b)
        assert completed.status_code == 204
        assert bob.wait_for(lambda br: br.statuses_of(leg)[-1:] == ["completed"])
        # a webhook nginx would have sent to A is served by B
        rerouted = cluster.post_signed("/voice/status", leg_status(root, sid("0", 2), "ringing", 0), a)
        assert rerouted.status_code == 204 and rerouted.headers[UPSTREAM_HEADER].endswith(b.upstream)
    finally:
        bob.close()
