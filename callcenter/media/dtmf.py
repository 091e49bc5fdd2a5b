"""
DTMF digits three ways: RFC 4733 telephone events in RTP, tones in the
audio (a Goertzel detector), and the merging of both with SIP INFO so that
each key press is reported once.
"""

import math
import struct
import sys
from array import array
from operator import mul
from typing import NamedTuple

from callcenter.media.rtp import build_header
from callcenter.media.tones import DTMF_HIGH_HZ, DTMF_KEYPAD, DTMF_LOW_HZ, dbm0_amplitude

# RFC 4733 §3.2: events 0-9, then * # A B C D.
EVENT_DIGITS = "0123456789*#ABCD"
_DIGIT_EVENTS = {digit: event for event, digit in enumerate(EVENT_DIGITS)}

_EVENT = struct.Struct("!BBH")
_END_BIT = 0x80


class TelephoneEventError(ValueError):
    """A payload that is not an RFC 4733 telephone event."""


class TelephoneEvent(NamedTuple):
    """One RFC 4733 §2.3 payload: event code, end flag, volume, duration."""

    event: int
    end: bool = False
    # Power level in -dBm0, 0 to 63 (§2.3.4).
    volume: int = 10
    # In timestamp units since the event's RTP timestamp (§2.3.5).
    duration: int = 0

    @property
    def digit(self):
        """The DTMF key, or None for the other events of §3.2."""
        return EVENT_DIGITS[self.event] if self.event < 16 else None

    def to_bytes(self):
        return _EVENT.pack(self.event, (_END_BIT if self.end else 0) | self.volume, self.duration)

    @classmethod
    def parse(cls, data):
        if len(data) != 4:
            raise TelephoneEventError(f"telephone event of {len(data)} bytes, not 4")
        event, flags, duration = _EVENT.unpack(data)
        # The R bit (0x40) is reserved and ignored (§2.3.3).
        return cls(event, flags > 0x7F, flags & 0x3F, duration)


def _later(timestamp, than):
    """RTP timestamps compared modulo 2**32 (RFC 1982 serial numbers)."""
    return 0 < (timestamp - than) & 0xFFFFFFFF < 0x80000000


class EventReceiver:
    """
    Turns the telephone-event packets of one RTP stream into digits, each
    reported once, when it ends.

    RFC 4733 §2.5.1 gives every packet of an event the event's start time
    as RTP timestamp and repeats the final, E-bit packet three times, so a
    new timestamp is a new event and packets with the current or an older
    timestamp after its end are repeats or late.  The marker bit, which
    flags the first packet, is not needed: the timestamp says the same and
    survives the loss of that packet.  An event whose end packets are all
    lost ends when the next event begins, or at L{flush} once no packet has
    arrived for C{timeout} seconds.
    """

    def __init__(self, timeout=0.5):
        self.timeout = timeout
        self._timestamp = None
        self._event = None
        self._ended = True
        self._last_arrival = None

    def receive(self, packet, now):
        """
        Take an L{RTPPacket} that arrived at C{now} (seconds); the digits
        it completes, oldest first.  A payload that is not a telephone
        event raises L{TelephoneEventError}.
        """
        event = TelephoneEvent.parse(packet.payload)
        digits = []
        if self._timestamp is None or _later(packet.timestamp, self._timestamp):
            if not self._ended:
                digits += self._finish()
            self._timestamp = packet.timestamp
            self._event = event
            self._ended = False
        elif packet.timestamp != self._timestamp or self._ended:
            return digits
        self._last_arrival = now
        if event.end:
            digits += self._finish()
        return digits

    def flush(self, now):
        """The digit whose end packets never came, once C{timeout} has passed."""
        if not self._ended and now - self._last_arrival >= self.timeout:
            return self._finish()
        return []

    def _finish(self):
        self._ended = True
        digit = self._event.digit
        return [digit] if digit is not None else []


