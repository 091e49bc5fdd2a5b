"""
The SNPP client protocol (callcenter.notify.snpp_protocol) in memory: the
terminal's replies fed to dataReceived, our commands read off a
StringTransport, reply timeouts on a Clock.  Each test plays the terminal
one reply at a time, so it also checks that we never send a command before
the previous one was answered.
"""

import pytest
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.logger import Logger
from twisted.python.failure import Failure

from callcenter.notify.snpp_protocol import (
    LinkClosed,
    NegativeReply,
    Page,
    Reply,
    SNPPClientProtocol,
    data_block,
    pager_text,
)
from outcomes import results_of

TIMEOUT = 30.0


class Link:
    """A protocol on a transport, and the test playing the terminal."""

    def __init__(self, greet=True, **options):
        self.clock = Clock()
        self.events = []
        self.protocol = SNPPClientProtocol(self.clock, reply_timeout=TIMEOUT, **options)
        self.protocol.log = Logger(observer=self.events.append)
        self.transport = StringTransportWithDisconnection()
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)
        self.ready = results_of(self.protocol.ready)
        if greet:
            self.reply(b"220 SNPP Gateway Ready")

    def reply(self, *lines):
        self.protocol.dataReceived(b"".join(line + b"\r\n" for line in lines))

    def sent(self):
        """What we wrote since the last call."""
        data = self.transport.value()
        self.transport.clear()
        return data

    def lose(self):
        self.transport.loseConnection()

    @property
    def closed(self):
        return self.transport.disconnecting or not self.transport.connected


def page(link, pager_id="5551234", text="hello", **fields):
    return results_of(link.protocol.page(Page(pager_id, text, **fields)))


def converse(link, *exchanges):
    """(expected command bytes, reply line) pairs, one at a time."""
    for expected, answer in exchanges:
        assert link.sent() == expected
        link.reply(answer)


def failure_of(outcome, kind):
    assert len(outcome) == 1 and isinstance(outcome[0], Failure), outcome
    assert outcome[0].check(kind), outcome[0]
    return outcome[0].value


def test_nothing_is_sent_before_the_greeting():
    link = Link(greet=False)
    assert link.sent() == b"" and link.ready == []
    assert not link.protocol.usable
    link.reply(b"220 SNPP Gateway Ready")
    assert link.ready == [Reply(220, "SNPP Gateway Ready")]
    assert link.protocol.usable


def test_help_lines_before_a_250_greeting_are_a_greeting():
    link = Link(greet=False)
    link.reply(b"214 Type HELP for more info", b"250 SNPP Gateway Ready")
    assert link.ready == [Reply(250, "SNPP Gateway Ready")]


def test_a_421_greeting_fails_and_closes():
    link = Link(greet=False)
    link.reply(b"421 Gateway Service Unavailable")
    error = failure_of(link.ready, LinkClosed)
    assert error.reply == Reply(421, "Gateway Service Unavailable")
    assert link.closed


def test_no_greeting_within_the_timeout_fails_and_closes():
    link = Link(greet=False)
    link.clock.advance(TIMEOUT - 1)
    assert link.ready == []
    link.clock.advance(1)
    failure_of(link.ready, LinkClosed)
    assert link.closed


def test_login_follows_the_greeting():
    link = Link(greet=False, login=("broker", "s3cret"))
    link.reply(b"220 SNPP Gateway Ready")
    assert link.sent() == b"LOGI broker s3cret\r\n"
    assert link.ready == []
    link.reply(b"250 Login Accepted")
    assert link.ready == [Reply(220, "SNPP Gateway Ready")]


def test_a_refused_login_fails_and_closes():
    link = Link(greet=False, login=("broker", "wrong"))
    link.reply(b"220 SNPP Gateway Ready")
    link.sent()
    link.reply(b"550 Error, Invalid Login")
    error = failure_of(link.ready, NegativeReply)
    assert (error.verb, error.reply.code) == ("LOGI", 550)
    assert link.closed


