"""
REGISTER with digest authentication, side by side in one run: two Kamailio
5.6 configurations as the reference, then our server (``twistd -n
callcenter``), all three driven by the same SIPp scenario
(bench/kamailio/register_digest.xml: REGISTER -> 401 -> REGISTER with
Authorization -> 200) with the same injection file of distinct users and
random passwords, on 127.0.0.1.

    .venv/bin/python bench/register_vs_kamailio.py [--users 10000] [--seconds 6]
        [--only NAME [NAME ...]] [--profile DIR [--profile-gil]] [--keep]

NAME is one of the three registrars, in the order they run:

kamailio-memory
    Kamailio as fast as it goes (bench/kamailio/registrar.cfg.in): HA1 per
    user in an htable (loaded at start from a db_text table),
    ``pv_www_authenticate``, bindings in memory only (usrloc db_mode 0:
    lost on restart, never on disk).  Not the same guarantee as ours: the
    upper bound.
kamailio-durable
    Kamailio with ours' guarantee (bench/kamailio/registrar-durable.cfg.in):
    ``auth_db`` reads HA1 from the ``subscriber`` table (``calculate_ha1``
    0), usrloc db_mode 1 (write-through: the binding is in the ``location``
    table before the 200), both tables in one SQLite file (``db_sqlite``)
    next to ours in the same temporary directory, created from Kamailio's
    own schema files (/usr/share/kamailio/db_sqlite/).  SQLite: WAL (set
    with db_sqlite's ``db_set_journal_mode``, as ours), the rest at the
    library's defaults, which db_sqlite 5.6 leaves alone: synchronous FULL,
    busy timeout 0, one autocommit transaction (one fsync) per statement.
ours
    SQLite in the same temporary directory (WAL, synchronous=FULL, group
    commit: one fsync per ~10 ms batch, each binding durable before its
    200), the accounts written straight into ``sip_accounts`` after
    ``callcenter db upgrade``, info logging to a file, the per-source rate
    limit raised so that one SIPp on 127.0.0.1 is not throttled.

Both Kamailio run with ``-x tlsf``, kamailio-memory with ``-n 2`` UDP
workers, kamailio-durable with one (--durable-workers): db_sqlite 5.6 sets
no busy timeout, so when two worker processes write at once the second
gets SQLITE_BUSY straight away, its save() fails and the REGISTER gets a
500 (with two workers, a tenth to two fifths of the registrations failed
at 200 to 400 a second, most of them in the closed loop).  One worker is how Kamailio 5.6 keeps this
guarantee on SQLite without failing; ours writes from one thread too.

Before the load, each registrar must answer the right password with 200
and a wrong one with 403, and the two durable ones must have the binding
in their table by the time the 200 arrives.  After the load the bench
counts the bindings on disk (``location``, ``sip_bindings``) against the
distinct user/contact pairs SIPp registered, and prints the SQLite
settings each side used.

Needs the Debian packages ``kamailio``, ``kamailio-sqlite-modules`` (for
kamailio-durable) and ``sip-tester`` (and py-spy in the venv for
--profile: ``.venv/bin/pip install py-spy``).

For each registrar, with the same SIPp settings (only -r changes):

1. closed loop (``-l CONCURRENCY``, ``-r`` far above capacity) for about
   --seconds: what it completes with CONCURRENCY registrations in flight;
2. open loop (``-r`` fixed, about --seconds each, at most --tries runs):
   from 90 % of the closed-loop figure, up by 30 % while it keeps up, down
   by 25 % while it does not, then halving the interval.  Keeping up: no
   failed registration, retransmissions under 1 % (answers within T1),
   the rate achieved.  "reg/s" in the table is the highest open-loop rate
   kept, "failed" that run's failures, "fails at -r" the lowest rate
   tried that was not kept.

CPU is the registrar's own: every thread of every process of it, from
/proc/PID/task/TID/schedstat (ns on CPU), before and after each run; CPU %
is of one core (the machine has 2).  SIPp's CPU is shown too: SIPp is one
thread, and near 100 % it is the limit, not the registrar.  The table ends
with ours' figures divided by each Kamailio's.

--profile DIR also runs py-spy (100 Hz, blocking: it pauses the process
for each sample, so at 80 % of the sustained rate) on our server during one
more open-loop run, writes DIR/ours.pyspy.txt (collapsed stacks) and
prints the top functions by own and by inclusive time and a breakdown by
category; --profile-gil samples only the thread holding the GIL.

Everything started here is stopped, and the temporary directory removed,
at the end, on an error and on Ctrl-C or SIGTERM.
"""

import argparse
import collections
import glob
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

