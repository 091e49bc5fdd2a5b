"""
The FastAGI factory: a flow per connection, chosen by the AGI URL's path;
unknown flows, failing flows, too many sessions, peers not allowed; a whole
small flow in memory, then the same over a real TCP socket.

Asterisk is not installed here.  The transcripts are in Asterisk's wire
format as res/res_agi.c writes it (the agi_* block of setup_env, the
``200 result=`` lines of handle_answer, handle_streamfile, handle_getdata,
handle_saynumber and handle_hangup, and run_agi's ``HANGUP`` once the
channel is down); see test_protocol.py's docstring for the details.
"""

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineReceiver

from callcenter.agi.commands import say_number
from callcenter.agi.server import FastAGIFactory
from outcomes import CapturedLog, results_of


def header(script):
    return (
        "agi_network: yes\n"
        f"agi_network_script: {script}\n"
        f"agi_request: agi://127.0.0.1:4573/{script}\n"
        "agi_channel: PJSIP/trunk-00000007\n"
        "agi_language: zh\n"
        "agi_type: PJSIP\n"
        "agi_uniqueid: 1700000000.7\n"
        "agi_version: 20.5.0\n"
        "agi_callerid: 13800138001\n"
        "agi_calleridname: unknown\n"
        "agi_callingpres: 0\n"
        "agi_callingani2: 0\n"
        "agi_callington: 0\n"
        "agi_callingtns: 0\n"
        "agi_dnid: 9500\n"
        "agi_rdnis: unknown\n"
        "agi_context: from-trunk\n"
        "agi_extension: 9500\n"
        "agi_priority: 2\n"
        "agi_enhanced: 0.0\n"
        "agi_accountcode: \n"
        "agi_threadid: 140245353027328\n"
        "\n"
    ).encode()


@defer.inlineCallbacks
def balance_flow(channel):
    """Answer, greet, read an account number, say a figure, hang up."""
    yield channel.answer()
    yield channel.play("welcome")
    account = yield channel.collect_digits(8, 5, 5, prompt="enter-account")
    channel.log.info("account {account}", account=account)
    yield say_number(channel.agi, 1500 if account == "00123456" else 0)
    yield channel.hangup()


# (the command we send, what Asterisk answers) for balance_flow.
BALANCE_TRANSCRIPT = [
    ("ANSWER", "200 result=0"),
    ('STREAM FILE welcome "0123456789*#"', "200 result=0 endpos=20480"),
    ("GET DATA enter-account 5000 8", "200 result=00123456 (timeout)"),
    ('SAY NUMBER 1500 ""', "200 result=0"),
    ("HANGUP", "200 result=1"),
]


def connect(factory, host="127.0.0.1"):
    agi = factory.buildProtocol(IPv4Address("TCP", host, 40000))
    if agi is not None:
        agi.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", host, 40000)))
    return agi


def play_transcript(agi, transcript):
    for command, answer in transcript:
        assert agi.transport.value() == (command + "\n").encode()
        agi.transport.clear()
        agi.dataReceived(answer.encode() + b"\n")


def test_a_whole_small_flow():
    factory = FastAGIFactory({"balance": balance_flow}, Clock())
    agi = connect(factory)
    with CapturedLog() as logged:
        agi.dataReceived(header("balance"))
        play_transcript(agi, BALANCE_TRANSCRIPT)
    assert agi.transport.disconnecting
    assert agi.transport.value() == b""
    [account] = logged.formats("account {account}")
    assert account["account"] == "00123456"
    assert account["cid"]
    assert logged.formats("FastAGI flow {script} for {channel} from {caller}")


def test_a_flow_that_returns_leaves_the_call_to_the_dialplan():
    def announce(channel):
        return channel.play("closed-today")

    factory = FastAGIFactory({"announce": announce}, Clock())
    agi = connect(factory)
    agi.dataReceived(header("announce"))
    play_transcript(agi, [('STREAM FILE closed-today "0123456789*#"', "200 result=0 endpos=8000")])
    assert agi.transport.disconnecting
    assert agi.transport.value() == b""  # No HANGUP: Asterisk goes on with the next priority.


def test_a_plain_function_flow_works_too():
    seen = []
    factory = FastAGIFactory({"note": seen.append}, Clock())
    agi = connect(factory)
    agi.dataReceived(header("note"))
    assert seen[0].call_id == "1700000000.7"
    assert agi.transport.disconnecting


def test_an_unknown_flow_is_logged_and_hung_up():
    factory = FastAGIFactory({"balance": balance_flow}, Clock())
    agi = connect(factory)
    with CapturedLog() as logged:
        agi.dataReceived(header("nosuchflow?x=1"))
    assert logged.formats("unknown flow")[0]["script"] == "nosuchflow"
    assert not agi.transport.disconnecting
    play_transcript(agi, [("HANGUP", "200 result=1")])
    assert agi.transport.disconnecting