def test_a_numeric_page_one_command_at_a_time():
    link = Link()
    outcome = page(link, "5551234", "4008208888")
    converse(
        link,
        (b"PAGE 5551234\r\n", b"250 Pager ID Accepted"),
        (b"MESS 4008208888\r\n", b"250 Message OK"),
    )
    assert outcome == []
    converse(link, (b"SEND\r\n", b"250 Message Sent Successfully"))
    assert outcome == [Reply(250, "Message Sent Successfully")]
    assert link.protocol.usable


def test_several_pages_on_one_link():
    link = Link()
    for n in range(3):
        outcome = page(link, f"555123{n}", f"fill {n}")
        converse(
            link,
            (f"PAGE 555123{n}\r\n".encode(), b"250 Pager ID Accepted"),
            (f"MESS fill {n}\r\n".encode(), b"250 Message OK"),
            (b"SEND\r\n", b"250 Message Sent Successfully"),
        )
        assert outcome == [Reply(250, "Message Sent Successfully")]


def test_a_second_page_while_one_is_in_flight_is_refused():
    link = Link()
    page(link)
    with pytest.raises(RuntimeError):
        link.protocol.page(Page("5551234", "again"))


def test_multi_line_text_goes_with_data_dot_stuffed():
    link = Link()
    outcome = page(link, "5551234", "Fill 600519\n.5 lots\r\n\nend")
    converse(link, (b"PAGE 5551234\r\n", b"250 Pager ID Accepted"))
    assert link.sent() == b"DATA\r\n"
    link.reply(b"354 Begin Input; End with <CRLF>'.'<CRLF>")
    assert link.sent() == b"Fill 600519\r\n..5 lots\r\n\r\nend\r\n.\r\n"
    link.reply(b"250 Message OK")
    converse(link, (b"SEND\r\n", b"250 Message Sent Successfully"))
    assert outcome == [Reply(250, "Message Sent Successfully")]


def test_long_single_line_text_goes_with_data():
    link = Link(mess_limit=10)
    page(link, "5551234", "x" * 11)
    converse(link, (b"PAGE 5551234\r\n", b"250 Pager ID Accepted"))
    assert link.sent() == b"DATA\r\n"


def test_a_terminal_without_data_gets_one_mess_line_and_is_not_asked_again():
    link = Link()
    outcome = page(link, "5551234", "line one\nline two")
    converse(
        link,
        (b"PAGE 5551234\r\n", b"250 Pager ID Accepted"),
        (b"DATA\r\n", b"500 Command Not Implemented, Try Again"),
        (b"MESS line one line two\r\n", b"250 Message OK"),
        (b"SEND\r\n", b"250 Message Sent Successfully"),
    )
    assert outcome == [Reply(250, "Message Sent Successfully")]
    page(link, "5551234", "a\nb")
    converse(
        link,
        (b"PAGE 5551234\r\n", b"250 Pager ID Accepted"),
        (b"MESS a b\r\n", b"250 Message OK"),
    )


def test_level_and_subject_are_sent_and_skipped_where_not_implemented():
    link = Link()
    outcome = page(link, "5551234", "hi", subject="Alert", level=1)
    converse(
        link,
        (b"PAGE 5551234\r\n", b"250 Pager ID Accepted"),
        (b"LEVE 1\r\n", b"500 Command Not Implemented, Try Again"),
        (b"SUBJ Alert\r\n", b"250 Message OK"),
        (b"MESS hi\r\n", b"250 Message OK"),
        (b"SEND\r\n", b"250 Message Sent Successfully"),
    )
    assert outcome == [Reply(250, "Message Sent Successfully")]
    page(link, "5551234", "again", level=1)
    converse(link, (b"PAGE 5551234\r\n", b"250 Pager ID Accepted"), (b"MESS again\r\n", b"250 Message OK"))


