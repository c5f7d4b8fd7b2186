"""The login lockout: more than five failures for one user name or one address in
fifteen minutes, and that name or address must wait.

Built on ``limits`` (the engine under Flask-Limiter) rather than Flask-Limiter
itself: Flask-Limiter checks its limits before every request of the app, which
cost 0.7 ms on each webhook and page (bench/webhooks.py); only a failed login
needs counting. The storage is shared through Redis when several processes serve.
"""

from __future__ import annotations

import logging
import math
import time

from limits import parse, storage, strategies

log = logging.getLogger(__name__)

FAILURES_ALLOWED = "5 per 15 minutes"


class Lockout:
    def __init__(self, storage_uri: str = "memory://", limit: str = FAILURES_ALLOWED):
        self._limit = parse(limit)
        self._shared = strategies.MovingWindowRateLimiter(
            storage.storage_from_string(storage_uri, key_prefix="shetphone-lockout")
        )
        # While Redis is down each process counts by itself, rather than refusing every login.
        self._local = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        self._uri = storage_uri

    @staticmethod
    def _keys(user: str, address: str) -> list[tuple[str, str]]:
        # User names are compared without case here, so Alice and alice share one count.
        return [("user", user.strip().lower()), ("address", address)]

    def _with_fallback(self, action):
        try:
            return action(self._shared)
        except Exception as exc:  # a storage outage must not lock everyone out, nor let anyone guess freely
            log.warning("lockout storage %s unreachable (%s); counting in this process", self._uri, exc)
            return action(self._local)

    def retry_after(self, user: str, address: str) -> int | None:
        """Seconds until ``user`` from ``address`` may try again, or None when they may try now."""

        def check(limiter: strategies.MovingWindowRateLimiter) -> int | None:
            waits = [
                limiter.get_window_stats(self._limit, *key).reset_time - time.time()
                for key in self._keys(user, address)
                if not limiter.test(self._limit, *key)
            ]
            return max(1, math.ceil(max(waits))) if waits else None

        return self._with_fallback(check)

    def record_failure(self, user: str, address: str) -> None:
        def hit(limiter: strategies.MovingWindowRateLimiter) -> None:
            for key in self._keys(user, address):
                limiter.hit(self._limit, *key)

        self._with_fallback(hit)
