"""
Concurrent calls through the whole server, driven by SIPp, with RTP both
ways: the telephony issue's concurrency target (at least 500 calls on this
2-core machine with no packet loss and the outgoing packet interval's p99
within 20 ms +- 5; the product's goal is 1,000).

    .venv/bin/python bench/concurrent_calls.py [--calls 250 500 750 1000] [--rate 50]
        [--window 5] [--profile 10 --profile-at 500]

For each size N a fresh server is started and SIPp calls the tone-test
number (9197) N times at --rate calls/s.  The server plays the tone (1 kHz,
one second on, then one second of encoded silence frames: a frame every
20 ms, no silence suppression) and SIPp sends every packet straight back
with -rtp_echo, on one media port shared by every call.  SIPp plays
nothing itself: its play_pcap_audio opens a raw socket per call, which the
kernel hands a copy of every loopback UDP packet inside the sender's
sendto, so the server's cost per packet grew with N (docs/performance.md).

Once all N calls are up and have settled, for --window seconds:

- the load on the machine: before each window the bench waits (up to
  --quiet-wait s) until processes other than ours use under --quiet % of a
  core, then records /proc/loadavg and the other processes' CPU during the
  window, naming the busiest;
- the server's CPU (every thread, from schedstat) and RSS, and the media
  engine's counters from GET /health (subsystems.telephony.media: ticks,
  late and skipped ticks, packets sent and received);
- tcpdump on lo records both directions of every call's RTP.  Capture
  timestamps are taken by the kernel as each packet leaves its sender, so
  they show the server's pacing as a receiver would see it, whatever the
  capturing process is doing.  Per stream: the intervals between packets
  (p1/p50/p99/max over all streams), sequence gaps and RTP timestamp gaps
  (the engine skipping ticks keeps the sequence continuous but leaves
  holes in the audio).  Each packet is matched with its echo: the echo
  delay and the packets SIPp did not return say whether the load
  generator kept up;
- the kernel's drop count on the server's RTP sockets and on SIPp's echo
  socket.

Then, with the N calls still up, a second SIPp makes --dtmf-calls calls to
the DTMF-test number (9198) pressing 1 2 3 # as RFC 4733 events (SIPp's
recorded pcaps, a few raw sockets alive for a fraction of a second, after
the window and the profile), and the server's log must show "123" for
each.

The target is met for N when every call was held and none failed, nothing
was lost, no tick was skipped, and the server's interval p99 is within
15-25 ms.  With --profile S, py-spy samples the server for S seconds after
the window at --profile-at N (several sizes allowed) and the top functions
are printed.  Needs root (tcpdump; SIPp's play_pcap_audio for the DTMF
calls).  Results go in docs/performance.md.
"""

import argparse
import bisect
import collections
import csv
import glob
import json
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _server import BIN, bench_server, free_port  # noqa: E402

TONE_NUMBER = "9197"
DTMF_NUMBER = "9198"
# The server's RTP ports: below the ephemeral range and away from the
# default 20000-29999, so that other servers and tests on the machine
# neither take them nor show up in the capture.
RTP_PORTS = (30000, 32767)
# Every call advertises SIPp's one echo port ([media_port], -mp); SIPp
# binds it and +2 (video).  The DTMF calls use their own range.
SIPP_MEDIA_PORT = 10000
DTMF_MEDIA_PORT = 12000
MAX_CALLS = (RTP_PORTS[1] - RTP_PORTS[0]) // 2 - 10
SAMPLES_PER_FRAME = 160
SETTLE_SECONDS = 3.0
# Streams with fewer packets in the window (a call starting or ending in
# it) are left out of the interval and loss figures.
MIN_PACKETS = 25
SCENARIOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "sip", "scenarios")
# 1 2 3 # as RFC 4733 events; the server hangs up on #.
DTMF_SCENARIO = os.path.join(SCENARIOS, "dtmf_call.xml")
DTMF_SECONDS = 20

