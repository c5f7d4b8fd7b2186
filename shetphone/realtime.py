"""Socket.IO: who hears what.

A socket joins rooms the server derives from the directory (never from the
browser): ``user:NAME``, ``login:KEY`` (the hash of its login, never the id in the
cookie) and ``number:E164`` for each number the user belongs to. Only this module
emits.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Flask, current_app, request, session
from flask_login import current_user
from flask_socketio import SocketIO, join_room

from . import control
from . import message_queue as queues
from .directory import number_room
from .presence import Change
from .presets import Preset
from .store import StoreError, login_key
from .users import Users

log = logging.getLogger(__name__)
NAMESPACE = "/"
WATCH_INTERVAL = 1.0  # seconds between checks of .htpasswd and presets.csv
PRUNE_INTERVAL = 3600.0  # seconds between prunings of the call log (keep_days) and of unused logins
OPEN_PAGES_INTERVAL = 300.0  # seconds between marks of the logins open here as used; session_hours is 1 h or more
LOGIN_ROOM = "login:"
STALE_CHECK_INTERVAL = 15.0  # seconds between looks for ringing legs whose final callback was lost
# A leg rings for its <Dial>'s timeout at most: ring_timeout for a ring group, Twilio's
# default of 30 s for an outgoing call; one still ringing a minute after that lost its end.
OUTBOUND_DIAL_TIMEOUT = 30
STALE_RING_MARGIN = 60
PRESENCE_ROUND = 15.0  # seconds between announcements of silent changes, when presence needs no heartbeat



def init_app(app: Flask, *, async_mode: str, message_queue: str | None) -> SocketIO:
    """One SocketIO per app (kept in ``app.extensions["socketio"]``), so tests can build several apps."""
    # With a queue, our own Redis manager: it can close a login's sockets in every process.
    queue = {"client_manager": queues.socketio_manager(message_queue)} if message_queue else {}
    socketio = SocketIO(
        app,
        async_mode=async_mode,
        **queue,
        # Same origin only (the default); say so, so nobody "fixes" it with "*".
        cors_allowed_origins=None,
        ping_interval=20,
        ping_timeout=20,
    )
    socketio.on_event("connect", _on_connect)
    socketio.on_event("disconnect", _on_disconnect)
    socketio.on_event("phone", _on_phone)
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


def login_room(key: str) -> str:
    """The room of one login's sockets, by its key (:func:`~shetphone.store.login_key`)."""
    return f"{LOGIN_ROOM}{key}"


def _on_connect(auth: Any = None) -> bool:
    ensure_watcher()
    try:
        logged_in = current_user.is_authenticated  # the user loader checks the login in the store
    except StoreError as exc:
        log.warning("a connection was refused: its login could not be checked: %s", exc)
        return False
    if not logged_in:
        return False  # refused: the browser sees connect_error
    team = _team()
    name = current_user.get_id()
    for room in team.directory.rooms_for(name):
        join_room(room)
    join_room(login_room(login_key(session["login_id"])))  # a live login has an id
    for event, payload in _catch_up(team, name):
        _socketio().emit(event, payload, to=request.sid)
    return True


def _catch_up(team, name: str) -> list[tuple[str, dict[str, Any]]]:
    """What a browser that (re)connects missed of the calls still in progress (SPEC §4, §6).

    The ``call_status`` of every live leg, and each controlled call's ``call_participants``
    right after its call's last ``call_status`` (at the end for a call whose legs in the
    log are over, such as one transferred to this user), for the calls the live events
    would have reached this user.
    """
    numbers = team.directory.numbers_of(name)
    statuses: list[dict[str, Any]] = []
    controlled: list[control.CallControl] = []
    try:
        statuses = team.store.calls.calls_in_progress(numbers, client=name)
        controlled = team.store.control.in_conference()
    except StoreError as exc:  # the connection still works: events from now on reach it
        log.warning("no catch-up (or only its call_status part) for %s's connection: %s", name, exc)
    participants = {state.root_sid: control.participants_view(state)
                    for state in controlled if control.seen_by(state, name, numbers)}
    last_status_of = {payload["parent_call_sid"] or payload["call_sid"]: index
                      for index, payload in enumerate(statuses)}
    events: list[tuple[str, dict[str, Any]]] = []
    for index, payload in enumerate(statuses):
        events.append(("call_status", payload))
        root = payload["parent_call_sid"] or payload["call_sid"]
        if last_status_of[root] == index and root in participants:
            events.append(("call_participants", participants.pop(root)))
    events.extend(("call_participants", view) for view in participants.values())
    return events


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
    """Tell every socket in ``room`` its session ended, then close them, in every process."""
    _socketio().emit("session_ended", {}, to=room)
    server = _socketio().server
    if isinstance(server.manager, queues.RoomClosingRedisManager):
        server.manager.close_room_everywhere(room, NAMESPACE)
    else:  # one process: its sockets are all here
        queues.disconnect_room(server, room, NAMESPACE)


