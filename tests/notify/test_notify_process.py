"""
The real ``twistd callcenter`` process with trading and notify, against
independent peers on real sockets: npm's node-smpp as the SMSC, aiosmtpd
as the SMTP relay, Debian's Net::SNPP::Server as the paging terminal.  A
fill in the simulated exchange and a price alert reach the investor by
SMS, e-mail and pager, in Mandarin; the SMSC killed and restarted, and the
server SIGKILLed with a message in flight, lose nothing and send nothing
the SMSC acknowledged twice.

These watch other processes, so they poll (the peers' logs, the store)
until a deadline; nothing asserts on how long anything took.
"""

import email
import email.policy
import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from callcenter.demo import load_demo
from callcenter.notify.subscriptions import subscribe, unsubscribe
from callcenter.store.database import Database
from processes import DEADLINE, TESTS, BIN, ServerProcess, server_config
from smsc_peer import SMSCProcess
from smtp_peer import EphemeralController
from trading_client import call, login, until_final

ETC = Path(TESTS).parent / "etc"
SMPP_PASSWORD = "smpp-pw"
TERMINAL = Path(__file__).parent / "snpp_server.pl"


def until(check, what, deadline=DEADLINE):
    """C{check()}'s first true value, asked every 50 ms until C{deadline} seconds have passed."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {deadline} s")


class Mailbox:
    """aiosmtpd's handler: every message received, parsed."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((envelope.rcpt_tos, parsed))
        return "250 OK queued"


class PagingTerminal:
    """tests/notify/snpp_server.pl as a child process; its pages read as they come."""

    def __init__(self):
        self.process = subprocess.Popen(["perl", str(TERMINAL), "--port", "0"], stdout=subprocess.PIPE, text=True)
        self.pages = []
        lines = queue.Queue()
        threading.Thread(target=self._read, args=(lines,), daemon=True).start()
        first = lines.get(timeout=DEADLINE)
        assert first.startswith("LISTENING "), first
        self.port = int(first.split()[1])

    def _read(self, lines):
        for line in self.process.stdout:
            if line.startswith("PAGE "):
                self.pages.append(json.loads(line[5:]))
            else:
                lines.put(line)

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # it leads its own group
            self.process.wait(timeout=DEADLINE)


@pytest.fixture
def peers(tmp_path):
    smsc = SMSCProcess("broker", SMPP_PASSWORD, log_path=tmp_path / "smsc.log").start()
    mailbox = Mailbox()
    relay = EphemeralController(mailbox, hostname="127.0.0.1", port=0)
    relay.start()
    terminal = PagingTerminal()
    yield smsc, mailbox, relay, terminal
    terminal.stop()
    relay.stop()
    smsc.stop()


def _subscriptions(connection):
    # Without the demo's quiet hours: the test must not depend on the time of day.
    for account, channel, address in (("10010001", "sms", "+8613800138001"), ("10010001", "email", "zhangwei@investor.example")):
        unsubscribe(connection, account, channel, address)
    subscribe(connection, "10010001", "sms", "+8613800138001", ["fill", "alert"], "zh")
    subscribe(connection, "10010001", "email", "zhangwei@investor.example", ["fill", "alert"], "zh")
    subscribe(connection, "10010001", "pager", "5550101", ["fill", "alert"], "zh")
    subscribe(connection, "10010002", "sms", "+8613800138002", ["fill"], "zh")


@pytest.fixture
def database(db_url):
    database = Database(db_url)
    database.open()
    load_demo(database, str(ETC))
    database.transaction(_subscriptions)
    yield database
    database.close()