SCENARIO = os.path.join(HERE, "kamailio", "register_digest.xml")
KAMAILIO_MEMORY_CFG = os.path.join(HERE, "kamailio", "registrar.cfg.in")
KAMAILIO_DURABLE_CFG = os.path.join(HERE, "kamailio", "registrar-durable.cfg.in")
# Kamailio's SQLite schema (Debian kamailio-sqlite-modules): the version
# table, subscriber (auth_db), location and location_attrs (usrloc).
KAMAILIO_SQLITE_SCHEMA = "/usr/share/kamailio/db_sqlite"
KAMAILIO_SQLITE_SCHEMA_FILES = ("standard-create.sql", "auth_db-create.sql", "usrloc-create.sql")
KAMAILIO_DOMAIN = "127.0.0.1"  # the host part of the To URIs SIPp sends
KAMAILIO_WORKERS = 2  # kamailio-memory's; kamailio-durable's is --durable-workers
REGISTRARS = ("kamailio-memory", "kamailio-durable", "ours")
REALM = "callcenter"
FIRST_USER = 100000


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def venv_bin(name):
    for directory in (os.path.dirname(sys.executable), os.path.join(ROOT, ".venv", "bin")):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found (the venv: make install)")
    return found


def free_port(kind=socket.SOCK_DGRAM):
    """A port free for UDP and TCP on 127.0.0.1 (as good as it gets without holding it)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        try:
            with socket.socket(socket.AF_INET, other) as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


# -- processes ---------------------------------------------------------------


class Processes:
    """Everything this bench starts, each in its own process group, stopped by id."""

    def __init__(self):
        self._procs = []

    def start(self, argv, log_path, **kwargs):
        out = open(log_path, "ab")
        try:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, **kwargs
            )
        finally:
            out.close()
        self._procs.append(proc)
        return proc

    def stop(self, proc, grace=5.0):
        if proc.poll() is None:
            self._signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # Kamailio's children, a twistd thread that hung: the whole group, by its id.
        self._signal_group(proc, signal.SIGKILL)
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            pass
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self):
        for proc in reversed(list(self._procs)):
            self.stop(proc)

    @staticmethod
    def _signal_group(proc, sig):
        try:
            os.killpg(proc.pid, sig)  # start_new_session: the group id is the pid
        except (ProcessLookupError, PermissionError):
            pass


def _children():
    parents = collections.defaultdict(list)
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                text = f.read()
        except OSError:
            continue
        pid = int(stat.split("/")[2])
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        parents[ppid].append(pid)
    return parents


def process_tree(root):
    children = _children()
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, ()))
    return pids


def user_sys_ticks(pids):
    """utime and stime of C{pids} (all threads), in clock ticks: only for the user/system split."""
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])
        system += int(fields[12])
    return user, system


def cpu_ns(pids):
    """Nanoseconds on CPU of every thread of C{pids} (schedstat: exact, unlike /proc/stat ticks)."""
    total = 0
    for pid in pids:
        for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
            try:
                with open(path) as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


# -- SIP checks before the load ----------------------------------------------


def _register(sock, port, user, authorization=None, cseq=1, call_id=None):
    call_id = call_id or secrets.token_hex(8)
    local = sock.getsockname()
    lines = [
        f"REGISTER sip:127.0.0.1:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{local[1]};branch=z9hG4bK{secrets.token_hex(6)};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@127.0.0.1>;tag={secrets.token_hex(4)}",
        f"To: <sip:{user}@127.0.0.1>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@127.0.0.1:{local[1]}>",
        "Expires: 3600",
    ]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    lines += ["Content-Length: 0", "", ""]
    sock.sendto("\r\n".join(lines).encode(), ("127.0.0.1", port))
    data, _ = sock.recvfrom(65535)
    text = data.decode("utf-8", "replace")
    status = int(text.split(" ", 2)[1])
    challenges = re.findall(r"(?im)^WWW-Authenticate:\s*(.+?)\r?$", text)
    return status, challenges, call_id


def wait_ready(port, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.3)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"exited with status {proc.returncode} while starting")
            try:
                status, _, _ = _register(sock, port, FIRST_USER)
                if status == 401:
                    return
            except (socket.timeout, ConnectionRefusedError):
                pass
            time.sleep(0.2)
    raise RuntimeError(f"no 401 on 127.0.0.1:{port} within {timeout:.0f} s")


def check_digest(port, user, password, on_registered=None):
    """
    The right password gets 200, a wrong one 403: the digest really is
    checked.  C{on_registered(user)} runs as soon as the 200 arrives.
    """
    from callcenter.sip.digest import authorization_for, choose_challenge

    results = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(3)
        for secret in (password, password + "-wrong"):
            status, challenges, call_id = _register(sock, port, user)
            if status != 401:
                raise RuntimeError(f"unauthenticated REGISTER answered {status}, not 401")
            value = authorization_for(
                choose_challenge(challenges), "REGISTER", f"sip:127.0.0.1:{port}", str(user),
                secret, lambda: secrets.token_hex(8), 1,
            )
            status, _, _ = _register(sock, port, user, value, cseq=2, call_id=call_id)
            results.append(status)
            if status == 200 and on_registered is not None:
                on_registered(user)
    if results != [200, 403]:
        raise RuntimeError(f"digest check: right password got {results[0]}, wrong got {results[1]}")


# -- SIPp ----------------------------------------------------------------------


class Sipp:
    def __init__(self, workdir, injection):
        self.workdir = workdir
        self.injection = injection
        self.runs = 0
        self.history = []  # (registrar port, successful, failed) of every run

    def run(self, port, watch_pids, rate, calls, limit, timeout):
        """One SIPp run; returns its figures and the registrar's CPU over it."""
        self.runs += 1
        stat_file = os.path.join(self.workdir, f"sipp-{self.runs}.csv")
        err_file = os.path.join(self.workdir, f"sipp-{self.runs}-errors.log")
        argv = [
            "sipp", f"127.0.0.1:{port}",
            "-sf", SCENARIO, "-inf", self.injection,
            "-i", "127.0.0.1", "-bind_local", "-ci", "127.0.0.1", "-mi", "127.0.0.1",
            "-p", str(free_port()), "-cp", str(free_port()), "-nostdin",
            "-r", str(rate), "-rp", "1000", "-m", str(calls), "-l", str(limit),
            "-buff_size", "4194304", "-recv_timeout", "5000", "-timeout", f"{int(timeout)}s",
            "-trace_stat", "-stf", stat_file, "-fd", "1",
            "-trace_err", "-error_file", err_file,
        ]
        wait_idle(watch_pids)
        cpu_before = cpu_ns(watch_pids)
        ticks_before = user_sys_ticks(watch_pids)
        started = time.monotonic()
        proc = subprocess.Popen(
            argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True,
        )
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            raise
        elapsed = time.monotonic() - started
        cpu_after = cpu_ns(watch_pids)
        user, system = (b - a for a, b in zip(ticks_before, user_sys_ticks(watch_pids)))
        proc.returncode = os.waitstatus_to_exitcode(status)
        stderr = proc.stderr.read().decode("utf-8", "replace").strip()
        proc.stderr.close()
        stats = _last_stats(stat_file)
        if proc.returncode not in (0, 1) or not stats:
            raise RuntimeError(f"sipp exited {proc.returncode}: {stderr[-500:]}")
        ok = int(stats["SuccessfulCall(C)"])
        result = {
            "rate": rate,
            "ok": ok,
            "failed": int(stats["FailedCall(C)"]),
            "retrans": int(stats["Retransmissions(C)"]),
            "elapsed": elapsed,
            "reg_s": ok / elapsed,
            "cpu_pct": 100.0 * (cpu_after - cpu_before) / 1e9 / elapsed,
            "cpu_us_per_reg": (cpu_after - cpu_before) / 1e3 / ok if ok else float("nan"),
            "sys_share": system / (user + system) if user + system else float("nan"),
            "sipp_cpu_pct": 100.0 * (usage.ru_utime + usage.ru_stime) / elapsed,
            "call_ms": _duration_ms(stats.get("CallLength(C)", "")),
        }
        self.history.append((port, ok, int(stats["FailedCall(C)"])))
        return result


