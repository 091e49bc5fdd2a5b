"""
Access-Requests/s and Accounting-Requests/s, side by side in one run: our
server (``twistd -n callcenter`` with the [radius] subsystem) and
FreeRADIUS 3.2 (Debian ``freeradius``), both driven by FreeRADIUS's own
radclient with the same files of distinct packets, on 127.0.0.1.

    .venv/bin/python bench/radius_vs_freeradius.py [--users 500] [--packets 50000]
        [--sessions 20000] [--runs 5] [--chunk 2500] [--database sqlite postgresql]
        [--only auth|acct] [--freeradius-accounting detail|null] [--no-freeradius-sql]
        [--profile DIR] [--keep]

The load is radclient ``-q -s -p 250 -f FILE`` (PEERS.md): one socket, 250
requests in flight, files of DISTINCT packets (a server answers repeated
identical packets from its duplicate cache).  A pass is --packets split
into files of --chunk (2,500) run one after another: radclient walks its
whole list of requests on every loop, so its own rate falls as the file
grows (measured here against FreeRADIUS: ~17,000/s with 2,500 packets a
file, ~11,000/s with 10,000, ~5,500/s with 50,000).  Requests/s is the
packets divided by radclient's wall time, from the first start to the last
exit (each start, ~15 ms, reads the dictionaries and the file: the same
for both servers); its -s summaries give accepted, rejected and lost.

The accounts.  Our server answers from ``internet_accounts`` rows made for
the run through the product's own functions (the demo data from
``etc/demo`` first, then --users investors, each with a fund account and an
internet account opened with L{callcenter.radius.accounts.open_account}, a
password of its own hashed with the product's argon2id settings, tier
"basic": 30 h a month, Idle-Timeout 600, one session at a time).  FreeRADIUS
has the same users and passwords in its ``files`` module
(``Cleartext-Password``), with the Session-Timeout, Idle-Timeout and
Reply-Message ours sends them.

Access-Requests: PAP with ``Message-Authenticator = 0x00`` (radclient
computes it; both servers require it from this client), each packet a user
with a different NAS-Port and Calling-Station-Id, --packets per pass.
First a warm-up pass for each server, one request per user: ours verifies
each password once with argon2 (a quarter of a second of CPU each here, in
threads) and then remembers it (``credential_cache_seconds``: an hour
here, 600 s by default) and the account's state (``account_cache_seconds``,
default 5 s: re-read from the store in batches while the bench runs); FreeRADIUS has no
such cost.  Then --runs measured passes each, alternating which server goes
first.

Accounting-Requests: --sessions distinct sessions per pass, all their
Starts, then all their Interim-Updates, then all their Stops (3 x
--sessions packets), new session ids in every pass.  Ours persists every
record (the session row, the month's usage) durably before it answers
(group commit: one transaction and one fsync per batch; SQLite WAL with
synchronous=FULL, or PostgreSQL with fsync on); FreeRADIUS writes each to
its ``detail`` file (appended, not fsynced) before answering, or with
--freeradius-accounting null answers without recording anything.  A
warm-up pass of a tenth of the sessions goes first.

Like for like, a second FreeRADIUS ("freeradius-sql", unless
--no-freeradius-sql) keeps accounting as a deployment that must not lose
it would: rlm_sql with Debian's queries for the phase's database
(radacct: an INSERT for a Start, an UPDATE for an Interim-Update or Stop,
each committed before the answer), after the acct_unique policy, its pool
of up to 32 connections; on SQLite a file in WAL mode with
synchronous=FULL (as ours), on PostgreSQL a database of its own on the
same server as ours (fsync on).  It keeps the session only, where ours
also adds up the month's usage.  It is measured in the accounting passes
alongside the others, and its radacct counted at the end of the phase.

--database: our server on SQLite (a file in the scratch directory) and/or on
PostgreSQL (a throwaway server started by tests/postgres.py, fsync on).
Each is its own server process, set up, warmed up and measured in turn,
with FreeRADIUS measured alongside in the same phase.  With --only acct no
Access-Request warm-up is made (accounting verifies no password).

Recorded with every pass: the server's CPU (every thread, from
/proc/PID/task/*/schedstat; for ours also the reactor thread apart from the
others: argon2 and the store run in threads), radclient's CPU (its
rusage), and the machine's load (/proc/loadavg, what other processes used
meanwhile: bench/_machine.py).  Before each pass the bench waits up to
--quiet-wait s for the rest of the machine to use under --quiet % of a
core.

--profile DIR: one more pass of each kind against ours (not counted) under
py-spy (250 Hz, --nonblocking: an auth pass lasts about a second), the raw
samples kept in DIR and the top functions printed.

Before the load, each server must accept the right password and reject a
wrong one, and after each of our passes the server's own counters
(/metrics) must agree with radclient's summary.  Everything started is
stopped by process id, and the scratch directory removed (unless --keep),
at the end, on an error, on Ctrl-C and on SIGTERM.
"""

