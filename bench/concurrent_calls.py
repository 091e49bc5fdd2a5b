"""
Concurrent calls through the whole server, driven by SIPp, with RTP both
ways: the telephony issue's concurrency target (at least 500 calls on this
2-core machine with no packet loss and the outgoing packet interval's p99
within 20 ms +- 5; the product's goal is 1,000).

    .venv/bin/python bench/concurrent_calls.py [--calls 250 500 750 1000] [--rate 50]
        [--window 5] [--profile 10 --profile-at 500] [--media-workers N [--media-worker-nice -10]]

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
calls).  With --media-workers N the server runs N media worker processes
([telephony] media_workers) that carry the calls' RTP: the server's CPU is
then the signalling's, each worker's is given apart, and the engine's
counters are summed over the workers.  Results go in docs/performance.md.
"""

import argparse
import math
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _call_window import (  # noqa: E402
    WINDOW_COLUMNS, add_load_options, add_machine_options, add_profile_options, analyse_window_capture,
    check_options, engine_warnings, keep_server_log, measure_idle, measure_window, meets_media_target,
    print_table_header, profile_server, window_cells, window_details,
)
from _machine import bench_run, cpu_ns, load_cpus, log, print_profile  # noqa: E402
from _rtp import raw_udp_sockets  # noqa: E402
from _server import free_port, telephony_health  # noqa: E402
from _sipp import (  # noqa: E402
    CallLoad, measured_seconds, scenario_call_set_up, scenario_caller_hangs_up, server_for_sipp, sipp_command,
)

TONE_NUMBER = "9197"
DTMF_NUMBER = "9198"
# The DTMF calls' media ports, away from SIPp's echo port (SIPP_MEDIA_PORT).
DTMF_MEDIA_PORT = 12000
CALLER = "1380013"
SCENARIOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "sip", "scenarios")
# 1 2 3 # as RFC 4733 events; the server hangs up on #.
DTMF_SCENARIO = os.path.join(SCENARIOS, "dtmf_call.xml")
DTMF_SECONDS = 20


def write_scenario(path, hold):
    """The scenario: call, hold the call C{hold} s (SIPp echoing the server's RTP), hang up."""
    with open(path, "w") as f:
        f.write(
            scenario_call_set_up("concurrent tone calls, RTP echoed", CALLER)
            + scenario_caller_hangs_up(hold * 1000, CALLER)
        )


# One size.


def run_size(calls, args, children, scratch):
    label = f"{calls} calls"
    ramp = calls / args.rate
    hold = math.ceil(measured_seconds(calls, args) + DTMF_SECONDS + 5)
    directory = os.path.join(scratch, f"n{calls}")
    os.mkdir(directory)
    scenario = os.path.join(directory, "tone_calls.xml")
    write_scenario(scenario, hold)

    result = {"calls": calls, "hold": hold}
    workers = {"media_workers": args.media_workers, "media_worker_nice": args.media_worker_nice} if args.media_workers else {}
    with server_for_sipp(directory, routes={TONE_NUMBER: "tone", DTMF_NUMBER: "dtmf"}, **workers) as server:
        idle, rss_idle = measure_idle(server, args)
        result.update(idle)
        load = CallLoad(children, args, server, directory, scenario, TONE_NUMBER, calls, timeout=hold + ramp + 120)
        log(f"{label}: SIPp started at {args.rate}/s, each held {hold} s")
        load.wait_until_up(server, args, label)
        window, capture = measure_window(
            server, load, children, args, directory, label, rss_idle,
            spend_window=media_workers_window(server) if args.media_workers else None,
        )
        result.update(window)
        result["raw_sockets"] = raw_udp_sockets()
        profile = profile_server(server, args, calls, directory, label, keep_as=str(calls))
        if profile is not None:
            result["profile"] = profile

        if args.dtmf_calls:
            log(f"{label}: {args.dtmf_calls} DTMF-test calls on top")
            dtmf = children.start(
                [
                    *load_cpus(args), *sipp_command(
                        server, DTMF_SCENARIO, DTMF_NUMBER, args.dtmf_calls, DTMF_MEDIA_PORT,
                        "-r", "5", "-cp", str(free_port()), "-timeout", str(DTMF_SECONDS - 2), "-timeout_error",
                    ),
                ],
                os.path.join(directory, "sipp_dtmf.log"),
                cwd=directory,
            )
            try:
                dtmf.wait(DTMF_SECONDS)
            except subprocess.TimeoutExpired:
                log(f"{label}: the DTMF calls did not finish")
            result["dtmf_status"] = children.stop(dtmf)

        log(f"{label}: waiting for SIPp to hang up")
        result["sipp_status"], result["successful"], result["failed"] = load.finish(
            children, hold + ramp + 60, label
        )

    output = keep_server_log(server, directory, args, ("sipp.log", "sipp_dtmf.log"), prefix=f"n{calls}")
    result["dtmf_ok"] = output.count("DTMF test: caller pressed 123")
    result.update(engine_warnings(output))

    log(f"{label}: reading the capture")
    result["server"], result["echo"], result["delay"] = analyse_window_capture(capture)
    return result


