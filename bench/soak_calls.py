"""
Memory over a long run of calls: does the server give back what each call
took?  SIPp's built-in uac scenario (INVITE, 100, 200, ACK, a hold without
RTP, BYE, 200) calls the echo-test number CALLS times at RATE calls/s, at
most LIMIT at once.  Every 1,000 completed calls the server's resident set
(VmRSS) and its /health counts of live calls and transactions are sampled;
then, once SIPp is done, again after the drain (the last transactions wait
out Timers J and L, 64*T1 = 32 s, before they go: wait until the count is 0,
at most 40 s).

    .venv/bin/python bench/soak_calls.py [--calls 20000] [--rate 120] [--limit 400]
        [--hold-ms 1000] [--bound-mib 8] [--per-call 1000]

Exits 1 if the RSS after the drain exceeds the RSS at half the calls by
more than --bound-mib.  The first half is the warm-up: besides imports and
caches, the heap grows until 32 s of finished transactions are held at
once and the collector (gen0 every 50,000 allocations, see
callcenter/tap.py) has gone round its generations; that took some 12,000
calls at 120/s.  The default 8 MiB is under 1 KiB per call over the
second 10,000 calls: a per-call leak of that size fails the run.

With --per-call N, a second phase, on a fresh server, holds N calls up at once (20 s each,
under the 30 s media timeout) and reports the RSS they add, per call.
Results go in docs/performance.md.
"""

import argparse
import csv
import glob
import os
import subprocess
import sys
import tempfile
import time

from _server import bench_server, free_port

DRAIN_SECONDS = 40


def sipp_uac(scratch, port, calls, rate, limit, hold_ms):
    """SIPp's uac against the echo number, in the background, stats to a CSV every second."""
    return subprocess.Popen(
        [
            "sipp", f"127.0.0.1:{port}", "-sn", "uac", "-s", "9196",
            "-r", str(rate), "-l", str(limit), "-m", str(calls), "-d", str(hold_ms),
            "-i", "127.0.0.1", "-mi", "127.0.0.1", "-bind_local", "-ci", "127.0.0.1",
            "-nostdin", "-p", str(free_port()), "-timeout", "900", "-buff_size", "4194304",
            "-trace_stat", "-fd", "1",
        ],
        cwd=scratch,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def sipp_counts(scratch):
    """(successful, failed, retransmissions) from the last line of SIPp's stat CSV, or None."""
    files = glob.glob(os.path.join(scratch, "uac_*_.csv"))
    if not files:
        return None
    with open(files[0]) as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    if not rows:
        return None
    last = rows[-1]
    return int(last["SuccessfulCall(C)"]), int(last["FailedCall(C)"]), int(last["Retransmissions(C)"])


def sample(server, label, rows, completed):
    health = server.health()
    row = (label, completed, server.rss_kib(), health["calls"], health["transactions"])
    rows.append(row)
    print(f"{row[0]:>10} {row[1]:>8} {row[2] / 1024:>9.1f} {row[3]:>6} {row[4]:>13}", flush=True)
    return row


def soak(server, scratch, args):
    print(f"{'sample':>10} {'calls':>8} {'RSS MiB':>9} {'live':>6} {'transactions':>13}")
    rows = []
    sample(server, "start", rows, 0)
    sipp = sipp_uac(scratch, server.udp, args.calls, args.rate, args.limit, args.hold_ms)
    started = time.monotonic()
    next_mark = 1000
    counts = (0, 0, 0)
    # SIPp rewrites its CSV once a second: poll it at that pace.
    while sipp.poll() is None:
        counts = sipp_counts(scratch) or counts
        done = counts[0] + counts[1]
        while done >= next_mark and next_mark <= args.calls:
            sample(server, f"{next_mark}", rows, done)
            next_mark += 1000
        time.sleep(0.25)
    wall = time.monotonic() - started
    counts = sipp_counts(scratch) or counts
    done = counts[0] + counts[1]
    if next_mark <= args.calls:
        sample(server, "sipp done", rows, done)
    deadline = time.monotonic() + DRAIN_SECONDS
    while server.health()["transactions"] and time.monotonic() < deadline:
        time.sleep(0.5)
    drained = sample(server, "drained", rows, done)
    print(
        f"SIPp: {counts[0]} successful, {counts[1]} failed, {counts[2]} retransmissions, "
        f"{done / wall:.0f} calls/s over {wall:.0f} s (exit {sipp.returncode})"
    )
    half = str(args.calls // 2 // 1000 * 1000)
    warm = next((row for row in rows if row[0] == half), rows[0])
    growth = (drained[2] - warm[2]) / 1024
    print(f"RSS after the drain vs at {warm[0]} calls: {growth:+.1f} MiB (bound {args.bound_mib} MiB)")
    return counts, growth


def per_call_memory(server, scratch, calls):
    """RSS added by C{calls} calls held up at once, and the live count it was read at."""
    before = server.rss_kib()
    sipp = sipp_uac(scratch, server.udp, calls, 200, calls, 20000)
    peak = (0, before)
    # The calls ramp up for calls/200 s and each is held 20 s: read the RSS
    # at the highest live count seen while SIPp runs.
    while sipp.poll() is None:
        live = server.health()["calls"]
        if live >= peak[0]:
            peak = (live, server.rss_kib())
        time.sleep(0.5)
    live, rss = peak
    print(
        f"{live} calls up at once: RSS {before / 1024:.1f} -> {rss / 1024:.1f} MiB, "
        f"{(rss - before) / max(live, 1):.1f} KiB per call"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rate", type=int, default=120)
    parser.add_argument("--limit", type=int, default=400)
    parser.add_argument("--hold-ms", type=int, default=1000)
    parser.add_argument("--bound-mib", type=float, default=8.0)
    parser.add_argument("--per-call", type=int, default=0, metavar="N")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        with bench_server(scratch) as server:
            counts, growth = soak(server, scratch, args)
    if args.per_call:
        # A fresh server: after the soak its heap has room for them already
        # (measured: +0.0 KiB per call), which says nothing about their cost.
        with tempfile.TemporaryDirectory() as scratch:
            with bench_server(scratch) as server:
                per_call_memory(server, scratch, args.per_call)
    if counts[1] or growth > args.bound_mib:
        sys.exit(1)


if __name__ == "__main__":
    main()