def wait_idle(pids, window=0.5, threshold=0.05, limit=30.0):
    """
    Wait until the registrar is idle (under 5 % CPU over half a second): after
    an overload it may still be working through queued requests, which
    would count against the next run.
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = cpu_ns(pids)
        time.sleep(window)
        if (cpu_ns(pids) - before) / 1e9 / window < threshold:
            return
    log("  (registrar still busy after 30 s; measuring anyway)")


def _last_stats(path):
    try:
        with open(path) as f:
            lines = [line.rstrip("\n") for line in f if line.strip()]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    return dict(zip(lines[0].split(";"), lines[-1].split(";")))


def _duration_ms(text):
    # SIPp writes HH:MM:SS:mmmuuu
    try:
        h, m, s, us = text.split(":")
        return ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(us) / 1000
    except ValueError:
        return float("nan")


def open_limit(rate):
    # Two seconds' worth of calls in flight: far more than a registrar that
    # keeps up needs, and under SIPp's open-file limit.
    return max(1000, min(rate * 2, 15000))


def measure(name, sipp, port, watch_pids, args):
    """Closed loop for the capacity, then open loop at a rate that does not fail."""

    def show(kind, r):
        log(
            f"  {name} {kind:>11} -r {r['rate']:>6}: {r['ok']:>6} ok {r['failed']:>4} failed "
            f"{r['retrans']:>5} retrans in {r['elapsed']:5.1f} s = {r['reg_s']:8.0f} reg/s, "
            f"CPU {r['cpu_pct']:5.1f} % ({100 * r['sys_share']:3.0f} % sys, {r['cpu_us_per_reg']:6.1f} us/reg), "
            f"SIPp CPU {r['sipp_cpu_pct']:5.1f} %, avg {r['call_ms']:.1f} ms"
        )

    limit = args.concurrency
    timeout = args.seconds * 4 + 20
    probe = sipp.run(port, watch_pids, 100000, args.probe_calls, limit, timeout)
    show("probe", probe)
    calls = int(min(max(probe["reg_s"] * args.seconds, 1000), args.max_calls))
    closed = sipp.run(port, watch_pids, 100000, calls, limit, timeout)
    show("closed loop", closed)
    # Open loop: up from 90 % of the closed-loop figure by 30 % steps while it
    # keeps up, down by 25 % steps while it does not, then halve the interval.
    rate, good, bad_rate, last = max(1, int(closed["reg_s"] * 0.9)), None, None, None
    for _ in range(args.tries):
        calls = int(min(max(rate * args.seconds, 200), args.max_calls))
        last = sipp.run(port, watch_pids, rate, calls, open_limit(rate), timeout)
        show("open loop", last)
        kept = (
            last["failed"] == 0
            and last["retrans"] <= 0.01 * calls  # answers within T1 (500 ms): keeping up
            and last["reg_s"] >= 0.95 * rate * calls / (calls + rate * 0.1)
        )
        if kept:
            good = last
            rate = int(rate * 1.3) if bad_rate is None else (rate + bad_rate) // 2
        else:
            bad_rate = rate
            rate = int(rate * 0.75) if good is None else (good["rate"] + rate) // 2
        if good is not None and bad_rate is not None and bad_rate - good["rate"] <= 0.1 * good["rate"]:
            break
    opened = good or last
    opened["failing_rate"] = bad_rate
    return {"name": name, "closed": closed, "open": opened}


# -- the two registrars --------------------------------------------------------


def make_users(count):
    # Random passwords, not starting with "0x": SIPp takes such a password as hex.
    return [(str(FIRST_USER + i), "p" + secrets.token_hex(8)) for i in range(count)]


def write_injection(path, users):
    with open(path, "w") as f:
        f.write("SEQUENTIAL\n")
        for user, password in users:
            f.write(f"{user};[authentication username={user} password={password}]\n")


def kamailio_modules():
    """Kamailio's module directory, or None when Kamailio is not installed."""
    if shutil.which("kamailio") is None:
        return None
    candidates = sorted(glob.glob("/usr/lib/*/kamailio/modules")) + ["/usr/lib/kamailio/modules"]
    return next((m for m in candidates if os.path.isdir(m)), None)