import argparse
import concurrent.futures
import glob
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE, os.path.join(ROOT, "tests")]

from _machine import (  # noqa: E402
    Children, MachineLoad, cpu_ns, cpu_ticks, interrupt_on_sigterm, log, machine_busy, rss_kb, top_functions,
    wait_for_quiet,
)
from _server import BIN, ServerProcess, write_config  # noqa: E402

SECRET = "bench-" + secrets.token_hex(8)
SECRET_VARIABLE = "BENCH_RADIUS_SECRET"
FREERADIUS_CONFIG = "/etc/freeradius/3.0"
TIER = "basic"  # etc/demo/internet_tiers.csv: 30 h a month, Idle-Timeout 600, 1 session
SESSION_TIMEOUT, IDLE_TIMEOUT = 30 * 3600, 600
PARALLEL = 250  # radclient -p: one socket has 256 identifiers (PEERS.md)
FIRST_FUND_ACCOUNT = 90_000_000


# -- the users -----------------------------------------------------------------


def make_users(count):
    """(user name, password): the password random, as the investors' own are."""
    return [(f"bench{n:06d}", "p" + secrets.token_hex(8)) for n in range(count)]


def hash_passwords(users, cheap):
    """The argon2id hash of each password, with the product's settings unless C{cheap}."""
    from callcenter import passwords

    if cheap:
        from argon2 import PasswordHasher

        passwords._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    started = time.monotonic()
    # argon2-cffi releases the GIL: one thread per core.
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        hashes = list(pool.map(passwords.hash_password, [password for _, password in users]))
    log(f"{len(users)} passwords hashed ({hashes[0].split('$')[3]}) in {time.monotonic() - started:.0f} s")
    return hashes


def fill_store(url, users, hashes):
    """The demo data, then an investor with an internet account per user, as the product makes them."""
    import sqlalchemy as sa

    from callcenter.demo import load_demo
    from callcenter.radius import accounts
    from callcenter.store.database import Database
    from callcenter.store.schema import branches, customers, fund_accounts

    started = time.monotonic()
    database = Database(url)
    database.open()
    try:
        load_demo(database, os.path.join(ROOT, "etc"))

        def add(connection):
            branch = connection.execute(sa.select(branches.c.code).order_by(branches.c.code)).scalar()
            for n, ((username, _), password_hash) in enumerate(zip(users, hashes)):
                fund_account_no = str(FIRST_FUND_ACCOUNT + n)
                customer_id = connection.execute(
                    customers.insert().values(branch_code=branch, name_zh=f"测试{n}", language="zh")
                ).inserted_primary_key[0]
                # No trading password: these investors exist for their internet accounts.
                connection.execute(fund_accounts.insert().values(
                    account_no=fund_account_no, customer_id=customer_id, password_hash="!"
                ))
                accounts.open_account(connection, fund_account_no, username, password_hash, TIER)

        database.transaction(add)
        count = database.transaction(lambda c: c.execute(sa.text("SELECT count(*) FROM internet_accounts")).scalar())
    finally:
        database.close()
    log(f"store {url.split('://')[0]}: demo data and {len(users)} internet accounts "
        f"({count} in internet_accounts) in {time.monotonic() - started:.0f} s")


# -- packet files ----------------------------------------------------------------


def write_packets(path, packets):
    """radclient's -f format: attributes separated by commas, packets by a blank line."""
    with open(path, "w", encoding="utf-8") as f:
        for attributes in packets:
            f.write(", ".join(f"{name} = {value}" for name, value in attributes) + "\n\n")
    return path


def _mac(n):
    return "02-00-" + "-".join(f"{(n >> shift) & 0xFF:02X}" for shift in (24, 16, 8, 0))


def access_requests(users, count, offset=0):
    """C{count} PAP Access-Requests cycling through C{users}, each with its own NAS-Port and station."""
    for n in range(count):
        username, password = users[n % len(users)]
        yield [
            ("User-Name", f'"{username}"'),
            ("User-Password", f'"{password}"'),
            ("NAS-IP-Address", "127.0.0.1"),
            ("NAS-Port", offset + n),
            ("Calling-Station-Id", f'"{_mac(offset + n)}"'),
            ("Message-Authenticator", "0x00"),
        ]


def accounting_requests(users, sessions, prefix):
    """Start, then Interim-Update, then Stop of C{sessions} new sessions (ids C{prefix}-N)."""
    for status in ("Start", "Interim-Update", "Stop"):
        for n in range(sessions):
            username = users[n % len(users)][0]
            attributes = [
                ("Acct-Status-Type", status),
                ("Acct-Session-Id", f'"{prefix}-{n:07d}"'),
                ("User-Name", f'"{username}"'),
                ("NAS-IP-Address", "127.0.0.1"),
                ("NAS-Port", n),
                ("Framed-IP-Address", f"10.{(n >> 16) & 0xFF}.{(n >> 8) & 0xFF}.{n & 0xFF}"),
                ("Calling-Station-Id", f'"{_mac(n)}"'),
            ]
            if status != "Start":
                # Two minutes at most per session: far from the tier's 30 h,
                # so no Disconnect-Request is ever due.
                elapsed = 60 if status == "Interim-Update" else 120
                attributes += [
                    ("Acct-Session-Time", elapsed),
                    ("Acct-Input-Octets", 20_000 * elapsed + n),
                    ("Acct-Output-Octets", 90_000 * elapsed + n),
                ]
            if status == "Stop":
                attributes.append(("Acct-Terminate-Cause", "User-Request"))
            yield attributes


