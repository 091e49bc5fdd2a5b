"""
Tones as frames of 16-bit little-endian linear PCM: sums of sines with
the phase carried across frames, DTMF digits, and the Chinese call-progress
tones (GB 3380: 450 Hz in cadences).

Frames are computed once per distinct tone and cached; a call-progress
generator cycles through one precomputed period of its cadence.
"""

import functools
import itertools
import math
import struct

# G.711 §2/§3 place the overload point 3.17 dB (μ-law) above the level of a
# 0 dBm0 sine; 32636 is the μ-law overload on the 16-bit scale.
_DBM0_PEAK = 32636 / 10 ** (3.17 / 20)

DTMF_LOW_HZ = (697, 770, 852, 941)
DTMF_HIGH_HZ = (1209, 1336, 1477, 1633)
# ITU-T Q.23: rows are the low group, columns the high group.
DTMF_KEYPAD = ("123A", "456B", "789C", "*0#D")
DTMF_FREQUENCIES = {
    key: (DTMF_LOW_HZ[row], DTMF_HIGH_HZ[column])
    for row, keys in enumerate(DTMF_KEYPAD)
    for column, key in enumerate(keys)
}

# A usual level for signal tones; callers may pass their network's.
CALL_PROGRESS_LEVEL_DBM0 = -10
CALL_PROGRESS_HZ = 450


def dbm0_amplitude(level_dbm0):
    """The peak 16-bit sample value of a sine at C{level_dbm0}."""
    return _DBM0_PEAK * 10 ** (level_dbm0 / 20)


def _frame_samples(sample_rate, frame_ms):
    samples = sample_rate * frame_ms // 1000
    if samples * 1000 != sample_rate * frame_ms:
        raise ValueError(f"{frame_ms} ms is not a whole number of samples at {sample_rate} Hz")
    return samples


def _amplitudes(frequencies, amplitude):
    if isinstance(amplitude, (int, float)):
        return (amplitude,) * len(frequencies)
    if len(amplitude) != len(frequencies):
        raise ValueError("one amplitude per frequency")
    return tuple(amplitude)


def _pack(samples):
    clipped = [max(-32768, min(32767, round(value))) for value in samples]
    return struct.pack(f"<{len(clipped)}h", *clipped)


def _sine_sum(frequencies, amplitudes, sample_rate, start, count):
    steps = [2 * math.pi * frequency / sample_rate for frequency in frequencies]
    return [
        sum(peak * math.sin(step * n) for step, peak in zip(steps, amplitudes))
        for n in range(start, start + count)
    ]


@functools.lru_cache(maxsize=256)
def _tone(frequencies, amplitudes, duration_ms, sample_rate, frame_ms):
    per_frame = _frame_samples(sample_rate, frame_ms)
    total = sample_rate * duration_ms // 1000
    # The last frame is filled out with silence so every frame is whole.
    samples = _sine_sum(frequencies, amplitudes, sample_rate, 0, total)
    samples += [0] * (-total % per_frame)
    pcm = _pack(samples)
    step = 2 * per_frame
    return tuple(pcm[offset : offset + step] for offset in range(0, len(pcm), step))


def tone_frames(frequencies, duration_ms, amplitude, sample_rate=8000, frame_ms=20):
    """
    C{duration_ms} of the sum of sines at C{frequencies} (Hz), as frames of
    C{frame_ms}.  C{amplitude} is each sine's peak sample value, one for all
    or one per frequency (see L{dbm0_amplitude}).
    """
    frequencies = tuple(frequencies)
    return list(_tone(frequencies, _amplitudes(frequencies, amplitude), duration_ms, sample_rate, frame_ms))


def dtmf_tone(digit, duration_ms=100, level_dbm0=-7, sample_rate=8000, frame_ms=20):
    """The frames of DTMF C{digit}, both tones at C{level_dbm0} each."""
    try:
        frequencies = DTMF_FREQUENCIES[digit.upper()]
    except KeyError:
        raise ValueError(f"{digit!r} is not a DTMF digit") from None
    return tone_frames(frequencies, duration_ms, dbm0_amplitude(level_dbm0), sample_rate, frame_ms)


@functools.lru_cache(maxsize=16)
def _cadence_period(frequencies, amplitude, cadence_ms, sample_rate, frame_ms):
    """
    One whole number of cadence cycles that is also a whole number of
    frames, so the frames can simply repeat.
    """
    per_frame = _frame_samples(sample_rate, frame_ms)
    amplitudes = _amplitudes(frequencies, amplitude)
    cycle = []
    for on_ms, off_ms in cadence_ms:
        on = sample_rate * on_ms // 1000
        cycle += _sine_sum(frequencies, amplitudes, sample_rate, len(cycle), on)
        cycle += [0] * (sample_rate * off_ms // 1000)
    repeats = per_frame // math.gcd(len(cycle), per_frame)
    pcm = _pack(cycle * repeats)
    step = 2 * per_frame
    return tuple(pcm[offset : offset + step] for offset in range(0, len(pcm), step))


def cadence_frames(
    frequencies, cadence_ms, level_dbm0=CALL_PROGRESS_LEVEL_DBM0, sample_rate=8000, frame_ms=20
):
    """
    An endless iterator of frames playing C{frequencies} in C{cadence_ms},
    a sequence of (on, off) pairs in milliseconds; (on, 0) is continuous.
    The phase restarts with each repetition of the period, which is
    seamless when the frequencies complete whole cycles in it, as 450 Hz
    does at 8 kHz in every 160 samples.
    """
    period = _cadence_period(
        tuple(frequencies), dbm0_amplitude(level_dbm0), tuple(cadence_ms), sample_rate, frame_ms
    )
    return itertools.cycle(period)


def dial_tone(**options):
    """450 Hz, continuous (GB 3380)."""
    return cadence_frames((CALL_PROGRESS_HZ,), ((1000, 0),), **options)


def ringback_tone(**options):
    """450 Hz, 1 s on, 4 s off (GB 3380)."""
    return cadence_frames((CALL_PROGRESS_HZ,), ((1000, 4000),), **options)


def busy_tone(**options):
    """450 Hz, 0.35 s on, 0.35 s off (GB 3380)."""
    return cadence_frames((CALL_PROGRESS_HZ,), ((350, 350),), **options)
