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

Measured, as in concurrent_calls.py (the two share _sipp.py and
_call_window.py): the machine's load before and during the window (waiting
for a quiet machine first), the server's CPU and RSS, the media engine's
counters, kernel drops, and tcpdump of every stream in the window.  The
server suppresses silence while a menu waits for a key, so a packet with
the marker bit starts a talkspurt: the interval before it is not counted,
and a frame missing inside a talkspurt (a sequence or RTP timestamp gap)
is a loss.

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
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import concurrent_calls  # noqa: E402
from _call_window import (  # noqa: E402
    WINDOW_COLUMNS, add_load_options, add_machine_options, add_profile_options, analyse_window_capture,
    check_options, engine_warnings, keep_server_log, measure_idle, measure_window, meets_media_target,
    print_table_header, profile_server, window_cells, window_details,
)
from _machine import bench_run, load_cpus, log, print_profile  # noqa: E402
from _rtp import percentile, raw_udp_sockets, read_capture, start_capture, tcpdump_counts  # noqa: E402
from _server import BIN, bench_database_url, free_port  # noqa: E402
from _sipp import (  # noqa: E402
    RTP_PORTS, SIPP_MEDIA_PORT, CallLoad, measured_seconds, scenario_call_set_up, scenario_caller_hangs_up,
    server_for_sipp, sipp_command,
)

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PROMPTS = os.path.join(REPO, "var", "prompts")
IVR_NUMBER = "9400"
CALLER = "1390013"
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
SCENARIO_NAME = "concurrent IVR sessions: bulletins by RFC 4733 keys"

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


def bulletins_server(directory, prompts, recordings):
    """The server answering IVR_NUMBER with the bulletins flow, its prompts and recordings those given."""
    return server_for_sipp(
        directory, routes={IVR_NUMBER: "ivr:bulletins"},
        extra_tables={"ivr": {"prompts": prompts, "recordings": recordings}},
    )