# -- radclient -------------------------------------------------------------------


class Pass:
    """One radclient run against one server: its figures."""

    def __init__(self, **figures):
        self.__dict__.update(figures)


def _summary(output):
    counts = {}
    for key in ("Accepted", "Rejected", "Lost", "Passed filter", "Failed filter"):
        match = re.search(rf"{key}\s*:\s*(\d+)", output)
        counts[key.lower().replace(" ", "_")] = int(match.group(1)) if match else None
    return counts


def thread_cpu_ns(pid):
    """
    Nanoseconds on CPU of C{pid}: (its main thread, the reactor's for ours;
    every live thread, from schedstat; the whole process, from its ticks).
    schedstat is exact but has only the threads alive now: argon2 hashes on
    threads of its own that are gone by the end of a pass, whose time only
    the process's ticks (coarser) keep.  Compare like with like: the
    difference of each, the larger of the two.
    """
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
            main = int(f.read().split()[0])
        user, system = cpu_ticks(pid)
    except (OSError, ValueError):
        return 0, 0, 0
    return main, cpu_ns(pid), (user + system) * 1e9 / os.sysconf("SC_CLK_TCK")


def radclient(server, kind, paths, packets, all_pids, parallel=PARALLEL, timeout=None, retries=None):
    """
    radclient over each file of C{paths} in turn against C{server}; a
    L{Pass} for them all (wall time from the first start to the last exit).
    """
    port = server.auth_port if kind == "auth" else server.acct_port
    options = ["-q", "-s", "-p", str(parallel)]
    if timeout is not None:
        options += ["-t", str(timeout)]
    if retries is not None:
        options += ["-r", str(retries)]
    summary = dict.fromkeys(("accepted", "rejected", "lost", "passed_filter", "failed_filter"), 0)
    radclient_cpu = 0.0
    before = thread_cpu_ns(server.pid)
    load = MachineLoad([*all_pids, os.getpid()])
    busy_before = machine_busy()
    started = time.monotonic()
    for path in paths:
        argv = ["radclient", *options, "-f", path, f"127.0.0.1:{port}", kind, SECRET]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            output = proc.stdout.read().decode("utf-8", "replace")
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            proc.stdout.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        radclient_cpu += usage.ru_utime + usage.ru_stime
        counts = _summary(output)
        if counts["accepted"] is None:
            raise RuntimeError(f"radclient exited {proc.returncode} without a summary: {output[-800:]}")
        for key, value in counts.items():
            summary[key] += value or 0
    elapsed = time.monotonic() - started
    after = thread_cpu_ns(server.pid)
    busy, total = (a - b for a, b in zip(machine_busy(), busy_before))
    load.finish()
    radclient_pct = 100 * radclient_cpu / elapsed
    main = (after[0] - before[0]) / 1e9
    threads = max(after[1] - before[1], after[2] - before[2]) / 1e9 - main
    # The rest of the machine: all CPUs' busy time less the server's and
    # radclient's.  MachineLoad's own figure would count as others' what
    # /proc no longer shows at the end: the radclients (ended) and the
    # threads FreeRADIUS's pool stopped and argon2's ended.
    if total:
        cores = os.cpu_count() or 2
        load.others_pct = max(0.0, 100 * cores * busy / total - 100 * (main + threads) / elapsed - radclient_pct)
    return Pass(
        server=server.name, kind=kind, packets=packets, elapsed=elapsed, rate=packets / elapsed,
        cpu_pct=100 * (main + threads) / elapsed, main_pct=100 * main / elapsed, threads_pct=100 * threads / elapsed,
        cpu_us=1e6 * (main + threads) / packets, radclient_pct=radclient_pct, load=load, **summary,
    )


def describe(p):
    split = f" (reactor {p.main_pct:.0f}%, other threads {p.threads_pct:.0f}%)" if p.server.startswith("ours") else ""
    return (f"{p.server:<16} {p.kind:<4} {p.packets:>6} in {p.elapsed:6.2f} s = {p.rate:7,.0f}/s; "
            f"accepted {p.accepted} rejected {p.rejected} lost {p.lost}; server CPU {p.cpu_pct:4.0f}%{split}, "
            f"{p.cpu_us:5.0f} µs/req; radclient CPU {p.radclient_pct:3.0f}%; {p.load.describe()}")


# -- FreeRADIUS -------------------------------------------------------------------