def end_login(login_id: str) -> None:
    """The login ended (logout): its sockets hear so and are closed, whichever process holds them."""
    end_sessions(login_room(login_key(login_id)))


# ----------------------------------------------------------------------------- presence (SPEC §7)


def _on_phone(data: Any = None, *_extra: Any) -> None:
    """``phone {"ready": true|false}``: this browser's Device registered or unregistered.

    Arguments after the first are ignored: without ``*_extra`` a browser sending one
    got a TypeError's traceback in the log for every event."""
    if not (isinstance(data, dict) and isinstance(data.get("ready"), bool)) or not current_user.is_authenticated:
        return  # not the event's shape: ignored, the connection stays
    team = _team()
    name = current_user.get_id()
    if name not in team.users.current:
        return
    try:
        change = team.presence.phone(name, request.sid, data["ready"])
    except StoreError as exc:  # the browser is counted; the announcement waits for the next round
        log.warning("presence of %s not announced: %s", name, exc)
        return
    emit_presence([change] if change else [])


def _on_disconnect(reason: Any = None) -> None:
    try:
        change = _team().presence.disconnected(request.sid)
    except StoreError as exc:
        log.warning("presence change at a disconnect not announced: %s", exc)
        return
    emit_presence([change] if change else [])


def emit_presence(changes: Iterable[Change]) -> None:
    """One ``presence`` event per change, to everyone who shares a number with its user (and to them)."""
    team = _team()
    for change in changes:
        rooms = team.directory.rooms_for(change.user)  # their own room, and one per number of theirs
        _socketio().emit("presence", change.as_event(), to=rooms)


def publish_presence(users: Iterable[str]) -> None:
    """Announce what changed for ``users`` (after a DND switch, a call starting or ending)."""
    team = _team()
    current = team.users.current
    try:
        changes = team.presence.publish(user for user in users if user in current)
    except StoreError as exc:  # the next round announces it
        log.warning("presence not announced: %s", exc)
        return
    emit_presence(changes)


def publish_presence_soon(users: Iterable[str]) -> None:
    """:func:`publish_presence` off the request path (a webhook answers Twilio first)."""
    app = current_app._get_current_object()
    users = list(users)

    def publish() -> None:
        with app.app_context():
            publish_presence(users)

    _socketio().start_background_task(publish)


def withdraw_browsers(app: Flask) -> None:
    """A clean stop of this process: its browsers stop counting everywhere at once, and whoever shares a
    number with their users hears the change now, on every process (the emit goes through the queue),
    rather than when ``presence_ttl`` runs out and another process's upkeep notices."""
    with app.app_context():
        try:
            changes = _team().presence.close()
        except StoreError as exc:  # withdrawn all the same; the other processes' next round announces it
            log.warning("presence: this process's browsers were withdrawn but not announced: %s", exc)
            return
        emit_presence(changes)


def _presence_upkeep(app: Flask) -> None:
    """Keep this process's browsers alive in shared presence, and announce what changed silently
    (another process's browsers expiring, a call ended that nobody published)."""
    with app.app_context():
        team = _team()
        interval = team.presence.heartbeat_interval or PRESENCE_ROUND
        while True:
            _socketio().sleep(interval)  # first: a process just started has no browser to keep alive
            try:
                team.presence.heartbeat()
                publish_presence(team.users.current.names())
            except Exception:  # a loop that dies silently would be worse than a log line
                log.exception("presence upkeep failed; trying again shortly")


def presets_changed(old: tuple[Preset, ...], new: tuple[Preset, ...]) -> None:
    _socketio().emit("presets_changed", {})