class EventSender:
    """
    The RTP payloads that send one digit (RFC 4733 §2.5.1): all with the
    event's start timestamp, the first marked, one per C{packet_ms} with the
    duration so far, and the final duration three times with the E bit
    (§2.5.1.4) so that losing one or two does not lose the end.
    """

    END_REPEATS = 3

    def __init__(self, digit, duration_ms=100, volume=10, clock_rate=8000, packet_ms=20):
        try:
            self.event = _DIGIT_EVENTS[digit.upper()]
        except KeyError:
            raise ValueError(f"{digit!r} is not a DTMF digit") from None
        if not 0 <= volume <= 63:
            raise ValueError(f"volume {volume} is not 0 to 63 (-dBm0)")
        self.volume = volume
        self.duration = clock_rate * duration_ms // 1000
        self.step = clock_rate * packet_ms // 1000
        if not 0 < self.duration <= 0xFFFF:
            raise ValueError(f"{duration_ms} ms does not fit the 16-bit duration field")

    def payloads(self):
        """(marker, payload) for each packet, in sending order."""
        events = [
            TelephoneEvent(self.event, False, self.volume, duration)
            for duration in range(self.step, self.duration, self.step)
        ]
        events += [TelephoneEvent(self.event, True, self.volume, self.duration)] * self.END_REPEATS
        return [(index == 0, event.to_bytes()) for index, event in enumerate(events)]

    def packets(self, ssrc, payload_type, sequence, timestamp):
        """Whole RTP packets: consecutive sequence numbers, one timestamp."""
        return [
            build_header(marker, payload_type, (sequence + index) & 0xFFFF, timestamp, ssrc) + payload
            for index, (marker, payload) in enumerate(self.payloads())
        ]


# In-band detection.
#
# Blocks of 102 samples (12.75 ms at 8 kHz) put the 73 Hz between adjacent
# low-group tones at 0.93 of the 78 Hz bin spacing, near the first null of
# the block's rectangular window, so neighbours separate by some 20 dB,
# and a ±1.5% frequency error (Q.24) costs 0.3 to 1.4 dB.  Blocks of 205 would
# separate better but last 25.6 ms: two of them do not fit in a 40 ms
# tone, which Q.24 requires us to accept.  A 40 ms tone covers at least
# two whole 102-sample blocks however it falls across them, which is our
# persistence check; a 40 ms pause likewise covers three silent blocks,
# two whole and one at most 44 tone samples, too short to pass the
# in-group separation.
_BLOCK_MS = 12.75
_DIGIT_BLOCKS = 2
_GAP_BLOCKS = 3
# Q.24: the high-group tone may be up to 8 dB above the low-group one
# ("forward" twist), the low-group one up to 4 dB above the high ("reverse").
_FORWARD_TWIST_DB = 8
_REVERSE_TWIST_DB = 4
# Each tone at -30 dBm0 at least: quieter than any real keypad, louder
# than line noise.
_MIN_LEVEL_DBM0 = -30
# The strongest tone of each group stands this far above the others.
_GROUP_SEPARATION_DB = 8
# The two tones carry this share of the block's energy at least: speech
# and music spread theirs over many frequencies.
_MIN_TONE_SHARE = 0.6
# Keys sound pure sines; voices and instruments sound harmonics.  Only the
# high-group tone's second harmonic (2418 to 3266 Hz) is looked at: the
# low group's (1394 to 1882 Hz) falls among the high-group tones and would
# measure their leakage.
_MAX_SECOND_HARMONIC_DB = -20

_LITTLE_ENDIAN_HOST = sys.byteorder == "little"


def _power_ratio(db):
    return 10 ** (db / 10)


def _coefficient(frequency, sample_rate):
    return 2 * math.cos(2 * math.pi * frequency / sample_rate)


def _goertzel(samples, coefficient):
    """The power of C{samples} at the frequency of C{coefficient}, 2 cos(ω)."""
    previous = earlier = 0.0
    for sample in samples:
        previous, earlier = sample + coefficient * previous - earlier, previous
    return previous * previous + earlier * earlier - coefficient * previous * earlier


