"""Shetphone's entry point.

``python app.py [--host H] [--port P] [--async-mode gevent|eventlet]`` serves with
the built-in server until SIGTERM or Ctrl-C; ``uwsgi --ini shetphone.ini`` imports ``app`` from here;
``flask --app app ...`` runs the admin commands.
"""

from __future__ import annotations

import argparse
import os
import sys

UWSGI_FAILED_APP = 22  # uWSGI's exit status for a worker whose app did not load


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve Shetphone with the built-in server.")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    # A string default goes through type=int too: a bad PORT is argparse's one line, not a traceback.
    parser.add_argument("--port", type=int, default=os.environ.get("PORT", "5000"))
    parser.add_argument("--async-mode", choices=("gevent", "eventlet"), default="gevent")
    return parser.parse_args()


def _async_mode_when_imported() -> str:
    try:
        import uwsgi  # noqa: F401  (only importable inside uWSGI)

        return "gevent_uwsgi"
    except ImportError:
        pass
    from gevent import monkey

    return "gevent" if monkey.is_module_patched("socket") else "threading"


if __name__ == "__main__":
    ARGS = _arguments()
    ASYNC_MODE = ARGS.async_mode
    # Patch before anything imports socket or threading.
    if ASYNC_MODE == "gevent":
        from gevent import monkey

        monkey.patch_all()
    else:
        import eventlet

        eventlet.monkey_patch()
else:
    ASYNC_MODE = _async_mode_when_imported()

import click  # noqa: E402

from shetphone import ConfigError, create_app, shut_down  # noqa: E402
from shetphone.message_queue import MessageQueueUnavailable  # noqa: E402
from shetphone.store import StoreError  # noqa: E402

try:
    app = create_app(async_mode=ASYNC_MODE)
except (ConfigError, StoreError, MessageQueueUnavailable) as error:  # one clear line, never a traceback
    if click.get_current_context(silent=True) is None:
        print(f"shetphone: {error}", file=sys.stderr)
        # Under uWSGI, 22 is "the app failed to load": with need-app and lazy-apps its master
        # then stops (and systemd says so) instead of respawning the worker for ever.
        sys.exit(UWSGI_FAILED_APP if ASYNC_MODE == "gevent_uwsgi" else 2)
    # Under `flask --app app ...` the admin commands still work and check-config says what is wrong.
    from shetphone.cli import cli_app_for_broken_config

    app = cli_app_for_broken_config(error)

from shetphone.serving import freeze_startup_heap  # noqa: E402

freeze_startup_heap()  # once the app is made: what follows is per request

if ASYNC_MODE == "gevent_uwsgi":
    import uwsgi

    # A worker stopping (die-on-term's SIGTERM, a reload) says goodbye: its browsers leave
    # shared presence at once instead of counting for presence_ttl more seconds.
    uwsgi.atexit = lambda: shut_down(app)

if __name__ == "__main__":
    from shetphone.serving import CannotListen, serve

    try:
        serve(app, ARGS.host, ARGS.port, ASYNC_MODE, on_stop=lambda: shut_down(app),
              on_listening=lambda: print(f"Shetphone on http://{ARGS.host}:{ARGS.port}/ ({ASYNC_MODE})", flush=True))
    except CannotListen as error:
        print(f"shetphone: {error}", file=sys.stderr)
        shut_down(app)
        sys.exit(2)
