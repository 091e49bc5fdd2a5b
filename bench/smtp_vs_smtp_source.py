"""
E-mail messages/s into Postfix's smtp-sink (Debian ``postfix``), side by
side in one run: our sender (L{callcenter.notify.smtp.sender.SmtpSender},
the whole send() path) and Postfix's own smtp-source as the reference.

    .venv/bin/python bench/smtp_vs_smtp_source.py [--messages 20000] [--runs 3]
        [--pool 4] [--depth 2] [--sessions N] [--profile FILE] [--quiet 20] [--quiet-wait 15]

One smtp-sink (``smtp-sink -u nobody -c 127.0.0.1:PORT 256``) takes both.
Passes alternate which goes first.

- ours: this process runs the reactor and drives the sender as the outbox
  does: C{sender.window} messages in flight (--pool connections x --depth
  messages each), the next one handed over as each is accepted.  Each
  message is an L{OutgoingMessage} made for it (a fill confirmation: a
  Chinese subject, a ~500-octet Chinese body, its own recipient and
  idempotency key) and composed by send() (MIME, RFC 2047 subject,
  base64 body, Message-ID), then sent on the pooled connections
  (PIPELINING: one round trip per message).
- smtp-source: ``smtp-source -c -d -m M -s S -l 500 -f from@x -t to@y``,
  S = --sessions (default: --pool, the same number of connections), its
  500-octet messages generated in C; -d keeps each session's connection
  for message after message, as ours does (without it smtp-source opens a
  connection per message, and measures that); it sends one message per
  session at a time.

Messages/s is the messages over the wall time of the pass; CPU is each
process's own (our process's rusage; smtp-source's from wait4; smtp-sink
from /proc/PID/task/*/schedstat) as % of one core and µs per message.
smtp-sink's counters (-c) must show every message of every pass.  The
machine's load during each pass is recorded (bench/_machine.py), and
before each pass the bench waits up to --quiet-wait s for the rest of the
machine to use under --quiet % of a core: the two cores are shared, and
smtp-source with smtp-sink needs both.

--profile FILE: one more pass of ours (not counted) under py-spy
(--nonblocking, 200 Hz, raw samples in FILE), and the top functions.
"""

import argparse
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE]

from _machine import (  # noqa: E402
    Children, MachineLoad, cpu_ns, interrupt_on_sigterm, log, top_functions, wait_for_quiet,
)

SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
BIN = os.path.dirname(sys.executable)

STOCKS = [
    ("600519", "贵州茅台", "1,688.00"), ("600036", "招商银行", "35.12"), ("000858", "五粮液", "142.30"),
    ("601318", "中国平安", "48.76"), ("300750", "宁德时代", "201.55"),
]


def fill_confirmation(n):
    """The n-th message as the outbox hands it over: a fill confirmation in Chinese, ~500 octets of body."""
    from callcenter.notify.message import OutgoingMessage

    code, name, price = STOCKS[n % len(STOCKS)]
    quantity = 100 * (1 + n % 50)
    body = (
        f"尊敬的客户 {n:08d}：\n"
        f"您的委托（委托编号 W{n:010d}）已成交。\n"
        f"证券：{code} {name}\n方向：买入\n成交数量：{quantity} 股\n成交价格：{price} 元\n"
        f"成交时间：2026-01-05 10:{n % 60:02d}:{n % 59:02d}\n"
        "如有疑问，请致电客服热线 95500 或登录网上营业厅查询。\n本邮件由系统自动发送，请勿直接回复。\n"
        "华安证券 客户服务中心"
    )
    return OutgoingMessage(
        n, "email", f"investor{n}@example.com", body, f"成交回报：{code} {name} 买入 {quantity} 股",
        idempotency_key=f"fill:W{n:010d}:investor{n}:email",
    )


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """smtp-sink, counting (-c) into a log the bench reads."""

    def __init__(self, children, directory):
        self.port = free_port()
        self.log_path = os.path.join(directory, "smtp-sink.log")
        self.process = children.start(
            [SMTP_SINK, "-u", "nobody", "-c", f"127.0.0.1:{self.port}", "256"], self.log_path
        )
        self.pid = self.process.pid
        deadline = time.monotonic() + 10
        import socket

        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit(f"smtp-sink did not start: {open(self.log_path).read()[-500:]}")
                time.sleep(0.05)

    def messages(self):
        """Messages smtp-sink has counted so far."""
        with open(self.log_path, "rb") as f:
            counts = re.findall(rb"mesg=(\d+)", f.read())
        return int(counts[-1]) if counts else 0


