"""Presence across processes (SPEC §7): two real servers (``python app.py``, gevent) sharing a real
redis-server and the database, browsers as real python-socketio clients.

A browser's phone started on one process is seen by the other, which rings it and tells the
teammates on it; the first process killed with SIGKILL, its browser counts as gone once the
(test-short) ``presence_ttl`` has passed, and the other process no longer rings it. Stopped
cleanly instead (SIGTERM, Ctrl-C; the built-in server or uWSGI), it takes its browsers with it at
once, long before a (test-long) ``presence_ttl`` could.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import xml.etree.ElementTree as ET

import pytest
import requests
import socketio
from conftest import LiveServer, free_port, live_login, make_team_files, start_server
from deployment_helpers import UWSGI, Process, uwsgi_section, wait_until

TEAM = "+441595000001"  # alice and bob


class Browser:
    """A logged-in page's Socket.IO connection on one server: it can start its phone and records events."""

    def __init__(self, server, name: str, session: requests.Session | None = None):
        self.session = live_login(server, name, session=session)
        self.events: list[tuple[str, dict]] = []
        self.client = socketio.Client(http_session=self.session, reconnection=False)
        self.client.on("presence", lambda payload: self.events.append(("presence", payload)))
        self.client.connect(server.url, transports=["websocket"], wait_timeout=10)

    def phone(self, ready: bool) -> None:
        self.client.emit("phone", {"ready": ready})

    def presence(self) -> list[dict]:
        return [payload for name, payload in list(self.events) if name == "presence"]

    def close(self) -> None:
        if self.client.connected:
            threading.Thread(target=self.client.disconnect, daemon=True).start()


@pytest.fixture
def two_servers(tmp_path, redis_server):
    files = make_team_files(tmp_path, extra=f"message_queue = {redis_server.url}\npresence_ttl = 2")
    first = start_server(files)
    second = start_server(dataclasses.replace(files))  # the same team and database; its own address
    yield first, second
    for server in (first, second):
        server.stop()


def rung_on(server, call_sid: str) -> list[str]:
    response = server.post_signed("/voice", {"CallSid": call_sid, "From": "+441595123456", "To": TEAM})
    assert response.status_code == 200
    root = ET.fromstring(response.text)
    return [noun.text for noun in root.iter("Client")]


def team_on(server, session) -> dict[str, str]:
    return {m["user"]: m["state"] for m in session.get(server.url + "/team", timeout=10).json()["team"]}


def test_a_browser_on_one_process_rings_from_the_other_until_its_process_dies(two_servers):
    first, second = two_servers
    alice = Browser(first, "alice")
    bob = Browser(second, "bob")  # bob's page, on the other process: hears of alice through Redis
    bob_http = live_login(second, "bob")
    try:
        assert rung_on(second, "CA" + "0" * 32) == []  # nobody's phone is started: voicemail
        alice.phone(True)
        wait_until(lambda: {"user": "alice", "state": "available"} in bob.presence(), "bob to hear of alice",
                   timeout=30)
        assert team_on(second, bob_http)["alice"] == "available"
        assert rung_on(second, "CA" + "1" * 32) == ["alice"]

        first.process.send_signal(signal.SIGKILL)  # no goodbye: its browsers stay in Redis until they expire
        first.process.wait(10)
        wait_until(lambda: team_on(second, bob_http)["alice"] == "offline", "alice's browser to expire",
                   timeout=60)
        assert rung_on(second, "CA" + "2" * 32) == []
        wait_until(lambda: {"user": "alice", "state": "offline"} in bob.presence(), "bob to hear she went",
                   timeout=30)
    finally:
        alice.close()
        bob.close()


def test_the_phone_stopped_on_one_process_is_announced_and_counted_on_the_other(two_servers):
    first, second = two_servers
    alice = Browser(first, "alice")
    bob = Browser(second, "bob")
    try:
        alice.phone(True)
        wait_until(lambda: rung_on(second, "CA" + "3" * 32) == ["alice"], "alice to ring from the other process",
                   timeout=30)
        alice.phone(False)  # her Device unregistered: at once, not after the TTL
        wait_until(lambda: {"user": "alice", "state": "offline"} in bob.presence(), "bob to hear she stopped",
                   timeout=30)
        assert rung_on(second, "CA" + "4" * 32) == []
        assert bob.presence().count({"user": "alice", "state": "available"}) == 1  # announced once, not per process
    finally:
        alice.close()
        bob.close()


