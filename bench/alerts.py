"""
Price alert evaluation speed: an AlertIndex of 1,000,000 rules over the
instruments of etc/instruments.csv, fed random-walk ticks as fast as one
process can.

    .venv/bin/python bench/alerts.py [--rules 1000000] [--seconds 5] [--seed 1] [--profile]

Rules are a mix of the four kinds and three rearm policies; rising rules
sit above the previous close and falling ones below, up to 10% away (the
main board's limit), as investors set them.  Ticks come from RandomWalkFeed
driven by a Clock, made ahead of the timed loops.  Prints ticks evaluated
and rules fired per second, µs per tick (mean and p99, timed one by one on
separate ticks), and the memory (RSS) the index adds.  --profile runs
cProfile over a timed loop and prints the top functions.
"""

import argparse
import cProfile
import csv
import os
import pstats
import random
import sys
import time
from decimal import Decimal

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from twisted.internet.task import Clock

from callcenter.trading.alerts import AlertIndex, AlertRule
from callcenter.trading.instruments import Instrument
from callcenter.trading.marketdata import RandomWalkFeed

INSTRUMENTS_CSV = os.path.join(os.path.dirname(__file__), "..", "etc", "instruments.csv")
KINDS = ("price_above", "price_below", "change_up", "change_down")
POLICIES = ("once",) * 5 + ("daily",) * 3 + ("recross",) * 2
CHUNK = 100_000


def load_instruments(path):
    with open(path, newline="", encoding="utf-8") as lines:
        return [
            Instrument(
                code=row["code"],
                exchange=row["exchange"],
                name_zh=row["name_zh"],
                name_en=row["name_en"],
                board=row["board"],
                prev_close_fen=int(Decimal(row["prev_close"]) * 100),
                is_st=row["is_st"] == "true",
                lot_size=int(row["lot_size"]),
            )
            for row in csv.DictReader(lines)
        ]


def make_rules(count, instruments, rng):
    accounts = [f"3100{n:08d}" for n in range(count // 10 + 1)]
    rules = []
    for rule_id in range(1, count + 1):
        instrument = rng.choice(instruments)
        kind = rng.choice(KINDS)
        basis_points = rng.randint(10, 1000)
        if kind.startswith("change"):
            threshold = basis_points
        else:
            sign = 1 if kind == "price_above" else -1
            threshold = instrument.prev_close_fen * (10000 + sign * basis_points) // 10000
        rules.append(AlertRule(rule_id, rng.choice(accounts), instrument.code, instrument.exchange, kind,
                               threshold, rng.choice(POLICIES)))
    return rules


def resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class TickSource:
    """Random-walk ticks, made in chunks outside the timed loops."""

    def __init__(self, instruments, seed):
        self._clock = Clock()
        self._ticks = []
        self._feed = RandomWalkFeed(self._clock, instruments, seed)
        self._feed.subscribe(self._ticks.append)
        self._feed.startService()

    def chunk(self, size=CHUNK):
        while len(self._ticks) < size:
            self._clock.advance(1.0)
        chunk, self._ticks[:] = self._ticks[:size], self._ticks[size:]
        return chunk


def evaluate(index, ticks):
    on_tick = index.on_tick
    fired = 0
    for tick in ticks:
        fired += len(on_tick(tick))
    return fired


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--rules", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    options = parser.parse_args()

    instruments = load_instruments(INSTRUMENTS_CSV)
    rng = random.Random(options.seed)
    prev_close_of = {(i.code, i.exchange): i.prev_close_fen for i in instruments}
    before = resident_bytes()
    rules = make_rules(options.rules, instruments, rng)
    started = time.perf_counter()
    index = AlertIndex()
    for rule in rules:
        index.add(rule, prev_close_of[(rule.code, rule.exchange)])
    built = time.perf_counter() - started
    del rules
    index_bytes = resident_bytes() - before
    print(f"{options.rules:,} rules over {len(instruments)} instruments, added in {built:.1f} s "
          f"({options.rules / built:,.0f} adds/s); index RSS {index_bytes / 2**20:,.0f} MiB "
          f"({index_bytes / options.rules:.0f} bytes per rule, the rules included)")

    source = TickSource(instruments, options.seed)
    ticks = fired = 0
    elapsed = 0.0
    while elapsed < options.seconds:
        chunk = source.chunk()
        started = time.perf_counter()
        fired += evaluate(index, chunk)
        elapsed += time.perf_counter() - started
        ticks += len(chunk)
    print(f"{ticks:,} ticks in {elapsed:.2f} s: {ticks / elapsed:,.0f} ticks/s, "
          f"{fired:,} rules fired ({fired / elapsed:,.0f}/s); {index.rule_count:,} rules still armed")

    chunk = source.chunk()
    on_tick, clock = index.on_tick, time.perf_counter_ns
    latencies = []
    for tick in chunk:
        started = clock()
        on_tick(tick)
        latencies.append(clock() - started)
    latencies.sort()
    mean = sum(latencies) / len(latencies) / 1000
    p99 = latencies[len(latencies) * 99 // 100] / 1000
    print(f"µs per tick, {len(chunk):,} timed one by one: mean {mean:.2f}, p99 {p99:.2f}, "
          f"max {latencies[-1] / 1000:.0f}")

    if options.profile:
        chunk = source.chunk()
        profiler = cProfile.Profile()
        profiler.runcall(evaluate, index, chunk)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
