"""
Concurrent IVR sessions through the whole server, driven by SIPp: each
call answered by the voice information service (ivr:bulletins), hearing
its prompts and a bulletin, and moving through the menus with RFC 4733
key presses; held to the concurrent-calls bounds (no packet loss, the
outgoing packet interval's p99 within 20 ms +- 5, at least 500 calls on
this 2-core machine).

    .venv/bin/python bench/ivr_sessions.py [--calls 100 250 500] [--rate 50]
        [--window 5] [--bulletin-seconds 6] [--tone] [--profile 8 --profile-at 500]

The flow is the bulletins service: no login (editors' and experts' argon2
PINs would measure password hashing, not the IVR), two store reads per
round.  The bench seeds the store with one category (key 1) and one
bulletin of --bulletin-seconds, whose first frame begins with 4 bytes
found in no other frame the server can play, so that a filtered capture
sees every time a call's bulletin starts.

First a calibration: two calls on a server of their own measure how long
the category menu plays, and the bulletin with its end and the navigation
menu (the menus change with the flow: the category menu says the
categories' names, made on first use, which this makes for the runs).
Then, for each size, N calls at --rate calls/s (the SDP offers PCMA and
telephone-event 101 on SIPp's one echo port: -rtp_echo sends every
packet back, as in concurrent_calls.py), each:

- hears the category menu; 1 to 4 s after it ends (uniformly: calls set
  up together then keep out of step), presses 1;
- the flow reads the category's bulletins from the store and plays the
  bulletin, zh/end-of-bulletin and the navigation menu
  (zh/bulletins-menu); 1 s after that ends the caller presses * (back),
  the flow reads the categories and plays the category menu again, 1 s
  after it 1 again, and so on until the call has lasted past the window;
- ends with * twice (back, and leave): the flow ends and the server
  hangs up.  SIPp expects that BYE then, and fails the call on any other
  request (a key not recognised leaves the flow waiting, then saying "no
  input" or "invalid", and a menu's third failure hangs up early).

A key pressed while a prompt plays would cut it (barge-in) and the call
would carry on from there, so a server falling behind only brings the
keys closer to the prompts' ends.

Key presses are pcaps the bench writes (4 packets, 60 ms: the start and
three end packets, RFC 4733 §2.5.1.4), one per press of a call, each with
a later RTP timestamp than the last, as a phone's: the server takes a
repeated timestamp for a retransmission of the same event, so SIPp's own
dtmf_2833_N.pcap files, one fixed timestamp per digit, cannot press the
same key twice.  SIPp 3.6.1 plays them through a raw socket opened for
the play; the kernel copies every UDP packet on the machine into each raw
socket open at the time, so the bench samples how many there were during
the window (few: the plays last 60 ms; see concurrent_calls.py on why
SIPp plays no audio).

Measured, as in concurrent_calls.py (whose machinery this reuses): the
machine's load before and during the window (waiting for a quiet machine
first), the server's CPU and RSS, the media engine's counters, kernel
drops, and tcpdump of every stream in the window.  The server suppresses
silence while a menu waits for a key, so a packet with the marker bit
starts a talkspurt: the interval before it is not counted, and a frame
missing inside a talkspurt (a sequence or RTP timestamp gap) is a loss.

Whether the keys were recognised, per call, from a second capture that
runs for the whole test and keeps only the key presses and the first
frame of each bulletin: every call must have had its bulletin played
once per 1 it pressed (the flow reacting to each), SIPp must count it
successful (the server hung up on the last *, not before), and the
server's log must say the server, not the caller, ended it.  The time
from a 1's first end packet to the bulletin's first frame is the reaction
time (a store read and a tick or two).

With --tone the plain tone calls of concurrent_calls.py run for each size
too, in the same run, for comparison.  With --profile S py-spy samples the
server for S seconds after the window.  Needs root (tcpdump, raw sockets).
Results go in docs/performance.md.
"""

