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

    def __init__(self, keys):
        self.keys = list(keys)
        self.commands = []
        self.done = defer.Deferred()

    def connectionMade(self):
        self.transport.write(
            b"agi_network: yes\nagi_network_script: trading\nagi_request: agi://127.0.0.1/trading\n"
            b"agi_channel: PJSIP/trunk-00000001\nagi_language: zh\nagi_uniqueid: 1764547200.1\n"
            + f"agi_callerid: {CALLER}\n".encode()
            + b"agi_calleridname: unknown\nagi_dnid: 9500\nagi_extension: 9500\nagi_context: from-trunk\n"
            b"agi_priority: 2\nagi_enhanced: 0.0\n\n"
        )

    def lineReceived(self, line):
        command = line.decode()
        self.commands.append(command)
        verb = command.split(" ")[0]
        if command.startswith("WAIT FOR DIGIT"):
            answer = f"200 result={ord(self.keys.pop(0))}" if self.keys else "200 result=0"
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
    yield process
    process.stop_if_running()


@pytest_twisted.inlineCallbacks
def test_asterisk_runs_phone_trading_over_fastagi(server, db_url):
    port = int(server.wait_for(r"FastAGI listening on 127\.0\.0\.1:(\d+)").group(1))
    http = server.http_port()
    server.wait_for("trading ready")
    status, quote = get_json(http, "/api/v1/quotes/600000")
    assert status == 200, quote
    price = quote["limit_down_fen"]
    keys = f"10010001#135790#2600000#{price // 100}*{price % 100:02d}#100#1"
    asterisk = KeypadAsterisk(keys)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    yield endpoint.connect(protocol.Factory.forProtocol(lambda: asterisk))
    commands = yield asterisk.done.addTimeout(60, reactor)
    assert commands[0] == "ANSWER"
    assert any(c.startswith("STREAM FILE zh/order-placed") for c in commands), commands
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        [order] = connection.execute(sa.text(
            "SELECT side, quantity, price_fen, channel, caller FROM orders WHERE fund_account_no = '10010001'"
        )).all()
    engine.dispose()
    assert tuple(order) == ("sell", 100, price, "phone", CALLER)
    assert "135790" not in server.output
