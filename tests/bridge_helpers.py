"""Helpers for the media bridge tests: a client that plays Twilio, signals, a bridge in a thread.

The fake discord.py boundary is in discord_helpers.

Imported by the test_bridge_* modules (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import wave
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect

from shetphone import stream_auth
from shetphone.bridge.audio import ulaw_encode
from shetphone.bridge.server import Bridge, BridgeConfig

T = TypeVar("T")

AUTH_TOKEN = "test-auth-token-0123456789abcdef"
ACCOUNT_SID = "AC" + "0" * 32
SECRET_KEY = "test-secret-key-for-stream-auth"
PUBLIC_HOST = "phone.example.org"
VOICE = 123456789012345678
OTHER_VOICE = 223456789012345678
TEXT = 323456789012345679
ALLOWED_TARGETS = frozenset({"echo", f"discord:{VOICE}"})  # what [shetphone:numbers] would configure
MEDIA_PATH = "/media/stream"
FRAME_SECONDS = 0.02
PHONE_RATE = 8000


def sign(path: str = MEDIA_PATH, token: str = AUTH_TOKEN, host: str = PUBLIC_HOST) -> str:
    """The X-Twilio-Signature Twilio sends on the upgrade: the wss:// URL, no parameters."""
    return RequestValidator(token).compute_signature(f"wss://{host}{path}", {})


def stream_sid(n: int) -> str:
    return f"MZ{n:032x}"


def call_sid(n: int) -> str:
    return f"CA{n:032x}"


