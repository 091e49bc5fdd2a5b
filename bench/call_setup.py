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
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from postgres import free_port  # noqa: E402
from processes import ServerProcess, write_config  # noqa: E402

BIN = os.path.dirname(sys.executable)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=300)
    parser.add_argument("--calls", type=int, default=6000)
    parser.add_argument("--hold-ms", type=int, default=1000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        config = write_config(
            os.path.join(scratch, "callcenter.toml"),
            {
                "storage": {"url": f"sqlite:///{scratch}/bench.sqlite"},
                "telephony": {
                    "udp": "127.0.0.1:0",
                    "tcp": "tcp:0:interface=127.0.0.1",
                    "trusted_networks": ["127.0.0.0/8"],
                    "routes": {"9196": "echo"},
                },
            },
        )
        # Logging at info, as in production: its cost is part of a call's.
        server = ServerProcess([os.path.join(BIN, "twistd"), "--pidfile=", "-n", "callcenter", "--config", config])
        try:
            port = int(server.wait_for(r"SIP/UDP listening on 127\.0\.0\.1:(\d+)").group(1))
            pid = server.process.pid
            before, started = cpu_seconds(pid), time.monotonic()
            subprocess.run(
                [
                    "sipp", f"127.0.0.1:{port}", "-sn", "uac", "-s", "9196",
                    "-r", str(args.rate), "-m", str(args.calls), "-d", str(args.hold_ms),
                    "-i", "127.0.0.1", "-mi", "127.0.0.1", "-bind_local", "-ci", "127.0.0.1",
                    "-nostdin", "-p", str(free_port()), "-timeout", "300", "-buff_size", "4194304",
                    "-trace_stat", "-fd", "1",
                ],
                cwd=scratch,
                capture_output=True,
                timeout=600,
            )
            wall, cpu = time.monotonic() - started, cpu_seconds(pid) - before
            [stat_file] = [name for name in os.listdir(scratch) if re.match(r"uac_\d+_\.csv$", name)]
            with open(os.path.join(scratch, stat_file)) as f:
                last = list(csv.DictReader(f, delimiter=";"))[-1]
        finally:
            server.kill()

    calls = int(last["SuccessfulCall(C)"])
    elapsed = wall - args.hold_ms / 1000  # the last calls' hold is not setup work
    print(f"offered {args.rate} calls/s, {args.calls} calls of {args.hold_ms} ms")
    print(f"successful {calls}, failed {last['FailedCall(C)']}, retransmissions {last['Retransmissions(C)']}")
    print(f"completed {calls / elapsed:.0f} calls/s; server CPU {100 * cpu / wall:.0f}% of one core")


if __name__ == "__main__":
    main()
