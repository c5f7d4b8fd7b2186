"""Benchmark of the media bridge's audio path against linear interpolation and the old proof of concept.

Three uplink paths (8 kHz mu-law from Twilio -> 48 kHz for Discord), side by side:
- ours: shetphone.bridge.audio's Uplink (mu-law decode, polyphase FIR, 20 ms frames);
- ratecv: mu-law decode, then audioop.ratecv's linear interpolation to 48 kHz;
- poc: the proof of concept's: mu-law bytes read as 8-bit unsigned PCM, then ratecv.
The return path (48 kHz -> 8 kHz) is ours against ratecv; the proof of concept had none.

Run from the repo root: `python bench/audio.py` (or `python -m bench.audio`).
Prints a table and writes bench/results/audio.json.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the package importable
    sys.path.insert(0, str(ROOT))

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

from shetphone.bridge.audio import (  # noqa: E402
    DISCORD_RATE,
    FILTER_DELAY_MS,
    FILTER_TAPS,
    FRAME_BYTES,
    PHONE_FRAME_BYTES,
    PHONE_RATE,
    Downlink,
    Downsampler,
    Uplink,
    to_mono,
    to_stereo,
    ulaw_decode,
    ulaw_encode,
)

RESULTS = ROOT / "bench" / "results" / "audio.json"
AMPLITUDE = 16384  # -6 dBFS test tones
SETTLE_S = 0.1  # skip the filters' start-up before measuring
PASSBAND_HZ = range(300, 3401, 100)
ALIAS_TONES_HZ = range(5000, 20001, 250)
IMAGE_FROM_HZ = 4600
FLOOR_DB = -120.0  # report silence as this rather than -inf
CPU_SECONDS = 60
SPEECH = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It is easy to tell the depth of a well. These days a chicken leg is a rare dish. "
    "Rice is often served in round bowls. The juice of lemons makes fine punch."
)

TARGETS = {
    "response_db": 0.5,  # max deviation 300-3400 Hz, at most
    "image_rejection_db": 50.0,  # at least
    "alias_rejection_db": 50.0,  # at least
    "pesq_drop": 0.1,  # at most, against mu-law alone
    "cpu_core_percent": 0.5,  # at most, per call
}


# --- the paths under test


def payloads(ulaw: bytes) -> list[bytes]:
    """20 ms media payloads, as Twilio sends them."""
    return [ulaw[i : i + PHONE_FRAME_BYTES] for i in range(0, len(ulaw), PHONE_FRAME_BYTES)]


def up_ours(ulaw: bytes) -> np.ndarray:
    """Our uplink fed in 20 ms payloads; returns 48 kHz mono."""
    uplink = Uplink()
    return to_mono(b"".join(frame for payload in payloads(ulaw) for frame in uplink.process(payload)))


def up_ratecv(ulaw: bytes) -> np.ndarray:
    pcm, _ = audioop.ratecv(audioop.ulaw2lin(ulaw, 2), 2, 1, PHONE_RATE, DISCORD_RATE, None)
    return np.frombuffer(pcm, np.int16)


def up_poc(ulaw: bytes) -> np.ndarray:
    """The proof of concept's mistake: mu-law codes taken as unsigned 8-bit linear samples."""
    signed = audioop.bias(ulaw, 1, -128)  # u8 -> s8, which is how audioop reads 1-byte samples
    pcm, _ = audioop.ratecv(audioop.lin2lin(signed, 1, 2), 2, 1, PHONE_RATE, DISCORD_RATE, None)
    return np.frombuffer(pcm, np.int16)


def down_ours(mono48: np.ndarray) -> np.ndarray:
    """Our return path's filter and decimation in 20 ms frames (before mu-law); 8 kHz."""
    down = Downsampler()
    stereo = to_stereo(mono48)
    return np.concatenate(
        [down.process(to_mono(stereo[i : i + FRAME_BYTES])) for i in range(0, len(stereo), FRAME_BYTES)]
    )


def down_ratecv(mono48: np.ndarray) -> np.ndarray:
    pcm, _ = audioop.ratecv(mono48.astype(np.int16).tobytes(), 2, 1, DISCORD_RATE, PHONE_RATE, None)
    return np.frombuffer(pcm, np.int16)


