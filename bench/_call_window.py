"""
One size of the SIPp call benches (concurrent_calls.py, ivr_sessions.py)
measured: the idle server, then a window of --window s with the calls
held (waiting for a quiet machine before each), py-spy after it, the
server's log and the capture read back; the options that steer this, the
media target, and the columns and details every bench reports.
"""

import math
import os
import shutil
import signal
import subprocess
import time

import _rtp
from _machine import (
    MachineLoad, cpu_ns, cpu_ticks, load_cpus, log, rss_kb, thread_count, top_functions, wait_for_quiet,
    with_children,
)
from _rtp import socket_drops, start_capture, tcpdump_counts
from _server import BIN, live_calls, media_stats
from _sipp import MAX_CALLS, RTP_PORTS, SIPP_MEDIA_PORT

MEDIA_COUNTERS = ("ticks", "late_ticks", "skipped_ticks", "packets_sent", "packets_received")


# The options.


def add_load_options(parser, default_calls):
    parser.add_argument("--calls", type=int, nargs="+", default=default_calls)
    parser.add_argument("--rate", type=float, default=50, help="new calls per second while ramping up")
    parser.add_argument("--window", type=float, default=5.0, help="seconds measured at steady state")


def add_profile_options(parser):
    parser.add_argument("--profile", type=float, default=0, help="seconds of py-spy after the window")
    parser.add_argument("--profile-at", type=int, nargs="*", default=None,
                        help="sizes to profile (default: all, when --profile is given)")


def add_machine_options(parser, keep_profile_help):
    parser.add_argument("--pin", action="store_true", help="server on CPU 0; SIPp and tcpdump on CPU 1")
    parser.add_argument("--quiet", type=float, default=15,
                        help="wait until other processes use under this %% of a core ...")
    parser.add_argument("--quiet-wait", type=float, default=180,
                        help="... for at most this many seconds before starting each size's calls")
    parser.add_argument("--window-wait", type=float, default=30,
                        help="... and at most this many seconds again just before the window (calls held)")
    parser.add_argument("--keep-profile", help=keep_profile_help)
    parser.add_argument("--keep-logs", help="copy the server's and SIPp's logs to this directory")


