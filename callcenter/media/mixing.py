"""
Adding G.711 frames in linear PCM, saturated to 16 bits, in pure Python.

A conference mixes every tick, so the per-sample work must stay in C.
Adding frames sample by sample (``map(operator.add, ...)`` over lists)
costs some 4 µs per frame added; instead a frame is widened into one
Python integer whose 32-bit fields, lowest first, hold each sample plus
32768.  Every field is then non-negative and far from its limit, so adding
or subtracting whole frames is one big-integer operation (well under a
microsecond for 160 samples) with no carry or borrow crossing fields:
N frames sum to N × 65535 at most per field, below 2^32 for any N we mix.

Encoding back moves every field to C{_OUTPUT_BIAS} + 32768 + sample, where
a field in the 16-bit range has its top two bytes equal to those of the
bias: one comparison of two byte slices tells whether any sample
overflowed (then, rarely, it is clamped one by one).  The low two bytes are
then the offset sample, which indexes a 65536-entry table of G.711 codes;
that look-up, about 60 ns a sample, is the one per-sample step in Python.
"""

import struct
import sys
from array import array

from callcenter.media import g711

_OFFSET = 0x8000
# Where an encoded field's sample sits: 2^30 leaves room below it for a
# sum of 32767 frames at -32768 and above it for as many at +32767.
_OUTPUT_BIAS = 1 << 30
_BIAS_HIGH_BYTES = ((_OUTPUT_BIAS >> 16) & 0xFF, _OUTPUT_BIAS >> 24)

_BIG_ENDIAN_HOST = sys.byteorder == "big"


def _widen_tables(decode):
    """Translate tables to the low and high byte of each code's sample + 32768."""
    samples = struct.unpack("<256h", decode(bytes(range(256))))
    return (
        bytes((sample + _OFFSET) & 0xFF for sample in samples),
        bytes((sample + _OFFSET) >> 8 for sample in samples),
    )


def _offset_encode_table(encode):
    """The code of each offset sample 0-65535 (sample + 32768), as a tuple for map."""
    every_sample = array("h", range(-32768, 32768))
    if _BIG_ENDIAN_HOST:
        every_sample.byteswap()
    return tuple(encode(every_sample.tobytes()))


_WIDEN = {encoding: _widen_tables(decode) for encoding, decode in g711.DECODERS.items()}
_ENCODE = {encoding: _offset_encode_table(encode) for encoding, encode in g711.ENCODERS.items()}


def _offset_samples(pcm):
    """Little-endian unsigned 16-bit samples as a sequence of ints, without copying where we can."""
    if _BIG_ENDIAN_HOST:
        samples = array("H")
        samples.frombytes(pcm)
        samples.byteswap()
        return samples
    return memoryview(pcm).cast("H")


class FrameMixer:
    """Widening, summing and encoding frames of C{samples} samples."""

    def __init__(self, samples):
        self.samples = samples
        self._bytes = 4 * samples
        self._ones = int.from_bytes(b"\x01\x00\x00\x00" * samples, "little")
        self._high_bytes = tuple(bytes((byte,)) * samples for byte in _BIAS_HIGH_BYTES)
        # What moves a sum of n widened frames to the output bias, by n.
        self._adjust = {}

    def widen(self, payload, encoding):
        """A G.711 frame as one integer, each sample + 32768 in its own 32-bit field."""
        low, high = _WIDEN[encoding]
        wide = bytearray(self._bytes)
        wide[0::4] = payload.translate(low)
        wide[1::4] = payload.translate(high)
        return int.from_bytes(wide, "little")

    def encode(self, total, count, encoding):
        """
        C{total}, the sum of C{count} widened frames (a difference of such
        sums is fine too: count what remains), as G.711 in C{encoding},
        each sample saturated to 16 bits.
        """
        adjust = self._adjust.get(count)
        if adjust is None:
            adjust = self._adjust[count] = (_OUTPUT_BIAS + _OFFSET - count * _OFFSET) * self._ones
        fields = (total + adjust).to_bytes(self._bytes, "little")
        table = _ENCODE[encoding]
        third, fourth = self._high_bytes
        if fields[2::4] != third or fields[3::4] != fourth:
            return self._saturated(fields, table)
        pcm = bytearray(2 * self.samples)
        pcm[0::2] = fields[0::4]
        pcm[1::2] = fields[1::4]
        return bytes(map(table.__getitem__, _offset_samples(pcm)))

    def _saturated(self, fields, table):
        low = _OUTPUT_BIAS
        return bytes(
            table[min(max(field - low, 0), 0xFFFF)] for field in struct.unpack(f"<{self.samples}I", fields)
        )
