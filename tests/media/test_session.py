"""
One media session, driven by a Clock, on a fake UDP layer: what goes on the
wire each tick, what is heard, latching, hold, inactivity, DTMF, RTCP.
"""

import errno
from itertools import pairwise

import pytest
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock

from callcenter.media import g711, rtp, tones
from callcenter.media.dtmf import EventSender, TelephoneEvent
from callcenter.media.engine import MediaEngine
from callcenter.sip.sdp import AudioFormat

PCMU = AudioFormat(0, "PCMU", 101)
PCMA_NO_EVENTS = AudioFormat(8, "PCMA", None)
PEER = ("192.0.2.10", 40000)
NAT = ("198.51.100.7", 61000)


class FakeUDPPort:
    def __init__(self, reactor, number, protocol):
        self.reactor = reactor
        self.number = number
        self.protocol = protocol
        self.sent = []

    def write(self, data, address):
        self.sent.append((data, address))

    def stopListening(self):
        del self.reactor.bound[self.number]


class FakeUDPReactor:
    """listenUDP only: ports in C{taken} are in use by someone else."""

    def __init__(self, taken=()):
        self.taken = set(taken)
        self.bound = {}

    def listenUDP(self, port, protocol, interface=""):
        if port in self.taken or port in self.bound:
            raise CannotListenError(interface, port, OSError(errno.EADDRINUSE, "in use"))
        self.bound[port] = FakeUDPPort(self, port, protocol)
        return self.bound[port]


class Call:
    """A session on a Clock-driven engine, with its sent packets at hand."""

    def __init__(self, codec=PCMU, **options):
        self.clock = Clock()
        self.udp = FakeUDPReactor()
        self.engine = MediaEngine(self.udp, self.clock, port_range=(30000, 30099), **options)
        self.session = self.engine.open_session()
        self.rtp_port = self.udp.bound[self.session.local_port]
        self.rtcp_port = self.udp.bound[self.session.local_port + 1]
        self.session.set_remote(PEER[0], PEER[1], codec)
        self.engine.start()
        self.clock.advance(0)

    def ticks(self, count):
        # A hair over a tick each: summing 0.020s in floating point may fall
        # short of start + n * 0.020 and leave a tick for the next advance.
        for _ in range(count):
            self.clock.advance(0.020 + 1e-9)

    def sent(self):
        """Packets sent so far (parsed) with their destination, and forget them."""
        sent = [(rtp.parse(data), address) for data, address in self.rtp_port.sent]
        self.rtp_port.sent.clear()
        return sent

    def receive(self, packet, source=PEER):
        self.rtp_port.protocol.datagramReceived(packet, source)


class Stream:
    """A far end's outgoing RTP stream."""

    def __init__(self, ssrc=0x1234, payload_type=0, sequence=1000, timestamp=5000):
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.sequence = sequence
        self.timestamp = timestamp

    def packet(self, payload, payload_type=None, timestamp=None, marker=False):
        header = rtp.build_header(
            marker,
            self.payload_type if payload_type is None else payload_type,
            self.sequence,
            self.timestamp if timestamp is None else timestamp,
            self.ssrc,
        )
        self.sequence = (self.sequence + 1) & 0xFFFF
        if timestamp is None:
            self.timestamp += 160
        return header + payload


def frames(count, first=1):
    return [bytes([(first + n) % 256]) * 160 for n in range(count)]


def results(deferred):
    seen = []
    deferred.addBoth(seen.append)
    return seen


def test_one_packet_per_tick_with_sequence_and_timestamp_steps():
    call = Call()
    played = results(call.session.play(frames(5)))
    call.ticks(10)
    sent = call.sent()
    assert [packet.payload for packet, _ in sent] == frames(5)
    assert {address for _, address in sent} == {PEER}
    first = sent[0][0]
    for n, (packet, _) in enumerate(sent):
        assert packet.payload_type == 0
        assert packet.ssrc == first.ssrc
        assert packet.sequence == (first.sequence + n) & 0xFFFF
        assert packet.timestamp == (first.timestamp + 160 * n) & 0xFFFFFFFF
        assert packet.marker == (n == 0)
    assert played == [True]