def test_a_refused_pager_id_is_a_negative_reply_and_the_transaction_is_reset():
    link = Link()
    outcome = page(link, "123")
    converse(link, (b"PAGE 123\r\n", b"550 Error, Invalid Pager ID"))
    assert outcome == []
    converse(link, (b"RESE\r\n", b"250 RESET OK"))
    error = failure_of(outcome, NegativeReply)
    assert (error.verb, error.reply) == ("PAGE", Reply(550, "Error, Invalid Pager ID"))
    assert link.protocol.usable
    outcome = page(link, "5551234", "next")
    converse(
        link,
        (b"PAGE 5551234\r\n", b"250 Pager ID Accepted"),
        (b"MESS next\r\n", b"250 Message OK"),
        (b"SEND\r\n", b"250 Message Sent Successfully"),
    )
    assert outcome == [Reply(250, "Message Sent Successfully")]


def test_a_554_to_send_is_a_negative_reply():
    link = Link()
    outcome = page(link)
    converse(
        link,
        (b"PAGE 5551234\r\n", b"250 Pager ID Accepted"),
        (b"MESS hello\r\n", b"250 Message OK"),
        (b"SEND\r\n", b"554 Error, failed"),
        (b"RESE\r\n", b"250 RESET OK"),
    )
    error = failure_of(outcome, NegativeReply)
    assert (error.verb, error.reply.code) == ("SEND", 554)


def test_a_refused_reset_drops_the_link():
    link = Link()
    outcome = page(link)
    converse(link, (b"PAGE 5551234\r\n", b"554 Error, failed"), (b"RESE\r\n", b"500 Huh"))
    failure_of(outcome, NegativeReply)
    assert link.closed and not link.protocol.usable


def test_a_421_mid_page_closes_the_link_without_reset():
    link = Link()
    outcome = page(link)
    converse(
        link,
        (b"PAGE 5551234\r\n", b"250 Pager ID Accepted"),
        (b"MESS hello\r\n", b"421 Too Many Errors, Goodbye"),
    )
    error = failure_of(outcome, LinkClosed)
    assert error.reply.code == 421 and not error.after_send
    assert link.sent() == b""
    assert link.closed


def test_no_reply_to_send_within_the_timeout_fails_after_send_and_drops_the_link():
    link = Link()
    outcome = page(link)
    converse(link, (b"PAGE 5551234\r\n", b"250 Pager ID Accepted"), (b"MESS hello\r\n", b"250 Message OK"))
    assert link.sent() == b"SEND\r\n"
    link.clock.advance(TIMEOUT - 1)
    assert outcome == []
    link.clock.advance(1)
    error = failure_of(outcome, LinkClosed)
    assert error.after_send
    assert link.closed
    assert [e for e in link.events if "did not answer" in e["log_format"]]


def test_a_connection_lost_mid_page_fails_it_before_send():
    link = Link()
    outcome = page(link)
    converse(link, (b"PAGE 5551234\r\n", b"250 Pager ID Accepted"))
    link.protocol.connectionLost(Failure(ConnectionLost("reset by peer")))
    error = failure_of(outcome, LinkClosed)
    assert not error.after_send
    assert "reset by peer" in str(error)
    assert link.clock.getDelayedCalls() == []


@pytest.mark.parametrize("line", [b"hello there", b"25 short", b"\xff\xfe", b"2500 OK"])
def test_a_malformed_reply_is_logged_and_drops_the_link(line):
    link = Link()
    outcome = page(link)
    link.sent()
    link.reply(line)
    failure_of(outcome, LinkClosed)
    assert link.closed
    assert [e for e in link.events if "dropping the link" in e["log_format"]]


def test_an_overlong_line_drops_the_link():
    link = Link()
    outcome = page(link)
    link.protocol.dataReceived(b"250 " + b"x" * 5000)
    failure_of(outcome, LinkClosed)
    assert link.closed


def test_an_unsolicited_reply_drops_the_link():
    link = Link()
    link.reply(b"250 Surprise")
    assert link.closed and not link.protocol.usable


