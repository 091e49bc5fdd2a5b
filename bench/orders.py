"""
Orders per second through the whole trading path, in process: the rules,
cash or shares frozen and the order booked in one durable transaction (the
acknowledgement), then the simulated exchange's book and the fills booked
back.  Against the store's bare durable commits of the same size in the
same run, so the ratio says what the trading logic costs on top of the
database.

    .venv/bin/python bench/orders.py [--orders 3000] [--concurrency 32]
        [--postgres-url URL | --postgres] [--profile]

SQLite (WAL, synchronous=FULL) in a temporary directory by default;
--postgres starts a throwaway server the way the tests do.  Investors are
600 accounts with cash and holdings over the instrument master
(etc/instruments.csv); each order is a buy or a sell at the quote, so most
fill at once.  --profile runs cProfile over the placing phase and prints
the top functions.  Results go in docs/performance.md.
"""

import argparse
import cProfile
import datetime
import os
import pstats
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import sqlalchemy as sa  # noqa: E402
from twisted.internet import defer, task  # noqa: E402

from callcenter.config import StorageConfig  # noqa: E402
from callcenter.demo import INSTRUMENT_HEADER, _instrument, _read  # noqa: E402
from callcenter.events import InProcessEventBus  # noqa: E402
from callcenter.metrics import Metrics  # noqa: E402
from callcenter.store.schema import branches, customers, fund_accounts, instruments, positions  # noqa: E402
from callcenter.store.service import StoreService  # noqa: E402
from callcenter.trading.accounts import Logins  # noqa: E402
from callcenter.trading.calendar import CHINA_STANDARD_TIME, TradingCalendar  # noqa: E402
from callcenter.trading.clock import FixedTradingClock  # noqa: E402
from callcenter.trading.events import OrderFilled  # noqa: E402
from callcenter.trading.exchange import SimulatedExchange  # noqa: E402
from callcenter.trading.fees import FeeSchedule  # noqa: E402
from callcenter.trading.marketdata import RandomWalkFeed  # noqa: E402
from callcenter.trading.model import BUY, SELL, Origin  # noqa: E402
from callcenter.trading.reasons import TradingRefused  # noqa: E402
from callcenter.trading.service import TradingService  # noqa: E402

ETC = os.path.join(os.path.dirname(__file__), "..", "etc")
ACCOUNTS = 600
WEB = Origin("web", caller="127.0.0.1")


def seed(connection, listed):
    connection.execute(branches.insert().values(code="0101", name_zh="总部", name_en="HQ", city="Shenzhen"))
    connection.execute(instruments.insert(), listed)
    for n in range(ACCOUNTS):
        customer = connection.execute(customers.insert().values(branch_code="0101", name_zh="投资者")).inserted_primary_key[0]
        connection.execute(fund_accounts.insert().values(
            account_no=f"B{n:07d}", customer_id=customer, cash_available_fen=10**11, password_hash="-"))
    connection.execute(positions.insert(), [
        dict(fund_account_no=f"B{n:07d}", code=row["code"], exchange=row["exchange"], quantity=10**7,
             cost_fen=10**9, trading_day="2000-01-03")
        for n in range(ACCOUNTS) for row in listed[:20]
    ])


def bare(connection, n):
    connection.execute(sa.text("INSERT INTO bench_bare (n, payload) VALUES (:n, :p)"), {"n": n, "p": "x" * 200})