def check_prerequisites(names):
    """Everything the chosen registrars need, all missing pieces reported at once."""
    missing = []
    if shutil.which("sipp") is None:
        missing.append("sipp (apt-get install sip-tester)")
    kamailios = [name for name in names if name.startswith("kamailio")]
    modules = kamailio_modules()
    if kamailios and modules is None:
        missing.append("kamailio (apt-get install kamailio)")
    if "kamailio-durable" in names and modules is not None:
        schema = [os.path.join(KAMAILIO_SQLITE_SCHEMA, f) for f in KAMAILIO_SQLITE_SCHEMA_FILES]
        if not os.path.exists(os.path.join(modules, "db_sqlite.so")) or not all(map(os.path.exists, schema)):
            missing.append(
                "Kamailio's SQLite driver and schema for kamailio-durable "
                f"(db_sqlite.so in {modules}, {KAMAILIO_SQLITE_SCHEMA}/*-create.sql): "
                "apt-get install kamailio-sqlite-modules, or leave it out with "
                "--only kamailio-memory ours"
            )
    if missing:
        raise SystemExit("missing: " + "; ".join(missing))


def _start_kamailio(procs, base, template, substitutions, workers):
    """Fill in C{template}, run Kamailio in the foreground in C{base}, wait for its first 401."""
    rundir = os.path.join(base, "run")
    os.makedirs(rundir)
    port = free_port()
    with open(template) as f:
        cfg = f.read()
    substitutions = dict(substitutions, PORT=port, MODULES=kamailio_modules(), REALM=REALM)
    for key, value in substitutions.items():
        cfg = cfg.replace(f"@{key}@", str(value))
    cfg_path = os.path.join(base, "registrar.cfg")
    with open(cfg_path, "w") as f:
        f.write(cfg)
    argv = [
        shutil.which("kamailio"), "-f", cfg_path, "-DD", "-E", "-n", str(workers),
        "-x", "tlsf", "-m", "256", "-Y", rundir, "-P", os.path.join(rundir, "kamailio.pid"),
    ]
    proc = procs.start(argv, os.path.join(base, "kamailio.log"), cwd=base)
    wait_ready(port, proc)
    time.sleep(0.5)  # the remaining children
    return proc, port, process_tree(proc.pid)


