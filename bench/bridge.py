"""Media bridge latency, both ways: a media message to Discord's read, a Discord speaker to Twilio, an echo.

    python bench/bridge.py [--bursts 300] [--background-calls 19]

A client plays Twilio from a process of its own: a 20 ms media message every
20 ms, silence except for a 20 ms tone burst every third message, timestamped
as it is sent. The bridge runs in this process (its own thread and event loop,
on 127.0.0.1). Three paths are measured, each burst's onset timestamped with
the same clock (CLOCK_MONOTONIC) where it lands:

- **caller to Discord's read**: a call to a Discord target whose voice
  connection is a stand-in, a thread that reads the real AudioSource every
  20 ms as discord.py's player does; the onset is timed at the read;
- **Discord speaker to Twilio**: a stand-in voice server sends that call's
  channel a member's voice, 20 ms Opus packets (discord.py's encoder),
  DAVE-encrypted by a davey session in one MLS group with the bot's and
  transport-encrypted as Discord does, each handed to the channel's receiver
  as discord.py's socket reader would; the onset is timed when the media
  message reaches the client;
- **echo round trip**: an ``echo`` call, from the media message sent to its
  echo received.

Scenarios: the Discord call alone, an echo call alone, and both among 20
calls (18 more echo calls). Results go to bench/results/bridge.json, with the
bridge process's CPU; the method and figures are in docs/performance.md,
"Media bridge latency".
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # discord_helpers: Discord's side of the wire

import discord  # noqa: E402
from discord_helpers import BOT, SPEAKER, DaveGroup, discord_packet  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from shetphone.bridge.audio import FRAME_BYTES, ulaw_decode, ulaw_encode  # noqa: E402
from shetphone.bridge.protocol import Start, TargetSpec  # noqa: E402
from shetphone.bridge.server import Bridge, BridgeConfig, make_targets  # noqa: E402
from shetphone.bridge.session import JITTER_PREFILL_FRAMES  # noqa: E402
from shetphone.bridge.targets import Target  # noqa: E402
from shetphone.bridge.targets.discord import DiscordHub, DiscordTarget  # noqa: E402
from shetphone.bridge.targets.discord.receive import TRANSPORT_MODE  # noqa: E402
from shetphone.bridge.targets.discord.voices import VOICE_PREFILL_FRAMES  # noqa: E402
from shetphone.stream_auth import mint  # noqa: E402

TARGETS_MS = {"caller_to_discord_read": 30.0, "discord_to_twilio": 45.0, "echo_round_trip": 45.0}
TOKEN = "bench-auth-token"
ACCOUNT = "AC" + "b" * 32
SECRET = "bench-secret-key"
HOST = "phone.example.org"
PATH = "/media/stream"
CHANNEL = 123456789012345678
GUILD = 223456789012345678
DISCORD_CALL = "MZ" + "d" * 32
ECHO_CALL = "MZ" + "e" * 32
SPEAKER_SSRC = 4242
KEY = bytes(range(7, 39))
PERIOD = 3  # a burst every third 20 ms frame: two quiet frames keep onsets apart
ONSET_LEVEL = 2000  # peak sample value that counts as the burst (the tones peak at 12000)
FREQUENCIES = [500 + 250 * k for k in range(8)]  # burst i is at FREQUENCIES[i % 8]: onsets pair by tone


class Onsets:
    """Finds burst onsets in a stream of frames (48 kHz stereo or 8 kHz mono): (time, which tone)."""

    def __init__(self, rate: int) -> None:
        self.found: list[tuple[float, int]] = []
        self._quiet = True
        self._rate = rate

    def feed(self, samples: np.ndarray, now: float) -> None:
        samples = samples.astype(np.float64)
        loud = float(np.abs(samples).max()) > ONSET_LEVEL
        if loud and self._quiet:
            bins = np.fft.rfftfreq(len(samples), 1 / self._rate)
            peak = float(bins[int(np.argmax(np.abs(np.fft.rfft(samples))))])
            self.found.append((now, int(np.argmin([abs(peak - f) for f in FREQUENCIES]))))
        self._quiet = not loud

    def feed_frame(self, frame: bytes, now: float) -> None:
        self.feed(np.frombuffer(frame, dtype="<i2")[::2], now)


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


def burst_frames(bursts: int, rate: int) -> list[np.ndarray]:
    """The bursts and the quiet between them, 20 ms each, int16 mono at ``rate``."""
    n = rate // 50
    t = np.arange(n) / rate
    tones = [(12000 * np.sin(2 * np.pi * f * t)).astype(np.int16) for f in FREQUENCIES]
    quiet = np.zeros(n, dtype=np.int16)
    return [tones[i // PERIOD % len(tones)] if i % PERIOD == 0 else quiet for i in range(bursts * PERIOD)]


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
            self.onsets.feed_frame(frame, now)
            loops += 1
            time.sleep(max(0.0, start + 0.02 * loops - time.perf_counter()))


class SpeakerThread(threading.Thread):
    """A channel member talking, as Discord's voice server relays it: one packet every 20 ms."""

    def __init__(self, receiver: Any, datagrams: list[tuple[bool, bytes]]) -> None:
        super().__init__(daemon=True, name="voice server")
        self.receiver = receiver
        self.datagrams = datagrams
        self.spoken: list[float] = []  # when each burst's packet was handed over
        self.running = True

    def run(self) -> None:
        start = time.perf_counter()
        for index, (burst, datagram) in enumerate(self.datagrams):
            if not self.running:
                return
            time.sleep(max(0.0, start + 0.02 * index - time.perf_counter()))
            if burst:
                self.spoken.append(time.perf_counter())
            self.receiver.on_datagram(datagram)  # as discord.py's socket reader thread does


