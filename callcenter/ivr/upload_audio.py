"""
Uploaded recordings (bulletins sent over HTTP) made into what the phone
side plays: a WAV of 16-bit PCM or G.711 (µ-law, A-law), mono or stereo,
at one of the common rates, becomes an 8 kHz mono 16-bit WAV, trimmed of
silence at both ends and levelled like the prompts
(L{callcenter.ivr.telephone_audio}), which L{callcenter.media.wavfile}
plays in either G.711 law.

L{inspect} reads only the header (cheap: the HTTP side refuses a wrong
upload before any work); L{convert} does the work, seconds of pure Python
for a long recording at 44.1 kHz, so the server runs it in a child process
(C{python -m callcenter.ivr.upload_audio}, L{main}): a busy thread would
hold the GIL against the reactor carrying the calls' media.

Long recordings are worked on in blocks of about a second, kept in arrays,
never as one Python list of millions of numbers.
"""

import json
import math
import sys
from array import array
from dataclasses import dataclass

from callcenter.ivr.telephone_audio import SAMPLE_RATE, level, parse_wav, resample, trim, wav_bytes
from callcenter.media import g711

__all__ = [
    "MAX_DURATION_SECONDS",
    "RATES",
    "AudioRefused",
    "WavInfo",
    "convert",
    "inspect",
    "main",
    "resample_long",
]

# The longest an editor may record by phone too (information flow's
# max_recording_seconds).
MAX_DURATION_SECONDS = 300
RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
# Loudest 10 ms quieter than -60 dBFS: no speech, whatever the noise floor.
_SILENT_RMS = 32767 * 10 ** (-60 / 20)
# As by phone: less sound than this after trimming is nothing recorded.
_SHORTEST_SOUND_S = 0.5
# Input samples worked on beyond each block's edges, so that every output
# sample sees the same input as when resampled in one go: more than half
# the resampler's filter (88 taps at 48 kHz; a test checks the equality).
_OVERLAP = 1024

# Format tags (RFC 2361 appendix A); EXTENSIBLE is resolved by parse_wav.
_PCM, _ALAW, _MULAW = 1, 6, 7
_ENCODINGS = {(_PCM, 16): "pcm16", (_MULAW, 8): "mulaw", (_ALAW, 8): "alaw"}
_REFUSED_EXIT = 2


class AudioRefused(ValueError):
    """An upload we do not take, with its HTTP status and messages."""

    def __init__(self, status, code, zh, en):
        super().__init__(en)
        self.status = status
        self.code = code
        self.zh = zh
        self.en = en

    def as_json(self):
        return {"status": self.status, "code": self.code, "zh": self.zh, "en": self.en}


def _unsupported(zh, en):
    return AudioRefused(415, "unsupported_audio", f"{zh}；请上传 16 位 PCM、μ-law 或 A-law 的 WAV（单声道或立体声）",
                        f"{en}: send a WAV of 16-bit PCM, mu-law or A-law, mono or stereo")


@dataclass(frozen=True)
class WavInfo:
    encoding: str  # "pcm16", "mulaw" or "alaw"
    channels: int
    rate: int
    frames: int
    # The data chunk (a memoryview of the upload: nothing copied).
    data: object

    @property
    def duration_ms(self):
        return self.frames * 1000 // self.rate


def inspect(upload, max_duration_seconds=MAX_DURATION_SECONDS):
    """
    The L{WavInfo} of C{upload} (bytes), from its header alone.

    @raise AudioRefused: 415 not a WAV or not one we convert, 400 a broken
        or empty one, 413 one longer than C{max_duration_seconds}.
    """
    view = memoryview(upload)
    if len(view) < 12 or view[:4] != b"RIFF" or view[8:12] != b"WAVE":
        raise AudioRefused(415, "not_wav", "上传的内容不是 WAV 音频", "the upload is not a WAV (RIFF WAVE) file")
    try:
        tag, channels, rate, bits, data = parse_wav(view)
    except ValueError as e:
        raise AudioRefused(400, "invalid_wav", "WAV 文件已损坏（缺少 fmt 或 data 块）",
                           f"the WAV file is broken: {e}")
    encoding = _ENCODINGS.get((tag, bits))
    if encoding is None:
        if tag == _PCM:
            raise _unsupported(f"不支持 {bits} 位 PCM", f"{bits}-bit PCM is not supported")
        raise _unsupported(f"不支持格式标记 {tag} 的编码", f"the encoding of format tag {tag} is not supported")
    if channels not in (1, 2):
        raise _unsupported(f"不支持 {channels} 个声道", f"{channels} channels are not supported")
    if rate not in RATES:
        rates = ", ".join(str(r) for r in RATES)
        raise AudioRefused(415, "unsupported_audio", f"不支持 {rate} Hz 采样率，可用：{rates}",
                           f"a sample rate of {rate} Hz is not supported; use one of {rates}")
    frame_bytes = channels * bits // 8
    frames = len(data) // frame_bytes
    if frames == 0:
        raise AudioRefused(400, "empty_audio", "WAV 文件里没有音频", "the WAV file holds no audio")
    if frames > max_duration_seconds * rate:
        raise AudioRefused(413, "audio_too_long",
                           f"录音不能超过 {max_duration_seconds // 60} 分钟",
                           f"a recording must not last more than {max_duration_seconds // 60} minutes")
    return WavInfo(encoding, channels, rate, frames, data[: frames * frame_bytes])


