"""
ITU-T G.711 μ-law and A-law for whole frames of 16-bit little-endian
linear PCM.

Every conversion is a table look-up built once at import (about 70 ms):
256-entry decode tables, 65536-entry encode tables indexed by the 16-bit
sample, and 256-entry transcoding tables applied with ``bytes.translate``.
Decoding splits each output sample into its low and high byte so that
two ``translate`` calls and two slice assignments do the whole frame in C;
encoding maps a tuple look-up over the samples, about 60 ns each.
"""

import struct
import sys
from array import array

ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5

# G.711 Table 2: μ-law codes are sent with all bits inverted; the 14-bit
# magnitude carries a bias of 33 (132 on the 16-bit scale) so that every
# segment starts on a power of two.
_ULAW_BIAS = 0x84
_ULAW_CLIP = 32635
# G.711 Table 1: A-law codes are sent with the even bits inverted.
_ALAW_EVEN_BITS = 0x55


def _ulaw_decode(code):
    code = ~code & 0xFF
    exponent = (code >> 4) & 0x07
    magnitude = (((code & 0x0F) << 3) + _ULAW_BIAS) << exponent
    magnitude -= _ULAW_BIAS
    return -magnitude if code & 0x80 else magnitude


def _ulaw_encode(sample):
    sign = 0x80 if sample < 0 else 0
    magnitude = min(-sample if sign else sample, _ULAW_CLIP) + _ULAW_BIAS
    exponent = magnitude.bit_length() - 8
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _alaw_decode(code):
    code ^= _ALAW_EVEN_BITS
    exponent = (code >> 4) & 0x07
    # G.711 Table 1: the decoder output is the middle of the interval.
    magnitude = ((code & 0x0F) << 4) + 8
    if exponent:
        magnitude = (magnitude + 0x100) << (exponent - 1)
    return magnitude if code & 0x80 else -magnitude


def _alaw_encode(sample):
    # A-law quantises 13 bits; the sign bit is set for positive samples.
    if sample >= 0:
        sign = 0x80
        magnitude = sample >> 3
    else:
        sign = 0
        magnitude = (-sample - 1) >> 3
    exponent = max(magnitude.bit_length() - 5, 0)
    if exponent > 7:
        code = sign | 0x7F
    elif exponent:
        code = sign | (exponent << 4) | ((magnitude >> exponent) & 0x0F)
    else:
        code = sign | (magnitude >> 1)
    return code ^ _ALAW_EVEN_BITS


def _decode_tables(decode):
    """Low-byte and high-byte translate tables of each code's sample."""
    samples = struct.pack("<256h", *(decode(code) for code in range(256)))
    return samples[0::2], samples[1::2]


def _encode_table(encode):
    """
    Codes indexed by the sample read as an unsigned 16-bit number; a tuple
    because its item lookup is a third faster under ``map`` than a bytes
    object's.

    Each law is a monotone quantiser: its 256 codes cover runs of
    consecutive samples.  The runs' ends are found by search, a few
    thousand calls of C{encode} instead of 65,536 (every process, each
    media worker too, builds these at import).
    """
    table = bytearray(0x10000)
    for first, last in ((-0x8000, -1), (0, 0x7FFF)):
        sample = first
        while sample <= last:
            code = encode(sample)
            # Gallop, then halve: the last sample of this code's run.
            step = 1
            while sample + step <= last and encode(sample + step) == code:
                step *= 2
            inside, outside = sample + step // 2, min(sample + step, last + 1)
            while outside - inside > 1:
                middle = (inside + outside) // 2
                if encode(middle) == code:
                    inside = middle
                else:
                    outside = middle
            table[sample & 0xFFFF:(inside & 0xFFFF) + 1] = bytes((code,)) * (inside - sample + 1)
            sample = inside + 1
    return tuple(table)


_ULAW_LOW, _ULAW_HIGH = _decode_tables(_ulaw_decode)
_ALAW_LOW, _ALAW_HIGH = _decode_tables(_alaw_decode)
_ULAW_ENCODE = _encode_table(_ulaw_encode)
_ALAW_ENCODE = _encode_table(_alaw_encode)

# Transcoding maps each code to the code whose interval holds its decoded
# value in the other law, so ``translate`` converts without touching linear
# PCM.  The laws' intervals do not nest, so a round trip through the other
# law may land on the neighbouring code (16 of 256 codes either way).
_ULAW_TO_ALAW = bytes(_ALAW_ENCODE[_ulaw_decode(code) & 0xFFFF] for code in range(256))
_ALAW_TO_ULAW = bytes(_ULAW_ENCODE[_alaw_decode(code) & 0xFFFF] for code in range(256))

_BIG_ENDIAN_HOST = sys.byteorder == "big"


def _decode(data, low, high):
    out = bytearray(2 * len(data))
    out[0::2] = data.translate(low)
    out[1::2] = data.translate(high)
    return bytes(out)


def _encode(data, table):
    if len(data) % 2:
        raise ValueError("linear PCM must be whole 16-bit samples")
    if _BIG_ENDIAN_HOST:
        samples = array("H")
        samples.frombytes(data)
        samples.byteswap()
    else:
        samples = memoryview(data).cast("B").cast("H")
    return bytes(map(table.__getitem__, samples))


def ulaw_to_linear(data):
    """μ-law bytes to 16-bit little-endian linear PCM."""
    return _decode(data, _ULAW_LOW, _ULAW_HIGH)


def alaw_to_linear(data):
    """A-law bytes to 16-bit little-endian linear PCM."""
    return _decode(data, _ALAW_LOW, _ALAW_HIGH)


def linear_to_ulaw(data):
    """16-bit little-endian linear PCM to μ-law bytes."""
    return _encode(data, _ULAW_ENCODE)


def linear_to_alaw(data):
    """16-bit little-endian linear PCM to A-law bytes."""
    return _encode(data, _ALAW_ENCODE)


def ulaw_to_alaw(data):
    """μ-law bytes to A-law bytes."""
    return data.translate(_ULAW_TO_ALAW)


def alaw_to_ulaw(data):
    """A-law bytes to μ-law bytes."""
    return data.translate(_ALAW_TO_ULAW)


# By SDP encoding name: what the media modules look up for a call's codec.
ENCODERS = {"PCMU": linear_to_ulaw, "PCMA": linear_to_alaw}
DECODERS = {"PCMU": ulaw_to_linear, "PCMA": alaw_to_linear}
SILENCE = {"PCMU": ULAW_SILENCE, "PCMA": ALAW_SILENCE}
