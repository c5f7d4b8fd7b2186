"""Who is available: a user's presence from their browsers, their calls and their do-not-disturb flag.

SPEC §7: a user's state is the first that holds of ``dnd`` (their flag is on),
``busy`` (a call of theirs is in progress), ``available`` (a browser of theirs
has its phone started) and ``offline``. :func:`state_of` is that rule.

Which browsers have their phone started is kept by a backend:

- :class:`MemoryBrowsers`, for one process: a dict.
- :class:`RedisBrowsers`, for several processes sharing ``message_queue``: one
  sorted set per user whose members are ``PROCESS|SOCKET`` and whose scores
  are expiry times on Redis's own clock. Each process refreshes its own
  browsers by :meth:`Presence.heartbeat` (every ``ttl / 3``), so the browsers
  of a process that died stop counting ``ttl`` seconds after its last
  heartbeat (45 s by default: within SPEC's 60), while a process stopped
  cleanly withdraws its own at once (:meth:`Presence.close`). A sorted set
  per user rather than a key per browser, so "has alice a ready browser?" is
  one ZCOUNT, not a SCAN over every browser of the team.

DND and busy come from elsewhere (the store, the call log): :class:`Presence`
takes them as callables ``users -> the subset of users that are dnd (busy)``,
so a set works too, as ``flags.intersection``.

Change detection: :meth:`Presence.publish` compares each user's state with the
last state *announced* and swaps it in, in one atomic step with reading the
browsers (one Lua script when shared), so the caller emits a ``presence``
event for each :class:`Change` it returns; when several processes publish the
same change only one of them gets it, and a process publishing stale news
cannot overwrite fresher news another has just announced.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Collection, Container, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

log = logging.getLogger(__name__)

DEFAULT_TTL = 45.0  # seconds a browser counts without a heartbeat of its process (SPEC: gone within 60)
PUBLISHED_TTL = 86400  # seconds Redis keeps a user's last announced state (a removed user's key goes away)
REDIS_TIMEOUT = 0.5  # seconds, to connect and for each reply
BREAKER_SECONDS = 5.0  # after a Redis failure, requests skip Redis this long instead of waiting on it again


class State(StrEnum):
    DND = "dnd"
    BUSY = "busy"
    AVAILABLE = "available"
    OFFLINE = "offline"


def state_of(*, dnd: bool, busy: bool, phone_ready: bool) -> State:
    """SPEC §7: the first that holds of dnd, busy, available, offline."""
    if dnd:
        return State.DND
    if busy:
        return State.BUSY
    if phone_ready:
        return State.AVAILABLE
    return State.OFFLINE


@dataclass(frozen=True)
class Change:
    """A user's state moved from ``before`` to ``after``: one ``presence`` event."""

    user: str
    before: State
    after: State

    def as_event(self) -> dict[str, str]:
        """The payload of the Socket.IO ``presence`` event."""
        return {"user": self.user, "state": self.after.value}


@dataclass(frozen=True)
class Readiness:
    """The users with a ready browser; ``complete`` is False when other processes' browsers are unknown."""

    users: frozenset[str]
    complete: bool = True


# user -> (their state if a browser of theirs is ready, their state if none is)
Candidates = Mapping[str, tuple[State, State]]


class Browsers(Protocol):
    """Where the phone-ready browsers are kept (one process, or shared)."""

    heartbeat_interval: float | None  # seconds between heartbeats; None when none is needed

    def set_ready(self, user: str, socket_id: str, ready: bool) -> None: ...
    def drop(self, socket_id: str) -> str | None: ...
    def ready_users(self, users: Collection[str]) -> Readiness: ...

    def publish(self, candidates: Candidates) -> dict[str, tuple[State, State]]:
        """Atomically, per user: pick the candidate by their browsers, swap it in as the last announced
        state; (before, after). A user whose state is uncertain (shared presence unreachable) is left out."""
        ...

    def heartbeat(self) -> None: ...

    def withdraw(self) -> frozenset[str]:
        """A clean stop: this process's browsers stop counting, everywhere, now and from now on; their users."""
        ...

    def close(self) -> None:
        """Let go of connections (withdrawing first, if not done yet)."""
        ...


