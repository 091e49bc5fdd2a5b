"""
The pager channel's sender (callcenter.notify.snpp.SNPPSender) in memory:
its links go to a scripted paging terminal on StringTransports, time is a
Clock.  What matters here is the outbox's side: Accepted, Temporary or
Permanent failures, links reopened on demand, backoff, the window, and a
stop that loses nothing.
"""

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from callcenter.notify.interfaces import IMessageSender
from callcenter.notify.message import Accepted, OutgoingMessage, PermanentFailure, TemporaryFailure
from callcenter.notify.snpp import SNPPSender
from outcomes import results_of

REPLY_TIMEOUT = 20.0
CONNECT_TIMEOUT = 5.0
IDLE_TIMEOUT = 100.0


class TerminalTransport(StringTransportWithDisconnection):
    """
    A paging terminal at the other end: it answers each command line the
    protocol writes, when the test calls L{Terminal.pump}.  Verbs in
    C{silent} get no answer; C{replies} overrides the answer to a verb.
    """

    def __init__(self, terminal):
        super().__init__()
        self.terminal = terminal
        self.commands = []
        self.pending = [b"220 SNPP Gateway Ready"]
        self.in_data = None
        self.page = {}

    def write(self, data):
        super().write(data)
        for line in data.decode().split("\r\n")[:-1]:
            self.command(line)

    def command(self, line):
        if self.in_data is not None:
            if line == ".":
                self.page["mess"] = "\n".join(self.in_data)
                self.in_data = None
                self.pending.append(b"250 Message OK")
            else:
                self.in_data.append(line[1:] if line.startswith(".") else line)
            return
        self.commands.append(line)
        verb, _, argument = line.partition(" ")
        terminal = self.terminal
        if verb in terminal.silent:
            return
        if verb in terminal.replies:
            self.pending.append(terminal.replies[verb])
            return
        if verb == "PAGE":
            if argument in terminal.rejected:
                self.pending.append(b"550 Error, Invalid Pager ID")
            else:
                self.page["pager"] = argument
                self.pending.append(b"250 Pager ID Accepted")
        elif verb in ("MESS", "SUBJ", "LEVE"):
            self.page[verb.lower()] = argument
            self.pending.append(b"250 OK")
        elif verb == "DATA":
            self.in_data = []
            self.pending.append(b"354 Begin Input; End with <CRLF>'.'<CRLF>")
        elif verb == "SEND":
            terminal.pages.append(self.page)
            self.page = {}
            self.pending.append(b"250 Message Sent Successfully")
        elif verb == "RESE":
            self.page = {}
            self.pending.append(b"250 RESET OK")
        elif verb == "LOGI":
            self.pending.append(b"250 Login Accepted" if argument == "broker s3cret" else b"550 Error, Invalid Login")
        elif verb == "QUIT":
            self.pending.append(b"221 OK, Goodbye")
        else:
            self.pending.append(b"500 Command Not Implemented, Try Again")


class Terminal:
    """An endpoint whose connections reach the scripted terminal."""

    def __init__(self):
        self.transports = []
        self.pages = []
        self.rejected = set()
        self.silent = set()
        self.replies = {}
        self.refuse = False
        self.hang = False
        self.attempts = 0

    def connect(self, factory):
        self.attempts += 1
        if self.refuse:
            return fail(ConnectionRefusedError())
        if self.hang:
            return Deferred()
        protocol = factory.buildProtocol(None)
        transport = TerminalTransport(self)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        self.transports.append(transport)
        return succeed(protocol)

    def pump(self):
        """Deliver the answers due, until there are none."""
        delivered = True
        while delivered:
            delivered = False
            for transport in self.transports:
                if transport.pending and transport.connected:
                    line = transport.pending.pop(0)
                    transport.protocol.dataReceived(line + b"\r\n")
                    delivered = True

    def commands(self, n=-1):
        return self.transports[n].commands


