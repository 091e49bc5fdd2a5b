"""
Call setups per second through the whole server: SIPp's built-in uac
scenario (INVITE -> 100 -> 200 -> ACK, a pause, BYE -> 200) against the echo
test number, at a given offered rate.  Prints what SIPp achieved and what
the server's process spent.

    .venv/bin/python bench/call_setup.py [--rate 300] [--calls 6000] [--hold-ms 1000]

The bench source is in trusted_networks: the per-source flood guard (50
requests/s) would otherwise throttle the load generator, as it should a
scanner.  Results go in docs/performance.md.
"""

import argparse
import csv
import os
import re
import subprocess
import tempfile
import time

from _server import bench_server, free_port


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=300)
    parser.add_argument("--calls", type=int, default=6000)
    parser.add_argument("--hold-ms", type=int, default=1000)
    args = parser.parse_args()

    # Logging at info, as in production: its cost is part of a call's.
    with tempfile.TemporaryDirectory() as scratch, bench_server(scratch) as server:
        before, started = server.cpu_seconds(), time.monotonic()
        subprocess.run(
            [
                "sipp", f"127.0.0.1:{server.udp}", "-sn", "uac", "-s", "9196",
                "-r", str(args.rate), "-m", str(args.calls), "-d", str(args.hold_ms),
                "-i", "127.0.0.1", "-mi", "127.0.0.1", "-bind_local", "-ci", "127.0.0.1",
                "-nostdin", "-p", str(free_port()), "-timeout", "300", "-buff_size", "4194304",
                "-trace_stat", "-fd", "1",
            ],
            cwd=scratch,
            capture_output=True,
            timeout=600,
        )
        wall, cpu = time.monotonic() - started, server.cpu_seconds() - before
        [stat_file] = [name for name in os.listdir(scratch) if re.match(r"uac_\d+_\.csv$", name)]
        with open(os.path.join(scratch, stat_file)) as f:
            last = list(csv.DictReader(f, delimiter=";"))[-1]

    calls = int(last["SuccessfulCall(C)"])
    elapsed = wall - args.hold_ms / 1000  # the last calls' hold is not setup work
    print(f"offered {args.rate} calls/s, {args.calls} calls of {args.hold_ms} ms")
    print(f"successful {calls}, failed {last['FailedCall(C)']}, retransmissions {last['Retransmissions(C)']}")
    print(f"completed {calls / elapsed:.0f} calls/s; server CPU {100 * cpu / wall:.0f}% of one core")


if __name__ == "__main__":
    main()
