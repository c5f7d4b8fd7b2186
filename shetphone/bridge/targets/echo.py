"""The ``echo`` target: the caller hears themselves after the whole audio path.

The frame the session hands over has been decoded and resampled up to 48 kHz;
returning it sends it through the down path (filter, 8 kHz, mu-law) back to the
caller, so a clean echo proves everything but Discord.
"""

from __future__ import annotations

from collections import deque

from . import Target

# play() and returned() alternate once per tick, so one frame is ever waiting;
# the bound only matters if a caller of this class does not alternate.
MAX_WAITING_FRAMES = 5


class EchoTarget(Target):
    def __init__(self) -> None:
        self._waiting: deque[bytes] = deque(maxlen=MAX_WAITING_FRAMES)

    def play(self, frame: bytes) -> None:
        self._waiting.append(frame)

    def returned(self) -> bytes | None:
        return self._waiting.popleft() if self._waiting else None