def message(address="5551234", body="Fill 600519 100@1800.00", **fields):
    return OutgoingMessage(message_id=7, channel="pager", address=address, body=body, **fields)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def terminal():
    return Terminal()


def make_sender(clock, terminal, **options):
    options = {
        "reply_timeout": REPLY_TIMEOUT, "connect_timeout": CONNECT_TIMEOUT, "idle_timeout": IDLE_TIMEOUT, **options
    }
    sender = SNPPSender(clock, terminal, **options)
    sender.startService()
    terminal.pump()
    return sender


@pytest.fixture
def sender(clock, terminal):
    return make_sender(clock, terminal)


def send(sender, terminal, msg=None):
    outcome = results_of(sender.send(msg or message()))
    terminal.pump()
    return outcome


def failed_with(outcome, kind):
    assert len(outcome) == 1 and isinstance(outcome[0], Failure), outcome
    assert type(outcome[0].value) is kind, outcome[0]
    return outcome[0].value


def test_provides_the_interface(sender):
    assert verifyObject(IMessageSender, sender)
    assert sender.channel == "pager"
    assert sender.window == 1
    assert SNPPSender(Clock(), Terminal(), connections=3).window == 3


def test_starting_opens_a_link(sender, terminal):
    assert terminal.attempts == 1
    assert terminal.transports[0].connected


def test_a_page_is_accepted_and_arrives(sender, terminal):
    outcome = send(sender, terminal)
    assert outcome == [Accepted(detail="250 Message Sent Successfully")]
    assert terminal.pages == [{"pager": "5551234", "mess": "Fill 600519 100@1800.00"}]
    assert terminal.attempts == 1


def test_pages_reuse_the_link(sender, terminal):
    for n in range(3):
        assert send(sender, terminal, message(body=f"page {n}")) == [Accepted(detail="250 Message Sent Successfully")]
    assert [p["mess"] for p in terminal.pages] == ["page 0", "page 1", "page 2"]
    assert terminal.attempts == 1


def test_a_refused_pager_id_is_permanent_and_the_link_goes_on(sender, terminal):
    terminal.rejected.add("5550000")
    outcome = send(sender, terminal, message(address="5550000"))
    assert "Invalid Pager ID" in str(failed_with(outcome, PermanentFailure))
    assert terminal.commands()[-1] == "RESE"
    assert send(sender, terminal) == [Accepted(detail="250 Message Sent Successfully")]
    assert terminal.attempts == 1


def test_a_refused_message_is_permanent(sender, terminal):
    terminal.replies["MESS"] = b"550 ERROR, Invalid Message"
    failed_with(send(sender, terminal), PermanentFailure)


@pytest.mark.parametrize(
    "verb, answer",
    [("SEND", b"554 Error, failed"), ("MESS", b"554 Gateway down"), ("SEND", b"503 Error, Pager ID needed"),
     ("PAGE", b"552 Maximum Entries Exceeded"), ("PAGE", b"421 Gateway Service Unavailable")],
)
def test_technical_failures_are_temporary(sender, terminal, verb, answer):
    terminal.replies[verb] = answer
    failure = failed_with(send(sender, terminal), TemporaryFailure)
    assert answer.decode() in str(failure)
    assert terminal.pages == []


def test_bad_addresses_and_empty_text_are_permanent_without_a_word_to_the_terminal(sender, terminal):
    for msg in (message(address="555 1234"), message(address=""), message(address="寻呼"), message(body=" \n ")):
        failed_with(send(sender, terminal, msg), PermanentFailure)
    assert terminal.commands() == []


def test_a_link_closed_while_idle_is_reopened_on_demand(sender, terminal):
    terminal.transports[0].protocol.dataReceived(b"421 Timeout, Goodbye\r\n")
    assert not terminal.transports[0].connected
    assert send(sender, terminal) == [Accepted(detail="250 Message Sent Successfully")]
    assert terminal.attempts == 2


