"""
From a price tick to the alerts' submit_sm, through the whole server: a
burst of --alerts price alerts (10,000) firing on one tick, each to an
investor subscribed to alerts by SMS, sent to the node SMSC
(tests/notify/smsc/smsc.js, npm's ``smpp``, installed by ``make test``).
Target (issue 7): p99 < 1 s.

    .venv/bin/python bench/alert_burst.py [--alerts 10000] [--window 100] [--runs 3] [--receipt-delay MS] [--postgres]

Each run: a fresh store (an SQLite file, WAL, synchronous=FULL; or with
--postgres a database on a throwaway PostgreSQL server from
tests/postgres.py, fsync on) with the demo data, --alerts
investors (fund accounts) each with an SMS subscription to alerts and a
``price_above`` rule on 600519 below the burst price, so that one tick
fires them all; a ``twistd callcenter`` with [trading] replaying a
two-tick file (the first tick at start, under every threshold; the
second --delay s later, over all of them) and [notify.sms] to the SMSC
(window --window, no rate limit).  The tick's moment is the server's own
log line "N price alerts fired on 600519" (JSON log, millisecond time,
written right after the rules are evaluated); each alert's moment is when
the SMSC logged its submit_sm (node's Date.now(), the same clock).  So a
latency covers: publishing the events, rendering 10,000 texts, storing
the messages durably (group commit), the workers' window and the SMPP
link, up to the SMSC's socket.  Receipts are on: the SMSC sends one per
message --receipt-delay ms after accepting it (3 s by default: a real SMSC
reports a handset's delivery seconds later), or with 0 at once, into the
burst, where handling 10,000 deliver_sm competes with the sending.

Printed per run: the burst size, latency p50/p90/p99/max, the time until
the last submit_sm and until every message is "delivered" in the store,
and the server's CPU over the burst.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "notify"))

import sqlalchemy as sa  # noqa: E402

from _machine import cpu_ns, log, top_functions, wait_for_quiet  # noqa: E402
from callcenter.demo import load_demo  # noqa: E402
from callcenter.store.database import Database  # noqa: E402
from callcenter.store.schema import alert_rules, customers, fund_accounts, notify_messages, notify_subscriptions  # noqa: E402
from processes import ServerProcess, write_config  # noqa: E402
from smsc_peer import SMSCProcess  # noqa: E402

BIN = os.path.dirname(sys.executable)
ETC = os.path.join(ROOT, "etc")
CODE, EXCHANGE = "600519", "SSE"
START_PRICE, BURST_PRICE = "1400.00", "1500.00"
PASSWORD = "bench"


def seed(url, alerts):
    database = Database(url)
    database.open()
    load_demo(database, ETC)

    def add(connection):
        rows = []
        for n in range(alerts):
            rows.append({"branch_code": "0101", "name_zh": f"投资者{n}", "language": "zh"})
        ids = connection.execute(customers.insert().returning(customers.c.id, sort_by_parameter_order=True), rows).scalars().all()
        accounts = [f"5{n:09d}" for n in range(alerts)]
        connection.execute(fund_accounts.insert(), [
            {"account_no": account, "customer_id": customer, "password_hash": "x"} for account, customer in zip(accounts, ids)
        ])
        connection.execute(notify_subscriptions.insert(), [
            {"fund_account_no": account, "channel": "sms", "address": f"+86139{n:08d}", "events": "alert", "language": "zh"}
            for n, account in enumerate(accounts)
        ])
        # Thresholds spread between the two ticks: every rule fires on the second.
        connection.execute(alert_rules.insert(), [
            {"fund_account_no": account, "code": CODE, "exchange": EXCHANGE, "kind": "price_above",
             "threshold": 140100 + n % 9800, "rearm": "once"}
            for n, account in enumerate(accounts)
        ])

    database.transaction(add)
    return database


def replay_file(path, delay):
    with open(path, "w") as f:
        f.write("time,code,exchange,last,bid,ask,bid_size,ask_size,volume\n")
        f.write(f"0,{CODE},{EXCHANGE},{START_PRICE},1399.99,1400.01,100,100,100\n")
        f.write(f"{delay},{CODE},{EXCHANGE},{BURST_PRICE},1499.99,1500.01,100,100,200\n")


def fired_at(log_path):
    with open(log_path, encoding="utf-8") as f:
        for line in f:
            if "price alerts fired on" in line:
                record = json.loads(line)
                return datetime.datetime.fromisoformat(record["time"]).timestamp(), record
    return None, None


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run_once(args, scratch, number):
    if args.postgres:
        from postgres import PostgresServer, create_database

        if not hasattr(run_once, "postgres"):
            run_once.postgres = PostgresServer()
            run_once.postgres.start()
        url = create_database(run_once.postgres.url)
    else:
        url = f"sqlite:///{scratch}/run{number}.sqlite"
    seeded = time.monotonic()
    database = seed(url, args.alerts)
    log(f"run {number}: store seeded with {args.alerts} investors, subscriptions and rules in {time.monotonic() - seeded:.1f} s")
    smsc_log = os.path.join(scratch, f"smsc{number}.log")
    smsc = SMSCProcess("bench", PASSWORD, log_path=smsc_log, receipt_delay_ms=args.receipt_delay).start()
    replay = os.path.join(scratch, "burst.csv")
    replay_file(replay, args.delay)
    server_log = os.path.join(scratch, f"server{number}.log")
    config = write_config(os.path.join(scratch, "callcenter.toml"), {
        "server": {"node": "bench"},
        "storage": {"url": url},
        "log": {"format": "json", "file": server_log, "level": "info"},
        "web": {"listen": "tcp:0:interface=127.0.0.1"},
        "trading": {"clock": "simulated", "after_hours": "queue", "holidays": os.path.join(ETC, "holidays.txt"),
                    "replay_file": replay},
        "notify": {"templates": os.path.join(ETC, "notify", "templates"),
                   "sms": {"smsc": f"127.0.0.1:{smsc.port}", "system_id": "bench", "password_env": "BENCH_SMPP_PASSWORD",
                           "window": args.window}},
    })
    server = ServerProcess([os.path.join(BIN, "twistd"), "--pidfile=", "-n", "callcenter", "--config", config],
                           extra_env={"BENCH_SMPP_PASSWORD": PASSWORD})
    spy = None
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
        raw = os.path.join(args.profile, f"burst{number}.txt")
        spy = subprocess.Popen([os.path.join(BIN, "py-spy"), "record", "--nonblocking", "-r", "200", "-f", "raw",
                                "-o", raw, "-d", str(int(args.delay + 15)), "-p", str(server.process.pid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + args.delay + 60
        fired = None
        while time.monotonic() < deadline and fired is None:
            time.sleep(0.05)
            if os.path.exists(server_log):
                fired, record = fired_at(server_log)
            if server.process.poll() is not None:
                server.finish()
                with open(server_log) if os.path.exists(server_log) else open(os.devnull) as f:
                    tail = f.read()[-3000:]
                raise RuntimeError(f"the server ended: {server.output[-2000:]}{tail}")
        if fired is None:
            raise RuntimeError("no burst within the replay's delay + 60 s")
        cpu_before = cpu_ns(server.process.pid)
        at_fire = time.monotonic()
        while time.monotonic() < at_fire + 120:
            submits = smsc.submits()
            if len(submits) >= args.alerts:
                break
            time.sleep(0.05)
        sent_all = time.monotonic()
        cpu_burst = (cpu_ns(server.process.pid) - cpu_before) / 1e9
        latencies = [s["received_at"] / 1000 - fired for s in submits]
        while time.monotonic() < sent_all + 120:
            delivered = database.transaction(lambda c: c.execute(
                sa.select(sa.func.count()).select_from(notify_messages).where(notify_messages.c.state == "delivered")
            ).scalar())
            if delivered >= args.alerts:
                break
            time.sleep(0.2)
        all_delivered = time.monotonic()
    finally:
        if spy is not None:
            spy.wait()
            total, own, inclusive = top_functions(raw, 20)
            log(f"py-spy, {total} samples (the burst; idle waits left out)")
            for frame, n in own:
                print(f"  own {100 * n / total:5.1f}%  {frame}")
            for frame, n in inclusive:
                print(f"  inc {100 * n / total:5.1f}%  {frame}")
        server.kill()
        smsc.stop()
        database.close()
    return {
        "fired": record.get("count"),
        "submits": len(submits),
        "first": min(latencies), "p50": percentile(latencies, 50), "p90": percentile(latencies, 90), "p99": percentile(latencies, 99),
        "max": max(latencies),
        "delivered": delivered, "delivered_after": all_delivered - at_fire,
        "cpu": cpu_burst, "burst_wall": sent_all - at_fire,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--delay", type=float, default=15.0, help="seconds from the first tick to the burst")
    parser.add_argument("--receipt-delay", type=int, default=3000, metavar="MS",
                        help="the SMSC sends each receipt this long after accepting the message, as a real one "
                             "reports the handset's delivery (default 3000; 0: at once, into the burst)")
    parser.add_argument("--postgres", action="store_true", help="the store on PostgreSQL (a throwaway server, fsync on)")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the server through the burst, samples kept in DIR")
    parser.add_argument("--quiet", type=float, default=15.0)
    parser.add_argument("--quiet-wait", type=float, default=120.0)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="alert-burst-") as scratch:
        for number in range(1, args.runs + 1):
            wait_for_quiet(args.quiet, args.quiet_wait, set())
            result = run_once(args, scratch, number)
            results.append(result)
            log(f"run {number}: {result['fired']} fired, {result['submits']} submit_sm; latency p50 {result['p50'] * 1000:.0f} ms, "
                f"p90 {result['p90'] * 1000:.0f}, p99 {result['p99'] * 1000:.0f}, max {result['max'] * 1000:.0f}; "
                f"{result['delivered']} delivered in the store; server CPU {result['cpu']:.2f} s")
    print()
    if args.postgres and hasattr(run_once, "postgres"):
        run_once.postgres.stop()
    store = "PostgreSQL" if args.postgres else "SQLite"
    print(f"{args.alerts} alerts in one tick, SMS window {args.window}, store {store}, receipts after "
          f"{args.receipt_delay} ms, {args.runs} runs")
    print("| run | fired | submit_sm | first ms | p50 ms | p90 ms | p99 ms | max ms | all delivered after s | server CPU s | target p99 < 1 s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for number, r in enumerate(results, 1):
        print(f"| {number} | {r['fired']} | {r['submits']} | {r['first'] * 1000:.0f} | {r['p50'] * 1000:.0f} | {r['p90'] * 1000:.0f} | "
              f"{r['p99'] * 1000:.0f} | {r['max'] * 1000:.0f} | {r['delivered_after']:.1f} ({r['delivered']}) | {r['cpu']:.2f} | "
              f"{'met' if r['p99'] < 1 and r['submits'] >= args.alerts else 'not met'} |")
    if len(results) > 1:
        print(f"median p99 {statistics.median(r['p99'] for r in results) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
