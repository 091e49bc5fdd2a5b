"""
The ESMTP client on an in-memory transport and a fake clock: what it
writes for each reply the relay gives, and what each message's Deferred
becomes.  No network, no wall time.
"""

import base64

import pytest
from twisted.internet import defer
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from callcenter.notify.message import Accepted, PermanentFailure, TemporaryFailure
from callcenter.notify.smtp.protocol import (
    STARTTLS_OPTIONAL,
    STARTTLS_REQUIRED,
    ESMTPClient,
    HandshakeFailed,
    TransactionAborted,
    dot_stuff,
    queue_id,
)

EHLO_PIPELINING = [b"250-relay.example", b"250-PIPELINING", b"250-SIZE 10240000", b"250-8BITMIME", b"250 ENHANCEDSTATUSCODES"]
EHLO_PLAIN = [b"250-relay.example", b"250 8BITMIME"]
MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"


class Transport(StringTransport):
    """A StringTransport that records each write and STARTTLS, as the TCP transport would see them."""

    def __init__(self):
        super().__init__()
        self.writes = []
        self.tls = None

    def write(self, data):
        self.writes.append(data)
        super().write(data)

    def startTLS(self, options):
        self.tls = options

    def take(self):
        """What was written since the last take."""
        data = self.value()
        self.clear()
        self.writes.clear()
        return data


class Results:
    """Collects what a Deferred fires with, without letting a failure go unhandled."""

    def __init__(self, d):
        self.value = None
        self.fired = False
        d.addBoth(self._set)

    def _set(self, result):
        self.fired = True
        self.value = result.value if isinstance(result, Failure) else result


def feed(client, *lines):
    client.dataReceived(b"".join(line + b"\r\n" for line in lines))


def connect(ehlo=EHLO_PIPELINING, **kwargs):
    """A client past the handshake; returns (client, transport, clock)."""
    clock = Clock()
    client = ESMTPClient(clock, "notify.broker.example", reply_timeout=60, **kwargs)
    transport = Transport()
    client.makeConnection(transport)
    ready = Results(client.ready)
    feed(client, b"220 relay.example ESMTP")
    assert transport.take() == b"EHLO notify.broker.example\r\n"
    feed(client, *ehlo)
    transport.take()
    return client, transport, clock, ready


def test_handshake_reads_multiline_ehlo_extensions():
    client, transport, clock, ready = connect()
    assert ready.value is client
    assert client.pipelining
    assert client.extensions["SIZE"] == "10240000"
    assert "8BITMIME" in client.extensions
    assert client.capacity == 2


def test_pipelined_message_is_one_write_and_one_round_trip_for_its_content():
    client, transport, clock, _ = connect()
    result = Results(client.send("notify@broker.example", "investor@example.com", MESSAGE))
    assert transport.writes == [
        b"MAIL FROM:<notify@broker.example> SIZE=%d\r\nRCPT TO:<investor@example.com>\r\nDATA\r\n" % len(MESSAGE)
    ]
    transport.take()
    feed(client, b"250 2.1.0 Ok", b"250 2.1.5 Ok", b"354 End data with <CR><LF>.<CR><LF>")
    assert transport.writes == [MESSAGE + b".\r\n"]
    transport.take()
    assert not result.fired
    feed(client, b"250 2.0.0 Ok: queued as 4Xk2Lq0Yz3")
    assert result.value == Accepted(provider_ids=("4Xk2Lq0Yz3",), detail="250 2.0.0 Ok: queued as 4Xk2Lq0Yz3")
    assert client.in_flight == 0


def test_ascii_message_declares_no_8bitmime():
    client, transport, clock, _ = connect()
    client.send("a@b.example", "c@d.example", MESSAGE)
    assert b"BODY=" not in transport.take()


def test_next_message_commands_ride_with_the_previous_content():
    """RFC 2920 §3.1: content may open a group, so content 1 and MAIL/RCPT/DATA 2 share one write."""
    client, transport, clock, _ = connect()
    first = Results(client.send("a@b.example", "one@example.com", b"Subject: 1\r\n\r\none\r\n"))
    second = Results(client.send("a@b.example", "two@example.com", b"Subject: 2\r\n\r\ntwo\r\n"))
    assert transport.take().count(b"MAIL FROM") == 1  # DATA ends a group: the second waits
    feed(client, b"250 Ok", b"250 Ok", b"354 go")
    assert transport.writes == [
        b"Subject: 1\r\n\r\none\r\n.\r\nMAIL FROM:<a@b.example> SIZE=19\r\nRCPT TO:<two@example.com>\r\nDATA\r\n"
    ]
    transport.take()
    feed(client, b"250 Ok: queued as AAA", b"250 Ok", b"250 Ok", b"354 go")
    assert first.value.provider_ids == ("AAA",)
    assert transport.take() == b"Subject: 2\r\n\r\ntwo\r\n.\r\n"
    feed(client, b"250 Ok: queued as BBB")
    assert second.value.provider_ids == ("BBB",)