def test_timestamps_jump_across_silence_and_the_marker_starts_a_talkspurt():
    call = Call()
    call.session.play(frames(2))
    call.ticks(3)
    first = call.sent()
    call.ticks(10)  # ten ticks without sending
    call.session.play(frames(2))
    call.ticks(3)
    second = call.sent()
    last, resumed = first[-1][0], second[0][0]
    assert resumed.marker and not second[1][0].marker
    assert resumed.sequence == (last.sequence + 1) & 0xFFFF
    # Sent one tick after the first play's last packet, then 10 silent
    # ticks, then the tick on which the second play began.
    gap_ticks = (resumed.timestamp - last.timestamp) // 160
    assert gap_ticks == 12


def test_play_deferreds_fire_false_when_replaced_stopped_or_closed():
    call = Call()
    replaced = results(call.session.play(frames(50)))
    call.ticks(2)
    stopped = results(call.session.play(frames(50, first=100)))
    assert replaced == [False]
    call.ticks(2)
    call.session.stop_playing()
    assert stopped == [False]
    closed = results(call.session.play(frames(50)))
    call.session.close()
    assert closed == [False]
    assert results(call.session.play(frames(1))) == [False]
    assert results(call.session.play([])) == [False]


def test_chained_plays_are_gapless():
    call = Call()
    first = call.session.play(frames(3))
    first.addCallback(lambda _: call.session.play(frames(3, first=10)))
    call.ticks(8)
    sent = call.sent()
    assert [p.payload for p, _ in sent] == frames(3) + frames(3, first=10)
    stamps = [p.timestamp for p, _ in sent]
    assert all(b - a == 160 for a, b in pairwise(stamps))
    assert [p.marker for p, _ in sent] == [True] + [False] * 5


def test_empty_play_fires_true_at_once():
    call = Call()
    assert results(call.session.play(iter(()))) == [True]


def test_hold_stops_sending_and_resume_marks_the_talkspurt():
    call = Call()
    call.session.play(frames(20))
    call.ticks(3)
    call.session.hold(True)
    call.ticks(5)
    assert len(call.sent()) == 3
    call.session.hold(False)
    call.ticks(2)
    resumed = call.sent()
    # The play paused and resumes where it was.
    assert [p.payload for p, _ in resumed] == frames(2, first=4)
    assert resumed[0][0].marker


def test_inactivity_fires_once_after_the_timeout():
    call = Call(inactivity_timeout=3.0)
    fired = []
    call.session.inactive = lambda: fired.append(call.clock.seconds())
    stream = Stream()
    for _ in range(50):
        call.receive(stream.packet(b"\xff" * 160))
        call.ticks(1)
    assert fired == []
    last_packet = call.clock.seconds()
    call.ticks(200)
    assert len(fired) == 1
    assert 3.0 <= fired[0] - last_packet <= 3.04


def test_inactivity_without_any_rtp_counts_from_set_remote():
    call = Call(inactivity_timeout=1.0)
    fired = []
    call.session.inactive = lambda: fired.append(True)
    call.ticks(49)
    assert fired == []
    call.ticks(2)
    assert fired == [True]


def test_hold_suspends_inactivity():
    call = Call(inactivity_timeout=1.0)
    fired = []
    call.session.inactive = lambda: fired.append(True)
    call.session.hold(True)
    call.ticks(500)
    assert fired == []
    call.session.hold(False)
    call.ticks(45)
    assert fired == []
    call.ticks(10)
    assert fired == [True]


def test_received_audio_in_order_with_silence_for_the_missing():
    call = Call()
    heard = []
    call.session.audio_received = lambda payload, codec: heard.append(payload)
    stream = Stream()
    packets = [stream.packet(payload) for payload in frames(6)]
    del packets[3]
    packets[0], packets[1] = packets[1], packets[0]
    for packet in packets:
        call.receive(packet)
    call.ticks(8)
    audio = [frame for frame in heard if frame != b"\xff" * 160]
    assert audio == [f for n, f in enumerate(frames(6)) if n != 3]
    # Continuous 20 ms frames: the missing one is silence, in place.
    start = heard.index(frames(1)[0])
    assert heard[start : start + 6] == frames(3) + [b"\xff" * 160] + frames(2, first=5)


def test_silence_is_in_the_codec():
    call = Call(codec=PCMA_NO_EVENTS)
    heard = []
    call.session.audio_received = lambda payload, codec: heard.append((payload, codec))
    stream = Stream(payload_type=8)
    call.receive(stream.packet(b"\x01" * 160))
    call.ticks(6)
    assert (b"\xd5" * 160, PCMA_NO_EVENTS) in heard