class Pass:
    def __init__(self, who, messages, seconds, cpu_seconds, sink_cpu_seconds, received, load):
        self.who = who
        self.messages = messages
        self.seconds = seconds
        self.cpu_seconds = cpu_seconds
        self.sink_cpu_seconds = sink_cpu_seconds
        self.received = received
        self.load = load

    @property
    def rate(self):
        return self.messages / self.seconds

    def describe(self):
        return (f"{self.who}: {self.messages} messages in {self.seconds:.2f} s = {self.rate:,.0f}/s; "
                f"CPU {100 * self.cpu_seconds / self.seconds:.0f}% of a core "
                f"({1e6 * self.cpu_seconds / self.messages:.0f} µs/message); "
                f"smtp-sink {100 * self.sink_cpu_seconds / self.seconds:.0f}%; "
                f"smtp-sink counted {self.received}; {self.load.describe()}")


def own_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def smtp_source_pass(sink, count, sessions):
    argv = [SMTP_SOURCE, "-c", "-d", "-m", str(count), "-s", str(sessions), "-l", "500",
            "-f", "notify@broker.example", "-t", "investor@example.com", f"127.0.0.1:{sink.port}"]
    before = sink.messages()
    sink_cpu = cpu_ns(sink.pid)
    started = time.monotonic()
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    load = MachineLoad([sink.pid, os.getpid(), process.pid])
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    load.finish()
    if process.returncode != 0:
        raise SystemExit(f"smtp-source failed ({process.returncode}): {process.stderr.read().decode()[-500:]}")
    process.stderr.close()
    time.sleep(0.2)  # smtp-sink prints its counters as each session ends
    return Pass("smtp-source", count, seconds, usage.ru_utime + usage.ru_stime,
                (cpu_ns(sink.pid) - sink_cpu) / 1e9, sink.messages() - before, load)


def our_pass(reactor, sender, sink, count, first):
    """Drive the sender as the outbox does; a Deferred firing with a L{Pass}."""
    from twisted.internet import defer

    from callcenter.notify.message import Accepted

    done = defer.Deferred()
    state = {"next": first, "in_flight": 0, "finished": 0, "failed": []}
    end = first + count
    window = sender.window
    before = sink.messages()
    sink_cpu = cpu_ns(sink.pid)
    load = MachineLoad([sink.pid, os.getpid()])
    cpu = own_cpu()
    started = time.monotonic()

    def finished(result):
        state["in_flight"] -= 1
        state["finished"] += 1
        if not isinstance(result, Accepted):
            state["failed"].append(result)
        if state["finished"] == count:
            seconds = time.monotonic() - started
            used = own_cpu() - cpu
            load.finish()
            reactor.callLater(0.2, lambda: done.callback(Pass(
                "ours", count, seconds, used, (cpu_ns(sink.pid) - sink_cpu) / 1e9, sink.messages() - before, load,
            )))
            return
        fill_window()

    def fill_window():
        while state["in_flight"] < window and state["next"] < end:
            message = fill_confirmation(state["next"])
            state["next"] += 1
            state["in_flight"] += 1
            sender.send(message).addBoth(finished)

    fill_window()

    def check(result):
        if state["failed"]:
            raise SystemExit(f"{len(state['failed'])} messages failed, e.g. {state['failed'][0]}")
        return result

    return done.addCallback(check)


