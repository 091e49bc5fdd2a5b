"""
The RADIUS listeners in one process, for quick iterations on the packet
path (run by hand, not by pytest):

    .venv/bin/python bench/radius_protocol.py [--count N] [--rounds N]
        [--policy real|instant] [--transport socket|null] [--users N]
        [--accounting [--sink keep|deferred]] [--profile FILE]

Access-Requests as radclient sends them in bench/radius_vs_freeradius.py
(PAP, NAS-IP-Address, NAS-Port, Calling-Station-Id, Message-Authenticator;
distinct packets) go to AuthenticationProtocol:

- --transport socket (the default): over real UDP sockets on 127.0.0.1,
  sent in batches from a client socket, read by the listening Port's own
  doRead and answered through its socket, as the reactor would; only the
  CPU spent in doRead is counted, so the kernel's receive and send are in
  the figure and the client's are not.  --transport null: handed to
  datagramReceived, answers dropped.
- --policy real (the default): the product's AccessPolicy and
  AccountDirectory over a SQLite store of --users internet accounts,
  warmed up (every password verified once, then remembered) as in the
  steady state the full bench measures.  The account states expire after
  --account-ttl seconds (an hour by default): the store here answers at
  once, so each user missed is read on its own, where the server's store
  (in a thread) reads those missed meanwhile together; the full bench has
  the server's account_cache_seconds.  --policy instant: a policy
  answering at once.

--accounting sends Interim-Updates to AccountingProtocol with a sink that
keeps nothing instead, told of each record as AccountingSink.keep is (--sink
keep, the default) or answering with a Deferred (--sink deferred).  --profile FILE runs one round under cProfile.
"""

import argparse
import cProfile
import ipaddress
import os
import pstats
import socket
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests", "radius"), os.path.join(REPO, "tests")]

from pyrad.packet import AcctPacket, AuthPacket  # noqa: E402
from twisted.internet import defer, reactor  # noqa: E402

from callcenter.radius.clients import RadiusClient, RadiusClients  # noqa: E402
from callcenter.radius.dictionary import load_dictionary  # noqa: E402
from callcenter.radius.model import AccessDecision  # noqa: E402
from callcenter.radius.protocol import AccountingProtocol, AuthenticationProtocol  # noqa: E402

SECRET = b"bench-secret"
BATCH = 200  # datagrams sent before the listener reads them: well within its receive buffer


class InstantPolicy:
    decision = AccessDecision(True, session_timeout=3600, idle_timeout=600, reply_message="Welcome")

    def authenticate(self, request):
        return defer.succeed(self.decision)


class InstantSink:
    def record(self, record):
        return defer.succeed(None)


class InstantKeepingSink(InstantSink):
    def keep(self, record, done, context):
        done([], context)


class NullTransport:
    def write(self, data, address):
        pass


class WallClock:
    seconds = staticmethod(time.time)


def real_policy(users, ttl, scratch):
    """AccessPolicy over SQLite with C{users} accounts, every password verified once."""
    from argon2 import PasswordHasher

    from callcenter import passwords
    from callcenter.radius import accounts
    from callcenter.radius.directory import AccountDirectory
    from callcenter.radius.model import AccessRequest
    from callcenter.radius.policy import AccessPolicy
    from callcenter.store.database import Database
    from internet_helpers import CountingStore, add_investor

    # The real cost would take minutes to set up; remembered passwords never reach argon2.
    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    database = Database(f"sqlite:///{scratch}/bench.sqlite")
    database.open()
    database.transaction(accounts.add_tier, "basic", 30 * 3600, 600, 1)
    for n in range(users):
        add_investor(database, f"2{n:07d}")
        database.transaction(
            accounts.open_account, f"2{n:07d}", f"user{n}", passwords.hash_password(f"password{n}"), "basic"
        )
    clock = WallClock()
    store = CountingStore(database)
    directory = AccountDirectory(store, clock, ttl=ttl)
    policy = AccessPolicy(store, clock, lambda f, *args: defer.succeed(f(*args)), directory, credential_ttl=3600)
    for n in range(users):
        policy.authenticate(AccessRequest("bench", f"user{n}", "pap", password=f"password{n}".encode()))
    return policy, store


