"""
Micro-benchmarks of the RADIUS policy side, without packets (run by hand,
not by pytest):

    .venv/bin/python bench/radius_policy.py [--users N] [--requests N] [--records N]

- access: L{AccessPolicy.authenticate} for users whose state and password
  are remembered (after a first pass that verified every password with
  argon2): decisions a second on one core, the reactor not running, as the
  protocol calls it from a datagram.
- accounting: L{AccountingSink.record} through a started StoreService on
  SQLite (its thread, group commit, fsync per commit), with C{--in-flight}
  records outstanding: Start, then Interim-Updates, of distinct sessions.
"""

import argparse
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tests' helpers make the accounts: tests/radius/internet_helpers.py.
sys.path[:0] = [os.path.join(REPO, "tests", "radius"), os.path.join(REPO, "tests")]


def _setup(database, users):
    from callcenter.passwords import hash_password
    from callcenter.radius import accounts
    from internet_helpers import add_investor

    database.transaction(accounts.add_tier, "basic", 30 * 3600, 600, 1)
    password_hash = hash_password("surf-2026")
    for n in range(users):
        add_investor(database, f"2{n:07d}")
        database.transaction(accounts.open_account, f"2{n:07d}", f"user{n}", password_hash, "basic")


class WallClock:
    seconds = staticmethod(time.time)


def access(database, users, requests):
    from twisted.internet import defer

    from callcenter.radius.directory import AccountDirectory
    from callcenter.radius.model import AccessRequest
    from callcenter.radius.policy import AccessPolicy
    from internet_helpers import CountingStore

    store = CountingStore(database)
    clock = WallClock()
    directory = AccountDirectory(store, clock, ttl=3600)
    policy = AccessPolicy(store, clock, lambda f, *args: defer.succeed(f(*args)), directory)
    batch = [AccessRequest("bras-1", f"user{n}", "pap", password=b"surf-2026", nas_ip="10.0.0.1")
             for n in range(users)]
    accepted = []
    for request in batch:
        policy.authenticate(request).addCallback(lambda d: accepted.append(d.accepted))
    assert all(accepted) and len(accepted) == users
    before = store.transactions
    decisions = []
    started = time.perf_counter()
    for n in range(requests):
        policy.authenticate(batch[n % users]).addCallback(decisions.append)
    elapsed = time.perf_counter() - started
    assert len(decisions) == requests and all(d.accepted for d in decisions) and store.transactions == before
    print(f"access (cache hits, one core): {requests / elapsed:,.0f} Access-Requests/s "
          f"({elapsed / requests * 1e6:.1f} µs each; {users} users, {requests} requests)")


def accounting(url, users, records, in_flight):
    from twisted.internet import defer, task

    from callcenter.config import StorageConfig
    from callcenter.metrics import Metrics
    from callcenter.radius.accounting import AccountingSink
    from callcenter.radius.model import INTERIM_UPDATE, START, AccountingRecord
    from callcenter.store.service import StoreService

    def stream():
        for n in range(records):
            session, round_ = n % users, n // users
            status = START if round_ == 0 else INTERIM_UPDATE
            yield AccountingRecord("bras-1", status, f"s{session}", f"user{session}", session_time=60 * round_,
                                   input_octets=1000 * round_, output_octets=5000 * round_)

    @defer.inlineCallbacks
    def run(reactor):
        store = StoreService(StorageConfig(url=url), reactor, Metrics())
        store.privilegedStartService()
        store.startService()
        sink = AccountingSink(store, reactor)
        pending = stream()

        @defer.inlineCallbacks
        def worker():
            for record in pending:
                yield sink.record(record)

        started = time.perf_counter()
        yield defer.gatherResults([worker() for _ in range(in_flight)])
        elapsed = time.perf_counter() - started
        yield store.stopService()
        print(f"accounting (SQLite, durable, {in_flight} in flight): {records / elapsed:,.0f} Accounting-Requests/s "
              f"({records} records of {users} sessions)")

    task.react(run)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=500_000)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--in-flight", type=int, default=200)
    args = parser.parse_args()

    from argon2 import PasswordHasher

    from callcenter import passwords
    from callcenter.store.database import Database

    # Setting up thousands of accounts at argon2's real cost would take
    # minutes; cache hits never reach argon2.
    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{directory}/bench.sqlite"
        database = Database(url)
        database.open()
        _setup(database, args.users)
        access(database, args.users, args.requests)
        database.close()
        accounting(url, args.users, args.records, args.in_flight)


if __name__ == "__main__":
    main()
