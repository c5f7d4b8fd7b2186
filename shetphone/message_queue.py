"""The message queue (Redis) that several processes share: closing a room everywhere.

- :class:`RoomClosingRedisManager`: Flask-SocketIO's Redis manager, plus one thing
  python-socketio does not do across processes: close every socket of a room.
  Its own ``disconnect`` travels by socket id, and each process knows only its own
  ids; a ``close_room`` message marked :data:`DISCONNECT` makes every process close
  its own members of the room first. (A process without this class would only
  empty the room, which is what ``close_room`` means.)

Only the web app imports this module (the media bridge never does).
"""

from __future__ import annotations

from typing import Any

import socketio

SOCKETIO_CHANNEL = "flask-socketio"  # Flask-SocketIO's default: every process must use the same
DISCONNECT = "shetphone_disconnect"  # marks a close_room message that also closes the sockets


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