def start_kamailio_memory(procs, workdir, users):
    from callcenter.passwords import sip_ha1

    base = os.path.join(workdir, "kamailio-memory")
    dbdir = os.path.join(base, "db")
    os.makedirs(dbdir)
    with open(os.path.join(dbdir, "htable"), "w") as f:
        f.write("key_name(str) key_type(int) value_type(int) key_value(str) expires(int)\n")
        for user, password in users:
            f.write(f"{user}:0:0:{sip_ha1(user, REALM, password)}:0\n")
    return _start_kamailio(procs, base, KAMAILIO_MEMORY_CFG, {"DBDIR": dbdir}, KAMAILIO_WORKERS) + (None,)


def start_kamailio_durable(procs, workdir, users, workers):
    """
    The SQLite file from Kamailio's own schema files (tables and their
    C{version} rows), the subscribers with HA1 only, in the default journal
    mode: Kamailio's C{db_set_journal_mode} is what turns WAL on, so the
    file's mode after the run shows the parameter took effect.
    """
    from callcenter.passwords import sip_ha1

    base = os.path.join(workdir, "kamailio-durable")
    os.makedirs(base)
    db_path = os.path.join(base, "kamailio.sqlite")
    db = sqlite3.connect(db_path)
    try:
        for name in KAMAILIO_SQLITE_SCHEMA_FILES:
            with open(os.path.join(KAMAILIO_SQLITE_SCHEMA, name)) as f:
                db.executescript(f.read())
        with db:
            db.executemany(
                "INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES (?, ?, '', ?, ?)",
                [
                    (user, KAMAILIO_DOMAIN, sip_ha1(user, REALM, password),
                     sip_ha1(f"{user}@{KAMAILIO_DOMAIN}", REALM, password))
                    for user, password in users
                ],
            )
    finally:
        db.close()
    # db_sqlite opens what follows "sqlite:///": an absolute path needs a
    # fourth slash.  With three, "tmp/..." still opens the file (Kamailio
    # runs in /) but db_set_journal_mode, keyed by the name, never applies.
    return _start_kamailio(
        procs, base, KAMAILIO_DURABLE_CFG, {"DBURL": f"sqlite:///{db_path}", "DBFILE": db_path}, workers
    ) + (db_path,)


def start_ours(procs, workdir, users, log_level):
    import sqlalchemy as sa

    from callcenter.passwords import sip_ha1
    from callcenter.store.schema import sip_accounts

    base = os.path.join(workdir, "ours")
    os.makedirs(base)
    db_path = os.path.join(base, "callcenter.sqlite")
    port, tcp_port = free_port(), free_port(socket.SOCK_STREAM)
    rtp = 40000 + 2 * secrets.randbelow(5000)
    config = os.path.join(base, "callcenter.toml")
    with open(config, "w") as f:
        f.write(
            f"""\
[server]
node = "bench"
shutdown_timeout = 2.0

[storage]
url = "sqlite:///{db_path}"

[log]
format = "text"
level = "{log_level}"
file = "{os.path.join(base, 'server.log')}"

[telephony]
udp = "127.0.0.1:{port}"
tcp = "tcp:{tcp_port}:interface=127.0.0.1"
realm = "{REALM}"
digest_algorithms = ["MD5"]
# One SIPp on 127.0.0.1 sends everything: no per-source throttling
# (the guard still runs for every request).
request_rate = 100000
request_burst = 1000000
media_address = "127.0.0.1"
rtp_port_min = {rtp}
rtp_port_max = {rtp + 99}
"""
        )
    subprocess.run(
        [venv_bin("callcenter"), "db", "upgrade", "--config", config],
        check=True, cwd=base, stdout=subprocess.DEVNULL,
    )
    engine = sa.create_engine(f"sqlite:///{db_path}")
    try:
        with engine.begin() as connection:
            connection.execute(
                sip_accounts.insert(),
                [
                    {
                        "username": user,
                        "display_name": f"bench {user}",
                        "realm": REALM,
                        "ha1_md5": sip_ha1(user, REALM, password, "MD5"),
                        "ha1_sha256": sip_ha1(user, REALM, password, "SHA-256"),
                        "enabled": True,
                    }
                    for user, password in users
                ],
            )
    finally:
        engine.dispose()
    argv = [venv_bin("twistd"), "--pidfile=", "-n", "callcenter", "--config", config]
    proc = procs.start(argv, os.path.join(base, "twistd.out"), cwd=base)
    wait_ready(port, proc)
    return proc, port, [proc.pid], db_path


# -- what is on disk ------------------------------------------------------------


def _read_only(db_path):
    return sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)


def count_rows(db_path, table):
    db = _read_only(db_path)
    try:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        db.close()


def journal_mode(db_path):
    """The file's journal mode: WAL is recorded in the file, the others are per connection."""
    db = _read_only(db_path)
    try:
        return db.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        db.close()