import argparse
import collections
import datetime
import math
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import concurrent_calls  # noqa: E402
from _machine import (  # noqa: E402
    Children, MachineLoad, cpu_ns, cpu_ticks, interrupt_on_sigterm, log, rss_kb, sipp_stats, thread_count,
    top_functions, wait_for_quiet, wait_until,
)
from _rtp import (  # noqa: E402
    MediaSink, analyse_capture, percentile, raw_udp_sockets, read_capture, socket_drops, tcpdump_counts,
)
from _server import BIN, bench_database_url, bench_server, free_port, live_calls, media_stats  # noqa: E402

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PROMPTS = os.path.join(REPO, "var", "prompts")
IVR_NUMBER = "9400"
# As concurrent_calls.py: the server's RTP ports away from other servers'
# and SIPp's one echo port for every call.  The runs of the two benches
# (--tone) never overlap.
RTP_PORTS = concurrent_calls.RTP_PORTS
SIPP_MEDIA_PORT = concurrent_calls.SIPP_MEDIA_PORT
MAX_CALLS = concurrent_calls.MAX_CALLS
SETTLE_SECONDS = 3.0
CATEGORY = "1"
# How long after a menu's prompt ends the caller presses its key: inside
# the 5 s the menu waits.  A key that comes while the prompt still plays
# cuts it short and is taken (barge-in), so a server running late only
# shortens the prompt or the wait.
KEY_LAG = 1.0
MENU_TIMEOUT = 5.0
# Each call's first key comes up to this much later still (uniformly), and
# so does the rest of its call: calls set up together do not press, read
# the store and pause in step.
FIRST_KEY_SPREAD = 3.0
EVENT_PAYLOAD_TYPE = 101
EVENT_SSRC = 0x1B0C4E55
# RTP timestamps of a call's successive presses: each later than the last.
EVENT_TIMESTAMP_STEP = 16000
# A 40 ms press: the start packet, then the end packet three times, 20 ms apart.
EVENT_PACKETS = ((True, False, 160), (False, True, 320), (False, True, 320), (False, True, 320))
DIGIT_EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11}

SCENARIO_HEAD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="concurrent IVR sessions: bulletins by RFC 4733 keys">
  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Bench" <sip:1390013[call_number]@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
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
      From: "Bench" <sip:1390013[call_number]@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:bench@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""

SCENARIO_PRESS = """
  <pause milliseconds="{pause_ms}"/>
  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
"""

SCENARIO_SPREAD_PRESS = """
  <pause distribution="uniform" min="{pause_ms}" max="{max_ms}"/>
  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
"""