def test_echo_sends_back_what_was_heard_with_our_own_stream():
    call = Call()
    call.session.echo()
    stream = Stream(ssrc=777)
    for payload in frames(5):
        call.receive(stream.packet(payload))
        call.ticks(1)
    call.ticks(5)
    sent = call.sent()
    echoed = [p.payload for p, _ in sent if p.payload != b"\xff" * 160]
    assert echoed == frames(5)
    assert {p.ssrc for p, _ in sent} != {777}
    sequences = [p.sequence for p, _ in sent]
    assert all((b - a) & 0xFFFF == 1 for a, b in pairwise(sequences))


def test_latches_after_three_consecutive_packets_from_a_new_source():
    call = Call()
    heard = []
    call.session.audio_received = lambda payload, codec: heard.append(payload)
    stream = Stream()
    for n in range(2):
        call.receive(stream.packet(b"\x10" * 160), source=NAT)
    assert not call.session.latched
    call.receive(stream.packet(b"\x10" * 160), source=NAT)
    assert call.session.latched
    assert call.session.stats["remote"] == NAT[0]
    call.session.play(frames(1))
    call.ticks(5)
    assert [address for _, address in call.sent()] == [NAT]
    # Once per remote: another source cannot take it over again.
    other = Stream(ssrc=99)
    for _ in range(5):
        call.receive(other.packet(b"\x20" * 160), source=("203.0.113.1", 5000))
    assert call.session.stats["remote_port"] == NAT[1]
    # A new SDP remote re-arms it.
    call.session.set_remote(PEER[0], PEER[1], PCMU)
    assert not call.session.latched


def test_no_latch_on_spoofed_or_discontinuous_packets():
    call = Call()
    stream = Stream()
    call.receive(stream.packet(b"\x10" * 160), source=NAT)
    spoofer = Stream(ssrc=4242)
    # Alternating SSRCs, and gaps in the sequence, never make three in a row.
    for n in range(6):
        call.receive((stream if n % 2 else spoofer).packet(b"\x10" * 160), source=NAT)
    gappy = Stream(ssrc=5)
    for _ in range(4):
        call.receive(gappy.packet(b"\x10" * 160), source=NAT)
        gappy.sequence += 1
    assert not call.session.latched
    assert call.session.packets_received == 0
    call.session.play(frames(1))
    call.ticks(2)
    assert [address for _, address in call.sent()] == [PEER]


def test_no_latch_once_the_sdp_address_is_heard():
    call = Call()
    stream = Stream()
    call.receive(stream.packet(b"\x10" * 160))
    intruder = Stream(ssrc=66)
    for _ in range(10):
        call.receive(intruder.packet(b"\x20" * 160), source=NAT)
    assert not call.session.latched


def rfc4733_packets(digit, stream, duration_ms=100):
    timestamp = stream.timestamp
    packets = [
        stream.packet(payload, payload_type=101, timestamp=timestamp, marker=marker)
        for marker, payload in EventSender(digit, duration_ms).payloads()
    ]
    stream.timestamp += 8 * duration_ms
    return packets


def test_rfc4733_digits_reported_once():
    call = Call()
    digits = []
    call.session.dtmf_received = digits.append
    stream = Stream()
    for digit in "12#":
        for packet in rfc4733_packets(digit, stream):
            call.receive(packet)
            call.ticks(1)
        call.ticks(15)
    assert digits == ["1", "2", "#"]


def encode_ulaw(pcm_frames):
    return [g711.linear_to_ulaw(frame) for frame in pcm_frames]


def test_inband_digits_detected_once_and_switchable():
    call = Call()
    digits = []
    call.session.dtmf_received = digits.append
    stream = Stream()
    silence = [b"\xff" * 160] * 5
    for payload in silence + encode_ulaw(tones.dtmf_tone("7", 100)) + silence:
        call.receive(stream.packet(payload))
        call.ticks(1)
    call.ticks(5)
    assert digits == ["7"]
    call.session.inband_dtmf = False
    for payload in encode_ulaw(tones.dtmf_tone("8", 100)) + silence:
        call.receive(stream.packet(payload))
        call.ticks(1)
    call.ticks(5)
    assert digits == ["7"]


