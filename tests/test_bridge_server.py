"""The media bridge end to end: a real websocket client plays Twilio against a real bridge.

Most tests run the bridge in-process (its own thread and event loop, a free
port on 127.0.0.1); the ones about the program itself (signals, exit codes,
many calls at once on their own core) run ``python -m shetphone.bridge``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from bridge_helpers import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    MEDIA_PATH,
    OTHER_VOICE,
    PUBLIC_HOST,
    SECRET_KEY,
    TEXT,
    VOICE,
    ThreadedBridge,
    TwilioStream,
    band_energy,
    bridge_config,
    call_sid,
    frames_of,
    free_port,
    open_stream,
    read_wav,
    sign,
    stream_sid,
    tone,
    wait_for,
    without_silent_frames,
)
from discord_helpers import BOT, FakeClient, FakeTextChannel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from shetphone.bridge.audio import Uplink, ulaw_decode, ulaw_encode
from shetphone.bridge.protocol import Start
from shetphone.bridge.server import make_targets
from shetphone.bridge.session import OUTBOX_MAX_MESSAGES, Outbox, Session
from shetphone.bridge.targets.discord import DiscordHub
from shetphone.bridge.targets.echo import EchoTarget
from shetphone.stream_auth import mint

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(60)

# Twenty tones, one per call, chosen (by simulating G.711 on each) so that the
# distortion mu-law itself adds to one tone stays below -66 dB at every other
# tone: what the crosstalk check then finds at another call's tone is leakage.
TONES = [250, 347, 444, 541, 639, 736, 833, 930, 1027, 1127, 1224, 1321, 1418, 1529, 1628, 1727, 1836, 1934, 2032, 2133]
ANALYSIS_SECONDS = 2.0  # integer-Hz tones fall on FFT bins of a 2.0 s window
HEAD_START_FRAMES = 5  # like Twilio's own bursts: the jitter buffer is never starved by our pacing


# ----------------------------------------------------------------------------- the subprocess


class BridgeProcess:
    """``python -m shetphone.bridge`` with a throwaway ini, stderr captured to a file."""

    def __init__(
        self,
        tmp_path: Path,
        *args: str,
        auth_token: str | None = AUTH_TOKEN,
        account_sid: str | None = ACCOUNT_SID,
        ini_extra: str = "",
        bridge_extra: str = "",
    ) -> None:
        self.port = free_port()
        self.ini = tmp_path / "shetphone.ini"
        self.ini.write_text(
            f"[shetphone]\npublic_url = https://{PUBLIC_HOST}\n{ini_extra}\n"
            f"[shetphone:numbers]\n+441595000002 = discord:{VOICE}\n+441595000003 = echo\n"
            f"[shetphone:bridge]\nlisten = 127.0.0.1:{self.port}\n{bridge_extra}\n",
            encoding="utf-8",
        )
        self.env = {
            **os.environ,
            "SHETPHONE_CONFIG": str(self.ini),
            "SHETPHONE_SECRET_KEY": SECRET_KEY,
            "DISCORD_BOT_TOKEN": "",
            "TWILIO_AUTH_TOKEN": auth_token or "",
            "TWILIO_ACCOUNT_SID": account_sid or "",
            "PYTHONPATH": str(ROOT),
        }
        self.stderr_path = tmp_path / "bridge.stderr"
        # The used auth values go to the test's directory, not the checkout's instance/.
        self.args = ("--state", str(tmp_path / "state"), *args)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> BridgeProcess:
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "shetphone.bridge", *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + 20
        while "listening on" not in self.stderr:
            assert self.process.poll() is None, f"the bridge exited: {self.stderr}"
            assert time.monotonic() < deadline, f"the bridge did not start: {self.stderr}"
            time.sleep(0.05)
        return self

    def run(self) -> subprocess.CompletedProcess[str]:
        """Run to completion (for start-up failures)."""
        return subprocess.run(
            [sys.executable, "-m", "shetphone.bridge", *self.args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def terminate(self, signum: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        return self.process.wait(20)

    def __enter__(self) -> BridgeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


# ----------------------------------------------------------------------------- signal analysis


def crosstalk_db(recording: np.ndarray, own: float, others: list[float]) -> float:
    """The loudest other tone in `recording`, in dB relative to its own tone."""
    own_energy = band_energy(recording, 48000, own, half_width=1.0)
    loudest = max(band_energy(recording, 48000, f, half_width=1.0) for f in others)
    return 10 * np.log10(loudest / own_energy)


def tone_window(left: np.ndarray) -> np.ndarray:
    """ANALYSIS_SECONDS of a recorded tone: underrun silence removed, past the onset's click."""
    tone_only = without_silent_frames(left)[3 * 960 :]
    window = tone_only[: int(ANALYSIS_SECONDS * 48000)]
    assert len(window) == int(ANALYSIS_SECONDS * 48000), "the recording is shorter than the tone sent"
    return window


