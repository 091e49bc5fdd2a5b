"""
What the SIPp benches measure around the server: the CPU (schedstat, every
thread) and memory of a process, what the rest of the machine does
meanwhile (other benches and test suites share the two cores), the child
processes a bench starts (SIPp, tcpdump), SIPp's statistics file, and
py-spy's output summarised by function.
"""

import collections
import contextlib
import csv
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# What a process spends, from /proc, and the children the bench starts.


def cpu_ns(pid):
    """
    Nanoseconds on CPU of every thread of C{pid}, from schedstat: exact,
    where /proc/stat's ticks under-report short bursts on these VMs.
    """
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # A thread that ended between the listing and the read.
    return total


def cpu_ticks(pid):
    """(user, system) clock ticks of C{pid}, all threads: for the user/kernel split."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def with_children(pid):
    """C{pid} and its child processes (a server's media workers): all of them are ours."""
    pids = {pid}
    for children in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(children) as listing:
                pids.update(int(child) for child in listing.read().split())
        except OSError:
            continue  # The thread ended meanwhile.
    return pids


def thread_count(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def machine_busy():
    """(busy, total) jiffies of every CPU, from /proc/stat: what else ran on the machine."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def wait_until(predicate, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class Children:
    """
    SIPp, tcpdump: each in its own session, so that a Ctrl-C at the terminal
    reaches the bench alone and the bench stops them, by process id.
    """

    def __init__(self):
        self._procs = []

    def start(self, argv, log_path, **kwargs):
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, **kwargs,
            )
        self._procs.append(proc)
        return proc

    def stop(self, proc, sig=signal.SIGTERM, grace=5.0):
        """C{sig} to its process group, SIGKILL after C{grace} s; the exit status."""
        for current in (sig, signal.SIGKILL):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, current)  # start_new_session: the group id is the pid.
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        if proc in self._procs:
            self._procs.remove(proc)
        return proc.returncode

    def stop_all(self):
        for proc in reversed(list(self._procs)):
            self.stop(proc, grace=2.0)


def load_cpus(args):
    """With --pin, the load generator and the capture run on the second core, the server on the first."""
    return ["taskset", "-c", "1"] if args.pin else []


@contextlib.contextmanager
def bench_run(prefix, keep_scratch=False):
    """
    (L{Children}, a scratch directory) for a bench's runs: a Ctrl-C or
    SIGTERM ends it with status 130, and the children are stopped and the
    scratch directory removed (unless C{keep_scratch}) however it ends.
    """
    interrupt_on_sigterm()
    children = Children()
    scratch = tempfile.mkdtemp(prefix=prefix)
    try:
        yield children, scratch
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        raise SystemExit(130)
    finally:
        children.stop_all()
        if keep_scratch:
            log(f"scratch kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def interrupt_on_sigterm():
    """SIGTERM ends the bench as Ctrl-C does, through every cleanup path."""

    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)


# The rest of the machine: other benches and test suites share the two cores.


def process_cpu():
    """{pid: (name, user+system clock ticks)} of every process (all its threads)."""
    snapshot = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                head, _, tail = f.read().rpartition(")")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue  # Ended meanwhile.
        fields = tail.split()
        name = " ".join(a.decode(errors="replace") for a in argv[:3] if a)[:70] or head.partition("(")[2]
        snapshot[int(entry)] = (name, int(fields[11]) + int(fields[12]))
    return snapshot


def busiest_others(before, after, seconds, ours, limit=3):
    """[(percent of a core, name)] of the processes not in C{ours} that used the most CPU between two snapshots."""
    hertz = os.sysconf("SC_CLK_TCK")
    used = []
    for pid, (name, ticks) in after.items():
        if pid in ours:
            continue
        share = 100 * (ticks - before.get(pid, (name, ticks))[1]) / hertz / seconds
        if share >= 1:
            used.append((share, name))
    return sorted(used, reverse=True)[:limit]


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


class MachineLoad:
    """What the rest of the machine did over an interval: from /proc/stat and per process."""

    def __init__(self, ours):
        self.ours = set(ours)
        self.loadavg = loadavg()
        self._busy = machine_busy()
        self._ours = sum(cpu_ns(p) for p in self.ours)
        self._processes = process_cpu()
        self._started = time.monotonic()

    def finish(self):
        seconds = time.monotonic() - self._started
        busy, total = (a - b for a, b in zip(machine_busy(), self._busy))
        mine = (sum(cpu_ns(p) for p in self.ours) - self._ours) / 1e9 / seconds
        # /proc/stat under-counts short bursts on these VMs: a lower bound.
        self.others_pct = max(0.0, 200 * busy / total - 100 * mine) if total else 0.0
        self.busiest = busiest_others(self._processes, process_cpu(), seconds, self.ours)
        return self

    def describe(self):
        names = ", ".join(f"{name} {share:.0f}%" for share, name in self.busiest) or "none over 1%"
        return f"load average {self.loadavg:.2f}, others {self.others_pct:.0f}% of a core ({names})"


def wait_for_quiet(threshold, patience, ours):
    """
    Wait (at most C{patience} s) until the rest of the machine uses under
    C{threshold}% of a core over 2 s: another bench or a test suite on the
    two cores would be measured as our server's lateness.  Returns
    (seconds waited, the last L{MachineLoad}).
    """
    started = time.monotonic()
    deadline = started + patience
    while True:
        load = MachineLoad(ours)
        time.sleep(2)
        load.finish()
        if load.others_pct < threshold or time.monotonic() >= deadline:
            if load.others_pct >= threshold:
                log(f"the machine is busy after {patience:.0f} s: {load.describe()}; measuring anyway")
            return time.monotonic() - started - 2, load
        log(f"waiting for a quiet machine: {load.describe()}")


# SIPp's statistics and py-spy's samples.


def sipp_stats(path):
    try:
        with open(path) as f:
            rows = list(csv.DictReader(f, delimiter=";"))
    except OSError:
        return {}
    return rows[-1] if rows else {}


def top_functions(raw_path, limit=12):
    """(own, inclusive) shares of samples by function, from py-spy's raw (collapsed) output."""
    own, inclusive, total = collections.Counter(), collections.Counter(), 0
    with open(raw_path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            count = int(count)
            frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")[1:]]  # [0] is the thread.
            if not frames:
                continue
            total += count
            own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
    # Frames under which every sample falls (twistd's run, the reactor's loop) say nothing.
    inclusive = collections.Counter({frame: n for frame, n in inclusive.items() if n < 0.98 * total})
    return total, own.most_common(limit), inclusive.most_common(limit)


def print_profile(profile):
    """L{top_functions}' summary, indented under a bench's details."""
    total, own, inclusive = profile
    print(f"  py-spy: {total} samples of active Python (100/s)")
    print("  own time:")
    for frame, count in own:
        print(f"    {100 * count / total:5.1f}%  {frame}")
    print("  inclusive:")
    for frame, count in inclusive:
        print(f"    {100 * count / total:5.1f}%  {frame}")