def check_options(parser, args, why_root):
    """The sizes within the RTP port range, SIPp and tcpdump installed, root; sets C{args.profile_for(size)}."""
    args.profile_for = lambda n: (
        args.profile if args.profile and (args.profile_at is None or n in args.profile_at) else 0
    )
    if max(args.calls) > MAX_CALLS:
        parser.error(f"at most {MAX_CALLS} calls (the RTP port range)")
    for tool in ("sipp", "tcpdump"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found (apt-get install sip-tester tcpdump)")
    if os.geteuid() != 0:
        raise SystemExit(f"needs root: {why_root}")


# The measurements.


def measure_idle(server, args):
    """
    With --pin the server on the first core; after waiting for a quiet
    machine (--quiet-wait), the idle server's CPU and RSS.  Returns (the
    result's fields, the RSS in KiB).
    """
    pid = server.pid
    if args.pin:
        os.sched_setaffinity(pid, {0})
    waited, _ = wait_for_quiet(args.quiet, args.quiet_wait, {*with_children(pid), os.getpid()})
    # Idle: the engine's clock runs with no session.
    time.sleep(1)
    rss_idle, cpu_before, started = rss_kb(pid), cpu_ns(pid), time.monotonic()
    time.sleep(2)
    idle_cpu_pct = 100 * (cpu_ns(pid) - cpu_before) / 1e9 / (time.monotonic() - started)
    return {"waited_before": waited, "idle_cpu_pct": idle_cpu_pct, "rss_idle_mb": rss_idle / 1024}, rss_idle


def measure_window(server, load, children, args, directory, label, rss_idle, captures=(), spend_window=None):
    """
    With the calls of C{load} (a L{CallLoad}) held: after waiting again
    for a quiet machine (--window-wait), tcpdump of every stream into
    rtp.pcap and, over --window s, the server's CPU (and its kernel share)
    and RSS, the media engine's counters, the kernel's drops on the
    server's RTP sockets and on SIPp's echo socket, SIPp's and the
    captures' CPU (C{captures}: other tcpdumps running meanwhile), and the
    rest of the machine.  C{spend_window(seconds)}, when given, spends the
    window instead of a sleep and returns more fields.  Returns (the
    result's fields, the capture's path).
    """
    pid = server.pid
    fields = {}
    ours = {*with_children(pid), load.pid, os.getpid(), *(capture.pid for capture in captures)}
    if args.window_wait:
        fields["waited_window"], _ = wait_for_quiet(args.quiet, args.window_wait, ours)

    capture = os.path.join(directory, "rtp.pcap")
    capture_log = os.path.join(directory, "tcpdump.log")
    tcpdump = start_capture(
        children, capture, "udp and portrange {}-{} and port {}".format(*RTP_PORTS, SIPP_MEDIA_PORT), capture_log,
        ("-s", "64", "-B", "65536"), cpus=load_cpus(args),
    )
    captures = (tcpdump, *captures)
    ours.add(tcpdump.pid)
    held_before = live_calls(server) or 0
    media_before, media_started = media_stats(server), time.monotonic()
    drops_before, echo_drops_before = socket_drops(RTP_PORTS), socket_drops((SIPP_MEDIA_PORT,) * 2)
    ticks_before = cpu_ticks(pid)
    cpu_before, sipp_before = cpu_ns(pid), cpu_ns(load.pid)
    dump_before = sum(cpu_ns(capture.pid) for capture in captures)
    machine = MachineLoad(ours)
    started = time.monotonic()
    if spend_window is None:
        time.sleep(args.window)
    else:
        fields.update(spend_window(args.window))
    elapsed = time.monotonic() - started
    cpu = (cpu_ns(pid) - cpu_before) / 1e9
    sipp_cpu = (cpu_ns(load.pid) - sipp_before) / 1e9
    dump_cpu = (sum(cpu_ns(capture.pid) for capture in captures) - dump_before) / 1e9
    ticks_after = cpu_ticks(pid)
    machine.finish()
    drops = socket_drops(RTP_PORTS) - drops_before
    echo_drops = socket_drops((SIPP_MEDIA_PORT,) * 2) - echo_drops_before
    media_after, media_seconds = media_stats(server), time.monotonic() - media_started
    rss, threads, sipp_threads = rss_kb(pid), thread_count(pid), thread_count(load.pid)
    held_after = live_calls(server) or 0
    children.stop(tcpdump, signal.SIGINT)
    log(f"{label}: window done; {machine.describe()}")

    user, system = (after - before for after, before in zip(ticks_after, ticks_before))
    fields.update(
        held=min(held_before, held_after),
        cpu_pct=100 * cpu / elapsed,
        kernel_share=system / (user + system) if user + system else float("nan"),
        sipp_cpu_pct=100 * sipp_cpu / elapsed,
        tcpdump_cpu_pct=100 * dump_cpu / elapsed,
        machine=machine,
        media={key: media_after.get(key, 0) - media_before.get(key, 0) for key in MEDIA_COUNTERS},
        media_seconds=media_seconds,
        media_sessions=media_after.get("sessions"),
        rss_mb=rss / 1024,
        per_call_us=1e6 * cpu / elapsed / max(1, held_before),
        per_call_kb=(rss - rss_idle) / max(1, held_before),
        socket_drops=drops,
        echo_drops=echo_drops,
        threads=threads,
        sipp_threads=sipp_threads,
        capture=tcpdump_counts(capture_log),
    )
    return fields, capture


def profile_server(server, args, calls, directory, label, keep_as):
    """
    After the window, at the sizes --profile-at: py-spy's samples of the
    server for --profile s by function (L{top_functions}), else None; with
    --keep-profile its raw output kept, {n} standing for C{keep_as}.
    """
    if not args.profile_for(calls):
        return None
    raw = os.path.join(directory, "profile.txt")
    log(f"{label}: py-spy for {args.profile} s")
    subprocess.run(
        # --native pauses the server for each sample (py-spy cannot read C
        # stacks without stopping it), so never during the window, and
        # cannot be --nonblocking.
        [os.path.join(BIN, "py-spy"), "record", "--function", "-r", "100",
         *(["--native"] if getattr(args, "profile_native", False) else ["--nonblocking"]),
         "-d", str(math.ceil(args.profile)), "-f", "raw", "-o", raw, "-p", str(server.pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
        timeout=args.profile + 30,
    )
    if args.keep_profile:
        shutil.copy(raw, args.keep_profile.replace("{n}", keep_as))
    return top_functions(raw)


def keep_server_log(server, directory, args, others, prefix):
    """
    The server's log, written to server.log; with --keep-logs it and
    C{others} (files in C{directory}) are copied there as C{prefix}_name.
    """
    output = server.process.output
    with open(os.path.join(directory, "server.log"), "w") as f:
        f.write(output)
    if args.keep_logs:
        os.makedirs(args.keep_logs, exist_ok=True)
        for name in ("server.log", *others):
            if os.path.exists(os.path.join(directory, name)):
                shutil.copy(os.path.join(directory, name), os.path.join(args.keep_logs, f"{prefix}_{name}"))
    return output


def engine_warnings(output):
    """What the server's log says of the media engine's trouble."""
    return {
        "send_error_sessions": output.count("RTP send from port"),
        "clock_warnings": output.count("ticks behind: skipping ticks"),
    }


def analyse_window_capture(capture, talkspurts=False):
    """The window's capture read back (L{_rtp.analyse_capture}), then removed: it is large."""
    analysed = _rtp.analyse_capture(capture, RTP_PORTS, SIPP_MEDIA_PORT, talkspurts=talkspurts)
    os.remove(capture)
    return analysed


# The report.


def meets_media_target(r):
    """Every call held, none failed, nothing lost or dropped, no tick skipped, the interval p99 15-25 ms."""
    server = r["server"]
    return (
        r["held"] == r["calls"]
        and r["failed"] == 0
        and server["lost"] == 0
        and r["socket_drops"] == 0
        and r["media"]["skipped_ticks"] == 0
        and 15 <= server["p99"] <= 25
    )


# The table's first columns, which every bench has; window_cells fills them.
WINDOW_COLUMNS = (
    "| calls | held / failed | load avg, others' CPU in window | server CPU (kernel) | per call µs/s "
    "| RSS MB | ticks late / skipped | engine sent / received pkt/s | ours mean interval ms "
    "| ours p1/p50/p99/max ms | ours >25 ms | ours loss | in drops "
)


def print_table_header(header):
    print(header)
    print("|" + "|".join("---:" for _ in range(header.count("|") - 1)) + "|")


def window_cells(r):
    s, m, t = r["server"], r["media"], r["media_seconds"]
    return (
        f"| {r['calls']} | {r['held']} / {r['failed']} "
        f"| {r['machine'].loadavg:.2f}, {r['machine'].others_pct:.0f}% "
        f"| {r['cpu_pct']:.0f}% ({100 * r['kernel_share']:.0f}%) | {r['per_call_us']:.0f} | {r['rss_mb']:.0f} "
        f"| {m['late_ticks']} / {m['skipped_ticks']} of {m['ticks']} "
        f"| {m['packets_sent'] / t:,.0f} / {m['packets_received'] / t:,.0f} | {s['mean']:.2f} "
        f"| {s['p1']:.1f} / {s['p50']:.1f} / {s['p99']:.1f} / {s['max']:.0f} | {s['over_25']:.2f}% "
        f"| {s['loss_pct']:.3f}% | {r['socket_drops']} "
    )


def window_details(r, after_threads, outcome, captures):
    """
    The details every bench gives of a size, with its own: C{after_threads}
    (the separator, or more on the processes), C{outcome} (after SIPp's
    count) and C{captures} (tcpdump's).
    """
    return (
        f"idle server {r['idle_cpu_pct']:.1f}% CPU, "
        f"RSS {r['rss_idle_mb']:.0f} MB idle; {r['threads']} server threads; SIPp {r['sipp_threads']} threads"
        f"{after_threads}"
        f"SIPp successful {r['successful']}, failed {r['failed']}, exit {r['sipp_status']}; "
        f"{outcome}"
        f"waited {r['waited_before']:.0f} s before the calls and {r.get('waited_window', 0):.0f} s before "
        f"the window for a quiet machine; during it: {r['machine'].describe()}; "
        f"{captures}; engine sessions {r['media_sessions']}; "
        f"sessions that logged a send error: {r['send_error_sessions']}; "
        f"'skipping ticks' warnings: {r['clock_warnings']}; drops on SIPp's echo socket {r['echo_drops']}"
    )