UserFlags = Callable[[frozenset[str]], Collection[str]]


def _nobody(users: frozenset[str]) -> Collection[str]:
    return ()


# ----------------------------------------------------------------------------- one process


class MemoryBrowsers:
    """One process: the browsers it holds are all there are."""

    heartbeat_interval = None

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: dict[str, str] = {}  # socket id -> user
        self._published: dict[str, State] = {}
        self._withdrawn = False

    def set_ready(self, user: str, socket_id: str, ready: bool) -> None:
        with self._lock:
            if self._withdrawn:  # a phone event racing the stop: the stopping process's browsers are gone
                return
            if ready:
                self._ready[socket_id] = user
            else:
                self._ready.pop(socket_id, None)

    def drop(self, socket_id: str) -> str | None:
        with self._lock:
            return self._ready.pop(socket_id, None)

    def user_of(self, socket_id: str) -> str | None:
        with self._lock:
            return self._ready.get(socket_id)

    def browsers(self) -> dict[str, str]:
        """The ready browsers: socket id -> user."""
        with self._lock:
            return dict(self._ready)

    def ready_users(self, users: Collection[str]) -> Readiness:
        wanted = set(users)
        with self._lock:
            return Readiness(frozenset(user for user in self._ready.values() if user in wanted))

    def publish(self, candidates: Candidates) -> dict[str, tuple[State, State]]:
        outcome: dict[str, tuple[State, State]] = {}
        with self._lock:
            ready = set(self._ready.values())
            for user, (if_ready, if_not_ready) in candidates.items():
                after = if_ready if user in ready else if_not_ready
                outcome[user] = (self._published.get(user, State.OFFLINE), after)
                self._published[user] = after
        return outcome

    def heartbeat(self) -> None:
        pass

    def withdraw(self) -> frozenset[str]:
        with self._lock:
            self._withdrawn = True
            users = frozenset(self._ready.values())
            self._ready.clear()
        return users

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------- several processes

# Scores are expiry times in milliseconds on Redis's clock, so processes whose clocks
# disagree still agree on what has expired.
_NOW_MS = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

_REFRESH = _NOW_MS + """
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', key, ttl)
end
return #KEYS
"""

_READY_COUNTS = _NOW_MS + """
local counts = {}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  counts[i] = redis.call('ZCARD', key)
end
return counts
"""

# KEYS: n ready sets, then the n users' published keys. ARGV: ttl, n, then per user: ready here (1/0),
# the state if ready, the state if not. Reading the browsers and swapping the state is one step.
_PUBLISH = _NOW_MS + """
local n = tonumber(ARGV[2])
local out = {}
for i = 1, n do
  local base = 2 + 3 * (i - 1)
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  local ready = redis.call('ZCARD', KEYS[i]) > 0 or ARGV[base + 1] == '1'
  local new = ready and ARGV[base + 2] or ARGV[base + 3]
  local old = redis.call('GET', KEYS[n + i])
  if old ~= new then redis.call('SET', KEYS[n + i], new, 'EX', ARGV[1]) end
  out[2 * i - 1] = old or ''
  out[2 * i] = new
end
return out
"""


