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
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _rtp  # noqa: E402
from _machine import (  # noqa: E402
    Children, MachineLoad, cpu_ns, cpu_ticks, interrupt_on_sigterm, log, rss_kb, sipp_stats, thread_count,
    top_functions, wait_for_quiet, wait_until,
)
from _rtp import MediaSink, raw_udp_sockets, socket_drops, tcpdump_counts  # noqa: E402
from _server import BIN, bench_server, free_port, live_calls, media_stats  # noqa: E402

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
SETTLE_SECONDS = 3.0
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


def analyse_capture(path):
    """Our streams (server to SIPp's echo port), SIPp's echoes, and the echo delay."""
    return _rtp.analyse_capture(path, RTP_PORTS, SIPP_MEDIA_PORT)


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
    with MediaSink(SIPP_MEDIA_PORT), bench_server(
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
                [os.path.join(BIN, "py-spy"), "record", "--function", "-r", "100",
                 # ivr_sessions.py --tone --profile-native (which cannot be --nonblocking)
                 *(["--native"] if getattr(args, "profile_native", False) else ["--nonblocking"]),
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
