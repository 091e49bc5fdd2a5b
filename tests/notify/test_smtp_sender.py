"""
The e-mail sender's pool and failover, on in-memory connections and a
fake clock: when connections are opened and closed, which relay a
message goes through when one fails, and that every message ends in an
outcome (never waits for ever).  A small scripted relay answers each
connection; the tests call C{pump()} to let it answer.
"""

import pytest
from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from callcenter.notify.interfaces import IMessageSender
from callcenter.notify.message import Accepted, OutgoingMessage, PermanentFailure, TemporaryFailure
from callcenter.notify.smtp.relays import Relay
from callcenter.notify.smtp.sender import SmtpSender


class FakeConnection:
    """The relay's side of one connection: answers what the client wrote, when pumped."""

    def __init__(self, relay, protocol):
        self.relay = relay
        self.protocol = protocol
        self.transport = StringTransport()
        self.in_data = False
        self.data = []
        self.closed = False
        self.replies = [relay.greeting]
        protocol.makeConnection(self.transport)

    def pump(self):
        """Answer everything written so far; True if anything happened."""
        written = self.transport.value()
        self.transport.clear()
        for line in written.split(b"\r\n")[:-1] if written else []:
            self._line(line)
        if self.closed:
            return bool(written)
        replies, self.replies = self.replies, []
        if replies:
            self.protocol.dataReceived(b"".join(r + b"\r\n" for r in replies))
        if self.transport.disconnecting and not self.closed:
            self.close()
        return bool(written or replies)

    def close(self):
        if not self.closed:
            self.closed = True
            self.protocol.connectionLost(Failure(ConnectionRefusedError("closed")))

    def _line(self, line):
        if self.in_data:
            if line == b".":
                self.in_data = False
                self.relay.messages.append(b"\r\n".join(self.data))
                self.data = []
                self.replies.append(b"250 2.0.0 Ok: queued as M%d" % len(self.relay.messages))
            else:
                self.data.append(line)
            return
        verb = line.split(b" ", 1)[0].split(b":", 1)[0].upper()
        if verb == b"EHLO":
            self.replies += [b"250-fake", b"250 PIPELINING"] if self.relay.pipelining else [b"250 fake"]
        elif verb == b"MAIL":
            self.relay.mail_commands += 1
            self.replies.append(self.relay.mail_reply)
        elif verb == b"RCPT":
            self.replies.append(b"250 Ok")
        elif verb == b"DATA":
            if self.relay.mail_reply.startswith(b"2"):
                self.in_data = True
                self.replies.append(b"354 go")
            else:
                self.replies.append(b"503 no")
        elif verb == b"RSET":
            self.replies.append(b"250 Ok")
        elif verb == b"QUIT":
            self.relay.quits += 1
            self.protocol.dataReceived(b"221 Bye\r\n")
            self.close()


class FakeRelay:
    """An endpoint whose connections are L{FakeConnection}s; C{refuse}: connections fail; C{hang}: never complete."""

    def __init__(self, name, pipelining=True, refuse=False, hang=False, mail_reply=b"250 Ok", greeting=b"220 fake"):
        self.name = name
        self.pipelining = pipelining
        self.refuse = refuse
        self.hang = hang
        self.mail_reply = mail_reply
        self.greeting = greeting
        self.connections = []
        self.messages = []
        self.mail_commands = 0
        self.quits = 0
        self.attempts = 0

    def connect(self, factory):
        self.attempts += 1
        if self.refuse:
            return defer.fail(ConnectionRefusedError(f"{self.name} refuses"))
        if self.hang:
            return defer.Deferred()
        connection = FakeConnection(self, factory.buildProtocol(None))
        self.connections.append(connection)
        return defer.succeed(connection.protocol)

    @property
    def open_connections(self):
        return [c for c in self.connections if not c.closed]

    def relay(self):
        return Relay(self.name, 25, starttls="off", endpoint=self)


class Outcomes:
    def __init__(self):
        self.results = {}

    def watch(self, n, d):
        d.addBoth(lambda r: self.results.__setitem__(n, r.value if isinstance(r, Failure) else r))


def pump(*relays):
    while any(c.pump() for relay in relays for c in relay.connections):
        pass


def make_sender(clock, *relays, **kwargs):
    kwargs.setdefault("pool_size", 2)
    kwargs.setdefault("idle_timeout", 30)
    sender = SmtpSender(clock, [relay.relay() for relay in relays], "notify@broker.example", **kwargs)
    sender.startService()
    return sender


def message(n):
    return OutgoingMessage(n, "email", f"investor{n}@example.com", f"第 {n} 条", "成交回报", idempotency_key=f"k{n}")


def send_all(sender, numbers):
    outcomes = Outcomes()
    for n in numbers:
        outcomes.watch(n, sender.send(message(n)))
    return outcomes


def test_provides_the_interface():
    sender = make_sender(Clock(), FakeRelay("a"), pool_size=3, pipeline_depth=2)
    verifyObject(IMessageSender, sender)
    assert sender.channel == "email" and sender.window == 6