def alignment_correlation(recording48: np.ndarray, reference8: np.ndarray) -> float:
    """Best normalised correlation of the 48 kHz recording, decimated, with the 8 kHz reference.

    The recording is band-limited below 4 kHz by the upsampler, so taking every
    sixth sample does not alias; one of the six phases matches the filter's delay.
    """
    best = 0.0
    ref = reference8.astype(np.float64)
    for phase in range(6):
        x = recording48[phase::6].astype(np.float64)
        n = 1 << int(np.ceil(np.log2(len(x) + len(ref))))
        corr = np.fft.irfft(np.fft.rfft(x, n) * np.conj(np.fft.rfft(ref, n)), n)
        lag = int(np.argmax(corr))
        aligned = np.roll(np.pad(x, (0, n - len(x))), -lag)[: len(ref)]
        denominator = np.linalg.norm(aligned) * np.linalg.norm(ref)
        if denominator:
            best = max(best, float(aligned @ ref / denominator))
    return best


async def play_call(port: int, n: int, samples: np.ndarray) -> list[dict]:
    """A whole, well-behaved echo call: connected, start, media paced by the echo, stop."""
    stream = await open_stream(port, n)
    await stream.connected()
    await stream.start("echo")
    received = await stream.play_echo_paced(samples)
    await stream.stop()
    async for message in stream.ws:  # whatever was still on its way, then the close
        received.append(json.loads(message))
    return received


# ----------------------------------------------------------------------------- the signed upgrade


def status_of(port: int, path: str = MEDIA_PATH, signature: str | None = None) -> int:
    async def attempt() -> int:
        headers = {"X-Twilio-Signature": signature} if signature is not None else {}
        try:
            async with connect(f"ws://127.0.0.1:{port}{path}", additional_headers=headers):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    return asyncio.run(attempt())


def test_the_upgrade_needs_twilios_signature_over_the_public_wss_url():
    with ThreadedBridge() as bridge:
        assert status_of(bridge.port, signature=sign()) == 101
        assert status_of(bridge.port) == 403  # missing
        assert status_of(bridge.port, signature="") == 403
        assert status_of(bridge.port, signature=sign(token="not-the-auth-token")) == 403  # forged
        assert status_of(bridge.port, signature=sign(host="evil.example.org")) == 403  # signed for another host
        # The query string is part of what Twilio signs.
        assert status_of(bridge.port, f"{MEDIA_PATH}?a=1", sign(f"{MEDIA_PATH}?a=1")) == 101
        assert status_of(bridge.port, f"{MEDIA_PATH}?a=2", sign(f"{MEDIA_PATH}?a=1")) == 403
        assert status_of(bridge.port, "/media/other", sign("/media/other")) == 404
        assert status_of(bridge.port, "/", sign("/")) == 404
        assert bridge.call(lambda: len(bridge.bridge.sessions)) == 0


