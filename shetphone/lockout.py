"""The login lockout: more than five failures for one user name or one address in
fifteen minutes, and that name or address must wait.

Built on ``limits`` (the engine under Flask-Limiter) rather than Flask-Limiter
itself: Flask-Limiter checks its limits before every request of the app, which
cost 0.7 ms on each webhook and page (bench/webhooks.py); only a failed login
needs counting. The storage is shared through Redis when several processes serve.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable
from typing import TypeVar

from limits import parse, storage, strategies

log = logging.getLogger(__name__)

FAILURES_ALLOWED = "5 per 15 minutes"
# A dead or unresponsive Redis must not hold a login up: each command gives up after
# half a second (connect, then answer), and after a failure Redis is left alone for a
# while, the lockout counting in this process meanwhile.
REDIS_TIMEOUT = 0.5
SHARED_RETRY_AFTER = 30.0  # seconds before Redis is tried again after a failure
IPV6_PREFIX = 64  # one client (a home, an office, a phone) usually holds a whole /64
T = TypeVar("T")


def address_key(address: str) -> str:
    """What one address counts as: itself for IPv4, its /64 for IPv6 (one client can hold them all)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


def _shared_storage(storage_uri: str) -> storage.Storage:
    if storage_uri.startswith("unix://"):  # redis-py's scheme for a socket; limits calls it redis+unix
        storage_uri = "redis+" + storage_uri
    if not storage_uri.startswith(("redis", "rediss")):
        return storage.storage_from_string(storage_uri, key_prefix="shetphone-lockout")
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.retry import Retry

    return storage.storage_from_string(
        storage_uri,
        key_prefix="shetphone-lockout",
        socket_connect_timeout=REDIS_TIMEOUT,
        socket_timeout=REDIS_TIMEOUT,
        # One immediate retry on a dropped connection (a restarted Redis), none on a timeout.
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )


class Lockout:
    def __init__(self, storage_uri: str = "memory://", limit: str = FAILURES_ALLOWED):
        self._limit = parse(limit)
        self._shared = strategies.MovingWindowRateLimiter(_shared_storage(storage_uri))
        # While Redis is down each process counts by itself, rather than refusing every login.
        self._local = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        self._uri = storage_uri
        self._shared_down_until = 0.0  # monotonic; Redis is not tried before then

    @staticmethod
    def _keys(user: str, address: str) -> list[tuple[str, str]]:
        # User names are compared without case here, so Alice and alice share one count.
        return [("user", user.strip().lower()), ("address", address_key(address))]

    def _on_shared(self, action: Callable[[strategies.MovingWindowRateLimiter], T]) -> T | None:
        """``action`` on the shared storage, or None when it is down (then tried again only later)."""
        if time.monotonic() < self._shared_down_until:
            return None
        try:
            result = action(self._shared)
        except Exception as exc:  # a storage outage must not lock everyone out, nor let anyone guess freely
            self._shared_down_until = time.monotonic() + SHARED_RETRY_AFTER
            log.warning(
                "lockout storage %s unreachable (%s); counting in this process, trying it again in %d s",
                self._uri, exc, SHARED_RETRY_AFTER,
            )
            return None
        return result

    def retry_after(self, user: str, address: str) -> int | None:
        """Seconds until ``user`` from ``address`` may try again, or None when they may try now."""

        def check(limiter: strategies.MovingWindowRateLimiter) -> list[float]:
            return [
                limiter.get_window_stats(self._limit, *key).reset_time - time.time()
                for key in self._keys(user, address)
                if not limiter.test(self._limit, *key)
            ]

        shared = self._on_shared(check)
        # The local counts hold only what was failed while Redis was down: still counted after it is back.
        waits = (shared or []) + check(self._local)
        return max(1, math.ceil(max(waits))) if waits else None

    def record_failure(self, user: str, address: str) -> None:
        def hit(limiter: strategies.MovingWindowRateLimiter) -> bool:
            for key in self._keys(user, address):
                limiter.hit(self._limit, *key)
            return True

        if self._on_shared(hit) is None:
            hit(self._local)
