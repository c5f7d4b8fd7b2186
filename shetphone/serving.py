"""The built-in server (``python app.py``) on gevent or eventlet.

Both listen on a socket with TCP_NODELAY: without it a small response written in
two pieces waits for the client's delayed ACK, adding about 40 ms to every
request (measured in bench/webhooks.py: 44 ms -> 3 ms for fixed TwiML).
"""

from __future__ import annotations

import gc
import socket

from flask import Flask


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


def serve(app: Flask, host: str, port: int, async_mode: str) -> None:
    """Serve ``app`` (with its Socket.IO) until stopped. The caller has monkey-patched already."""
    listener = listening_socket(host, port)
    if async_mode == "gevent":
        from gevent.pywsgi import WSGIServer

        WSGIServer(listener, app, log=None).serve_forever()
    elif async_mode == "eventlet":
        import eventlet.wsgi

        eventlet.wsgi.server(listener, app, log_output=False)
    else:
        raise ValueError(f"the built-in server runs on gevent or eventlet, not {async_mode}")