def test_a_press_arriving_both_ways_is_reported_once():
    call = Call()
    digits = []
    call.session.dtmf_received = digits.append
    stream = Stream()
    tone = encode_ulaw(tones.dtmf_tone("5", 100)) + [b"\xff" * 160] * 3
    events = rfc4733_packets("5", Stream(sequence=0, ssrc=stream.ssrc))
    # Interleave them as a phone that sends both does: one stream, one SSRC.
    for n in range(max(len(tone), len(events))):
        if n < len(tone):
            call.receive(stream.packet(tone[n]))
        if n < len(events):
            event = rtp.parse(events[n])
            call.receive(
                rtp.build_header(event.marker, 101, stream.sequence, event.timestamp, stream.ssrc)
                + event.payload
            )
            stream.sequence += 1
        call.ticks(1)
    call.ticks(10)
    assert digits == ["5"]
    # A new press of the same key later is reported again.
    call.ticks(20)
    for payload in encode_ulaw(tones.dtmf_tone("5", 100)) + [b"\xff" * 160] * 5:
        call.receive(stream.packet(payload))
        call.ticks(1)
    assert digits == ["5", "5"]


def test_send_dtmf_as_rfc4733_events_pausing_audio():
    call = Call()
    played = results(call.session.play(frames(10)))
    call.ticks(2)
    sent_digit = results(call.session.send_dtmf("9", 100))
    call.ticks(7)
    assert sent_digit == [True]
    call.ticks(20)
    sent = call.sent()
    kinds = [p.payload_type for p, _ in sent]
    assert kinds == [0, 0] + [101] * 7 + [0] * 8
    events = [p for p, _ in sent if p.payload_type == 101]
    assert len({p.timestamp for p in events}) == 1
    assert [p.marker for p in events] == [True] + [False] * 6
    parsed = [TelephoneEvent.parse(p.payload) for p in events]
    assert {e.event for e in parsed} == {9}
    assert [e.end for e in parsed] == [False] * 4 + [True] * 3
    assert parsed[-1].duration == 800
    # Audio resumes where it stopped, all of it sent.
    assert [p.payload for p, _ in sent if p.payload_type == 0] == frames(10)
    assert played == [True]
    sequences = [p.sequence for p, _ in sent]
    assert all((b - a) & 0xFFFF == 1 for a, b in pairwise(sequences))


def test_send_dtmf_in_band_when_no_telephone_event_was_negotiated():
    call = Call(codec=PCMA_NO_EVENTS)
    done = results(call.session.send_dtmf("3", 100))
    call.ticks(10)
    assert done == [True]
    sent = call.sent()
    assert {p.payload_type for p, _ in sent} == {8}
    assert sent[0][0].payload == g711.linear_to_alaw(tones.dtmf_tone("3", 100)[0])


def test_send_dtmf_rejects_bad_digits_and_close_fires_false():
    call = Call()
    with pytest.raises(ValueError):
        call.session.send_dtmf("x")
    pending = results(call.session.send_dtmf("1"))
    call.session.close()
    assert pending == [False]


def test_close_releases_ports_and_stops_callbacks():
    call = Call()
    heard = []
    call.session.audio_received = lambda payload, codec: heard.append(payload)
    port = call.session.local_port
    call.session.close()
    assert port not in call.udp.bound and port + 1 not in call.udp.bound
    assert port not in call.engine.sessions
    call.receive(Stream().packet(b"\x01" * 160))
    call.ticks(10)
    assert heard == []


def test_rtcp_reports_every_few_seconds_and_bye_on_close():
    call = Call()
    call.session.play(frames(500))
    stream = Stream()
    for _ in range(400):
        call.receive(stream.packet(b"\x01" * 160))
        call.ticks(1)
    reports = [rtp.parse_rtcp(data) for data, _ in call.rtcp_port.sent]
    # First within 0.75-3.75 s, then every 2.5-7.5 s: 1 to 3 in 8 s.
    assert 1 <= len(reports) <= 3
    assert {address for _, address in call.rtcp_port.sent} == {(PEER[0], PEER[1] + 1)}
    sender_report = reports[-1][0]
    assert isinstance(sender_report, rtp.SenderReport)
    assert 0 < sender_report.packet_count <= call.session.packets_sent
    assert sender_report.octet_count == 160 * sender_report.packet_count
    assert sender_report.reports[0].ssrc == stream.ssrc
    call.rtcp_port.sent.clear()
    call.session.close()
    assert isinstance(rtp.parse_rtcp(call.rtcp_port.sent[0][0])[-1], rtp.Goodbye)


