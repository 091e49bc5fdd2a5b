"""G.711 μ-law and A-law against the standard's values and properties."""

import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter.media import g711

ALL_CODES = bytes(range(256))
EVERY_SAMPLE = struct.pack("<65536h", *range(-32768, 32768))


def samples(pcm):
    return struct.unpack(f"<{len(pcm) // 2}h", pcm)


def pcm(*values):
    return struct.pack(f"<{len(values)}h", *values)


@pytest.mark.parametrize(
    "code, value",
    [(0x00, -32124), (0x80, 32124), (0x7F, 0), (0xFF, 0), (0x7E, -8), (0xFE, 8), (0x70, -120), (0xF0, 120)],
)
def test_ulaw_decode_reference_values(code, value):
    assert samples(g711.ulaw_to_linear(bytes([code]))) == (value,)


@pytest.mark.parametrize(
    "code, value",
    [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xD4, 24), (0xC5, 264), (0x45, -264)],
)
def test_alaw_decode_reference_values(code, value):
    assert samples(g711.alaw_to_linear(bytes([code]))) == (value,)


@pytest.mark.parametrize("encode", [g711._ulaw_encode, g711._alaw_encode])
def test_the_encode_tables_built_from_runs_hold_each_samples_code(encode):
    expected = tuple(encode(index - 0x10000 if index & 0x8000 else index) for index in range(0x10000))
    assert g711._encode_table(encode) == expected


def test_silence():
    assert g711.linear_to_ulaw(pcm(0, 0)) == bytes([g711.ULAW_SILENCE] * 2) == b"\xff\xff"
    assert g711.linear_to_alaw(pcm(0, 0)) == bytes([g711.ALAW_SILENCE] * 2) == b"\xd5\xd5"
    assert g711.ulaw_to_alaw(b"\xff") == b"\xd5"
    # A-law has no zero: its silence is the smallest positive level, +8,
    # which μ-law has too.
    assert g711.alaw_to_ulaw(b"\xd5") == b"\xfe"


def test_clipping_at_full_scale():
    assert g711.linear_to_ulaw(pcm(32767, -32768)) == b"\x80\x00"
    assert g711.linear_to_alaw(pcm(32767, -32768)) == b"\xaa\x2a"


def test_ulaw_encode_of_decode_is_identity_but_negative_zero():
    again = g711.linear_to_ulaw(g711.ulaw_to_linear(ALL_CODES))
    differing = [(code, again[code]) for code in range(256) if again[code] != code]
    assert differing == [(0x7F, 0xFF)]


def test_alaw_encode_of_decode_is_identity():
    assert g711.linear_to_alaw(g711.alaw_to_linear(ALL_CODES)) == ALL_CODES


@pytest.mark.parametrize(
    "encode, decode",
    [(g711.linear_to_ulaw, g711.ulaw_to_linear), (g711.linear_to_alaw, g711.alaw_to_linear)],
)
def test_round_trip_is_monotonic_and_close(encode, decode):
    out = samples(decode(encode(EVERY_SAMPLE)))
    assert all(a <= b for a, b in itertools.pairwise(out))
    # Logarithmic companding: the error grows with the level, a step of at
    # most 1/16 of it (plus the smallest step) until full scale clips.
    for value, decoded in zip(range(-32768, 32768), out):
        if abs(value) <= 32000:
            assert abs(decoded - value) <= abs(value) / 32 + 16, value


def test_decode_tables_are_symmetric():
    ulaw = samples(g711.ulaw_to_linear(ALL_CODES))
    alaw = samples(g711.alaw_to_linear(ALL_CODES))
    assert all(ulaw[code] == -ulaw[code | 0x80] for code in range(128))
    assert all(alaw[code] == -alaw[code | 0x80] for code in range(128))


def test_transcoding_agrees_with_going_through_linear():
    assert g711.ulaw_to_alaw(ALL_CODES) == g711.linear_to_alaw(g711.ulaw_to_linear(ALL_CODES))
    assert g711.alaw_to_ulaw(ALL_CODES) == g711.linear_to_ulaw(g711.alaw_to_linear(ALL_CODES))


@pytest.mark.parametrize(
    "there, back, decode",
    [
        (g711.ulaw_to_alaw, g711.alaw_to_ulaw, g711.ulaw_to_linear),
        (g711.alaw_to_ulaw, g711.ulaw_to_alaw, g711.alaw_to_linear),
    ],
)
def test_transcoding_round_trip_lands_on_the_level_or_its_neighbour(there, back, decode):
    levels = sorted(set(samples(decode(ALL_CODES))))
    rank = {level: position for position, level in enumerate(levels)}
    before = samples(decode(ALL_CODES))
    after = samples(decode(back(there(ALL_CODES))))
    assert all(abs(rank[a] - rank[b]) <= 1 for a, b in zip(before, after))
    assert sum(a != b for a, b in zip(before, after)) <= 16


def test_frame_sizes():
    frame = pcm(*range(-8000, 8000, 100))
    assert len(g711.linear_to_ulaw(frame)) == 160
    assert len(g711.ulaw_to_linear(bytes(160))) == 320
    assert g711.linear_to_alaw(b"") == b"" and g711.alaw_to_linear(b"") == b""


def test_odd_length_linear_is_rejected():
    with pytest.raises(ValueError):
        g711.linear_to_ulaw(b"\x00\x00\x00")


def test_accepts_bytearray_and_memoryview():
    frame = pcm(1000, -1000)
    assert g711.linear_to_ulaw(bytearray(frame)) == g711.linear_to_ulaw(memoryview(frame))
    assert g711.ulaw_to_linear(bytearray(b"\x10")) == g711.ulaw_to_linear(b"\x10")


@given(st.binary(max_size=400))
def test_companded_audio_survives_any_number_of_round_trips(codes):
    for to_linear, from_linear in (
        (g711.ulaw_to_linear, g711.linear_to_ulaw),
        (g711.alaw_to_linear, g711.linear_to_alaw),
    ):
        once = to_linear(codes)
        assert to_linear(from_linear(once)) == once