_DECODE = {"mulaw": g711.ulaw_to_linear, "alaw": g711.alaw_to_linear}


def _mono(info):
    """The upload's samples as one array of 16-bit samples, stereo averaged, a second at a time."""
    frame_bytes = info.channels * (2 if info.encoding == "pcm16" else 1)
    step = info.rate * frame_bytes
    mono = array("h")
    for offset in range(0, len(info.data), step):
        chunk = info.data[offset : offset + step]
        samples = array("h")
        if info.encoding == "pcm16":
            samples.frombytes(chunk)
            if sys.byteorder == "big":
                samples.byteswap()
        else:
            samples.frombytes(_DECODE[info.encoding](bytes(chunk)))
            if sys.byteorder == "big":
                samples.byteswap()
        if info.channels == 2:
            mono.extend(map(_average, samples[0::2], samples[1::2]))
        else:
            mono.extend(samples)
    return mono


def _average(left, right):
    return (left + right) >> 1


def _loudest_rms(samples, size):
    loudest = 0.0
    for start in range(0, len(samples), size):
        frame = samples[start : start + size]
        loudest = max(loudest, math.sqrt(sum(x * x for x in frame) / len(frame)))
    return loudest


def resample_long(samples, rate_in, block=None):
    """
    C{samples} at C{rate_in} as an array of floats at 8 kHz, the same as
    L{resample} gives, worked on in blocks of about C{block} input samples
    (a second's by default).
    """
    if rate_in == SAMPLE_RATE:
        return array("d", samples)
    common = math.gcd(rate_in, SAMPLE_RATE)
    up, down = SAMPLE_RATE // common, rate_in // common
    # Blocks and margins are whole multiples of C{down}, so each block's
    # first output sample is a whole output sample of the full signal.
    step = down * max(1, -(-(block or rate_in) // down))
    margin = down * -(-_OVERLAP // down)
    out = array("d")
    for start in range(0, len(samples), step):
        low = max(0, start - margin)
        high = min(len(samples), start + step + margin)
        resampled = resample(samples[low:high], rate_in)
        skip = (start - low) // down * up
        out.extend(resampled[skip : skip + step // down * up])
    return out


def _silent():
    return AudioRefused(400, "silent_audio", f"录音没有声音，或有声部分不足 {_SHORTEST_SOUND_S} 秒",
                        f"the recording is silent, or holds less than {_SHORTEST_SOUND_S} s of sound")


def convert(upload):
    """
    C{upload} (a WAV in bytes) as the bytes of an 8 kHz mono 16-bit WAV,
    trimmed and levelled.

    @raise AudioRefused: as L{inspect} (without a duration limit), or 400
        when it is silent.
    """
    info = inspect(upload, max_duration_seconds=math.inf)
    samples = _mono(info)
    if _loudest_rms(samples, info.rate // 100) < _SILENT_RMS:
        raise _silent()
    # A rough trim first, with room for the filter, to resample less.
    rough = trim(samples, info.rate, margin=0.1)
    del samples
    speech = trim(resample_long(rough, info.rate), SAMPLE_RATE)
    if len(speech) < _SHORTEST_SOUND_S * SAMPLE_RATE:
        raise _silent()
    return wav_bytes(level(speech, SAMPLE_RATE))


def main(stdin=None, stdout=None):
    """
    The child process: a WAV on standard input, the converted WAV on
    standard output (exit 0), or a refusal as one JSON object (exit 2).
    """
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else sys.stdout.buffer
    try:
        converted = convert(stdin.read())
    except AudioRefused as refused:
        stdout.write(json.dumps(refused.as_json(), ensure_ascii=False).encode("utf-8"))
        stdout.flush()
        return _REFUSED_EXIT
    stdout.write(converted)
    stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
