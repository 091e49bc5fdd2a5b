"""
submit_sm/s through our SMS sender, side by side in one run with smpplib
(a second, independent ESME), against the same SMSC: node-smpp (npm
``smpp``, tests/notify/smsc/smsc.js, installed by ``make test``), on
127.0.0.1.

    .venv/bin/python bench/smpp_submit.py [--messages 20000] [--window 100]
        [--runs 3] [--text zh|ascii] [--no-receipts] [--no-smpplib] [--profile DIR]

Ours: L{callcenter.notify.smpp.sender.SMPPSender} in a child process on
Twisted's default reactor, driven as the outbox drives it: --window
send()s at once, the next one as each fires, every one a whole send()
(address parsing, text encoding, the submit_sm, the Deferred), the
messages built before the clock starts.  Receipts (a deliver_sm for every
message, answered with deliver_sm_resp) go to a handler that counts them.

smpplib 2.2 (PyPI; NOT a project dependency: ``.venv/bin/pip install
smpplib`` for this bench only, or pass --no-smpplib): blocking sockets, no
window of its own, so the child keeps --window submit_sm outstanding by
sending the next one from its submit_sm_resp handler; it answers receipts
itself.  The same pre-encoded text, TON/NPI and registered_delivery.

The text: --text zh (default) is a price alert in Chinese, 44 characters,
one UCS2 segment, what the product sends most; --text ascii a 38-character
GSM one.  Each pass has a fresh SMSC; passes alternate which client goes
first.  Reported per pass and as medians: messages/s (all submit_sm
answered), the time until the last receipt, the client's CPU (its own
process time) and the SMSC's (schedstat, every thread), both over the same
interval, as % of one core, and what the rest of the machine did meanwhile
(other benches and test suites share the two cores).  The SMSC (one node
thread) is the first limit: read the CPU columns before the rates.

--profile DIR: one more pass of ours under py-spy (100 Hz), the raw
samples in DIR and the functions with the most samples printed.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
# The SMSC's start/stop helper is the tests' (one way to run it).
sys.path.insert(0, os.path.join(ROOT, "tests", "notify"))

from _machine import MachineLoad, cpu_ns, log, top_functions  # noqa: E402
from smsc_peer import SMSCProcess  # noqa: E402

SYSTEM_ID, PASSWORD = "bench", "bench"
DESTINATION = "8613800138000"
TEXTS = {
    "zh": "【行情报警】贵州茅台(600519)最新价1688.00元，涨幅3.05%，已触及您设置的1680.00元。",
    "ascii": "ALERT 600519 last 1688.00 (+3.05%) >= 1680.00",
}
DEADLINE = 300


def smsc_cpu_ns(pid):
    return cpu_ns(pid)


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# The clients, each run in a child process: `--client ours|smpplib`.


def run_ours(args):
    from twisted.internet import defer, endpoints, reactor

    from callcenter.notify.message import OutgoingMessage
    from callcenter.notify.smpp.sender import SMPPSender

    sender = SMPPSender(
        reactor, endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", args.port), SYSTEM_ID, PASSWORD,
        source_addr="10690", window=args.window,
    )
    total = args.messages
    text = TEXTS[args.text]
    messages = [OutgoingMessage(n, "sms", "+" + DESTINATION, text) for n in range(total)]
    state = {"next": 0, "accepted": 0, "failed": 0, "receipts": 0}
    result = {}
    finished = defer.Deferred()

    def mark(name):
        result[name] = time.perf_counter()
        result[name + "_cpu"] = time.process_time()
        result[name + "_smsc"] = smsc_cpu_ns(args.smsc_pid)

    def check_done():
        if "accepted" not in result and state["accepted"] + state["failed"] == total:
            mark("accepted")
        if "accepted" in result and (state["receipts"] >= state["accepted"] or not args.receipts):
            if "receipts" not in result:
                mark("receipts")
                finished.callback(None)

    def receipt(_):
        state["receipts"] += 1
        if state["receipts"] >= state["accepted"] and "accepted" in result:
            check_done()

    def next_one(_=None):
        n = state["next"]
        if n < total:
            state["next"] = n + 1
            sender.send(messages[n]).addCallbacks(accepted, failed)

    def accepted(_):
        state["accepted"] += 1
        next_one()
        check_done()

    def failed(f):
        state["failed"] += 1
        next_one()
        check_done()

    sender.set_receipt_handler(receipt)

    @defer.inlineCallbacks
    def main():
        sender.startService()
        # One message first: the bind is not measured.
        yield sender.send(OutgoingMessage(-1, "sms", "+" + DESTINATION, text))
        state["receipts"] = 0
        while state["receipts"] == 0 and args.receipts:
            yield deferLater(0.01)
        state["receipts"] = 0
        mark("start")
        for _ in range(args.window):
            next_one()
        yield finished.addTimeout(DEADLINE, reactor)
        yield sender.stopService()

    def deferLater(seconds):
        from twisted.internet import task

        return task.deferLater(reactor, seconds, lambda: None)

    def done(outcome):
        if isinstance(outcome, defer.Failure):
            outcome.printTraceback()
        reactor.stop()

    reactor.callWhenRunning(lambda: main().addBoth(done))
    reactor.run()
    report(args, result, state)


def run_smpplib(args):
    import logging

    import smpplib.client
    import smpplib.consts

    logging.disable(logging.WARNING)
    total = args.messages
    text = TEXTS[args.text]
    if args.text == "ascii":
        short_message, data_coding = text.encode("ascii"), smpplib.consts.SMPP_ENCODING_DEFAULT
    else:
        short_message, data_coding = text.encode("utf-16-be"), smpplib.consts.SMPP_ENCODING_ISO10646
    client = smpplib.client.Client("127.0.0.1", args.port, allow_unknown_opt_params=True, timeout=DEADLINE)
    state = {"next": 0, "accepted": 0, "failed": 0, "receipts": 0}
    result = {}

    def mark(name):
        result[name] = time.perf_counter()
        result[name + "_cpu"] = time.process_time()
        result[name + "_smsc"] = smsc_cpu_ns(args.smsc_pid)

    def submit():
        client.send_message(
            source_addr_ton=0, source_addr_npi=0, source_addr="10690",
            dest_addr_ton=1, dest_addr_npi=1, destination_addr=DESTINATION,
            short_message=short_message, data_coding=data_coding, esm_class=0, registered_delivery=1,
        )

    def next_one():
        if state["next"] < total:
            state["next"] += 1
            submit()

    def sent(pdu, **kwargs):
        state["accepted"] += 1
        next_one()

    def received(pdu, **kwargs):
        state["receipts"] += 1

    def refused(pdu):
        state["failed"] += 1
        next_one()

    warm = []
    client.set_message_sent_handler(lambda pdu, **kwargs: warm.append(pdu))
    client.set_message_received_handler(received)
    client.set_error_pdu_handler(refused)
    client.connect()
    client.bind_transceiver(system_id=SYSTEM_ID, password=PASSWORD)
    submit()  # one first: the bind is not measured
    while not warm or (args.receipts and state["receipts"] == 0):
        client.read_once()
    client.set_message_sent_handler(sent)
    state["receipts"] = 0
    mark("start")
    for _ in range(args.window):
        next_one()
    while state["accepted"] + state["failed"] < total:
        client.read_once()
    mark("accepted")
    while args.receipts and state["receipts"] < state["accepted"]:
        client.read_once()
    mark("receipts")
    client.unbind()
    client.disconnect()
    report(args, result, state)


def report(args, result, state):
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "accepted": state["accepted"],
        "failed": state["failed"],
        "receipts": state["receipts"],
        "submit_seconds": result["accepted"] - result["start"],
        "receipt_seconds": result["receipts"] - result["start"],
        "client_cpu": result["receipts_cpu"] - result["start_cpu"],
        "client_cpu_submit": result["accepted_cpu"] - result["start_cpu"],
        "smsc_cpu": (result["receipts_smsc"] - result["start_smsc"]) / 1e9,
        "max_rss_kb": usage.ru_maxrss,
    }), flush=True)


# The orchestrator.


def one_pass(args, client, profile_dir=None):
    with tempfile.TemporaryDirectory(prefix="smpp-bench-") as scratch:
        smsc = SMSCProcess(SYSTEM_ID, PASSWORD, receipts=args.receipts).start()
        try:
            argv = [sys.executable, os.path.abspath(__file__), "--client", client, "--port", str(smsc.port),
                    "--smsc-pid", str(smsc.pid), "--messages", str(args.messages), "--window", str(args.window),
                    "--text", args.text]
            if not args.receipts:
                argv.append("--no-receipts")
            if profile_dir:
                raw = os.path.join(profile_dir, f"{client}.txt")
                py_spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
                argv = [py_spy if os.path.exists(py_spy) else "py-spy", "record", "--rate", "100", "--nonblocking",
                        "--format", "raw", "--output", raw, "--"] + argv
            before = children_cpu()
            child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=scratch)
            load = MachineLoad([smsc.pid])
            try:
                stdout, stderr = child.communicate(timeout=DEADLINE + 60)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
            load.finish()
            # The client has exited (no /proc entry left to read): its whole
            # CPU, from its rusage, is not the rest of the machine's.
            seconds = time.monotonic() - load._started
            load.others_pct = max(0.0, load.others_pct - 100 * (children_cpu() - before) / seconds)
        finally:
            smsc.stop()
    if child.returncode != 0:
        raise RuntimeError(f"{client} failed ({child.returncode}):\n{stdout}\n{stderr}")
    figures = json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])
    figures["client"] = client
    figures["machine"] = load.describe()
    return figures


def describe(f):
    rate = f["accepted"] / f["submit_seconds"]
    seconds = f["receipt_seconds"]
    return (
        f"{f['client']:8} {rate:9,.0f} msg/s  {f['accepted']:,} accepted, {f['failed']} refused, "
        f"{f['receipts']:,} receipts in {seconds:.2f} s; CPU client {100 * f['client_cpu'] / seconds:3.0f}% "
        f"({1e6 * f['client_cpu'] / max(1, f['accepted']):.0f} us/msg), SMSC {100 * f['smsc_cpu'] / seconds:3.0f}% "
        f"of a core; {f['machine']}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--text", choices=sorted(TEXTS), default="zh")
    parser.add_argument("--no-receipts", dest="receipts", action="store_false")
    parser.add_argument("--no-smpplib", dest="smpplib", action="store_false")
    parser.add_argument("--profile", metavar="DIR")
    parser.add_argument("--client", choices=["ours", "smpplib"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--smsc-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client == "ours":
        return run_ours(args)
    if args.client == "smpplib":
        return run_smpplib(args)

    clients = ["ours"]
    if args.smpplib:
        try:
            import smpplib  # noqa: F401
        except ImportError:
            log("smpplib is not installed (.venv/bin/pip install smpplib): measuring ours alone")
        else:
            clients.append("smpplib")
    log(f"{args.messages:,} messages ({args.text}, one segment), window {args.window}, "
        f"receipts {'on' if args.receipts else 'off'}, {args.runs} passes each")
    results = {client: [] for client in clients}
    for run in range(args.runs):
        order = clients if run % 2 == 0 else clients[::-1]
        for client in order:
            figures = one_pass(args, client)
            results[client].append(figures)
            print(f"pass {run + 1}: {describe(figures)}", flush=True)
    print("medians:")
    for client, passes in results.items():
        rates = [f["accepted"] / f["submit_seconds"] for f in passes]
        client_cpu = [100 * f["client_cpu"] / f["receipt_seconds"] for f in passes]
        smsc_cpu = [100 * f["smsc_cpu"] / f["receipt_seconds"] for f in passes]
        per_message = [1e6 * f["client_cpu"] / f["accepted"] for f in passes]
        print(f"  {client:8} {statistics.median(rates):9,.0f} msg/s   CPU client {statistics.median(client_cpu):3.0f}% "
              f"({statistics.median(per_message):.0f} us/msg), SMSC {statistics.median(smsc_cpu):3.0f}% of a core")
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
        one_pass(args, "ours", profile_dir=os.path.abspath(args.profile))
        total, own, inclusive = top_functions(os.path.join(os.path.abspath(args.profile), "ours.txt"))
        print(f"py-spy, ours: {total} samples; most samples in the function itself:")
        for frame, count in own:
            print(f"  {100 * count / total:5.1f}%  {frame}")
        print("including what they call:")
        for frame, count in inclusive:
            print(f"  {100 * count / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