def test_an_idle_link_found_dead_at_page_is_reopened_and_the_page_goes_once(sender, terminal):
    terminal.silent.add("PAGE")
    outcome = results_of(sender.send(message()))
    terminal.pump()
    terminal.silent.clear()
    terminal.transports[0].protocol.connectionLost(Failure(ConnectionLost()))
    terminal.pump()
    assert outcome == [Accepted(detail="250 Message Sent Successfully")]
    assert len(terminal.pages) == 1 and terminal.attempts == 2


def test_a_link_lost_after_send_fails_the_page_as_temporary(sender, terminal):
    terminal.silent.add("SEND")
    outcome = send(sender, terminal)
    terminal.transports[0].protocol.connectionLost(Failure(ConnectionLost()))
    failed_with(outcome, TemporaryFailure)
    assert terminal.attempts == 1


def test_a_page_never_answered_fails_after_the_reply_timeout(clock, sender, terminal):
    terminal.silent.add("SEND")
    outcome = send(sender, terminal)
    clock.advance(REPLY_TIMEOUT - 1)
    assert outcome == []
    clock.advance(1)
    assert "no reply to SEND" in str(failed_with(outcome, TemporaryFailure))


def test_an_unreachable_terminal_fails_fast_until_the_backoff_is_over(clock, terminal):
    terminal.refuse = True
    sender = make_sender(clock, terminal)
    assert terminal.attempts == 1
    failure = failed_with(send(sender, terminal), TemporaryFailure)
    assert failure.retry_after == 1.0 and terminal.attempts == 1
    clock.advance(1)
    failure = failed_with(send(sender, terminal), TemporaryFailure)
    assert failure.retry_after == 2.0 and terminal.attempts == 2
    clock.advance(1.5)
    failure = failed_with(send(sender, terminal), TemporaryFailure)
    assert failure.retry_after == pytest.approx(0.5) and terminal.attempts == 2
    terminal.refuse = False
    clock.advance(0.5)
    assert send(sender, terminal) == [Accepted(detail="250 Message Sent Successfully")]
    assert terminal.attempts == 3


def test_a_connection_attempt_that_hangs_times_out(clock, terminal):
    terminal.hang = True
    sender = make_sender(clock, terminal)
    outcome = results_of(sender.send(message()))
    clock.advance(CONNECT_TIMEOUT - 1)
    assert outcome == []
    clock.advance(1)
    assert f"no connection within {CONNECT_TIMEOUT} s" in str(failed_with(outcome, TemporaryFailure))
    clock.advance(1)
    terminal.hang = False
    assert send(sender, terminal) == [Accepted(detail="250 Message Sent Successfully")]


def test_a_terminal_that_never_greets_times_out(clock, terminal):
    sender = SNPPSender(clock, terminal, reply_timeout=REPLY_TIMEOUT)
    sender.startService()
    outcome = results_of(sender.send(message()))
    clock.advance(REPLY_TIMEOUT)
    failure = failed_with(outcome, TemporaryFailure)
    assert "no reply to greeting" in str(failure)


def test_login_and_service_level(clock, terminal):
    sender = make_sender(clock, terminal, login=("broker", "s3cret"), service_level=2)
    assert send(sender, terminal) == [Accepted(detail="250 Message Sent Successfully")]
    assert terminal.commands()[:3] == ["LOGI broker s3cret", "PAGE 5551234", "LEVE 2"]


def test_a_refused_login_is_temporary(clock, terminal):
    sender = make_sender(clock, terminal, login=("broker", "wrong"))
    clock.advance(1)
    assert "Invalid Login" in str(failed_with(send(sender, terminal), TemporaryFailure))
    assert terminal.pages == []


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        SNPPSender(Clock(), Terminal(), login=("broker", "two words"))
    with pytest.raises(ValueError):
        SNPPSender(Clock(), Terminal(), service_level=12)
    with pytest.raises(ValueError):
        SNPPSender(Clock(), Terminal(), connections=0)