FREERADIUS_SITE = """\
# The bench's only virtual server: PAP from the files module, accounting
# to {accounting_what}.
server bench {{
	listen {{
		type = auth
		ipaddr = 127.0.0.1
		port = {auth_port}
		recv_buff = 8388608
	}}
	listen {{
		type = acct
		ipaddr = 127.0.0.1
		port = {acct_port}
		recv_buff = 8388608
	}}
	authorize {{
		files
		pap
	}}
	authenticate {{
		Auth-Type PAP {{
			pap
		}}
	}}
	preacct {{
		{preacct}
	}}
	accounting {{
		{accounting}
	}}
	post-auth {{
	}}
}}
"""


def _reply_message(remaining_seconds):
    from callcenter.radius.policy import welcome

    return welcome("zh", remaining_seconds)


# rlm_sql as Debian's mods-available/sql has it, the queries of the
# dialect (an INSERT for a Start, an UPDATE for an Interim-Update or a
# Stop, each committed on its own), a pool of up to 32 connections.
FREERADIUS_SQL = """\
sql {{
	dialect = "{dialect}"
	driver = "rlm_sql_${{dialect}}"
	sqlite {{
		filename = "{sqlite_file}"
		busy_timeout = 10000
	}}
{server}
	radius_db = "{database}"
	acct_table1 = "radacct"
	acct_table2 = "radacct"
	postauth_table = "radpostauth"
	authcheck_table = "radcheck"
	groupcheck_table = "radgroupcheck"
	authreply_table = "radreply"
	groupreply_table = "radgroupreply"
	usergroup_table = "radusergroup"
	delete_stale_sessions = yes
	pool {{
		start = 5
		min = 4
		max = 32
		spare = 10
		uses = 0
		retry_delay = 30
		lifetime = 0
		idle_timeout = 60
	}}
	read_clients = no
	client_table = "nas"
	group_attribute = "SQL-Group"
	$INCLUDE ${{modconfdir}}/${{.:name}}/main/${{dialect}}/queries.conf
}}
"""


def freeradius_sql_store(base, dialect, postgres_url=None):
    """
    The radacct table (Debian's schema.sql of the dialect) for FreeRADIUS's
    rlm_sql, durable as ours: SQLite in WAL mode with synchronous=FULL
    (SQLite's default, which rlm_sql_sqlite keeps), or a database of its own
    on our PostgreSQL server (fsync on).  Returns the sql module's settings.
    """
    schema_path = os.path.join(FREERADIUS_CONFIG, "mods-config", "sql", "main", dialect, "schema.sql")
    with open(schema_path) as f:
        schema = f.read()
    if dialect == "sqlite":
        import sqlite3

        path = os.path.join(base, "radacct.sqlite")
        connection = sqlite3.connect(path)
        try:
            connection.executescript(schema)
            # WAL is kept in the file: every connection of FreeRADIUS's pool has it.
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            synchronous = connection.execute("PRAGMA synchronous").fetchone()[0]
        finally:
            connection.close()
        if mode != "wal" or synchronous != 2:
            raise RuntimeError(f"FreeRADIUS's SQLite: journal_mode {mode}, synchronous {synchronous} (want wal, 2)")
        return {"dialect": dialect, "sqlite_file": path, "server": "", "database": "radius", "url": path}
    import psycopg
    import sqlalchemy as sa

    from postgres import create_database

    url = sa.engine.make_url(create_database(postgres_url))
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as connection:
        connection.execute(schema)
    server = (f'\tserver = "{url.host}"\n\tport = {url.port}\n\tlogin = "{url.username}"\n'
              f'\tpassword = "{url.password or ""}"')
    return {"dialect": dialect, "sqlite_file": "", "server": server, "database": url.database,
            "url": url.render_as_string(hide_password=False)}