def speaker_datagrams(bursts: int, speaker: Any) -> list[tuple[bool, bytes]]:
    """The member's bursts, Opus-encoded, DAVE- and transport-encrypted up front (not on the clock)."""
    encoder = discord.opus.Encoder()
    datagrams = []
    for index, mono in enumerate(burst_frames(bursts, 48000)):
        opus = encoder.encode(np.repeat(mono, 2).tobytes(), 960)
        sealed = speaker.encrypt_opus(opus)
        datagrams.append(
            (
                index % PERIOD == 0,
                discord_packet(SPEAKER_SSRC, index, sealed, KEY, index + 1, extension=b"\x10\x80\x00\x00"),
            )
        )
    return datagrams


class StandInVoice:
    """The voice client the hub gets: play() starts the player thread and the member's voice."""

    def __init__(self, onsets: Onsets, hub: DiscordHub, datagrams: list[tuple[bool, bytes]], bot_session: Any):
        self.onsets = onsets
        self.hub = hub
        self.datagrams = datagrams
        self.bot_session = bot_session
        self.player: PlayerThread | None = None
        self.speaker: SpeakerThread | None = None
        self.receiver: Any = None

    def is_connected(self) -> bool:
        return True

    def is_playing(self) -> bool:
        return self.player is not None

    def play(self, source: Any, *, after: Any = None) -> None:
        self.player = PlayerThread(source, self.onsets)
        self.player.start()
        receiver = self.receiver = self.hub.channels[CHANNEL].receiver
        connection = SimpleNamespace(
            secret_key=list(KEY), mode=TRANSPORT_MODE, ssrc=1, dave_session=self.bot_session, dave_protocol_version=1
        )
        receiver.bind(connection)
        receiver.on_voice_ws({"op": 5, "d": {"user_id": str(SPEAKER), "ssrc": SPEAKER_SSRC, "speaking": 1}})
        self.speaker = SpeakerThread(receiver, self.datagrams)
        self.speaker.start()

    def stop(self) -> None:
        for thread in (self.player, self.speaker):
            if thread is not None:
                thread.running = False

    async def disconnect(self, *, force: bool = False) -> None:
        self.stop()


class StandInClient:
    def __init__(self, voice: StandInVoice) -> None:
        self.voice = voice
        self.user = SimpleNamespace(id=BOT)

    def is_ready(self) -> bool:
        return True

    def get_channel(self, channel_id: int) -> Any:
        client = self

        class Channel:
            guild = SimpleNamespace(id=GUILD, voice_client=None)

            async def connect(self, **kwargs: Any) -> StandInVoice:
                return client.voice

        return Channel()


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


async def call(port: int, sid: str, target: str, messages: list[bytes], record: dict[str, Any] | None) -> None:
    """One call; with ``record``, the bursts' send times and the onsets of what comes back are kept."""
    url = f"wss://{HOST}{PATH}"
    headers = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, {})}
    heard = Onsets(8000)
    async with connect(f"ws://127.0.0.1:{port}{PATH}", additional_headers=headers) as ws:

        async def listen() -> None:
            async for raw in ws:
                message = json.loads(raw)
                if record is not None and message.get("event") == "media":
                    now = time.perf_counter()
                    heard.feed(ulaw_decode(base64.b64decode(message["media"]["payload"])), now)

        reader = asyncio.create_task(listen())
        await ws.send(start(sid, target))
        loop = asyncio.get_running_loop()
        began = loop.time()
        sent: list[float] = []
        for index, payload in enumerate(messages):
            delay = began + index * 0.02 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if index % PERIOD == 0:
                sent.append(time.perf_counter())
            await ws.send(media(sid, payload))
        await asyncio.sleep(0.3)  # let the last bursts reach the sinks
        await ws.close()
        await reader
    if record is not None:
        record.update(sent=sent, heard=heard.found)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ms = np.array(values) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "min_ms": round(float(ms.min()), 2),
    }


