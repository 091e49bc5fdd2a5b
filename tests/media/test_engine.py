"""
The media engine: the shared tick and its drift correction (on a Clock),
port allocation, and sessions talking to each other over real UDP
sockets on 127.0.0.1.
"""

import errno
import random
import socket
import struct
from itertools import pairwise

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock

from callcenter.media import g711, rtp, tones
from callcenter.media.engine import MAX_CATCH_UP_TICKS, MediaEngine, MediaPortsExhausted
from callcenter.sip.sdp import AudioFormat
from callcenter.timing import answer_within

PCMU = AudioFormat(0, "PCMU", 101)
SILENCE = b"\xff" * 160


class FakeUDPPort:
    def __init__(self, reactor, number):
        self.reactor = reactor
        self.number = number
        self.sent = []

    def write(self, data, address):
        self.sent.append(data)

    def stopListening(self):
        del self.reactor.bound[self.number]


class FakeUDPReactor:
    def __init__(self, taken=()):
        self.taken = set(taken)
        self.bound = {}

    def listenUDP(self, port, protocol, interface=""):
        if port in self.taken or port in self.bound:
            raise CannotListenError(interface, port, OSError(errno.EADDRINUSE, "in use"))
        self.bound[port] = FakeUDPPort(self, port)
        return self.bound[port]


def clocked_engine(**options):
    clock = Clock()
    udp = FakeUDPReactor(options.pop("taken", ()))
    engine = MediaEngine(udp, clock, port_range=options.pop("port_range", (30000, 30099)), **options)
    return engine, clock, udp


def playing_session(engine, udp, frames=10000):
    session = engine.open_session()
    session.set_remote("192.0.2.1", 4000, PCMU)
    session.play([bytes([n % 256]) * 160 for n in range(frames)])
    return session, udp.bound[session.local_port].sent


# The shared tick.


def test_one_packet_per_tick_per_playing_session():
    engine, clock, udp = clocked_engine()
    playing = [playing_session(engine, udp) for _ in range(3)]
    idle = engine.open_session()
    idle.set_remote("192.0.2.1", 4002, PCMU)
    engine.start()
    clock.advance(0)
    for _ in range(25):
        clock.advance(0.020 + 1e-9)
    assert engine.stats["ticks"] == 26
    for session, sent in playing:
        assert len(sent) == 26
        parsed = [rtp.parse(data) for data in sent]
        assert all((b.sequence - a.sequence) & 0xFFFF == 1 for a, b in pairwise(parsed))
        assert all((b.timestamp - a.timestamp) & 0xFFFFFFFF == 160 for a, b in pairwise(parsed))
    assert udp.bound[idle.local_port].sent == []
    assert engine.stats["packets_sent"] == 78
    assert engine.late_ticks == 0
    # Closed sessions' counts stay in the engine's totals.
    garbage = playing[0][0]
    garbage.rtp_received(b"\x00" * 5, ("192.0.2.9", 4000))
    garbage.close()
    assert engine.stats["packets_sent"] == 78
    assert (engine.stats["packets_dropped"], engine.stats["send_errors"]) == (1, 0)


def test_ticks_stay_on_the_grid_when_the_clock_runs_irregularly():
    engine, clock, udp = clocked_engine()
    _, sent = playing_session(engine, udp)
    clock.advance(12.345)  # the engine starts at an arbitrary time
    start = clock.seconds()
    engine.start()
    rng = random.Random(7)
    for _ in range(300):
        clock.advance(rng.choice((0.003, 0.011, 0.019, 0.021, 0.029, 0.041)))
        (pending,) = clock.getDelayedCalls()
        # The next tick is due on the grid, however late this one ran.
        assert pending.getTime() == pytest.approx(start + engine.tick_index * 0.020, abs=1e-9)
    assert engine.skipped_ticks == 0
    assert engine.late_ticks > 0
    # Every tick ran, caught up rather than dropped: one packet each, and
    # timestamps that count ticks, not lateness.
    parsed = [rtp.parse(data) for data in sent]
    assert len(parsed) == engine.ticks == engine.tick_index
    assert all((b.timestamp - a.timestamp) & 0xFFFFFFFF == 160 for a, b in pairwise(parsed))