def requests(n, users, accounting, dictionary):
    out = []
    for i in range(n):
        if accounting:
            pkt = AcctPacket(secret=SECRET, dict=dictionary, id=i % 256)
            pkt["Acct-Status-Type"] = "Interim-Update"
            pkt["Acct-Session-Id"] = f"s{i:08d}"
            pkt["User-Name"] = f"user{i % users}"
            pkt["NAS-IP-Address"] = "10.0.0.1"
            pkt["Acct-Input-Octets"] = i
            pkt["Acct-Output-Octets"] = 2 * i
            pkt["Acct-Session-Time"] = 60
            pkt["Event-Timestamp"] = 1_700_000_000
        else:
            pkt = AuthPacket(secret=SECRET, dict=dictionary, id=i % 256)
            pkt.authenticator = pkt.CreateAuthenticator()
            pkt["User-Name"] = f"user{i % users}"
            pkt["User-Password"] = pkt.PwCrypt(f"password{i % users}")
            pkt["NAS-IP-Address"] = "127.0.0.1"
            pkt["NAS-Port"] = i
            pkt["Calling-Station-Id"] = f"02-00-{i >> 8 & 0xFF:02X}-{i & 0xFF:02X}"
            pkt.add_message_authenticator()
        out.append(pkt.RequestPacket())
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--policy", choices=("real", "instant"), default="real")
    parser.add_argument("--transport", choices=("socket", "null"), default="socket")
    parser.add_argument("--account-ttl", type=float, default=3600.0, help="account_cache_seconds")
    parser.add_argument("--accounting", action="store_true")
    parser.add_argument("--sink", choices=("keep", "deferred"), default="keep")
    parser.add_argument("--profile", metavar="FILE", help="one round under cProfile, its stats kept in FILE")
    args = parser.parse_args()

    dictionary = load_dictionary()
    clients = RadiusClients([
        RadiusClient("bench", ipaddress.ip_network("127.0.0.0/8"), SECRET, rate=1e9, burst=10**9)
    ])
    scratch = tempfile.TemporaryDirectory()
    store = None
    if args.accounting:
        sink = InstantKeepingSink() if args.sink == "keep" else InstantSink()
        protocol = AccountingProtocol(clients, sink, reactor, dictionary=dictionary)
    else:
        if args.policy == "real":
            policy, store = real_policy(args.users, args.account_ttl, scratch.name)
        else:
            policy = InstantPolicy()
        protocol = AuthenticationProtocol(clients, policy, reactor, dictionary=dictionary)
    load = requests(args.count, args.users, args.accounting, dictionary)

    if args.transport == "socket":
        port = reactor.listenUDP(0, protocol, interface="127.0.0.1")  # read by hand below, not by the reactor
        server = ("127.0.0.1", port.getHost().port)
        nas = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        nas.bind(("127.0.0.1", 0))
        nas.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        nas.setblocking(False)
        answers = [0]

        def run():
            """CPU seconds spent reading and answering (the NAS's sends and receives left out)."""
            spent = 0.0
            for start in range(0, len(load), BATCH):
                for data in load[start:start + BATCH]:
                    nas.sendto(data, server)
                before = time.process_time()
                port.doRead()
                spent += time.process_time() - before
                while True:
                    try:
                        nas.recv(4096)
                    except BlockingIOError:
                        break
                    answers[0] += 1
            return spent
    else:
        protocol.makeConnection(NullTransport())
        receive = protocol.datagramReceived
        address = ("127.0.0.1", 40000)

        def run():
            before = time.process_time()
            for data in load:
                receive(data, address)
            return time.process_time() - before

    outcome = "accounted" if args.accounting else "accept"
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run)
        profiler.dump_stats(args.profile)
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)
    else:
        best = None
        for round_ in range(args.rounds):
            protocol.duplicates = type(protocol.duplicates)(reactor)  # distinct packets again
            transactions = None if store is None else store.transactions
            cpu = run()
            best = cpu if best is None else min(best, cpu)
            reads = "" if store is None else f"; {store.transactions - transactions} store reads"
            print(f"round {round_ + 1}: {args.count / cpu:,.0f} requests/s of CPU "
                  f"({cpu / args.count * 1e6:.1f} µs each{reads})")
        print(f"best: {args.count / best:,.0f} requests/s ({best / args.count * 1e6:.1f} µs each)")
    counted = protocol.metrics.value(protocol.listener, outcome)
    expected = args.count * (1 if args.profile else args.rounds)
    print(f"{outcome}: {counted:.0f} of {expected}" + (f", {answers[0]} answers received"
                                                        if args.transport == "socket" else ""))
    scratch.cleanup()


if __name__ == "__main__":
    main()