def freeradius_config(directory, users, auth_port, acct_port, accounting, sql=None):
    """
    PEERS.md's recipe: Debian's configuration copied, EAP and the stock
    sites removed, one site on the bench's ports, no user/group switch, no
    proxying; the users in mods-config/files/authorize.  With C{sql}
    (L{freeradius_sql_store}), accounting goes to rlm_sql instead, after
    the acct_unique policy (Acct-Unique-Session-Id, which its queries key
    sessions by) as in Debian's default site.
    """
    conf = os.path.join(directory, "raddb")
    shutil.copytree(FREERADIUS_CONFIG, conf, symlinks=True)
    os.remove(os.path.join(conf, "mods-enabled", "eap"))  # needs certificates made at install
    for site in glob.glob(os.path.join(conf, "sites-enabled", "*")):
        os.remove(site)
    for sub in ("log", "log/radacct", "run"):
        os.makedirs(os.path.join(directory, sub), exist_ok=True)
    if sql is not None:
        with open(os.path.join(conf, "mods-enabled", "sql"), "w") as f:
            f.write(FREERADIUS_SQL.format(**sql))
    path = os.path.join(conf, "radiusd.conf")
    with open(path) as f:
        text = f.read()
    replacements = {
        r"(?m)^raddbdir = .*$": f"raddbdir = {conf}",
        r"(?m)^logdir = .*$": f"logdir = {directory}/log",
        r"(?m)^run_dir = .*$": f"run_dir = {directory}/run",
        r"(?m)^\s*user = freerad\s*$": "",
        r"(?m)^\s*group = freerad\s*$": "",
        r"(?m)^proxy_requests\s*=.*$": "proxy_requests = no",
        # Requests tracked at once, answered ones included for cleanup_delay
        # (5 s): at 20k/s the default 16384 would drop requests.
        r"(?m)^max_requests = .*$": "max_requests = 262144",
    }
    for pattern, replacement in replacements.items():
        text, count = re.subn(pattern, replacement, text)
        if count != 1:
            raise RuntimeError(f"radiusd.conf: {pattern!r} matched {count} times")
    with open(path, "w") as f:
        f.write(text)
    with open(os.path.join(conf, "clients.conf"), "w") as f:
        f.write(f"client bench {{\n\tipaddr = 127.0.0.1\n\tsecret = {SECRET}\n"
                "\trequire_message_authenticator = yes\n}\n")
    reply = _reply_message(SESSION_TIMEOUT)
    with open(os.path.join(conf, "mods-config", "files", "authorize"), "w", encoding="utf-8") as f:
        for username, password in users:
            f.write(f'{username}\tCleartext-Password := "{password}"\n'
                    f"\tSession-Timeout = {SESSION_TIMEOUT},\n\tIdle-Timeout = {IDLE_TIMEOUT},\n"
                    f'\tReply-Message = "{reply}"\n\n')
    if sql is not None:
        accounting, preacct, what = "sql", "acct_unique", f"rlm_sql ({sql['dialect']})"
    elif accounting == "detail":
        accounting, preacct, what = "detail", "", "the detail file"
    else:
        accounting, preacct, what = "ok", "", "nowhere (ok)"
    site = FREERADIUS_SITE.format(
        auth_port=auth_port, acct_port=acct_port, accounting=accounting, preacct=preacct, accounting_what=what,
    )
    with open(os.path.join(conf, "sites-enabled", "bench"), "w") as f:
        f.write(site)
    check = subprocess.run(["freeradius", "-C", "-d", conf], capture_output=True, text=True, timeout=60)
    if check.returncode != 0:
        raise RuntimeError(f"freeradius -C: {(check.stdout + check.stderr)[-2000:]}")
    return conf


class FreeRadius:
    """
    FreeRADIUS in C{directory}/C{name}: accounting to its detail file (or
    nowhere), or with C{sql} to rlm_sql on the database of
    L{freeradius_sql_store}.
    """

    def __init__(self, children, directory, users, accounting, name="freeradius", sql=None):
        from _server import free_port

        self.name = name
        self.sql = sql
        self._children = children
        base = os.path.join(directory, name)
        os.makedirs(base, exist_ok=True)
        self.auth_port, self.acct_port = free_port(), free_port()
        conf = freeradius_config(base, users, self.auth_port, self.acct_port, accounting, sql)
        self.proc = children.start(["freeradius", "-f", "-d", conf], os.path.join(base, "freeradius.out"))
        self.pid = self.proc.pid
        self.detail_dir = os.path.join(base, "log", "radacct")

    def stop(self):
        self._children.stop(self.proc)

    def sessions(self):
        """(rows in radacct, of them stopped), for the SQL variant."""
        query = "SELECT count(*), count(acctstoptime) FROM radacct"
        if self.sql["dialect"] == "sqlite":
            import sqlite3

            connection = sqlite3.connect(self.sql["url"])
            try:
                return connection.execute(query).fetchone()
            finally:
                connection.close()
        import psycopg

        with psycopg.connect(self.sql["url"]) as connection:
            return connection.execute(query).fetchone()


# -- ours ---------------------------------------------------------------------------