def test_a_message_sent_while_the_previous_content_is_out_goes_at_once():
    client, transport, clock, _ = connect()
    client.send("a@b.example", "one@example.com", MESSAGE)
    feed(client, b"250 Ok", b"250 Ok", b"354 go")
    transport.take()
    client.send("a@b.example", "two@example.com", MESSAGE)
    assert transport.take().startswith(b"MAIL FROM:<a@b.example>")
    assert client.capacity == 0


def test_without_pipelining_each_command_waits_for_its_reply():
    client, transport, clock, _ = connect(ehlo=EHLO_PLAIN)
    assert client.capacity == 1
    result = Results(client.send("a@b.example", "c@d.example", MESSAGE))
    assert transport.take() == b"MAIL FROM:<a@b.example>\r\n"
    feed(client, b"250 sender ok")
    assert transport.take() == b"RCPT TO:<c@d.example>\r\n"
    feed(client, b"250 recipient ok")
    assert transport.take() == b"DATA\r\n"
    feed(client, b"354 go ahead")
    assert transport.take() == MESSAGE + b".\r\n"
    feed(client, b"250-first line", b"250 OK id=1rABCD-000123-Xy")
    assert result.value.provider_ids == ("1rABCD-000123-Xy",)
    assert result.value.detail == "250 first line OK id=1rABCD-000123-Xy"


def test_helo_when_ehlo_is_not_understood():
    for code in (b"500", b"502"):
        clock = Clock()
        client = ESMTPClient(clock, "me.example")
        transport = Transport()
        client.makeConnection(transport)
        ready = Results(client.ready)
        feed(client, b"220 old.example SMTP")
        transport.take()
        feed(client, code + b" command not recognized")
        assert transport.take() == b"HELO me.example\r\n"
        feed(client, b"250 old.example")
        assert ready.value is client
        assert not client.pipelining and client.extensions == {}


def test_rcpt_4xx_is_temporary_and_resets_the_transaction():
    client, transport, clock, _ = connect()
    result = Results(client.send("a@b.example", "full@example.com", MESSAGE))
    transport.take()
    feed(client, b"250 Ok", b"452 4.2.2 mailbox full", b"554 5.5.1 no valid recipients")
    assert type(result.value) is TemporaryFailure
    assert "452 4.2.2 mailbox full" in str(result.value)
    assert transport.take() == b"RSET\r\n"
    feed(client, b"250 Ok")
    assert client.capacity == 2


def test_rcpt_5xx_is_permanent():
    client, transport, clock, _ = connect()
    result = Results(client.send("a@b.example", "nobody@example.com", MESSAGE))
    feed(client, b"250 Ok", b"550-5.1.1 no such user", b"550 5.1.1 here", b"554 no valid recipients")
    assert isinstance(result.value, PermanentFailure)
    assert "550 5.1.1 no such user 5.1.1 here" in str(result.value)


def test_a_server_that_opens_data_after_refusing_the_recipient_gets_no_content():
    client, transport, clock, _ = connect()
    result = Results(client.send("a@b.example", "nobody@example.com", MESSAGE))
    transport.take()
    feed(client, b"250 Ok", b"550 no such user", b"354 go")
    assert transport.take() == b".\r\n"
    feed(client, b"554 no recipients")
    assert isinstance(result.value, PermanentFailure)


@pytest.mark.parametrize("reply, kind", [(b"451 4.3.0 try later", TemporaryFailure), (b"554 5.7.1 spam", PermanentFailure)])
def test_reply_to_the_content(reply, kind):
    client, transport, clock, _ = connect()
    result = Results(client.send("a@b.example", "c@d.example", MESSAGE))
    feed(client, b"250 Ok", b"250 Ok", b"354 go", reply)
    assert type(result.value) is kind
    assert reply.decode() in str(result.value)
    assert client.capacity == 2  # the connection carries on


def test_refused_mail_from_fails_over_and_closes():
    client, transport, clock, _ = connect()
    first = Results(client.send("a@b.example", "one@example.com", MESSAGE))
    second = Results(client.send("a@b.example", "two@example.com", MESSAGE))
    transport.take()
    feed(client, b"451 4.3.0 local error", b"503 need MAIL", b"503 need RCPT")
    for result in (first, second):
        assert isinstance(result.value, TransactionAborted)
        assert not result.value.content_sent
    assert first.value.relay_at_fault
    assert transport.take() == b"QUIT\r\n"
    assert client.capacity == 0