def test_a_refused_upgrade_reads_no_message(tmp_path):
    """403 comes from process_request, before the handshake: nothing sent after it is processed."""
    with ThreadedBridge(record_dir=tmp_path) as bridge:
        with socket.create_connection(("127.0.0.1", bridge.port)) as sock:
            sock.sendall(
                (
                    f"GET {MEDIA_PATH} HTTP/1.1\r\nHost: {PUBLIC_HOST}\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\nX-Twilio-Signature: forged\r\n\r\n"
                ).encode()
            )
            response = sock.recv(1024).decode()
        assert response.startswith("HTTP/1.1 403")
        assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- real speech, the real program


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> bytes:
    """A sentence from espeak-ng as Twilio would send it: 8 kHz mu-law."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.fail("espeak-ng and sox are needed: apt-get install -y espeak-ng sox")
    directory = tmp_path_factory.mktemp("speech")
    wav, raw = directory / "speech.wav", directory / "speech.ul"
    subprocess.run(["espeak-ng", "-w", str(wav), "Hello from the Shetphone bridge. One, two, three."], check=True)
    subprocess.run(["sox", str(wav), "-r", "8000", "-c", "1", "-e", "mu-law", "-t", "raw", str(raw)], check=True)
    return raw.read_bytes()


def test_a_whole_call_of_real_speech_is_recorded(tmp_path, speech):
    record = tmp_path / "calls"
    # A whisper of noise under the speech: no 20 ms of it is digital silence (see play_echo_paced).
    noise = np.random.default_rng(1).integers(-40, 41, len(speech))
    spoken = np.clip(ulaw_decode(speech).astype(np.int32) + noise, -32768, 32767).astype(np.int16)
    speech = ulaw_encode(spoken)
    with BridgeProcess(tmp_path, "--record", str(record)) as bridge:

        async def call() -> list[dict]:
            stream = await open_stream(bridge.port, 1)
            await stream.connected()
            await stream.start("echo", **{"from": "+441595123456"})
            samples = spoken
            half = len(samples) // 2 // 160 * 160
            received = await stream.play_echo_paced(samples[:half])
            await stream.dtmf("5")
            await stream.mark("half way")
            received += await stream.play_echo_paced(samples[half:])
            await stream.stop()
            async for message in stream.ws:
                received.append(json.loads(message))
            return received

        received = asyncio.run(call())
        assert bridge.process.poll() is None  # still serving
        assert "DTMF 5" in bridge.stderr
    samples, rate, channels = read_wav(record / f"{call_sid(1)}.wav")
    assert (rate, channels) == (48000, 2)
    assert np.array_equal(samples[:, 0], samples[:, 1])
    # Frame n at 48 kHz is chunk n of the speech; underruns only add silent frames.
    uplink = Uplink()
    expected = b"".join(b"".join(uplink.process(speech[i : i + 160])) for i in range(0, len(speech), 160))
    expected = np.frombuffer(expected, dtype="<i2")[::2]
    recorded = without_silent_frames(samples[:, 0])
    assert np.array_equal(recorded, without_silent_frames(expected)), "the recording is not the speech sent"
    # and it is the speech: the 8 kHz original, from the same frames, correlates with it
    sent = ulaw_decode(speech)
    kept = [i for i, frame in enumerate(frames_of(expected)) if np.any(frame)]
    original = np.concatenate([sent[i * 160 : (i + 1) * 160] for i in kept])
    assert alignment_correlation(recorded, original) > 0.95
    assert np.std(recorded) > 0.5 * np.std(sent)
    # and the caller heard it back (the echo is a line test)
    assert received and all(m["streamSid"] == stream_sid(1) for m in received)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_finalises_the_recordings_of_calls_in_progress_and_exits_0(tmp_path, signum):
    record = tmp_path / "calls"
    bridge = BridgeProcess(tmp_path, "--record", str(record)).start()
    try:

        async def unfinished_call() -> None:
            stream = await open_stream(bridge.port, 7)

            async def read() -> None:
                async for _ in stream.ws:
                    pass

            reader = asyncio.create_task(read())
            await stream.connected()
            await stream.start("echo")
            await stream.play(tone(440, 0.5), head_start=HEAD_START_FRAMES)
            await wait_for(lambda: (record / f"{call_sid(7)}.wav.part").exists())
            await asyncio.sleep(0.3)
            assert await asyncio.to_thread(bridge.terminate, signum) == 0
            await asyncio.wait_for(reader, 10)
            assert stream.ws.close_code == 1001  # going away

        asyncio.run(unfinished_call())
    finally:
        bridge.__exit__()
    assert "Traceback" not in bridge.stderr
    samples, rate, _ = read_wav(record / f"{call_sid(7)}.wav")
    assert rate == 48000
    assert band_energy(samples[:, 0], rate, 440, 10) > 0.5 * np.sum(samples[:, 0].astype(np.float64) ** 2)


def test_twenty_calls_at_once_each_record_only_their_own_tone(tmp_path):
    record = tmp_path / "calls"
    with BridgeProcess(tmp_path, "--record", str(record)) as bridge:

        async def calls() -> list[list[dict]]:
            return await asyncio.gather(
                *(play_call(bridge.port, n, tone(f, ANALYSIS_SECONDS + 0.3)) for n, f in enumerate(TONES))
            )

        echoes = asyncio.run(calls())
        assert bridge.terminate() == 0
    for n, frequency in enumerate(TONES):
        assert {m["streamSid"] for m in echoes[n]} == {stream_sid(n)}
        samples, _, _ = read_wav(record / f"{call_sid(n)}.wav")
        window = tone_window(samples[:, 0])
        others = [f for f in TONES if f != frequency]
        assert crosstalk_db(window, frequency, others) < -60, f"call {n} ({frequency} Hz) hears another call"


def test_a_bridge_whose_discord_is_unreachable_still_serves_and_stops_cleanly(tmp_path):
    """Discord cannot be reached from here: echo must not care, a Discord call is still recorded."""
    record = tmp_path / "calls"
    bridge = BridgeProcess(tmp_path, "--record", str(record))
    bridge.env["DISCORD_BOT_TOKEN"] = "x" * 59
    bridge.start()
    try:

        async def calls() -> None:
            discord_call = await open_stream(bridge.port, 21)
            reader = asyncio.create_task(_drain(discord_call))
            await discord_call.start("discord:123456789012345678", **{"from": "+441595123456"})
            await discord_call.play(tone(444, 0.3), head_start=HEAD_START_FRAMES)
            echoes = await play_call(bridge.port, 22, tone(639, 0.5))
            assert {m["streamSid"] for m in echoes} == {stream_sid(22)}
            assert discord_call.ws.close_code is None  # still up, waiting for Discord
            assert await asyncio.to_thread(bridge.terminate) == 0
            await asyncio.wait_for(reader, 10)

        asyncio.run(calls())
    finally:
        bridge.__exit__()
    assert "Traceback" not in bridge.stderr
    assert (record / f"{call_sid(21)}.wav").exists() and (record / f"{call_sid(22)}.wav").exists()


def test_bad_configuration_is_one_line_and_exit_2(tmp_path):
    broken = BridgeProcess(tmp_path, ini_extra="ring_timeout = soon")
    result = broken.run()
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ring_timeout" in lines[0] and "shetphone.ini" in lines[0]


def test_without_an_auth_token_the_bridge_refuses_to_start(tmp_path):
    result = BridgeProcess(tmp_path, auth_token=None).run()
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "TWILIO_AUTH_TOKEN" in lines[0]


def test_without_an_account_sid_the_bridge_refuses_to_start(tmp_path):
    result = BridgeProcess(tmp_path, account_sid=None).run()
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "TWILIO_ACCOUNT_SID" in lines[0]


def test_a_state_directory_that_cannot_be_made_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "occupied").write_text("a file, not a directory")
    bridge = BridgeProcess(tmp_path)
    bridge.args = ("--state", str(tmp_path / "occupied" / "state"))
    result = bridge.run()
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "stream-auth-used" in lines[0] and "cannot be opened" in lines[0]


def test_an_auth_used_before_a_restart_of_the_bridge_is_refused_after_it(tmp_path):
    auth = mint(SECRET_KEY, call_sid(31), "echo")

    async def call(port: int) -> tuple[int | None, str | None, int]:
        stream = await open_stream(port, 31)
        await stream.start("echo", auth=auth)
        echoes = 0
        try:
            await stream.play(tone(440, 0.3), head_start=HEAD_START_FRAMES)
            while echoes < 5:  # the bridge took the stream: its echo comes back
                await asyncio.wait_for(stream.ws.recv(), 5)
                echoes += 1
            await stream.stop()
        except ConnectionClosed:
            pass
        await _drain(stream)
        return stream.ws.close_code, stream.ws.close_reason, echoes

    with BridgeProcess(tmp_path) as first:
        assert asyncio.run(call(first.port)) == (1000, "stream stopped", 5)
        assert first.terminate() == 0
    with BridgeProcess(tmp_path) as second:  # the same instance (state) directory
        code, reason, echoes = asyncio.run(call(second.port))
        assert (code, echoes) == (1008, 0)
        assert reason == "the 'auth' stream parameter was used already"
        assert second.terminate() == 0
    assert "stream refused: the 'auth' stream parameter was used already" in second.stderr


WEB_APP_PACKAGES = ("flask", "flask_socketio", "flask_login", "flask_wtf", "werkzeug", "sqlalchemy", "limits",
                    "passlib")


def test_the_bridge_loads_neither_flask_nor_the_web_apps_stores():
    """``import shetphone.bridge`` goes through shetphone/__init__.py, which must not import the web app."""
    program = (
        "import json, sys\n"
        "import shetphone.bridge\n"
        "import shetphone.bridge.__main__, shetphone.bridge.server, shetphone.bridge.targets.discord\n"
        # /call: the placer, the commands and the one seam to Twilio's REST API
        "import shetphone.bridge.placing, shetphone.bridge.targets.discord.commands, shetphone.twilio_rest\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60, check=True,
    )
    loaded = set(json.loads(result.stdout))
    assert {"shetphone", "websockets", "discord", "twilio"} <= loaded  # it did import the bridge
    assert loaded.isdisjoint(WEB_APP_PACKAGES), sorted(loaded & set(WEB_APP_PACKAGES))


# ----------------------------------------------------------------------------- echo, the return path


def test_echo_returns_the_callers_tone_on_the_callers_stream():
    with ThreadedBridge() as bridge:

        async def both() -> list[list[dict]]:
            return await asyncio.gather(
                play_call(bridge.port, 1, tone(1027, 1.2)), play_call(bridge.port, 2, tone(639, 1.2))
            )

        results = asyncio.run(both())
    for n, frequency, received in ((1, 1027, results[0]), (2, 639, results[1])):
        assert len(received) >= 60
        assert {m["event"] for m in received} == {"media"}
        assert {m["streamSid"] for m in received} == {stream_sid(n)}
        payloads = [base64.b64decode(m["media"]["payload"]) for m in received]
        assert {len(p) for p in payloads} == {160}
        echoed = ulaw_decode(b"".join(payloads)).astype(np.float64)
        echoed = without_silent_frames(echoed, 160)[3 * 160 :]  # past the prefill and the onset
        assert len(echoed) >= 8000
        spectrum = np.abs(np.fft.rfft(echoed * np.hanning(len(echoed))))
        peak = np.fft.rfftfreq(len(echoed), 1 / 8000)[int(np.argmax(spectrum))]
        assert abs(peak - frequency) < 3
        total = float(np.sum((echoed * np.hanning(len(echoed))) ** 2))
        assert band_energy(echoed, 8000, frequency, 10) > 0.9 * total


# ----------------------------------------------------------------------------- bad messages


def valid_start(n: int, target: str = "echo", ttl: int = 300) -> str:
    """A start that passes every check; a ttl of its own gives it an auth value of its own."""
    auth = mint(SECRET_KEY, call_sid(n), target, ttl=ttl)
    return json.dumps(
        {
            "event": "start",
            "start": {
                "streamSid": stream_sid(n),
                "callSid": call_sid(n),
                "accountSid": ACCOUNT_SID,
                "customParameters": {"target": target, "auth": auth},
            },
            "streamSid": stream_sid(n),
        }
    )


def media(n: int, payload: str) -> str:
    return json.dumps({"event": "media", "streamSid": stream_sid(n), "media": {"track": "inbound", "payload": payload}})


junk_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
bad_message = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=40),
    junk_json.map(json.dumps),
    st.builds(lambda e, body: json.dumps({"event": e, "streamSid": stream_sid(900), e: body}),
              st.sampled_from(["start", "media", "dtmf", "mark", "stop", "clear", "x"]), junk_json),
    st.text(max_size=30).map(lambda p: media(900, p)),  # bad base64, wrong stream, media before start
    st.binary(min_size=1, max_size=400).map(lambda b: media(900, base64.b64encode(b).decode())),  # odd sizes
    st.builds(
        lambda t, ttl: valid_start(900, t, ttl),
        st.sampled_from(["echo", "discord:1", "discord:123456789012345678", "", "sip:x"]),
        st.integers(60, 3600),
    ),
)


def test_malformed_messages_never_stop_the_bridge_or_other_calls(tmp_path):
    with ThreadedBridge(record_dir=tmp_path) as bridge:

        async def send_all(messages: list[str | bytes]) -> None:
            stream = await open_stream(bridge.port, 900)
            drain = asyncio.create_task(_drain(stream))  # a stream that did start echoes
            try:
                for message in messages:
                    await stream.ws.send(message)
                await stream.ws.close()
            except ConnectionClosed:
                pass  # the bridge may end a stream that broke the protocol
            await drain

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.lists(bad_message, min_size=1, max_size=12))
        def garbage(messages: list[str | bytes]) -> None:
            asyncio.run(send_all(messages))

        garbage()

        async def good_call() -> list[dict]:
            stream = await open_stream(bridge.port, 1)
            await stream.connected()
            await stream.start("echo")
            await stream.play(tone(833, 0.5), head_start=HEAD_START_FRAMES)
            await wait_for(lambda: bridge.call(lambda: bridge.bridge.sessions[stream_sid(1)].ticks) > 10)
            received = [json.loads(await asyncio.wait_for(stream.ws.recv(), 5)) for _ in range(5)]
            await stream.stop()
            await _drain(stream)
            return received

        received = asyncio.run(good_call())
        assert {m["streamSid"] for m in received} == {stream_sid(1)}
        assert asyncio.run(_until_no_sessions(bridge)) == 0
    samples, _, _ = read_wav(tmp_path / f"{call_sid(1)}.wav")
    assert band_energy(samples[:, 0], 48000, 833, 10) > 0


async def _drain(stream: TwilioStream) -> None:
    try:
        async for _ in stream.ws:
            pass
    except ConnectionClosed:
        pass


async def _until_no_sessions(bridge: ThreadedBridge) -> int:
    await wait_for(lambda: bridge.call(lambda: len(bridge.bridge.sessions)) == 0)
    return bridge.call(lambda: len(bridge.bridge.sessions))


def test_media_before_start_is_skipped_and_the_stream_goes_on(tmp_path):
    with ThreadedBridge(record_dir=tmp_path) as bridge:

        async def call() -> None:
            stream = await open_stream(bridge.port, 3)
            await stream.media(b"\xff" * 160)  # before start: skipped
            await stream.send("{not json")
            await stream.send({"event": "surprise"})
            await stream.start("echo")
            await stream.play(tone(541, 0.4), head_start=HEAD_START_FRAMES)
            await stream.stop()
            await _drain(stream)

        asyncio.run(call())
    samples, _, _ = read_wav(tmp_path / f"{call_sid(3)}.wav")
    assert band_energy(samples[:, 0], 48000, 541, 10) > 0.5 * np.sum(samples[:, 0].astype(np.float64) ** 2)


def test_dtmf_before_start_is_a_bad_message_and_cannot_flood_the_log(caplog):
    caplog.set_level(logging.INFO, logger="shetphone.bridge.server")
    with ThreadedBridge() as bridge:

        async def call() -> None:
            stream = await open_stream(bridge.port, 3)
            for _ in range(50):  # only the upgrade's signature so far, which anyone may have seen
                await stream.dtmf("1")
            await stream.start("echo")
            await stream.dtmf("5")
            await stream.stop()
            await _drain(stream)

        asyncio.run(call())
    lines = [r.getMessage() for r in caplog.records if r.name == "shetphone.bridge.server"]
    assert [line for line in lines if "DTMF" in line] == [f"stream {stream_sid(3)}: DTMF 5"]
    skipped = [line for line in lines if "bad message skipped" in line]
    assert len(skipped) == 10 and all(line.endswith("dtmf before start") for line in skipped)


@pytest.mark.parametrize(
    ("target", "code"),
    [("sip:nowhere", 1008), ("discord:123456789012345678", 1011)],  # unknown; Discord without a bot token
)
def test_a_stream_whose_target_cannot_be_served_is_ended(target, code):
    with ThreadedBridge() as bridge:

        async def call() -> int:
            stream = await open_stream(bridge.port, 4)
            await stream.start(target)
            await asyncio.wait_for(stream.ws.wait_closed(), 5)
            return stream.ws.close_code

        assert asyncio.run(call()) == code
        assert bridge.call(lambda: len(bridge.bridge.sessions)) == 0


def test_a_second_stream_with_a_running_streams_sid_is_refused():
    with ThreadedBridge() as bridge:

        async def calls() -> int:
            first = await open_stream(bridge.port, 5)
            await first.start("echo")
            await wait_for(lambda: bridge.call(lambda: stream_sid(5) in bridge.bridge.sessions))
            impostor = await open_stream(bridge.port, 5)
            await impostor.start("echo")
            await asyncio.wait_for(impostor.ws.wait_closed(), 5)
            assert bridge.call(lambda: stream_sid(5) in bridge.bridge.sessions)  # the first goes on
            await first.stop()
            await _drain(first)
            return impostor.ws.close_code

        assert asyncio.run(calls()) == 1008


def test_a_websocket_closed_without_stop_ends_the_session_and_finalises_the_recording(tmp_path):
    with ThreadedBridge(record_dir=tmp_path) as bridge:

        async def call() -> None:
            stream = await open_stream(bridge.port, 6)
            await stream.start("echo")
            await stream.play(tone(736, 0.3), head_start=HEAD_START_FRAMES)
            stream.ws.transport.abort()  # no stop, no close frame: the network just went away
            await wait_for(lambda: bridge.call(lambda: len(bridge.bridge.sessions)) == 0)

        asyncio.run(call())
        samples, rate, _ = read_wav(tmp_path / f"{call_sid(6)}.wav")
    assert rate == 48000 and len(samples) > 0


# ----------------------------------------------------------------------------- a slow consumer


def test_twilio_not_reading_costs_the_oldest_audio_not_memory():
    with ThreadedBridge() as bridge:

        async def call() -> tuple[int, int, int]:
            stream = await open_unread_stream(bridge.port, 8)
            await stream.start("echo")
            sid = stream_sid(8)
            await wait_for(lambda: bridge.call(lambda: sid in bridge.bridge.sessions))
            outbox = lambda: bridge.call(lambda: bridge.bridge.sessions[sid].outbox)  # noqa: E731
            loop = asyncio.get_running_loop()
            started = loop.time()
            largest = 0
            index = 0
            while outbox().dropped < 100:
                assert loop.time() - started < 40, "the outbox never overflowed"
                await stream.play(tone(300, 0.2), head_start=0)
                index += 1
                largest = max(largest, len(outbox()))
            ticks = bridge.call(lambda: bridge.bridge.sessions[sid].ticks)
            transport = bridge.call(lambda: _write_buffer(bridge, sid))
            stream.ws.transport.abort()
            return largest, ticks, transport

        largest, ticks, transport_buffer = asyncio.run(call())
    assert largest <= OUTBOX_MAX_MESSAGES
    assert ticks > OUTBOX_MAX_MESSAGES  # the call kept running while Twilio did not read
    assert transport_buffer <= 64 * 1024


def _write_buffer(bridge: ThreadedBridge, sid: str) -> int:
    for connection in bridge.bridge.server.connections:
        return connection.transport.get_write_buffer_size()
    return 0


async def open_unread_stream(port: int, n: int) -> TwilioStream:
    """A stream whose client never reads (a small receive buffer, never a recv(), no pings of its own)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect(("127.0.0.1", port))
    websocket = await connect(
        f"ws://{PUBLIC_HOST}{MEDIA_PATH}",
        sock=sock,
        additional_headers={"X-Twilio-Signature": sign()},
        max_queue=4,
        ping_interval=None,  # its pings unanswered, websockets' client would close the connection itself
    )
    return TwilioStream(websocket, stream_sid(n), call_sid(n))