def commit_latency(directory, commits=200):
    """
    Milliseconds per one-row SQLite commit (WAL, synchronous FULL: one
    fsync of the WAL each) in C{directory}, median and 90th percentile:
    what one write-through registration waits for on this filesystem now
    (other work on the machine changes it several times over).
    """
    path = os.path.join(directory, "fsync-probe.sqlite")
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("CREATE TABLE probe (id INTEGER PRIMARY KEY, value TEXT)")
        times = []
        for _ in range(commits):
            started = time.perf_counter()
            db.execute("INSERT INTO probe (value) VALUES (?)", ("x" * 200,))
            times.append((time.perf_counter() - started) * 1000)
    finally:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(path + suffix)
            except FileNotFoundError:
                pass
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.9)]


def binding_row_check(db_path, table, column):
    """For check_digest: the binding must be in C{table} of C{db_path} when the 200 arrives."""

    def check(user):
        db = _read_only(db_path)
        try:
            rows = db.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (str(user),)).fetchone()[0]
        finally:
            db.close()
        if rows != 1:
            raise RuntimeError(f"200 for {user} but {rows} rows for it in {table}: not written before the 200")

    return check


# Where each registrar keeps its bindings on disk: table, user column.
BINDING_TABLES = {"kamailio-durable": ("location", "username"), "ours": ("sip_bindings", "aor")}


_SYNCHRONOUS = {"0": "OFF", "1": "NORMAL", "2": "FULL", "3": "EXTRA"}


def sqlite_library():
    """
    The version and default synchronous settings of libsqlite3.so.0, the
    library Kamailio's db_sqlite.so is linked against (ctypes resolves the
    same name the same way).
    """
    import ctypes

    lib = ctypes.CDLL("libsqlite3.so.0")
    lib.sqlite3_libversion.restype = ctypes.c_char_p
    lib.sqlite3_compileoption_get.restype = ctypes.c_char_p
    lib.sqlite3_compileoption_get.argtypes = [ctypes.c_int]
    options, i = {}, 0
    while (option := lib.sqlite3_compileoption_get(i)) is not None:
        name, _, value = option.decode().partition("=")
        options[name] = value
        i += 1
    # Not compiled in: SQLite's own defaults (FULL; in WAL mode, as outside it).
    synchronous = options.get("DEFAULT_SYNCHRONOUS", "2")
    wal_synchronous = options.get("DEFAULT_WAL_SYNCHRONOUS", synchronous)
    return lib.sqlite3_libversion().decode(), _SYNCHRONOUS[synchronous], _SYNCHRONOUS[wal_synchronous]


def registered_pairs(history, port, users):
    """
    Distinct (user, contact) pairs that SIPp registered: each run starts the
    injection file from its first line and has a port (so a contact) of its
    own; plus check_digest's one.  Exact when nothing failed.
    """
    runs = [(ok, failed) for p, ok, failed in history if p == port]
    return 1 + sum(min(ok, users) for ok, _ in runs), sum(failed for _, failed in runs)


def sqlite_errors(log_path):
    try:
        with open(log_path, errors="replace") as f:
            return sum(1 for line in f if "sqlite" in line.lower() and "ERROR" in line)
    except OSError:
        return 0


def disk_report(name, db_path, sipp, port, args, commit_ms):
    if db_path is None:
        return None
    table_name = BINDING_TABLES[name][0]
    expected, failed = registered_pairs(sipp.history, port, args.users)
    report = {
        "table": table_name,
        "rows": count_rows(db_path, table_name),
        "expected": expected,
        "failed": failed,
        "journal_mode": journal_mode(db_path),
        "commit_ms": commit_ms,
    }
    if name == "kamailio-durable":
        report["errors"] = sqlite_errors(os.path.join(os.path.dirname(db_path), "kamailio.log"))
    return report


def print_disk(results):
    version, synchronous, wal_synchronous = sqlite_library()
    print(f"\nSQLite (libsqlite3 {version}; its defaults: synchronous {synchronous}, in WAL {wal_synchronous}):")
    for r in results:
        d = r.get("disk")
        if d is None:
            continue
        if r["name"] == "kamailio-durable":
            default = wal_synchronous if d["journal_mode"] == "wal" else synchronous
            settings = (
                f"journal_mode {d['journal_mode']} (db_set_journal_mode), synchronous {default} "
                "(library default, db_sqlite 5.6 sets none), busy timeout 0 (same), "
                "one autocommit transaction per INSERT/UPDATE"
            )
            errors = f", {d['errors']} SQLite errors in kamailio.log"
        else:
            settings = (
                f"journal_mode {d['journal_mode']}, synchronous FULL, busy timeout 10 s "
                "(callcenter/store/database.py), group commit"
            )
            errors = ""
        print(f"  {r['name']}: {settings}")
        print(
            f"    {d['table']}: {d['rows']} rows; SIPp registered {d['expected']} distinct "
            f"user/contact pairs (exact when none failed; {d['failed']} failed){errors}"
        )
        print(
            "    one-row commit (WAL, FULL) in the same directory just before: "
            f"median {d['commit_ms'][0]:.2f} ms, p90 {d['commit_ms'][1]:.2f} ms"
        )