def config(tmp_path, db_url, smsc, relay, terminal):
    return server_config(
        tmp_path / "callcenter.toml",
        db_url,
        trading={"clock": "simulated", "after_hours": "queue", "holidays": str(ETC / "holidays.txt")},
        notify={
            "templates": str(ETC / "notify" / "templates"),
            "retry_first_seconds": 0.5,
            "retry_longest_seconds": 2.0,
            # The SMSC's outage is a few seconds here, not minutes.
            "sms": {"smsc": f"127.0.0.1:{smsc.port}", "system_id": "broker", "password_env": "TEST_SMPP_PASSWORD",
                    "link_timeout": 3.0},
            "email": {
                "from_address": "notify@broker.example", "from_name": "演示证券",
                "relays": [{"host": "127.0.0.1", "port": relay.port, "starttls": "off"}],
            },
            "pager": {"terminal": f"127.0.0.1:{terminal.port}"},
        },
    )


def start(config_path, servers):
    server = ServerProcess(
        [os.path.join(BIN, "twistd"), "--pidfile=", "-n", "callcenter", "--config", config_path],
        extra_env={"TEST_SMPP_PASSWORD": SMPP_PASSWORD},
    )
    servers(server)
    port = server.http_port()
    server.wait_for("trading ready")
    return server, port


def trade(port, account, password, side):
    """An order that fills at once: a sell at limit-down meets any bid, a buy at limit-up any ask."""
    token = login(port, account, password)
    status, quote = call(port, "GET", "/quotes/600000")
    assert status == 200, quote
    price = quote["limit_down_fen"] if side == "sell" else quote["limit_up_fen"]
    status, order = call(port, "POST", "/orders", {
        "code": "600000", "side": side, "price_fen": price, "quantity": 500, "client_order_id": f"n-{account}",
    }, token=token)
    assert status == 201, order
    return until_final(port, token, order["order_no"])


def sms_texts(smsc, destination):
    """The texts the SMSC took for C{destination}, a long one's segments joined (by their UDH)."""
    texts, parts = [], {}
    for submit in smsc.submits():
        if submit["destination"] != destination or submit["status"] != 0:
            continue
        data = bytes.fromhex(submit["short_message"])
        decode = (lambda b: b.decode("utf-16-be")) if submit["data_coding"] == 8 else (lambda b: b.decode("ascii"))
        if not submit["esm_class"] & 0x40:
            texts.append(decode(data))
            continue
        header, payload = data[:data[0] + 1], data[data[0] + 1:]
        reference, total, number = header[3], header[4], header[5]
        segments = parts.setdefault(reference, {})
        segments[number] = payload
        if len(segments) == total:
            texts.append(decode(b"".join(segments[n] for n in range(1, total + 1))))
            del parts[reference]
    return texts


def message_states(database, account):
    from callcenter.notify.records import recent_messages

    return {(m["event"], m["channel"]): m["state"] for m in database.transaction(recent_messages, account)}


def test_a_fill_and_a_price_alert_reach_the_investor_on_every_channel(tmp_path, db_url, database, peers, servers):
    smsc, mailbox, relay, terminal = peers
    server, port = start(config(tmp_path, db_url, smsc, relay, terminal), servers)
    done = trade(port, "10010001", "135790", "sell")
    assert done["status"] == "filled"

    (sms,) = until(lambda: sms_texts(smsc, "8613800138001"), "the fill's SMS")
    assert sms.startswith("【成交回报】卖出 浦发银行(600000) 500股，成交价")
    assert f"委托{done['order_no']}已成交500/500股，全部成交。" in sms
    (recipients, mail), = until(lambda: mailbox.messages, "the fill's e-mail")
    assert recipients == ["zhangwei@investor.example"]
    assert mail["Subject"] == "成交回报：卖出 浦发银行(600000) 500股"
    assert "成交数量：500 股" in mail.get_content()
    assert mail["From"].addresses[0].display_name == "演示证券"
    (page,) = until(lambda: terminal.pages, "the fill's page")
    assert page["pager"] == "5550101"
    assert page["message"].startswith("FILL S 600000 500@") and f"ORDER {done['order_no']} 500/500" in page["message"]
    # The SMSC's delivery receipt is recorded; e-mail and pages end at "sent".
    expected = {("fill", "sms"): "delivered", ("fill", "email"): "sent", ("fill", "pager"): "sent"}
    until(lambda: message_states(database, "10010001") == expected, "the states")

    token = login(port, "10010001", "135790")
    status, quote = call(port, "GET", "/quotes/600000")
    status, rule = call(port, "POST", "/alerts", {
        "code": "600000", "kind": "price_below", "threshold": quote["limit_up_fen"], "rearm": "once"}, token=token)
    assert status == 201, rule
    alert = until(lambda: [t for t in sms_texts(smsc, "8613800138001") if t.startswith("【行情报警】")], "the alert")
    assert alert[0].startswith("【行情报警】浦发银行(600000) 最新价") and "跌到" in alert[0]
    until(lambda: len(mailbox.messages) == 2 and len(terminal.pages) == 2, "the alert's e-mail and page")
    recipients, mail = mailbox.messages[1]
    assert mail["Subject"].startswith("行情报警：浦发银行(600000) 跌到") and "最新价：" in mail.get_content()
    assert terminal.pages[1]["message"].startswith("ALERT 600000 ") and " LE " in terminal.pages[1]["message"]