def test_a_peer_that_stopped_reading_is_let_go_when_its_stream_ends_and_at_shutdown():
    """websockets' close waits for its write buffer to drain, without end, before its close timeout starts;
    so does its keepalive ping, once the call has outlived ping_interval (20 s) with the peer not reading."""
    bridge = ThreadedBridge(config=bridge_config(media_timeout=1.0)).__enter__()
    exited = False
    try:

        async def calls() -> None:
            nonlocal exited
            falls_silent, talks_on = await open_unread_stream(bridge.port, 1), await open_unread_stream(bridge.port, 2)
            await falls_silent.start("echo")
            await talks_on.start("echo")
            await wait_for(lambda: bridge.call(lambda: len(bridge.bridge.sessions)) == 2)
            ping_interval = bridge.call(lambda: next(iter(bridge.bridge.connections)).websocket.ping_interval)
            loop = asyncio.get_running_loop()
            opened = loop.time()

            def stuck() -> bool:  # the bridge's writes to both wait on the peers, past the first keepalive ping
                outboxes = [session.outbox.dropped for session in bridge.bridge.sessions.values()]
                return len(outboxes) == 2 and min(outboxes) > 0 and loop.time() > opened + ping_interval + 1

            talking = asyncio.create_task(talks_on.play(tone(440, 120.0), head_start=0))
            while not bridge.call(stuck):
                await falls_silent.play(tone(640, 0.2), head_start=0)
            # Silent: the watchdog ends the stream, and its place is free for another call.
            await wait_for(lambda: bridge.call(lambda: len(bridge.bridge.connections)) == 1)
            assert not talking.done()
            # SIGTERM while the other still talks: the bridge stops (its exit waits 15 s for the thread).
            await asyncio.to_thread(bridge.__exit__, None, None, None)
            exited = True
            talking.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await talking
            for stream in (falls_silent, talks_on):
                stream.ws.transport.abort()

        asyncio.run(calls())
    finally:
        if not exited:
            bridge.__exit__(None, None, None)
    assert bridge.bridge.connections == set() and bridge.bridge.sessions == {}