def test_a_failing_flow_is_logged_and_the_call_hung_up():
    @defer.inlineCallbacks
    def broken(channel):
        yield channel.answer()
        raise RuntimeError("bug")

    factory = FastAGIFactory({"broken": broken}, Clock())
    agi = connect(factory)
    with CapturedLog() as logged:
        agi.dataReceived(header("broken"))
        play_transcript(agi, [("ANSWER", "200 result=0"), ("HANGUP", "200 result=1")])
    [failed] = logged.formats("flow {script} failed; hanging up")
    assert failed["log_failure"].check(RuntimeError)
    assert agi.transport.disconnecting


def test_a_flow_ended_by_the_callers_hangup_is_not_an_error():
    @defer.inlineCallbacks
    def strict(channel):
        yield channel.answer()
        yield channel.agi.send_command('STREAM FILE welcome ""')  # Raises AGIHangup below.

    factory = FastAGIFactory({"strict": strict}, Clock())
    agi = connect(factory)
    with CapturedLog() as logged:
        agi.dataReceived(header("strict"))
        play_transcript(agi, [("ANSWER", "200 result=0")])
        agi.dataReceived(b"HANGUP\n")
        agi.dataReceived(b"511 Command Not Permitted on a dead channel or intercept routine\n")
    assert not logged.formats("failed")
    assert logged.formats("ended by the hang-up")
    assert agi.transport.value() == b'STREAM FILE welcome ""\n'  # No HANGUP to a dead channel.
    assert agi.transport.disconnecting


def test_sessions_beyond_the_limit_are_refused_with_a_log_line():
    factory = FastAGIFactory({"balance": balance_flow}, Clock(), max_sessions=2)
    first, second = connect(factory), connect(factory)
    with CapturedLog() as logged:
        assert connect(factory) is None
    assert logged.formats("sessions already (max_sessions)")
    first.connectionLost(None)
    third = connect(factory)
    assert third is not None
    assert factory.sessions == {second, third}


def test_a_session_that_never_sends_its_header_is_closed_and_forgotten():
    clock = Clock()
    factory = FastAGIFactory({}, clock, max_sessions=1, header_timeout=3)
    agi = connect(factory)
    clock.advance(3)
    assert agi.transport.disconnecting
    agi.connectionLost(None)
    assert factory.sessions == set()


def test_peers_not_allowed_are_refused():
    factory = FastAGIFactory({}, Clock(), allowed_peers=["10.1.0.0/16", "127.0.0.1"])
    assert connect(factory, "127.0.0.1") is not None
    assert connect(factory, "10.1.2.3") is not None
    with CapturedLog() as logged:
        assert connect(factory, "192.0.2.99") is None
    assert logged.formats("not an allowed peer")


# Over a real socket


class AsteriskSimulator(LineReceiver):
    """
    The Asterisk side of FastAGI, played from a transcript: it connects,
    sends the agi_* block, answers each command with the transcript's line
    (failing the test on any other command), and sends HANGUP after
    answering our HANGUP, as run_agi does once the channel is down.
    Asterisk itself is not installed here; this stands in for it.
    """

    delimiter = b"\n"

    def __init__(self, script, transcript):
        self.script = script
        self.transcript = list(transcript)
        self.received = []
        self.done = defer.Deferred()

    def connectionMade(self):
        self.transport.write(header(self.script))

    def lineReceived(self, line):
        command = line.decode()
        self.received.append(command)
        if not self.transcript:
            self.transport.write(b"510 Invalid or unknown command\n")
            return
        expected, answer = self.transcript.pop(0)
        if command != expected:
            self.transport.write(b"510 Invalid or unknown command\n")
            return
        self.transport.write(answer.encode() + b"\n")
        if command == "HANGUP":
            self.transport.write(b"HANGUP\n")

    def connectionLost(self, reason):
        self.done.callback(self.received)


@pytest.fixture
def listening():
    finished = []

    @defer.inlineCallbacks
    def flow(channel):
        try:
            yield balance_flow(channel)
        finally:
            finished.append(channel)

    factory = FastAGIFactory({"balance": flow}, reactor)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    yield port.getHost().port, factory, finished
    pytest_twisted.blockon(port.stopListening())


@pytest_twisted.inlineCallbacks
def test_a_flow_over_a_real_socket(listening):
    port, factory, finished = listening
    simulator = AsteriskSimulator("balance", BALANCE_TRANSCRIPT)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    yield endpoint.connect(protocol.Factory.forProtocol(lambda: simulator))
    received = yield simulator.done.addTimeout(10, reactor)
    assert received == [command for command, _ in BALANCE_TRANSCRIPT]
    [channel] = finished
    assert channel.caller.number == "13800138001"
    assert results_of(channel.ended) == ["normal"]
    # The server closed the connection; the session is forgotten.
    yield channel.agi.closed.addTimeout(10, reactor)
    assert factory.sessions == set()

