"""
Synthesised speech made into telephone prompts: WAV parsing, resampling to
8 kHz with a Kaiser-windowed sinc low-pass (flat to 3.4 kHz, 60 dB down from
4.4 kHz), trimming the silence at both ends and levelling to -20 dBFS RMS
with peaks no higher than -3 dBFS.  Pure Python, no numpy: a pack is made
once, in seconds.
"""

import io
import math
import operator
import sys
import wave
from array import array

SAMPLE_RATE = 8000


def parse_wav(data):
    """
    (format tag, channels, rate, bits, data) of a RIFF WAVE in bytes.
    espeak-ng writing to a pipe cannot go back to fill in the sizes and
    leaves them near 2**31: the data runs to the end of what we have.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF WAVE")
    offset, fmt = 12, None
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], int.from_bytes(data[offset + 4 : offset + 8], "little")
        start = offset + 8
        if chunk == b"fmt " and size >= 16:
            fields = data[start : start + 16]
            fmt = (
                int.from_bytes(fields[0:2], "little"),
                int.from_bytes(fields[2:4], "little"),
                int.from_bytes(fields[4:8], "little"),
                int.from_bytes(fields[14:16], "little"),
            )
            if fmt[0] == 0xFFFE and size >= 26:
                # WAVE_FORMAT_EXTENSIBLE: the subformat begins with the tag.
                fmt = (int.from_bytes(data[start + 24 : start + 26], "little"),) + fmt[1:]
        elif chunk == b"data":
            if fmt is None:
                raise ValueError("data before fmt")
            return (*fmt, data[start : start + size])
        offset = start + size + size % 2
    raise ValueError("no data chunk")


def pcm_samples(data):
    samples = array("h")
    samples.frombytes(data[: len(data) // 2 * 2])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


# Signal processing.

# The resampler's low-pass: flat to 3.4 kHz (the telephone band), 60 dB
# down from 4.4 kHz, so what still folds back about 4 kHz lands above
# 3.6 kHz.
_PASS_HZ = 3400
_STOP_HZ = 4400
_ATTENUATION_DB = 60.0


def _bessel_i0(x):
    total = term = 1.0
    k = 0
    while term > 1e-12 * total:
        k += 1
        term *= (x / (2 * k)) ** 2
        total += term
    return total


_filters = {}


def _polyphase(rate_in, rate_out):
    """
    The resampler from C{rate_in} to C{rate_out}: (up, down, half, tables),
    output sample M{n} lying between input samples at time M{n*down/up}, and
    C{tables[p]} the 2*half taps for the fractional position M{p/up}, from a
    Kaiser-windowed sinc sized by Kaiser's formula for the attenuation and
    transition width above (82 taps from 22,050 Hz).  Each phase is scaled to
    a gain of exactly 1, so no phase is louder than another.
    """
    key = (rate_in, rate_out)
    if key in _filters:
        return _filters[key]
    common = math.gcd(rate_in, rate_out)
    up, down = rate_out // common, rate_in // common
    nyquist = min(rate_in, rate_out) / 2
    stop = min(_STOP_HZ, nyquist * 1.1)
    passband = min(_PASS_HZ, nyquist * 0.85)
    cutoff = (passband + stop) / 2 / rate_in
    width = (stop - passband) / rate_in
    length = math.ceil((_ATTENUATION_DB - 7.95) / (2.285 * 2 * math.pi * width))
    half = length // 2 + 1
    beta = 0.1102 * (_ATTENUATION_DB - 8.7)
    scale = _bessel_i0(beta)
    tables = []
    for phase in range(up):
        fraction = phase / up
        taps = []
        for j in range(-half + 1, half + 1):
            distance = j - fraction
            edge = distance / half
            window = _bessel_i0(beta * math.sqrt(max(0.0, 1.0 - edge * edge))) / scale
            if distance == 0:
                sinc = 2 * cutoff
            else:
                sinc = math.sin(2 * math.pi * cutoff * distance) / (math.pi * distance)
            taps.append(sinc * window)
        total = sum(taps)
        tables.append([tap / total for tap in taps])
    _filters[key] = (up, down, half, tables)
    return _filters[key]


if hasattr(math, "sumprod"):  # Python 3.12
    _dot = math.sumprod
else:

    def _dot(a, b):
        return sum(map(operator.mul, a, b))


def resample(samples, rate_in, rate_out=SAMPLE_RATE):
    """C{samples} (numbers) at C{rate_in} as a list of floats at C{rate_out}."""
    if rate_in == rate_out:
        return [float(sample) for sample in samples]
    up, down, half, tables = _polyphase(rate_in, rate_out)
    padded = [0.0] * half + list(samples) + [0.0] * half
    out = []
    for n in range(len(samples) * up // down):
        base, phase = divmod(n * down, up)
        # Input samples base-half+1 .. base+half, shifted by the padding.
        out.append(_dot(tables[phase], padded[base + 1 : base + 1 + 2 * half]))
    return out


_MARGIN_S = 0.050
_TRIM_BELOW_DB = 40.0  # under the loudest 10 ms: silence to trim
_ACTIVE_WITHIN_DB = 30.0  # of the loudest 20 ms: speech, counted in the level
_TARGET_RMS_DBFS = -20.0
_PEAK_DBFS = -3.0
_FADE_S = 0.005
_FULL_SCALE = 32767


def _frame_rms(samples, size):
    return [
        math.sqrt(sum(x * x for x in samples[i : i + size]) / len(samples[i : i + size]))
        for i in range(0, len(samples), size)
    ]


def trim(samples, rate, margin=_MARGIN_S):
    """
    C{samples} without their silence at either end beyond C{margin} seconds:
    silence is every 10 ms quieter than the loudest 10 ms by 40 dB or more.
    An empty list when it is all silence.
    """
    size = rate // 100
    levels = _frame_rms(samples, size)
    loudest = max(levels, default=0.0)
    if loudest < 1.0:
        return []
    threshold = loudest * 10 ** (-_TRIM_BELOW_DB / 20)
    loud = [i for i, level in enumerate(levels) if level > threshold]
    keep = int(margin * rate)
    start = max(0, loud[0] * size - keep)
    end = min(len(samples), (loud[-1] + 1) * size + keep)
    return samples[start:end]


def level(samples, rate):
    """
    C{samples} scaled so that speech is at -20 dBFS RMS (counting the 20 ms
    within 30 dB of the loudest, a simple active speech level), unless that
    would put a peak above -3 dBFS; faded in and out over 5 ms so nothing
    clicks where prompts meet; rounded to 16-bit.
    """
    size = rate // 50
    levels = _frame_rms(samples, size)
    loudest = max(levels, default=0.0)
    active = [x for x in levels if x >= loudest * 10 ** (-_ACTIVE_WITHIN_DB / 20)]
    rms = math.sqrt(sum(x * x for x in active) / len(active)) if active else 0.0
    peak = max((abs(x) for x in samples), default=0.0)
    if rms == 0 or peak == 0:
        return array("h", bytes(2 * len(samples)))
    gain = min(
        _FULL_SCALE * 10 ** (_TARGET_RMS_DBFS / 20) / rms,
        _FULL_SCALE * 10 ** (_PEAK_DBFS / 20) / peak,
    )
    out = [x * gain for x in samples]
    fade = min(int(_FADE_S * rate), len(out) // 2)
    for i in range(fade):
        ramp = 0.5 - 0.5 * math.cos(math.pi * i / fade)
        out[i] *= ramp
        out[-1 - i] *= ramp
    return array("h", (max(-_FULL_SCALE, min(_FULL_SCALE, round(x))) for x in out))


def telephone_audio(rate, samples):
    """
    Synthesised speech (16-bit mono at C{rate}) as 8 kHz 16-bit samples,
    trimmed and levelled; empty when it is all silence.  Trimmed once
    before resampling (with room to spare for the filter) to resample less.
    """
    rough = trim(samples, rate, margin=2 * _MARGIN_S)
    if not rough:
        return array("h")
    return level(trim(resample(rough, rate), SAMPLE_RATE), SAMPLE_RATE)


def wav_bytes(samples):
    if sys.byteorder == "big":
        samples = array("h", samples)
        samples.byteswap()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()
