"""Socket.IO: who hears what.

A socket joins rooms the server derives from the directory (never from the
browser): ``user:NAME``, ``session:ID`` and ``number:E164`` for each number the
user belongs to. Only this module emits.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from flask import Flask, current_app, request, session
from flask_login import current_user
from flask_socketio import SocketIO, join_room

from .directory import number_room
from .presets import Preset
from .store import StoreError
from .users import Users

log = logging.getLogger(__name__)
NAMESPACE = "/"
WATCH_INTERVAL = 1.0  # seconds between checks of .htpasswd and presets.csv
PRUNE_INTERVAL = 3600.0  # seconds between prunings of the call log (keep_days)
STALE_CHECK_INTERVAL = 15.0  # seconds between looks for ringing legs whose final callback was lost
# A leg rings for its <Dial>'s timeout at most: ring_timeout for a ring group, Twilio's
# default of 30 s for an outgoing call; one still ringing a minute after that lost its end.
OUTBOUND_DIAL_TIMEOUT = 30
STALE_RING_MARGIN = 60



def init_app(app: Flask, *, async_mode: str, message_queue: str | None) -> SocketIO:
    """One SocketIO per app (kept in ``app.extensions["socketio"]``), so tests can build several apps."""
    socketio = SocketIO(
        app,
        async_mode=async_mode,
        message_queue=message_queue,
        # Same origin only (the default); say so, so nobody "fixes" it with "*".
        cors_allowed_origins=None,
        ping_interval=20,
        ping_timeout=20,
    )
    socketio.on_event("connect", _on_connect)
    app.before_request(ensure_watcher)
    return socketio


def in_app_context(app: Flask, callback):
    """Wrap a file-change callback so it runs with ``app`` current, whoever noticed the change."""

    def wrapped(*args):
        with app.app_context():
            callback(*args)

    return wrapped


def _socketio() -> SocketIO:
    return current_app.extensions["socketio"]


def _team():
    from . import current_team

    return current_team()


def _on_connect(auth: Any = None) -> bool:
    ensure_watcher()
    if not current_user.is_authenticated:
        return False  # refused: the browser sees connect_error
    team = _team()
    name = current_user.get_id()
    for room in team.directory.rooms_for(name):
        join_room(room)
    if session.get("login_id"):
        join_room(f"session:{session['login_id']}")
    # Catch-up: a browser that (re)connects learns of the calls still in progress.
    numbers = team.directory.numbers_of(name)
    try:
        in_progress = team.store.calls.calls_in_progress(numbers, client=name)
    except StoreError as exc:  # the connection still works: events from now on reach it
        log.warning("no catch-up for %s's connection: %s", name, exc)
        in_progress = []
    for payload in in_progress:
        _socketio().emit("call_status", payload, to=request.sid)
    return True


# ----------------------------------------------------------------------------- emits


def emit_call_status(payload: dict[str, Any]) -> None:
    _socketio().emit("call_status", payload, to=number_room(payload["number"]))


def emit_voicemail(payload: dict[str, Any]) -> None:
    _socketio().emit("voicemail", payload, to=number_room(payload["number"]))


def emit_call_participants(payload: dict[str, Any], rooms: list[str]) -> None:
    """Who is on a controlled call (SPEC §6), to its number's room and its parties' own rooms."""
    _socketio().emit("call_participants", payload, to=rooms)


def emit_call_notice(payload: dict[str, Any], rooms: list[str]) -> None:
    """A sentence for the people on a call ("bob did not answer; the caller is back with you.")."""
    _socketio().emit("call_notice", payload, to=rooms)


def end_sessions(room: str) -> None:
    """Tell every socket in ``room`` its session ended, then close the ones this process holds."""
    _socketio().emit("session_ended", {}, to=room)
    server = _socketio().server
    local = [sid for sid, _ in server.manager.get_participants(NAMESPACE, room)]
    for sid in local:
        server.disconnect(sid, namespace=NAMESPACE)


def presets_changed(old: tuple[Preset, ...], new: tuple[Preset, ...]) -> None:
    _socketio().emit("presets_changed", {})


def users_changed(old: Users, new: Users) -> None:
    removed: Iterable[str] = [name for name in old.names() if name not in new]
    for name in removed:
        log.info("user %s was removed; closing their connections", name)
        end_sessions(f"user:{name}")


# --------------------------------------------------------------------- housekeeping


def _housekeeping(app: Flask) -> None:
    """Notice edits of the watched files every second, close lost ringing legs, prune the call log hourly."""
    with app.app_context():
        team = _team()
        pruned_at = -PRUNE_INTERVAL
        stale_checked_at = -STALE_CHECK_INTERVAL
        while True:
            try:
                if time.monotonic() - pruned_at >= PRUNE_INTERVAL:
                    pruned_at = time.monotonic()
                    _prune(team)
                if time.monotonic() - stale_checked_at >= STALE_CHECK_INTERVAL:
                    stale_checked_at = time.monotonic()
                    close_stale_legs(team)
                team.users.refresh()
                team.presets.refresh()
            except Exception:  # a loop that dies silently would be worse than a log line
                log.exception("housekeeping failed; trying again shortly")
            _socketio().sleep(WATCH_INTERVAL)


def close_stale_legs(team) -> int:
    """Close the legs whose final callback was lost, and tell their rooms; how many were closed."""
    longest_ring = max(team.settings.ring_timeout, OUTBOUND_DIAL_TIMEOUT) + STALE_RING_MARGIN
    try:
        closed = team.store.calls.close_stale_legs(timedelta(seconds=longest_ring))
    except StoreError as exc:
        log.warning("could not close stale legs: %s", exc)
        return 0
    for payload in closed:
        log.info("leg %s had no callback for %d s while ringing: closed as no-answer", payload["call_sid"],
                 longest_ring)
        emit_call_status(payload)
    return len(closed)


def _prune(team) -> None:
    try:
        removed = team.store.calls.prune()
    except StoreError as exc:  # the next round tries again; the watched files are still checked
        log.warning("could not prune the call log: %s", exc)
        return
    if removed:
        log.info("pruned %d calls older than %d days", removed, team.settings.keep_days)


def ensure_watcher() -> None:
    """Start the housekeeping loop once per process and app (after uWSGI's fork, not before)."""
    app = current_app._get_current_object()
    if app.extensions.get("shetphone_watcher_pid") == os.getpid():
        return
    app.extensions["shetphone_watcher_pid"] = os.getpid()
    _socketio().start_background_task(_housekeeping, app)
