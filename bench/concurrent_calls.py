"""
Concurrent calls through the whole server, driven by SIPp, with RTP both
ways and RFC 4733 DTMF: the telephony issue's concurrency target (at least
500 calls on this 2-core machine with no packet loss and the outgoing packet
interval's p99 within 20 ms +- 5; the product's goal is 1,000).

    .venv/bin/python bench/concurrent_calls.py [--calls 250 500 750 1000] [--rate 50]
        [--window 5] [--profile 10 --profile-at 500]

For each size N a fresh server is started and SIPp calls the echo-test
number N times at --rate calls/s; every call plays a recording made by the
bench (PCMA, one 20 ms frame every 20 ms, an RFC 4733 key press every two
seconds within the same stream) with SIPp's play_pcap_audio, and the server
echoes each frame back on its own 20 ms clock.  Once all N calls are up
and have settled, for --window seconds:

- the server's CPU (every thread, from schedstat) and RSS;
- tcpdump on lo records both directions of every call's RTP.  Capture
  timestamps are taken by the kernel as each packet leaves its sender, so
  they show the sender's pacing as a receiver would see it, whatever the
  capturing process is doing.  Per stream: the intervals between packets
  (p1/p50/p99/max over all streams), sequence gaps, and for our streams
  RTP timestamp gaps too (the engine skipping ticks keeps the sequence
  continuous but leaves holes in the audio).  SIPp's own streams, paced
  by C code, are the reference for what this machine allows;
- the kernel's drop count on the server's RTP sockets (packets it never
  read: the echo fills those ticks with silence, so the wire cannot show
  them).

The target is met for N when every call was held and none failed, nothing
was lost either way, and the server's interval p99 is within 15-25 ms.
With --profile S, py-spy samples the server for S seconds after the
capture at --profile-at N (several sizes allowed) and the top functions
are printed.  Needs root (SIPp's play_pcap_audio uses a raw socket;
tcpdump).  Results go in docs/performance.md.
"""

import argparse
import bisect
import collections
import csv
import glob
import json
import math
import os
import random
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

ECHO_NUMBER = "9196"
# The server's RTP ports: below the ephemeral range and away from the
# default 20000-29999, so that other servers and tests on the machine
# neither take them nor show up in the capture.
RTP_PORTS = (30000, 32767)
# SIPp gives call k (from 1) the media port SIPP_MEDIA_PORT + 4 (k - 1)
# ([auto_media_port]) but binds none of them (play_pcap_audio sends from a
# raw socket); it binds SIPP_MEDIA_PORT and +2 itself (-mp, for -rtp_echo).
SIPP_MEDIA_PORT = 10000
MAX_CALLS = (RTP_PORTS[1] - RTP_PORTS[0]) // 2 - 10
FRAME_MS = 20
SAMPLES_PER_FRAME = 160
PCMA, TELEPHONE_EVENT = 8, 101
SETTLE_SECONDS = 3.0
# Streams with fewer packets in the window (a call starting or ending in
# it) are left out of the interval and loss figures.
MIN_PACKETS = 25
DTMF_EVERY_SECONDS = 2.0
DIGITS = "1234567890*#"

# The scenario: call, play the recording for as long as the call is held,
# hang up.  The SDP offers PCMA and telephone-event, as dtmf_call.xml.
SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="concurrent echo calls with RTP and DTMF">
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
      m=audio [auto_media_port] RTP/AVP 8 101
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

  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
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