# ----------------------------------------------------------------------------- stream auth (SPEC §5)


DISCORD = f"discord:{VOICE}"
GUILD = 423456789012345678


async def refused(stream: TwilioStream) -> tuple[int | None, str | None]:
    """The close code and reason of a stream the bridge should end, and that nothing came back."""
    received = []
    try:
        async for message in stream.ws:
            received.append(message)
    except ConnectionClosed:
        pass
    assert received == [], "a refused stream was sent audio"
    return stream.ws.close_code, stream.ws.close_reason


@pytest.mark.parametrize(
    ("start", "why"),
    [
        ({"auth": ""}, "no 'auth' stream parameter"),
        ({"auth": mint(SECRET_KEY, call_sid(99), DISCORD)}, "not made for this call and target"),
        ({"auth": mint(SECRET_KEY, call_sid(1), "echo")}, "not made for this call and target"),
        ({"auth": mint("another app's key", call_sid(1), DISCORD)}, "not made for this call and target"),
        ({"auth": mint(SECRET_KEY, call_sid(1), DISCORD, now=time.time() - 301)}, "expired"),
        ({"auth": "v1.9999999999.forged"}, "malformed"),
        ({"account_sid": "AC" + "9" * 32}, "accountSid AC99999999999999999999999999999999 is not ours"),
        ({"target": f"discord:{OTHER_VOICE}"}, f"target discord:{OTHER_VOICE} is not configured"),
    ],
    ids=["no auth", "another call", "another target", "another key", "expired", "forged", "another account",
         "unconfigured target"],
)
def test_a_start_without_valid_auth_is_refused_and_reaches_no_target(start, why, caplog):
    text = FakeTextChannel()
    client = FakeClient(BOT, {VOICE: GUILD, OTHER_VOICE: GUILD}, {TEXT: text})
    hub = DiscordHub([client], TEXT, keeper_interval=0.01)
    with ThreadedBridge(make_target=make_targets(hub)) as bridge:

        async def calls() -> tuple[int | None, str | None]:
            stream = await open_stream(bridge.port, 1)
            target = start.get("target", DISCORD)
            auth = start.get("auth", mint(SECRET_KEY, call_sid(1), target))
            account = start.get("account_sid", ACCOUNT_SID)
            await stream.start(target, auth=auth, account_sid=account, **{"from": "+441595000666"})
            with contextlib.suppress(ConnectionClosed):
                await stream.play(tone(440, 0.2))  # the refusal may come while the caller speaks
            outcome = await asyncio.wait_for(refused(stream), 5)
            assert bridge.call(lambda: (len(bridge.bridge.sessions), dict(hub.channels))) == (0, {})
            # A genuine call is let in, joins and is announced: the fake sees what a refused one would do.
            genuine = await open_stream(bridge.port, 2)
            await genuine.start(DISCORD, **{"from": "+441595000777"})
            await wait_for(lambda: bridge.call(lambda: ("join", VOICE) in client.events))
            await wait_for(lambda: bridge.call(lambda: any("+441595000777" in m for m in text.messages)))
            await genuine.stop()
            await _drain(genuine)
            return outcome

        code, reason = asyncio.run(calls())
    assert code == 1008 and why in reason
    assert client.events.count(("join", VOICE)) == 1 and ("join", OTHER_VOICE) not in client.events
    assert not any("+441595000666" in message for message in text.messages)
    refusals = [r.getMessage() for r in caplog.records if "stream refused" in r.getMessage()]
    assert refusals == [f"stream {stream_sid(1)}: stream refused: {reason}"]


