"""
What a conference room's mix costs per 20 ms tick, in pure Python, and
what a call recording's tap costs while both sides talk.

    .venv/bin/python bench/conference_mix.py [--members 10] [--seconds 1]

The room's tick hook is timed alone (the members' sessions' own work is
the media engine's bench): each round hands every speaking member a frame
of speech through its session's C{audio_received}, as the session's tick
does, then runs the mix, which feeds every member.  Members are 70% PCMU
and 30% PCMA, so the mixes are encoded in both laws.  Best of five runs.
"""

import argparse
import os
import sys
import tempfile
import time

from twisted.internet.task import Clock

from callcenter.media import g711
from callcenter.media.conference import ConferenceRoom
from callcenter.media.engine import MediaEngine
from callcenter.media.recording import CallRecording
from callcenter.sip.sdp import AudioFormat

PCMU = AudioFormat(0, "PCMU", 101)
PCMA = AudioFormat(8, "PCMA", 101)


class NoSockets:
    """listenUDP for an engine that never sends: ports that write nowhere."""

    class Port:
        def write(self, data, address):
            pass

        def stopListening(self):
            pass

    def listenUDP(self, port, protocol, interface=""):
        return self.Port()


def speech():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from media_primitives import vowel_frames

    return vowel_frames(seconds=1.0)


def best_per_call(function, seconds):
    """Best time of one call of C{function()} over five runs, in µs."""
    count = 1
    while True:
        started = time.perf_counter()
        for _ in range(count):
            function()
        elapsed = time.perf_counter() - started
        if elapsed >= seconds / 5:
            break
        count *= 2
    best = elapsed
    for _ in range(4):
        started = time.perf_counter()
        for _ in range(count):
            function()
        best = min(best, time.perf_counter() - started)
    return best / count * 1e6


def room_cost(members, speakers, seconds):
    engine = MediaEngine(NoSockets(), Clock())
    room = ConferenceRoom(engine)
    pcm = speech()
    sessions = []
    for n in range(members):
        codec = PCMA if n % 10 >= 7 else PCMU
        session = engine.open_session()
        session.set_remote("192.0.2.1", 40000 + 2 * n, codec)
        room.join(session)
        encode = g711.linear_to_alaw if codec is PCMA else g711.linear_to_ulaw
        # Each speaker its own stretch of the vowel, so the sums are not trivial.
        frames = [encode(pcm[(n * 7 + k) % len(pcm)]) for k in range(len(pcm))]
        sessions.append((session, codec, frames))
    talking = sessions[:speakers]
    tick = iter(range(1 << 62))

    def one_tick():
        index = next(tick)
        for session, codec, frames in talking:
            session.audio_received(frames[index % len(frames)], codec)
        room._mix(index, 0.0)

    return best_per_call(one_tick, seconds)


def recording_cost(seconds):
    engine = MediaEngine(NoSockets(), Clock())
    session = engine.open_session()
    session.set_remote("192.0.2.1", 40000, PCMU)
    frames = [g711.linear_to_ulaw(frame) for frame in speech()]
    with tempfile.TemporaryDirectory() as directory:
        CallRecording(
            session,
            rx=os.path.join(directory, "rx.wav"),
            tx=os.path.join(directory, "tx.wav"),
            mixed=os.path.join(directory, "mixed.wav"),
        )
        tick = iter(range(1 << 62))

        def one_tick():
            index = next(tick)
            session.tap(index, frames[index % len(frames)], frames[(index + 17) % len(frames)])

        return best_per_call(one_tick, seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=1.0)
    options = parser.parse_args()
    members = options.members
    for speakers in sorted({0, 1, 2, 3, members}):
        cost = room_cost(members, speakers, options.seconds)
        print(f"room of {members}, {speakers:2} speaking: {cost:7.1f} µs per tick")
    print(f"recording rx+tx+mixed, both talking: {recording_cost(options.seconds):7.1f} µs per tick")


if __name__ == "__main__":
    main()
