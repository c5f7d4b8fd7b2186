"""Where a call's audio goes. A session feeds its target one 20 ms frame per tick.

All methods run on the bridge's event loop, except the ``take`` a target is
given by ``feed_from``, which a sink with a clock of its own (discord.py's
player thread) calls. ``play`` and ``returned`` are called once per tick, in
that order, and must not block: anything slow (joining a Discord channel,
posting a message) belongs in a task the target starts itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable


class Target(ABC):
    """One call's audio sink and, where the target can speak, its source."""

    def feed_from(self, take: Callable[[], bytes]) -> None:  # noqa: B027 - most targets are fed by play()
        """Before ``open``: ``take()`` hands over the caller's next 20 ms frame at once, from any thread.

        A sink that reads on a clock of its own calls it at its read, so a frame
        never waits between two clocks out of phase; see ``takes_frames``.
        """

    def takes_frames(self) -> bool:
        """True while the sink takes the caller's frames itself (``feed_from``); ``play`` is then not called."""
        return False

    async def open(self) -> None:  # noqa: B027 - most targets have nothing to set up
        """The call has started: set up whatever the target needs."""

    @abstractmethod
    def play(self, frame: bytes) -> None:
        """One 20 ms frame of the caller: 3,840 bytes, 48 kHz 16-bit stereo."""

    def returned(self) -> bytes | None:
        """One 20 ms frame (48 kHz stereo) for the caller, or None when the target is silent."""
        return None

    def hangup(self) -> str | None:
        """Why the target has ended the call, once everything it had to say is returned; else None."""
        return None

    async def close(self) -> None:  # noqa: B027 - most targets have nothing to release
        """The call has ended (stop, a closed websocket or shutdown); called once."""