def media_workers_window(server):
    """
    The window spent measuring each media worker's CPU; after it, each
    worker's sessions and its late and skipped ticks since it started.
    """
    pids = [worker["pid"] for worker in telephony_health(server)["media"]["workers"]]

    def spend(seconds):
        before, started = [cpu_ns(pid) for pid in pids], time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - started
        cpu = [100 * (cpu_ns(pid) - was) / 1e9 / elapsed for pid, was in zip(pids, before)]
        workers = telephony_health(server)["media"]["workers"]
        return {"workers": [dict(worker, cpu_pct=pct) for worker, pct in zip(workers, cpu)]}

    return spend


def print_table(results):
    print_table_header(
        WINDOW_COLUMNS + "| echo delay p50/p99 ms, not returned | SIPp CPU | DTMF 123# | target |"
    )
    for r in results:
        d = r["delay"]
        dtmf = f"{r['dtmf_ok']}/{r.get('dtmf_calls', 0)}" if r.get("dtmf_calls") else "–"
        print(
            window_cells(r)
            + f"| {d['p50']:.2f} / {d['p99']:.1f}, {d['unanswered']} "
            f"| {r['sipp_cpu_pct']:.0f}% | {dtmf} | {'met' if meets_media_target(r) else 'not met'} |"
        )


def print_details(results):
    for r in results:
        s, e = r["server"], r["echo"]
        details = window_details(
            r,
            after_threads=f", {r['raw_sockets']} raw UDP sockets in the window; ",
            outcome=f"DTMF calls exit {r.get('dtmf_status')}, {r['dtmf_ok']} logged 123; ",
            captures=(
                f"tcpdump {r['tcpdump_cpu_pct']:.0f}% CPU, captured {r['capture']['captured']}, "
                f"kernel dropped {r['capture']['dropped']}"
            ),
        )
        print(f"\n{r['calls']} calls (held {r['hold']} s): {details}")
        print(
            f"  ours: {s['streams']} streams, {s['packets']} packets, {s['lost']} lost; "
            f"echoes: {e['streams']} streams, {e['packets']} packets, {e['lost']} lost, "
            f"mean {e['mean']:.2f} ms (ours {s['mean']:.2f}), p1/p50/p99/max {e['p1']:.1f} / {e['p50']:.1f} / {e['p99']:.1f} / {e['max']:.0f} ms; "
            f"echo delay max {r['delay']['max']:.1f} ms over {r['delay']['matched']} packets"
        )
        for worker in r.get("workers", ()):
            print(
                f"  media worker {worker['index']}: {worker['cpu_pct']:.0f}% CPU in the window, "
                f"{worker['sessions']} sessions, ticks late / skipped since it started "
                f"{worker['late_ticks']} / {worker['skipped_ticks']} of {worker['ticks']}"
            )
        if "profile" in r:
            print_profile(r["profile"])
    held = [r["calls"] for r in results if meets_media_target(r)]
    print(
        f"\ntarget (>= 500 calls, no loss, no skipped tick, p99 15-25 ms): "
        f"{'met' if any(n >= 500 for n in held) else 'not met'}; "
        f"sizes meeting it: {', '.join(map(str, held)) or 'none'}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_load_options(parser, default_calls=[250, 500, 750, 1000])
    add_profile_options(parser)
    parser.add_argument("--dtmf-calls", type=int, default=10,
                        help="DTMF-test calls made on top of the load after the window (0: none)")
    parser.add_argument("--media-workers", type=int, default=0,
                        help="media worker processes ([telephony] media_workers; 0: media in the server)")
    parser.add_argument("--media-worker-nice", type=int, default=0,
                        help="their priority ([telephony] media_worker_nice, -20 to 0)")
    add_machine_options(parser, keep_profile_help="copy py-spy's raw output here ({n}: the size)")
    args = parser.parse_args()
    check_options(parser, args, why_root="tcpdump captures, SIPp's play_pcap_audio (DTMF calls) uses a raw socket")

    results = []
    try:
        with bench_run("callcenter-concurrent-") as (children, scratch):
            for calls in args.calls:
                result = run_size(calls, args, children, scratch)
                result["dtmf_calls"] = args.dtmf_calls
                results.append(result)
    finally:
        if results:
            print_table(results)
            print_details(results)


if __name__ == "__main__":
    main()