def live_calls(server):
    """The server's count of calls from /health; None when it does not answer within 10 s."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.http}/health", timeout=10) as r:
            return json.loads(r.read())["subsystems"]["telephony"]["calls"]
    except (OSError, ValueError, KeyError):
        return None


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


def _ip_checksum(header):
    total = sum(struct.unpack("!10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    return ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF


def caller_packets(seconds):
    """
    RTP payloads (payload type, marker, timestamp, payload) of one caller,
    one every 20 ms: a 440 Hz PCMA tone, and every two seconds a key press
    as RFC 4733 events (RFC 4733 §2.5: marked first packet, growing
    duration, the end packet sent three times), in the same stream.
    """
    from callcenter.media import g711

    tone = []
    for frame in range(50):  # 440 Hz repeats every 50 frames (1 s) exactly.
        samples = [
            int(8000 * math.sin(2 * math.pi * 440 * (frame * SAMPLES_PER_FRAME + i) / 8000))
            for i in range(SAMPLES_PER_FRAME)
        ]
        tone.append(g711.linear_to_alaw(struct.pack(f"<{SAMPLES_PER_FRAME}h", *samples)))
    frames = int(seconds * 1000 / FRAME_MS)
    every = int(DTMF_EVERY_SECONDS * 1000 / FRAME_MS)
    packets, index, presses, marker = [], 0, 0, True
    while index < frames:
        if index and index % every == 0 and index + 8 <= frames:
            event = "0123456789*#".index(DIGITS[presses % len(DIGITS)])
            presses += 1
            start = index * SAMPLES_PER_FRAME
            for n in range(8):
                end = n >= 5
                duration = SAMPLES_PER_FRAME * (min(n, 5) + 1)
                payload = struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
                packets.append((TELEPHONE_EVENT, n == 0, start, payload))
            index += 8
            marker = True
            continue
        packets.append((PCMA, marker, index * SAMPLES_PER_FRAME, tone[index % 50]))
        marker = False
        index += 1
    return packets


def write_caller_pcap(path, seconds):
    """A pcap SIPp's play_pcap_audio replays: Ethernet, IPv4, UDP, RTP, 20 ms apart."""
    ssrc, first_sequence = random.getrandbits(32), random.getrandbits(16)
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for n, (payload_type, marker, timestamp, payload) in enumerate(caller_packets(seconds)):
            rtp = struct.pack(
                "!BBHII", 0x80, (0x80 if marker else 0) | payload_type, (first_sequence + n) & 0xFFFF,
                timestamp & 0xFFFFFFFF, ssrc,
            ) + payload
            udp = struct.pack("!HHHH", 5004, 6000, 8 + len(rtp), 0) + rtp
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n & 0xFFFF, 0, 64, 17, 0,
                             bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
            ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
            frame = b"\0" * 12 + b"\x08\x00" + ip + udp
            micros = n * FRAME_MS * 1000
            f.write(struct.pack("<IIII", micros // 1000000, micros % 1000000, len(frame), len(frame)))
            f.write(frame)


class MediaSink:
    """
    UDP sockets on the media ports SIPp advertises and never binds, so that
    our RTP and RTCP to them are taken by a socket, as by a phone, rather
    than answered with an ICMP port unreachable, which the kernel builds in
    the server's own sendto.  Nothing reads them: a small buffer fills and
    the kernel then drops quietly.
    """

    def __init__(self, calls):
        self.sockets = []
        for k in range(calls):
            for port in (SIPP_MEDIA_PORT + 4 * k, SIPP_MEDIA_PORT + 4 * k + 1):
                if port < SIPP_MEDIA_PORT + 4:
                    continue  # SIPp's own -mp sockets.
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
        "p1": percentile(intervals, 0.01),
        "p50": percentile(intervals, 0.50),
        "p99": percentile(intervals, 0.99),
        "max": intervals[-1] if intervals else float("nan"),
        "over_25": sum(1 for v in intervals[bisect.bisect_right(intervals, 25.0):]) / len(intervals) * 100
        if intervals else float("nan"),
    }


def analyse_capture(path, calls):
    low, high = RTP_PORTS
    first, last = SIPP_MEDIA_PORT, SIPP_MEDIA_PORT + 4 * calls
    ours, theirs = [], []
    for (source, destination, _), stream in read_capture(path).items():
        if low <= source <= high and source % 2 == 0 and first <= destination <= last:
            ours.append(stream)
        elif low <= destination <= high and destination % 2 == 0 and first <= source <= last:
            theirs.append(stream)
    return direction_stats(ours, check_timestamps=True), direction_stats(theirs, check_timestamps=False)


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
    hold = math.ceil(ramp * 1.3 + 5 + SETTLE_SECONDS + args.window + args.profile_for(calls) + 5)
    directory = os.path.join(scratch, f"n{calls}")
    os.mkdir(directory)
    pcap = os.path.join(directory, "caller.pcap")
    write_caller_pcap(pcap, hold - 1)
    scenario = os.path.join(directory, "echo_calls.xml")
    with open(scenario, "w") as f:
        f.write(SCENARIO.replace("{pcap}", pcap).replace("{hold_ms}", str(hold * 1000)))

    result = {"calls": calls, "hold": hold}
    with MediaSink(calls), bench_server(
        directory, routes={ECHO_NUMBER: "echo"}, rtp_port_min=RTP_PORTS[0], rtp_port_max=RTP_PORTS[1]
    ) as server:
        pid = server.pid
        if args.pin:
            os.sched_setaffinity(pid, {0})
        result["others_before_pct"] = wait_for_quiet(args.quiet, args.quiet_wait, {pid, os.getpid()})
        # Idle: the engine's clock runs with no session.
        time.sleep(1)
        rss_idle, cpu_before, started = rss_kb(pid), cpu_ns(pid), time.monotonic()
        time.sleep(2)
        result["idle_cpu_pct"] = 100 * (cpu_ns(pid) - cpu_before) / 1e9 / (time.monotonic() - started)
        result["rss_idle_mb"] = rss_idle / 1024

        stat_file = os.path.join(directory, "sipp_stats.csv")
        sipp = children.start(
            [
                *load_cpus(args), "sipp", f"127.0.0.1:{server.udp}", "-sf", scenario, "-s", ECHO_NUMBER,
                "-m", str(calls), "-l", str(calls), "-r", str(args.rate),
                "-i", "127.0.0.1", "-mi", "127.0.0.1", "-mp", str(SIPP_MEDIA_PORT), "-bind_local",
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

        # The window.
        capture = os.path.join(directory, "rtp.pcap")
        capture_log = os.path.join(directory, "tcpdump.log")
        tcpdump = children.start(
            [
                *load_cpus(args), "tcpdump", "-i", "lo", "-n", "-s", "64", "-B", "65536", "-w", capture,
                "udp and portrange {}-{} and portrange {}-{}".format(
                    *RTP_PORTS, SIPP_MEDIA_PORT, SIPP_MEDIA_PORT + 4 * calls + 1
                ),
            ],
            capture_log,
        )
        wait_until(lambda: os.path.exists(capture) or tcpdump.poll() is not None, 5, interval=0.05)
        time.sleep(0.3)  # tcpdump opens the file before its filter is attached.
        held_before = live_calls(server) or 0
        drops_before, ticks_before = socket_drops(RTP_PORTS), cpu_ticks(pid)
        cpu_before, sipp_before, dump_before = cpu_ns(pid), cpu_ns(sipp.pid), cpu_ns(tcpdump.pid)
        machine_before = machine_busy()
        started = time.monotonic()
        time.sleep(args.window)
        elapsed = time.monotonic() - started
        cpu = (cpu_ns(pid) - cpu_before) / 1e9
        sipp_cpu = (cpu_ns(sipp.pid) - sipp_before) / 1e9
        dump_cpu = (cpu_ns(tcpdump.pid) - dump_before) / 1e9
        ticks_after = cpu_ticks(pid)
        busy, total = (after - before for after, before in zip(machine_busy(), machine_before))
        drops = socket_drops(RTP_PORTS) - drops_before
        rss, threads, sipp_threads = rss_kb(pid), thread_count(pid), thread_count(sipp.pid)
        raw_sockets = raw_udp_sockets()
        held_after = live_calls(server) or 0
        children.stop(tcpdump, signal.SIGINT)

        user, system = (after - before for after, before in zip(ticks_after, ticks_before))
        result.update(
            held=min(held_before, held_after),
            cpu_pct=100 * cpu / elapsed,
            kernel_share=system / (user + system) if user + system else float("nan"),
            sipp_cpu_pct=100 * sipp_cpu / elapsed,
            tcpdump_cpu_pct=100 * dump_cpu / elapsed,
            # The rest of the machine's busy time: other processes (tests, a
            # soak bench) competing for the two cores.  /proc/stat
            # under-counts short bursts, so this is a lower bound.
            others_cpu_pct=max(0.0, 200 * busy / total - 100 * (cpu + sipp_cpu + dump_cpu) / elapsed)
            if total else float("nan"),
            rss_mb=rss / 1024,
            per_call_us=1e6 * cpu / elapsed / max(1, held_before),
            per_call_kb=(rss - rss_idle) / max(1, held_before),
            socket_drops=drops,
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

        log(f"{calls} calls: waiting for SIPp to hang up")
        try:
            sipp.wait(hold + ramp + 60)
        except subprocess.TimeoutExpired:
            log(f"{calls} calls: SIPp did not finish; stopping it")
        result["sipp_status"] = children.stop(sipp)
        final = sipp_stats(stat_file)
        result["successful"] = int(final.get("SuccessfulCall(C)", 0) or 0)
        result["failed"] = int(final.get("FailedCall(C)", 0) or 0)

    log(f"{calls} calls: reading the capture")
    result["server"], result["sipp"] = analyse_capture(capture, calls)
    os.remove(capture)
    return result


def load_cpus(args):
    """With --pin, the load generator and the capture run on the second core, the server on the first."""
    return ["taskset", "-c", "1"] if args.pin else []


def wait_for_quiet(threshold, patience, ours):
    """
    Wait (at most C{patience} s) until the rest of the machine uses under
    C{threshold}% of a core over 2 s: another bench or a test suite on the
    two cores would be measured as our server's lateness.  Returns the last
    reading.
    """
    deadline = time.monotonic() + patience
    while True:
        before, mine_before, started = machine_busy(), sum(cpu_ns(p) for p in ours), time.monotonic()
        time.sleep(2)
        busy, total = (a - b for a, b in zip(machine_busy(), before))
        mine = (sum(cpu_ns(p) for p in ours) - mine_before) / 1e9 / (time.monotonic() - started)
        others = max(0.0, 200 * busy / total - 100 * mine) if total else 0.0
        if others < threshold or time.monotonic() >= deadline:
            if others >= threshold:
                log(f"the machine is busy: {others:.0f}% of a core used by other processes; measuring anyway")
            return others
        log(f"waiting for a quiet machine: {others:.0f}% of a core used by other processes")


def meets_target(r):
    server = r["server"]
    return (
        r["held"] == r["calls"]
        and r["failed"] == 0
        and server["lost"] == 0
        and r["socket_drops"] == 0
        and 15 <= server["p99"] <= 25
    )


def print_table(results):
    header = (
        "| calls | held | failed | server CPU (kernel) | RSS MB | per call µs/s | per call KB "
        "| ours p1/p50/p99/max ms | ours >25 ms | ours loss | in drops | SIPp p99/max ms | SIPp CPU | target |"
    )
    print(header)
    print("|" + "|".join("---:" for _ in range(header.count("|") - 1)) + "|")
    for r in results:
        s, p = r["server"], r["sipp"]
        print(
            f"| {r['calls']} | {r['held']} | {r['failed']} | {r['cpu_pct']:.0f}% ({100 * r['kernel_share']:.0f}%) "
            f"| {r['rss_mb']:.0f} | {r['per_call_us']:.0f} | {r['per_call_kb']:.0f} "
            f"| {s['p1']:.1f} / {s['p50']:.1f} / {s['p99']:.1f} / {s['max']:.0f} | {s['over_25']:.2f}% "
            f"| {s['loss_pct']:.3f}% | {r['socket_drops']} | {p['p99']:.1f} / {p['max']:.0f} "
            f"| {r['sipp_cpu_pct']:.0f}% | {'met' if meets_target(r) else 'not met'} |"
        )


def print_details(results):
    for r in results:
        s, p = r["server"], r["sipp"]
        print(
            f"\n{r['calls']} calls (held {r['hold']} s): idle server {r['idle_cpu_pct']:.1f}% CPU, "
            f"RSS {r['rss_idle_mb']:.0f} MB idle; {r['threads']} server threads; SIPp {r['sipp_threads']} threads, "
            f"{r.get('raw_sockets', '?')} raw UDP sockets; "
            f"SIPp successful {r['successful']}, failed {r['failed']}, exit {r['sipp_status']}; "
            f"other processes >= {r['others_cpu_pct']:.0f}% CPU ({r['others_before_pct']:.0f}% before); "
            f"tcpdump {r['tcpdump_cpu_pct']:.0f}% CPU, captured {r['capture']['captured']}, "
            f"kernel dropped {r['capture']['dropped']}"
        )
        print(
            f"  ours: {s['streams']} streams, {s['packets']} packets, {s['lost']} lost; "
            f"SIPp's: {p['streams']} streams, {p['packets']} packets, {p['lost']} lost, "
            f"p1/p50/p99/max {p['p1']:.1f} / {p['p50']:.1f} / {p['p99']:.1f} / {p['max']:.0f} ms"
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
        f"\ntarget (>= 500 calls, no loss, p99 15-25 ms): "
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
    parser.add_argument("--pin", action="store_true",
                        help="server on CPU 0; SIPp and tcpdump on CPU 1")
    parser.add_argument("--quiet", type=float, default=15,
                        help="before each size, wait until other processes use under this %% of a core")
    parser.add_argument("--quiet-wait", type=float, default=120, help="... for at most this many seconds")
    parser.add_argument("--keep-profile", help="copy py-spy's raw output here ({n}: the size)")
    args = parser.parse_args()
    args.profile_for = lambda n: args.profile if args.profile and (args.profile_at is None or n in args.profile_at) else 0
    if max(args.calls) > MAX_CALLS:
        parser.error(f"at most {MAX_CALLS} calls (the RTP port range)")
    for tool in ("sipp", "tcpdump"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found (apt-get install sip-tester tcpdump)")
    if os.geteuid() != 0:
        raise SystemExit("needs root: SIPp's play_pcap_audio sends from a raw socket, tcpdump captures")

    interrupt_on_sigterm()
    children = Children()
    scratch = tempfile.mkdtemp(prefix="callcenter-concurrent-")
    results = []
    try:
        for calls in args.calls:
            results.append(run_size(calls, args, children, scratch))
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
