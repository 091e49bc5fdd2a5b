"""
End to end with a real paging terminal: tests/notify/snpp_server.pl, built
on Debian's Net::SNPP::Server (libnet-snpp-perl), an SNPP implementation
independent of ours, on 127.0.0.1 and a free port.  It prints one JSON line
per page it accepts; these tests read them.

The sender runs on the real reactor.  Its clock is the reactor's, except
that a test may skip a backoff ahead (L{SkippableClock}) rather than wait
for it.
"""

import json
import os
import signal

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import ProcessProtocol

from callcenter.notify.message import Accepted, OutgoingMessage, PermanentFailure, TemporaryFailure
from callcenter.notify.snpp import SNPPSender

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "snpp_server.pl")
# Generous: a loaded CI machine may be slow, and this only bounds a hang.
DEADLINE = 30


class PagingTerminal(ProcessProtocol):
    """snpp_server.pl as a child process: its port, and the pages it printed."""

    def __init__(self):
        self.listening = Deferred()
        self.ended = Deferred()
        self.pages = []
        self.output = []
        self._buffer = b""
        self._waiters = []

    def outReceived(self, data):
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self.output.append(line)
            if line.startswith(b"LISTENING "):
                self.listening.callback(int(line.split()[1]))
            elif line.startswith(b"PAGE "):
                self.pages.append(json.loads(line[len(b"PAGE "):]))
                self._wake()

    def errReceived(self, data):
        self.output.append(data)

    def processEnded(self, reason):
        if not self.listening.called:
            self.listening.errback(AssertionError(b"\n".join(self.output).decode(errors="replace")))
        self.ended.callback(None)

    def _wake(self):
        waiters = [w for w in self._waiters if len(self.pages) >= w[0]]
        self._waiters = [w for w in self._waiters if len(self.pages) < w[0]]
        for _, waiter in waiters:
            waiter.callback(self.pages[:])

    def received(self, n):
        """Fires with the pages once there are C{n} of them."""
        d = Deferred()
        self._waiters.append((n, d))
        self._wake()
        return d.addTimeout(DEADLINE, reactor)

    def kill(self):
        """SIGKILL the terminal and the child serving each connection (its process group)."""
        try:
            os.killpg(self.transport.pid, signal.SIGKILL)
        except (ProcessLookupError, TypeError):
            pass
        return self.ended


class SkippableClock:
    """The reactor's time, plus what a test skipped ahead."""

    def __init__(self):
        self.skipped = 0.0

    def seconds(self):
        return reactor.seconds() + self.skipped

    def callLater(self, delay, function, *args, **kwargs):
        return reactor.callLater(delay, function, *args, **kwargs)


@pytest.fixture
def terminals():
    """start(*options) runs a terminal and fires with (it, its port); all are killed after the test."""
    started = []

    def start(*options):
        terminal = PagingTerminal()
        reactor.spawnProcess(terminal, "perl", ["perl", SERVER, "--lifetime", "300", *options], env=os.environ)
        started.append(terminal)
        return terminal.listening.addTimeout(DEADLINE, reactor).addCallback(lambda port: (terminal, port))

    yield start
    pytest_twisted.blockon(DeferredList([t.kill().addTimeout(DEADLINE, reactor) for t in started]))


@pytest.fixture
def senders():
    """start(port, **options) starts a sender to 127.0.0.1:port; all are stopped after the test."""
    started = []

    def start(port, **options):
        sender = SNPPSender.for_host(reactor, "127.0.0.1", port, reply_timeout=DEADLINE, **options)
        sender.startService()
        started.append(sender)
        return sender

    yield start
    pytest_twisted.blockon(DeferredList([s.stopService().addTimeout(DEADLINE, reactor) for s in started]))


def message(address, body, **fields):
    return OutgoingMessage(message_id=1, channel="pager", address=address, body=body, **fields)


async def outcome_of(d):
    """The result or the exception of C{d}, within the deadline."""
    try:
        return await d.addTimeout(DEADLINE, reactor)
    except Exception as e:
        return e


@pytest_twisted.ensureDeferred
async def test_numeric_and_alphanumeric_pages_arrive(terminals, senders):
    terminal, port = await terminals()
    sender = senders(port)
    numeric = await outcome_of(sender.send(message("5551234", "4008208888")))
    one_line = await outcome_of(sender.send(message("5559876", "Alert: 600519 above 1,800.00")))
    several = await outcome_of(sender.send(message("5559876", "成交 Fill 600519\n.100 @ 1,800.00\n..\nCafé")))
    assert numeric == one_line == several == Accepted(detail="250 Message Sent Successfully")
    pages = await terminal.received(3)
    assert [(p["pager"], p["message"]) for p in pages] == [
        ("5551234", "4008208888"),
        ("5559876", "Alert: 600519 above 1,800.00"),
        # Net::SNPP::Server keeps DATA's line ends as "\n", the last one too.
        ("5559876", "?? Fill 600519\n.100 @ 1,800.00\n..\nCafe\n"),
    ]