def test_421_fails_everything_in_flight_and_drops_the_connection():
    client, transport, clock, _ = connect()
    first = Results(client.send("a@b.example", "one@example.com", MESSAGE))
    second = Results(client.send("a@b.example", "two@example.com", MESSAGE))
    feed(client, b"250 Ok", b"250 Ok", b"354 go")
    feed(client, b"421 4.3.2 shutting down")
    assert first.value.content_sent and first.value.relay_at_fault
    assert not second.value.content_sent
    assert isinstance(first.value, TemporaryFailure)
    assert transport.disconnecting


def test_unsolicited_421_when_idle_closes():
    client, transport, clock, _ = connect()
    feed(client, b"421 idle too long")
    assert transport.disconnecting and client.capacity == 0


def test_dot_stuffing_and_line_ends():
    assert dot_stuff(b".first\r\nok\r\n.\r\n..two\r\n") == b"..first\r\nok\r\n..\r\n...two\r\n.\r\n"
    assert dot_stuff(b"no newline at end") == b"no newline at end\r\n.\r\n"
    # A bare LF before a dot would end the message early at some relays
    # (SMTP smuggling): made CRLF, and the dot doubled.
    assert dot_stuff(b"a\n.\nMAIL FROM:<x@y>\r\n") == b"a\r\n..\r\nMAIL FROM:<x@y>\r\n.\r\n"
    assert dot_stuff(b"a\r.\rb") == b"a\r\n..\r\nb\r\n.\r\n"


def test_dot_stuffed_content_on_the_wire():
    client, transport, clock, _ = connect()
    client.send("a@b.example", "c@d.example", b"Subject: x\r\n\r\n.\r\n.hidden\r\n")
    feed(client, b"250 Ok", b"250 Ok")
    transport.take()
    feed(client, b"354 go")
    assert transport.take() == b"Subject: x\r\n\r\n..\r\n..hidden\r\n.\r\n"


def test_no_reply_within_the_timeout_drops_the_connection():
    client, transport, clock, _ = connect()
    result = Results(client.send("a@b.example", "c@d.example", MESSAGE))
    feed(client, b"250 Ok", b"250 Ok", b"354 go")
    clock.advance(59)
    assert not result.fired and not transport.disconnecting
    clock.advance(1)
    assert isinstance(result.value, TransactionAborted)
    assert result.value.content_sent and result.value.relay_at_fault
    assert transport.disconnecting


def test_the_timeout_is_per_reply():
    client, transport, clock, _ = connect()
    result = Results(client.send("a@b.example", "c@d.example", MESSAGE))
    for reply in (b"250 Ok", b"250 Ok", b"354 go", b"250 Ok"):
        clock.advance(50)
        feed(client, reply)
    assert isinstance(result.value, Accepted)
    assert not transport.disconnecting


def test_handshake_timeout_fails_ready():
    clock = Clock()
    client = ESMTPClient(clock, "me.example", reply_timeout=30)
    transport = Transport()
    client.makeConnection(transport)
    ready = Results(client.ready)
    clock.advance(30)
    assert isinstance(ready.value, HandshakeFailed)
    assert transport.disconnecting


def test_cancelling_the_handshake_cuts_the_connection_without_blaming_the_relay():
    clock = Clock()
    client = ESMTPClient(clock, "me.example")
    transport = Transport()
    client.makeConnection(transport)
    ready = Results(client.ready)
    client.ready.cancel()
    assert isinstance(ready.value, defer.CancelledError)
    assert transport.disconnecting
    clock.advance(3600)  # no timer left to fire on a dead connection
    assert clock.getDelayedCalls() == []


def test_connection_lost_mid_message_fails_all_in_flight():
    client, transport, clock, _ = connect()
    first = Results(client.send("a@b.example", "one@example.com", MESSAGE))
    second = Results(client.send("a@b.example", "two@example.com", MESSAGE))
    closed = Results(client.when_closed())
    feed(client, b"250 Ok", b"250 Ok", b"354 go")
    client.connectionLost(Failure(ConnectionLost("reset by peer")))
    assert isinstance(first.value, TransactionAborted) and first.value.content_sent
    assert isinstance(second.value, TransactionAborted) and not second.value.content_sent
    assert not first.value.relay_at_fault
    assert closed.fired
    assert isinstance(Results(client.send("a@b.example", "c@d.example", MESSAGE)).value, TransactionAborted)