def test_an_auth_value_admits_one_stream_however_often_it_is_replayed():
    with ThreadedBridge() as bridge:

        async def calls() -> list[tuple[int | None, str | None]]:
            auth = mint(SECRET_KEY, call_sid(1), "echo")
            genuine = await open_stream(bridge.port, 1)
            await genuine.start("echo", auth=auth)
            await wait_for(lambda: bridge.call(lambda: stream_sid(1) in bridge.bridge.sessions))
            outcomes = []
            for n in (2, 3):  # replayed while the call runs, as another stream of the same call
                replay = await open_stream(bridge.port, n)
                replay.call_sid = call_sid(1)
                await replay.start("echo", auth=auth)
                outcomes.append(await asyncio.wait_for(refused(replay), 5))
            assert bridge.call(lambda: list(bridge.bridge.sessions)) == [stream_sid(1)]  # the call goes on
            await genuine.play(tone(440, 0.2), head_start=HEAD_START_FRAMES)
            assert json.loads(await asyncio.wait_for(genuine.ws.recv(), 5))["streamSid"] == stream_sid(1)
            await genuine.stop()
            await _drain(genuine)
            after = await open_stream(bridge.port, 1)  # replayed after the call, as the same stream
            await after.start("echo", auth=auth)
            outcomes.append(await asyncio.wait_for(refused(after), 5))
            return outcomes

        outcomes = asyncio.run(calls())
    assert outcomes == [(1008, "the 'auth' stream parameter was used already")] * 3


