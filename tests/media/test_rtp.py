"""RTP packets, the sender's clocks, receiver statistics and RTCP reports."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.media import rtp

# V=2 P=0 X=0 CC=0 | M=1 PT=0 | seq 0x1234 | ts 0x00010203 | SSRC 0xDEADBEEF
SIMPLE = bytes.fromhex("8080 1234 00010203 deadbeef") + b"audio"


def test_build_header_layout():
    assert rtp.build_header(True, 0, 0x1234, 0x00010203, 0xDEADBEEF) == SIMPLE[:12]
    assert rtp.build_header(False, 101, 65535, 2**32 - 1, 1) == bytes.fromhex("8065 ffff ffffffff 00000001")


def test_parse_simple_packet():
    packet = rtp.parse(SIMPLE)
    assert packet == rtp.RTPPacket(
        payload_type=0, sequence=0x1234, timestamp=0x00010203, ssrc=0xDEADBEEF, payload=b"audio", marker=True
    )
    assert packet.version == 2
    assert packet.to_bytes() == SIMPLE


def test_parse_csrcs_extension_and_padding():
    data = (
        bytes.fromhex("b2 08 0001 00000002 00000003")  # V=2 P X CC=2, PT 8
        + bytes.fromhex("0000000a 0000000b")  # CSRCs
        + bytes.fromhex("bede 0001 10ff0000")  # extension, one word
        + b"\xd5" * 4
        + b"\x00\x00\x03"  # three octets of padding
    )
    packet = rtp.parse(data)
    assert packet.csrcs == (10, 11)
    assert packet.extension == rtp.RTPExtension(0xBEDE, bytes.fromhex("10ff0000"))
    assert packet.payload == b"\xd5" * 4
    assert packet.padding == 3
    assert (packet.payload_type, packet.marker) == (8, False)
    assert packet.to_bytes() == data


@pytest.mark.parametrize(
    "data, complaint",
    [
        (b"", "shorter"),
        (SIMPLE[:11], "shorter"),
        (b"\x40" + SIMPLE[1:], "version 1"),
        (b"\xc0" + SIMPLE[1:], "version 3"),
        (b"\xa0" + SIMPLE[1:-1] + b"\x00", "padding count 0"),
        (b"\xa0" + SIMPLE[1:-1] + b"\x06", "padding count 6"),
        (b"\x82" + SIMPLE[1:12] + b"\x00\x00\x00\x01", "CSRC"),
        (b"\x90" + SIMPLE[1:12] + b"\xbe\xde", "extension"),
        (b"\x90" + SIMPLE[1:12] + b"\xbe\xde\x00\x02" + bytes(4), "extension"),
    ],
)
def test_malformed_packets(data, complaint):
    with pytest.raises(rtp.RTPError, match=complaint):
        rtp.parse(data)


def test_padding_may_fill_everything_after_the_header():
    packet = rtp.parse(b"\xa0" + SIMPLE[1:12] + b"\x00\x00\x03")
    assert packet.payload == b"" and packet.padding == 3


@given(st.binary(max_size=120))
def test_parse_raises_only_rtp_error(data):
    try:
        packet = rtp.parse(data)
    except rtp.RTPError:
        return
    assert rtp.parse(packet.to_bytes()) == packet


@given(st.binary(min_size=12, max_size=80))
def test_parse_of_version_2_headers_raises_only_rtp_error(data):
    data = bytes([0x80 | (data[0] & 0x3F)]) + data[1:]
    try:
        rtp.parse(data)
    except rtp.RTPError:
        pass


packets = st.builds(
    rtp.RTPPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=40),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none()
    | st.builds(
        rtp.RTPExtension, st.integers(0, 0xFFFF), st.binary(max_size=12).map(lambda b: b[: len(b) // 4 * 4])
    ),
    padding=st.integers(0, 255),
    version=st.just(2),
)


@given(packets)
def test_round_trip(packet):
    assert rtp.parse(packet.to_bytes()) == packet


def test_sender_numbers_packets_and_samples():
    sender = rtp.RTPSender(ssrc=7, payload_type=0, sequence=100, timestamp=1000)
    first = rtp.parse(sender.packet(b"a" * 160))
    second = rtp.parse(sender.packet(b"b" * 160))
    assert (first.sequence, first.timestamp, first.marker, first.ssrc) == (100, 1000, True, 7)
    assert (second.sequence, second.timestamp, second.marker) == (101, 1160, False)
    assert second.payload == b"b" * 160


def test_sender_wraps_sequence_and_timestamp():
    sender = rtp.RTPSender(ssrc=1, payload_type=8, sequence=0xFFFF, timestamp=2**32 - 100)
    sent = [rtp.parse(sender.packet(b"")) for _ in range(3)]
    assert [p.sequence for p in sent] == [0xFFFF, 0, 1]
    assert [p.timestamp for p in sent] == [2**32 - 100, 60, 220]


def test_sender_marks_talkspurts():
    sender = rtp.RTPSender(ssrc=1, payload_type=0, sequence=0, timestamp=0)
    sender.packet(b"")
    assert not rtp.parse(sender.packet(b"")).marker
    sender.silence(100)
    resumed = rtp.parse(sender.packet(b""))
    # RFC 3550 §5.1: the timestamp counted the 100 ms not sent, the
    # sequence number did not.
    assert (resumed.marker, resumed.sequence, resumed.timestamp) == (True, 2, 320 + 800)
    assert rtp.parse(sender.packet(b"", marker=True)).marker


def test_sender_counts_packets_and_octets_for_sender_reports():
    sender = rtp.RTPSender(ssrc=1, payload_type=0)
    sender.packet(b"x" * 160)
    sender.packet(b"y" * 80)
    assert (sender.packet_count, sender.octet_count) == (2, 240)


def test_sender_starts_at_random_values():
    starts = {(s.sequence, s.timestamp) for s in (rtp.RTPSender(1, 0) for _ in range(4))}
    assert len(starts) > 1


def feed(stats, sequences, start_timestamp=0, step=160):
    """Packets sent every 20 ms and arriving exactly on time."""
    return [
        stats.received_packet(seq & 0xFFFF, start_timestamp + (seq * step), seq * step) for seq in sequences
    ]


def test_receiver_stats_probation_then_counting():
    stats = rtp.RTPReceiverStats(ssrc=5)
    assert feed(stats, [10, 11, 12]) == [False, True, True]
    assert stats.base_sequence == 11
    assert (stats.received, stats.expected, stats.cumulative_lost) == (2, 2, 0)


def test_receiver_stats_probation_restarts_on_a_gap():
    stats = rtp.RTPReceiverStats(ssrc=5)
    assert feed(stats, [10, 20, 21, 22]) == [False, False, True, True]
    assert stats.base_sequence == 21


def test_receiver_stats_loss_and_fraction():
    stats = rtp.RTPReceiverStats(ssrc=5)
    feed(stats, [0, 1, 2, 3, 6, 7, 8, 9, 10])
    block = stats.report_block(now=0.0)
    # Base 1, highest 10: 10 expected, 8 received.
    assert (block.highest_sequence, block.cumulative_lost) == (10, 2)
    assert block.fraction_lost == (2 << 8) // 10
    feed(stats, [11, 12, 14])
    block = stats.report_block(now=0.0)
    # Since the last report 11 to 14 were expected and 13 did not come.
    assert block.cumulative_lost == 3
    assert block.fraction_lost == (1 << 8) // 4
    assert stats.report_block(now=0.0).fraction_lost == 0


def test_receiver_stats_duplicates_make_loss_negative_and_fraction_zero():
    stats = rtp.RTPReceiverStats(ssrc=5)
    feed(stats, [0, 1, 2, 2, 3, 3])
    block = stats.report_block(now=0.0)
    assert (block.cumulative_lost, block.fraction_lost) == (-2, 0)


def test_receiver_stats_sequence_wrap_counts_cycles():
    stats = rtp.RTPReceiverStats(ssrc=5)
    feed(stats, range(65530, 65540))
    assert stats.cycles == 65536
    assert stats.extended_highest_sequence == 65536 + 3
    assert stats.cumulative_lost == 0
    assert stats.report_block(now=0.0).highest_sequence == 65539


def test_receiver_stats_late_packet_across_the_wrap():
    stats = rtp.RTPReceiverStats(ssrc=5)
    feed(stats, [65533, 65534, 0, 1, 65535, 2])
    assert (stats.cycles, stats.max_sequence, stats.received, stats.cumulative_lost) == (65536, 2, 5, 0)


def test_receiver_stats_resynchronises_after_a_restart():
    stats = rtp.RTPReceiverStats(ssrc=5)
    feed(stats, [100, 101, 102])
    assert feed(stats, [30000]) == [False]
    assert feed(stats, [30001, 30002]) == [True, True]
    assert (stats.base_sequence, stats.received) == (30001, 2)


def test_receiver_stats_jitter_against_hand_computed_values():
    stats = rtp.RTPReceiverStats(ssrc=5)
    # Transit times in timestamp units; the first packet is on probation,
    # the second starts the count, then the differences are 0, 80 and 40.
    for seq, transit in enumerate((1000, 1000, 1000, 1080, 1040)):
        stats.received_packet(seq, seq * 160, seq * 160 + transit)
    # J = J + (|D| - J) / 16: 0, then 80 / 16 = 5, then 5 + 35 / 16 = 7.1875.
    assert stats.jitter == 7
    assert stats.report_block(now=0.0).jitter == 7


def test_receiver_stats_jitter_is_zero_for_steady_transit():
    stats = rtp.RTPReceiverStats(ssrc=5)
    feed(stats, range(50))
    assert stats.jitter == 0


def test_receiver_stats_jitter_survives_timestamp_wrap():
    stats = rtp.RTPReceiverStats(ssrc=5)
    base = 2**32 - 320
    for seq in range(4):
        timestamp = (base + seq * 160) & 0xFFFFFFFF
        stats.received_packet(seq, timestamp, (timestamp + 500 + (16 if seq == 3 else 0)) & 0xFFFFFFFF)
    assert stats.jitter == 1


REPORT = rtp.ReportBlock(
    ssrc=0x01020304,
    fraction_lost=25,
    cumulative_lost=-3,
    highest_sequence=0x00010005,
    jitter=42,
    last_sr=0x11223344,
    delay_since_last_sr=0x00010000,
)


def test_sender_report_bytes():
    report = rtp.SenderReport(
        ssrc=0xAABBCCDD,
        ntp_timestamp=0x0102030405060708,
        rtp_timestamp=160,
        packet_count=10,
        octet_count=1600,
        reports=(REPORT,),
    )
    data = report.to_bytes()
    assert data[:4] == bytes.fromhex("81c8000c")  # RC=1, PT 200, 13 words - 1
    assert len(data) == 52
    assert data[28:] == bytes.fromhex("01020304 19fffffd 00010005 0000002a 11223344 00010000")
    assert rtp.parse_rtcp(data) == [report]


def test_receiver_report_bytes():
    report = rtp.ReceiverReport(ssrc=0xAABBCCDD, reports=(REPORT,))
    data = report.to_bytes()
    assert data[:8] == bytes.fromhex("81c90007 aabbccdd")
    assert rtp.parse_rtcp(data) == [report]


def test_report_block_from_receiver_stats():
    stats = rtp.RTPReceiverStats(ssrc=9)
    feed(stats, [0, 1, 2, 4])
    assert stats.report_block(now=3.0) == rtp.ReportBlock(9, 64, 1, 4, 0, 0, 0)
    stats.sender_report_received(0x0102030405060708, now=10.0)
    report = rtp.ReceiverReport(1, (stats.report_block(now=10.5),))
    (parsed,) = rtp.parse_rtcp(report.to_bytes())
    # Last SR: the middle 32 bits of its NTP time; delay: 0.5 s in 1/65536 s.
    assert parsed.reports[0] == rtp.ReportBlock(9, 0, 1, 4, 0, 0x03040506, 32768)


def test_compound_with_sdes_and_bye():
    receiver = rtp.ReceiverReport(ssrc=1)
    sdes = bytes.fromhex("81ca0002 00000001 0100 0000")  # one chunk, an empty CNAME
    bye = rtp.Goodbye((1, 2), b"hang up")
    data = receiver.to_bytes() + sdes + bye.to_bytes()
    assert len(bye.to_bytes()) % 4 == 0
    assert rtp.parse_rtcp(data) == [receiver, bye]


def test_padded_last_packet():
    bye = b"\xa1\xcb\x00\x02" + struct.pack("!I", 7) + b"\x00\x00\x00\x04"
    assert rtp.parse_rtcp(bye) == [rtp.Goodbye((7,))]


def test_ntp_helpers():
    assert rtp.ntp_timestamp(0) == 2208988800 << 32
    assert rtp.ntp_timestamp(1.5) == (2208988801 << 32) | 0x80000000
    assert rtp.ntp_middle(0x0102030405060708) == 0x03040506


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\xc9\x00",
        b"\x40\xc9\x00\x01" + bytes(4),  # version 1
        b"\x80\xc9\x00\x05" + bytes(4),  # length past the end
        b"\x81\xc9\x00\x01" + bytes(4),  # RC=1 but no report block
        b"\x81\xc8\x00\x01" + bytes(4),  # SR without sender info
        b"\xa0\xc9\x00\x01" + bytes(4) + b"\x80\xcb\x00\x00",  # padding not last
        b"\xa0\xc9\x00\x01" + bytes(4),  # padding count 0
        b"\x82\xcb\x00\x01" + bytes(4),  # BYE counting 2 SSRCs, holding 1
        b"\x81\xcb\x00\x02" + bytes(4) + b"\x09abc",  # reason past the end
        b"\x80\xc9\x00\x01" + bytes(4) + b"\x80",  # trailing byte
    ],
)
def test_malformed_rtcp(data):
    with pytest.raises(rtp.RTCPError):
        rtp.parse_rtcp(data)


@given(st.binary(max_size=120))
def test_parse_rtcp_raises_only_rtcp_error(data):
    try:
        rtp.parse_rtcp(data)
    except rtp.RTCPError:
        pass


@given(st.lists(st.binary(max_size=40), max_size=4))
def test_parse_rtcp_of_plausible_headers_raises_only_rtcp_error(bodies):
    data = b"".join(
        bytes([0x80 | (len(body) % 32), 200 + len(body) % 5]) + struct.pack("!H", (len(body) + 3) // 4) + body
        for body in bodies
    )
    try:
        rtp.parse_rtcp(data)
    except rtp.RTCPError:
        pass


# The statistics take a shorter path for the packet right after the highest
# (received_packet's fast path); these check it against the full RFC 3550
# A.1 and A.8 update, which a subclass forces on every packet.


class FullUpdateStats(rtp.RTPReceiverStats):
    def received_packet(self, sequence, timestamp, arrival):
        self._in_order = None
        return super().received_packet(sequence, timestamp, arrival)


def observable(stats, now=0.0):
    return (
        stats.probation,
        stats.max_sequence,
        stats.cycles,
        stats.base_sequence,
        stats.received,
        stats.expected,
        stats.cumulative_lost,
        stats.jitter,
        stats.report_block(now),
    )


# Steps between consecutive packets' sequence numbers: mostly the next one,
# with duplicates, reordering, small gaps, restarts and jumps across the wrap.
_STEPS = st.one_of(
    st.just(1),
    st.just(1),
    st.just(1),
    st.sampled_from([0, -1, -2, 2, 3, 50, -50, 3000, 20000, -20000, 65535]),
)


@given(
    start=st.integers(0, 0xFFFF),
    steps=st.lists(st.tuples(_STEPS, st.integers(-400, 400)), max_size=80),
)
@settings(max_examples=300, deadline=None)
def test_receiver_stats_fast_path_agrees_with_the_full_update(start, steps):
    fast, full = rtp.RTPReceiverStats(ssrc=5), FullUpdateStats(ssrc=5)
    sequence, timestamp = start, 0xFFFFF000
    for index, (step, delay) in enumerate(steps):
        sequence = (sequence + step) & 0xFFFF
        timestamp = (timestamp + 160 * step) & 0xFFFFFFFF
        arrival = (index * 160 + 1000 + delay) & 0xFFFFFFFF
        assert fast.received_packet(sequence, timestamp, arrival) == full.received_packet(sequence, timestamp, arrival)
        assert fast._jitter == full._jitter
    assert observable(fast) == observable(full)


def test_receiver_stats_out_of_order_after_an_in_order_run():
    stats = rtp.RTPReceiverStats(ssrc=5)
    feed(stats, [*range(10), 11, 10, 12])
    assert (stats.max_sequence, stats.received, stats.cumulative_lost) == (12, 12, 0)
    # After the reordered pair the stream goes on in order from the highest.
    feed(stats, [13, 14])
    assert (stats.max_sequence, stats.received, stats.cumulative_lost) == (14, 14, 0)


def test_receiver_stats_duplicate_after_an_in_order_run():
    stats = rtp.RTPReceiverStats(ssrc=5)
    feed(stats, [0, 1, 2, 3, 3, 4])
    assert (stats.max_sequence, stats.received, stats.cumulative_lost) == (4, 5, -1)