# -- profile -------------------------------------------------------------------


def profile_ours(sipp, port, pid, rate, args, out_dir):
    py_spy = venv_bin("py-spy")
    os.makedirs(out_dir, exist_ok=True)
    raw = os.path.join(out_dir, "ours.pyspy.txt")
    duration = args.profile_seconds
    calls = int(rate * (duration + 4))
    spy = subprocess.Popen(
        # Blocking sampling: --nonblocking gave torn stacks.
        [py_spy, "record", "--pid", str(pid), "--duration", str(duration), "--rate", "100",
         "--format", "raw", "--threads", "-o", raw] + (["--gil"] if args.profile_gil else []),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        result = sipp.run(port, [pid], rate, calls, open_limit(rate), duration * 4 + 20)
        spy.wait(duration + 30)
    finally:
        if spy.poll() is None:
            os.killpg(spy.pid, signal.SIGKILL)
            spy.wait()
    log(
        f"  profiled run at -r {rate}: {result['ok']} ok, {result['failed']} failed, "
        f"{result['reg_s']:.0f} reg/s, CPU {result['cpu_pct']:.1f} %"
    )
    if not os.path.exists(raw):
        log(f"  py-spy wrote nothing: {spy.stderr.read().decode()[-400:]}")
        return
    spy.stderr.close()
    summarize_profile(raw, args.top)


_FRAME = re.compile(r"(.*) \((.*?):\d+\)$")

# Where a sample's time goes: the first of these, from the innermost frame out.
_WAITS = ("doPoll", "Condition.wait", "Event.wait", "lock.acquire")

_CATEGORIES = (
    (lambda fn, path: fn.endswith(_WAITS), "waiting: epoll_wait / Condition.wait (idle, or waiting for the GIL)"),
    (lambda fn, path: fn.endswith("do_commit"), "SQLite COMMIT (fsync)"),
    (lambda fn, path: fn.endswith(("do_execute", "do_execute_no_params", "do_begin")), "SQLite statements"),
    (lambda fn, path: path.startswith("sqlalchemy/"), "SQLAlchemy (compile, cache keys, rows)"),
    (lambda fn, path: path.startswith(("twisted/logger/", "callcenter/log.py", "logging/")), "logging"),
    (lambda fn, path: path.startswith("callcenter/sip/message.py"), "SIP parse/serialise"),
    (lambda fn, path: path.startswith("callcenter/sip/digest.py"), "digest"),
    (lambda fn, path: path.startswith("callcenter/sip/transaction.py"), "SIP transactions"),
    (lambda fn, path: path.startswith("callcenter/"), "other callcenter code"),
    (lambda fn, path: path.startswith("twisted/internet/udp.py"), "UDP socket I/O"),
    (lambda fn, path: path.startswith("twisted/"), "Twisted (reactor, Deferreds, thread pool)"),
)


def _frames(stack):
    out = []
    for frame in stack:
        m = _FRAME.match(frame)
        function, path = m.groups() if m else (frame, "")
        # py-spy shortens site-packages paths; make the rest relative to the checkout.
        if path.startswith(ROOT + "/"):
            path = path[len(ROOT) + 1 :]
        out.append((function, path))
    return out


def summarize_profile(raw, top):
    own = collections.Counter()
    inclusive = collections.Counter()
    threads = collections.Counter()
    categories = collections.Counter()
    total = 0
    with open(raw) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            count = int(count)
            frames = stack.split(";")
            thread = "?"
            while frames and frames[0].startswith(("process ", "thread ")):
                thread = frames.pop(0)  # --threads: "thread (TID): name" heads the stack
            threads[thread] += count
            frames = _frames(frames)
            total += count
            if not frames:
                continue
            if not frames[-1][0].endswith(_WAITS):
                own[f"{frames[-1][0]} ({frames[-1][1]})"] += count
            for function, path in set(frames):
                if path.startswith("callcenter/"):
                    inclusive[f"{function} ({path})"] += count
            for function, path in reversed(frames):
                category = next((name for test, name in _CATEGORIES if test(function, path)), None)
                if category:
                    break
            categories[category or "other (stdlib)"] += count
    if not total:
        log("  profile: no samples")
        return

    def show(title, counter, n):
        print(f"  {title}:")
        for name, count in counter.most_common(n):
            print(f"    {100 * count / total:5.1f} %  {name}")

    print(f"\nProfile of our server: {total} samples of threads not idle (100 Hz per thread)")
    show("by thread", threads, 5)
    show(f"top {top} functions by own time (waits left out)", own, top)
    show(f"top {top} of our functions by inclusive time", inclusive, top)
    show("by category (innermost frame that tells)", categories, len(_CATEGORIES) + 1)
    print()


# -- main ----------------------------------------------------------------------


def table(results):
    by_name = {r["name"]: r for r in results}
    ours = by_name.get("ours")
    rows = [
        ("implementation", "reg/s", "failed", "CPU %", "CPU us/reg", "SIPp CPU %",
         "fails at -r", "closed-loop reg/s", "closed CPU %", "ours/this reg/s", "ours/this closed"),
    ]
    for r in results:
        o, c = r["open"], r["closed"]
        if ours is not None and r is not ours:
            ratios = (f"{ours['open']['reg_s'] / o['reg_s']:.3f}", f"{ours['closed']['reg_s'] / c['reg_s']:.3f}")
        else:
            ratios = ("-", "-")
        rows.append((
            r["name"], f"{o['reg_s']:.0f}", str(o["failed"]), f"{o['cpu_pct']:.1f}",
            f"{o['cpu_us_per_reg']:.1f}", f"{o['sipp_cpu_pct']:.1f}",
            str(o["failing_rate"]) if o["failing_rate"] else "-", f"{c['reg_s']:.0f}",
            f"{c['cpu_pct']:.1f}", *ratios,
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) if j == 0 else cell.rjust(w) for j, (cell, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if ours is None:
        return
    print()
    for r in results:
        if r is ours:
            continue
        print(
            f"ours/{r['name']}: sustained reg/s {ours['open']['reg_s'] / r['open']['reg_s']:.3f}, "
            f"closed-loop reg/s {ours['closed']['reg_s'] / r['closed']['reg_s']:.3f}, "
            f"CPU per registration {ours['open']['cpu_us_per_reg'] / r['open']['cpu_us_per_reg']:.1f}x"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10000, help="distinct SIP accounts (default 10000)")
    parser.add_argument("--seconds", type=float, default=6, help="length of each measured run")
    parser.add_argument("--concurrency", type=int, default=50, help="registrations in flight, closed loop")
    parser.add_argument("--probe-calls", type=int, default=1000)
    parser.add_argument("--max-calls", type=int, default=200000)
    parser.add_argument("--tries", type=int, default=5, help="open-loop runs at most per registrar")
    parser.add_argument("--only", nargs="+", choices=REGISTRARS, metavar="NAME",
                        help=f"run only these registrars ({', '.join(REGISTRARS)}; default all)")
    parser.add_argument("--durable-workers", type=int, default=1,
                        help="kamailio-durable's UDP workers (default 1: with more, their writes "
                        "collide and db_sqlite 5.6, with no busy timeout, answers 500)")
    parser.add_argument("--log-level", default="info", help="our server's [log] level (default info)")
    parser.add_argument("--profile", metavar="DIR", help="py-spy our server under load; stacks to DIR")
    parser.add_argument("--profile-seconds", type=int, default=15)
    parser.add_argument("--profile-gil", action="store_true",
                        help="sample only the thread holding the GIL: where Python CPU time goes")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()
    names = [name for name in REGISTRARS if name in (args.only or REGISTRARS)]
    check_prerequisites(names)

    def terminate(signum, frame):
        raise KeyboardInterrupt

    # SIGINT too: a shell without job control starts background jobs with it ignored.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, terminate)
    workdir = tempfile.mkdtemp(prefix="bench-register-")
    procs = Processes()
    results = []
    began = time.monotonic()
    try:
        users = make_users(args.users)
        injection = os.path.join(workdir, "users.csv")
        write_injection(injection, users)
        sipp = Sipp(workdir, injection)
        log(f"{args.users} users, SIPp {SCENARIO}, work dir {workdir}")
        starters = {
            "kamailio-memory": start_kamailio_memory,
            "kamailio-durable": lambda procs, workdir, users: start_kamailio_durable(
                procs, workdir, users, args.durable_workers
            ),
            "ours": lambda procs, workdir, users: start_ours(procs, workdir, users, args.log_level),
        }
        for name in names:
            commit_ms = commit_latency(workdir)
            proc, port, pids, db_path = starters[name](procs, workdir, users)
            log(f"{name} on udp 127.0.0.1:{port}, {len(pids)} processes (pid {proc.pid})")
            on_registered = binding_row_check(db_path, *BINDING_TABLES[name]) if db_path else None
            check_digest(port, *users[0], on_registered=on_registered)
            result = measure(name, sipp, port, pids, args)
            results.append(result)
            if name == "ours" and args.profile:
                # py-spy stops the process for each sample: give it headroom.
                rate = max(1, int(result["open"]["rate"] * 0.8))
                profile_ours(sipp, port, proc.pid, rate, args, args.profile)
            result["disk"] = disk_report(name, db_path, sipp, port, args, commit_ms)
            procs.stop(proc)
        print()
        table(results)
        print_disk(results)
        log(f"done in {time.monotonic() - began:.0f} s")
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        procs.stop_all()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
