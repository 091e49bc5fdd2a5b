"""
RTP on the wire as the SIPp benches see it: a tcpdump capture read back
into streams, the outgoing packet interval and loss per direction, each of
our packets matched with SIPp's echo, and the kernel's counters on the
sockets involved (drops, raw sockets).

Capture timestamps are the kernel's as each packet leaves its sender, so
the intervals are the sender's pacing as a receiver would see it, whatever
the capturing process is doing.
"""

import bisect
import collections
import os
import re
import socket
import struct
import time

from _machine import wait_until

SAMPLES_PER_FRAME = 160
# Streams with fewer packets in the window (a call starting or ending in
# it) are left out of the interval and loss figures.
MIN_PACKETS = 25
TELEPHONE_EVENT_TYPES = range(96, 128)


class Stream:
    __slots__ = ("times", "sequences", "timestamps", "payload_types", "markers", "prefixes")

    def __init__(self):
        self.times, self.sequences, self.timestamps, self.payload_types, self.markers = [], [], [], [], []
        self.prefixes = []


def read_capture(path, prefix=0):
    """
    {(source port, destination port, SSRC): Stream} of the RTP in a
    tcpdump -w file (lo, Ethernet); with C{prefix}, the first C{prefix}
    bytes of each payload too (as far as the capture kept them).
    """
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
        stream.markers.append(second >> 7)
        if prefix:
            stream.prefixes.append(data[udp + 20:min(offset, udp + 20 + prefix)])
    return streams


def percentile(ordered, fraction):
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _unwrapped(sequences):
    unwrapped, previous, base = [], None, 0
    for sequence in sequences:
        if previous is not None and sequence < previous and previous - sequence > 32768:
            base += 65536
        unwrapped.append(base + sequence)
        previous = sequence
    return unwrapped


def direction_stats(streams, check_timestamps, talkspurts=False):
    """
    Intervals (ms) and loss over C{streams}: sequence gaps, and with
    C{check_timestamps} RTP timestamp gaps too (frames that were never
    sent although the sequence is continuous: skipped ticks).

    With C{talkspurts}, the sender suppresses silence: a packet with the
    marker bit starts a talkspurt after a pause (RFC 3551 §4.1), so the
    interval before it and its timestamp jump are not counted; inside a
    talkspurt every frame must follow the last by one frame's time.
    """
    intervals, packets, expected, missing, kept, spurts = [], 0, 0, 0, 0, 0
    for stream in streams:
        count = len(stream.times)
        if count < MIN_PACKETS:
            continue
        kept += 1
        times = stream.times
        packets += count
        unwrapped = _unwrapped(stream.sequences)
        span = max(unwrapped) - min(unwrapped) + 1
        lost = span - len(set(unwrapped))
        if talkspurts:
            stamps, markers = stream.timestamps, stream.markers
            frames = 1
            for i in range(1, count):
                if markers[i]:
                    spurts += 1
                    frames += 1
                    continue
                intervals.append((times[i] - times[i - 1]) * 1000)
                frames += max(1, ((stamps[i] - stamps[i - 1]) & 0xFFFFFFFF) // SAMPLES_PER_FRAME)
            if check_timestamps:
                lost = max(lost, frames - count)
                span = max(span, frames)
        else:
            intervals.extend((b - a) * 1000 for a, b in zip(times, times[1:]))
            if check_timestamps:
                frames = ((stream.timestamps[-1] - stream.timestamps[0]) & 0xFFFFFFFF) // SAMPLES_PER_FRAME + 1
                lost = max(lost, frames - count)
                span = max(span, frames)
        expected += span
        missing += lost
    intervals.sort()
    stats = {
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
    if talkspurts:
        stats["talkspurts"] = spurts
    return stats


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


def analyse_capture(path, rtp_ports, far_port, talkspurts=False):
    """
    Our streams (from the server's RTP ports C{rtp_ports}, a (low, high)
    range, to SIPp's echo port C{far_port}), SIPp's echoes, and the echo
    delay.  Telephone events SIPp sends from the same port are left out.
    """
    low, high = rtp_ports
    ours, echoes = [], []
    for (source, destination, ssrc), stream in read_capture(path).items():
        if low <= source <= high and source % 2 == 0 and destination == far_port:
            ours.append((stream, ssrc))
        elif low <= destination <= high and destination % 2 == 0 and source == far_port:
            if stream.payload_types and stream.payload_types[0] in TELEPHONE_EVENT_TYPES:
                continue
            echoes.append((stream, ssrc))
    return (
        direction_stats([s for s, _ in ours], check_timestamps=True, talkspurts=talkspurts),
        direction_stats([s for s, _ in echoes], check_timestamps=False, talkspurts=talkspurts),
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


def start_capture(children, path, capture_filter, log_path, options=(), cpus=()):
    """
    tcpdump on lo writing C{path} (C{options}: snap length, buffer, ...),
    run by C{children} after C{cpus} (a taskset, or nothing); returned once
    it captures.
    """
    tcpdump = children.start([*cpus, "tcpdump", "-i", "lo", "-n", *options, "-w", path, capture_filter], log_path)
    wait_until(lambda: os.path.exists(path) or tcpdump.poll() is not None, 5, interval=0.05)
    time.sleep(0.3)  # tcpdump opens the file before its filter is attached.
    return tcpdump


def tcpdump_counts(log_path):
    with open(log_path) as f:
        text = f.read()
    counts = {}
    for key, pattern in (("captured", r"(\d+) packets? captured"), ("dropped", r"(\d+) packets? dropped by kernel")):
        match = re.search(pattern, text)
        counts[key] = int(match.group(1)) if match else None
    return counts


class MediaSink:
    """
    UDP sockets on the RTCP ports next to SIPp's echo port C{media_port},
    which SIPp does not bind, so that the server's RTCP reports are taken
    by a socket, as by a phone, rather than answered with an ICMP port
    unreachable (built in the server's own sendto).  Nothing reads them: a
    small buffer fills and the kernel then drops quietly.
    """

    def __init__(self, media_port):
        self.sockets = []
        for port in (media_port + 1, media_port + 3):
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
