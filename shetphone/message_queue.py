"""The message queue (Redis) that several processes share: is it there, and closing a room everywhere.

- :func:`check`: one PING with a short timeout, at start and from ``check-config``,
  so a Redis that is down or misnamed is one clear line instead of a process that
  starts and then logs errors for ever.
- :class:`RoomClosingRedisManager`: Flask-SocketIO's Redis manager, plus one thing
  python-socketio does not do across processes: close every socket of a room.
  Its own ``disconnect`` travels by socket id, and each process knows only its own
  ids; a ``close_room`` message marked :data:`DISCONNECT` makes every process close
  its own members of the room first. (A process without this class would only
  empty the room, which is what ``close_room`` means.)

Only the web app imports this module (the media bridge never does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis
import socketio
from redis.backoff import NoBackoff
from redis.retry import Retry

if TYPE_CHECKING:
    from .settings import Settings

PING_TIMEOUT = 2.0  # seconds: a Redis on the same network answers in milliseconds
SOCKETIO_CHANNEL = "flask-socketio"  # Flask-SocketIO's default: every process must use the same
DISCONNECT = "shetphone_disconnect"  # marks a close_room message that also closes the sockets


class MessageQueueUnavailable(Exception):
    """The message queue did not answer at start. The message is one line, fit for the console."""


def check(url: str, where: str, timeout: float = PING_TIMEOUT) -> None:
    """PING ``url`` once; :class:`MessageQueueUnavailable` naming ``where`` (the ini and key) when it fails."""
    from .cli import without_password

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                  retry=Retry(NoBackoff(), 0))
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MessageQueueUnavailable(
            f"{where}: {without_password(url)} does not answer ({reason}); start Redis, or correct the URL"
        ) from None
    finally:
        client.close()


def check_configured(settings: Settings) -> None:
    """:func:`check` the ``message_queue`` of ``settings``, if one is set."""
    if settings.message_queue:
        check(settings.message_queue, f"{settings.config_path}: [shetphone] message_queue")


def rooms_here(server: Any, namespace: str) -> list[str]:
    """The rooms that hold a socket of this process (a Redis manager's rooms are its own process's)."""
    rooms = server.manager.rooms.get(namespace, {}).copy()  # a copy: sockets come and go meanwhile
    return [room for room in rooms if room is not None]  # None: python-socketio's room of every socket


def disconnect_room(server: Any, room: str, namespace: str) -> int:
    """Close this process's sockets in ``room``; how many."""
    sids = [sid for sid, _ in server.manager.get_participants(namespace, room)]
    for sid in sids:
        server.disconnect(sid, namespace=namespace, ignore_queue=True)
    return len(sids)


class RoomClosingRedisManager(socketio.RedisManager):
    """Flask-SocketIO's Redis manager, able to close a room's sockets in every process."""

    def close_room_everywhere(self, room: str, namespace: str) -> None:
        """Close the room's sockets here at once, and in the other processes through Redis."""
        message = {"method": "close_room", "room": room, "namespace": namespace, "host_id": self.host_id,
                   DISCONNECT: True}
        self._handle_close_room(message)
        self._publish(message)

    def _handle_close_room(self, message: dict) -> None:
        if message.get(DISCONNECT):
            disconnect_room(self.server, message.get("room"), message.get("namespace") or "/")
        super()._handle_close_room(message)


def socketio_manager(url: str) -> RoomClosingRedisManager:
    """Flask-SocketIO's client manager on ``url``, as it would make one itself (same channel), but ours."""
    return RoomClosingRedisManager(url, channel=SOCKETIO_CHANNEL)
