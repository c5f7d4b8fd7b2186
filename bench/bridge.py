"""Media bridge latency: from a media message sent to the bridge to its frame at the sink.

    python bench/bridge.py [--bursts 300] [--background-calls 19]

A client plays Twilio from a process of its own: a 20 ms media message every
20 ms, silence except for a 20 ms tone burst every third message, timestamped
as it is sent. The bridge runs in this process (its own thread and event loop,
on 127.0.0.1) with the measured
call going to a Discord target whose voice connection is a stand-in: a thread
that reads the real AudioSource every 20 ms, as discord.py's player does. Each
burst's onset is found in two places, timestamped with the same clock:

- at the target: the frame the session's 20 ms clock hands to the target
  (after decoding, resampling and the jitter buffer);
- at Discord: the frame discord.py's player would encode and send (after the
  channel's mixing buffer too).

Results go to bench/results/bridge.json; the method and figures are in
docs/performance.md, "Media bridge latency".
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twilio.request_validator import RequestValidator  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from shetphone.bridge.audio import FRAME_BYTES, ulaw_encode  # noqa: E402
from shetphone.bridge.protocol import Start, TargetSpec  # noqa: E402
from shetphone.bridge.server import Bridge, BridgeConfig, make_targets  # noqa: E402
from shetphone.bridge.session import JITTER_PREFILL_FRAMES, Session  # noqa: E402
from shetphone.bridge.targets import Target  # noqa: E402
from shetphone.bridge.targets.discord import DiscordHub, DiscordTarget  # noqa: E402
from shetphone.stream_auth import mint  # noqa: E402

TARGET_MS = 40.0
TOKEN = "bench-auth-token"
ACCOUNT = "AC" + "b" * 32
SECRET = "bench-secret-key"
HOST = "phone.example.org"
PATH = "/media/stream"
CHANNEL = 123456789012345678
MEASURED = "MZ" + "f" * 32
PERIOD = 3  # a burst every third 20 ms message: two quiet frames keep onsets apart
ONSET_LEVEL = 2000  # peak sample value that counts as the burst (the tone peaks at 12000)


FREQUENCIES = [500 + 250 * k for k in range(8)]  # burst i is at FREQUENCIES[i % 8]: onsets pair by tone


class Onsets:
    """Finds burst onsets in a stream of 20 ms frames: (time, which of the eight tones)."""

    def __init__(self) -> None:
        self.found: list[tuple[float, int]] = []
        self._quiet = True
        self._bins = np.fft.rfftfreq(960, 1 / 48000)

    def feed(self, frame: bytes, now: float) -> None:
        left = np.frombuffer(frame, dtype="<i2")[::2].astype(np.float64)
        loud = float(np.abs(left).max()) > ONSET_LEVEL
        if loud and self._quiet:
            peak = float(self._bins[int(np.argmax(np.abs(np.fft.rfft(left))))])
            self.found.append((now, int(np.argmin([abs(peak - f) for f in FREQUENCIES]))))
        self._quiet = not loud


def latencies(sent: list[float], onsets: list[tuple[float, int]]) -> tuple[list[float], int]:
    """Pair each burst with the first later onset of its tone; bursts the bridge lost are counted."""
    pending = list(onsets)
    paired: list[float] = []
    lost = 0
    for index, at in enumerate(sent):
        code = index % len(FREQUENCIES)
        match = next((o for o in pending if o[1] == code and at <= o[0] < at + 0.4), None)
        if match is None:
            lost += 1
            continue
        pending = pending[pending.index(match) + 1 :]
        paired.append(match[0] - at)
    return paired, lost


class PlayerThread(threading.Thread):
    """discord.py's AudioPlayer loop, minus Opus and UDP: read() every 20 ms, drift-free."""

    def __init__(self, source: Any, onsets: Onsets) -> None:
        super().__init__(daemon=True, name="player")
        self.source = source
        self.onsets = onsets
        self.running = True

    def run(self) -> None:
        start = time.perf_counter()
        loops = 0
        while self.running:
            frame = self.source.read()
            now = time.perf_counter()
            assert len(frame) == FRAME_BYTES
            self.onsets.feed(frame, now)
            loops += 1
            time.sleep(max(0.0, start + 0.02 * loops - time.perf_counter()))


class StandInVoice:
    """The voice client the hub gets: play() starts the player thread."""

    def __init__(self, onsets: Onsets) -> None:
        self.onsets = onsets
        self.player: PlayerThread | None = None

    def is_connected(self) -> bool:
        return True

    def is_playing(self) -> bool:
        return self.player is not None

    def play(self, source: Any, *, after: Any = None) -> None:
        self.player = PlayerThread(source, self.onsets)
        self.player.start()

    def stop(self) -> None:
        if self.player is not None:
            self.player.running = False

    async def disconnect(self, *, force: bool = False) -> None:
        self.stop()


class StandInClient:
    def __init__(self, onsets: Onsets) -> None:
        self.voice = StandInVoice(onsets)

    async def wait_until_ready(self) -> None:
        return None

    def get_channel(self, channel_id: int) -> Any:
        client = self

        class Channel:
            async def connect(self, **kwargs: Any) -> StandInVoice:
                return client.voice

        return Channel()