# The scenario: call, hold the call (SIPp echoing the server's RTP), hang
# up.  The SDP offers PCMA and telephone-event, as dtmf_call.xml.
SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="concurrent tone calls, RTP echoed">
  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Bench" <sip:1380013[call_number]@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:bench@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15

    ]]>
  </send>

  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"/>

  <send>
    <![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Bench" <sip:1380013[call_number]@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:bench@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>

  <pause milliseconds="{hold_ms}"/>

  <send retrans="500">
    <![CDATA[

      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Bench" <sip:1380013[call_number]@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:bench@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>

  <recv response="200" crlf="true"/>
</scenario>
"""


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# What a process spends, from /proc, and the children the bench starts.


def cpu_ns(pid):
    """
    Nanoseconds on CPU of every thread of C{pid}, from schedstat: exact,
    where /proc/stat's ticks under-report short bursts on these VMs.
    """
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # A thread that ended between the listing and the read.
    return total


def cpu_ticks(pid):
    """(user, system) clock ticks of C{pid}, all threads: for the user/kernel split."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def thread_count(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def machine_busy():
    """(busy, total) jiffies of every CPU, from /proc/stat: what else ran on the machine."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def wait_until(predicate, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class Children:
    """
    SIPp, tcpdump: each in its own session, so that a Ctrl-C at the terminal
    reaches the bench alone and the bench stops them, by process id.
    """

    def __init__(self):
        self._procs = []

    def start(self, argv, log_path, **kwargs):
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, **kwargs,
            )
        self._procs.append(proc)
        return proc

    def stop(self, proc, sig=signal.SIGTERM, grace=5.0):
        """C{sig} to its process group, SIGKILL after C{grace} s; the exit status."""
        for current in (sig, signal.SIGKILL):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, current)  # start_new_session: the group id is the pid.
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        if proc in self._procs:
            self._procs.remove(proc)
        return proc.returncode

    def stop_all(self):
        for proc in reversed(list(self._procs)):
            self.stop(proc, grace=2.0)


def interrupt_on_sigterm():
    """SIGTERM ends the bench as Ctrl-C does, through every cleanup path."""

    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)


# The caller's recording.


def telephony_health(server):
    """The telephony subsystem's /health details; None when it does not answer within 10 s."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.http}/health", timeout=10) as r:
            return json.loads(r.read())["subsystems"]["telephony"]
    except (OSError, ValueError, KeyError):
        return None


def live_calls(server):
    health = telephony_health(server)
    return None if health is None else health["calls"]


def media_stats(server):
    """The media engine's counters (ticks, late/skipped ticks, packets) from /health."""
    health = telephony_health(server) or {}
    return health.get("media") or {}


# The rest of the machine: other benches and test suites share the two cores.


def process_cpu():
    """{pid: (name, user+system clock ticks)} of every process (all its threads)."""
    snapshot = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                head, _, tail = f.read().rpartition(")")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue  # Ended meanwhile.
        fields = tail.split()
        name = " ".join(a.decode(errors="replace") for a in argv[:3] if a)[:70] or head.partition("(")[2]
        snapshot[int(entry)] = (name, int(fields[11]) + int(fields[12]))
    return snapshot


def busiest_others(before, after, seconds, ours, limit=3):
    """[(percent of a core, name)] of the processes not in C{ours} that used the most CPU between two snapshots."""
    hertz = os.sysconf("SC_CLK_TCK")
    used = []
    for pid, (name, ticks) in after.items():
        if pid in ours:
            continue
        share = 100 * (ticks - before.get(pid, (name, ticks))[1]) / hertz / seconds
        if share >= 1:
            used.append((share, name))
    return sorted(used, reverse=True)[:limit]


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


class MachineLoad:
    """What the rest of the machine did over an interval: from /proc/stat and per process."""

    def __init__(self, ours):
        self.ours = set(ours)
        self.loadavg = loadavg()
        self._busy = machine_busy()
        self._ours = sum(cpu_ns(p) for p in self.ours)
        self._processes = process_cpu()
        self._started = time.monotonic()

    def finish(self):
        seconds = time.monotonic() - self._started
        busy, total = (a - b for a, b in zip(machine_busy(), self._busy))
        mine = (sum(cpu_ns(p) for p in self.ours) - self._ours) / 1e9 / seconds
        # /proc/stat under-counts short bursts on these VMs: a lower bound.
        self.others_pct = max(0.0, 200 * busy / total - 100 * mine) if total else 0.0
        self.busiest = busiest_others(self._processes, process_cpu(), seconds, self.ours)
        return self

    def describe(self):
        names = ", ".join(f"{name} {share:.0f}%" for share, name in self.busiest) or "none over 1%"
        return f"load average {self.loadavg:.2f}, others {self.others_pct:.0f}% of a core ({names})"


def wait_for_quiet(threshold, patience, ours):
    """
    Wait (at most C{patience} s) until the rest of the machine uses under
    C{threshold}% of a core over 2 s: another bench or a test suite on the
    two cores would be measured as our server's lateness.  Returns
    (seconds waited, the last L{MachineLoad}).
    """
    started = time.monotonic()
    deadline = started + patience
    while True:
        load = MachineLoad(ours)
        time.sleep(2)
        load.finish()
        if load.others_pct < threshold or time.monotonic() >= deadline:
            if load.others_pct >= threshold:
                log(f"the machine is busy after {patience:.0f} s: {load.describe()}; measuring anyway")
            return time.monotonic() - started - 2, load
        log(f"waiting for a quiet machine: {load.describe()}")


class MediaSink:
    """
    UDP sockets on the RTCP ports next to SIPp's echo port, which SIPp does
    not bind, so that the server's RTCP reports are taken by a socket, as by
    a phone, rather than answered with an ICMP port unreachable (built in
    the server's own sendto).  Nothing reads them: a small buffer fills and
    the kernel then drops quietly.
    """

    def __init__(self):
        self.sockets = []
        for port in (SIPP_MEDIA_PORT + 1, SIPP_MEDIA_PORT + 3):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.bind(("127.0.0.1", port))
            self.sockets.append(sock)

    def close(self):
        for sock in self.sockets:
            sock.close()
        self.sockets = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


# Reading the capture.


class Stream:
    __slots__ = ("times", "sequences", "timestamps", "payload_types")

    def __init__(self):
        self.times, self.sequences, self.timestamps, self.payload_types = [], [], [], []


def read_capture(path):
    """{(source port, destination port, SSRC): Stream} of the RTP in a tcpdump -w file (lo, Ethernet)."""
    with open(path, "rb") as f:
        data = f.read()
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", data)
    if magic != 0xA1B2C3D4 or linktype != 1:
        raise ValueError(f"{path}: not a microsecond Ethernet pcap")
    streams = collections.defaultdict(Stream)
    record = struct.Struct("<IIII").unpack_from
    ports = struct.Struct("!HH").unpack_from
    rtp_header = struct.Struct("!BBHII").unpack_from
    offset, end = 24, len(data)
    while offset + 16 <= end:
        seconds, micros, caplen, _ = record(data, offset)
        packet = offset + 16
        offset = packet + caplen
        if data[packet + 12] != 0x08 or data[packet + 13] != 0x00 or data[packet + 23] != 17:
            continue
        udp = packet + 14 + (data[packet + 14] & 0x0F) * 4
        if udp + 20 > offset:
            continue
        source, destination = ports(data, udp)
        first, second, sequence, timestamp, ssrc = rtp_header(data, udp + 8)
        if first >> 6 != 2 or 72 <= second & 0x7F <= 76:  # Not RTP, or RTCP.
            continue
        stream = streams[(source, destination, ssrc)]
        stream.times.append(seconds + micros / 1e6)
        stream.sequences.append(sequence)
        stream.timestamps.append(timestamp)
        stream.payload_types.append(second & 0x7F)
    return streams


def percentile(ordered, fraction):
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def direction_stats(streams, check_timestamps):
    """
    Intervals (ms) and loss over C{streams}: sequence gaps, and with
    C{check_timestamps} RTP timestamp gaps too (frames that were never
    sent although the sequence is continuous: skipped ticks).
    """
    intervals, packets, expected, missing, kept = [], 0, 0, 0, 0
    for stream in streams:
        count = len(stream.times)
        if count < MIN_PACKETS:
            continue
        kept += 1
        times = stream.times
        intervals.extend((b - a) * 1000 for a, b in zip(times, times[1:]))
        packets += count
        unwrapped, previous, base = [], None, 0
        for sequence in stream.sequences:
            if previous is not None and sequence < previous and previous - sequence > 32768:
                base += 65536
            unwrapped.append(base + sequence)
            previous = sequence
        span = max(unwrapped) - min(unwrapped) + 1
        lost = span - len(set(unwrapped))
        if check_timestamps:
            frames = ((stream.timestamps[-1] - stream.timestamps[0]) & 0xFFFFFFFF) // SAMPLES_PER_FRAME + 1
            lost = max(lost, frames - count)
            span = max(span, frames)
        expected += span
        missing += lost
    intervals.sort()
    return {
        "streams": kept,
        "packets": packets,
        "lost": missing,
        "loss_pct": 100 * missing / expected if expected else float("nan"),
        "mean": sum(intervals) / len(intervals) if intervals else float("nan"),
        "p1": percentile(intervals, 0.01),
        "p50": percentile(intervals, 0.50),
        "p99": percentile(intervals, 0.99),
        "max": intervals[-1] if intervals else float("nan"),
        "over_25": sum(1 for v in intervals[bisect.bisect_right(intervals, 25.0):]) / len(intervals) * 100
        if intervals else float("nan"),
    }


def echo_stats(sent, echoed):
    """
    Delay (ms) from each of our packets to its echo (same SSRC and
    sequence) and how many of ours never came back within the window (the
    last 100 ms of the window are left out: their echo may fall after it).
    """
    back = {}
    for stream, ssrc in echoed:
        for when, sequence in zip(stream.times, stream.sequences):
            back[(ssrc, sequence)] = when
    delays, unanswered, end = [], 0, max((s.times[-1] for s, _ in sent if s.times), default=0) - 0.1
    for stream, ssrc in sent:
        for when, sequence in zip(stream.times, stream.sequences):
            if when > end:
                continue
            returned = back.get((ssrc, sequence))
            if returned is None or returned < when:
                unanswered += 1
            else:
                delays.append((returned - when) * 1000)
    delays.sort()
    return {
        "matched": len(delays),
        "unanswered": unanswered,
        "p50": percentile(delays, 0.50),
        "p99": percentile(delays, 0.99),
        "max": delays[-1] if delays else float("nan"),
    }


def analyse_capture(path):
    """Our streams (server to SIPp's echo port), SIPp's echoes, and the echo delay."""
    low, high = RTP_PORTS
    ours, echoes = [], []
    for (source, destination, ssrc), stream in read_capture(path).items():
        if low <= source <= high and source % 2 == 0 and destination == SIPP_MEDIA_PORT:
            ours.append((stream, ssrc))
        elif low <= destination <= high and destination % 2 == 0 and source == SIPP_MEDIA_PORT:
            echoes.append((stream, ssrc))
    return (
        direction_stats([s for s, _ in ours], check_timestamps=True),
        direction_stats([s for s, _ in echoes], check_timestamps=False),
        echo_stats(ours, echoes),
    )


def socket_drops(ports):
    """Packets the kernel dropped on UDP sockets bound to C{ports} (/proc/net/udp's last column)."""
    low, high = ports
    total = 0
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            fields = line.split()
            port = int(fields[1].rsplit(":", 1)[1], 16)
            if low <= port <= high:
                total += int(fields[-1])
    return total


def raw_udp_sockets():
    """
    Raw IPPROTO_UDP sockets on the machine: SIPp 3.6.1 opens one per
    play_pcap_audio and never reads it, and the kernel hands each of them a
    copy of every UDP packet to its address (see docs/performance.md).
    """
    with open("/proc/net/raw") as f:
        next(f)
        return sum(1 for line in f if line.split()[1].endswith(":0011"))


def tcpdump_counts(log_path):
    with open(log_path) as f:
        text = f.read()
    counts = {}
    for key, pattern in (("captured", r"(\d+) packets? captured"), ("dropped", r"(\d+) packets? dropped by kernel")):
        match = re.search(pattern, text)
        counts[key] = int(match.group(1)) if match else None
    return counts


def sipp_stats(path):
    try:
        with open(path) as f:
            rows = list(csv.DictReader(f, delimiter=";"))
    except OSError:
        return {}
    return rows[-1] if rows else {}


# Profiling.


def top_functions(raw_path, limit=12):
    """(own, inclusive) shares of samples by function, from py-spy's raw (collapsed) output."""
    own, inclusive, total = collections.Counter(), collections.Counter(), 0
    with open(raw_path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            count = int(count)
            frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")[1:]]  # [0] is the thread.
            if not frames:
                continue
            total += count
            own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
    # Frames under which every sample falls (twistd's run, the reactor's loop) say nothing.
    inclusive = collections.Counter({frame: n for frame, n in inclusive.items() if n < 0.98 * total})
    return total, own.most_common(limit), inclusive.most_common(limit)


# One size.


def run_size(calls, args, children, scratch):
    ramp = calls / args.rate
    budget = ramp * 1.3 + 5 + SETTLE_SECONDS + args.window_wait + args.window + args.profile_for(calls) + DTMF_SECONDS
    hold = math.ceil(budget + 5)
    directory = os.path.join(scratch, f"n{calls}")
    os.mkdir(directory)
    scenario = os.path.join(directory, "tone_calls.xml")
    with open(scenario, "w") as f:
        f.write(SCENARIO.replace("{hold_ms}", str(hold * 1000)))

    result = {"calls": calls, "hold": hold}
    with MediaSink(), bench_server(
        directory, routes={TONE_NUMBER: "tone", DTMF_NUMBER: "dtmf"},
        rtp_port_min=RTP_PORTS[0], rtp_port_max=RTP_PORTS[1],
    ) as server:
        pid = server.pid
        if args.pin:
            os.sched_setaffinity(pid, {0})
        result["waited_before"], _ = wait_for_quiet(args.quiet, args.quiet_wait, {pid, os.getpid()})
        # Idle: the engine's clock runs with no session.
        time.sleep(1)
        rss_idle, cpu_before, started = rss_kb(pid), cpu_ns(pid), time.monotonic()
        time.sleep(2)
        result["idle_cpu_pct"] = 100 * (cpu_ns(pid) - cpu_before) / 1e9 / (time.monotonic() - started)
        result["rss_idle_mb"] = rss_idle / 1024

        stat_file = os.path.join(directory, "sipp_stats.csv")
        sipp = children.start(
            [
                *load_cpus(args), "sipp", f"127.0.0.1:{server.udp}", "-sf", scenario, "-s", TONE_NUMBER,
                "-m", str(calls), "-l", str(calls), "-r", str(args.rate),
                "-i", "127.0.0.1", "-mi", "127.0.0.1", "-mp", str(SIPP_MEDIA_PORT), "-rtp_echo", "-bind_local",
                "-ci", "127.0.0.1", "-nostdin", "-p", str(free_port()), "-buff_size", "4194304",
                "-timeout", str(hold + ramp + 120), "-trace_stat", "-stf", stat_file, "-fd", "1",
                "-trace_err",
            ],
            os.path.join(directory, "sipp.log"),
            cwd=directory,
        )
        log(f"{calls} calls: SIPp started at {args.rate}/s, each held {hold} s")

        def calls_up():
            if sipp.poll() is not None:
                raise RuntimeError(f"SIPp ended early ({sipp.returncode}); see {directory}/sipp.log")
            return (live_calls(server) or 0) >= calls

        reached = wait_until(calls_up, ramp * 1.3 + 5, interval=0.5)
        if not reached:
            log(f"{calls} calls: not all up after {ramp * 1.3 + 5:.0f} s; measuring what there is")
        time.sleep(SETTLE_SECONDS)
        ours = {pid, sipp.pid, os.getpid()}
        if args.window_wait:
            result["waited_window"], _ = wait_for_quiet(args.quiet, args.window_wait, ours)

        # The window.
        capture = os.path.join(directory, "rtp.pcap")
        capture_log = os.path.join(directory, "tcpdump.log")
        tcpdump = children.start(
            [
                *load_cpus(args), "tcpdump", "-i", "lo", "-n", "-s", "64", "-B", "65536", "-w", capture,
                "udp and portrange {}-{} and port {}".format(*RTP_PORTS, SIPP_MEDIA_PORT),
            ],
            capture_log,
        )
        wait_until(lambda: os.path.exists(capture) or tcpdump.poll() is not None, 5, interval=0.05)
        time.sleep(0.3)  # tcpdump opens the file before its filter is attached.
        ours.add(tcpdump.pid)
        held_before = live_calls(server) or 0
        media_before, media_started = media_stats(server), time.monotonic()
        drops_before, echo_drops_before = socket_drops(RTP_PORTS), socket_drops((SIPP_MEDIA_PORT,) * 2)
        ticks_before = cpu_ticks(pid)
        cpu_before, sipp_before, dump_before = cpu_ns(pid), cpu_ns(sipp.pid), cpu_ns(tcpdump.pid)
        machine = MachineLoad(ours)
        started = time.monotonic()
        time.sleep(args.window)
        elapsed = time.monotonic() - started
        cpu = (cpu_ns(pid) - cpu_before) / 1e9
        sipp_cpu = (cpu_ns(sipp.pid) - sipp_before) / 1e9
        dump_cpu = (cpu_ns(tcpdump.pid) - dump_before) / 1e9
        ticks_after = cpu_ticks(pid)
        machine.finish()
        drops = socket_drops(RTP_PORTS) - drops_before
        echo_drops = socket_drops((SIPP_MEDIA_PORT,) * 2) - echo_drops_before
        media_after, media_seconds = media_stats(server), time.monotonic() - media_started
        rss, threads, sipp_threads = rss_kb(pid), thread_count(pid), thread_count(sipp.pid)
        raw_sockets = raw_udp_sockets()
        held_after = live_calls(server) or 0
        children.stop(tcpdump, signal.SIGINT)
        log(f"{calls} calls: window done; {machine.describe()}")

        user, system = (after - before for after, before in zip(ticks_after, ticks_before))
        media = {key: media_after.get(key, 0) - media_before.get(key, 0)
                 for key in ("ticks", "late_ticks", "skipped_ticks", "packets_sent", "packets_received")}
        result.update(
            held=min(held_before, held_after),
            cpu_pct=100 * cpu / elapsed,
            kernel_share=system / (user + system) if user + system else float("nan"),
            sipp_cpu_pct=100 * sipp_cpu / elapsed,
            tcpdump_cpu_pct=100 * dump_cpu / elapsed,
            machine=machine,
            media=media,
            media_seconds=media_seconds,
            media_sessions=media_after.get("sessions"),
            rss_mb=rss / 1024,
            per_call_us=1e6 * cpu / elapsed / max(1, held_before),
            per_call_kb=(rss - rss_idle) / max(1, held_before),
            socket_drops=drops,
            echo_drops=echo_drops,
            threads=threads,
            sipp_threads=sipp_threads,
            raw_sockets=raw_sockets,
            capture=tcpdump_counts(capture_log),
        )

        if args.profile_for(calls):
            raw = os.path.join(directory, "profile.txt")
            log(f"{calls} calls: py-spy for {args.profile} s")
            subprocess.run(
                [os.path.join(BIN, "py-spy"), "record", "--nonblocking", "--function", "-r", "100",
                 "-d", str(math.ceil(args.profile)), "-f", "raw", "-o", raw, "-p", str(pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                timeout=args.profile + 30,
            )
            result["profile"] = top_functions(raw)
            if args.keep_profile:
                shutil.copy(raw, args.keep_profile.replace("{n}", str(calls)))

        if args.dtmf_calls:
            log(f"{calls} calls: {args.dtmf_calls} DTMF-test calls on top")
            dtmf = children.start(
                [
                    *load_cpus(args), "sipp", f"127.0.0.1:{server.udp}", "-sf", DTMF_SCENARIO, "-s", DTMF_NUMBER,
                    "-m", str(args.dtmf_calls), "-l", str(args.dtmf_calls), "-r", "5",
                    "-i", "127.0.0.1", "-mi", "127.0.0.1", "-mp", str(DTMF_MEDIA_PORT), "-bind_local",
                    "-ci", "127.0.0.1", "-cp", str(free_port()), "-nostdin", "-p", str(free_port()),
                    "-timeout", str(DTMF_SECONDS - 2), "-timeout_error",
                ],
                os.path.join(directory, "sipp_dtmf.log"),
                cwd=directory,
            )
            try:
                dtmf.wait(DTMF_SECONDS)
            except subprocess.TimeoutExpired:
                log(f"{calls} calls: the DTMF calls did not finish")
            result["dtmf_status"] = children.stop(dtmf)

        log(f"{calls} calls: waiting for SIPp to hang up")
        try:
            sipp.wait(hold + ramp + 60)
        except subprocess.TimeoutExpired:
            log(f"{calls} calls: SIPp did not finish; stopping it")
        result["sipp_status"] = children.stop(sipp)
        final = sipp_stats(stat_file)
        result["successful"] = int(final.get("SuccessfulCall(C)", 0) or 0)
        result["failed"] = int(final.get("FailedCall(C)", 0) or 0)

    output = server.process.output
    with open(os.path.join(directory, "server.log"), "w") as f:
        f.write(output)
    if args.keep_logs:
        os.makedirs(args.keep_logs, exist_ok=True)
        for name in ("server.log", "sipp.log", "sipp_dtmf.log"):
            if os.path.exists(os.path.join(directory, name)):
                shutil.copy(os.path.join(directory, name), os.path.join(args.keep_logs, f"n{calls}_{name}"))
    result["dtmf_ok"] = output.count("DTMF test: caller pressed 123")
    result["send_error_sessions"] = output.count("RTP send from port")
    result["clock_warnings"] = output.count("ticks behind: skipping ticks")

    log(f"{calls} calls: reading the capture")
    result["server"], result["echo"], result["delay"] = analyse_capture(capture)
    os.remove(capture)
    return result


def load_cpus(args):
    """With --pin, the load generator and the capture run on the second core, the server on the first."""
    return ["taskset", "-c", "1"] if args.pin else []


def meets_target(r):
    server = r["server"]
    return (
        r["held"] == r["calls"]
        and r["failed"] == 0
        and server["lost"] == 0
        and r["socket_drops"] == 0
        and r["media"]["skipped_ticks"] == 0
        and 15 <= server["p99"] <= 25
    )


def print_table(results):
    header = (
        "| calls | held / failed | load avg, others' CPU in window | server CPU (kernel) | per call µs/s "
        "| RSS MB | ticks late / skipped | engine sent / received pkt/s | ours mean interval ms "
        "| ours p1/p50/p99/max ms | ours >25 ms | ours loss | in drops | echo delay p50/p99 ms, not returned "
        "| SIPp CPU | DTMF 123# | target |"
    )
    print(header)
    print("|" + "|".join("---:" for _ in range(header.count("|") - 1)) + "|")
    for r in results:
        s, d, m, t = r["server"], r["delay"], r["media"], r["media_seconds"]
        dtmf = f"{r['dtmf_ok']}/{r.get('dtmf_calls', 0)}" if r.get("dtmf_calls") else "–"
        print(
            f"| {r['calls']} | {r['held']} / {r['failed']} "
            f"| {r['machine'].loadavg:.2f}, {r['machine'].others_pct:.0f}% "
            f"| {r['cpu_pct']:.0f}% ({100 * r['kernel_share']:.0f}%) | {r['per_call_us']:.0f} | {r['rss_mb']:.0f} "
            f"| {m['late_ticks']} / {m['skipped_ticks']} of {m['ticks']} "
            f"| {m['packets_sent'] / t:,.0f} / {m['packets_received'] / t:,.0f} | {s['mean']:.2f} "
            f"| {s['p1']:.1f} / {s['p50']:.1f} / {s['p99']:.1f} / {s['max']:.0f} | {s['over_25']:.2f}% "
            f"| {s['loss_pct']:.3f}% | {r['socket_drops']} "
            f"| {d['p50']:.2f} / {d['p99']:.1f}, {d['unanswered']} "
            f"| {r['sipp_cpu_pct']:.0f}% | {dtmf} | {'met' if meets_target(r) else 'not met'} |"
        )


def print_details(results):
    for r in results:
        s, e = r["server"], r["echo"]
        print(
            f"\n{r['calls']} calls (held {r['hold']} s): idle server {r['idle_cpu_pct']:.1f}% CPU, "
            f"RSS {r['rss_idle_mb']:.0f} MB idle; {r['threads']} server threads; SIPp {r['sipp_threads']} threads, "
            f"{r['raw_sockets']} raw UDP sockets in the window; "
            f"SIPp successful {r['successful']}, failed {r['failed']}, exit {r['sipp_status']}; "
            f"DTMF calls exit {r.get('dtmf_status')}, {r['dtmf_ok']} logged 123; "
            f"waited {r['waited_before']:.0f} s before the calls and {r.get('waited_window', 0):.0f} s before "
            f"the window for a quiet machine; during it: {r['machine'].describe()}; "
            f"tcpdump {r['tcpdump_cpu_pct']:.0f}% CPU, captured {r['capture']['captured']}, "
            f"kernel dropped {r['capture']['dropped']}; engine sessions {r['media_sessions']}; "
            f"sessions that logged a send error: {r['send_error_sessions']}; "
            f"'skipping ticks' warnings: {r['clock_warnings']}; drops on SIPp's echo socket {r['echo_drops']}"
        )
        print(
            f"  ours: {s['streams']} streams, {s['packets']} packets, {s['lost']} lost; "
            f"echoes: {e['streams']} streams, {e['packets']} packets, {e['lost']} lost, "
            f"mean {e['mean']:.2f} ms (ours {s['mean']:.2f}), p1/p50/p99/max {e['p1']:.1f} / {e['p50']:.1f} / {e['p99']:.1f} / {e['max']:.0f} ms; "
            f"echo delay max {r['delay']['max']:.1f} ms over {r['delay']['matched']} packets"
        )
        if "profile" in r:
            total, own, inclusive = r["profile"]
            print(f"  py-spy: {total} samples of active Python (100/s)")
            print("  own time:")
            for frame, count in own:
                print(f"    {100 * count / total:5.1f}%  {frame}")
            print("  inclusive:")
            for frame, count in inclusive:
                print(f"    {100 * count / total:5.1f}%  {frame}")
    held = [r["calls"] for r in results if meets_target(r)]
    print(
        f"\ntarget (>= 500 calls, no loss, no skipped tick, p99 15-25 ms): "
        f"{'met' if any(n >= 500 for n in held) else 'not met'}; "
        f"sizes meeting it: {', '.join(map(str, held)) or 'none'}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[250, 500, 750, 1000])
    parser.add_argument("--rate", type=float, default=50, help="new calls per second while ramping up")
    parser.add_argument("--window", type=float, default=5.0, help="seconds measured at steady state")
    parser.add_argument("--profile", type=float, default=0, help="seconds of py-spy after the window")
    parser.add_argument("--profile-at", type=int, nargs="*", default=None,
                        help="sizes to profile (default: all, when --profile is given)")
    parser.add_argument("--dtmf-calls", type=int, default=10,
                        help="DTMF-test calls made on top of the load after the window (0: none)")
    parser.add_argument("--pin", action="store_true",
                        help="server on CPU 0; SIPp and tcpdump on CPU 1")
    parser.add_argument("--quiet", type=float, default=15,
                        help="wait until other processes use under this %% of a core ...")
    parser.add_argument("--quiet-wait", type=float, default=180,
                        help="... for at most this many seconds before starting each size's calls")
    parser.add_argument("--window-wait", type=float, default=30,
                        help="... and at most this many seconds again just before the window (calls held)")
    parser.add_argument("--keep-profile", help="copy py-spy's raw output here ({n}: the size)")
    parser.add_argument("--keep-logs", help="copy the server's and SIPp's logs to this directory")
    args = parser.parse_args()
    args.profile_for = lambda n: args.profile if args.profile and (args.profile_at is None or n in args.profile_at) else 0
    if max(args.calls) > MAX_CALLS:
        parser.error(f"at most {MAX_CALLS} calls (the RTP port range)")
    for tool in ("sipp", "tcpdump"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found (apt-get install sip-tester tcpdump)")
    if os.geteuid() != 0:
        raise SystemExit("needs root: tcpdump captures, SIPp's play_pcap_audio (DTMF calls) uses a raw socket")

    interrupt_on_sigterm()
    children = Children()
    scratch = tempfile.mkdtemp(prefix="callcenter-concurrent-")
    results = []
    try:
        for calls in args.calls:
            result = run_size(calls, args, children, scratch)
            result["dtmf_calls"] = args.dtmf_calls
            results.append(result)
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        raise SystemExit(130)
    finally:
        children.stop_all()
        shutil.rmtree(scratch, ignore_errors=True)
        if results:
            print_table(results)
            print_details(results)


if __name__ == "__main__":
    main()