def tone(frequency: float, seconds: float, amplitude: float = 8000.0, rate: int = PHONE_RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def chunks(ulaw: bytes, size: int = 160) -> list[bytes]:
    return [ulaw[i : i + size] for i in range(0, len(ulaw), size)]


def read_wav(path: Path) -> tuple[np.ndarray, int, int]:
    """(samples as int16 [frames, channels], rate, channels)."""
    with wave.open(str(path), "rb") as wav:
        channels, rate = wav.getnchannels(), wav.getframerate()
        assert wav.getsampwidth() == 2
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return data.reshape(-1, channels), rate, channels


def band_energy(signal: np.ndarray, rate: int, frequency: float, half_width: float = 4.0) -> float:
    """Energy of `signal` within +-half_width Hz of `frequency` (Blackman-Harris window)."""
    x = signal.astype(np.float64)
    n = len(x)
    k = np.arange(n)
    window = (
        0.35875
        - 0.48829 * np.cos(2 * np.pi * k / (n - 1))
        + 0.14128 * np.cos(4 * np.pi * k / (n - 1))
        - 0.01168 * np.cos(6 * np.pi * k / (n - 1))
    )
    spectrum = np.abs(np.fft.rfft(x * window)) ** 2
    freqs = np.fft.rfftfreq(n, 1 / rate)
    return float(spectrum[np.abs(freqs - frequency) <= half_width].sum())


class TwilioStream:
    """A websocket client that speaks like Twilio's Media Streams."""

    def __init__(self, websocket: ClientConnection, sid: str, call: str) -> None:
        self.ws = websocket
        self.stream_sid = sid
        self.call_sid = call
        self.sequence = 0
        self.chunk = 0

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    def _next(self) -> str:
        self.sequence += 1
        return str(self.sequence)

    async def connected(self) -> None:
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    async def start(
        self,
        target: str = "echo",
        *,
        auth: str | None = None,
        account_sid: str = ACCOUNT_SID,
        secret_key: str = SECRET_KEY,
        **parameters: str,
    ) -> None:
        """Twilio's start; ``auth`` by default is what /voice would have minted for this call and target
        (pass ``auth=""`` for none)."""
        if auth is None:
            auth = stream_auth.mint(secret_key, self.call_sid, target)
        custom = {"target": target, **({"auth": auth} if auth else {}), **parameters}
        await self.send(
            {
                "event": "start",
                "sequenceNumber": self._next(),
                "start": {
                    "accountSid": account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": custom,
                },
                "streamSid": self.stream_sid,
            }
        )

    async def media(self, payload: bytes) -> None:
        self.chunk += 1
        await self.send(
            {
                "event": "media",
                "sequenceNumber": self._next(),
                "media": {
                    "track": "inbound",
                    "chunk": str(self.chunk),
                    "timestamp": str(self.chunk * 20),
                    "payload": base64.b64encode(payload).decode(),
                },
                "streamSid": self.stream_sid,
            }
        )

    async def dtmf(self, digit: str) -> None:
        await self.send(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    async def mark(self, name: str) -> None:
        await self.send(
            {"event": "mark", "sequenceNumber": self._next(), "streamSid": self.stream_sid, "mark": {"name": name}}
        )

    async def stop(self) -> None:
        await self.send(
            {
                "event": "stop",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "stop": {"accountSid": "AC" + "0" * 32, "callSid": self.call_sid},
            }
        )

    async def play(self, samples: np.ndarray, *, paced: bool = True, head_start: int = 0) -> None:
        """Send 8 kHz samples as 20 ms media messages at real-time pace (unless told not to),
        the first `head_start` messages at once, as Twilio's own bursts do."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        for index, payload in enumerate(chunks(ulaw_encode(samples))):
            if paced:
                delay = started + (index - head_start) * FRAME_SECONDS - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self.media(payload)


    async def play_echo_paced(self, samples: np.ndarray, lead: int = 2) -> list[dict[str, Any]]:
        """Send 8 kHz samples to an echo stream, never more than `lead` frames ahead of the bridge.

        Two frames is the jitter buffer's prefill: enough to keep it playing, and no
        deeper queue for the bridge to trim as excess latency (which drops a frame).

        The echo of each frame the bridge's clock takes from its jitter buffer comes
        back at once, so counting the echoes that carry audio tells how far the
        bridge has got. Pacing by that never overruns the jitter buffer however slow
        a busy machine makes either side: nothing is dropped, and underruns (whole
        frames of digital silence) are the only difference between the recording
        and the audio sent. `samples` must not contain digital silence (a silent
        frame's echo cannot be told from an underrun's). Returns the echoes.
        """
        payloads = chunks(ulaw_encode(samples))
        whole_frames = len(samples) // 160  # a partial last frame waits in the bridge's framer
        received: list[dict[str, Any]] = []
        sent = played = 0
        silent_after_the_last = 0
        # Done when every frame has come back, or (should the bridge have dropped
        # one) when everything is sent and the echo has gone quiet.
        while played < whole_frames and silent_after_the_last < lead + 10:
            while sent < len(payloads) and sent - played < lead:
                await self.media(payloads[sent])
                sent += 1
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            received.append(message)
            if carries_audio(message):
                played += 1
            elif sent == len(payloads):
                silent_after_the_last += 1
        return received


def carries_audio(message: dict[str, Any]) -> bool:
    """An echo of caller audio, not of the silence the bridge plays while it waits for some."""
    payload = base64.b64decode(message["media"]["payload"])
    # The down filter rings on for 26 samples after audio stops (157 taps at 48 kHz),
    # so the start of a silent tick's echo is not silent: look past it.
    return bool(payload[40:].strip(b"\xff\x7f"))  # 0xFF and 0x7F are mu-law's two zeros


def frames_of(samples: np.ndarray, size: int = 960) -> list[np.ndarray]:
    return [samples[i : i + size] for i in range(0, len(samples) - size + 1, size)]


def without_silent_frames(samples: np.ndarray, size: int = 960) -> np.ndarray:
    """Drop the frames of digital silence a jitter buffer plays on underrun."""
    kept = [frame for frame in frames_of(samples, size) if np.any(frame)]
    return np.concatenate(kept) if kept else np.zeros(0, dtype=samples.dtype)


async def open_stream(port: int, n: int = 1, *, path: str = MEDIA_PATH) -> TwilioStream:
    websocket = await connect(
        f"ws://127.0.0.1:{port}{path}", additional_headers={"X-Twilio-Signature": sign(path)}, open_timeout=10
    )
    return TwilioStream(websocket, stream_sid(n), call_sid(n))


def bridge_config(record_dir: Path | None = None, **overrides: Any) -> BridgeConfig:
    """The test bridge's configuration: our account, secret key and configured targets (any overridden)."""
    return BridgeConfig(
        **{
            "auth_token": AUTH_TOKEN,
            "public_host": PUBLIC_HOST,
            "account_sid": ACCOUNT_SID,
            "secret_key": SECRET_KEY,
            "allowed_targets": ALLOWED_TARGETS,
            "record_dir": record_dir,
            **overrides,
        },
    )


class ThreadedBridge:
    """A real Bridge serving on 127.0.0.1 (a free port) from its own thread and event loop."""

    def __init__(self, record_dir: Path | None = None, config: BridgeConfig | None = None, **bridge_kwargs: Any):
        self.bridge = Bridge(config or bridge_config(record_dir), **bridge_kwargs)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True, name="bridge")
        self.error: BaseException | None = None

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.bridge.start("127.0.0.1", 0)
        except BaseException as exc:
            self.error = exc
            self._ready.set()
            raise
        self._ready.set()
        await self._stop.wait()
        await self.bridge.stop()

    @property
    def port(self) -> int:
        return self.bridge.port

    def call(self, function: Callable[[], Any]) -> Any:
        """Run `function` on the bridge's loop and return its result (for consistent reads)."""
        assert self.loop is not None
        result: list[Any] = []
        done = threading.Event()

        def run() -> None:
            try:
                result.append(function())
            finally:
                done.set()

        self.loop.call_soon_threadsafe(run)
        assert done.wait(10), "the bridge's loop did not answer"
        return result[0]

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``coroutine`` on the bridge's loop (as a Discord command runs) and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def __enter__(self) -> ThreadedBridge:
        self._thread.start()
        assert self._ready.wait(10), "the bridge did not start"
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.loop is not None and self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive(), "the bridge did not stop"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll until `condition()` holds; a timeout fails the test (it is not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(interval)
