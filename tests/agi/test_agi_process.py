"""
The phone trading flow behind Asterisk: the real ``twistd callcenter``
process with [agi], [ivr] and [trading], and an Asterisk-side simulator
connecting to its FastAGI port as ``AGI(agi://127.0.0.1:PORT/trading)``
would.  Asterisk is not installed here, so the simulator stands in for it:
it answers each command as res_agi.c does (ANSWER and STREAM FILE with
``200 result=0``, WAIT FOR DIGIT with the next key's ASCII code, or 0 when
the caller keys nothing more, HANGUP with ``200 result=1`` then ``HANGUP``).
"""

import os
import subprocess
import sys

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.protocols.basic import LineReceiver

from callcenter.demo import load_demo
from callcenter.store.database import Database
from processes import get_json, server_config, twistd

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
CALLER = "13800138001"


class KeypadAsterisk(LineReceiver):
    """A call from CALLER to 9500 whose caller keys C{keys}, answered generically."""

    delimiter = b"\n"

    def __init__(self, keys, caller=CALLER, hang_up_at=None):
        self.keys = list(keys)
        self.caller = caller
        # Hang up when a STREAM FILE of this prompt begins (as a caller who
        # puts the phone down mid-sentence).
        self.hang_up_at = hang_up_at
        self.commands = []
        self.done = defer.Deferred()

    def connectionMade(self):
        self.transport.write(
            b"agi_network: yes\nagi_network_script: trading\nagi_request: agi://127.0.0.1/trading\n"
            b"agi_channel: PJSIP/trunk-00000001\nagi_language: zh\nagi_uniqueid: 1764547200.1\n"
            + f"agi_callerid: {self.caller}\n".encode()
            + b"agi_calleridname: unknown\nagi_dnid: 9500\nagi_extension: 9500\nagi_context: from-trunk\n"
            b"agi_priority: 2\nagi_enhanced: 0.0\n\n"
        )

    def lineReceived(self, line):
        command = line.decode()
        self.commands.append(command)
        verb = command.split(" ")[0]
        if command.startswith("WAIT FOR DIGIT"):
            answer = f"200 result={ord(self.keys.pop(0))}" if self.keys else "200 result=0"
        elif self.hang_up_at and command.startswith(f"STREAM FILE {self.hang_up_at}"):
            self.transport.write(b"HANGUP\n200 result=-1 endpos=0\n")
            return
        elif command.startswith("STREAM FILE"):
            answer = "200 result=0 endpos=8000"
        elif verb == "HANGUP":
            self.transport.write(b"200 result=1\nHANGUP\n")
            return
        else:
            answer = "200 result=0"
        self.transport.write(answer.encode() + b"\n")

    def connectionLost(self, reason):
        self.done.callback(self.commands)


@pytest.fixture
def server(tmp_path, db_url):
    database = Database(db_url)
    database.open()
    load_demo(database, os.path.join(REPO, "etc"))
    database.close()
    prompts = os.path.join(REPO, "var", "prompts")
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "callcenter"), "prompts", "build", "--dir",
                    prompts], check=True, capture_output=True, timeout=600)
    config = server_config(
        tmp_path / "callcenter.toml",
        db_url,
        trading={"clock": "simulated", "holidays": os.path.join(REPO, "etc", "holidays.txt")},
        ivr={"prompts": prompts},
        agi={"listen": "tcp:0:interface=127.0.0.1"},
    )
    process = twistd(config, cwd=tmp_path)
    process.config_path = config
    yield process
    process.stop_if_running()


def rows(db_url, query):
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        found = [tuple(row) for row in connection.execute(sa.text(query)).all()]
    engine.dispose()
    return found


@defer.inlineCallbacks
def call(server, keys_for, **options):
    """Run one simulated Asterisk call; fires with (commands, the price keyed)."""
    port = int(server.wait_for(r"FastAGI listening on 127\.0\.0\.1:(\d+)").group(1))
    server.wait_for("trading ready")
    status, quote = get_json(server.http_port(), "/api/v1/quotes/600000")
    assert status == 200, quote
    price = quote["limit_down_fen"]
    asterisk = KeypadAsterisk(keys_for(f"{price // 100}*{price % 100:02d}#"), **options)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    yield endpoint.connect(protocol.Factory.forProtocol(lambda: asterisk))
    commands = yield asterisk.done.addTimeout(60, reactor)
    return commands, price


ORDERS = "SELECT side, quantity, price_fen, channel, caller FROM orders WHERE fund_account_no = '10010001'"


@pytest_twisted.inlineCallbacks
def test_asterisk_runs_phone_trading_over_fastagi(server, db_url):
    commands, price = yield call(server, lambda price: f"10010001#135790#2600000#{price}100#1")
    assert commands[0] == "ANSWER"
    assert any(c.startswith("STREAM FILE zh/order-placed") for c in commands), commands
    assert rows(db_url, ORDERS) == [("sell", 100, price, "phone", CALLER)]
    assert "135790" not in server.output


@pytest_twisted.inlineCallbacks
def test_three_wrong_passwords_end_the_call_with_nothing_done(server, db_url):
    commands, _ = yield call(server, lambda price: "10010001#111111#222222#333333#")
    assert any(c.startswith("STREAM FILE zh/too-many-attempts") for c in commands), commands
    assert commands[-1] == "HANGUP"
    assert rows(db_url, ORDERS) == []
    outcomes = rows(db_url, "SELECT outcome FROM audit_log WHERE action = 'login'")
    assert outcomes == [("wrong_password",)] * 3


@pytest_twisted.inlineCallbacks
def test_a_restricted_account_refuses_other_callers(server, db_url):
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "callcenter"), "account", "callers",
                    "10010001", "13800138001", "--config", server.config_path], check=True, capture_output=True)
    commands, _ = yield call(server, lambda price: "10010001#135790#", caller="02155550000")
    assert any(c.startswith("STREAM FILE zh/caller-not-allowed") for c in commands), commands
    assert rows(db_url, "SELECT outcome, caller FROM audit_log WHERE action = 'login'") == [
        ("caller_not_allowed", "02155550000")]


@pytest_twisted.inlineCallbacks
def test_a_hang_up_during_the_read_back_places_no_order(server, db_url):
    commands, _ = yield call(
        server, lambda price: f"10010001#135790#2600000#{price}100#", hang_up_at="zh/confirm-or-reenter"
    )
    assert any(c.startswith("STREAM FILE zh/confirm-or-reenter") for c in commands), commands
    assert rows(db_url, ORDERS) == []