# ----------------------------------------------------------------------------- a clean stop

LONG_TTL = 60  # the most presence_ttl may be: a browser that goes sooner went because its process said so


def start_uwsgi(files, logs) -> tuple[LiveServer, Process]:
    """``uwsgi --ini shetphone.ini`` with the example's [uwsgi] section as shipped, on a loopback port."""
    port = free_port()
    files.ini_template = files.ini_template.replace("[uwsgi]\nmodule = app:app\n", uwsgi_section())
    files.write_ini(public_url=f"http://127.0.0.1:{port}")
    env = {**os.environ, **files.environ, "SHETPHONE_LISTEN": f"127.0.0.1:{port}", "PYTHONUNBUFFERED": "1"}
    process = Process("uwsgi", [str(UWSGI), "--ini", str(files.ini)], logs / f"uwsgi-{port}.log", env=env).start()
    server = LiveServer(url=f"http://127.0.0.1:{port}", files=files, process=process.popen, log_path=process.log_path)
    wait_until(lambda: requests.get(server.url + "/healthz", timeout=1).status_code == 200, "uWSGI to answer",
               timeout=60, process=process)
    return server, process


class OneConnectionPerRequest(requests.adapters.HTTPAdapter):
    """A new connection for every request. uWSGI's http-socket (behind nginx in production) closes each
    connection after its response without saying so, and a pooled connection taken again before its FIN
    arrives meets a reset; asking for ``Connection: close`` does not keep urllib3 from pooling it."""

    def send(self, request, **kwargs):
        try:
            return super().send(request, **kwargs)
        finally:
            self.close()  # the pool's idle connections; a response being streamed keeps its own


def without_keep_alive() -> requests.Session:
    session = requests.Session()
    session.headers["Connection"] = "close"
    for prefix in ("http://", "https://"):
        session.mount(prefix, OneConnectionPerRequest())
    return session


@pytest.mark.parametrize(("serving", "signum"), [("gevent", signal.SIGTERM), ("eventlet", signal.SIGINT),
                                                  ("uwsgi", signal.SIGTERM)])
def test_a_process_stopped_cleanly_takes_its_browsers_with_it_at_once(tmp_path, redis_server, serving, signum):
    admin = redis_server.client()
    admin.flushdb()  # nothing left by the killed process of an earlier test
    admin.close()
    files = make_team_files(tmp_path, extra=f"message_queue = {redis_server.url}\npresence_ttl = {LONG_TTL}")
    with contextlib.ExitStack() as cleanup:
        second = start_server(files)
        cleanup.callback(second.stop)
        if serving == "uwsgi":
            first, process = start_uwsgi(dataclasses.replace(files), tmp_path)
            cleanup.callback(process.stop)
        else:
            first = start_server(dataclasses.replace(files), serving)
            cleanup.callback(first.stop)
        alice = Browser(first, "alice", session=without_keep_alive())
        bob = Browser(second, "bob")
        cleanup.callback(alice.close)
        cleanup.callback(bob.close)
        bob_http = live_login(second, "bob")
        alice.phone(True)
        wait_until(lambda: {"user": "alice", "state": "available"} in bob.presence(), "bob to hear of alice",
                   timeout=30)
        assert rung_on(second, "CA" + "5" * 32) == ["alice"]

        first.process.send_signal(signum)
        assert first.process.wait(30) == 0
        # At once, not when presence_ttl runs out (or the next upkeep round notices).
        assert team_on(second, bob_http)["alice"] == "offline"
        assert rung_on(second, "CA" + "6" * 32) == []
        wait_until(lambda: {"user": "alice", "state": "offline"} in bob.presence(), "bob to hear she went",
                   timeout=15)
        log = first.log()
        assert "INFO shetphone: stopped cleanly" in log
        assert "Traceback" not in log, log