def measured(pairs: tuple[list[float], int]) -> dict[str, Any]:
    values, lost = pairs
    return {**percentiles(values), "lost": lost}


def run_scenario(name: str, bursts: int, discord_call: bool, echo_call: bool, background: int) -> dict[str, Any]:
    at_discord = Onsets(48000)
    speaker, bot_session = DaveGroup(CHANNEL).pair(SPEAKER, BOT)
    datagrams = speaker_datagrams(bursts, speaker) if discord_call else []
    voice = StandInVoice(at_discord, None, datagrams, bot_session)  # type: ignore[arg-type]
    hub = DiscordHub([StandInClient(voice)], None)
    voice.hub = hub
    echo_only = make_targets(None)

    def make_target(spec: TargetSpec, start: Start, caller: str) -> Target:
        if spec.kind == "discord":
            return DiscordTarget(hub, CHANNEL, start.stream_sid, caller)
        return echo_only(spec, start, caller)

    config = BridgeConfig(TOKEN, HOST, ACCOUNT, SECRET, allowed_targets={"echo", f"discord:{CHANNEL}"})
    bridge = Bridge(config, make_target)
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
    cpu_before, wall_before = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "calls.json"
        plan = {"bursts": bursts, "discord": discord_call, "echo": echo_call, "background": background}
        subprocess.run(
            [sys.executable, __file__, "--play", str(bridge.port), json.dumps(plan), str(out)],
            check=True,
            timeout=bursts * PERIOD * 0.02 + 60,
        )
        calls = json.loads(out.read_text())
    cpu_after, wall_after = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    state["loop"].call_soon_threadsafe(state["stop"].set)
    thread.join(15)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    result: dict[str, Any] = {"name": name, "calls": int(discord_call) + int(echo_call) + background}
    if discord_call:
        record = calls[DISCORD_CALL]
        result["caller_to_discord_read"] = measured(latencies(record["sent"], at_discord.found))
        spoken = voice.speaker.spoken if voice.speaker else []
        result["discord_to_twilio"] = measured(latencies(spoken, [tuple(o) for o in record["heard"]]))
        result["receiver"] = voice.receiver.stats.as_dict() if voice.receiver else None
    if echo_call:
        record = calls[ECHO_CALL]
        result["echo_round_trip"] = measured(latencies(record["sent"], [tuple(o) for o in record["heard"]]))
    result["bridge_process_cpu_percent_of_one_core"] = round(100 * cpu / (wall_after - wall_before), 1)
    return result


def play(port: int, plan: dict[str, Any], out: Path) -> None:
    """The callers' side (run in a subprocess): the measured calls and the background ones."""
    messages = [ulaw_encode(frame) for frame in burst_frames(plan["bursts"], 8000)]
    records: dict[str, dict[str, Any]] = {}

    async def calls() -> None:
        jobs = [call(port, f"MZ{n:032x}", "echo", messages, None) for n in range(1, plan["background"] + 1)]
        if plan["discord"]:
            records[DISCORD_CALL] = {}
            jobs.append(call(port, DISCORD_CALL, f"discord:{CHANNEL}", messages, records[DISCORD_CALL]))
        if plan["echo"]:
            records[ECHO_CALL] = {}
            jobs.append(call(port, ECHO_CALL, "echo", messages, records[ECHO_CALL]))
        await asyncio.gather(*jobs)

    asyncio.run(calls())
    out.write_text(json.dumps(records))


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--play":
        play(int(sys.argv[2]), json.loads(sys.argv[3]), Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, default=300, help="bursts per scenario (one per 60 ms)")
    parser.add_argument("--background-calls", type=int, default=18, help="echo calls beside the two measured")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # a late clock is reported in the figures, not as log lines
    load_before = os.getloadavg()[0]
    total = args.background_calls + 2
    scenarios = [
        run_scenario("Discord call alone", args.bursts, True, False, 0),
        run_scenario("echo call alone", args.bursts, False, True, 0),
        run_scenario(f"both among {total} calls", args.bursts, True, True, args.background_calls),
    ]
    within = all(
        scenario[path]["p99_ms"] <= target
        for scenario in scenarios
        for path, target in TARGETS_MS.items()
        if path in scenario and scenario[path].get("p99_ms") is not None
    )
    result = {
        "benchmark": "media bridge latency: caller to Discord's read, Discord speaker to Twilio, echo round trip",
        "targets_p99_ms": TARGETS_MS,
        "jitter_prefill_frames": JITTER_PREFILL_FRAMES,
        "voice_prefill_frames": VOICE_PREFILL_FRAMES,
        "scenarios": scenarios,
        "within_targets": within,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            # other work on the machine shows up as latency: say how busy it was
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "nice": os.nice(0),
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = ROOT / "bench" / "results" / "bridge.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