def test_falling_far_behind_skips_ticks_and_counts_them():
    engine, clock, udp = clocked_engine()
    _, sent = playing_session(engine, udp)
    engine.start()
    for _ in range(6):  # ticks 0-5, on time
        clock.advance(0.020 if _ else 0)
    assert engine.late_ticks == 0
    clock.advance(1.0)  # a stall of 50 ticks
    assert engine.late_ticks == 1
    assert engine.skipped_ticks == 49
    parsed = [rtp.parse(data) for data in sent]
    assert len(parsed) == 7
    # The RTP timestamp follows the clock across the skipped ticks.
    assert (parsed[-1].timestamp - parsed[-2].timestamp) & 0xFFFFFFFF == 50 * 160
    clock.advance(0.020)
    assert len(sent) == 8


def test_a_few_ticks_behind_catches_up():
    engine, clock, udp = clocked_engine()
    _, sent = playing_session(engine, udp)
    engine.start()
    clock.advance(0.020 * MAX_CATCH_UP_TICKS + 0.001)
    assert engine.skipped_ticks == 0
    assert len(sent) == MAX_CATCH_UP_TICKS + 1


def test_a_failing_callback_or_prompt_does_not_stop_the_others():
    engine, clock, udp = clocked_engine()

    def failing_prompt():
        yield SILENCE
        yield SILENCE
        raise OSError("prompt file vanished")

    broken, broken_sent = playing_session(engine, udp)
    failed = []
    broken.play(failing_prompt()).addErrback(failed.append)
    deaf, _ = playing_session(engine, udp)
    deaf.audio_received = lambda payload, codec: 1 / 0
    deaf.rtp_received(rtp.build_header(False, 0, 1, 1, 1) + SILENCE, ("192.0.2.1", 4000))
    _, sent = playing_session(engine, udp)
    engine.start()
    for _ in range(6):
        clock.advance(0.020 + 1e-9)
    assert len(sent) == 7
    assert len(broken_sent) == 2
    assert deaf.callback_failures == 7
    assert failed[0].check(OSError)


def test_stop_closes_every_session():
    engine, clock, udp = clocked_engine()
    sessions = [playing_session(engine, udp)[0] for _ in range(3)]
    plays = []
    for session in sessions:
        session.play([SILENCE] * 100).addCallback(plays.append)
    engine.start()
    clock.advance(0.1)
    engine.stop()
    assert engine.sessions == {}
    assert udp.bound == {}
    assert plays == [False] * 3
    assert clock.getDelayedCalls() == []


# Ports.


def test_ports_are_even_pairs_skipping_taken_ones():
    engine, _, udp = clocked_engine(port_range=(30001, 30010), taken={30002, 30005})
    first = engine.open_session()
    second = engine.open_session()
    # 30002 is taken; 30004's RTCP port 30005 is taken; 30006 is free.
    assert (first.local_port, second.local_port) == (30006, 30008)
    assert set(udp.bound) == {30006, 30007, 30008, 30009}
    with pytest.raises(MediaPortsExhausted):
        engine.open_session()
    first.close()
    assert engine.open_session().local_port == 30006


def free_range(pairs):
    """A random even base with C{pairs} RTP/RTCP pairs above it."""
    base = random.randrange(40000, 60000, 2)
    return base, base + 2 * pairs - 1