UPLINKS: dict[str, Callable[[bytes], np.ndarray]] = {"ours": up_ours, "ratecv": up_ratecv, "poc": up_poc}
DOWNLINKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"ours": down_ours, "ratecv": down_ratecv}


# --- signals and spectra


def tone(freq: float, rate: int, seconds: float = 1.0 + 2 * SETTLE_S) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return np.rint(AMPLITUDE * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def blackman_harris(n: int) -> np.ndarray:
    k = 2 * np.pi * np.arange(n) / n
    return 0.35875 - 0.48829 * np.cos(k) + 0.14128 * np.cos(2 * k) - 0.01168 * np.cos(3 * k)


def one_second(signal: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude spectrum of one settled second (1 Hz bins, so integer tones sit on a bin)."""
    start = round(rate * SETTLE_S)
    segment = signal[start : start + rate].astype(np.float64)
    window = blackman_harris(len(segment))
    amplitude = 2 * np.abs(np.fft.rfft(segment * window)) / window.sum()
    return np.fft.rfftfreq(len(segment), 1 / rate), amplitude


def db(ratio: float) -> float:
    return max(FLOOR_DB, 20 * np.log10(ratio)) if ratio > 0 else FLOOR_DB


def frequency_response(path: Callable[[bytes], np.ndarray]) -> dict:
    """Gain at each phone-band tone, mu-law in, 48 kHz out.

    Measured against the decoded mu-law tone, not the ideal one: mu-law's own error at
    tones locked to 8 kHz (2 kHz is 4 samples a cycle) would otherwise show up as ~0.2 dB.
    """
    gains = {}
    for freq in PASSBAND_HZ:
        ulaw = ulaw_encode(tone(freq, PHONE_RATE))
        in_freqs, in_amp = one_second(ulaw_decode(ulaw), PHONE_RATE)
        freqs, amp = one_second(path(ulaw), DISCORD_RATE)
        gains[freq] = db(amp[freqs == freq][0] / in_amp[in_freqs == freq][0])
    worst = max(gains.values(), key=abs)
    return {"max_deviation_db": abs(worst), "gain_db_by_hz": gains}


def image_rejection(path: Callable[[bytes], np.ndarray]) -> dict:
    """For each phone-band tone: how far the strongest component at 4.6 kHz and up sits below it."""
    rejection = {}
    for freq in PASSBAND_HZ:
        freqs, amp = one_second(path(ulaw_encode(tone(freq, PHONE_RATE))), DISCORD_RATE)
        rejection[freq] = db(amp[freqs == freq][0] / amp[freqs >= IMAGE_FROM_HZ].max())
    return {"worst_db": min(rejection.values()), "db_by_hz": rejection}


def band_power(signal: np.ndarray, low: float = 300, high: float = 3400) -> float:
    freqs, amp = one_second(signal, PHONE_RATE)
    return float(np.sum(amp[(freqs >= low) & (freqs <= high)] ** 2))


def alias_rejection(path: Callable[[np.ndarray], np.ndarray]) -> dict:
    """For tones of 5-20 kHz at 48 kHz: power folded into 300-3400 Hz, below the tone's own."""
    reference = band_power(tone(1000, PHONE_RATE))  # the same tone had it been in band
    rejection = {}
    for freq in ALIAS_TONES_HZ:
        folded = band_power(path(tone(freq, DISCORD_RATE)))
        rejection[freq] = -db(np.sqrt(folded / reference))
    return {"worst_db": min(rejection.values()), "db_by_hz": rejection}


# --- speech quality


def resample_ideal(signal: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limit and resample by FFT: the neutral judge, used only to score, never in the bridge."""
    n_out = round(len(signal) * rate_out / rate_in)
    spectrum = np.fft.rfft(signal.astype(np.float64))
    keep = min(len(spectrum), n_out // 2 + 1)
    out = np.fft.irfft(spectrum[:keep], n_out) * (n_out / len(signal))
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


def speech_8k() -> np.ndarray:
    """espeak-ng's voice saying SPEECH, taken to 8 kHz and -3 dBFS peak."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("espeak-ng is needed for the PESQ figures: apt-get install -y espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run([espeak, "-w", str(path), SPEECH], check=True, capture_output=True)
        with wave.open(str(path)) as wav:
            rate = wav.getframerate()
            samples = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
    speech = resample_ideal(samples, rate, PHONE_RATE).astype(np.float64)
    return np.rint(speech / np.abs(speech).max() * 23197).astype(np.int16)


def pesq_nb(reference: np.ndarray, degraded: np.ndarray) -> float | None:
    from pesq import pesq  # bench/dev only: not a runtime dependency

    try:
        return round(float(pesq(PHONE_RATE, reference, degraded[: len(reference)], "nb")), 3)
    except Exception:  # the proof of concept's noise may hold no speech PESQ can find
        return None


def echo_ours(ulaw: bytes) -> np.ndarray:
    """The echo target's whole path: up to 48 kHz and back to mu-law 8 kHz, in 20 ms steps."""
    uplink, downlink = Uplink(), Downlink()
    back = b""
    for payload in payloads(ulaw):
        for frame in uplink.process(payload):
            back += b"".join(downlink.process(frame))
    return ulaw_decode(back)


def echo_ratecv(ulaw: bytes) -> np.ndarray:
    return ulaw_decode(ulaw_encode(down_ratecv(up_ratecv(ulaw))))


def speech_quality(reference: np.ndarray) -> dict:
    ulaw = ulaw_encode(reference)
    mulaw_once = ulaw_decode(ulaw)
    scores = {"mulaw_alone": pesq_nb(reference, mulaw_once)}
    for name, path in UPLINKS.items():
        # Each uplink's 48 kHz output is judged at 8 kHz through the same ideal band-limit.
        scores[f"uplink_{name}"] = pesq_nb(reference, resample_ideal(path(ulaw), DISCORD_RATE, PHONE_RATE))
    scores["echo_ours"] = pesq_nb(reference, echo_ours(ulaw))
    scores["echo_ratecv"] = pesq_nb(reference, echo_ratecv(ulaw))
    return scores


# --- CPU


def cpu_per_call(step: Callable[[bytes], object], call: list[bytes], repeats: int = 7) -> dict:
    """CPU time to run one call's payloads through `step`; the best of a few runs, as others share the machine."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for payload in call:
            step(payload)
        best = min(best, time.process_time() - start)
    audio_seconds = len(call) * PHONE_FRAME_BYTES / PHONE_RATE
    ms_per_second = best * 1000 / audio_seconds
    return {
        "cpu_ms_per_audio_s": round(ms_per_second, 3),
        "core_percent": round(ms_per_second / 10, 3),
        "calls_per_core": int(1000 / ms_per_second),
    }


def ours_both_ways() -> Callable[[bytes], object]:
    uplink, downlink = Uplink(), Downlink()

    def step(payload: bytes) -> None:
        for frame in uplink.process(payload):
            downlink.process(frame)

    return step


def ours_uplink_only() -> Callable[[bytes], object]:
    return Uplink().process


def ratecv_both_ways() -> Callable[[bytes], object]:
    state = {"up": None, "down": None}

    def step(payload: bytes) -> None:
        pcm, state["up"] = audioop.ratecv(audioop.ulaw2lin(payload, 2), 2, 1, PHONE_RATE, DISCORD_RATE, state["up"])
        stereo = audioop.tostereo(pcm, 2, 1, 1)
        mono = audioop.tomono(stereo, 2, 0.5, 0.5)
        back, state["down"] = audioop.ratecv(mono, 2, 1, DISCORD_RATE, PHONE_RATE, state["down"])
        audioop.lin2ulaw(back, 2)

    return step


def poc_uplink_only() -> Callable[[bytes], object]:
    state = None

    def step(payload: bytes) -> None:
        nonlocal state
        pcm, state = audioop.ratecv(
            audioop.lin2lin(audioop.bias(payload, 1, -128), 1, 2), 2, 1, PHONE_RATE, DISCORD_RATE, state
        )
        audioop.tostereo(pcm, 2, 1, 1)

    return step


def cpu(reference: np.ndarray) -> dict:
    repeats = -(-CPU_SECONDS * PHONE_RATE // len(reference))
    call = payloads(ulaw_encode(np.tile(reference, repeats)[: CPU_SECONDS * PHONE_RATE]))
    return {
        "ours": cpu_per_call(ours_both_ways(), call),
        "ours_uplink_only": cpu_per_call(ours_uplink_only(), call),
        "ratecv": cpu_per_call(ratecv_both_ways(), call),
        "poc_uplink_only": cpu_per_call(poc_uplink_only(), call),
    }


# --- report


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), platform.processor())
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        # Others share this machine: a high load average means the CPU figures read high.
        "load_average_1min": round(os.getloadavg()[0], 2),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def verdict(value: float | None, target: float, higher_is_better: bool) -> str:
    if value is None:
        return "n/a"
    return "meets" if (value >= target if higher_is_better else value <= target) else "misses"


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{round(value, digits) + 0.0:.{digits}f}"  # + 0.0: no "-0.0"


def table(results: dict) -> str:
    up, down, pesq, load = results["uplink"], results["return_path"], results["pesq_nb"], results["cpu"]
    rows = [
        ("measure (target)", "ours", "ratecv", "poc"),
        (
            "response 300-3400 Hz, max dev dB (<= 0.5)",
            *(fmt(up[p]["frequency_response"]["max_deviation_db"], 3) for p in UPLINKS),
        ),
        ("image rejection >= 4.6 kHz, dB (>= 50)", *(fmt(up[p]["image_rejection"]["worst_db"], 1) for p in UPLINKS)),
        (
            "return-path aliasing 5-20 kHz, dB (>= 50)",
            fmt(down["ours"]["worst_db"], 1),
            fmt(down["ratecv"]["worst_db"], 1),
            "-",
        ),
        (
            f"PESQ NB uplink (mu-law alone {fmt(pesq['mulaw_alone'], 3)}; drop <= 0.1)",
            *(fmt(pesq[f"uplink_{p}"], 3) for p in UPLINKS),
        ),
        (
            "PESQ NB echo path, up+down, mu-law both ways",
            fmt(pesq["echo_ours"], 3),
            fmt(pesq["echo_ratecv"], 3),
            "-",
        ),
        (
            "CPU ms per s of audio, up+down",
            fmt(load["ours"]["cpu_ms_per_audio_s"], 3),
            fmt(load["ratecv"]["cpu_ms_per_audio_s"], 3),
            f"{fmt(load['poc_uplink_only']['cpu_ms_per_audio_s'], 3)} (up)",
        ),
        (
            "% of a core per call (<= 0.5)",
            fmt(load["ours"]["core_percent"], 3),
            fmt(load["ratecv"]["core_percent"], 3),
            f"{fmt(load['poc_uplink_only']['core_percent'], 3)} (up)",
        ),
        (
            "calls per core",
            str(load["ours"]["calls_per_core"]),
            str(load["ratecv"]["calls_per_core"]),
            f"{load['poc_uplink_only']['calls_per_core']} (up)",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main() -> dict:
    reference = speech_8k()
    results: dict = {
        "machine": machine(),
        "filter": {"taps": FILTER_TAPS, "group_delay_ms_each_way": FILTER_DELAY_MS, "rate_hz": DISCORD_RATE},
        "uplink": {
            name: {"frequency_response": frequency_response(path), "image_rejection": image_rejection(path)}
            for name, path in UPLINKS.items()
        },
        "return_path": {name: alias_rejection(path) for name, path in DOWNLINKS.items()},
        "pesq_nb": speech_quality(reference),
        "cpu": cpu(reference),
        "targets": TARGETS,
    }
    ours = results["uplink"]["ours"]
    drop = (
        None
        if None in (results["pesq_nb"]["mulaw_alone"], results["pesq_nb"]["uplink_ours"])
        else round(results["pesq_nb"]["mulaw_alone"] - results["pesq_nb"]["uplink_ours"], 3)
    )
    results["verdicts"] = {
        "response": verdict(ours["frequency_response"]["max_deviation_db"], TARGETS["response_db"], False),
        "image_rejection": verdict(ours["image_rejection"]["worst_db"], TARGETS["image_rejection_db"], True),
        "alias_rejection": verdict(results["return_path"]["ours"]["worst_db"], TARGETS["alias_rejection_db"], True),
        "pesq": verdict(drop, TARGETS["pesq_drop"], False),
        "pesq_drop": drop,
        "cpu": verdict(results["cpu"]["ours"]["core_percent"], TARGETS["cpu_core_percent"], False),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(
        f"\nfilter: {FILTER_TAPS}-tap Kaiser low-pass at 48 kHz, group delay {FILTER_DELAY_MS:.3f} ms each way; "
        f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores"
    )
    print("verdicts (ours):", ", ".join(f"{k} {v}" for k, v in results["verdicts"].items()))
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return results


if __name__ == "__main__":
    main()
