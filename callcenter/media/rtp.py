"""
RTP and RTCP on the wire (RFC 3550): packets to and from bytes, the
sender's sequence and timestamp clocks, and the receiver statistics an
RTCP report block carries.
"""

import secrets
import struct
from dataclasses import dataclass
from typing import NamedTuple

RTP_VERSION = 2


class RTPError(ValueError):
    """Bytes that are not a well-formed RTP packet."""


class RTCPError(ValueError):
    """Bytes that are not a well-formed RTCP compound packet."""


# RFC 3550 §5.1: V P X CC | M PT | sequence | timestamp | SSRC.
_FIXED_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")
_CSRC_LISTS = [struct.Struct(f"!{count}I") for count in range(16)]
_VERSION_BITS = RTP_VERSION << 6


def build_header(marker, payload_type, sequence, timestamp, ssrc):
    """The 12-byte fixed header of a packet without padding, extension or CSRCs."""
    return _FIXED_HEADER.pack(
        _VERSION_BITS, payload_type | 0x80 if marker else payload_type, sequence, timestamp, ssrc
    )


@dataclass(frozen=True, slots=True)
class RTPExtension:
    """RFC 3550 §5.3.1 header extension: a profile-defined word and data."""

    profile: int
    data: bytes


class RTPPacket(NamedTuple):
    """
    One RTP packet (RFC 3550 §5.1).  A named tuple rather than a frozen
    dataclass: it is built for every packet received, and a tuple builds in
    a fifth of the time.
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple = ()
    extension: RTPExtension | None = None
    # Number of padding octets after the payload, the count octet included
    # (RFC 3550 §5.1 "padding"); 0 for none.
    padding: int = 0
    version: int = RTP_VERSION

    def to_bytes(self):
        first = _VERSION_BITS | len(self.csrcs)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        second = self.payload_type | 0x80 if self.marker else self.payload_type
        parts = [
            _FIXED_HEADER.pack(first, second, self.sequence, self.timestamp, self.ssrc),
            _CSRC_LISTS[len(self.csrcs)].pack(*self.csrcs),
        ]
        if self.extension is not None:
            data = self.extension.data
            if len(data) % 4:
                raise RTPError("header extension data must be whole 32-bit words")
            parts.append(_EXTENSION_HEADER.pack(self.extension.profile, len(data) // 4))
            parts.append(data)
        parts.append(self.payload)
        if self.padding:
            if not 0 < self.padding < 256:
                raise RTPError(f"padding of {self.padding} octets does not fit its count octet")
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


def parse(data):
    """An L{RTPPacket} from C{data}, or L{RTPError}."""
    end = len(data)
    if end < 12:
        raise RTPError(f"{end} bytes is shorter than the RTP fixed header")
    first, second, sequence, timestamp, ssrc = _FIXED_HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise RTPError(f"RTP version {first >> 6}")
    offset = 12 + 4 * (first & 0x0F)
    if offset > end:
        raise RTPError("CSRC list runs past the end of the packet")
    csrcs = _CSRC_LISTS[first & 0x0F].unpack_from(data, 12) if first & 0x0F else ()
    extension = None
    if first & 0x10:
        if offset + 4 > end:
            raise RTPError("header extension runs past the end of the packet")
        profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
        start, offset = offset + 4, offset + 4 + 4 * words
        if offset > end:
            raise RTPError("header extension runs past the end of the packet")
        extension = RTPExtension(profile, bytes(data[start:offset]))
    padding = 0
    if first & 0x20:
        # RFC 3550 §5.1: the last octet counts the padding, itself included.
        padding = data[-1]
        if padding == 0 or offset + padding > end:
            raise RTPError(f"padding count {padding} does not fit the packet")
        end -= padding
    return RTPPacket(
        second & 0x7F,
        sequence,
        timestamp,
        ssrc,
        bytes(data[offset:end]),
        second > 0x7F,
        csrcs,
        extension,
        padding,
    )


class RTPSender:
    """
    One outgoing stream's sequence and timestamp clocks (RFC 3550 §5.1):
    both start at random values, the sequence number counts packets modulo
    2**16 and the timestamp counts samples modulo 2**32.
    """

    def __init__(
        self, ssrc, payload_type, clock_rate=8000, samples_per_packet=160, sequence=None, timestamp=None
    ):
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.samples_per_packet = samples_per_packet
        self.sequence = secrets.randbits(16) if sequence is None else sequence
        self.timestamp = secrets.randbits(32) if timestamp is None else timestamp
        # What a sender report counts (RFC 3550 §6.4.1): packets and
        # payload octets sent.
        self.packet_count = 0
        self.octet_count = 0
        # The stream's first packet begins a talkspurt (RFC 3551 §4.1).
        self._talkspurt_starts = True

    def packet(self, payload, marker=False):
        """
        The next packet carrying C{payload}; C{marker} flags the first
        packet of a talkspurt, as does the first packet after L{silence}.
        """
        header = build_header(
            marker or self._talkspurt_starts, self.payload_type, self.sequence, self.timestamp, self.ssrc
        )
        self._talkspurt_starts = False
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + self.samples_per_packet) & 0xFFFFFFFF
        self.packet_count += 1
        self.octet_count += len(payload)
        return header + payload

    def silence(self, milliseconds):
        """
        Skip C{milliseconds} not sent (silence suppression): the timestamp
        keeps counting sampling instants but the sequence number does not
        (RFC 3550 §5.1), and the next packet starts a talkspurt.
        """
        self.timestamp = (self.timestamp + self.clock_rate * milliseconds // 1000) & 0xFFFFFFFF
        self._talkspurt_starts = True


# RFC 3550 Appendix A.1.
_MAX_DROPOUT = 3000
_MAX_MISORDER = 100
_MIN_SEQUENTIAL = 2
_SEQUENCE_MODULUS = 1 << 16


class RTPReceiverStats:
    """
    What one source's RTCP report block says about it: the extended
    highest sequence number with its wrap-around cycles, cumulative and
    fractional loss and interarrival jitter, kept as RFC 3550 Appendix A.1,
    A.3 and A.8 do.  A new source is on probation until two packets have
    arrived in sequence.
    """

    def __init__(self, ssrc):
        self.ssrc = ssrc
        self.probation = _MIN_SEQUENTIAL
        self.max_sequence = None
        self.base_sequence = 0
        self.cycles = 0
        self.received = 0
        self._bad_sequence = _SEQUENCE_MODULUS + 1
        self._expected_prior = 0
        self._received_prior = 0
        self._transit = None
        self._jitter = 0.0
        self._last_sr = 0
        self._last_sr_arrival = None
        # The sequence number that continues the stream in order, once it
        # is off probation (None before): see received_packet.
        self._in_order = None

    def _restart(self, sequence):
        self.base_sequence = sequence
        self.max_sequence = sequence
        self._bad_sequence = _SEQUENCE_MODULUS + 1
        self.cycles = 0
        self.received = 0
        self._expected_prior = 0
        self._received_prior = 0

    def received_packet(self, sequence, timestamp, arrival):
        """
        Count a packet; C{arrival} is its arrival time in RTP timestamp
        units.  False when the packet does not count: the source is still on
        probation, or the sequence number jumped and may be a restart.
        """
        if sequence == self._in_order:
            # The common case, the packet after the highest so far: what
            # _update_sequence and _update_jitter below do with it (A.1 with
            # a delta of 1, A.8), inline, since it comes 50 times a second
            # for every call.
            self._in_order = (sequence + 1) & 0xFFFF
            if not sequence:
                self.cycles += _SEQUENCE_MODULUS
            self.max_sequence = sequence
            self.received += 1
            transit = (arrival - timestamp) & 0xFFFFFFFF
            difference = abs(((transit - self._transit + 0x80000000) & 0xFFFFFFFF) - 0x80000000)
            self._jitter += (difference - self._jitter) / 16
            self._transit = transit
            return True
        if self.max_sequence is None:
            self.max_sequence = (sequence - 1) & 0xFFFF
        counted = self._update_sequence(sequence)
        # Off probation a transit time has been recorded (the packet that
        # ended it was counted), which the inline jitter update needs.
        self._in_order = None if self.probation else (self.max_sequence + 1) & 0xFFFF
        if not counted:
            return False
        self._update_jitter(timestamp, arrival)
        return True

    def _update_sequence(self, sequence):
        delta = (sequence - self.max_sequence) & 0xFFFF
        if self.probation:
            if sequence == (self.max_sequence + 1) & 0xFFFF:
                self.probation -= 1
                self.max_sequence = sequence
                if self.probation == 0:
                    self._restart(sequence)
                    self.received += 1
                    return True
            else:
                self.probation = _MIN_SEQUENTIAL - 1
                self.max_sequence = sequence
            return False
        if delta < _MAX_DROPOUT:
            if sequence < self.max_sequence:
                self.cycles += _SEQUENCE_MODULUS
            self.max_sequence = sequence
        elif delta <= _SEQUENCE_MODULUS - _MAX_MISORDER:
            # A.1: two sequential packets after a big jump mean the other
            # side restarted without changing SSRC; one alone is dropped.
            if sequence != self._bad_sequence:
                self._bad_sequence = (sequence + 1) & 0xFFFF
                return False
            self._restart(sequence)
        self.received += 1
        return True

    def _update_jitter(self, timestamp, arrival):
        # A.8: the relative transit time, compared modulo 2**32 so that
        # either clock may wrap.
        transit = (arrival - timestamp) & 0xFFFFFFFF
        if self._transit is not None:
            difference = abs(((transit - self._transit + 0x80000000) & 0xFFFFFFFF) - 0x80000000)
            self._jitter += (difference - self._jitter) / 16
        self._transit = transit

    @property
    def extended_highest_sequence(self):
        return self.cycles + (self.max_sequence or 0)

    @property
    def expected(self):
        if self.probation:
            return 0
        return self.extended_highest_sequence - self.base_sequence + 1

    @property
    def cumulative_lost(self):
        # A.3: duplicates can make it negative; the field is 24-bit signed.
        return max(-0x800000, min(0x7FFFFF, self.expected - self.received))

    @property
    def jitter(self):
        """Interarrival jitter in timestamp units, as the report carries it."""
        return int(self._jitter)

    def sender_report_received(self, ntp_timestamp, now):
        """Note the source's sender report that arrived at C{now} (seconds)."""
        self._last_sr = ntp_middle(ntp_timestamp)
        self._last_sr_arrival = now

    def report_block(self, now):
        """
        The L{ReportBlock} for this source at C{now} (seconds, on the clock
        that L{sender_report_received} was given); the fraction lost covers
        the packets since the previous call (A.3).
        """
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = (lost_interval << 8) // expected_interval
        # §6.4.1: the delay since the last SR is in units of 1/65536 s, and
        # both fields are zero until an SR has come.
        delay = 0
        if self._last_sr_arrival is not None:
            delay = min(int((now - self._last_sr_arrival) * 65536), 0xFFFFFFFF)
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            cumulative_lost=self.cumulative_lost,
            highest_sequence=self.extended_highest_sequence & 0xFFFFFFFF,
            jitter=self.jitter,
            last_sr=self._last_sr,
            delay_since_last_sr=delay,
        )