@pytest_twisted.ensureDeferred
async def test_utf8_text_arrives_unchanged_when_the_terminal_takes_it(terminals, senders):
    terminal, port = await terminals()
    sender = senders(port, utf8=True)
    assert await outcome_of(sender.send(message("5551234", "贵州茅台 成交 100 股 @ 1800.00"))) == Accepted(
        detail="250 Message Sent Successfully"
    )
    [page] = await terminal.received(1)
    assert page["message"] == "贵州茅台 成交 100 股 @ 1800.00"


@pytest_twisted.ensureDeferred
async def test_an_invalid_pager_id_is_a_permanent_failure(terminals, senders):
    terminal, port = await terminals("--reject", "5550000")
    sender = senders(port)
    refused = await outcome_of(sender.send(message("5550000", "hello")))
    # Net::SNPP::Server's own rule: 7 digits at least.
    too_short = await outcome_of(sender.send(message("123", "hello")))
    accepted = await outcome_of(sender.send(message("5551234", "after")))
    assert isinstance(refused, PermanentFailure) and "550" in str(refused)
    assert isinstance(too_short, PermanentFailure)
    assert accepted == Accepted(detail="250 Message Sent Successfully")
    assert [p["pager"] for p in await terminal.received(1)] == ["5551234"]


@pytest_twisted.ensureDeferred
async def test_the_next_page_after_the_terminal_restarts_reconnects(terminals, senders):
    first, port = await terminals()
    clock = SkippableClock()
    sender = senders(port, clock=clock)
    assert await outcome_of(sender.send(message("5551234", "before"))) == Accepted(
        detail="250 Message Sent Successfully"
    )
    await first.received(1)
    await first.kill()

    down = await outcome_of(sender.send(message("5551234", "while down")))
    assert isinstance(down, TemporaryFailure) and down.retry_after is not None

    second, _ = await terminals("--port", str(port))
    clock.skipped += down.retry_after
    assert await outcome_of(sender.send(message("5551234", "after"))) == Accepted(
        detail="250 Message Sent Successfully"
    )
    assert [p["message"] for p in await second.received(1)] == ["after"]
    assert [p["message"] for p in first.pages] == ["before"]


@pytest_twisted.ensureDeferred
async def test_a_link_the_terminal_closed_when_idle_is_reopened(terminals, senders):
    terminal, port = await terminals("--idle-timeout", "1")
    sender = senders(port)
    assert await outcome_of(sender.send(message("5551234", "first"))) == Accepted(
        detail="250 Message Sent Successfully"
    )
    # The terminal says "421 Timeout, Goodbye" and closes after a second idle.
    await sender._links[0].protocol.when_closed().addTimeout(DEADLINE, reactor)
    assert await outcome_of(sender.send(message("5551234", "second"))) == Accepted(
        detail="250 Message Sent Successfully"
    )
    assert [p["message"] for p in await terminal.received(2)] == ["first", "second"]


@pytest_twisted.ensureDeferred
async def test_login_level_and_subject(terminals, senders):
    terminal, port = await terminals("--login", "broker:s3cret", "--levels")
    sender = senders(port, login=("broker", "s3cret"), service_level=1)
    assert await outcome_of(sender.send(message("5551234", "Fill", subject="Trade"))) == Accepted(
        detail="250 Message Sent Successfully"
    )
    [page] = await terminal.received(1)
    assert (page["login"], page["level"], page["subject"], page["message"]) == ("broker", 1, "Trade", "Fill")


@pytest_twisted.ensureDeferred
async def test_a_refused_login_is_a_temporary_failure(terminals, senders):
    terminal, port = await terminals("--login", "broker:s3cret")
    sender = senders(port, login=("broker", "wrong"))
    refused = await outcome_of(sender.send(message("5551234", "Fill")))
    assert isinstance(refused, TemporaryFailure) and "Invalid Login" in str(refused)
    assert terminal.pages == []


@pytest_twisted.ensureDeferred
async def test_pages_sent_together_over_two_links_both_arrive(terminals, senders):
    terminal, port = await terminals()
    sender = senders(port, connections=2)
    results = await DeferredList(
        [sender.send(message("5551234", "one")), sender.send(message("5559876", "two"))], consumeErrors=True
    ).addTimeout(DEADLINE, reactor)
    assert [r for r in results] == [(True, Accepted(detail="250 Message Sent Successfully"))] * 2
    # Whether the second link was up in time for the second page depends on
    # the machine's load (the first one may carry both): not asserted.
    assert sorted(p["message"] for p in await terminal.received(2)) == ["one", "two"]
