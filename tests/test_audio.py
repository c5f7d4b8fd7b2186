"""The bridge's pure audio path: mu-law, resampling, framing, mixing."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from shetphone.bridge.audio import (
    DISCORD_RATE,
    FILTER_DELAY_SAMPLES,
    FRAME_BYTES,
    PHONE_FRAME_BYTES,
    PHONE_RATE,
    SILENCE_FRAME,
    Downlink,
    Downsampler,
    Framer,
    Uplink,
    Upsampler,
    mix,
    to_mono,
    to_stereo,
    ulaw_decode,
    ulaw_encode,
)

# No deadline: tests assert results, not timing, and the machine is shared.
untimed = settings(deadline=None)

int16_samples = arrays(np.int16, st.integers(0, 2000))


def tone(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 16000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def spectrum_db(signal: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude spectrum in dB relative to its peak, Blackman-Harris windowed (sidelobes < -90 dB)."""
    n = len(signal)
    k = np.arange(n)
    window = (
        0.35875
        - 0.48829 * np.cos(2 * np.pi * k / n)
        + 0.14128 * np.cos(4 * np.pi * k / n)
        - 0.01168 * np.cos(6 * np.pi * k / n)
    )
    magnitude = np.abs(np.fft.rfft(signal * window))
    db = 20 * np.log10(np.maximum(magnitude, 1e-12) / magnitude.max())
    return np.fft.rfftfreq(n, 1 / rate), db


def assert_chunks_equal_whole(resampler, signal: np.ndarray, sizes: list[int]) -> None:
    """Feeding `signal` in chunks of `sizes` (cycled) gives what feeding it whole gives."""
    whole = resampler().process(signal)
    chunked_resampler = resampler()
    out, start, i = [], 0, 0
    while start < len(signal):
        size = sizes[i % len(sizes)]
        out.append(chunked_resampler.process(signal[start : start + size]))
        start += size
        i += 1
    chunked = np.concatenate(out)
    assert len(chunked) == len(whole)
    assert np.abs(chunked.astype(np.int32) - whole).max() <= 1  # BLAS may sum in another order


def test_frame_constants():
    assert FRAME_BYTES == 3840 == DISCORD_RATE // 50 * 4
    assert PHONE_FRAME_BYTES == 160 == PHONE_RATE // 50
    assert len(SILENCE_FRAME) == 3840 and not any(SILENCE_FRAME)


# --- mu-law


def test_ulaw_every_code_survives_a_round_trip():
    codes = bytes(range(256))
    back = ulaw_encode(ulaw_decode(codes))
    # 0x7F is mu-law's "negative zero"; it decodes to 0, which encodes as 0xFF.
    assert [c for c, b in zip(codes, back, strict=True) if c != b] == [0x7F]


