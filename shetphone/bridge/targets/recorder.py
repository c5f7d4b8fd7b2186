"""``--record DIR``: each call also written to ``DIR/CALLSID.wav``, 48 kHz 16-bit stereo.

The file is written as ``CALLSID.wav.part`` and renamed when the call ends, so a
``.wav`` in the directory always has a correct header: nobody picks up a
recording that is still growing or was cut short without being finalised.
"""

from __future__ import annotations

import contextlib
import logging
import os
import wave
from pathlib import Path

from ..audio import DISCORD_RATE

log = logging.getLogger(__name__)

CHANNELS = 2
SAMPLE_WIDTH = 2  # bytes: 16-bit


class WavRecorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._partial = path.with_name(path.name + ".part")
        self._wav: wave.Wave_write | None = wave.open(str(self._partial), "wb")  # noqa: SIM115 - closed in close()
        self._wav.setnchannels(CHANNELS)
        self._wav.setsampwidth(SAMPLE_WIDTH)
        self._wav.setframerate(DISCORD_RATE)
        self.frames = 0

    @classmethod
    def for_call(cls, directory: Path, call_sid: str, stream_sid: str) -> WavRecorder:
        """``DIR/CALLSID.wav``; a second stream of the same call gets the stream SID added."""
        path = directory / f"{call_sid}.wav"
        if path.exists() or path.with_name(path.name + ".part").exists():
            path = directory / f"{call_sid}-{stream_sid}.wav"
        return cls(path)

    def write(self, frame: bytes) -> None:
        if self._wav is None:
            return
        # writeframesraw: the header is patched once, in close(), not at every frame.
        try:
            self._wav.writeframesraw(frame)
        except OSError as exc:
            # A full disk: the call goes on unrecorded. The file stays .part, as it is not complete.
            log.error("recording %s stopped: %s", self.path, exc)
            wav, self._wav = self._wav, None
            with contextlib.suppress(OSError):
                wav.close()
            return
        self.frames += len(frame) // (CHANNELS * SAMPLE_WIDTH)

    def close(self) -> None:
        """Finalise the header and move the file into place; safe to call twice."""
        if self._wav is None:
            return
        wav, self._wav = self._wav, None
        try:
            wav.close()
            os.replace(self._partial, self.path)
        except OSError as exc:
            log.error("recording %s could not be finalised: %s", self.path, exc)
            return
        log.info("recording %s finalised (%.1f s)", self.path, self.frames / DISCORD_RATE)