@pytest.mark.parametrize("garbage", [b"hello there", b"2500 Ok", b"\xff\xfe\x00", b"199 early", b"600 what", b"25"])
def test_malformed_reply_drops_the_connection(garbage):
    client, transport, clock, _ = connect()
    result = Results(client.send("a@b.example", "c@d.example", MESSAGE))
    client.dataReceived(garbage + b"\r\n")  # must not raise
    assert isinstance(result.value, TransactionAborted) and result.value.relay_at_fault
    assert transport.disconnecting


def test_multiline_reply_changing_code_is_malformed():
    client, transport, clock, _ = connect()
    result = Results(client.send("a@b.example", "c@d.example", MESSAGE))
    feed(client, b"250-one", b"251 two")
    assert isinstance(result.value, TransactionAborted)


def test_overlong_reply_line_drops_the_connection():
    client, transport, clock, _ = connect()
    result = Results(client.send("a@b.example", "c@d.example", MESSAGE))
    client.dataReceived(b"250 " + b"x" * 10000)
    assert isinstance(result.value, TransactionAborted)
    assert transport.disconnecting


def test_reply_nobody_asked_for_drops_the_connection():
    client, transport, clock, _ = connect()
    feed(client, b"250 surprise")
    assert transport.disconnecting


def test_idle_connection_says_quit():
    client, transport, clock, _ = connect(idle_timeout=30)
    result = Results(client.send("a@b.example", "c@d.example", MESSAGE))
    feed(client, b"250 Ok", b"250 Ok", b"354 go", b"250 Ok")
    assert isinstance(result.value, Accepted)
    transport.take()
    clock.advance(29)
    assert transport.take() == b""
    clock.advance(1)
    assert transport.take() == b"QUIT\r\n"
    assert client.capacity == 0
    feed(client, b"221 Bye")
    assert transport.disconnecting


def test_quit_lets_the_message_on_the_wire_finish():
    client, transport, clock, _ = connect(ehlo=EHLO_PLAIN)
    first = Results(client.send("a@b.example", "one@example.com", MESSAGE))
    second = Results(client.send("a@b.example", "two@example.com", MESSAGE))
    closed = Results(client.quit())
    assert isinstance(second.value, TransactionAborted) and not second.value.content_sent
    feed(client, b"250 Ok", b"250 Ok", b"354 go", b"250 Ok")
    assert isinstance(first.value, Accepted)
    assert transport.value().endswith(b".\r\nQUIT\r\n")
    feed(client, b"221 Bye")
    client.connectionLost(Failure(ConnectionDone()))
    assert closed.fired


def test_smtputf8_for_an_internationalised_address():
    client, transport, clock, _ = connect(ehlo=[b"250-relay", b"250-PIPELINING", b"250-8BITMIME", b"250 SMTPUTF8"])
    client.send("a@b.example", "张三@例子.中国", "To: 张三@例子.中国\r\n\r\nhi\r\n".encode())
    assert transport.take().startswith("MAIL FROM:<a@b.example> SMTPUTF8 BODY=8BITMIME\r\nRCPT TO:<张三@例子.中国>".encode())


def test_no_smtputf8_no_8bitmime_is_permanent():
    client, transport, clock, _ = connect(ehlo=[b"250-relay", b"250 PIPELINING"])
    assert isinstance(Results(client.send("a@b.example", "张三@例子.中国", MESSAGE)).value, PermanentFailure)
    assert isinstance(Results(client.send("a@b.example", "c@d.example", "é".encode())).value, PermanentFailure)
    assert transport.take() == b""


def test_message_over_the_size_limit_is_permanent():
    client, transport, clock, _ = connect(ehlo=[b"250-relay", b"250 SIZE 100"])
    assert isinstance(Results(client.send("a@b.example", "c@d.example", b"x" * 101)).value, PermanentFailure)
    assert transport.take() == b""


def test_greeting_refused():
    clock = Clock()
    client = ESMTPClient(clock, "me.example")
    transport = Transport()
    client.makeConnection(transport)
    ready = Results(client.ready)
    feed(client, b"554 5.3.2 not accepting connections")
    assert isinstance(ready.value, HandshakeFailed)
    assert "554 5.3.2 not accepting connections" in str(ready.value)
    assert transport.take() == b"QUIT\r\n"


