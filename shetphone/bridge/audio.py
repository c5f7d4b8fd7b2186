"""The media bridge's audio path: mu-law, 8 <-> 48 kHz resampling, framing, mixing.

Plain Python and numpy: no asyncio, no I/O. Every stateful piece is streaming,
so feeding a signal in 20 ms chunks gives the same samples as feeding it whole.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

with warnings.catch_warnings():
    # audioop is deprecated in 3.11/3.12 (PEP 594); on 3.13 it comes from audioop-lts.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

PHONE_RATE = 8000
DISCORD_RATE = 48000
RATIO = DISCORD_RATE // PHONE_RATE  # 6
FRAME_MS = 20
FRAME_BYTES = DISCORD_RATE * FRAME_MS // 1000 * 2 * 2  # 3,840: 960 samples, 16-bit, stereo
PHONE_FRAME_BYTES = PHONE_RATE * FRAME_MS // 1000  # 160: one mu-law byte per sample
SILENCE_FRAME = bytes(FRAME_BYTES)

# The anti-image (up) and anti-alias (down) low-pass filter, one design for both.
# At 48 kHz: pass 0-3.4 kHz, stop from 4.6 kHz, so that images of the phone band
# (8 kHz +- f) and anything that would fold into 300-3400 Hz are removed.
# A Kaiser-windowed sinc needs no scipy. 157 taps: (157 - 1) / 2 = 78 samples of
# delay each way, so up + down is 156 samples at 48 kHz = exactly 26 at 8 kHz.
FILTER_TAPS = 157
FILTER_CUTOFF_HZ = 4000.0
FILTER_KAISER_BETA = 6.0
FILTER_DELAY_SAMPLES = (FILTER_TAPS - 1) // 2  # at 48 kHz, per direction
FILTER_DELAY_MS = FILTER_DELAY_SAMPLES * 1000 / DISCORD_RATE  # 1.625 ms


def design_lowpass(
    taps: int = FILTER_TAPS, cutoff_hz: float = FILTER_CUTOFF_HZ, beta: float = FILTER_KAISER_BETA
) -> np.ndarray:
    """Linear-phase low-pass FIR at 48 kHz with unity DC gain (windowed sinc)."""
    fc = cutoff_hz / DISCORD_RATE
    t = np.arange(taps) - (taps - 1) / 2
    h = 2 * fc * np.sinc(2 * fc * t) * np.kaiser(taps, beta)
    return h / h.sum()


LOWPASS = design_lowpass()

# Filtering runs in float32: its error (~1e-7 of full scale) is far below int16 rounding,
# and it moves half the memory of float64, which is most of the cost at these sizes.
WORKING_DTYPE = np.float32


def _polyphase_matrix(h: np.ndarray, factor: int) -> np.ndarray:
    """Split h into `factor` phases laid out so that window @ matrix gives `factor` outputs.

    Output sample factor*m + p is sum_i h[p + factor*i] * x[m - i]; with the window
    w[k] = x[m - K + 1 + k] that is sum_k w[k] * h[p + factor*(K - 1 - k)].
    """
    per_phase = -(-len(h) // factor)
    padded = np.zeros(per_phase * factor)
    padded[: len(h)] = h
    phases = padded.reshape(per_phase, factor)  # phases[i, p] = h[p + factor*i]
    return np.ascontiguousarray(phases[::-1])  # row k holds i = K - 1 - k


def _round_and_clip(y: np.ndarray) -> np.ndarray:
    """Round float samples to the int16 grid and range, in place (minimum/maximum: np.clip costs more)."""
    np.rint(y, out=y)
    np.minimum(y, 32767, out=y)
    return np.maximum(y, -32768, out=y)


def _to_int16(y: np.ndarray) -> np.ndarray:
    return _round_and_clip(y).astype(np.int16)


def ulaw_decode(data: bytes) -> np.ndarray:
    """G.711 mu-law bytes -> int16 mono samples."""
    return np.frombuffer(audioop.ulaw2lin(data, 2), dtype=np.int16)


def ulaw_encode(samples: np.ndarray) -> bytes:
    """int16 mono samples -> G.711 mu-law bytes."""
    return audioop.lin2ulaw(np.asarray(samples, dtype=np.int16).tobytes(), 2)


class _Windows:
    """Reusable input buffer with a strided view of its sliding windows, one per input length.

    Building a fresh view every 20 ms costs more than the filtering itself, so the
    buffer and its view are made once for each length seen (in practice one).
    """

    def __init__(self, width: int, step: int) -> None:
        self._width = width
        self._step = step
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(buffer of `length` samples, its windows: row m is buffer[step*m : step*m + width])."""
        if length not in self._cache:
            buffer = np.zeros(length, dtype=WORKING_DTYPE)
            rows = (length - self._width) // self._step + 1
            item = buffer.itemsize
            windows = as_strided(buffer, (rows, self._width), (self._step * item, item), writeable=False)
            if len(self._cache) > 8:  # odd chunk sizes: keep memory bounded
                self._cache.clear()
            self._cache[length] = (buffer, windows)
        return self._cache[length]