@pytest_twisted.inlineCallbacks
def test_real_ports_skip_a_taken_pair_and_close_releases_them():
    from twisted.internet import reactor

    first, last = free_range(2)
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", first + 1))
    try:
        engine = MediaEngine(reactor, reactor, port_range=(first, last))
        session = engine.open_session()
        assert session.local_port == first + 2
        with pytest.raises(MediaPortsExhausted):
            engine.open_session()
        played = session.play([SILENCE] * 10)
        yield session.close()
        assert (yield played) is False
        rebind = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rebind.bind(("127.0.0.1", first + 2))
        rebind.close()
        assert engine.open_session().local_port == first + 2
        yield engine.stop()
    finally:
        squatter.close()


# Two sessions of one engine talking over 127.0.0.1.


class Listener:
    """Collects a session's received audio and digits; fires Deferreds on conditions."""

    def __init__(self, session):
        self.frames = []
        self.digits = []
        self._waiting = []
        session.audio_received = self.audio
        session.dtmf_received = self.digit

    def audio(self, payload, codec):
        self.frames.append(payload)
        self._check()

    def digit(self, digit):
        self.digits.append(digit)
        self._check()

    def _check(self):
        for condition, deferred in list(self._waiting):
            if condition(self):
                self._waiting.remove((condition, deferred))
                deferred.callback(True)

    def until(self, condition, timeout=5.0):
        from twisted.internet import reactor

        deferred = defer.Deferred()
        self._waiting.append((condition, deferred))
        self._check()
        return answer_within(reactor, timeout, deferred, False)

    def heard(self):
        return [frame for frame in self.frames if frame != SILENCE]


def silence_after_sound(count):
    def condition(listener):
        heard = listener.frames
        return len(listener.heard()) > 0 and heard[-count:] == [SILENCE] * count

    return condition


@pytest.fixture
def pair():
    from twisted.internet import reactor

    engine = MediaEngine(reactor, reactor, port_range=free_range(8))
    a = engine.open_session()
    b = engine.open_session()
    a.set_remote("127.0.0.1", b.local_port, PCMU)
    b.set_remote("127.0.0.1", a.local_port, PCMU)
    engine.start()
    yield engine, a, b
    engine.stop()


def ulaw(pcm_frames):
    return [g711.linear_to_ulaw(frame) for frame in pcm_frames]


def dominant_frequency(payloads):
    """Frequency by zero crossings of the decoded μ-law audio."""
    pcm = g711.ulaw_to_linear(b"".join(payloads))
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    crossings = sum(1 for x, y in pairwise(samples) if (x < 0) != (y < 0))
    return crossings / 2 / (len(samples) / 8000)


@pytest_twisted.inlineCallbacks
def test_a_tone_played_on_one_session_arrives_on_the_other(pair):
    _, a, b = pair
    listener = Listener(b)
    tone = ulaw(tones.tone_frames((1000,), 1000, tones.dbm0_amplitude(-10)))
    assert len(tone) == 50
    assert (yield a.play(tone)) is True
    assert (yield listener.until(silence_after_sound(5)))
    heard = listener.heard()
    assert 49 <= len(heard) <= 51
    assert dominant_frequency(heard) == pytest.approx(1000, rel=0.02)
    # Frames that arrive are delivered contiguously, in order.
    start = listener.frames.index(heard[0])
    assert listener.frames[start : start + len(heard)] == heard
    assert b.stats["packets_received"] == 50
    assert b.stats["packets_lost"] == 0
    assert a.stats["packets_sent"] == 50


@pytest_twisted.inlineCallbacks
def test_rfc4733_digits_arrive_once_each(pair):
    _, a, b = pair
    listener = Listener(b)
    sent = [a.send_dtmf(digit) for digit in "1#9"]
    assert (yield defer.gatherResults(sent)) == [True] * 3
    # Audio after the digits: once it is heard, every event packet is in.
    yield a.play([b"\x10" * 160] * 10)
    assert (yield listener.until(lambda l: len(l.heard()) >= 10))
    assert listener.digits == ["1", "#", "9"]


@pytest_twisted.inlineCallbacks
def test_inband_digit_is_detected_once(pair):
    _, a, b = pair
    listener = Listener(b)
    quiet = [SILENCE] * 3
    yield a.play(quiet + ulaw(tones.dtmf_tone("7", 120)) + quiet + [b"\x10" * 160])
    assert (yield listener.until(lambda l: b"\x10" * 160 in l.frames))
    assert listener.digits == ["7"]