def users_changed(old: Users, new: Users) -> None:
    """A user removed, or given a new password, is logged out everywhere: their logins end, their pages close."""
    removed = [name for name in old.names() if name not in new]
    logins = _team().store.logins
    for name in [*removed, *new.passwords_changed_since(old)]:
        log.info("user %s was %s; ending their logins", name, "removed" if name in removed else "given a new password")
        try:  # were the name added again, their old cookies must not come back to life
            logins.end_user(name)
        except StoreError as exc:  # `users add` and `users remove` end them too, when the database answers them
            log.warning("could not end %s's logins: %s", name, exc)
        end_sessions(f"user:{name}")


# --------------------------------------------------------------------- housekeeping


@dataclass
class Chore:
    """Something housekeeping does every ``interval`` seconds, first at ``due_at`` (monotonic)."""

    name: str
    interval: float
    run: Callable[[], object]
    due_at: float = 0.0


def housekeeping_chores(team, now: float) -> list[Chore]:
    """What a process's housekeeping does, from ``now``: each watched file every second, lost
    ringing legs every 15 s, open pages' logins every five minutes (none is open yet),
    and the call log and unused logins pruned hourly."""
    return [
        Chore("users", WATCH_INTERVAL, team.users.refresh),
        Chore("presets", WATCH_INTERVAL, team.presets.refresh),
        Chore("stale legs", STALE_CHECK_INTERVAL, lambda: close_stale_legs(team)),
        Chore("open pages", OPEN_PAGES_INTERVAL, lambda: keep_open_pages_logged_in(team), now + OPEN_PAGES_INTERVAL),
        Chore("prune", PRUNE_INTERVAL, lambda: _prune(team)),
    ]


def housekeeping_round(chores: list[Chore], now: float) -> list[str]:
    """Do the chores due at ``now``; the names of those done. One that fails does not stop the rest."""
    done = []
    for chore in chores:
        if now < chore.due_at:
            continue
        chore.due_at = now + chore.interval
        try:
            chore.run()
        except Exception:  # a loop that dies silently would be worse than a log line
            log.exception("housekeeping: %s failed; trying again in %.0f s", chore.name, chore.interval)
        done.append(chore.name)
    return done


def _housekeeping(app: Flask) -> None:
    with app.app_context():
        chores = housekeeping_chores(_team(), time.monotonic())
        while True:
            housekeeping_round(chores, time.monotonic())
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


def keep_open_pages_logged_in(team) -> int:
    """Count the logins of the pages connected to this process as used: an open phone is in use
    even when it sends no request for hours (its Twilio token may outlast session_hours)."""
    keys = [room[len(LOGIN_ROOM):] for room in queues.rooms_here(_socketio().server, NAMESPACE)
            if room.startswith(LOGIN_ROOM)]
    try:
        return team.store.logins.keep_alive(keys)
    except StoreError as exc:  # the next round tries again, well before session_hours
        log.warning("could not mark the logins of %d open pages as used: %s", len(keys), exc)
        return 0


def _prune(team) -> None:
    _prune_logins(team)
    try:
        removed = team.store.calls.prune()
    except StoreError as exc:  # the next round tries again; the watched files are still checked
        log.warning("could not prune the call log: %s", exc)
        return
    if removed:
        log.info("pruned %d calls older than %d days", removed, team.settings.keep_days)
    try:
        team.store.outbox.prune(time.time() - team.settings.keep_days * 86400)
    except StoreError as exc:
        log.warning("could not prune the mail outbox: %s", exc)


def _prune_logins(team) -> None:
    try:
        expired = team.store.logins.prune()
    except StoreError as exc:
        log.warning("could not prune the logins: %s", exc)
        return
    for key in expired:  # any page still open on them (its process could not keep it alive) goes to /login
        end_sessions(login_room(key))
    if expired:
        log.info("ended %d logins unused for %d hours", len(expired), team.settings.session_hours)


def ensure_watcher() -> None:
    """Start the housekeeping loop once per process and app (after uWSGI's fork, not before)."""
    app = current_app._get_current_object()
    if app.extensions.get("shetphone_watcher_pid") == os.getpid():
        return
    app.extensions["shetphone_watcher_pid"] = os.getpid()
    _socketio().start_background_task(_housekeeping, app)
    _socketio().start_background_task(_presence_upkeep, app)
    mailer = _team().mail
    if mailer is not None:  # one sender per process; the outbox's claims keep them from sending a row twice
        _socketio().start_background_task(mailer.run_forever)
