"""Presence across processes (SPEC §7): two real servers (``python app.py``, gevent) sharing a real
redis-server and the database, browsers as real python-socketio clients.

A browser's phone started on one process is seen by the other, which rings it and tells the
teammates on it; the first process killed with SIGKILL, its browser counts as gone once the
(test-short) ``presence_ttl`` has passed, and the other process no longer rings it.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import xml.etree.ElementTree as ET

import pytest
import socketio
from conftest import live_login, make_team_files, start_server
from deployment_helpers import wait_until

TEAM = "+441595000001"  # alice and bob


class Browser:
    """A logged-in page's Socket.IO connection on one server: it can start its phone and records events."""

    def __init__(self, server, name: str):
        self.session = live_login(server, name)
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