def test_a_421_on_an_idle_link_closes_it():
    link = Link()
    closed = results_of(link.protocol.when_closed())
    link.reply(b"421 Timeout, Goodbye")
    assert link.closed and not link.protocol.usable
    assert closed == [None]
    assert not [e for e in link.events if "dropping" in e["log_format"]]


def test_a_bug_in_handling_a_reply_does_not_escape_data_received():
    link = Link()
    outcome = page(link)
    link.sent()
    link.protocol._reply_line = None  # calling it raises TypeError
    link.reply(b"250 Pager ID Accepted")
    failure_of(outcome, LinkClosed)
    assert link.closed
    assert [e for e in link.events if e.get("log_failure")]


def test_cancelling_a_page_drops_the_link():
    link = Link()
    d = link.protocol.page(Page("5551234", "hello"))
    outcome = results_of(d)
    d.cancel()
    failure_of(outcome, CancelledError)
    assert link.closed
    assert link.clock.getDelayedCalls() == []


def test_quit_says_quit_and_closes():
    link = Link()
    closed = results_of(link.protocol.quit())
    assert link.sent() == b"QUIT\r\n"
    assert closed == []
    link.reply(b"221 OK, Goodbye")
    assert closed == [None]


def test_quit_unanswered_closes_after_the_timeout():
    link = Link()
    closed = results_of(link.protocol.quit())
    link.clock.advance(TIMEOUT)
    assert closed == [None]


def test_quit_during_a_page_aborts_it():
    link = Link()
    outcome = page(link)
    closed = results_of(link.protocol.quit())
    failure_of(outcome, LinkClosed)
    assert closed == [None]


def test_utf8_text_is_sent_as_utf8():
    link = Link(utf8=True)
    page(link, "5551234", "成交 600519")
    converse(link, (b"PAGE 5551234\r\n", b"250 Pager ID Accepted"))
    assert link.sent() == "MESS 成交 600519\r\n".encode()


def test_text_is_made_ascii_by_default():
    link = Link()
    page(link, "5551234", "成交 é")
    converse(link, (b"PAGE 5551234\r\n", b"250 Pager ID Accepted"))
    assert link.sent() == b"MESS ?? e\r\n"


@pytest.mark.parametrize(
    "text, utf8, expected",
    [
        ("Ｆｉｌｌ：１００ @ ¥1,800", False, "Fill:100 @ ?1,800"),
        ("Café Zoë", False, "Cafe Zoe"),
        ("贵州茅台 成交", False, "???? ??"),
        ("贵州茅台 成交", True, "贵州茅台 成交"),
        ("a\tb\x07c", False, "a b?c"),
        ("  one \r\ntwo\rthree\n\n", False, "one\ntwo\nthree"),
        ("bad \udc80", True, "bad ?"),
    ],
)
def test_pager_text(text, utf8, expected):
    assert pager_text(text, utf8) == expected


def test_data_block_stuffs_leading_dots():
    assert data_block(".\n..x\ny.", "ascii") == b"..\r\n...x\r\ny.\r\n.\r\n"


def test_no_page_starts_while_quitting():
    link = Link()
    link.protocol.quit()
    assert not link.protocol.usable
    with pytest.raises(RuntimeError):
        link.protocol.page(Page("5551234", "late"))


@pytest.mark.parametrize("pager_id", ["555 1234", "5551234\r\nSEND", ""])
def test_a_pager_id_cannot_forge_commands(pager_id):
    link = Link()
    with pytest.raises(ValueError):
        link.protocol.page(Page(pager_id, "hello"))
    assert link.sent() == b"" and link.protocol.usable


def test_subject_and_text_stay_on_their_command_lines():
    link = Link(utf8=True)
    page(link, "5551234", "a\x0bb\x85c\u2028d", subject="x\r\nSEND")
    converse(
        link,
        (b"PAGE 5551234\r\n", b"250 Pager ID Accepted"),
        (b"SUBJ x SEND\r\n", b"250 OK"),
    )
    assert link.sent() == "MESS a?b?c\u2028d\r\n".encode()
