"""
Durable commits per second through the store (reactor -> thread pool ->
SQLAlchemy -> driver), against the same work done by the bare driver in a
loop: what the layer costs on top of the database's own fsync.

    .venv/bin/python bench/store_commits.py [--count 2000] [--postgres-url URL]

Without --postgres-url it starts a throwaway PostgreSQL server the way the
tests do.  Results go in docs/performance.md.
"""

import argparse
import os
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import sqlalchemy as sa  # noqa: E402
from twisted.internet import defer, task  # noqa: E402

from callcenter.config import StorageConfig  # noqa: E402
from callcenter.metrics import Metrics  # noqa: E402
from callcenter.store.service import StoreService  # noqa: E402

rows = sa.Table(
    "bench_rows",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("payload", sa.String(64), nullable=False),
)


def insert(connection, i):
    connection.execute(rows.insert(), {"id": i, "payload": f"order {i}"})


@defer.inlineCallbacks
def through_store(reactor, url, count, concurrency):
    service = StoreService(StorageConfig(url=url), reactor, Metrics())
    service.privilegedStartService()
    service.startService()
    yield service.transaction(lambda c: rows.create(c, checkfirst=True))
    next_id = iter(range(count))
    started = time.perf_counter()

    @defer.inlineCallbacks
    def writer():
        for i in next_id:
            yield service.transaction(insert, i)

    yield defer.gatherResults([writer() for _ in range(concurrency)])
    elapsed = time.perf_counter() - started
    yield service.stopService()
    return count / elapsed


def bare_sqlite(path, count):
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("CREATE TABLE bench_rows (id INTEGER PRIMARY KEY, payload VARCHAR(64) NOT NULL)")
    started = time.perf_counter()
    for i in range(count):
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO bench_rows (id, payload) VALUES (?, ?)", (i, f"order {i}"))
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    connection.close()
    return count / elapsed


def bare_postgresql(url, count):
    import psycopg

    with psycopg.connect(url) as connection:
        connection.execute("CREATE TABLE bench_rows (id INTEGER PRIMARY KEY, payload VARCHAR(64) NOT NULL)")
        connection.commit()
        started = time.perf_counter()
        for i in range(count):
            connection.execute("INSERT INTO bench_rows (id, payload) VALUES (%s, %s)", (i, f"order {i}"))
            connection.commit()
        return count / (time.perf_counter() - started)


@defer.inlineCallbacks
def main(reactor, argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--postgres-url")
    args = parser.parse_args(argv)

    from postgres import PostgresServer, create_database

    server = None
    admin_url = args.postgres_url
    if admin_url is None:
        server = PostgresServer()
        server.start()
        admin_url = server.url
    try:
        results = []
        with tempfile.TemporaryDirectory() as scratch:
            bare = bare_sqlite(os.path.join(scratch, "bare.sqlite"), args.count)
            ours = yield through_store(reactor, f"sqlite:///{scratch}/ours.sqlite", args.count, 1)
            results.append(("SQLite, 1 writer", ours, bare))
        bare = bare_postgresql(create_database(admin_url), args.count)
        ours = yield through_store(reactor, create_database(admin_url), args.count, 1)
        results.append(("PostgreSQL, 1 writer", ours, bare))
        ours = yield through_store(reactor, create_database(admin_url), args.count, 8)
        results.append(("PostgreSQL, 8 writers", ours, bare))
    finally:
        if server is not None:
            server.stop()

    print(f"{'workload':<24}{'store commits/s':>17}{'bare driver/s':>15}{'ratio':>8}")
    for name, ours, bare in results:
        print(f"{name:<24}{ours:>17.0f}{bare:>15.0f}{ours / bare:>8.2f}")


if __name__ == "__main__":
    task.react(main, [sys.argv[1:]])
