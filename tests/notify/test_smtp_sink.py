"""
End to end against Postfix's smtp-sink (Debian ``postfix``), a second
independent SMTP server, run as a child process on a free port of
127.0.0.1.  It offers PIPELINING, so here the messages go pipelined
(the content of one in the same write as the next one's commands), and
it dumps each message it accepts to a file the tests read back.  Its
fault switches make the replies the sender must map: 5xx to RCPT, 4xx or
421 after the content, 421 to MAIL (the next relay takes over).
"""

import email
import email.policy
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from callcenter.notify.message import Accepted, OutgoingMessage, PermanentFailure, TemporaryFailure
from callcenter.notify.smtp.protocol import TransactionAborted
from callcenter.notify.smtp.relays import Relay
from callcenter.notify.smtp.sender import SmtpSender
from postgres import free_port

DEADLINE = 30
# Not skipped when missing: `make test` installs Debian postfix, and a
# silently skipped peer would hide the only pipelining server in the tests.
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


def wait_listening(port, process):
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"smtp-sink exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"smtp-sink not listening on {port} within {DEADLINE} s")


class Sink:
    """One smtp-sink process dumping what it accepts into its own directory."""

    def __init__(self, *options):
        # smtp-sink runs as nobody (-u): a directory nobody can write, outside pytest's private tmp.
        self.directory = tempfile.mkdtemp(prefix="smtp-sink-")
        os.chmod(self.directory, 0o777)
        self.port = free_port()
        self.process = subprocess.Popen(
            [SMTP_SINK, "-u", "nobody", "-d", os.path.join(self.directory, "%M."), *options,
             f"127.0.0.1:{self.port}", "64"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_listening(self.port, self.process)

    def messages(self):
        """Each dumped message, parsed: smtp-sink keeps the dot-stuffing and the envelope as X- headers."""
        parsed = []
        for name in sorted(os.listdir(self.directory)):
            with open(os.path.join(self.directory, name), "rb") as f:
                lines = f.read().split(b"\n")
            data = b"\r\n".join(line[1:] if line.startswith(b"..") else line for line in lines)
            parsed.append(email.message_from_bytes(data, policy=email.policy.default))
        return parsed

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(DEADLINE)
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def sinks():
    started = []

    def start(*options):
        started.append(Sink(*options))
        return started[-1]

    yield start
    for sink in started:
        sink.stop()


@pytest.fixture
def senders():
    started = []

    def make(*sinks, **kwargs):
        kwargs.setdefault("reply_timeout", DEADLINE)
        kwargs.setdefault("connect_timeout", DEADLINE)
        relays = [Relay("127.0.0.1", sink.port, starttls="off") for sink in sinks]
        sender = SmtpSender(reactor, relays, "notify@broker.example", from_name="华安证券", **kwargs)
        sender.startService()
        started.append(sender)
        return sender

    yield make
    for sender in started:
        if sender.running:
            pytest_twisted.blockon(sender.stopService())


def fill(n):
    return OutgoingMessage(
        n, "email", f"investor{n}@example.com",
        f"尊敬的客户：您的委托 #{n} 600036 招商银行 卖出 {n} 股已成交。\n.\n华安证券",
        f"成交回报：600036 招商银行 卖出 {n} 股", idempotency_key=f"fill:{n}:email",
    )


def outcome(d):
    """A Deferred firing with the result or the exception, within the deadline."""
    return d.addTimeout(DEADLINE, reactor).addErrback(lambda f: f.value)


@pytest_twisted.inlineCallbacks
def test_a_pipelined_stream_arrives_whole(sinks, senders):
    sink = sinks()
    sender = senders(sink, pool_size=2, pipeline_depth=2)
    count = 200
    results = yield defer.gatherResults([outcome(sender.send(fill(n))) for n in range(count)])
    assert all(isinstance(r, Accepted) for r in results), [r for r in results if not isinstance(r, Accepted)][:3]
    assert sender.connections and all(c.pipelining for c in sender.connections)
    assert len(sender.connections) <= 2
    received = sink.messages()
    assert len(received) == count
    by_recipient = {m["X-Rcpt-Args"]: m for m in received}
    for n in range(count):
        m = by_recipient[f"<investor{n}@example.com>"]
        assert m["Subject"] == f"成交回报：600036 招商银行 卖出 {n} 股"
        assert m["From"].addresses[0].display_name == "华安证券"
        assert m.get_content().replace("\r\n", "\n").rstrip("\n") == fill(n).body
        assert m["Message-ID"] == sender._composer.message_id(fill(n))


@pytest.mark.parametrize("options, kind, content_sent", [
    (["-f", "RCPT"], PermanentFailure, None),
    (["-r", "."], TemporaryFailure, None),
    (["-Q", "."], TransactionAborted, True),
], ids=["5xx-to-rcpt", "4xx-after-content", "421-after-content"])
@pytest_twisted.inlineCallbacks
def test_replies_map_to_outcomes(sinks, senders, options, kind, content_sent):
    sink = sinks(*options)
    sender = senders(sink)
    result = yield outcome(sender.send(fill(1)))
    assert type(result) is kind, result
    if content_sent is not None:
        assert result.content_sent is content_sent


@pytest_twisted.inlineCallbacks
def test_421_to_mail_the_next_relay_takes_over(sinks, senders):
    first, second = sinks("-Q", "MAIL"), sinks()
    sender = senders(first, second)
    results = yield defer.gatherResults([outcome(sender.send(fill(n))) for n in range(3)])
    assert all(isinstance(r, Accepted) for r in results), results
    assert first.messages() == [] and len(second.messages()) == 3
    assert "421" in sender.relays[0].last_error and sender.relays[0].down_until > reactor.seconds()