def profile(reactor, sender, sink, count, first, path):
    spy = subprocess.Popen(
        [os.path.join(BIN, "py-spy"), "record", "--nonblocking", "-r", "200", "-f", "raw", "-o", path,
         "-p", str(os.getpid())],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    time.sleep(1.5)  # py-spy attaching

    def stop(result):
        spy.send_signal(signal.SIGINT)  # py-spy writes what it has and exits
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
        spy.stderr.close()
        return result

    return our_pass(reactor, sender, sink, count, first).addBoth(stop)


def report(args, passes, profiled):
    print()
    print(f"{args.messages} messages a pass, {args.runs} passes each; ours: pool {args.pool} x depth {args.depth} "
          f"(window {args.pool * args.depth}); smtp-source -d -s {args.sessions} -l 500")
    print()
    print("| sender | messages/s | CPU % of a core | CPU µs/message | smtp-sink CPU % | counted by smtp-sink |")
    print("|---|---|---|---|---|---|")
    medians = {}
    for who in ("ours", "smtp-source"):
        mine = [p for p in passes if p.who == who]
        rates = [p.rate for p in mine]
        medians[who] = statistics.median(rates)
        cpu = statistics.median(100 * p.cpu_seconds / p.seconds for p in mine)
        per = statistics.median(1e6 * p.cpu_seconds / p.messages for p in mine)
        sink = statistics.median(100 * p.sink_cpu_seconds / p.seconds for p in mine)
        counted = f"{sum(p.received for p in mine)} of {sum(p.messages for p in mine)}"
        print(f"| {who} | {medians[who]:,.0f} ({min(rates):,.0f}-{max(rates):,.0f}) | {cpu:.0f} | {per:.0f} "
              f"| {sink:.0f} | {counted} |")
    print()
    print(f"ours / smtp-source: {medians['ours'] / medians['smtp-source']:.2f}")
    if profiled:
        total, own, inclusive = profiled
        print()
        print(f"py-spy, ours: {total} samples")
        print("  own time:")
        for frame, n in own[:15]:
            print(f"    {100 * n / total:5.1f}%  {frame}")
        print("  inclusive:")
        for frame, n in [(f, n) for f, n in inclusive if "twisted/internet/" not in f][:15]:
            print(f"    {100 * n / total:5.1f}%  {frame}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages a pass")
    parser.add_argument("--runs", type=int, default=3, help="passes of each")
    parser.add_argument("--pool", type=int, default=4, help="our connections")
    parser.add_argument("--depth", type=int, default=2, help="our messages in flight per connection")
    parser.add_argument("--sessions", type=int, help="smtp-source's parallel sessions (default: --pool)")
    parser.add_argument("--profile", metavar="FILE", help="py-spy one more pass of ours, raw samples in FILE")
    parser.add_argument("--quiet", type=float, default=20, help="%% of a core others may use before a pass")
    parser.add_argument("--quiet-wait", type=float, default=15, help="at most this many s waiting for --quiet")
    args = parser.parse_args()
    args.sessions = args.sessions or args.pool
    for path in (SMTP_SINK, SMTP_SOURCE):
        if not os.path.exists(path):
            raise SystemExit(f"missing {path}: apt-get install postfix")
    if args.profile and not os.path.exists(os.path.join(BIN, "py-spy")):
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")

    from twisted.internet import defer, task

    from callcenter.notify.smtp.relays import Relay
    from callcenter.notify.smtp.sender import SmtpSender

    interrupt_on_sigterm()
    children = Children()
    directory = tempfile.mkdtemp(prefix="smtp-bench-")
    results = {"passes": [], "profile": None}

    @defer.inlineCallbacks
    def run(reactor):
        sink = Sink(children, directory)
        log(f"smtp-sink pid {sink.pid} on 127.0.0.1:{sink.port}")
        sender = SmtpSender(
            reactor, [Relay("127.0.0.1", sink.port, starttls="off")], "notify@broker.example",
            from_name="华安证券 客户服务中心", pool_size=args.pool, pipeline_depth=args.depth,
        )
        sender.startService()
        try:
            first = 0
            # A warm-up pass of ours (imports, caches, connections): not counted.
            yield our_pass(reactor, sender, sink, min(2000, args.messages), first)
            first += args.messages
            for run_number in range(args.runs):
                order = ("ours", "smtp-source") if run_number % 2 == 0 else ("smtp-source", "ours")
                for who in order:
                    wait_for_quiet(args.quiet, args.quiet_wait, [sink.pid, os.getpid()])
                    if who == "ours":
                        measured = yield our_pass(reactor, sender, sink, args.messages, first)
                        first += args.messages
                    else:
                        measured = smtp_source_pass(sink, args.messages, args.sessions)
                    log(measured.describe())
                    results["passes"].append(measured)
            if args.profile:
                log(f"py-spy on ours (not counted) into {args.profile}")
                yield profile(reactor, sender, sink, args.messages, first, args.profile)
                if os.path.exists(args.profile):
                    results["profile"] = top_functions(args.profile, limit=40)
        finally:
            yield sender.stopService()

    try:
        task.react(lambda reactor: run(reactor))
    except SystemExit as e:
        if e.code:
            raise
    finally:
        children.stop_all()
        shutil.rmtree(directory, ignore_errors=True)
    if results["passes"]:
        report(args, results["passes"], results["profile"])


if __name__ == "__main__":
    main()
