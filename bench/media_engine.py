"""
The media engine under load on the real reactor: N sessions in pairs on
127.0.0.1, every session playing a pre-encoded prompt to its partner (so
N streams each way), for C{--seconds}.

    .venv/bin/python bench/media_engine.py --sessions 200 500 1000 [--seconds 10] [--no-inband]

Each size runs in a fresh process.  Reported: the process's CPU (user +
system from getrusage over wall time: 100% is one core; the engine is
single-threaded, so 100% is its ceiling), packets sent and received, loss
by RTP sequence, the engine's late and skipped ticks, and the interval
between consecutive packets of a stream as they arrive at the receiver
(p50/p99/max; 20 ms is perfect pacing).  The intervals are measured by a
probe in a separate process receiving 40 more streams from the engine:
the engine reads its own sockets once per tick, so arrival times taken
inside it would only show its own tick.

The prompt is a sustained vowel, so in-band DTMF detection (on by
default) works as hard as on speech; --no-inband shows the engine
without it.
"""

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import time

from callcenter.media import g711
from callcenter.media.engine import MediaEngine
from callcenter.sip.sdp import AudioFormat

PCMU = AudioFormat(0, "PCMU", 101)
# Arrival intervals are recorded for this many streams: enough for a p99,
# few enough not to weigh on what is measured.
SAMPLED_STREAMS = 40
WARMUP_SECONDS = 1.0


def vowel_prompt():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from media_primitives import vowel_frames

    return [g711.linear_to_ulaw(frame) for frame in vowel_frames(seconds=2.0)]


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def probe(count):
    """
    The receiving end of the sampled streams, in its own process so that
    arrival times are real wire times, not when our tick reads them.  Prints
    its ports, records between "start" and "stop" lines on stdin, then
    prints the intervals' percentiles.
    """
    import selectors
    import socket

    selector = selectors.DefaultSelector()
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, [None])
        sockets.append(sock)
    selector.register(sys.stdin, selectors.EVENT_READ, None)
    print(json.dumps([sock.getsockname()[1] for sock in sockets]), flush=True)
    intervals = []
    recording = False
    clock = time.perf_counter
    while True:
        for key, _ in selector.select():
            if key.data is None:
                line = sys.stdin.readline().strip()
                if line == "start":
                    recording = True
                    intervals.clear()
                    continue
                print(
                    json.dumps(
                        {
                            "p50": percentile(intervals, 0.50),
                            "p99": percentile(intervals, 0.99),
                            "max": max(intervals),
                            "count": len(intervals),
                        }
                    ),
                    flush=True,
                )
                return
            now = clock()
            try:
                key.fileobj.recv(2048)
            except BlockingIOError:
                continue
            last = key.data
            if recording and last[0] is not None:
                intervals.append(now - last[0])
            last[0] = now


def run(count, seconds, inband, base_port):
    from twisted.internet import reactor

    engine = MediaEngine(
        reactor,
        reactor,
        port_range=(base_port, base_port + 2 * (count + SAMPLED_STREAMS) + 1),
        inband_dtmf=inband,
    )
    sessions = [engine.open_session() for _ in range(count)]
    for a, b in zip(sessions[0::2], sessions[1::2]):
        a.set_remote("127.0.0.1", b.local_port, PCMU)
        b.set_remote("127.0.0.1", a.local_port, PCMU)
    prober = subprocess.Popen(
        [sys.executable, __file__, "--probe", str(SAMPLED_STREAMS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    for probe_port in json.loads(prober.stdout.readline()):
        sampled = engine.open_session()
        sampled.set_remote("127.0.0.1", probe_port, PCMU)
        sessions.append(sampled)
    prompt = vowel_prompt()
    for n, session in enumerate(sessions):
        # Each session starts at its own place in the prompt, as calls do.
        session.play(itertools.islice(itertools.cycle(prompt), n % len(prompt), None))
        session.audio_received = lambda payload, codec: None
    result = {}

    def begin():
        prober.stdin.write("start\n")
        prober.stdin.flush()
        result["stats"] = engine.stats
        result["usage"] = resource.getrusage(resource.RUSAGE_SELF)
        result["wall"] = time.perf_counter()
        reactor.callLater(seconds, end)

    def end():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter() - result["wall"]
        before = result["usage"]
        user = usage.ru_utime - before.ru_utime
        system = usage.ru_stime - before.ru_stime
        cpu = user + system
        result["system_share"] = system / cpu
        for session in sessions:
            session.stop_playing()
        stats_after = engine.stats
        prober.stdin.write("stop\n")
        prober.stdin.flush()
        # Let the packets in flight land before counting loss.
        reactor.callLater(0.2, finish, cpu, wall, stats_after)

    def finish(cpu, wall, stats_after):
        final = engine.stats
        stats_before = result["stats"]
        sent = stats_after["packets_sent"] - stats_before["packets_sent"]
        received = final["packets_received"] - stats_before["packets_received"]
        lost = sum(session.stats["packets_lost"] for session in sessions)
        arrivals = json.loads(prober.stdout.readline())
        prober.wait()
        print(
            json.dumps(
                {
                    "sessions": count,
                    "inband_dtmf": inband,
                    "seconds": round(wall, 2),
                    "cpu_percent": round(100 * cpu / wall, 1),
                    "of_which_kernel_percent": round(100 * result["system_share"] * cpu / wall, 1),
                    "packets_sent": sent,
                    "packets_received": received,
                    "sent_per_second": round(sent / wall),
                    "lost_by_rtp_sequence": lost,
                    "late_packets_dropped": sum(s.stats["late_packets"] for s in sessions),
                    "send_errors": sum(s.send_errors for s in sessions),
                    "late_ticks": final["late_ticks"] - stats_before["late_ticks"],
                    "skipped_ticks": final["skipped_ticks"] - stats_before["skipped_ticks"],
                    "ticks": stats_after["ticks"] - stats_before["ticks"],
                    "interval_ms_p50": round(1000 * arrivals["p50"], 2),
                    "interval_ms_p99": round(1000 * arrivals["p99"], 2),
                    "interval_ms_max": round(1000 * arrivals["max"], 2),
                    "intervals_measured": arrivals["count"],
                }
            ),
            flush=True,
        )
        engine.stop()
        reactor.stop()

    engine.start()
    reactor.callLater(WARMUP_SECONDS, begin)
    reactor.run()


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, nargs="+", default=[200, 500, 1000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-inband", dest="inband", action="store_false")
    parser.add_argument("--base-port", type=int, default=40000)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.probe:
        probe(options.probe)
        return
    if options.one:
        run(options.sessions[0], options.seconds, options.inband, options.base_port)
        return
    for count in options.sessions:
        command = [
            sys.executable,
            __file__,
            "--one",
            "--sessions",
            str(count),
            "--seconds",
            str(options.seconds),
        ]
        command += ["--base-port", str(options.base_port)]
        if not options.inband:
            command.append("--no-inband")
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