def test_connections_open_on_demand_up_to_the_pool_size_and_are_reused():
    clock, relay = Clock(), FakeRelay("a")
    sender = make_sender(clock, relay, pool_size=2, pipeline_depth=2)
    assert relay.attempts == 0  # nothing to send, nothing opened
    outcomes = send_all(sender, range(40))
    pump(relay)
    assert all(isinstance(outcomes.results[n], Accepted) for n in range(40))
    assert len(relay.messages) == 40 and len(relay.connections) == 2
    assert {o.provider_ids[0] for o in outcomes.results.values()} == {f"M{n}" for n in range(1, 41)}


def test_one_message_opens_one_connection():
    clock, relay = Clock(), FakeRelay("a")
    sender = make_sender(clock, relay, pool_size=4)
    send_all(sender, [1])
    pump(relay)
    assert len(relay.connections) == 1


def test_idle_connection_closes_and_the_next_message_opens_another():
    clock, relay = Clock(), FakeRelay("a")
    sender = make_sender(clock, relay, idle_timeout=30)
    send_all(sender, [1])
    pump(relay)
    clock.advance(30)
    pump(relay)
    assert relay.quits == 1 and relay.open_connections == [] and sender.connections == []
    outcomes = send_all(sender, [2])
    pump(relay)
    assert isinstance(outcomes.results[2], Accepted)
    assert len(relay.connections) == 2


def test_refused_connection_fails_over_and_the_relay_rests_for_its_backoff():
    clock, first, second = Clock(), FakeRelay("a", refuse=True), FakeRelay("b")
    sender = make_sender(clock, first, second, relay_backoff=5, idle_timeout=None)
    outcomes = send_all(sender, [1])
    pump(second)
    assert isinstance(outcomes.results[1], Accepted) and len(second.messages) == 1
    assert sender.relays[0].failures == 1 and sender.relays[0].down_until == 5
    # While the first is down, new connections go to the second without trying it.
    second.connections[0].close()
    send_all(sender, [2])
    pump(second)
    assert first.attempts == 1 and len(second.messages) == 2
    # Back up after its backoff: tried first again, fails, rests twice as long.
    clock.advance(5)
    second.connections[1].close()
    send_all(sender, [3])
    pump(second)
    assert first.attempts == 2 and sender.relays[0].down_until == 5 + 10
    # Once it works, it is preferred again and its backoff starts over.
    first.refuse = False
    clock.advance(10)
    second.connections[2].close()
    outcomes = send_all(sender, [4])
    pump(first)
    assert isinstance(outcomes.results[4], Accepted) and len(first.messages) == 1
    assert sender.relays[0].failures == 0


def test_mail_from_refused_goes_through_the_next_relay_at_once():
    clock, first, second = Clock(), FakeRelay("a", mail_reply=b"451 4.3.0 later"), FakeRelay("b")
    sender = make_sender(clock, first, second)
    outcomes = send_all(sender, [1, 2])
    pump(first, second)
    assert isinstance(outcomes.results[1], Accepted) and isinstance(outcomes.results[2], Accepted)
    assert first.messages == [] and len(second.messages) == 2
    assert sender.relays[0].down_until > 0 and "451 4.3.0 later" in sender.relays[0].last_error


def test_a_dropped_connection_resends_only_what_the_relay_never_had():
    clock, relay = Clock(), FakeRelay("a")
    sender = make_sender(clock, relay, pool_size=1, pipeline_depth=2)
    outcomes = send_all(sender, [1, 2])
    connection = relay.connections[0]
    # Greeting, EHLO, then MAIL/RCPT/DATA of the first, up to its 354:
    # its content is on the wire (with the second's commands) when the
    # connection drops.
    for _ in range(3):
        connection.pump()
    assert connection.in_data and 1 not in outcomes.results
    assert b"\r\n.\r\nMAIL FROM:<notify@broker.example>" in connection.transport.value()
    connection.close()
    assert isinstance(outcomes.results[1], TemporaryFailure)  # the relay may have it: the outbox decides
    assert outcomes.results[1].content_sent
    pump(relay)  # the second, never sent, goes on a new connection
    assert isinstance(outcomes.results[2], Accepted)
    assert len(relay.connections) == 2


def test_a_message_waits_for_a_connection_at_most_the_queue_timeout():
    clock, relay = Clock(), FakeRelay("a", hang=True)
    sender = make_sender(clock, relay, queue_timeout=20, connect_timeout=60)
    outcomes = send_all(sender, [1])
    clock.advance(19)
    assert outcomes.results == {}
    clock.advance(1)
    assert isinstance(outcomes.results[1], TemporaryFailure)


def test_a_connection_that_never_completes_times_out_and_fails_over():
    clock, first, second = Clock(), FakeRelay("a", hang=True), FakeRelay("b")
    sender = make_sender(clock, first, second, connect_timeout=10, queue_timeout=60)
    outcomes = send_all(sender, [1])
    clock.advance(10)
    pump(second)
    assert isinstance(outcomes.results[1], Accepted)
    assert sender.relays[0].failures == 1