def test_rtcp_receiver_report_about_us_is_kept():
    call = Call()
    call.session.play(frames(5))
    call.ticks(5)
    ssrc = call.sent()[0][0].ssrc
    block = rtp.ReportBlock(ssrc, 12, 3, 1000, 40)
    report = rtp.ReceiverReport(0x1234, (block,)).to_bytes()
    call.rtcp_port.protocol.datagramReceived(report, (PEER[0], PEER[1] + 1))
    assert call.session.remote_report == block
    call.rtcp_port.protocol.datagramReceived(b"junk", (PEER[0], PEER[1] + 1))


def test_stats():
    call = Call()
    stream = Stream()
    for n in range(10):
        packet = stream.packet(b"\x01" * 160)
        if n != 4:
            call.receive(packet)
    call.session.play(frames(3))
    call.ticks(5)
    stats = call.session.stats
    assert stats["packets_sent"] == 3
    assert stats["packets_received"] == 9
    assert stats["packets_lost"] == 1
    assert stats["remote"] == PEER[0]
    assert stats["latched"] is False
    assert stats["jitter_ms"] >= 0


def test_set_remote_validates():
    call = Call()
    with pytest.raises(ValueError):
        call.session.set_remote("phone.example.com", 4000, PCMU)
    with pytest.raises(ValueError):
        call.session.set_remote("192.0.2.1", 0, PCMU)
    with pytest.raises(ValueError):
        call.session.set_remote("192.0.2.1", 4000, AudioFormat(9, "G722", None))


def test_malformed_and_foreign_packets_are_dropped():
    call = Call()
    call.receive(b"\x80\x00")
    call.receive(b"\x40" + bytes(20))
    call.receive(Stream(payload_type=13).packet(b"\x00"))  # comfort noise
    assert call.session.packets_received == 0
    assert call.session.packets_dropped == 3


def test_inband_detection_auto_follows_the_negotiation():
    call = Call(inband_dtmf="auto")
    assert call.session.inband_dtmf is False
    call.session.set_remote(PEER[0], PEER[1], PCMA_NO_EVENTS)
    assert call.session.inband_dtmf is True
    call.session.inband_dtmf = False
    call.session.set_remote(PEER[0], PEER[1], PCMU)
    call.session.set_remote(PEER[0], PEER[1], PCMA_NO_EVENTS)
    assert call.session.inband_dtmf is False
    with pytest.raises(ValueError):
        Call(inband_dtmf="sometimes")


def test_rfc4733_event_without_its_end_packets_ends_after_the_timeout():
    call = Call()
    digits = []
    call.session.dtmf_received = digits.append
    stream = Stream()
    for packet in rfc4733_packets("4", stream)[:3]:  # no E-bit packets
        call.receive(packet)
        call.ticks(1)
    assert digits == []
    call.ticks(30)
    assert digits == ["4"]


def test_callbacks_may_close_the_session():
    call = Call()
    closed = []

    def hang_up(payload, codec):
        closed.append(call.session.close())

    call.session.audio_received = hang_up
    call.session.play(frames(10))
    call.receive(Stream().packet(b"\x01" * 160))
    call.ticks(10)
    assert len(closed) == 1
    assert call.session.closed


def test_unspecified_remote_sends_nothing_until_latched():
    call = Call()
    call.session.set_remote("0.0.0.0", 4000, PCMU)
    call.session.play(frames(20))
    call.ticks(3)
    assert call.sent() == []
    stream = Stream()
    for _ in range(3):
        call.receive(stream.packet(b"\x10" * 160), source=NAT)
    call.ticks(2)
    assert {address for _, address in call.sent()} == {NAT}


# An established stream's packets take a shorter path (rtp_received's fast
# path); everything that leaves the plain in-order case must come out as
# the full path would have it.


def established(call, stream, count=5):
    """Audio heard by C{call}, after C{count} in-order packets of C{stream} from PEER."""
    heard = []
    call.session.audio_received = lambda payload, codec: heard.append(payload)
    for payload in frames(count):
        call.receive(stream.packet(payload))
        call.ticks(1)
    return heard


