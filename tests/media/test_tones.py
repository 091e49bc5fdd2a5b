"""Tone generation: sines with continuous phase, DTMF and call progress."""

import itertools
import math
import struct

import pytest

from callcenter.media import tones


def samples(frames):
    pcm = b"".join(frames)
    return struct.unpack(f"<{len(pcm) // 2}h", pcm)


def level_at(values, frequency, sample_rate=8000):
    """The peak amplitude of C{frequency} in C{values} (a one-bin DFT)."""
    step = 2 * math.pi * frequency / sample_rate
    real = sum(v * math.cos(step * n) for n, v in enumerate(values))
    imaginary = sum(v * math.sin(step * n) for n, v in enumerate(values))
    return 2 * math.hypot(real, imaginary) / len(values)


def test_frames_are_whole_and_phase_is_continuous():
    frames = tones.tone_frames([1000], 100, 10000)
    assert len(frames) == 5 and all(len(frame) == 320 for frame in frames)
    expected = [round(10000 * math.sin(2 * math.pi * 1000 * n / 8000)) for n in range(800)]
    assert samples(frames) == tuple(expected)


def test_sum_of_sines_with_one_amplitude_each():
    frames = tones.tone_frames([697, 1209], 200, [8000, 4000])
    values = samples(frames)
    assert level_at(values, 697) == pytest.approx(8000, rel=0.01)
    assert level_at(values, 1209) == pytest.approx(4000, rel=0.01)
    assert level_at(values, 1000) < 300


def test_partial_last_frame_is_padded_with_silence():
    frames = tones.tone_frames([400], 30, 1000)
    assert len(frames) == 2
    assert samples(frames)[240:] == (0,) * 80


def test_other_rates_and_frame_lengths():
    frames = tones.tone_frames([440], 100, 1000, sample_rate=16000, frame_ms=10)
    assert len(frames) == 10 and all(len(frame) == 320 for frame in frames)
    with pytest.raises(ValueError):
        tones.tone_frames([440], 100, 1000, sample_rate=11025, frame_ms=10)
    with pytest.raises(ValueError):
        tones.tone_frames([440, 880], 100, [1000])


def test_clipping_rather_than_wrapping():
    values = samples(tones.tone_frames([500, 500], 20, 30000))
    assert max(values) == 32767 and min(values) == -32768


def test_dbm0_amplitude():
    assert tones.dbm0_amplitude(3.17) == pytest.approx(32636)
    assert tones.dbm0_amplitude(-20) == pytest.approx(tones.dbm0_amplitude(0) / 10)


@pytest.mark.parametrize("digit", "0123456789*#ABCD")
def test_dtmf_digits_carry_their_two_frequencies(digit):
    low, high = tones.DTMF_FREQUENCIES[digit]
    values = samples(tones.dtmf_tone(digit, duration_ms=100, level_dbm0=-10))
    expected = tones.dbm0_amplitude(-10)
    assert level_at(values, low) == pytest.approx(expected, rel=0.02)
    assert level_at(values, high) == pytest.approx(expected, rel=0.02)
    others = set(tones.DTMF_LOW_HZ + tones.DTMF_HIGH_HZ) - {low, high}
    assert all(level_at(values, other) < expected / 10 for other in others)


def test_dtmf_keypad_and_unknown_digit():
    assert tones.DTMF_FREQUENCIES["5"] == (770, 1336)
    assert tones.DTMF_FREQUENCIES["*"] == (941, 1209)
    assert tones.DTMF_FREQUENCIES["D"] == (941, 1633)
    assert tones.dtmf_tone("a") == tones.dtmf_tone("A")
    with pytest.raises(ValueError):
        tones.dtmf_tone("E")


def on_off_pattern(frames):
    """Runs of (sounding, milliseconds) at 8 kHz, by 10 ms chunks."""
    values = samples(frames)
    chunks = [any(values[i : i + 80]) for i in range(0, len(values), 80)]
    return [(sounding, 10 * len(list(run))) for sounding, run in itertools.groupby(chunks)]


def test_dial_tone_is_continuous_450_hz():
    frames = list(itertools.islice(tones.dial_tone(), 100))
    values = samples(frames)
    assert on_off_pattern(frames) == [(True, 2000)]
    assert level_at(values, 450) == pytest.approx(tones.dbm0_amplitude(-10), rel=0.01)
    # One 450 Hz cycle is 160 samples: every frame is the same.
    assert len(set(frames)) == 1


def test_ringback_cadence():
    frames = list(itertools.islice(tones.ringback_tone(), 500))
    assert on_off_pattern(frames) == [(True, 1000), (False, 4000)] * 2


def test_busy_cadence_across_frame_boundaries():
    frames = list(itertools.islice(tones.busy_tone(level_dbm0=-6), 140))
    assert all(len(frame) == 320 for frame in frames)
    # 350 ms is 17.5 frames: the cadence still holds to the sample.
    values = samples(frames)
    on = [any(values[i : i + 40]) for i in range(0, len(values), 40)]
    assert on == ([True] * 70 + [False] * 70) * 4
    assert level_at(values[:2800], 450) == pytest.approx(tones.dbm0_amplitude(-6), rel=0.01)
