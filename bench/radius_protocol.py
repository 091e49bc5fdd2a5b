"""
The RADIUS protocol layer alone: distinct PAP Access-Requests (signed, as
radtest sends them) fed to AuthenticationProtocol.datagramReceived with an
instant policy and a transport that drops what it is given.

    .venv/bin/python bench/radius_protocol.py [--profile] [--count N] [--accounting]

The whole path on real sockets, side by side with FreeRADIUS, is still to be written (issue 6).
"""

import argparse
import cProfile
import ipaddress
import pstats
import time

from pyrad.packet import AcctPacket, AuthPacket
from twisted.internet import defer, reactor

from callcenter.radius.clients import RadiusClient, RadiusClients
from callcenter.radius.dictionary import load_dictionary
from callcenter.radius.model import AccessDecision
from callcenter.radius.protocol import AuthenticationProtocol, AccountingProtocol

parser = argparse.ArgumentParser()
parser.add_argument("--count", type=int, default=100_000)
parser.add_argument("--profile", action="store_true")
parser.add_argument("--accounting", action="store_true")
parser.add_argument("--rounds", type=int, default=5)
args = parser.parse_args()

SECRET = b"bench-secret"
dictionary = load_dictionary()
clients = RadiusClients([RadiusClient("bench", ipaddress.ip_network("127.0.0.0/8"), SECRET, rate=1e9, burst=10**9)])
ACCEPT = defer.succeed(None)

class InstantPolicy:
    decision = AccessDecision(True, session_timeout=3600, idle_timeout=600, reply_message="Welcome")
    def authenticate(self, request):
        return defer.succeed(self.decision)

class InstantSink:
    def record(self, record):
        return defer.succeed(None)

class NullTransport:
    def write(self, data, address):
        pass

def requests(n):
    out = []
    for i in range(n):
        if args.accounting:
            pkt = AcctPacket(secret=SECRET, dict=dictionary, id=i % 256)
            pkt["Acct-Status-Type"] = "Interim-Update"
            pkt["Acct-Session-Id"] = f"s{i:08d}"
            pkt["User-Name"] = f"user{i % 1000}"
            pkt["NAS-IP-Address"] = "10.0.0.1"
            pkt["Acct-Input-Octets"] = i
            pkt["Acct-Output-Octets"] = 2 * i
            pkt["Acct-Session-Time"] = 60
            pkt["Event-Timestamp"] = 1_700_000_000
        else:
            pkt = AuthPacket(secret=SECRET, dict=dictionary, id=i % 256)
            pkt["User-Name"] = f"user{i % 1000}"
            pkt["User-Password"] = pkt.PwCrypt(f"password{i % 1000}")
            pkt["NAS-IP-Address"] = "10.0.0.1"
            pkt["NAS-Port"] = i % 65536
            pkt.add_message_authenticator()
        out.append((pkt.RequestPacket(), ("127.0.0.1", 10000 + i % 50000)))
    return out

load = requests(args.count)
if args.accounting:
    protocol = AccountingProtocol(clients, InstantSink(), reactor, dictionary=dictionary)
else:
    protocol = AuthenticationProtocol(clients, InstantPolicy(), reactor, dictionary=dictionary)
protocol.transport = NullTransport()
receive = protocol.datagramReceived

def run():
    for data, address in load:
        receive(data, address)

if args.profile:
    cProfile.run("run()", "/tmp/rb/protocol.prof")
    pstats.Stats("/tmp/rb/protocol.prof").sort_stats("tottime").print_stats(20)
else:
    best = None
    for round in range(args.rounds):
        protocol.duplicates = type(protocol.duplicates)(reactor)
        start, cpu = time.perf_counter(), time.process_time()
        run()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        best = cpu if best is None else min(best, cpu)
        print(f"round {round + 1}: {args.count / cpu:,.0f} requests/s of CPU ({cpu / args.count * 1e6:.1f} us each; wall {elapsed:.2f} s)")
    print(f"best: {args.count / best:,.0f} requests/s ({best / args.count * 1e6:.1f} us each)")
answered = protocol.metrics.value(protocol.listener, "accept" if not args.accounting else "accounted")
print("answered", answered)