def test_the_smsc_down_and_back_every_message_arrives_once(tmp_path, db_url, database, peers, servers):
    smsc, mailbox, relay, terminal = peers
    server, port = start(config(tmp_path, db_url, smsc, relay, terminal), servers)
    smsc.kill()
    trade(port, "10010001", "135790", "sell")
    trade(port, "10010002", "246802", "buy")
    # A send waits for the link (link_timeout) before it fails and is retried later.
    until(lambda: "attempt 1:" in _history_details(database), "a failed attempt")
    smsc.start()  # on the same port, its log appended to
    until(lambda: sms_texts(smsc, "8613800138001") and sms_texts(smsc, "8613800138002"), "both SMS")
    until(lambda: {message_states(database, a)[("fill", "sms")] for a in ("10010001", "10010002")} == {"delivered"},
          "both delivered")
    assert len(sms_texts(smsc, "8613800138001")) == 1 and len(sms_texts(smsc, "8613800138002")) == 1


def _history_details(database):
    import sqlalchemy as sa

    from callcenter.store.schema import notify_history

    return " ".join(database.transaction(lambda c: c.execute(sa.select(notify_history.c.detail)).scalars().all()))


def test_sigkill_with_a_message_in_flight_loses_nothing_and_repeats_nothing_acknowledged(
        tmp_path, db_url, database, peers, servers):
    smsc, mailbox, relay, terminal = peers
    smsc.stop()
    # This SMSC takes 10010002's SMS and never answers it: in flight when the server dies.
    held = SMSCProcess("broker", SMPP_PASSWORD, port=smsc.port, log_path=tmp_path / "held.log",
                       hold=("8613800138002",)).start()
    try:
        path = config(tmp_path, db_url, held, relay, terminal)
        server, port = start(path, servers)
        trade(port, "10010001", "135790", "sell")
        trade(port, "10010002", "246802", "buy")
        until(lambda: sms_texts(held, "8613800138001") and any(
            s["destination"] == "8613800138002" for s in held.submits()), "both submits at the SMSC")
        until(lambda: message_states(database, "10010001")[("fill", "sms")] in ("sent", "delivered"), "acknowledged")
        server.kill()
    finally:
        held.kill()
    smsc.start()
    server, port = start(path, servers)
    until(lambda: sms_texts(smsc, "8613800138002"), "the SMS in flight, sent again")
    until(lambda: message_states(database, "10010002")[("fill", "sms")] == "delivered", "delivered after the restart")
    # The acknowledged one is not sent again; the other arrives once.
    assert sms_texts(smsc, "8613800138001") == [] and len(sms_texts(smsc, "8613800138002")) == 1
    assert len(sms_texts(held, "8613800138001")) == 1