def audio(heard):
    return [frame for frame in heard if frame != b"\xff" * 160]


def test_out_of_order_packets_after_an_in_order_run_play_in_order():
    call = Call()
    stream = Stream()
    heard = established(call, stream, count=5)
    later = [stream.packet(payload) for payload in frames(3, first=6)]
    for packet in (later[1], later[0], later[2]):
        call.receive(packet)
    call.ticks(8)
    assert audio(heard) == frames(8)
    stats = call.session.stats
    assert (stats["packets_received"], stats["packets_lost"], stats["late_packets"]) == (8, 0, 0)


def test_a_packet_after_its_turn_is_dropped_as_late_after_an_in_order_run():
    call = Call()
    stream = Stream()
    heard = established(call, stream, count=3)
    late = stream.packet(frames(1, first=4)[0])
    for payload in frames(3, first=5):
        call.receive(stream.packet(payload))
    call.ticks(6)
    call.receive(late)
    call.ticks(4)
    # Played as silence in its place; arriving afterwards it is not played.
    assert audio(heard) == frames(3) + frames(3, first=5)
    assert call.session.stats["late_packets"] == 1
    # RFC 3550 counts it received all the same: nothing lost.
    assert call.session.stats["packets_lost"] == 0


def test_sequence_wrap_in_an_established_stream():
    call = Call()
    stream = Stream(sequence=65533)
    heard = established(call, stream, count=8)
    call.ticks(4)
    assert audio(heard) == frames(8)
    receiver = call.session._receiver_stats
    assert (receiver.cycles, receiver.max_sequence) == (65536, 4)
    assert call.session.stats["packets_lost"] == 0


def test_duplicate_in_an_established_stream_plays_once():
    call = Call()
    stream = Stream()
    heard = established(call, stream, count=4)
    packet = stream.packet(frames(1, first=5)[0])
    call.receive(packet)
    call.receive(packet)
    call.receive(stream.packet(frames(1, first=6)[0]))
    call.ticks(6)
    assert audio(heard) == frames(6)
    # RFC 3550 A.3: a duplicate counts as received, so the loss goes negative.
    assert call.session.stats["packets_lost"] == -1


def test_new_ssrc_in_an_established_stream_starts_a_new_stream():
    call = Call()
    heard = established(call, Stream(ssrc=1), count=5)
    call.ticks(4)
    # The far end restarts its stream: new SSRC, unrelated sequence numbers.
    restarted = Stream(ssrc=2, sequence=40000, timestamp=99)
    for payload in frames(4, first=50):
        call.receive(restarted.packet(payload))
        call.ticks(1)
    call.ticks(4)
    assert audio(heard) == frames(5) + frames(4, first=50)
    assert call.session.stats["packets_received"] == 9
    # The statistics are the new source's: on probation for its first packet.
    receiver = call.session._receiver_stats
    assert (receiver.ssrc, receiver.received, call.session.stats["packets_lost"]) == (2, 3, 0)


def test_an_established_stream_is_not_taken_from_a_new_remote_or_a_closed_session():
    call = Call()
    stream = Stream()
    established(call, stream, count=3)
    call.session.set_remote("192.0.2.20", 42000, PCMU)
    call.receive(stream.packet(b"\x10" * 160))
    assert (call.session.packets_received, call.session.packets_dropped) == (3, 1)
    call.session.close()
    call.receive(stream.packet(b"\x10" * 160), source=("192.0.2.20", 42000))
    assert (call.session.packets_received, call.session.packets_dropped) == (3, 2)


def test_marked_and_event_packets_in_an_established_stream():
    call = Call()
    stream = Stream()
    heard = established(call, stream, count=3)
    digits = []
    call.session.dtmf_received = digits.append
    for packet in rfc4733_packets("7", stream):
        call.receive(packet)
    # A new talkspurt: the marker bit set on its first packet.
    call.receive(stream.packet(frames(1, first=9)[0], marker=True))
    call.receive(stream.packet(frames(1, first=10)[0]))
    call.ticks(8)
    assert digits == ["7"]
    assert audio(heard)[-2:] == frames(2, first=9)
    assert call.session.stats["packets_lost"] == 0