# ----------------------------------------------------------------------------- limits


def upgrade_status(port: int) -> int:
    return status_of(port, signature=sign())


def test_a_stream_beyond_max_calls_is_refused_at_the_upgrade_until_one_ends():
    with ThreadedBridge(config=bridge_config(max_calls=2)) as bridge:

        async def calls() -> tuple[int, int]:
            first, second = await open_stream(bridge.port, 1), await open_stream(bridge.port, 2)
            await first.start("echo")
            await second.start("echo")
            await wait_for(lambda: bridge.call(lambda: len(bridge.bridge.sessions)) == 2)
            beyond = await asyncio.to_thread(upgrade_status, bridge.port)
            await first.stop()
            await _drain(first)
            await wait_for(lambda: bridge.call(lambda: len(bridge.bridge.connections)) == 1)
            room_again = await asyncio.to_thread(upgrade_status, bridge.port)
            await second.stop()
            await _drain(second)
            return beyond, room_again

        assert asyncio.run(calls()) == (503, 101)


def test_a_start_that_raced_past_the_upgrade_check_is_refused_beyond_max_calls():
    """Two upgrades at once can both pass check_request; the start is checked against the calls running."""
    with ThreadedBridge(config=bridge_config(max_calls=1)) as bridge:
        running = Session(Start(stream_sid(50), call_sid(50), ACCOUNT_SID, ("inbound",)), EchoTarget(), Outbox())
        bridge.call(lambda: bridge.bridge.sessions.update({stream_sid(50): running}))  # the other upgrade's call

        async def call() -> tuple[int | None, str | None]:
            stream = await open_stream(bridge.port, 1)
            await stream.start("echo")
            return await asyncio.wait_for(refused(stream), 5)

        assert asyncio.run(call()) == (1013, "already 1 calls (max_calls)")