@untimed
@given(int16_samples)
def test_ulaw_round_trip_error_is_within_a_quantisation_step(samples):
    decoded = ulaw_decode(ulaw_encode(samples))
    assert decoded.dtype == np.int16 and len(decoded) == len(samples)
    error = np.abs(decoded.astype(np.int32) - samples)
    # mu-law steps grow with level: 16 steps per octave segment, about |x| / 16.
    assert np.all(error <= np.abs(samples.astype(np.int32)) // 16 + 16)


# --- up-sampling 8 -> 48 kHz


@untimed
@given(int16_samples)
def test_upsampler_gives_six_samples_per_input(samples):
    assert len(Upsampler().process(samples)) == 6 * len(samples)


@settings(untimed, max_examples=50)
@given(arrays(np.int16, st.integers(1, 1600)), st.lists(st.integers(1, 400), min_size=1, max_size=5))
def test_upsampler_in_chunks_equals_whole(samples, sizes):
    assert_chunks_equal_whole(Upsampler, samples, sizes)


@pytest.mark.parametrize(("resampler", "frame"), [(Upsampler, 160), (Downsampler, 960)])
def test_resamplers_in_20ms_frames_equal_whole(resampler, frame):
    noise = (np.random.default_rng(1).standard_normal(50 * frame) * 4000).astype(np.int16)
    assert_chunks_equal_whole(resampler, noise, [frame])


def test_upsampled_1khz_tone_keeps_its_energy_at_1khz_and_images_50db_down():
    out = Upsampler().process(tone(1000, PHONE_RATE))[FILTER_DELAY_SAMPLES * 2 :]
    freqs, db = spectrum_db(out, DISCORD_RATE)
    assert abs(freqs[np.argmax(db)] - 1000) < 2
    images = np.abs(freqs - 1000) > 100  # everything but the tone's own main lobe
    assert db[images].max() <= -50
    # The images of 1 kHz sit at 8k +- 1k, 16k +- 1k, 24k - 1k: each well under -50 dB.
    for image in (7000, 9000, 15000, 17000, 23000):
        assert db[np.abs(freqs - image) < 20].max() <= -50


def test_image_of_the_band_edge_is_50db_down():
    # 3.4 kHz images to 4.6 kHz: the narrowest gap the filter has to make.
    out = Upsampler().process(tone(3400, PHONE_RATE))[FILTER_DELAY_SAMPLES * 2 :]
    freqs, db = spectrum_db(out, DISCORD_RATE)
    assert abs(freqs[np.argmax(db)] - 3400) < 2
    assert db[freqs >= 4600].max() <= -50


@pytest.mark.parametrize("freq", [300, 1000, 2000, 3000, 3400])
def test_upsampler_passes_the_phone_band_within_half_a_db(freq):
    signal = tone(freq, PHONE_RATE, amplitude=10000)
    out = Upsampler().process(signal)[FILTER_DELAY_SAMPLES * 2 :]
    gain_db = 20 * np.log10(np.sqrt(np.mean(out.astype(float) ** 2)) / (10000 / np.sqrt(2)))
    assert abs(gain_db) < 0.5


# --- down-sampling 48 -> 8 kHz


@settings(untimed, max_examples=50)
@given(arrays(np.int16, st.integers(1, 6000)), st.lists(st.integers(1, 2000), min_size=1, max_size=5))
def test_downsampler_in_chunks_equals_whole(samples, sizes):
    assert_chunks_equal_whole(Downsampler, samples, sizes)


def test_downsampler_keeps_the_remainder():
    down = Downsampler()
    produced = sum(len(down.process(np.zeros(n, np.int16))) for n in (1, 5, 7, 959, 960, 1000))
    total = 1 + 5 + 7 + 959 + 960 + 1000
    assert produced == -(-total // 6)  # output m sits at input sample 6m, for every 6m < total


def test_downsampled_10khz_tone_is_near_silent_in_the_phone_band():
    out = Downsampler().process(tone(10000, DISCORD_RATE, amplitude=16000))[FILTER_DELAY_SAMPLES:]
    rms = np.sqrt(np.mean(out.astype(float) ** 2))
    assert 20 * np.log10(max(rms, 1e-9) / (16000 / np.sqrt(2))) <= -50


@pytest.mark.parametrize("freq", [5000, 6000, 7600, 12000, 20000])
def test_tones_above_the_phone_band_do_not_fold_into_it(freq):
    out = Downsampler().process(tone(freq, DISCORD_RATE, amplitude=16000))[FILTER_DELAY_SAMPLES:]
    rms = np.sqrt(np.mean(out.astype(float) ** 2))
    assert rms < 16000 / np.sqrt(2) * 10 ** (-50 / 20)


def test_downsampler_passes_1khz():
    out = Downsampler().process(tone(1000, DISCORD_RATE, amplitude=10000))[FILTER_DELAY_SAMPLES:]
    gain_db = 20 * np.log10(np.sqrt(np.mean(out.astype(float) ** 2)) / (10000 / np.sqrt(2)))
    assert abs(gain_db) < 0.1


# --- stereo, mixing, framing


@untimed
@given(int16_samples)
def test_to_stereo_duplicates_and_to_mono_undoes_it(mono):
    stereo = to_stereo(mono)
    assert len(stereo) == 4 * len(mono)
    pairs = np.frombuffer(stereo, "<i2").reshape(-1, 2)
    assert np.array_equal(pairs[:, 0], mono) and np.array_equal(pairs[:, 1], mono)
    assert np.array_equal(to_mono(stereo), mono)


def test_to_mono_averages_the_channels_without_overflow():
    stereo = np.array([100, 200, 32767, 32767, -32768, -32768, 32767, -32768], "<i2").tobytes()
    assert to_mono(stereo).tolist() == [150, 32767, -32768, -1]


def test_to_mono_refuses_a_partial_sample_pair():
    with pytest.raises(ValueError):
        to_mono(b"\x00" * 6)


def test_mix_of_nothing_is_silence():
    assert mix([]) == SILENCE_FRAME


def test_mix_of_silent_calls_and_one_voice_is_that_voice():
    voice = np.arange(FRAME_BYTES // 2, dtype="<i2").tobytes()
    assert mix([SILENCE_FRAME, SILENCE_FRAME]) == SILENCE_FRAME
    assert mix([SILENCE_FRAME, voice, bytes(FRAME_BYTES)]) == voice


def test_mix_saturates_instead_of_wrapping():
    loud = np.full(FRAME_BYTES // 2, 30000, "<i2").tobytes()
    quiet_negative = np.full(FRAME_BYTES // 2, -30000, "<i2").tobytes()
    assert set(np.frombuffer(mix([loud, loud]), "<i2")) == {32767}
    assert set(np.frombuffer(mix([quiet_negative, quiet_negative, quiet_negative]), "<i2")) == {-32768}
    assert set(np.frombuffer(mix([loud, quiet_negative]), "<i2")) == {0}


@untimed
@given(st.lists(arrays(np.int16, 8, elements=st.integers(-32768, 32767)), min_size=1, max_size=4))
def test_mix_is_the_clipped_sum(sources):
    mixed = np.frombuffer(mix([s.astype("<i2").tobytes() for s in sources]), "<i2")
    expected = np.clip(np.sum([s.astype(np.int64) for s in sources], axis=0), -32768, 32767)
    assert np.array_equal(mixed, expected)


def test_mix_refuses_frames_of_different_lengths():
    with pytest.raises(ValueError):
        mix([bytes(8), bytes(4)])


@untimed
@given(st.lists(st.binary(max_size=9000), max_size=8), st.integers(1, 4000))
def test_framer_hands_back_exact_frames_in_order(chunks, size):
    framer = Framer(size)
    frames = [frame for chunk in chunks for frame in framer.push(chunk)]
    data = b"".join(chunks)
    assert all(len(frame) == size for frame in frames)
    assert b"".join(frames) == data[: len(data) // size * size]
    assert len(framer) == len(data) % size


# --- the two directions end to end


@untimed
@given(st.lists(st.integers(0, 500), max_size=10))
def test_uplink_gives_only_whole_20ms_frames(sizes):
    uplink = Uplink()
    frames = [f for n in sizes for f in uplink.process(bytes([0xFF]) * n)]
    assert all(len(f) == FRAME_BYTES for f in frames)
    assert len(frames) == sum(sizes) * 6 * 4 // FRAME_BYTES


def test_uplink_turns_each_20ms_payload_into_one_frame():
    uplink = Uplink()
    payload = ulaw_encode(tone(440, PHONE_RATE)[:160])
    for _ in range(5):
        assert [len(f) for f in uplink.process(payload)] == [FRAME_BYTES]


def test_downlink_turns_each_frame_into_one_20ms_payload():
    downlink = Downlink()
    for _ in range(5):
        assert [len(p) for p in downlink.process(SILENCE_FRAME)] == [PHONE_FRAME_BYTES]


@untimed
@given(st.lists(st.integers(0, 2000).map(lambda n: n * 4), max_size=10))
def test_downlink_gives_only_whole_20ms_payloads(sizes):
    downlink = Downlink()
    payloads = [p for n in sizes for p in downlink.process(bytes(n))]
    assert all(len(p) == PHONE_FRAME_BYTES for p in payloads)
    assert len(payloads) == -(-sum(sizes) // 4 // 6) // PHONE_FRAME_BYTES


def test_up_and_down_again_gives_the_call_back_26_samples_late():
    # The echo target's path: the filter delays 78 samples at 48 kHz each way, 26 at 8 kHz in all.
    rng = np.random.default_rng(7)
    voice = np.rint(np.convolve(rng.standard_normal(PHONE_RATE), np.ones(4) / 4, "same") * 6000).astype(np.int16)
    uplink, downlink = Uplink(), Downlink()
    back = b""
    for start in range(0, len(voice), 160):
        for frame in uplink.process(ulaw_encode(voice[start : start + 160])):
            back += b"".join(downlink.process(frame))
    received = ulaw_decode(back).astype(float)
    delay = 2 * FILTER_DELAY_SAMPLES // 6
    assert delay == 26
    sent = voice[: len(voice) - delay].astype(float)
    assert np.corrcoef(sent, received[delay:])[0, 1] > 0.98