def test_the_window_is_one_page_per_link(clock, terminal):
    sender = make_sender(clock, terminal, connections=2)
    terminal.silent.add("SEND")
    first, second, third = (results_of(sender.send(message(body=f"page {n}"))) for n in range(3))
    terminal.pump()
    assert terminal.attempts == 2
    assert [t.commands[-1] for t in terminal.transports] == ["SEND", "SEND"]
    assert third == []
    terminal.silent.clear()
    (carrying_first,) = [t for t in terminal.transports if "MESS page 0" in t.commands]
    carrying_first.pending.append(b"250 Message Sent Successfully")
    terminal.pump()
    assert first == [Accepted(detail="250 Message Sent Successfully")]
    assert third == [Accepted(detail="250 Message Sent Successfully")]
    assert second == []
    assert carrying_first.commands[-3:] == ["PAGE 5551234", "MESS page 2", "SEND"]


def test_an_idle_link_is_closed_with_quit(clock, sender, terminal):
    send(sender, terminal)
    clock.advance(IDLE_TIMEOUT - 1)
    assert terminal.transports[0].connected
    clock.advance(1)
    terminal.pump()
    assert terminal.commands()[-1] == "QUIT"
    assert not terminal.transports[0].connected
    assert send(sender, terminal) == [Accepted(detail="250 Message Sent Successfully")]
    assert terminal.attempts == 2


def test_stopping_fails_pages_in_flight_and_waiting_as_temporary_and_quits_idle_links(clock, terminal):
    sender = make_sender(clock, terminal, connections=2)
    terminal.silent.add("SEND")
    in_flight = results_of(sender.send(message()))
    terminal.pump()
    terminal.silent.clear()
    # The second link idle; a third page waiting for the first.
    idle = results_of(sender.send(message()))
    terminal.pump()
    assert idle == [Accepted(detail="250 Message Sent Successfully")]
    terminal.silent.add("SEND")
    busy = results_of(sender.send(message()))
    terminal.pump()
    waiting = results_of(sender.send(message()))
    stopped = results_of(sender.stopService())
    terminal.pump()
    for outcome in (in_flight, busy, waiting):
        failed_with(outcome, TemporaryFailure)
    assert stopped == [[None, None]]
    assert not any(t.connected for t in terminal.transports)
    assert clock.getDelayedCalls() == []
    failed_with(results_of(sender.send(message())), TemporaryFailure)


def test_nothing_is_sent_before_starting(clock, terminal):
    sender = SNPPSender(clock, terminal)
    failed_with(results_of(sender.send(message())), TemporaryFailure)
    assert terminal.attempts == 0


def test_receipt_handler_is_accepted_and_never_called(sender, terminal):
    receipts = []
    sender.set_receipt_handler(receipts.append)
    send(sender, terminal)
    assert receipts == []


def test_stopping_while_the_terminal_has_not_greeted_yet(clock, terminal):
    sender = SNPPSender(clock, terminal)
    sender.startService()
    outcome = results_of(sender.send(message()))
    stopped = results_of(sender.stopService())
    assert "stopped" in str(failed_with(outcome, TemporaryFailure))
    assert stopped == [[None]]
    assert not terminal.transports[0].connected
    assert clock.getDelayedCalls() == []


def test_a_page_arriving_while_an_idle_link_quits_takes_a_new_link(clock, sender, terminal):
    clock.advance(IDLE_TIMEOUT)
    assert terminal.commands(0) == ["QUIT"]
    outcome = send(sender, terminal)
    assert outcome == [Accepted(detail="250 Message Sent Successfully")]
    assert terminal.commands(0) == ["QUIT"] and not terminal.transports[0].connected
    assert terminal.commands(1) == ["PAGE 5551234", "MESS Fill 600519 100@1800.00", "SEND"]