def test_a_stream_is_ended_after_max_call_minutes(tmp_path):
    with ThreadedBridge(config=bridge_config(tmp_path, max_call_seconds=0.5)) as bridge:

        async def call() -> tuple[int | None, str | None]:
            stream = await open_stream(bridge.port, 1)
            await stream.start("echo")
            player = asyncio.create_task(stream.play(tone(440, 30.0), head_start=HEAD_START_FRAMES))
            await _drain(stream)  # until the bridge closes it, with media flowing all along
            player.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await player
            return stream.ws.close_code, stream.ws.close_reason

        outcome = asyncio.run(call())
        assert bridge.call(lambda: len(bridge.bridge.sessions)) == 0
    assert outcome == (1008, "longer than max_call_minutes (0.5 s)")
    samples, rate, _ = read_wav(tmp_path / f"{call_sid(1)}.wav")  # the recording was finalised
    assert rate == 48000 and len(samples) > 0


def test_a_stream_without_media_for_the_timeout_is_ended_and_one_with_media_is_not():
    with ThreadedBridge(config=bridge_config(media_timeout=1.0)) as bridge:

        async def calls() -> list[tuple[int | None, str | None]]:
            talking, falls_silent = await open_stream(bridge.port, 1), await open_stream(bridge.port, 2)
            never_starts = await open_stream(bridge.port, 3)
            await talking.start("echo")
            await falls_silent.start("echo")
            reader = asyncio.create_task(_drain(talking))
            player = asyncio.create_task(talking.play(tone(440, 30.0), head_start=HEAD_START_FRAMES))
            await falls_silent.play(tone(640, 0.2), head_start=HEAD_START_FRAMES)
            outcomes = []
            for stream in (falls_silent, never_starts):
                await asyncio.wait_for(_drain(stream), 10)
                outcomes.append((stream.ws.close_code, stream.ws.close_reason))
            # By now the talking stream has lived past the timeout: its media kept it open.
            assert talking.ws.close_code is None
            assert bridge.call(lambda: list(bridge.bridge.sessions)) == [stream_sid(1)]
            player.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await player
            await talking.stop()
            await reader
            assert talking.ws.close_code == 1000
            await wait_for(lambda: bridge.call(lambda: len(bridge.bridge.connections)) == 0)
            return outcomes

        outcomes = asyncio.run(calls())
    assert outcomes == [(1008, "no media for 1 s")] * 2