def test_every_relay_down_fails_soon_and_says_when_to_retry():
    clock, relay = Clock(), FakeRelay("a", refuse=True)
    sender = make_sender(clock, relay, relay_backoff=8)
    outcomes = send_all(sender, [1])
    clock.advance(0)
    assert isinstance(outcomes.results[1], TemporaryFailure)
    outcomes = send_all(sender, [2])
    assert outcomes.results == {}  # not within send(): the outbox must not recurse
    clock.advance(0)
    assert isinstance(outcomes.results[2], TemporaryFailure)
    assert outcomes.results[2].retry_after == 8
    assert relay.attempts == 1


def test_a_relay_refusing_the_greeting_is_marked_down():
    clock, first, second = Clock(), FakeRelay("a", greeting=b"554 go away"), FakeRelay("b")
    sender = make_sender(clock, first, second)
    outcomes = send_all(sender, [1])
    pump(first, second)
    assert isinstance(outcomes.results[1], Accepted) and len(second.messages) == 1
    assert "554 go away" in sender.relays[0].last_error


def test_an_invalid_address_is_permanent_and_opens_nothing():
    clock, relay = Clock(), FakeRelay("a")
    sender = make_sender(clock, relay)
    outcomes = Outcomes()
    outcomes.watch(1, sender.send(OutgoingMessage(1, "email", "not an address", "x", "y")))
    assert isinstance(outcomes.results[1], PermanentFailure)
    assert relay.attempts == 0


def test_stopping_fails_what_waits_lets_the_wire_finish_then_quits():
    clock, relay = Clock(), FakeRelay("a", pipelining=False)
    sender = make_sender(clock, relay, pool_size=1)
    outcomes = send_all(sender, [1, 2, 3])
    connection = relay.connections[0]
    for _ in range(3):
        connection.pump()  # greeting, EHLO: the first message's MAIL is out
    stopped = []
    sender.stopService().addCallback(stopped.append)
    assert isinstance(outcomes.results[2], TemporaryFailure) and isinstance(outcomes.results[3], TemporaryFailure)
    assert 1 not in outcomes.results
    pump(relay)
    assert isinstance(outcomes.results[1], Accepted)
    assert relay.quits == 1 and stopped == [None]
    outcomes.watch(4, sender.send(message(4)))
    assert isinstance(outcomes.results[4], TemporaryFailure)


def test_stopping_cuts_a_relay_that_does_not_answer():
    clock, relay = Clock(), FakeRelay("a")
    sender = make_sender(clock, relay, stop_timeout=10, reply_timeout=60)
    outcomes = send_all(sender, [1])
    connection = relay.connections[0]
    for _ in range(2):
        connection.pump()  # ready; MAIL/RCPT/DATA written, never answered
    stopped = []
    sender.stopService().addCallback(stopped.append)
    clock.advance(10)
    assert isinstance(outcomes.results[1], TemporaryFailure)
    assert connection.transport.disconnecting
    connection.close()
    assert stopped == [None]


def test_relay_settings_are_checked_up_front():
    with pytest.raises(ValueError):
        Relay("a", starttls="sometimes")
    with pytest.raises(ValueError):
        Relay("a", username="u")
    with pytest.raises(ValueError):
        SmtpSender(Clock(), [Relay("a", trust_root=b"not a certificate")], "a@b.example")
    with pytest.raises(ValueError):
        SmtpSender(Clock(), [], "a@b.example")
    assert "hunter2" not in repr(Relay("a", username="u", password="hunter2"))


def test_stopping_while_connecting_cancels_the_attempt():
    clock, relay = Clock(), FakeRelay("a", hang=True)
    sender = make_sender(clock, relay, connect_timeout=60)
    outcomes = send_all(sender, [1])
    stopped = []
    sender.stopService().addCallback(stopped.append)
    assert stopped == [None]
    assert isinstance(outcomes.results[1], TemporaryFailure)
    assert sender.relays[0].failures == 0  # our stopping is not the relay's fault
    clock.advance(60)
    assert sender.relays[0].failures == 0


def test_stopping_during_a_handshake_does_not_blame_the_relay_or_try_the_next():
    clock, first, second = Clock(), FakeRelay("a"), FakeRelay("b")
    sender = make_sender(clock, first, second)
    outcomes = send_all(sender, [1])
    assert len(first.connections) == 1  # connected, greeting not yet answered
    sender.stopService()
    assert first.connections[0].transport.disconnecting
    assert isinstance(outcomes.results[1], TemporaryFailure)
    assert sender.relays[0].failures == 0 and second.attempts == 0


def test_failures_of_a_relay_already_down_do_not_lengthen_its_rest():
    clock, first, second = Clock(), FakeRelay("a", mail_reply=b"452 4.3.1 out of storage"), FakeRelay("b")
    sender = make_sender(clock, first, second, pool_size=2, pipeline_depth=1, relay_backoff=5)
    outcomes = send_all(sender, [1, 2])
    pump(first, second)
    assert len(first.connections) == 2  # both refused MAIL
    assert all(isinstance(outcomes.results[n], Accepted) for n in (1, 2)) and len(second.messages) == 2
    assert sender.relays[0].failures == 1 and sender.relays[0].down_until == 5
