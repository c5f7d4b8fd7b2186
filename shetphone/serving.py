"""The built-in server (``python app.py``) on gevent or eventlet, stopped cleanly by SIGTERM or Ctrl-C.

Both listen on a socket with TCP_NODELAY: without it a small response written in
two pieces waits for the client's delayed ACK, adding about 40 ms to every
request (measured in bench/webhooks.py: 44 ms -> 3 ms for fixed TwiML).
"""

from __future__ import annotations

import errno
import gc
import signal
import socket
from collections.abc import Callable

from flask import Flask

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)  # systemd's stop, and Ctrl-C: both stop cleanly
EVENTLET_SIGNAL_POLL = 0.2  # seconds between the eventlet main greenthread's looks for a stop signal


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket whose accepted connections send small writes at once (Linux inherits NODELAY)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


def freeze_startup_heap() -> None:
    """Keep what start-up made (modules, the app, settings, phonenumbers' and Twilio's tables: about
    140,000 objects that live as long as the process) out of every later garbage collection.

    Each request leaves a little cyclic garbage (werkzeug's URL matcher makes a closure that refers to
    itself), so full collections keep coming, and each walked the whole start-up heap again, stopping
    every greenlet of the process for about 67 ms (docs/performance.md). A frozen object is still
    freed when nothing refers to it; only cycles among frozen objects stay, and start-up makes none
    worth reclaiming.
    """
    gc.collect()
    gc.freeze()


class CannotListen(Exception):
    """The address is taken, not this host's, or not ours to bind: one line, not a traceback."""


def serve(app: Flask, host: str, port: int, async_mode: str, on_stop: Callable[[], None] = lambda: None,
          on_listening: Callable[[], None] = lambda: None) -> None:
    """Serve ``app`` (with its Socket.IO) until SIGTERM or SIGINT (Ctrl-C), then run ``on_stop`` and return.

    The caller has monkey-patched already. ``on_listening`` runs once the socket listens (so "serving on"
    is never said of a port another program holds); :class:`CannotListen` when it cannot. ``on_stop``
    runs in the main greenlet, where it may wait on the network like any request; the connections
    still open die with the process.
    """
    try:
        listener = listening_socket(host, port)
    except OSError as exc:
        taken = " (another program has it: choose another with --port or PORT)" if exc.errno == errno.EADDRINUSE else ""
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}{taken}") from None
    on_listening()
    if async_mode == "gevent":
        import gevent
        from gevent.event import Event
        from gevent.pywsgi import WSGIServer

        stop = Event()
        for signum in STOP_SIGNALS:  # gevent's own handlers: run in a greenlet, not inside the hub
            gevent.signal_handler(signum, stop.set)
        server = WSGIServer(listener, app, log=None)
        server.start()
        stop.wait()
        server.close()  # no new connections while on_stop runs
    elif async_mode == "eventlet":
        import eventlet
        import eventlet.wsgi

        # A Python handler may run inside eventlet's hub, where nothing may wait or switch: it only
        # notes the signal, and the main greenthread looks for it.
        stopped: list[int] = []
        for signum in STOP_SIGNALS:
            signal.signal(signum, lambda number, frame: stopped.append(number))
        eventlet.spawn(eventlet.wsgi.server, listener, app, log_output=False)
        while not stopped:
            eventlet.sleep(EVENTLET_SIGNAL_POLL)
    else:
        raise ValueError(f"the built-in server runs on gevent or eventlet, not {async_mode}")
    on_stop()
