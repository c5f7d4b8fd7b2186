"""Where a call's audio goes. A session feeds its target one 20 ms frame per tick.

All methods run on the bridge's event loop. ``play`` and ``returned`` are called
once per tick, in that order, and must not block: anything slow (joining a
Discord channel, posting a message) belongs in a task the target starts itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class Target(ABC):
    """One call's audio sink and, where the target can speak, its source."""

    async def open(self) -> None:  # noqa: B027 - most targets have nothing to set up
        """The call has started: set up whatever the target needs."""

    @abstractmethod
    def play(self, frame: bytes) -> None:
        """One 20 ms frame of the caller: 3,840 bytes, 48 kHz 16-bit stereo."""

    def next_read_at(self) -> float | None:
        """When (``time.monotonic()``) the sink next takes a frame, if it runs its own clock.

        The session then ticks just before that moment, so a frame does not wait
        up to 20 ms between two clocks that are out of phase.
        """
        return None

    def returned(self) -> bytes | None:
        """One 20 ms frame (48 kHz stereo) for the caller, or None when the target is silent."""
        return None

    async def close(self) -> None:  # noqa: B027 - most targets have nothing to release
        """The call has ended (stop, a closed websocket or shutdown); called once."""
