"""
Test helpers: a MediaEngine whose tick is driven by a Clock while its RTP
crosses real UDP sockets on 127.0.0.1, far ends that are plain sockets,
and measures of what a far end heard.
"""

import math
import random
import socket
import struct

from twisted.internet.task import Clock

from callcenter.media import g711, rtp, tones
from callcenter.media.engine import MediaEngine
from callcenter.sip.sdp import AudioFormat

PCMU = AudioFormat(0, "PCMU", 101)
PCMA = AudioFormat(8, "PCMA", 101)
TICK = 0.020
LEVEL = tones.dbm0_amplitude(-12)

_ENCODE = {"PCMU": g711.linear_to_ulaw, "PCMA": g711.linear_to_alaw}
_DECODE = {"PCMU": g711.ulaw_to_linear, "PCMA": g711.alaw_to_linear}


def tone(frequency, ms, codec=PCMU, level=LEVEL):
    """C{ms} of a sine in C{codec}'s frames."""
    encode = _ENCODE[codec.encoding]
    return [encode(frame) for frame in tones.tone_frames((frequency,), ms, level)]


def silence(count, codec=PCMU):
    return [bytes((g711.ULAW_SILENCE if codec.encoding == "PCMU" else g711.ALAW_SILENCE,)) * 160] * count


def samples_of(payloads, encoding):
    pcm = _DECODE[encoding](b"".join(payloads))
    return struct.unpack(f"<{len(pcm) // 2}h", pcm)


def level_at(samples, frequency):
    """Goertzel: the amplitude of the C{frequency} component of C{samples}."""
    if not samples:
        return 0.0
    coefficient = 2 * math.cos(2 * math.pi * frequency / 8000)
    previous = before = 0.0
    for sample in samples:
        previous, before = sample + coefficient * previous - before, previous
    power = previous * previous + before * before - coefficient * previous * before
    return 2 * math.sqrt(max(power, 0.0)) / len(samples)


class FarEnd:
    """A phone outside the engine: a UDP socket talking RTP with one session."""

    def __init__(self, session, codec):
        self.session = session
        self.codec = codec
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.setblocking(False)
        self.port = self.socket.getsockname()[1]
        # Every packet received, by the rig's tick count when it was read:
        # (tick, payload type, payload).
        self.received = []
        self._sequence = random.randrange(1 << 16)
        self._timestamp = random.randrange(1 << 32)
        self._ssrc = random.randrange(1 << 32)
        self._first = True
        session.set_remote("127.0.0.1", self.port, codec)

    def send(self, payload):
        header = rtp.build_header(self._first, self.codec.payload_type, self._sequence, self._timestamp, self._ssrc)
        self._first = False
        self._sequence = (self._sequence + 1) & 0xFFFF
        self._timestamp = (self._timestamp + 160) & 0xFFFFFFFF
        self.socket.sendto(header + payload, ("127.0.0.1", self.session.local_port))

    def skip(self):
        """A tick of silence suppression: no packet, the timestamp runs on."""
        self._timestamp = (self._timestamp + 160) & 0xFFFFFFFF

    def collect(self, tick):
        while True:
            try:
                data = self.socket.recv(2048)
            except BlockingIOError:
                return
            packet = rtp.parse(data)
            self.received.append((tick, packet.payload_type, packet.payload))

    def audio(self, since=0):
        """The audio payloads received from tick C{since} on."""
        return [payload for tick, kind, payload in self.received if tick >= since and kind == self.codec.payload_type]

    def heard(self, since=0):
        """The received audio from tick C{since} on, as linear samples."""
        return samples_of(self.audio(since), self.codec.encoding)

    def close(self):
        self.socket.close()


class Rig:
    """An engine on a Clock with real sockets; far ends speak on each tick."""

    def __init__(self, **options):
        from twisted.internet import reactor

        base = random.randrange(40000, 60000, 2)
        self.clock = Clock()
        self.engine = MediaEngine(reactor, self.clock, port_range=(base, base + 63), **options)
        self.far_ends = []
        # What each far end says, one frame a tick: far end -> iterator.
        self.speech = {}
        self.ticks = 0
        self.engine.start()

    def call(self, codec=PCMU):
        """A session and the far end talking to it."""
        session = self.engine.open_session()
        far_end = FarEnd(session, codec)
        self.far_ends.append(far_end)
        return session, far_end

    def say(self, far_end, frames):
        """Have C{far_end} send C{frames}, one per tick from the next, after what it says already."""
        pending = self.speech.get(far_end)
        self.speech[far_end] = iter(frames) if pending is None else _chain(pending, frames)

    def run(self, count):
        for _ in range(count):
            for far_end, frames in list(self.speech.items()):
                frame = next(frames, None)
                if frame is None:
                    del self.speech[far_end]
                elif frame is _QUIET:
                    far_end.skip()
                else:
                    far_end.send(frame)
            # The first tick runs at the engine's start time; each later
            # one a hair over 20 ms on (see test_session's Call.ticks).
            self.clock.advance(0 if self.ticks == 0 else TICK + 1e-9)
            for far_end in self.far_ends:
                far_end.collect(self.ticks)
            self.ticks += 1

    def close(self):
        self.engine.stop()
        for far_end in self.far_ends:
            far_end.close()


# A tick in a far end's speech on which it sends nothing.
_QUIET = object()


def quiet(count):
    return [_QUIET] * count


def _chain(first, frames):
    yield from first
    yield from frames