@pytest_twisted.inlineCallbacks
def test_echo_returns_the_audio(pair):
    _, a, b = pair
    listener = Listener(a)
    b.echo()
    tone = ulaw(tones.tone_frames((1000,), 400, tones.dbm0_amplitude(-10)))
    yield a.play(tone)
    assert (yield listener.until(silence_after_sound(5)))
    assert listener.heard() == tone
    assert b.stats["packets_sent"] >= len(tone)


class RawPeer(DatagramProtocol):
    """A socket outside the engine: a phone behind NAT, or a spoofer."""

    def __init__(self):
        self.received = []
        self.arrived = defer.Deferred()

    def datagramReceived(self, data, address):
        self.received.append(data)
        if not self.arrived.called:
            self.arrived.callback(True)

    def send_stream(self, port, count, ssrc=0xABCD, sequence=100):
        for n in range(count):
            header = rtp.build_header(n == 0, 0, sequence + n, 8000 + 160 * n, ssrc)
            self.transport.write(header + b"\x10" * 160, ("127.0.0.1", port))


@pytest_twisted.inlineCallbacks
def test_latches_to_a_nat_source(pair):
    from twisted.internet import reactor

    _, _, b = pair
    nat = RawPeer()
    port = reactor.listenUDP(0, nat, interface="127.0.0.1")
    listener = Listener(b)
    try:
        # The phone's SDP named a's port; its packets come from elsewhere.
        nat.send_stream(b.local_port, 5)
        assert (yield listener.until(lambda l: len(l.heard()) >= 3))
        assert b.stats["latched"] is True
        assert b.stats["remote_port"] == port.getHost().port
        b.play([b"\x20" * 160] * 5)
        assert (yield answer_within(reactor, 5, nat.arrived, False))
        assert rtp.parse(nat.received[0]).payload == b"\x20" * 160
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_no_latch_on_a_single_spoofed_packet(pair):
    from twisted.internet import reactor

    _, a, b = pair
    spoofer = RawPeer()
    port = reactor.listenUDP(0, spoofer, interface="127.0.0.1")
    listener = Listener(a)
    try:
        spoofer.send_stream(b.local_port, 1)
        b.play([b"\x20" * 160] * 10)
        assert (yield listener.until(lambda l: len(l.heard()) >= 10))
        assert b.stats["latched"] is False
        assert spoofer.received == []
        assert b.stats["packets_received"] == 0
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_an_ipv6_far_end_is_heard_at_its_sdp_address_without_latching():
    # The engine reads its sockets itself: an IPv6 recvfrom gives (host,
    # port, flow, scope), which must compare equal to the SDP's (host, port)
    # as the address Twisted's own UDP port would have given.
    from twisted.internet import reactor

    clock = Clock()
    engine = MediaEngine(reactor, clock, host="::1", port_range=free_range(2))
    session = engine.open_session()
    phone = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    phone.bind(("::1", 0))
    phone.setblocking(False)
    try:
        session.set_remote("::1", phone.getsockname()[1], PCMU)
        engine.start()
        clock.advance(0)
        for n in range(3):
            header = rtp.build_header(n == 0, 0, 100 + n, 8000 + 160 * n, 0xABCD)
            phone.sendto(header + b"\x10" * 160, ("::1", session.local_port))
            clock.advance(0.020 + 1e-9)
        assert (session.packets_received, session.packets_dropped) == (3, 0)
        assert session.stats["latched"] is False
        session.play([b"\x20" * 160])
        clock.advance(0.020 + 1e-9)
        data, source = phone.recvfrom(2048)
        assert rtp.parse(data).payload == b"\x20" * 160
        assert source[1] == session.local_port
    finally:
        phone.close()
        yield engine.stop()