class Upsampler:
    """Streaming polyphase FIR interpolator, 8 kHz -> 48 kHz; len(out) == 6 * len(in)."""

    def __init__(self, taps: np.ndarray = LOWPASS, factor: int = RATIO) -> None:
        # Gain `factor` makes up for the zeros that interpolation stuffs in.
        self._phases = _polyphase_matrix(taps * factor, factor).astype(WORKING_DTYPE)
        self._keep = len(self._phases) - 1
        self._history = np.zeros(self._keep, dtype=WORKING_DTYPE)
        self._windows = _Windows(len(self._phases), 1)

    def process(self, samples: np.ndarray) -> np.ndarray:
        return _to_int16(self.filter(samples))

    def filter(self, samples: np.ndarray) -> np.ndarray:
        """As process(), but the unrounded float output, for a caller that converts it itself."""
        count = len(samples)
        if count == 0:
            return np.zeros(0, dtype=WORKING_DTYPE)
        x, windows = self._windows.get(self._keep + count)
        x[: self._keep] = self._history
        x[self._keep :] = samples
        self._history[:] = x[count:]
        # A contiguous copy lets BLAS do the product; the overlapping view cannot.
        return np.dot(np.ascontiguousarray(windows), self._phases).ravel()


class Downsampler:
    """Streaming anti-alias FIR and decimation, 48 kHz -> 8 kHz; keeps any remainder.

    `gain` scales the output, so a caller can feed L + R sums and get their average.
    """

    def __init__(self, taps: np.ndarray = LOWPASS, factor: int = RATIO, gain: float = 1.0) -> None:
        self._reversed = np.ascontiguousarray(taps[::-1] * gain, dtype=WORKING_DTYPE)
        self._factor = factor
        # N - 1 zeros of history: output m's window ends at input sample factor * m.
        self._pending = np.zeros(len(taps) - 1, dtype=WORKING_DTYPE)
        self._windows = _Windows(len(taps), factor)

    def process(self, samples: np.ndarray) -> np.ndarray:
        length = len(self._pending) + len(samples)
        taps = len(self._reversed)
        if length < taps:
            self._pending = np.concatenate((self._pending, np.asarray(samples, dtype=WORKING_DTYPE)))
            return np.zeros(0, dtype=np.int16)
        x, windows = self._windows.get(length)
        x[: len(self._pending)] = self._pending
        x[len(self._pending) :] = samples
        self._pending = x[len(windows) * self._factor :].copy()
        # Rows step by `factor` samples with unit stride inside: a layout BLAS takes as is.
        return _to_int16(np.dot(windows, self._reversed))


def _check_stereo(frame: bytes) -> np.ndarray:
    if len(frame) % 4:
        raise ValueError(f"stereo s16le needs a multiple of 4 bytes, got {len(frame)}")
    return np.frombuffer(frame, dtype="<i2").reshape(-1, 2)