class Ours:
    def __init__(self, name, directory, url):
        self.name = name
        config = write_config(os.path.join(directory, f"{name}.toml"), {
            "server": {"node": "bench"},
            "storage": {"url": url},
            "web": {"listen": "tcp:0:interface=127.0.0.1"},
            "radius": {
                "auth": "127.0.0.1:0",
                "accounting": "127.0.0.1:0",
                # One NAS on 127.0.0.1; its rate limit (2,000/s by default,
                # per listener) raised so that radclient is not throttled.
                "clients": [{"name": "bench-nas", "address": "127.0.0.1", "secret_env": SECRET_VARIABLE,
                             "rate": 1_000_000, "burst": 10_000_000}],
                # An hour rather than the default 600 s: waiting for a
                # quiet machine must not expire the warm-up's passwords
                # (argon2 again, in the middle of a measured pass).
                "credential_cache_seconds": 3600,
            },
        })
        self.process = ServerProcess(
            [os.path.join(BIN, "twistd"), "--pidfile=", "-n", "callcenter", "--config", config],
            extra_env={SECRET_VARIABLE: SECRET},
        )
        self.pid = self.process.process.pid
        self.auth_port = int(self.process.wait_for(r"RADIUS authentication listening on 127\.0\.0\.1:(\d+)").group(1))
        self.acct_port = int(self.process.wait_for(r"RADIUS accounting listening on 127\.0\.0\.1:(\d+)").group(1))
        self.http = self.process.http_port()

    def counters(self):
        """callcenter_radius_packets_total by (listener, outcome), from /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=30) as r:
            text = r.read().decode()
        counts = {}
        for match in re.finditer(
            r'^callcenter_radius_packets_total\{([^}]*)\} ([0-9.e+]+)$', text, re.MULTILINE
        ):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            key = (labels["listener"], labels["outcome"])
            counts[key] = counts.get(key, 0) + float(match.group(2))
        return counts

    def stop(self):
        self.process.stop_if_running()
        try:
            self.process.finish(timeout=10)
        except Exception:
            pass


def check_answers(server, users, directory):
    """The right password is accepted, a wrong one rejected (retrying while the server starts)."""
    username, password = users[0]
    for wrong, expected in ((False, "Access-Accept"), (True, "Access-Reject")):
        path = write_packets(os.path.join(directory, f"check-{server.name}.txt"), [[
            ("User-Name", f'"{username}"'),
            ("User-Password", f'"{password + "x" if wrong else password}"'),
            ("Message-Authenticator", "0x00"),
        ]])
        deadline = time.monotonic() + 60
        while True:
            done = subprocess.run(
                ["radclient", "-x", "-r", "1", "-t", "10", "-f", path, f"127.0.0.1:{server.auth_port}", "auth", SECRET],
                capture_output=True, text=True, timeout=60,
            )
            output = done.stdout + done.stderr
            if f"Received {expected}" in output:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.name}: no {expected} for {'a wrong' if wrong else 'the right'} "
                                   f"password:\n{output[-1500:]}")
            time.sleep(0.5)
    log(f"{server.name}: right password accepted, wrong one rejected")


# -- the run ------------------------------------------------------------------------


class Bench:
    def __init__(self, args, directory, users):
        self.args = args
        self.directory = directory
        self.users = users
        self.passes = []  # every measured Pass, with .phase set
        self.profiles = {}
        self._files = 0

    def files(self, name, packets):
        """
        The packets in files of --chunk each, sent one file after another:
        radclient's cost per packet grows with the file (it walks its whole
        list of requests on every loop), so one file of 50,000 holds it to
        ~5,500/s where files of 2,500 let it do ~17,000/s.
        """
        packets, paths = list(packets), []
        for start in range(0, len(packets), self.args.chunk):
            self._files += 1
            paths.append(write_packets(os.path.join(self.directory, f"{self._files:04d}-{name}.txt"),
                                       packets[start:start + self.args.chunk]))
        return paths

    @staticmethod
    def remove(paths):
        for path in paths:
            os.remove(path)

    def quiet(self, pids):
        if self.args.quiet_wait > 0:
            wait_for_quiet(self.args.quiet, self.args.quiet_wait, pids)

    def warm_up(self, servers, pids):
        """Each user once (ours: argon2 each, then remembered), then a tenth of an accounting pass."""
        auth = self.files("warm-up-auth", access_requests(self.users, len(self.users), offset=10_000_000))
        acct = self.files("warm-up-acct", accounting_requests(self.users, max(1, self.args.sessions // 10),
                                                             f"warm-{secrets.token_hex(3)}"))
        for server in servers:
            # A few in flight, patiently: argon2 takes tens to hundreds of
            # milliseconds per request on a busy machine.  Not for --only
            # acct: accounting never verifies a password.
            if "auth" in self.args.only:
                p = radclient(server, "auth", auth, len(self.users), pids, parallel=8, timeout=30, retries=1)
                log("warm-up " + describe(p))
                if p.accepted != len(self.users):
                    raise RuntimeError(f"{server.name}: warm-up accepted {p.accepted} of {len(self.users)}")
            if self.args.sessions:
                p = radclient(server, "acct", acct, 3 * max(1, self.args.sessions // 10), pids)
                log("warm-up " + describe(p))

    def measure(self, phase, ours, freeradius, pids, freeradius_sql=None):
        """--runs passes of each kind, each server in turn (the order rotating); C{freeradius_sql} for accounting only."""
        args = self.args
        kinds = [k for k in ("auth", "acct") if k in args.only]
        for kind in kinds:
            for run in range(args.runs):
                if kind == "auth":
                    count = args.packets
                    paths = self.files(f"auth-{phase}-{run}", access_requests(
                        self.users, count, offset=(run + 1) * 1_000_000))
                else:
                    count = 3 * args.sessions
                    paths = self.files(f"acct-{phase}-{run}", accounting_requests(
                        self.users, args.sessions, f"{phase}-{run}-{secrets.token_hex(3)}"))
                servers = [ours, freeradius]
                if kind == "acct" and freeradius_sql is not None:
                    servers.append(freeradius_sql)
                turn = run % len(servers)
                for server in servers[turn:] + servers[:turn]:
                    self.quiet(pids)
                    before = ours.counters() if server is ours else None
                    p = radclient(server, kind, paths, count, pids)
                    p.phase, p.run = phase, run
                    if server is ours:
                        p.counted = self._check_counters(ours, kind, before, p)
                        if kind == "auth" and p.threads_pct > 5:
                            log(f"  ours' threads used {p.threads_pct:.0f}% of a core during Access-Requests: "
                                "argon2 (a remembered password expired?) or the account reads")
                    self.passes.append(p)
                    log(f"run {run + 1}/{args.runs} " + describe(p))
                self.remove(paths)
            if args.profile:
                self.profile(phase, ours, kind, pids)

    @staticmethod
    def _check_counters(ours, kind, before, p):
        after = ours.counters()
        delta = {key: after.get(key, 0) - before.get(key, 0) for key in after}
        listener = "auth" if kind == "auth" else "acct"
        answered = {outcome: int(n) for (where, outcome), n in delta.items() if where == listener and n}
        expected = p.accepted + (p.rejected or 0)
        got = answered.get("accept", 0) + answered.get("reject", 0) + answered.get("accounted", 0)
        if got != expected:
            log(f"  ours counted {answered}, radclient got {expected} answers")
        return answered

    def profile(self, phase, ours, kind, pids):
        count = self.args.packets if kind == "auth" else 3 * self.args.sessions
        packets = (access_requests(self.users, count, offset=90_000_000) if kind == "auth"
                   else accounting_requests(self.users, self.args.sessions, f"prof-{phase}-{secrets.token_hex(3)}"))
        paths = self.files(f"profile-{kind}", packets)
        os.makedirs(self.args.profile, exist_ok=True)
        raw = os.path.join(self.args.profile, f"{phase}-{kind}.pyspy.txt")
        spy = subprocess.Popen(
            [os.path.join(BIN, "py-spy"), "record", "--nonblocking", "-r", "250", "-f", "raw", "-o", raw,
             "-p", str(ours.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        try:
            time.sleep(1.5)  # py-spy attaching
            p = radclient(ours, kind, paths, count, [*pids, spy.pid])
            log(f"profiled (not counted): {describe(p)}")
        finally:
            spy.send_signal(signal.SIGINT)  # py-spy writes what it has and exits
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
        if os.path.exists(raw):
            self.profiles[(phase, kind)] = top_functions(raw, limit=40)
        else:
            log(f"py-spy wrote nothing: {spy.stderr.read().decode()[-500:]}")
        spy.stderr.close()
        self.remove(paths)


# Frames every sample of a thread passes through: twistd, the reactor's
# loop, the thread pool's worker.
_SCAFFOLDING = re.compile(
    r"\((twisted/(application|scripts|python|_threads|internet/(base|posixbase|epollreactor))|threading)\.?"
)


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def report(bench):
    passes = bench.passes
    print()
    print(f"users {len(bench.users)}, Access-Requests {bench.args.packets} per pass, "
          f"accounting {bench.args.sessions} sessions x 3 per pass, radclient -p {PARALLEL}; "
          f"medians of {bench.args.runs} passes (min-max)")
    print()
    header = ("| phase | kind | server | requests/s | server CPU % of a core | CPU µs/request | radclient CPU % "
              "| accepted / rejected / lost (all passes) | load avg, others' CPU |")
    print(header)
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    phases = []
    for p in passes:
        if (p.phase, p.kind) not in phases:
            phases.append((p.phase, p.kind))
    ratios = []
    for phase, kind in phases:
        medians = {}
        for name in sorted({p.server for p in passes if (p.phase, p.kind) == (phase, kind)}):
            group = [p for p in passes if (p.phase, p.kind, p.server) == (phase, kind, name)]
            rates = [p.rate for p in group]
            medians[name] = _median(rates)
            split = ""
            if name.startswith("ours"):
                split = (f" (reactor {_median([p.main_pct for p in group]):.0f}, "
                         f"threads {_median([p.threads_pct for p in group]):.0f})")
            print(f"| {phase} | {kind} | {name} | {medians[name]:,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) "
                  f"| {_median([p.cpu_pct for p in group]):.0f}{split} | {_median([p.cpu_us for p in group]):.0f} "
                  f"| {_median([p.radclient_pct for p in group]):.0f} "
                  f"| {sum(p.accepted for p in group)} / {sum(p.rejected or 0 for p in group)} / "
                  f"{sum(p.lost or 0 for p in group)} "
                  f"| {_median([p.load.loadavg for p in group]):.2f}, "
                  f"{_median([p.load.others_pct for p in group]):.0f}% |")
        ours = [n for n in medians if n.startswith("ours")]
        for reference in ("freeradius", "freeradius-sql"):
            if ours and reference in medians:
                ratios.append((phase, kind, reference, medians[ours[0]] / medians[reference]))
    print()
    for phase, kind, reference, ratio in ratios:
        against = "FreeRADIUS (rlm_sql)" if reference == "freeradius-sql" else "FreeRADIUS"
        print(f"ours / {against}, {phase} {kind}: {ratio:.2f}")
    for (phase, kind), (total, own, inclusive) in bench.profiles.items():
        print()
        print(f"py-spy, ours ({phase}) {kind}: {total} samples")
        print("  own time:")
        for frame, n in own[:15]:
            print(f"    {100 * n / total:5.1f}%  {frame}")
        print("  inclusive (the reactor's and the thread pool's own frames left out):")
        for frame, n in [(f, n) for f, n in inclusive if not _SCAFFOLDING.search(f)][:12]:
            print(f"    {100 * n / total:5.1f}%  {frame}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--packets", type=int, default=50_000, help="Access-Requests per pass")
    parser.add_argument("--sessions", type=int, default=20_000, help="sessions per accounting pass (3 packets each)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=2500, help="packets per radclient file")
    parser.add_argument("--database", nargs="+", choices=("sqlite", "postgresql"), default=["sqlite", "postgresql"])
    parser.add_argument("--only", nargs="+", choices=("auth", "acct"), default=["auth", "acct"])
    parser.add_argument("--freeradius-accounting", choices=("detail", "null"), default="detail")
    parser.add_argument("--freeradius-sql", action=argparse.BooleanOptionalAction, default=True,
                        help="also FreeRADIUS keeping accounting in SQL (rlm_sql) on the phase's database")
    parser.add_argument("--profile", metavar="DIR", help="py-spy one more pass of each kind on ours")
    parser.add_argument("--quiet", type=float, default=30, help="%% of a core others may use before a pass")
    parser.add_argument("--quiet-wait", type=float, default=20, help="at most this many s waiting for --quiet")
    parser.add_argument("--cheap-hashes", action="store_true",
                        help="argon2id at its lowest cost (trying the bench out; not for published numbers)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()

    missing = [name for name in ("radclient", "freeradius") if shutil.which(name) is None]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: .ci/ensure-debian-packages freeradius freeradius-utils")
    if args.profile and not os.path.exists(os.path.join(BIN, "py-spy")):
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")

    interrupt_on_sigterm()
    children = Children()
    directory = tempfile.mkdtemp(prefix="radius-bench-")
    postgres = None
    ours = freeradius_sql = None
    users = make_users(args.users)
    bench = Bench(args, directory, users)
    try:
        log(f"scratch directory {directory}; load average {os.getloadavg()[0]:.2f}")
        hashes = hash_passwords(users, args.cheap_hashes)
        freeradius = FreeRadius(children, directory, users, args.freeradius_accounting)
        check_answers(freeradius, users, directory)
        bench.warm_up([freeradius], [freeradius.pid])
        for database in args.database:
            if database == "sqlite":
                url = f"sqlite:///{directory}/bench.sqlite"
            else:
                from postgres import PostgresServer, create_database

                postgres = PostgresServer()
                postgres.start()
                url = create_database(postgres.url)
            fill_store(url, users, hashes)
            ours = Ours(f"ours-{database}", directory, url)
            log(f"{ours.name}: pid {ours.pid}, auth {ours.auth_port}, accounting {ours.acct_port}, "
                f"RSS {rss_kb(ours.pid) / 1024:.0f} MiB")
            pids = [freeradius.pid, ours.pid]
            check_answers(ours, users, directory)
            bench.warm_up([ours], pids)
            if args.freeradius_sql and "acct" in args.only:
                sql = freeradius_sql_store(directory, database, postgres.url if postgres is not None else None)
                freeradius_sql = FreeRadius(children, directory, users, "sql", name=f"freeradius-sql-{database}",
                                            sql=sql)
                freeradius_sql.name = "freeradius-sql"  # the same in every phase: the report's column
                check_answers(freeradius_sql, users, directory)
                pids.append(freeradius_sql.pid)
                bench.warm_up([freeradius_sql], pids)
            bench.measure(database, ours, freeradius, pids, freeradius_sql)
            log(f"{ours.name}: RSS {rss_kb(ours.pid) / 1024:.0f} MiB after the passes")
            ours.stop()
            ours = None
            if freeradius_sql is not None:
                rows, stopped = freeradius_sql.sessions()
                log(f"FreeRADIUS rlm_sql ({database}): {rows} sessions in radacct, {stopped} stopped")
                freeradius_sql.stop()
                freeradius_sql = None
        if args.freeradius_accounting == "detail":
            size = sum(os.path.getsize(p) for p in glob.glob(os.path.join(freeradius.detail_dir, "*", "*")))
            log(f"FreeRADIUS detail files: {size / 1e6:.1f} MB")
        report(bench)
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        if ours is not None:
            ours.stop()
        children.stop_all()
        if postgres is not None:
            postgres.stop()
        if args.keep:
            log(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