def write_scenario(path, presses, pcaps, hang_up_at=None, spread=0.0):
    """
    A scenario pressing C{presses} ((seconds after the ACK, digit)), with
    C{pcaps[index, digit]}, the first up to C{spread} s later (uniformly)
    and the rest as much later; then the server's BYE is expected, or with
    C{hang_up_at} SIPp hangs up then.
    """
    parts, previous = [scenario_call_set_up(SCENARIO_NAME, CALLER)], 0.0
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
        parts.append(scenario_caller_hangs_up(round(1000 * (hang_up_at - previous)), CALLER))
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
    with bulletins_server(directory, prompts, recordings) as server:
        tcpdump = start_capture(
            children, capture,
            "udp and src portrange {}-{} and dst portrange {}-{}".format(*RTP_PORTS, SIPP_MEDIA_PORT, quiet_port),
            os.path.join(directory, "tcpdump.log"), ("-s", "80", "--immediate-mode"),
        )
        sipps = [
            children.start(
                sipp_command(
                    server, scenario, IVR_NUMBER, 1, port,
                    "-rtp_echo", "-cp", str(free_port()), "-timeout", str(math.ceil(hold + 30)),
                ),
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


def sample_raw_sockets(seconds):
    """Spends the window counting the raw UDP sockets open (SIPp's key presses) every 20 ms."""
    started, samples = time.monotonic(), []
    while time.monotonic() - started < seconds:
        samples.append(raw_udp_sockets())
        time.sleep(0.02)
    return {
        "raw_mean": sum(samples) / len(samples) if samples else float("nan"),
        "raw_max": max(samples, default=0),
    }


def run_size(calls, args, children, scratch, prompts, bulletin, magic, flow):
    label = f"{calls} IVR calls"
    ramp = calls / args.rate
    directory = os.path.join(scratch, f"ivr{calls}")
    os.mkdir(directory)
    timeline = Timeline(*flow, measured_seconds(calls, args) + 10)
    scenario = os.path.join(directory, "ivr_calls.xml")
    write_scenario(scenario, timeline.presses, make_presses(directory, timeline.presses), spread=FIRST_KEY_SPREAD)
    recordings = seed_store(directory, bulletin, args.bulletin_seconds)

    result = {"calls": calls, "hold": timeline.seconds, "timeline": timeline}
    with bulletins_server(directory, prompts, recordings) as server:
        idle, rss_idle = measure_idle(server, args)
        result.update(idle)

        tracking = os.path.join(directory, "tracking.pcap")
        # --immediate-mode: a few packets a second, and none left in the
        # kernel's half-filled block when it is stopped.
        tracker = start_capture(
            children, tracking, tracking_filter(magic), os.path.join(directory, "tracking.log"),
            ("-s", "64", "-B", "16384", "--immediate-mode"), cpus=load_cpus(args),
        )

        load = CallLoad(
            children, args, server, directory, scenario, IVR_NUMBER, calls,
            timeout=math.ceil(timeline.seconds + FIRST_KEY_SPREAD + ramp + 120),
        )
        log(f"{label}: SIPp started at {args.rate}/s, each {timeline.seconds:.0f} s: "
            f"keys {timeline.keys}, {timeline.bulletins} bulletin plays")
        load.wait_until_up(server, args, label)
        window, capture = measure_window(
            server, load, children, args, directory, label, rss_idle,
            captures=(tracker,), spend_window=sample_raw_sockets,
        )
        result.update(window)
        profile = profile_server(server, args, calls, directory, label, keep_as=f"ivr{calls}")
        if profile is not None:
            result["profile"] = profile

        log(f"{label}: waiting for the flows to end them")
        result["sipp_status"], result["successful"], result["failed"] = load.finish(
            children, timeline.seconds + FIRST_KEY_SPREAD + ramp + 60, label
        )
        time.sleep(0.5)
        children.stop(tracker, signal.SIGINT)

    output = keep_server_log(server, directory, args, ("sipp.log", "ivr_calls.xml"), prefix=f"ivr{calls}")
    result["server_ended"] = output.count("call ended: normal")
    result["caller_ended"] = output.count("call ended: caller hung up")
    result["flow_failures"] = output.count("IVR flow")
    result["media_timeouts"] = output.count("no RTP from the caller")
    result.update(engine_warnings(output))

    log(f"{label}: reading the captures")
    result["server"], result["echo"], result["delay"] = analyse_window_capture(capture, talkspurts=True)
    result["tracking"] = analyse_tracking(tracking, timeline)
    result["tracking_capture"] = tcpdump_counts(os.path.join(directory, "tracking.log"))
    return result


def keys_ok(r):
    return r["tracking"]["verified"] == r["calls"] and r["server_ended"] == r["calls"]


def meets_target(r):
    return meets_media_target(r) and keys_ok(r)


def print_table(results):
    print_table_header(
        WINDOW_COLUMNS + "| raw sockets mean / max "
        "| SIPp CPU | keys recognised (calls) | key to bulletin p50/p99/max ms | target |"
    )
    for r in results:
        reactions = r["tracking"]["reactions"]
        reaction = (
            f"{percentile(reactions, 0.5):.0f} / {percentile(reactions, 0.99):.0f} / {reactions[-1]:.0f}"
            if reactions else "–"
        )
        print(
            window_cells(r)
            + f"| {r['raw_mean']:.2f} / {r['raw_max']} "
            f"| {r['sipp_cpu_pct']:.0f}% | {r['tracking']['verified']}/{r['calls']} | {reaction} "
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
        details = window_details(
            r,
            after_threads="; ",
            outcome=(
                f"ended by the server {r['server_ended']}, by the caller {r['caller_ended']}; "
                f"flow failures logged {r['flow_failures']}, media timeouts {r['media_timeouts']}; "
            ),
            captures=(
                f"the two tcpdumps {r['tcpdump_cpu_pct']:.0f}% CPU, window capture {r['capture']['captured']} "
                f"(kernel dropped {r['capture']['dropped']}), tracking capture {r['tracking_capture']['captured']} "
                f"(dropped {r['tracking_capture']['dropped']})"
            ),
        )
        print(
            f"\n{r['calls']} IVR calls (each {r['hold']:.0f} s: category menu {timeline.menu:.2f} s, "
            f"round of bulletin + menu {timeline.cycle:.2f} s, keys {timeline.keys}): {details}"
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
            print_profile(r["profile"])
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
    add_load_options(parser, default_calls=[100, 250, 500])
    parser.add_argument("--bulletin-seconds", type=float, default=6.0, help="length of the bulletin the calls hear")
    parser.add_argument("--tone", action="store_true",
                        help="also run concurrent_calls.py's tone calls at each size, for comparison")
    add_profile_options(parser)
    parser.add_argument("--profile-native", action="store_true",
                        help="py-spy --native: C frames too (garbage collection, the interpreter, system calls)")
    add_machine_options(parser, keep_profile_help="copy py-spy's raw output here ({n}: ivrN or N for tone calls)")
    parser.add_argument("--keep-scratch", action="store_true",
                        help="leave the scratch directory (configs, captures, pcaps, logs) in place")
    args = parser.parse_args()
    check_options(parser, args, why_root="tcpdump captures, SIPp's play_pcap_audio uses a raw socket")
    args.dtmf_calls = 0  # For concurrent_calls.run_size (--tone): DTMF is in every IVR call here.
    results, tone = [], []
    try:
        with bench_run("callcenter-ivr-", keep_scratch=args.keep_scratch) as (children, scratch):
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
    finally:
        if results:
            print_table(results)
            if tone:
                print_tone_table(list(zip(results, tone)))
            print_details(results, tone)


if __name__ == "__main__":
    main()
