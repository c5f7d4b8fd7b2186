"""Blocking work (a bcrypt check, about 0.2 s of CPU) run off the event loop.

Under gevent or eventlet every request shares one OS thread: a password check done
there would hold up every webhook and socket until it ends. So it runs in the
event loop's own thread pool, whose fixed size bounds the threads a flood of logins
can take (more wait their turn, and only the logins wait). In threading mode each
request has its own thread already, and the call is made directly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
Runner = Callable[..., Any]  # runner(function, *args) -> function(*args)

GEVENT_MODES = ("gevent", "gevent_uwsgi")


def runner_for(async_mode: str) -> Runner:
    """How to run a blocking call in this async mode (or under monkey-patching of either loop)."""
    if async_mode in GEVENT_MODES or _patched_by("gevent"):
        return on_gevent_threadpool
    if async_mode == "eventlet" or _patched_by("eventlet"):
        return on_eventlet_threadpool
    return directly


def directly(function: Callable[..., T], *args: Any) -> T:
    return function(*args)


def on_gevent_threadpool(function: Callable[..., T], *args: Any) -> T:
    import gevent

    # The hub's pool (gevent's threadpool_size, 10 by default): apply() waits for a free thread.
    return gevent.get_hub().threadpool.apply(function, args)


def on_eventlet_threadpool(function: Callable[..., T], *args: Any) -> T:
    from eventlet import tpool

    # A fixed pool too (EVENTLET_THREADPOOL_SIZE, 20 by default), with a queue in front.
    return tpool.execute(function, *args)


def _patched_by(loop: str) -> bool:
    # Only asked of a loop already imported: importing one to ask would be a side effect.
    if loop not in sys.modules:
        return False
    if loop == "gevent":
        from gevent import monkey

        return monkey.is_module_patched("threading")
    from eventlet import patcher

    return patcher.is_monkey_patched("thread")