class GoertzelDetector:
    """
    DTMF digits in 16-bit little-endian linear PCM frames, of any length;
    samples left over from a frame are carried into the next.

    Each block runs a Goertzel filter per DTMF frequency (the high group's
    only when a low tone stands out) and gives a digit when exactly one
    low and one high tone stand out: each
    loud enough, the stronger of the pair within the twist limits, each the
    clear maximum of its group, the pair holding most of the block's energy
    and the high tone without a second harmonic.  A digit is reported after
    two consecutive blocks and not again until three blocks without it.
    """

    def __init__(self, sample_rate=8000):
        self.block = round(sample_rate * _BLOCK_MS / 1000)
        self._low_coefficients = [_coefficient(frequency, sample_rate) for frequency in DTMF_LOW_HZ]
        self._high_coefficients = [_coefficient(frequency, sample_rate) for frequency in DTMF_HIGH_HZ]
        self._harmonic_coefficients = [_coefficient(2 * frequency, sample_rate) for frequency in DTMF_HIGH_HZ]
        # A sine of peak A gives a Goertzel power of (A * N / 2) ** 2 at its
        # frequency and a block energy (sum of squares) of A ** 2 * N / 2.
        half = self.block / 2
        minimum = dbm0_amplitude(_MIN_LEVEL_DBM0)
        self._min_power = (minimum * half) ** 2
        self._min_energy = 2 * minimum**2 * half
        self._power_per_energy = half
        self._forward_twist = _power_ratio(_FORWARD_TWIST_DB)
        self._reverse_twist = _power_ratio(_REVERSE_TWIST_DB)
        self._separation = _power_ratio(_GROUP_SEPARATION_DB)
        self._max_harmonic = _power_ratio(_MAX_SECOND_HARMONIC_DB)
        self._pending = array("h")
        self._candidate = None
        self._candidate_blocks = 0
        self._reported = None
        self._blocks_without = 0

    def feed(self, frame):
        """The digits that C{frame} completes (rarely more than one)."""
        pending = self._pending
        if _LITTLE_ENDIAN_HOST:
            pending.frombytes(frame)
        else:
            samples = array("h")
            samples.frombytes(frame)
            samples.byteswap()
            pending.extend(samples)
        digits = []
        block = self.block
        start = 0
        while len(pending) - start >= block:
            digit = self._classify(pending[start : start + block].tolist())
            start += block
            reported = self._track(digit)
            if reported is not None:
                digits.append(reported)
        del pending[:start]
        return digits

    def _track(self, digit):
        if digit is not None and digit == self._candidate:
            self._candidate_blocks += 1
        else:
            self._candidate = digit
            self._candidate_blocks = 1
        if digit is not None and digit == self._reported:
            self._blocks_without = 0
            return None
        self._blocks_without += 1
        if self._blocks_without >= _GAP_BLOCKS:
            self._reported = None
        if digit is not None and self._candidate_blocks >= _DIGIT_BLOCKS:
            self._reported = digit
            self._blocks_without = 0
            return digit
        return None

    def _classify(self, samples):
        energy = sum(map(mul, samples, samples))
        if energy < self._min_energy:
            return None
        # The low group first: most speech fails here, which saves running
        # the high group's filters.
        low = [_goertzel(samples, coefficient) for coefficient in self._low_coefficients]
        row = max(range(4), key=low.__getitem__)
        low_power = low[row]
        if low_power < self._min_power or sorted(low)[2] * self._separation > low_power:
            return None
        high = [_goertzel(samples, coefficient) for coefficient in self._high_coefficients]
        column = max(range(4), key=high.__getitem__)
        high_power = high[column]
        if high_power < self._min_power or sorted(high)[2] * self._separation > high_power:
            return None
        if high_power > low_power * self._forward_twist or low_power > high_power * self._reverse_twist:
            return None
        if low_power + high_power < _MIN_TONE_SHARE * energy * self._power_per_energy:
            return None
        if _goertzel(samples, self._harmonic_coefficients[column]) > high_power * self._max_harmonic:
            return None
        return DTMF_KEYPAD[row][column]


class DigitDeduplicator:
    """
    One report per key press when the press arrives several ways at once
    (RFC 4733 events, SIP INFO, in-band tones).  A digit that another
    source already reported less than C{window} seconds ago is the same
    press and dropped; each source joins a press once, so the same source
    sending the digit again is a new press.
    """

    def __init__(self, window):
        self.window = window
        # digit -> (time reported, sources that have given this press)
        self._presses = {}

    def accept(self, digit, source, now):
        """True if C{digit} from C{source} at C{now} is a new key press."""
        press = self._presses.get(digit)
        if press is not None:
            reported_at, sources = press
            if now - reported_at < self.window and source not in sources:
                sources.add(source)
                return False
        self._presses[digit] = (now, {source})
        return True