def tls_client(starttls=STARTTLS_REQUIRED, credentials=("user", "pässword"), **kwargs):
    clock = Clock()
    options = object()
    client = ESMTPClient(clock, "me.example", starttls=starttls, tls_options=options, credentials=credentials, **kwargs)
    transport = Transport()
    client.makeConnection(transport)
    ready = Results(client.ready)
    feed(client, b"220 relay ESMTP")
    transport.take()
    return client, transport, ready, options


def test_starttls_then_ehlo_again_then_auth_plain():
    client, transport, ready, options = tls_client()
    feed(client, b"250-relay", b"250-STARTTLS", b"250 AUTH LOGIN")
    assert transport.take() == b"STARTTLS\r\n"
    feed(client, b"220 2.0.0 Ready to start TLS")
    assert transport.tls is options
    assert transport.take() == b"EHLO me.example\r\n"
    feed(client, b"250-relay", b"250-PIPELINING", b"250 AUTH PLAIN LOGIN")
    expected = base64.b64encode("\0user\0pässword".encode())
    assert transport.take() == b"AUTH PLAIN " + expected + b"\r\n"
    assert not ready.fired
    feed(client, b"235 2.7.0 Authentication successful")
    assert ready.value is client and client.tls and client.pipelining


def test_auth_login_when_plain_is_not_offered():
    client, transport, ready, _ = tls_client()
    feed(client, b"250-relay", b"250 STARTTLS")
    feed(client, b"220 go")
    transport.take()
    feed(client, b"250-relay", b"250 AUTH=LOGIN")
    assert transport.take() == b"AUTH LOGIN\r\n"
    feed(client, b"334 VXNlcm5hbWU6")
    assert transport.take() == base64.b64encode(b"user") + b"\r\n"
    feed(client, b"334 UGFzc3dvcmQ6")
    assert transport.take() == base64.b64encode("pässword".encode()) + b"\r\n"
    feed(client, b"235 ok")
    assert ready.value is client


def test_required_tls_not_offered_sends_no_credentials():
    client, transport, ready, _ = tls_client()
    feed(client, b"250-relay", b"250 AUTH PLAIN")
    assert isinstance(ready.value, HandshakeFailed)
    assert b"AUTH" not in transport.value()


def test_optional_tls_declined_never_sends_credentials_in_clear():
    client, transport, ready, _ = tls_client(starttls=STARTTLS_OPTIONAL)
    feed(client, b"250-relay", b"250-STARTTLS", b"250 AUTH PLAIN")
    feed(client, b"454 TLS not available")
    assert isinstance(ready.value, HandshakeFailed)
    assert b"AUTH" not in transport.value()


def test_optional_tls_without_credentials_goes_on_in_clear():
    client, transport, ready, _ = tls_client(starttls=STARTTLS_OPTIONAL, credentials=None)
    feed(client, b"250 relay")
    assert ready.value is client and not client.tls


def test_plaintext_auth_when_explicitly_allowed():
    clock = Clock()
    client = ESMTPClient(clock, "me.example", credentials=("u", "p"), allow_plaintext_auth=True)
    transport = Transport()
    client.makeConnection(transport)
    ready = Results(client.ready)
    feed(client, b"220 relay", b"250-relay", b"250 AUTH PLAIN")
    assert transport.value().endswith(b"AUTH PLAIN " + base64.b64encode(b"\0u\0p") + b"\r\n")
    feed(client, b"235 ok")
    assert ready.value is client


def test_wrong_credentials_fail_the_handshake():
    client, transport, ready, _ = tls_client()
    feed(client, b"250-relay", b"250 STARTTLS")
    feed(client, b"220 go")
    feed(client, b"250-relay", b"250 AUTH PLAIN")
    feed(client, b"535 5.7.8 Authentication credentials invalid")
    assert isinstance(ready.value, HandshakeFailed)
    assert "535 5.7.8" in str(ready.value)
    assert "pässword" not in str(ready.value)


def test_plaintext_injected_after_starttls_is_not_read():
    client, transport, ready, _ = tls_client()
    feed(client, b"250-relay", b"250 STARTTLS")
    feed(client, b"220 go", b"250 injected before TLS")
    assert transport.tls is None
    assert isinstance(ready.value, HandshakeFailed)
    assert transport.disconnecting


def test_queue_ids():
    assert queue_id("2.0.0 Ok: queued as 4Xk2Lq0Yz3") == "4Xk2Lq0Yz3"
    assert queue_id("OK id=1rABCD-000123-Xy") == "1rABCD-000123-Xy"
    assert queue_id("2.0.0 x7ABC123 Message accepted for delivery") == "x7ABC123"
    assert queue_id("OK") == ""
    assert queue_id("Message accepted for delivery") == ""