def process_id() -> str:
    """Unique to this process (and this object): a restarted process with the same pid is another."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class RedisBrowsers:
    """Several processes: the ready browsers of every process, in Redis, each expiring ``ttl`` after its
    process's last heartbeat.

    Redis failing or not answering never hangs a request: every command has
    ``timeout`` seconds to connect and to answer, with no retries, and after a
    failure requests skip Redis for ``breaker_seconds`` (the heartbeat still
    tries, and closes the breaker when Redis answers). Meanwhile it *falls
    back* to what this process knows: its own browsers
    (:class:`Readiness` with ``complete=False``, so the caller can tell) and
    its own record of announced states. Writes are kept locally first, so the
    next heartbeat after Redis comes back (or restarts empty) restores them.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl: float = DEFAULT_TTL,
        prefix: str = "shetphone:presence",
        timeout: float = REDIS_TIMEOUT,
        breaker_seconds: float = BREAKER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._errors = (redis.RedisError, OSError)
        # redis-py retries three times with back-off by default: that is seconds of a request's time.
        self._redis = redis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self._refresh = self._redis.register_script(_REFRESH)
        self._counts = self._redis.register_script(_READY_COUNTS)
        self._publish = self._redis.register_script(_PUBLISH)
        self.ttl = ttl
        self.heartbeat_interval = ttl / 3
        self.process = process_id()
        self._prefix = prefix
        self._url = url
        self._breaker_seconds = breaker_seconds
        self._clock = clock
        self._skip_until = float("-inf")
        self._failing = False
        self._unsent_removals: set[tuple[str, str]] = set()  # (user, socket id) Redis missed; sent at heartbeat
        self._withdrawn = False  # after a clean stop's withdraw(): nothing of this process goes to Redis again
        # This process's own browsers and announced states: refreshed from, and the fallback when Redis fails.
        self._local = MemoryBrowsers()

    # -- keys
    def _ready_key(self, user: str) -> str:
        return f"{self._prefix}:ready:{user}"

    def _published_key(self, user: str) -> str:
        return f"{self._prefix}:published:{user}"

    def _member(self, socket_id: str) -> str:
        return f"{self.process}|{socket_id}"

    # -- Redis, guarded
    def _shared(self, action: Callable[[], object], *, force: bool = False, failure: str | None = None):
        """Run ``action`` against Redis; None when Redis failed or the breaker is open (unless ``force``).

        A failure is logged once per outage, or, with ``failure`` (what it means), every time."""
        if not force and self._clock() < self._skip_until:
            return None
        try:
            result = action()
        except self._errors as exc:
            self._skip_until = self._clock() + self._breaker_seconds
            if failure is not None or not self._failing:
                log.warning("presence: Redis %s unreachable (%s); %s", self._url, exc,
                            failure or "using this process's browsers only")
            self._failing = True
            return None
        if self._failing:
            log.info("presence: Redis %s answers again", self._url)
        self._failing = False
        self._skip_until = float("-inf")
        return result

    def _refresh_members(self, browsers: Mapping[str, str], *, force: bool = False) -> None:
        if not browsers:
            return
        items = list(browsers.items())
        keys = [self._ready_key(user) for _, user in items]
        members = [self._member(socket_id) for socket_id, _ in items]
        ttl_ms = max(1, round(self.ttl * 1000))
        self._shared(lambda: self._refresh(keys=keys, args=[ttl_ms, *members]), force=force)

    # -- the interface
    def set_ready(self, user: str, socket_id: str, ready: bool) -> None:
        if self._withdrawn:  # a phone event racing the stop: no browser of a stopping process may count again
            return
        self._local.set_ready(user, socket_id, ready)
        if ready:
            self._unsent_removals.discard((user, socket_id))
            self._refresh_members({socket_id: user})
        elif self._shared(lambda: self._redis.zrem(self._ready_key(user), self._member(socket_id))) is None:
            self._unsent_removals.add((user, socket_id))  # else it would count until the TTL ran out

    def drop(self, socket_id: str) -> str | None:
        user = self._local.user_of(socket_id)
        if user is not None:
            self.set_ready(user, socket_id, False)
        return user

    def ready_users(self, users: Collection[str]) -> Readiness:
        users = list(dict.fromkeys(users))
        local = self._local.ready_users(users).users
        if not users:
            return Readiness(frozenset())
        counts = self._shared(lambda: self._counts(keys=[self._ready_key(user) for user in users]))
        if counts is None:
            return Readiness(local, complete=False)
        # Our own browsers count even when Redis lost them (restarted empty) before the next heartbeat.
        return Readiness(frozenset(u for u, n in zip(users, counts, strict=True) if int(n) > 0) | local)

    def publish(self, candidates: Candidates) -> dict[str, tuple[State, State]]:
        users = list(candidates)
        if not users:
            return {}
        local = self._local.ready_users(users).users
        keys = [self._ready_key(user) for user in users] + [self._published_key(user) for user in users]
        args: list[object] = [PUBLISHED_TTL, len(users)]
        for user in users:
            args += ["1" if user in local else "0", candidates[user][0].value, candidates[user][1].value]
        flat = self._shared(lambda: self._publish(keys=keys, args=args))
        if flat is None:
            # Only what this process knows for sure: a browser of the user's here, or a state browsers don't decide.
            certain = {u: c for u, c in candidates.items() if u in local or c[0] is c[1]}
            return self._local.publish(certain)
        outcome = {
            user: (State(old.decode()) if old else State.OFFLINE, State(new.decode()))
            for user, old, new in zip(users, flat[0::2], flat[1::2], strict=True)
        }
        self._local.publish({user: (after, after) for user, (_, after) in outcome.items()})  # the fallback's record
        return outcome

    def heartbeat(self) -> None:
        """Refresh this process's browsers; tried even while the breaker is open (it is off the request path)."""
        if self._withdrawn:
            return
        browsers = self._local.browsers()
        if browsers:
            self._refresh_members(browsers, force=True)
        else:
            self._shared(self._redis.ping, force=True)
        for user, socket_id in list(self._unsent_removals):
            if self._shared(lambda u=user, s=socket_id: self._redis.zrem(self._ready_key(u), self._member(s))) is None:
                break
            self._unsent_removals.discard((user, socket_id))

    def withdraw(self) -> frozenset[str]:
        """A clean stop: this process's browsers leave the shared sets now rather than after the TTL.

        Tried even while the breaker is open, once, with the usual timeout; a Redis that
        fails is one log line (the browsers then count elsewhere until the TTL runs out)."""
        self._withdrawn = True
        browsers = self._local.browsers()
        self._local.withdraw()
        members = {(user, socket_id) for socket_id, user in browsers.items()} | self._unsent_removals
        self._unsent_removals.clear()
        if not members:
            return frozenset()

        def remove() -> list:
            pipe = self._redis.pipeline(transaction=False)
            for user, socket_id in members:
                pipe.zrem(self._ready_key(user), self._member(socket_id))
            return pipe.execute()

        # A failure opens the breaker, so announcing what follows does not wait on Redis again.
        self._shared(remove, force=True, failure=f"this stopping process's browsers ({len(members)}) count "
                     f"elsewhere until presence_ttl ({self.ttl:g} s) runs out")
        return frozenset(browsers.values())

    def close(self) -> None:
        self.withdraw()
        self._redis.close()


