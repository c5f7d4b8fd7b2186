"""The jitter buffer between network arrival and the 20 ms playout clock."""

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shetphone.bridge.audio import FRAME_BYTES, SILENCE_FRAME
from shetphone.bridge.jitter import JitterBuffer

# No deadline: tests assert results, not timing, and the machine is shared.
untimed = settings(deadline=None)

SIZE = 8  # small frames keep the examples readable; the logic does not depend on size


def frame(n: int) -> bytes:
    return bytes([n + 1]) * SIZE


def test_defaults_are_20ms_discord_frames_with_40ms_prefill():
    buffer = JitterBuffer()
    assert (buffer.prefill_frames, buffer.max_frames, buffer.frame_bytes) == (2, 10, FRAME_BYTES)
    assert buffer.pop() == SILENCE_FRAME


def test_silence_until_prefilled_then_frames_in_order():
    buffer = JitterBuffer(prefill_frames=2, frame_bytes=SIZE)
    buffer.push(frame(0))
    assert buffer.pop() == bytes(SIZE)  # one frame is not yet 40 ms
    assert len(buffer) == 1
    buffer.push(frame(1))
    assert [buffer.pop(), buffer.pop()] == [frame(0), frame(1)]
    assert buffer.underruns == 0


def test_underrun_plays_silence_counts_and_prefills_again():
    buffer = JitterBuffer(prefill_frames=2, frame_bytes=SIZE)
    buffer.push(frame(0))
    buffer.push(frame(1))
    assert [buffer.pop(), buffer.pop()] == [frame(0), frame(1)]
    assert buffer.pop() == bytes(SIZE)
    assert buffer.underruns == 1
    buffer.push(frame(2))
    assert buffer.pop() == bytes(SIZE)  # waiting for the prefill again, not playing a lone frame
    assert buffer.underruns == 1  # still one gap, not one per silent tick
    buffer.push(frame(3))
    assert [buffer.pop(), buffer.pop()] == [frame(2), frame(3)]


def test_without_prefill_a_frame_plays_at_once():
    buffer = JitterBuffer(prefill_frames=0, frame_bytes=SIZE)
    buffer.push(frame(0))
    assert buffer.pop() == frame(0)
    assert buffer.pop() == bytes(SIZE)
    assert buffer.underruns == 1


def test_full_buffer_drops_the_oldest_frame():
    buffer = JitterBuffer(prefill_frames=2, max_frames=3, frame_bytes=SIZE)
    for n in range(5):
        buffer.push(frame(n))
    assert len(buffer) == 3
    assert buffer.dropped == 2
    assert [buffer.pop() for _ in range(3)] == [frame(2), frame(3), frame(4)]


def test_refuses_a_frame_of_the_wrong_size():
    buffer = JitterBuffer(frame_bytes=SIZE)
    with pytest.raises(ValueError):
        buffer.push(bytes(SIZE - 1))
    assert len(buffer) == 0


@pytest.mark.parametrize(("prefill", "most"), [(-1, 10), (11, 10), (0, 0)])
def test_refuses_impossible_sizes(prefill, most):
    with pytest.raises(ValueError):
        JitterBuffer(prefill_frames=prefill, max_frames=most)


@untimed
@given(
    st.lists(st.booleans(), max_size=200),
    st.integers(0, 4),
    st.integers(4, 12),
)
def test_pop_is_never_empty_and_the_buffer_stays_bounded(operations, prefill, most):
    """Any interleaving of arrivals (True) and clock ticks (False)."""
    buffer = JitterBuffer(prefill_frames=prefill, max_frames=most, frame_bytes=SIZE)
    pushed, played = 0, []
    for arrival in operations:
        if arrival:
            buffer.push(frame(pushed))
            pushed += 1
        else:
            out = buffer.pop()
            assert len(out) == SIZE
            if out != bytes(SIZE):
                played.append(out[0] - 1)
        assert len(buffer) <= most
    # Every frame is played once, dropped, or still queued, and order is kept.
    assert len(played) + buffer.dropped + len(buffer) == pushed
    assert all(a < b for a, b in pairwise(played))


def test_a_frame_left_standing_at_every_pop_is_trimmed_after_trim_after_pops():
    buffer = JitterBuffer(prefill_frames=2, frame_bytes=SIZE, trim_after=3)
    buffer.push(frame(0))
    buffer.push(frame(1))  # the prefill leaves one frame standing behind each pop
    played = []
    for n in range(2, 8):
        played.append(buffer.pop())
        buffer.push(frame(n))
    assert played == [frame(0), frame(1), frame(2), frame(4), frame(5), frame(6)]  # frame 3 trimmed
    assert buffer.trimmed == 1
    assert len(buffer) == 1  # each frame is now popped at the first tick after it arrives
    assert buffer.underruns == 0


def test_a_standing_frame_the_arrivals_need_is_never_trimmed():
    buffer = JitterBuffer(prefill_frames=1, frame_bytes=SIZE, trim_after=3)
    for n in range(50):  # frames arrive in pairs every other tick: the spare one is needed
        buffer.push(frame(2 * n % 250))
        buffer.push(frame((2 * n + 1) % 250))
        assert buffer.pop() != bytes(SIZE)
        assert buffer.pop() != bytes(SIZE)
    assert (buffer.trimmed, buffer.underruns) == (0, 0)


def test_a_backlog_is_trimmed_sooner_than_the_guard_frame():
    buffer = JitterBuffer(prefill_frames=1, frame_bytes=SIZE, trim_after=6, trim_backlog_after=2)
    for n in range(3):  # a burst: three frames, then one per pop
        buffer.push(frame(n))
    depths = []
    for n in range(3, 12):
        buffer.pop()
        depths.append(len(buffer))
        buffer.push(frame(n))
    # two left standing: trimmed after two pops; then one: after six more
    assert depths == [2, 1, 1, 1, 1, 1, 1, 0, 0]
    assert buffer.trimmed == 2


@pytest.mark.parametrize("keyword", ["trim_after", "trim_backlog_after"])
def test_trim_counts_must_be_positive(keyword):
    with pytest.raises(ValueError):
        JitterBuffer(**{keyword: 0})


@untimed
@given(st.lists(st.booleans(), max_size=300), st.integers(0, 3), st.integers(1, 5), st.integers(1, 5))
def test_trimming_loses_no_frame_uncounted_and_keeps_order(operations, prefill, trim_after, backlog_after):
    buffer = JitterBuffer(
        prefill_frames=prefill, max_frames=8, frame_bytes=SIZE, trim_after=trim_after, trim_backlog_after=backlog_after
    )
    pushed, played = 0, []
    for arrival in operations:
        if arrival:
            buffer.push(frame(pushed % 250))
            pushed += 1
        else:
            out = buffer.pop()
            if out != bytes(SIZE):
                played.append(out)
    assert len(played) + buffer.dropped + buffer.trimmed + len(buffer) == pushed


def test_the_first_frame_plays_after_the_start_prefill_and_later_ones_after_the_full_one():
    buffer = JitterBuffer(prefill_frames=2, start_prefill_frames=1, frame_bytes=SIZE)
    buffer.push(frame(0))
    assert buffer.pop() == frame(0)  # no jitter seen yet: no wait
    assert buffer.pop() == bytes(SIZE)  # ran dry: from now on the guard is two frames
    buffer.push(frame(1))
    assert buffer.pop() == bytes(SIZE)
    buffer.push(frame(2))
    assert [buffer.pop(), buffer.pop()] == [frame(1), frame(2)]
    with pytest.raises(ValueError):
        JitterBuffer(max_frames=4, start_prefill_frames=5)