def payloads(bursts: int) -> list[bytes]:
    t = np.arange(160) / 8000
    tones = [ulaw_encode((12000 * np.sin(2 * np.pi * f * t)).astype(np.int16)) for f in FREQUENCIES]
    silence = b"\xff" * 160
    return [tones[i // PERIOD % len(tones)] if i % PERIOD == 0 else silence for i in range(bursts * PERIOD)]


def media(sid: str, payload: bytes) -> str:
    encoded = base64.b64encode(payload).decode()
    return json.dumps({"event": "media", "streamSid": sid, "media": {"track": "inbound", "payload": encoded}})


def start(sid: str, target: str) -> str:
    call_sid = "CA" + sid[2:]
    parameters = {"target": target, "auth": mint(SECRET, call_sid, target)}
    return json.dumps(
        {
            "event": "start",
            "streamSid": sid,
            "start": {"streamSid": sid, "callSid": call_sid, "accountSid": ACCOUNT, "customParameters": parameters},
        }
    )


async def call(port: int, sid: str, target: str, messages: list[bytes], sent: list[float] | None) -> None:
    url = f"wss://{HOST}{PATH}"
    headers = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, {})}
    async with connect(f"ws://127.0.0.1:{port}{PATH}", additional_headers=headers) as ws:

        async def drain() -> None:
            async for _ in ws:
                pass

        reader = asyncio.create_task(drain())
        await ws.send(start(sid, target))
        loop = asyncio.get_running_loop()
        began = loop.time()
        for index, payload in enumerate(messages):
            delay = began + index * 0.02 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if sent is not None and index % PERIOD == 0:
                sent.append(time.perf_counter())
            await ws.send(media(sid, payload))
        await asyncio.sleep(0.2)  # let the last bursts reach the sinks
        await ws.close()
        await reader


def percentiles(values: list[float]) -> dict[str, float]:
    ms = np.array(values) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "min_ms": round(float(ms.min()), 2),
    }


def run_scenario(bursts: int, background_calls: int) -> dict[str, Any]:
    at_target = Onsets()
    at_discord = Onsets()
    hub = DiscordHub(StandInClient(at_discord), None)
    measured: dict[str, Session] = {}

    def on_tick(session: Session, frame: bytes) -> None:
        if session.stream_sid == MEASURED:
            measured["session"] = session
            at_target.feed(frame, time.perf_counter())

    echo_only = make_targets(None)

    def make_target(spec: TargetSpec, start: Start, caller: str) -> Target:
        if spec.kind == "discord":
            return DiscordTarget(hub, CHANNEL, start.stream_sid, caller)
        return echo_only(spec, start, caller)

    config = BridgeConfig(TOKEN, HOST, ACCOUNT, SECRET, allowed_targets={"echo", f"discord:{CHANNEL}"})
    bridge = Bridge(config, make_target, on_tick=on_tick)
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def serve() -> None:
        state["loop"] = asyncio.get_running_loop()
        state["stop"] = asyncio.Event()
        await bridge.start("127.0.0.1", 0)
        ready.set()
        await state["stop"].wait()
        await bridge.stop()
        await hub.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True, name="bridge")
    thread.start()
    ready.wait(10)
    # The callers run in a process of their own, as Twilio runs on machines of its
    # own: sharing this one's GIL would add their scheduling to the bridge's.
    # perf_counter is CLOCK_MONOTONIC, one clock for both processes.
    with tempfile.TemporaryDirectory() as directory:
        sent_file = Path(directory) / "sent.json"
        subprocess.run(
            [sys.executable, __file__, "--play", str(bridge.port), str(bursts), str(background_calls), str(sent_file)],
            check=True,
            timeout=bursts * PERIOD * 0.02 + 60,
        )
        sent = json.loads(sent_file.read_text())
    state["loop"].call_soon_threadsafe(state["stop"].set)
    thread.join(15)
    to_target, lost_at_target = latencies(sent, at_target.found)
    to_discord, lost_at_discord = latencies(sent, at_discord.found)
    session = measured["session"]
    return {
        "calls": 1 + background_calls,
        "bursts": len(sent),
        "to_target": {**percentiles(to_target), "lost": lost_at_target},
        "to_discord_read": {**percentiles(to_discord), "lost": lost_at_discord},
        "jitter_dropped_frames": session.jitter.dropped,
        "jitter_underruns": session.jitter.underruns,
    }


def play(port: int, bursts: int, background_calls: int, sent_file: Path) -> None:
    """The callers' side (run in a subprocess): the measured call and the background ones."""
    sent: list[float] = []
    messages = payloads(bursts)

    async def calls() -> None:
        others = [call(port, f"MZ{n:032x}", "echo", messages, None) for n in range(1, background_calls + 1)]
        await asyncio.gather(call(port, MEASURED, f"discord:{CHANNEL}", messages, sent), *others)

    asyncio.run(calls())
    sent_file.write_text(json.dumps(sent))


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--play":
        play(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, default=300, help="bursts per scenario (one per 60 ms)")
    parser.add_argument("--background-calls", type=int, default=19, help="echo calls beside the measured one")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # a late clock is reported in the figures, not as log lines
    load_before = os.getloadavg()[0]
    scenarios = [
        {"name": "one call", **run_scenario(args.bursts, 0)},
        {"name": f"one call among {args.background_calls + 1}", **run_scenario(args.bursts, args.background_calls)},
    ]
    result = {
        "benchmark": "media bridge latency, media message sent -> frame at the sink",
        "target_ms": TARGET_MS,
        "jitter_prefill_frames": JITTER_PREFILL_FRAMES,
        "scenarios": scenarios,
        "within_target": all(s["to_discord_read"]["p99_ms"] <= TARGET_MS for s in scenarios),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            # other work on the machine shows up as latency: say how busy it was
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = ROOT / "bench" / "results" / "bridge.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