# RTCP, RFC 3550 §6.4 and §6.6.
RTCP_SR = 200
RTCP_RR = 201
RTCP_BYE = 203

_RTCP_HEADER = struct.Struct("!BBH")
_SSRC = struct.Struct("!I")
_SENDER_INFO = struct.Struct("!IQIII")
_REPORT_BLOCK = struct.Struct("!IIIIII")
# NTP time starts in 1900, Unix time in 1970 (RFC 868).
_NTP_UNIX_OFFSET = 2208988800


def ntp_timestamp(unix_time):
    """The 64-bit NTP timestamp (RFC 3550 §4) of a Unix time in seconds."""
    return int((unix_time + _NTP_UNIX_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


def ntp_middle(ntp):
    """The middle 32 bits of an NTP timestamp: an RR's "last SR" (§6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ReportBlock:
    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_sequence: int
    jitter: int
    last_sr: int = 0
    delay_since_last_sr: int = 0

    def to_bytes(self):
        return _REPORT_BLOCK.pack(
            self.ssrc,
            (self.fraction_lost << 24) | (self.cumulative_lost & 0xFFFFFF),
            self.highest_sequence,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        )

    @classmethod
    def from_bytes(cls, data, offset):
        ssrc, lost, highest, jitter, last_sr, delay = _REPORT_BLOCK.unpack_from(data, offset)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        return cls(ssrc, lost >> 24, cumulative, highest, jitter, last_sr, delay)


def _rtcp_packet(packet_type, count, body):
    if count > 31:
        raise RTCPError(f"{count} items do not fit the 5-bit count")
    return _RTCP_HEADER.pack(_VERSION_BITS | count, packet_type, len(body) // 4) + body


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple = ()

    def to_bytes(self):
        body = _SENDER_INFO.pack(
            self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
        ) + b"".join(block.to_bytes() for block in self.reports)
        return _rtcp_packet(RTCP_SR, len(self.reports), body)


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: tuple = ()

    def to_bytes(self):
        body = _SSRC.pack(self.ssrc) + b"".join(block.to_bytes() for block in self.reports)
        return _rtcp_packet(RTCP_RR, len(self.reports), body)


@dataclass(frozen=True, slots=True)
class Goodbye:
    ssrcs: tuple
    reason: bytes = b""

    def to_bytes(self):
        body = b"".join(_SSRC.pack(ssrc) for ssrc in self.ssrcs)
        if self.reason:
            reason = bytes((len(self.reason),)) + self.reason
            body += reason + bytes(-len(reason) % 4)
        return _rtcp_packet(RTCP_BYE, len(self.ssrcs), body)


def _parse_reports(data, offset, count, end):
    if offset + count * _REPORT_BLOCK.size > end:
        raise RTCPError("report blocks run past the end of the packet")
    return tuple(ReportBlock.from_bytes(data, offset + i * _REPORT_BLOCK.size) for i in range(count))


def _parse_sender_report(data, offset, count, end):
    if offset + _SENDER_INFO.size > end:
        raise RTCPError("sender report shorter than its sender info")
    ssrc, ntp, rtp_timestamp, packets, octets = _SENDER_INFO.unpack_from(data, offset)
    reports = _parse_reports(data, offset + _SENDER_INFO.size, count, end)
    return SenderReport(ssrc, ntp, rtp_timestamp, packets, octets, reports)


def _parse_receiver_report(data, offset, count, end):
    if offset + 4 > end:
        raise RTCPError("receiver report without its SSRC")
    (ssrc,) = _SSRC.unpack_from(data, offset)
    return ReceiverReport(ssrc, _parse_reports(data, offset + 4, count, end))


def _parse_goodbye(data, offset, count, end):
    reason_at = offset + 4 * count
    if reason_at > end:
        raise RTCPError("BYE SSRC list runs past the end of the packet")
    ssrcs = struct.unpack_from(f"!{count}I", data, offset)
    reason = b""
    if reason_at < end:
        length = data[reason_at]
        if reason_at + 1 + length > end:
            raise RTCPError("BYE reason runs past the end of the packet")
        reason = bytes(data[reason_at + 1 : reason_at + 1 + length])
    return Goodbye(ssrcs, reason)


_PARSERS = {
    RTCP_SR: _parse_sender_report,
    RTCP_RR: _parse_receiver_report,
    RTCP_BYE: _parse_goodbye,
}


def parse_rtcp(data):
    """
    The SR, RR and BYE packets of a compound RTCP packet, in order, or
    L{RTCPError}.  SDES, APP and other types are checked for length and
    skipped.  Following RFC 5506 §3.4.2 (reduced-size RTCP) a compound
    need not begin with a report.
    """
    packets = []
    offset = 0
    total = len(data)
    if total < 4:
        raise RTCPError(f"{total} bytes is shorter than an RTCP header")
    while offset < total:
        if offset + 4 > total:
            raise RTCPError("trailing bytes shorter than an RTCP header")
        first, packet_type, words = _RTCP_HEADER.unpack_from(data, offset)
        if first >> 6 != RTP_VERSION:
            raise RTCPError(f"RTCP version {first >> 6}")
        end = offset + 4 * (words + 1)
        if end > total:
            raise RTCPError("RTCP length runs past the end of the compound packet")
        if first & 0x20:
            # RFC 3550 §6.4.1: only the last packet of a compound is padded.
            padding = data[end - 1]
            if end != total or padding == 0 or padding > end - offset - 4:
                raise RTCPError("bad RTCP padding")
            body_end = end - padding
        else:
            body_end = end
        parser = _PARSERS.get(packet_type)
        if parser is not None:
            packets.append(parser(data, offset + 4, first & 0x1F, body_end))
        offset = end
    return packets
