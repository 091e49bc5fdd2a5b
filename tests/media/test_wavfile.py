"""Prompts read from WAV files, and recordings written to them."""

import os
import struct
import wave

import pytest

from callcenter.media import g711, tones
from callcenter.media.wavfile import PromptError, WavRecorder, load_prompt

TONE = b"".join(tones.tone_frames((1000,), 1000, 8000))  # 1 s of 1 kHz, linear


def write_pcm(path, pcm, rate=8000, channels=1, width=2):
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(pcm)
    return str(path)


def write_g711(path, tag, data, rate=8000, channels=1, extra_chunk=True):
    """A G.711 WAV as phones' tools write it: fmt with cbSize, fact, an odd-sized LIST."""
    fmt = struct.pack("<HHIIHHH", tag, channels, rate, rate * channels, channels, 8, 0)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if extra_chunk:
        info = b"INFOISFT\x03\x00\x00\x00ab\x00"
        chunks += b"LIST" + struct.pack("<I", len(info)) + info + b"\0"
    chunks += b"fact" + struct.pack("<II", 4, len(data))
    chunks += b"data" + struct.pack("<I", len(data)) + data
    with open(path, "wb") as out:
        out.write(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
    return str(path)


def test_pcm_prompt_to_both_laws(tmp_path):
    path = write_pcm(tmp_path / "tone.wav", TONE[: 2 * 8000 - 2 * 40])  # 0.995 s
    frames = load_prompt(path, "PCMU")
    assert len(frames) == 50
    assert all(len(f) == 160 for f in frames)
    assert b"".join(frames)[: 8000 - 40] == g711.linear_to_ulaw(TONE[: 2 * 8000 - 2 * 40])
    # The last frame is padded with μ-law silence.
    assert frames[-1][-40:] == b"\xff" * 40
    alaw = load_prompt(path, "pcma")
    assert b"".join(alaw)[:-40] == g711.linear_to_alaw(TONE[: 2 * 8000 - 2 * 40])
    assert alaw[-1][-40:] == b"\xd5" * 40


def test_ulaw_and_alaw_prompts(tmp_path):
    ulaw = g711.linear_to_ulaw(TONE)
    alaw = g711.linear_to_alaw(TONE)
    ulaw_path = write_g711(tmp_path / "u.wav", 7, ulaw)
    alaw_path = write_g711(tmp_path / "a.wav", 6, alaw, extra_chunk=False)
    assert b"".join(load_prompt(ulaw_path, "PCMU")) == ulaw
    assert b"".join(load_prompt(ulaw_path, "PCMA")) == g711.ulaw_to_alaw(ulaw)
    assert b"".join(load_prompt(alaw_path, "PCMA")) == alaw
    assert b"".join(load_prompt(alaw_path, "PCMU")) == g711.alaw_to_ulaw(alaw)


def test_cache_by_path_mtime_and_encoding(tmp_path):
    path = write_g711(tmp_path / "u.wav", 7, b"\x01" * 320)
    first = load_prompt(path, "PCMU")
    assert load_prompt(path, "PCMU") == first
    write_g711(path, 7, b"\x02" * 480)
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 10**9))
    assert load_prompt(path, "PCMU") == [b"\x02" * 160] * 3


@pytest.mark.parametrize(
    "shape, reason",
    [
        (dict(rate=16000), "16000 Hz"),
        (dict(channels=2), "2 channels"),
        (dict(width=1), "8-bit"),
    ],
)
def test_pcm_we_do_not_convert(tmp_path, shape, reason):
    path = write_pcm(tmp_path / "bad.wav", b"\0\0" * 800, **shape)
    with pytest.raises(PromptError) as caught:
        load_prompt(path, "PCMU")
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_other_failures_are_prompt_errors(tmp_path):
    with pytest.raises(PromptError, match="not a RIFF"):
        (tmp_path / "x.wav").write_bytes(b"hello, world")
        load_prompt(str(tmp_path / "x.wav"), "PCMU")
    with pytest.raises(PromptError):
        load_prompt(str(tmp_path / "missing.wav"), "PCMU")
    with pytest.raises(PromptError, match="format tag 85"):
        load_prompt(write_g711(tmp_path / "mp3.wav", 85, b"\0" * 160), "PCMU")
    with pytest.raises(PromptError, match="2 channels"):
        load_prompt(write_g711(tmp_path / "st.wav", 7, b"\0" * 160, channels=2), "PCMU")
    with pytest.raises(ValueError):
        load_prompt(write_g711(tmp_path / "ok.wav", 7, b"\0" * 160), "G722")


def read_header(path):
    with open(path, "rb") as file:
        data = file.read()
    riff, riff_size, wave_id = struct.unpack_from("<4sI4s", data)
    assert (riff, wave_id) == (b"RIFF", b"WAVE")
    fmt = struct.unpack_from("<4sIHHIIHHH", data, 12)
    fact = struct.unpack_from("<4sII", data, 38)
    data_id, data_size = struct.unpack_from("<4sI", data, 50)
    assert data_id == b"data"
    return riff_size, fmt, fact, data_size, data


@pytest.mark.parametrize("encoding, tag", [("PCMU", 7), ("PCMA", 6)])
def test_recorder_writes_a_correct_file(tmp_path, encoding, tag):
    path = str(tmp_path / "rec.wav")
    payloads = [bytes([n]) * 160 for n in range(60)]
    recorder = WavRecorder(path, encoding)
    for payload in payloads:
        recorder.write(payload)
    recorder.close()
    riff_size, fmt, fact, data_size, data = read_header(path)
    assert fmt == (b"fmt ", 18, tag, 1, 8000, 8000, 1, 8, 0)
    assert fact == (b"fact", 4, 9600)
    assert data_size == 9600
    assert riff_size == len(data) - 8
    assert data[58:] == b"".join(payloads)
    assert load_prompt(path, encoding) == payloads


def test_recorder_killed_leaves_a_file_playable_to_the_last_update(tmp_path):
    path = str(tmp_path / "rec.wav")
    recorder = WavRecorder(path, "PCMU", update_seconds=5.0)
    seconds = 7
    for n in range(seconds * 50):
        recorder.write(bytes([n % 256]) * 160)
    # No close: what is on disk is what a killed process leaves.
    riff_size, _, fact, data_size, data = read_header(path)
    assert data_size == 5 * 8000
    assert fact[2] == 5 * 8000
    assert riff_size == 58 - 8 + 5 * 8000
    assert len(data) >= 58 + data_size
    frames = load_prompt(path, "PCMU")
    assert len(frames) == 250
    assert frames[249] == bytes([249]) * 160
    recorder.close()
    assert read_header(path)[3] == seconds * 8000