def _stereo_bytes(mono: np.ndarray) -> bytes:
    """Mono (int16, or float already rounded and in range) -> interleaved s16le stereo bytes."""
    stereo = np.empty((len(mono), 2), dtype="<i2")
    stereo[:, 0] = mono
    stereo[:, 1] = stereo[:, 0]
    return stereo.tobytes()


def to_stereo(mono: np.ndarray) -> bytes:
    """int16 mono -> interleaved s16le stereo bytes (same sample on both channels)."""
    return _stereo_bytes(np.asarray(mono, dtype=np.int16))


def to_mono(frame: bytes) -> np.ndarray:
    """s16le stereo bytes -> int16 mono, the average of the two channels."""
    pairs = _check_stereo(frame).astype(np.int32)
    return ((pairs[:, 0] + pairs[:, 1]) >> 1).astype(np.int16)


def mix(frames: Sequence[bytes]) -> bytes:
    """Sum s16le frames of one length, saturating at the int16 limits rather than wrapping."""
    if not frames:
        return SILENCE_FRAME
    length = len(frames[0])
    if any(len(f) != length for f in frames):
        raise ValueError("frames to mix must all be the same length")
    # Idle calls hand in the shared SILENCE_FRAME (JitterBuffer does): nothing to add.
    audible = [f for f in frames if f is not SILENCE_FRAME]
    if len(audible) <= 1:
        return bytes(audible[0]) if audible else SILENCE_FRAME
    total = np.zeros(length // 2, dtype=np.int32)
    for frame in audible:
        total += np.frombuffer(frame, dtype="<i2")
    return np.clip(total, -32768, 32767).astype("<i2").tobytes()


class Framer:
    """Accumulates bytes and hands back whole frames of exactly `frame_bytes`."""

    def __init__(self, frame_bytes: int = FRAME_BYTES) -> None:
        if frame_bytes <= 0:
            raise ValueError("frame_bytes must be positive")
        self.frame_bytes = frame_bytes
        self._pending = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        size = self.frame_bytes
        if not self._pending and len(data) == size:
            return [bytes(data)]  # the usual case: one whole frame in, nothing to copy about
        self._pending += data
        whole = len(self._pending) // size * size
        if not whole:
            return []
        view = bytes(self._pending[:whole])
        del self._pending[:whole]
        return [view[i : i + size] for i in range(0, whole, size)]

    def __len__(self) -> int:
        """Bytes waiting for the rest of their frame."""
        return len(self._pending)


class Uplink:
    """Phone -> Discord: mu-law payloads of any size -> exact 20 ms 48 kHz stereo frames."""

    def __init__(self) -> None:
        self._upsampler = Upsampler()
        self._framer = Framer(FRAME_BYTES)

    def process(self, ulaw: bytes) -> list[bytes]:
        if not ulaw:
            return []
        upsampled = _round_and_clip(self._upsampler.filter(ulaw_decode(ulaw)))
        # The stereo copy does the int16 cast: one pass fewer than process() then to_stereo().
        return self._framer.push(_stereo_bytes(upsampled))


class Downlink:
    """Discord -> phone: 48 kHz stereo frames -> 160-byte (20 ms) mu-law payloads."""

    def __init__(self) -> None:
        # Fed L + R sums: the filter's gain of 1/2 makes the average, with no int16 mono step.
        self._downsampler = Downsampler(gain=0.5)
        self._framer = Framer(PHONE_FRAME_BYTES)

    def process(self, frame: bytes) -> list[bytes]:
        if not frame:
            return []
        interleaved = _check_stereo(frame).ravel().astype(WORKING_DTYPE)
        sums = interleaved[0::2] + interleaved[1::2]
        # mu-law is one byte per sample, so encoding before framing is exact.
        return self._framer.push(ulaw_encode(self._downsampler.process(sums)))