def browsers_for(message_queue: str | None, **options) -> Browsers:
    """:class:`RedisBrowsers` when ``message_queue`` is a Redis URL, else :class:`MemoryBrowsers`."""
    if message_queue and message_queue.startswith(("redis://", "rediss://", "unix://")):
        return RedisBrowsers(message_queue, **options)
    return MemoryBrowsers()


# ----------------------------------------------------------------------------- presence


class Presence:
    """Users' states from ``browsers``, ``dnd`` and ``busy``; see the module's docstring.

    ``dnd`` and ``busy`` are called with a frozenset of users and return the
    ones that are dnd (busy); their exceptions (a store outage) propagate.
    """

    def __init__(self, browsers: Browsers, *, dnd: UserFlags = _nobody, busy: UserFlags = _nobody,
                 flags: Callable[[frozenset[str]], tuple[frozenset[str], frozenset[str]]] | None = None):
        """``flags``: both at once, (dnd, busy), where one question is cheaper than two (one database read)."""
        self.browsers = browsers
        self._dnd = dnd
        self._busy = busy
        self._both = flags

    @property
    def heartbeat_interval(self) -> float | None:
        """Seconds between calls of :meth:`heartbeat` (a background task's period); None: none needed."""
        return self.browsers.heartbeat_interval

    def _flags(self, users: frozenset[str]) -> tuple[set[str], set[str]]:
        if self._both is not None:
            dnd, busy = self._both(users)
            return set(dnd), set(busy)
        return set(self._dnd(users)), set(self._busy(users))

    def states(self, users: Iterable[str], *, unknown_as_ready: bool = False) -> dict[str, State]:
        """Each user's state. While shared presence is unreachable, a user with no browser *here* is offline,
        or, with ``unknown_as_ready``, available (an incoming call then rings every client that is not dnd
        or busy, as before presence existed, rather than missing a teammate on another process)."""
        users = frozenset(users)
        if not users:
            return {}
        dnd, busy = self._flags(users)
        readiness = self.browsers.ready_users(users)
        ready = users if unknown_as_ready and not readiness.complete else readiness.users
        return {user: state_of(dnd=user in dnd, busy=user in busy, phone_ready=user in ready) for user in sorted(users)}

    def ringing_states(self, users: Iterable[str], forwarded: Container[str], *,
                       unknown_as_ready: bool = True) -> dict[str, State]:
        """The states an incoming call needs, asking the database only about whoever it could reach.

        Exact for a user whose phone is started (rung unless dnd or busy) or who has a
        forward number (forwarded when offline, never when dnd or busy); anyone else is
        neither rung nor forwarded whatever their flags, and is given as offline. So a
        call to a group whose phones are all off costs no read of DND or calls.
        """
        users = frozenset(users)
        if not users:
            return {}
        readiness = self.browsers.ready_users(users)
        ready = users if unknown_as_ready and not readiness.complete else readiness.users
        reachable = frozenset(user for user in users if user in ready or user in forwarded)
        dnd, busy = self._flags(reachable) if reachable else (set(), set())
        return {user: state_of(dnd=user in dnd, busy=user in busy, phone_ready=user in ready) for user in sorted(users)}

    def state(self, user: str) -> State:
        return self.states([user])[user]

    def phone(self, user: str, socket_id: str, ready: bool) -> Change | None:
        """The browser ``socket_id`` of ``user`` started (or stopped) its phone; the change, if any."""
        self.browsers.set_ready(user, socket_id, ready)
        changes = self.publish([user])
        return changes[0] if changes else None

    def disconnected(self, socket_id: str) -> Change | None:
        """The socket went away; the change of its user's state, if any (None for a socket never ready)."""
        user = self.browsers.drop(socket_id)
        if user is None:
            return None
        changes = self.publish([user])
        return changes[0] if changes else None

    def publish(self, users: Iterable[str]) -> list[Change]:
        """The users whose state differs from the one last announced, now announced.

        Call it after anything that may change states (a phone event, DND
        turned on or off, a call starting or ending) and periodically for the
        whole team (a dead process's browsers expire silently); emit one
        ``presence`` event per change. While shared presence is unreachable, a
        state that may be wrong (offline for want of news) is not announced.
        """
        users = frozenset(users)
        if not users:
            return []
        dnd, busy = self._flags(users)
        candidates = {
            user: (
                state_of(dnd=user in dnd, busy=user in busy, phone_ready=True),
                state_of(dnd=user in dnd, busy=user in busy, phone_ready=False),
            )
            for user in sorted(users)
        }
        outcome = self.browsers.publish(candidates)
        return [Change(user, before, after) for user, (before, after) in outcome.items() if before != after]

    def heartbeat(self) -> None:
        self.browsers.heartbeat()

    def close(self) -> list[Change]:
        """A clean stop of this process: its browsers stop counting everywhere at once (not ``ttl`` later).

        The changes that makes, to announce, are returned; a second call changes nothing.
        Raises what ``dnd`` and ``busy`` raise (the browsers are withdrawn and closed even then)."""
        try:
            return self.publish(self.browsers.withdraw())
        finally:
            self.browsers.close()
