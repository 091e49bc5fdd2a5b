"""
The server as the benches run it: a child ``twistd callcenter`` on
ephemeral ports with a throwaway SQLite store, the load generator's source
trusted (else the per-source flood guard throttles it, as it should a
scanner), logging at info as in production.
"""

import contextlib
import json
import os
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from postgres import free_port  # noqa: E402,F401 (re-exported for the benches)
from processes import ServerProcess, get_json, write_config  # noqa: E402,F401

BIN = os.path.dirname(sys.executable)


class BenchServer:
    def __init__(self, process):
        self.process = process
        self.pid = process.process.pid
        self.udp = int(process.wait_for(r"SIP/UDP listening on 127\.0\.0\.1:(\d+)").group(1))
        self.http = process.http_port()

    def health(self):
        """The telephony subsystem's /health counts."""
        status, body = get_json(self.http, "/health")
        return body["subsystems"]["telephony"]

    def rss_kib(self):
        """Resident set size, from /proc/PID/status (VmRSS, in KiB)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_database_url(scratch):
    """The store of the server L{bench_server} starts in C{scratch}: fill it before, if need be."""
    return f"sqlite:///{scratch}/bench.sqlite"


@contextlib.contextmanager
def bench_server(scratch, routes=None, extra_tables=None, **telephony):
    """
    A started server in C{scratch}, killed on exit; C{extra_tables}
    ({table: {key: value}}) are added to its configuration, e.g. [ivr].
    """
    config = write_config(
        os.path.join(scratch, "callcenter.toml"),
        {
            "storage": {"url": bench_database_url(scratch)},
            "telephony": {
                "udp": "127.0.0.1:0",
                "tcp": "tcp:0:interface=127.0.0.1",
                "trusted_networks": ["127.0.0.0/8"],
                "routes": routes or {"9196": "echo"},
                **telephony,
            },
            "web": {"listen": "tcp:0:interface=127.0.0.1"},
            **(extra_tables or {}),
        },
    )
    process = ServerProcess([os.path.join(BIN, "twistd"), "--pidfile=", "-n", "callcenter", "--config", config])
    try:
        yield BenchServer(process)
    finally:
        process.kill()


# What the server says about itself while a bench runs.


def telephony_health(server):
    """The telephony subsystem's /health details; None when it does not answer within 10 s."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.http}/health", timeout=10) as r:
            return json.loads(r.read())["subsystems"]["telephony"]
    except (OSError, ValueError, KeyError):
        return None


def live_calls(server):
    health = telephony_health(server)
    return None if health is None else health["calls"]


def media_stats(server):
    """The media engine's counters (ticks, late/skipped ticks, packets) from /health."""
    health = telephony_health(server) or {}
    return health.get("media") or {}