# After the last *, the server hangs up: its BYE, answered.  Any request
# before it (an early BYE) fails the call.
SCENARIO_TAIL = """
  <recv request="BYE" timeout="{bye_timeout_ms}"/>

  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""

# The calibration calls hang up themselves.
SCENARIO_HANG_UP = """
  <pause milliseconds="{pause_ms}"/>

  <send retrans="500">
    <![CDATA[

      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Bench" <sip:1390013[call_number]@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
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


# The prompt pack, and the call's timeline.


def copy_prompts(scratch):
    """
    The prompt pack (built by make), copied for the run: a rebuild in the
    repository meanwhile must not change what the calls hear, nor when.
    The flow adds the categories' spoken names to the copy on first use.
    """
    if not os.path.exists(os.path.join(PROMPTS, "manifest.json")):
        log(f"building the prompt pack in {PROMPTS}")
        subprocess.run([os.path.join(BIN, "callcenter"), "prompts", "build", "--dir", PROMPTS], check=True)
    copy = os.path.join(scratch, "prompts")
    shutil.copytree(PROMPTS, copy)
    return copy


class Timeline:
    """
    When each call presses which key (seconds after its ACK), from how
    long the category menu plays (C{menu} s) and one round of the
    bulletin, its end and the navigation menu (C{cycle} s): 1 a second
    after the category menu, * a second after the round, and again, until
    C{last_press_after}; then * twice (back, and leave).
    """

    def __init__(self, menu, cycle, last_press_after):
        self.menu, self.cycle = menu, cycle
        presses = [(menu + KEY_LAG, CATEGORY)]
        while True:
            back = presses[-1][0] + cycle + KEY_LAG
            presses.append((back, "*"))
            if back >= last_press_after:
                break
            presses.append((back + menu + KEY_LAG, CATEGORY))
        presses.append((presses[-1][0] + menu + KEY_LAG, "*"))
        self.presses = presses
        self.keys = "".join(digit for _, digit in presses)
        self.bulletins = self.keys.count(CATEGORY)
        self.seconds = presses[-1][0]


# The files the bench makes: key presses, the bulletin.


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def write_press_pcap(path, digit, timestamp, sequence):
    """
    One key press as RFC 4733 events in a pcap SIPp's play_pcap_audio
    replays (Ethernet, IPv4, UDP; SIPp rewrites the addresses and ports).
    """
    event = DIGIT_EVENTS[digit]
    source, destination = bytes((127, 0, 0, 1)), bytes((127, 0, 0, 1))
    records = []
    for index, (marker, end, duration) in enumerate(EVENT_PACKETS):
        rtp = struct.pack(
            "!BBHII", 0x80, (0x80 if marker else 0) | EVENT_PAYLOAD_TYPE, (sequence + index) & 0xFFFF,
            timestamp, EVENT_SSRC,
        ) + struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
        udp_length = 8 + len(rtp)
        pseudo = source + destination + struct.pack("!BBH", 0, 17, udp_length)
        udp = struct.pack("!HHHH", SIPP_MEDIA_PORT, 20000, udp_length, 0) + rtp
        udp = udp[:6] + struct.pack("!H", _checksum(pseudo + udp) or 0xFFFF) + udp[8:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_length, index, 0, 64, 17, 0, source, destination)
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        frame = b"\0" * 12 + b"\x08\x00" + ip + udp
        seconds, micros = divmod(index * 20000, 1000000)
        records.append(struct.pack("<IIII", 1_000_000_000 + seconds, micros, len(frame), len(frame)) + frame)
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        f.write(b"".join(records))


def first_bytes_in_use(prompts):
    """The first 4 bytes of every frame, in PCMA, of every prompt the server could play."""
    from callcenter.media.wavfile import load_prompt

    seen = set()
    for root, _, files in os.walk(prompts):
        for name in files:
            if name.endswith(".wav"):
                seen.update(frame[:4] for frame in load_prompt(os.path.join(root, name), "PCMA"))
    return seen


def write_bulletin(path, seconds, prompts):
    """
    A bulletin of C{seconds} (a 440 Hz tone at about -10 dBm0, A-law)
    whose first frame begins with 4 bytes that begin no other frame, for
    the capture filter; returns them.
    """
    from callcenter.media import g711
    from callcenter.media.wavfile import WavRecorder, load_prompt

    samples = int(seconds * 8000)
    linear = struct.pack(
        f"<{samples}h", *(int(7000 * math.sin(2 * math.pi * 440 * n / 8000)) for n in range(samples))
    )
    payload = g711.linear_to_alaw(linear)
    taken = first_bytes_in_use(prompts) | {payload[i:i + 4] for i in range(160, len(payload), 160)}
    chooser = random.Random(4733)
    while True:
        magic = bytes(chooser.randrange(256) for _ in range(4))
        if magic not in taken:
            break
    recorder = WavRecorder(path, "PCMA")
    recorder.write(magic + payload[4:])
    recorder.close()
    if load_prompt(path, "PCMA")[0][:4] != magic:
        raise RuntimeError(f"{path}: the server would not play the bulletin's first frame as written")
    return magic


def seed_store(directory, bulletin, seconds):
    """The schema, category 1 and its one bulletin, in the store the server will open."""
    from callcenter.ivr import bulletins
    from callcenter.store.database import Database

    recordings = os.path.join(directory, "recordings")
    relative = os.path.join("bulletins", "bench.wav")
    os.makedirs(os.path.join(recordings, "bulletins"))
    shutil.copy(bulletin, os.path.join(recordings, relative))
    database = Database(bench_database_url(directory))
    try:
        database.open()
        database.transaction(bulletins.add_category, CATEGORY, "要闻", "News")
        database.transaction(
            bulletins.add_bulletin, CATEGORY, relative, int(seconds * 1000),
            datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1), title="bench",
        )
    finally:
        database.close()
    return recordings


def write_scenario(path, presses, pcaps, hang_up_at=None, spread=0.0):
    """
    A scenario pressing C{presses} ((seconds after the ACK, digit)), with
    C{pcaps[index, digit]}, the first up to C{spread} s later (uniformly)
    and the rest as much later; then the server's BYE is expected, or with
    C{hang_up_at} SIPp hangs up then.
    """
    parts, previous = [SCENARIO_HEAD], 0.0
    for index, (when, digit) in enumerate(presses):
        pause_ms = round(1000 * (when - previous))
        if index == 0 and spread:
            parts.append(SCENARIO_SPREAD_PRESS.format(
                pause_ms=pause_ms, max_ms=pause_ms + round(1000 * spread), pcap=pcaps[index, digit]
            ))
        else:
            parts.append(SCENARIO_PRESS.format(pause_ms=pause_ms, pcap=pcaps[index, digit]))
        previous = when
    if hang_up_at is None:
        parts.append(SCENARIO_TAIL.format(bye_timeout_ms=round(1000 * (MENU_TIMEOUT + 10))))
    else:
        parts.append(SCENARIO_HANG_UP.format(pause_ms=round(1000 * (hang_up_at - previous))))
    with open(path, "w") as f:
        f.write("".join(parts))


def make_presses(directory, presses):
    pcaps = {}
    for index, (_, digit) in enumerate(presses):
        path = os.path.join(directory, f"press{index:02d}.pcap")
        write_press_pcap(path, digit, EVENT_TIMESTAMP_STEP * (index + 1), 1000 + index * len(EVENT_PACKETS))
        pcaps[index, digit] = path
    return pcaps


# What each call went through, from the capture of presses and bulletin starts.


def tracking_filter(magic):
    low, high = RTP_PORTS
    return (
        f"(udp and src portrange {low}-{high} and dst port {SIPP_MEDIA_PORT} "
        f"and udp[20:4] = 0x{magic.hex()}) or "
        f"(udp and src port {SIPP_MEDIA_PORT} and dst portrange {low}-{high} "
        f"and (udp[9] & 0x7f) = {EVENT_PAYLOAD_TYPE})"
    )


def analyse_tracking(path, timeline):
    """
    Per call (the server's RTP port): the presses on the wire and the
    bulletin starts.  A call is verified when it shows every press (the
    last may lack the packets after the one that ended the call) and a
    bulletin start for each 1; the reaction time pairs the n-th 1 (its
    first end packet, the second of the four) with the n-th bulletin
    start.
    """
    low, high = RTP_PORTS
    presses, starts = collections.defaultdict(dict), collections.defaultdict(list)
    for (source, destination, ssrc), stream in read_capture(path).items():
        if source == SIPP_MEDIA_PORT and low <= destination <= high:
            for when, timestamp in zip(stream.times, stream.timestamps):
                presses[destination].setdefault(timestamp, []).append(when)
        elif low <= source <= high and destination == SIPP_MEDIA_PORT:
            starts[source].extend(stream.times)
    expected_presses = len(timeline.presses)
    calls = set(presses) | set(starts)
    verified, reactions, short = 0, [], collections.Counter()
    for port in calls:
        pressed = [sorted(times) for _, times in sorted(presses[port].items())]
        played = sorted(starts[port])
        if len(pressed) != expected_presses:
            short["presses on the wire"] += 1
            continue
        if len(played) != timeline.bulletins:
            short["bulletin plays"] += 1
            continue
        verified += 1
        categories = [times for times, (_, digit) in zip(pressed, timeline.presses) if digit == CATEGORY]
        for times, started in zip(categories, played):
            recognisable = times[1] if len(times) > 1 else times[0]
            reactions.append((started - recognisable) * 1000)
    reactions.sort()
    return {
        "calls": len(calls),
        "verified": verified,
        "short": dict(short),
        "reactions": reactions,
    }


# Calibration: how long the flow's menus play, measured.

# A talkspurt ends at a pause this long (a menu waiting for its key).
PAUSE_SECONDS = 1.0
CALIBRATION_KEY_AT = 2.0


def talkspurt_end(times, start):
    """The time of the last packet of the talkspurt holding C{times[start]}."""
    end = start
    while end + 1 < len(times) and times[end + 1] - times[end] < PAUSE_SECONDS:
        end += 1
    return times[end]


def calibrate(args, children, scratch, prompts, bulletin, magic):
    """
    (category menu, round of bulletin and navigation menu) in seconds, as
    the server plays them: two calls on a server of their own, one
    pressing nothing (its first talkspurt is the category menu) and one
    pressing 1 after 2 s (from the bulletin's first frame to the pause
    after the navigation menu).  Measured rather than added up from the
    prompt files, so that the bench follows the flow as it changes (the
    menu says the categories' names, made on first use: this call makes
    them for the runs that follow).
    """
    directory = os.path.join(scratch, "calibration")
    os.mkdir(directory)
    recordings = seed_store(directory, bulletin, args.bulletin_seconds)
    press = [(CALIBRATION_KEY_AT, CATEGORY)]
    quiet_port = SIPP_MEDIA_PORT + 10
    hold_silent = 25.0
    hold_pressing = CALIBRATION_KEY_AT + 20 + args.bulletin_seconds + 25
    silent = os.path.join(directory, "silent.xml")
    pressing = os.path.join(directory, "pressing.xml")
    write_scenario(silent, [], {}, hang_up_at=hold_silent)
    write_scenario(pressing, press, make_presses(directory, press), hang_up_at=hold_pressing)
    capture = os.path.join(directory, "calibration.pcap")
    with MediaSink(SIPP_MEDIA_PORT), bench_server(
        directory, routes={IVR_NUMBER: "ivr:bulletins"},
        extra_tables={"ivr": {"prompts": prompts, "recordings": recordings}},
        rtp_port_min=RTP_PORTS[0], rtp_port_max=RTP_PORTS[1],
    ) as server:
        tcpdump = children.start(
            ["tcpdump", "-i", "lo", "-n", "-s", "80", "--immediate-mode", "-w", capture,
             "udp and src portrange {}-{} and dst portrange {}-{}".format(*RTP_PORTS, SIPP_MEDIA_PORT, quiet_port)],
            os.path.join(directory, "tcpdump.log"),
        )
        wait_until(lambda: os.path.exists(capture) or tcpdump.poll() is not None, 5, interval=0.05)
        time.sleep(0.3)
        sipps = [
            children.start(
                ["sipp", f"127.0.0.1:{server.udp}", "-sf", scenario, "-s", IVR_NUMBER, "-m", "1", "-l", "1",
                 "-i", "127.0.0.1", "-mi", "127.0.0.1", "-mp", str(port), "-rtp_echo", "-bind_local",
                 "-ci", "127.0.0.1", "-cp", str(free_port()), "-nostdin", "-p", str(free_port()),
                 "-timeout", str(math.ceil(hold + 30))],
                os.path.join(directory, f"sipp_{name}.log"),
                cwd=directory,
            )
            for name, scenario, port, hold in (
                ("silent", silent, quiet_port, hold_silent), ("pressing", pressing, SIPP_MEDIA_PORT, hold_pressing),
            )
        ]
        log(f"calibration: two calls of {hold_silent:.0f} and {hold_pressing:.0f} s")
        for sipp in sipps:
            try:
                sipp.wait(hold_pressing + 40)
            except subprocess.TimeoutExpired:
                pass
            if children.stop(sipp) != 0:
                raise RuntimeError(f"calibration call failed; see {directory}")
        children.stop(tcpdump, signal.SIGINT)
    heard = {destination: stream for (_, destination, _), stream in read_capture(capture, prefix=4).items()}
    if quiet_port not in heard or SIPP_MEDIA_PORT not in heard:
        raise RuntimeError(f"calibration: no RTP captured from the server; see {directory}")
    times = heard[quiet_port].times
    menu = talkspurt_end(times, 0) - times[0] + 0.02
    if times[-1] - times[0] <= menu + PAUSE_SECONDS - 0.02:
        raise RuntimeError("calibration: the category menu did not end within the call")
    stream = heard[SIPP_MEDIA_PORT]
    if magic not in stream.prefixes:
        raise RuntimeError(f"calibration: the bulletin was not played after 1; see {directory}")
    start = stream.prefixes.index(magic)
    cycle = talkspurt_end(stream.times, start) - stream.times[start] + 0.02
    if stream.times[-1] - stream.times[start] <= cycle + PAUSE_SECONDS - 0.02:
        raise RuntimeError("calibration: the navigation menu did not end within the call")
    log(f"calibration: category menu {menu:.2f} s, bulletin and navigation menu {cycle:.2f} s")
    return menu, cycle


# One size.


def run_size(calls, args, children, scratch, prompts, bulletin, magic, flow):
    ramp = calls / args.rate
    budget = ramp * 1.3 + 5 + SETTLE_SECONDS + args.window_wait + args.window + args.profile_for(calls) + 10
    directory = os.path.join(scratch, f"ivr{calls}")
    os.mkdir(directory)
    timeline = Timeline(*flow, budget)
    scenario = os.path.join(directory, "ivr_calls.xml")
    write_scenario(scenario, timeline.presses, make_presses(directory, timeline.presses), spread=FIRST_KEY_SPREAD)
    recordings = seed_store(directory, bulletin, args.bulletin_seconds)

    result = {"calls": calls, "hold": timeline.seconds, "timeline": timeline}
    with MediaSink(SIPP_MEDIA_PORT), bench_server(
        directory, routes={IVR_NUMBER: "ivr:bulletins"},
        extra_tables={"ivr": {"prompts": prompts, "recordings": recordings}},
        rtp_port_min=RTP_PORTS[0], rtp_port_max=RTP_PORTS[1],
    ) as server:
        pid = server.pid
        if args.pin:
            os.sched_setaffinity(pid, {0})
        result["waited_before"], _ = wait_for_quiet(args.quiet, args.quiet_wait, {pid, os.getpid()})
        time.sleep(1)
        rss_idle, cpu_before, started = rss_kb(pid), cpu_ns(pid), time.monotonic()
        time.sleep(2)
        result["idle_cpu_pct"] = 100 * (cpu_ns(pid) - cpu_before) / 1e9 / (time.monotonic() - started)
        result["rss_idle_mb"] = rss_idle / 1024

        tracking = os.path.join(directory, "tracking.pcap")
        tracker = children.start(
            # --immediate-mode: a few packets a second, and none left in
            # the kernel's half-filled block when it is stopped.
            [*load_cpus(args), "tcpdump", "-i", "lo", "-n", "-s", "64", "-B", "16384", "--immediate-mode",
             "-w", tracking, tracking_filter(magic)],
            os.path.join(directory, "tracking.log"),
        )
        wait_until(lambda: os.path.exists(tracking) or tracker.poll() is not None, 5, interval=0.05)
        time.sleep(0.3)

        stat_file = os.path.join(directory, "sipp_stats.csv")
        sipp = children.start(
            [
                *load_cpus(args), "sipp", f"127.0.0.1:{server.udp}", "-sf", scenario, "-s", IVR_NUMBER,
                "-m", str(calls), "-l", str(calls), "-r", str(args.rate),
                "-i", "127.0.0.1", "-mi", "127.0.0.1", "-mp", str(SIPP_MEDIA_PORT), "-rtp_echo", "-bind_local",
                "-ci", "127.0.0.1", "-nostdin", "-p", str(free_port()), "-buff_size", "4194304",
                "-timeout", str(math.ceil(timeline.seconds + FIRST_KEY_SPREAD + ramp + 120)),
                "-trace_stat", "-stf", stat_file,
                "-fd", "1", "-trace_err",
            ],
            os.path.join(directory, "sipp.log"),
            cwd=directory,
        )
        log(f"{calls} IVR calls: SIPp started at {args.rate}/s, each {timeline.seconds:.0f} s: "
            f"keys {timeline.keys}, {timeline.bulletins} bulletin plays")

        def calls_up():
            if sipp.poll() is not None:
                raise RuntimeError(f"SIPp ended early ({sipp.returncode}); see {directory}/sipp.log")
            return (live_calls(server) or 0) >= calls

        if not wait_until(calls_up, ramp * 1.3 + 5, interval=0.5):
            log(f"{calls} IVR calls: not all up after {ramp * 1.3 + 5:.0f} s; measuring what there is")
        time.sleep(SETTLE_SECONDS)
        ours = {pid, sipp.pid, tracker.pid, os.getpid()}
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
        time.sleep(0.3)
        ours.add(tcpdump.pid)
        held_before = live_calls(server) or 0
        media_before, media_started = media_stats(server), time.monotonic()
        drops_before, echo_drops_before = socket_drops(RTP_PORTS), socket_drops((SIPP_MEDIA_PORT,) * 2)
        ticks_before = cpu_ticks(pid)
        cpu_before, sipp_before, dump_before = cpu_ns(pid), cpu_ns(sipp.pid), cpu_ns(tcpdump.pid)
        track_before = cpu_ns(tracker.pid)
        machine = MachineLoad(ours)
        started = time.monotonic()
        raw_samples = []
        while time.monotonic() - started < args.window:
            raw_samples.append(raw_udp_sockets())
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        cpu = (cpu_ns(pid) - cpu_before) / 1e9
        sipp_cpu = (cpu_ns(sipp.pid) - sipp_before) / 1e9
        dump_cpu = (cpu_ns(tcpdump.pid) - dump_before) / 1e9 + (cpu_ns(tracker.pid) - track_before) / 1e9
        ticks_after = cpu_ticks(pid)
        machine.finish()
        drops = socket_drops(RTP_PORTS) - drops_before
        echo_drops = socket_drops((SIPP_MEDIA_PORT,) * 2) - echo_drops_before
        media_after, media_seconds = media_stats(server), time.monotonic() - media_started
        rss, threads, sipp_threads = rss_kb(pid), thread_count(pid), thread_count(sipp.pid)
        held_after = live_calls(server) or 0
        children.stop(tcpdump, signal.SIGINT)
        log(f"{calls} IVR calls: window done; {machine.describe()}")

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
            raw_mean=sum(raw_samples) / len(raw_samples) if raw_samples else float("nan"),
            raw_max=max(raw_samples, default=0),
            capture=tcpdump_counts(capture_log),
        )

        if args.profile_for(calls):
            raw = os.path.join(directory, "profile.txt")
            log(f"{calls} IVR calls: py-spy for {args.profile} s")
            subprocess.run(
                # --native pauses the server for each sample (py-spy cannot read C
                # stacks without stopping it): after the window only.
                [os.path.join(BIN, "py-spy"), "record", "--function", "-r", "100",
                 *(["--native"] if args.profile_native else ["--nonblocking"]),
                 "-d", str(math.ceil(args.profile)), "-f", "raw", "-o", raw, "-p", str(pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                timeout=args.profile + 30,
            )
            result["profile"] = top_functions(raw)
            if args.keep_profile:
                shutil.copy(raw, args.keep_profile.replace("{n}", f"ivr{calls}"))

        log(f"{calls} IVR calls: waiting for the flows to end them")
        try:
            sipp.wait(timeline.seconds + FIRST_KEY_SPREAD + ramp + 60)
        except subprocess.TimeoutExpired:
            log(f"{calls} IVR calls: SIPp did not finish; stopping it")
        result["sipp_status"] = children.stop(sipp)
        time.sleep(0.5)
        children.stop(tracker, signal.SIGINT)
        final = sipp_stats(stat_file)
        result["successful"] = int(final.get("SuccessfulCall(C)", 0) or 0)
        result["failed"] = int(final.get("FailedCall(C)", 0) or 0)

    output = server.process.output
    with open(os.path.join(directory, "server.log"), "w") as f:
        f.write(output)
    if args.keep_logs:
        os.makedirs(args.keep_logs, exist_ok=True)
        for name in ("server.log", "sipp.log", "ivr_calls.xml"):
            if os.path.exists(os.path.join(directory, name)):
                shutil.copy(os.path.join(directory, name), os.path.join(args.keep_logs, f"ivr{calls}_{name}"))
    result["server_ended"] = output.count("call ended: normal")
    result["caller_ended"] = output.count("call ended: caller hung up")
    result["flow_failures"] = output.count("IVR flow")
    result["media_timeouts"] = output.count("no RTP from the caller")
    result["send_error_sessions"] = output.count("RTP send from port")
    result["clock_warnings"] = output.count("ticks behind: skipping ticks")

    log(f"{calls} IVR calls: reading the captures")
    result["server"], result["echo"], result["delay"] = analyse_capture(
        capture, RTP_PORTS, SIPP_MEDIA_PORT, talkspurts=True
    )
    result["tracking"] = analyse_tracking(tracking, timeline)
    result["tracking_capture"] = tcpdump_counts(os.path.join(directory, "tracking.log"))
    os.remove(capture)
    return result


def load_cpus(args):
    """With --pin, the load generator and the capture run on the second core, the server on the first."""
    return ["taskset", "-c", "1"] if args.pin else []


def keys_ok(r):
    return r["tracking"]["verified"] == r["calls"] and r["server_ended"] == r["calls"]


def meets_target(r):
    server = r["server"]
    return (
        r["held"] == r["calls"]
        and r["failed"] == 0
        and server["lost"] == 0
        and r["socket_drops"] == 0
        and r["media"]["skipped_ticks"] == 0
        and 15 <= server["p99"] <= 25
        and keys_ok(r)
    )


def print_table(results):
    header = (
        "| calls | held / failed | load avg, others' CPU in window | server CPU (kernel) | per call µs/s "
        "| RSS MB | ticks late / skipped | engine sent / received pkt/s | ours mean interval ms "
        "| ours p1/p50/p99/max ms | ours >25 ms | ours loss | in drops | raw sockets mean / max "
        "| SIPp CPU | keys recognised (calls) | key to bulletin p50/p99/max ms | target |"
    )
    print(header)
    print("|" + "|".join("---:" for _ in range(header.count("|") - 1)) + "|")
    for r in results:
        s, m, t, k = r["server"], r["media"], r["media_seconds"], r["tracking"]
        reactions = k["reactions"]
        reaction = (
            f"{percentile(reactions, 0.5):.0f} / {percentile(reactions, 0.99):.0f} / {reactions[-1]:.0f}"
            if reactions else "–"
        )
        print(
            f"| {r['calls']} | {r['held']} / {r['failed']} "
            f"| {r['machine'].loadavg:.2f}, {r['machine'].others_pct:.0f}% "
            f"| {r['cpu_pct']:.0f}% ({100 * r['kernel_share']:.0f}%) | {r['per_call_us']:.0f} | {r['rss_mb']:.0f} "
            f"| {m['late_ticks']} / {m['skipped_ticks']} of {m['ticks']} "
            f"| {m['packets_sent'] / t:,.0f} / {m['packets_received'] / t:,.0f} | {s['mean']:.2f} "
            f"| {s['p1']:.1f} / {s['p50']:.1f} / {s['p99']:.1f} / {s['max']:.0f} | {s['over_25']:.2f}% "
            f"| {s['loss_pct']:.3f}% | {r['socket_drops']} | {r['raw_mean']:.2f} / {r['raw_max']} "
            f"| {r['sipp_cpu_pct']:.0f}% | {k['verified']}/{r['calls']} | {reaction} "
            f"| {'met' if meets_target(r) else 'not met'} |"
        )


def print_tone_table(pairs):
    print("\n| calls | IVR: server CPU, per call µs/s, sent pkt/s, p99 ms, loss | tone: server CPU, per call µs/s, "
          "sent pkt/s, p99 ms, loss | CPU per packet sent IVR / tone µs |")
    print("|---:|---:|---:|---:|")
    for ivr, tone in pairs:
        cells = []
        for r in (ivr, tone):
            sent = r["media"]["packets_sent"] / r["media_seconds"]
            cells.append(
                f"{r['cpu_pct']:.0f}%, {r['per_call_us']:.0f}, {sent:,.0f}, {r['server']['p99']:.1f}, "
                f"{r['server']['loss_pct']:.3f}%"
            )
        per_packet = [
            1e6 * r["cpu_pct"] / 100 / max(1, r["media"]["packets_sent"] / r["media_seconds"]) for r in (ivr, tone)
        ]
        print(f"| {ivr['calls']} | {cells[0]} | {cells[1]} | {per_packet[0]:.1f} / {per_packet[1]:.1f} |")


def print_details(results, tone):
    for r in results:
        s, e, k, timeline = r["server"], r["echo"], r["tracking"], r["timeline"]
        print(
            f"\n{r['calls']} IVR calls (each {r['hold']:.0f} s: category menu {timeline.menu:.2f} s, "
            f"round of bulletin + menu {timeline.cycle:.2f} s, keys {timeline.keys}): "
            f"idle server {r['idle_cpu_pct']:.1f}% CPU, "
            f"RSS {r['rss_idle_mb']:.0f} MB idle; {r['threads']} server threads; SIPp {r['sipp_threads']} threads; "
            f"SIPp successful {r['successful']}, failed {r['failed']}, exit {r['sipp_status']}; "
            f"ended by the server {r['server_ended']}, by the caller {r['caller_ended']}; "
            f"flow failures logged {r['flow_failures']}, media timeouts {r['media_timeouts']}; "
            f"waited {r['waited_before']:.0f} s before the calls and {r.get('waited_window', 0):.0f} s before "
            f"the window for a quiet machine; during it: {r['machine'].describe()}; "
            f"the two tcpdumps {r['tcpdump_cpu_pct']:.0f}% CPU, window capture {r['capture']['captured']} "
            f"(kernel dropped {r['capture']['dropped']}), tracking capture {r['tracking_capture']['captured']} "
            f"(dropped {r['tracking_capture']['dropped']}); engine sessions {r['media_sessions']}; "
            f"sessions that logged a send error: {r['send_error_sessions']}; "
            f"'skipping ticks' warnings: {r['clock_warnings']}; drops on SIPp's echo socket {r['echo_drops']}"
        )
        print(
            f"  ours: {s['streams']} streams, {s['packets']} packets, {s['talkspurts']} talkspurts begun, "
            f"{s['lost']} lost; echoes: {e['streams']} streams, {e['packets']} packets, "
            f"p99 {e['p99']:.1f} ms; echo delay p50/p99 {r['delay']['p50']:.2f} / {r['delay']['p99']:.1f} ms, "
            f"{r['delay']['unanswered']} not returned"
        )
        print(
            f"  keys: {k['calls']} calls seen in the tracking capture, {k['verified']} with every press on the wire "
            f"and every bulletin played; short: {k['short'] or 'none'}; {len(k['reactions'])} reactions timed"
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
    if tone:
        print("\nTone calls (concurrent_calls.py) in the same run:")
        concurrent_calls.print_table(tone)
    held = [r["calls"] for r in results if meets_target(r)]
    print(
        f"\ntarget (>= 500 sessions, every key recognised, no loss, no skipped tick, p99 15-25 ms): "
        f"{'met' if any(n >= 500 for n in held) else 'not met'}; "
        f"sizes meeting it: {', '.join(map(str, held)) or 'none'}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[100, 250, 500])
    parser.add_argument("--rate", type=float, default=50, help="new calls per second while ramping up")
    parser.add_argument("--window", type=float, default=5.0, help="seconds measured at steady state")
    parser.add_argument("--bulletin-seconds", type=float, default=6.0, help="length of the bulletin the calls hear")
    parser.add_argument("--tone", action="store_true",
                        help="also run concurrent_calls.py's tone calls at each size, for comparison")
    parser.add_argument("--profile", type=float, default=0, help="seconds of py-spy after the window")
    parser.add_argument("--profile-at", type=int, nargs="*", default=None,
                        help="sizes to profile (default: all, when --profile is given)")
    parser.add_argument("--profile-native", action="store_true",
                        help="py-spy --native: C frames too (garbage collection, the interpreter, system calls)")
    parser.add_argument("--pin", action="store_true", help="server on CPU 0; SIPp and tcpdump on CPU 1")
    parser.add_argument("--quiet", type=float, default=15,
                        help="wait until other processes use under this %% of a core ...")
    parser.add_argument("--quiet-wait", type=float, default=180,
                        help="... for at most this many seconds before starting each size's calls")
    parser.add_argument("--window-wait", type=float, default=30,
                        help="... and at most this many seconds again just before the window (calls held)")
    parser.add_argument("--keep-profile", help="copy py-spy's raw output here ({n}: ivrN or N for tone calls)")
    parser.add_argument("--keep-logs", help="copy the server's and SIPp's logs to this directory")
    parser.add_argument("--keep-scratch", action="store_true",
                        help="leave the scratch directory (configs, captures, pcaps, logs) in place")
    args = parser.parse_args()
    args.profile_for = lambda n: (
        args.profile if args.profile and (args.profile_at is None or n in args.profile_at) else 0
    )
    args.dtmf_calls = 0  # For concurrent_calls.run_size (--tone): DTMF is in every IVR call here.
    if max(args.calls) > MAX_CALLS:
        parser.error(f"at most {MAX_CALLS} calls (the RTP port range)")
    for tool in ("sipp", "tcpdump"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found (apt-get install sip-tester tcpdump)")
    if os.geteuid() != 0:
        raise SystemExit("needs root: tcpdump captures, SIPp's play_pcap_audio uses a raw socket")
    interrupt_on_sigterm()
    children = Children()
    scratch = tempfile.mkdtemp(prefix="callcenter-ivr-")
    results, tone = [], []
    try:
        prompts = copy_prompts(scratch)
        bulletin = os.path.join(scratch, "bulletin.wav")
        magic = write_bulletin(bulletin, args.bulletin_seconds, prompts)
        flow = calibrate(args, children, scratch, prompts, bulletin, magic)
        for calls in args.calls:
            results.append(run_size(calls, args, children, scratch, prompts, bulletin, magic, flow))
            if args.tone:
                tone_result = concurrent_calls.run_size(calls, args, children, scratch)
                tone_result["dtmf_calls"] = 0
                tone.append(tone_result)
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        raise SystemExit(130)
    finally:
        children.stop_all()
        if args.keep_scratch:
            log(f"scratch kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
        if results:
            print_table(results)
            if tone:
                print_tone_table(list(zip(results, tone)))
            print_details(results, tone)


if __name__ == "__main__":
    main()