@defer.inlineCallbacks
def run(reactor, options):
    if options.postgres or options.postgres_url:
        from postgres import PostgresServer, create_database

        server = None
        if not options.postgres_url:
            server = PostgresServer()
            server.start()
            options.postgres_url = server.url
        url = create_database(options.postgres_url)
    else:
        server = None
        url = f"sqlite:///{tempfile.mkdtemp(prefix='bench-orders-')}/callcenter.sqlite"
    store = StoreService(StorageConfig(url=url), reactor, Metrics())
    store.privilegedStartService()
    store.startService()
    listed = [_instrument(*line) for line in _read(os.path.join(ETC, "instruments.csv"), INSTRUMENT_HEADER, "code", "exchange")]
    yield store.transaction(seed, listed)
    yield store.transaction(lambda c: c.execute(sa.text(
        "CREATE TABLE bench_bare (n INTEGER PRIMARY KEY, payload VARCHAR(255))")))

    # The store alone: one durable single-row commit per "order".
    started = time.perf_counter()
    numbers = iter(range(options.orders))

    @defer.inlineCallbacks
    def bare_writer():
        for n in numbers:
            yield store.transaction(bare, n)

    yield defer.gatherResults([bare_writer() for _ in range(options.concurrency)])
    bare_rate = options.orders / (time.perf_counter() - started)

    bus = InProcessEventBus()
    fills = []
    bus.subscribe(OrderFilled, fills.append, "bench")
    trading_clock = FixedTradingClock(datetime.datetime(2026, 12, 1, 10, 0, tzinfo=CHINA_STANDARD_TIME))
    service = TradingService(
        store, bus, reactor, reactor, trading_clock, TradingCalendar(set()),
        lambda listed_: RandomWalkFeed(reactor, listed_, seed=1, interval=0.2, per_interval=50),
        lambda listed_, feed, phase_of: SimulatedExchange(reactor, feed, listed_, phase_of),
        FeeSchedule(), Logins(store, reactor, trading_clock.now),
    )
    service.startService()
    yield service.ready
    rng = random.Random(7)
    codes = [row["code"] for row in listed[:20]]
    refused = {}
    latencies = []
    count = iter(range(options.orders))

    @defer.inlineCallbacks
    def trader():
        for n in count:
            code = rng.choice(codes)
            quote = service.quote(code)
            side = BUY if n % 2 else SELL
            price = quote.tick.ask_fen if side == BUY else quote.tick.bid_fen
            began = time.perf_counter()
            try:
                yield service.place_order(f"B{n % ACCOUNTS:07d}", code, side, price, 100, WEB)
            except TradingRefused as refusal:
                refused[refusal.reason.code] = refused.get(refusal.reason.code, 0) + 1
            latencies.append(time.perf_counter() - began)

    profile = cProfile.Profile() if options.profile else None
    if profile:
        profile.enable()
    cpu = time.process_time()
    started = time.perf_counter()
    yield defer.gatherResults([trader() for _ in range(options.concurrency)])
    placed_in = time.perf_counter() - started
    yield service.flush()
    # Fills booked: wait until the exchange's reports have all reached the books.
    while True:
        before = len(fills)
        yield task.deferLater(reactor, 0.5, lambda: None)
        yield service.flush()
        if len(fills) == before:
            break
    settled_in = time.perf_counter() - started
    cpu = time.process_time() - cpu
    if profile:
        profile.disable()
    yield service.stopService()
    yield store.stopService()
    if server is not None:
        server.stop()

    latencies.sort()
    ok = options.orders - sum(refused.values())
    rate = options.orders / placed_in
    print(f"database: {'PostgreSQL' if server or options.postgres_url else 'SQLite (WAL, synchronous=FULL)'}; "
          f"{options.orders} orders, {options.concurrency} in flight")
    print(f"store alone, one durable commit each: {bare_rate:,.0f}/s")
    print(f"orders acknowledged (rules + freeze + booked durably): {rate:,.0f}/s "
          f"(ratio to bare commits {rate / bare_rate:.2f}); {ok} booked, refused {refused or 'none'}")
    print(f"acknowledgement latency p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms")
    print(f"fills booked: {len(fills)} in {settled_in:.1f} s from the first order; "
          f"CPU {cpu / settled_in * 100:.0f}% of one core, {cpu / options.orders * 1e6:.0f} us per order incl. its fills")
    if profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(25)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL")
    parser.add_argument("--postgres-url", help="an admin URL of a running PostgreSQL")
    parser.add_argument("--profile", action="store_true")
    options = parser.parse_args()
    task.react(lambda reactor: run(reactor, options))


if __name__ == "__main__":
    main()
