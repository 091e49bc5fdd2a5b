"""
An ESMTP client (RFC 5321) that keeps its connection for message after
message: bytes on the wire in, one Deferred per message out.

On connecting: the greeting, EHLO (HELO when the server answers 500 or
502 to it, RFC 5321 §4.1.1.1), STARTTLS (RFC 3207) when the relay's policy
asks for it, EHLO again, then AUTH PLAIN or LOGIN (RFC 4954, RFC 4616)
when there are credentials: only inside TLS unless explicitly allowed.
L{ESMTPClient.ready} then fires.

Each message is a transaction: MAIL FROM, RCPT TO, DATA, the content
dot-stuffed (RFC 5321 §4.5.2), ".".  With PIPELINING (RFC 2920) the three
commands go in one write, and the content of one message goes in the same
write as the next message's commands (§3.1: content may open a group,
DATA must close one), so a connection busy with a stream of messages
costs one round trip per message.  Replies are matched to what was sent
in order.

Outcomes, per message: 2xx after the content: L{Accepted} with the queue
id the reply names, if any; 4xx to RCPT, DATA or the content:
L{TemporaryFailure}; 5xx to RCPT or the content: L{PermanentFailure}.
When it is the relay rather than the message that fails (MAIL refused,
421, a malformed or missing reply, the connection dropped) every message
on the connection fails with L{TransactionAborted}, a TemporaryFailure
that says whether the relay is to blame and whether the content had been
sent (if not, the message can go through another relay at once).

Every reply is awaited for at most C{reply_timeout} seconds on the
injected clock, and an idle connection says QUIT after C{idle_timeout}.
"""

import base64
import collections
import re

from twisted.internet import defer
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver

from callcenter.notify.message import Accepted, PermanentFailure, TemporaryFailure

STARTTLS_REQUIRED = "required"
STARTTLS_OPTIONAL = "optional"
STARTTLS_OFF = "off"
STARTTLS_MODES = (STARTTLS_REQUIRED, STARTTLS_OPTIONAL, STARTTLS_OFF)

# Queue ids as relays word them: Postfix "queued as 4Xk2Lq0Yz3", Exim
# "id=1rABCD-000123-Xy", Sendmail "<id> Message accepted for delivery".
_QUEUE_ID = re.compile(
    r"queued as ([\w.-]+)|\bid=([\w.-]+)|^(?:\d\.\d{1,3}\.\d{1,3} )?([\w.-]+) Message accepted", re.I
)


def queue_id(text):
    """The relay's id for an accepted message, from its reply's text; '' when it gives none."""
    match = _QUEUE_ID.search(text)
    return next((group for group in match.groups() if group), "") if match else ""


def dot_stuff(content):
    """
    C{content} as DATA carries it, the terminating "." line included: line
    ends made CRLF (a bare LF or CR is how SMTP smuggling slips a second
    message past a relay, RFC 5321 §2.3.8), a "." doubled at the start of
    each line (§4.5.2).
    """
    crlf = content.count(b"\r\n")
    if content.count(b"\n") != crlf or content.count(b"\r") != crlf:
        content = content.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if content.startswith(b"."):
        content = b"." + content
    content = content.replace(b"\r\n.", b"\r\n..")
    if content and not content.endswith(b"\r\n"):
        content += b"\r\n"
    return content + b".\r\n"


class TransactionAborted(TemporaryFailure):
    """
    The connection, not the message, failed.  C{content_sent}: the content
    went out, so the relay may have it (only the outbox may try again,
    with the same Message-ID).  C{relay_at_fault}: the relay refused or
    misbehaved, rather than the link dropping.
    """

    def __init__(self, reason, content_sent=False, relay_at_fault=False, retry_after=None):
        super().__init__(reason, retry_after)
        self.content_sent = content_sent
        self.relay_at_fault = relay_at_fault


class HandshakeFailed(Exception):
    """The relay would not take mail on this connection: greeting, EHLO, STARTTLS or AUTH failed."""


class _Transaction:
    __slots__ = ("mail_from", "rcpt_to", "data", "params", "deferred", "failure", "mail_accepted", "content_sent")

    def __init__(self, mail_from, rcpt_to, data, params):
        self.mail_from = mail_from
        self.rcpt_to = rcpt_to
        self.data = data
        self.params = params
        self.deferred = defer.Deferred()
        self.failure = None
        self.mail_accepted = False
        self.content_sent = False


def _text(lines):
    return " ".join(line.decode("utf-8", "replace") for line in lines).strip()


class ESMTPClient(LineReceiver):
    """
    One connection to one relay.

    @param clock: the reactor's L{IReactorTime} (a L{Clock} in tests).
    @param helo_name: our name in EHLO/HELO.
    @param starttls: L{STARTTLS_REQUIRED}, L{STARTTLS_OPTIONAL} or L{STARTTLS_OFF}.
    @param tls_options: the client TLS options (C{optionsForClientTLS}: the
        relay's hostname and trust root) for C{transport.startTLS}.
    @param credentials: (username, password) for AUTH, or None.
    @param allow_plaintext_auth: send credentials without TLS (a relay on
        the same host, say).
    @param pipeline_depth: messages in flight at once when the relay
        offers PIPELINING (one otherwise).
    @param idle_timeout: seconds without a message before QUIT; None: never.
    """

    delimiter = b"\r\n"
    # RFC 5321 §4.5.3.1.5 allows 512 octets a reply line; some relays say more.
    MAX_LENGTH = 8192
    log = Logger()

    def __init__(self, clock, helo_name, starttls=STARTTLS_OFF, tls_options=None, credentials=None,
                 allow_plaintext_auth=False, reply_timeout=60.0, idle_timeout=None, pipeline_depth=2,
                 name="relay", complain=None):
        if starttls not in STARTTLS_MODES:
            raise ValueError(f"starttls must be one of {STARTTLS_MODES}, not {starttls!r}")
        if starttls != STARTTLS_OFF and tls_options is None:
            raise ValueError("STARTTLS needs tls_options")
        self._clock = clock
        self._helo = helo_name.encode("idna") if not helo_name.isascii() else helo_name.encode("ascii")
        self._starttls = starttls
        self._tls_options = tls_options
        self._credentials = credentials
        self._allow_plaintext_auth = allow_plaintext_auth
        self._reply_timeout = reply_timeout
        self._idle_timeout = idle_timeout
        self._depth = max(1, pipeline_depth)
        self.name = name
        # complain(kind, text): rate-limited logging of the peer's faults; plain logging by default.
        self._complain = complain or (lambda kind, text: self.log.warn("{text}", text=text))

        # Cancelled (the sender stopping): cut the connection, and let the
        # CancelledError say why rather than a HandshakeFailed blaming the relay.
        self.ready = defer.Deferred(
            canceller=lambda d: self._drop(f"{self.name}: connection attempt cancelled", False, settle_ready=False)
        )
        self._closed_waiters = []
        self.extensions = {}
        self.tls = False
        self.pipelining = False
        self._handshaking = True
        self._tls_declined = False
        self._expect = collections.deque()  # (handler, transaction or None), in the order sent
        self._partial = []  # the lines so far of a multi-line reply
        self._partial_code = None
        self._pending = collections.deque()  # transactions waiting to send their commands
        self._awaiting_data = None  # the transaction whose DATA is the last thing sent
        self._in_flight = 0
        self._closing = False
        self._lost = False
        self._dropped = False
        self._quit_sent = False
        self._waiting_since = 0.0
        self._idle_since = 0.0
        self._timer = None
        self._size_limit = 0

    # The connection.

    def connectionMade(self):
        self._expect_reply(self._on_greeting)

    def connectionLost(self, reason):
        self._lost = True
        self._closing = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        why = "connection lost" if self._quit_sent else f"connection lost: {reason.getErrorMessage()}"
        if not self.ready.called:
            self.ready.errback(HandshakeFailed(f"{self.name}: {why}"))
        self._abort_all(why, relay_at_fault=False)
        waiters, self._closed_waiters = self._closed_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def when_closed(self):
        """A Deferred firing (with None) once the connection is closed."""
        if self._lost:
            return defer.succeed(None)
        self._closed_waiters.append(defer.Deferred())
        return self._closed_waiters[-1]

    def lineLengthExceeded(self, line):
        self._malformed(f"a reply line of over {self.MAX_LENGTH} octets")

    def lineReceived(self, line):
        # Nothing raised here may reach the reactor: a relay that confuses
        # us is logged and dropped, and its messages fail over.
        try:
            self._line(line)
        except Exception:
            self.log.failure("{name}: handling the reply {line!r}", name=self.name, line=line[:200])
            self._drop("internal error handling a reply", relay_at_fault=True)

    @property
    def capacity(self):
        """How many more messages L{send} takes now."""
        if self._handshaking or self._closing:
            return 0
        return (self._depth if self.pipelining else 1) - self._in_flight

    @property
    def in_flight(self):
        return self._in_flight

    def send(self, mail_from, rcpt_to, content):
        """
        Send one message: C{content} (RFC 5322 bytes) from envelope sender
        C{mail_from} to C{rcpt_to}.

        @return: a Deferred firing with L{Accepted}, or failing with
            L{TemporaryFailure} (L{TransactionAborted} when the connection
            failed) or L{PermanentFailure}.
        """
        if self._handshaking or self._closing:
            return defer.fail(TransactionAborted(f"{self.name}: connection not open for mail"))
        smtputf8 = not (mail_from.isascii() and rcpt_to.isascii())
        params = []
        if smtputf8:
            if "SMTPUTF8" not in self.extensions:
                return defer.fail(PermanentFailure(f"{self.name} does not offer SMTPUTF8 for {rcpt_to}"))
            params.append(b" SMTPUTF8")
        if not content.isascii():
            # RFC 6152 §3: 8-bit content only to a server that said 8BITMIME.
            if "8BITMIME" not in self.extensions:
                return defer.fail(PermanentFailure(f"{self.name} does not offer 8BITMIME for an 8-bit message"))
            params.append(b" BODY=8BITMIME")
        if self._size_limit and len(content) > self._size_limit:
            return defer.fail(PermanentFailure(
                f"message of {len(content)} octets over {self.name}'s SIZE limit of {self._size_limit}"))
        if "SIZE" in self.extensions:
            params.append(b" SIZE=%d" % len(content))
        transaction = _Transaction(
            mail_from.encode("utf-8"), rcpt_to.encode("utf-8"), dot_stuff(content), b"".join(params)
        )
        self._in_flight += 1
        self._pending.append(transaction)
        self._pump()
        return transaction.deferred

    def quit(self):
        """
        Take no more messages, let those on the wire finish, then QUIT;
        messages not yet started fail (TransactionAborted, nothing sent).
        Fires when the connection is closed.
        """
        if not self._lost:
            self._closing = True
            self._fail_pending("connection closing")
            if self._handshaking:
                self.abort("closed during the handshake")
            elif not self._expect:
                self._send_quit()
        return self.when_closed()

    def abort(self, why="aborted"):
        """Close now: everything in flight fails with TransactionAborted."""
        self._drop(f"{self.name}: {why}", relay_at_fault=False)

    # Replies.

    def _line(self, line):
        # RFC 5321 §4.2: three digits (2xx to 5xx here), then " ", "-" or nothing.
        if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in (b"", b" ", b"-") \
                or not b"2" <= line[:1] <= b"5":
            self._malformed(f"a malformed reply line {line[:80]!r}")
            return
        code = int(line[:3])
        if self._partial_code is not None and code != self._partial_code:
            self._malformed(f"a multi-line reply changing its code from {self._partial_code} to {code}")
            return
        if line[3:4] == b"-":
            self._partial_code = code
            self._partial.append(line[4:])
            return
        if self._partial_code is None:
            lines = [line[4:]]
        else:
            lines = self._partial
            lines.append(line[4:])
            self._partial = []
            self._partial_code = None
        self._reply(code, lines)

    def _reply(self, code, lines):
        if code == 421 and not self._handshaking:
            # The relay is going away (RFC 5321 §3.8, §4.2.3), in answer to
            # anything or unasked: everything in flight fails over.
            self._relay_failed(f"{self.name} closing: {code} {_text(lines)}")
            return
        if not self._expect:
            self._malformed(f"a reply nobody asked for: {code} {_text(lines)[:80]}")
            return
        handler, transaction = self._expect.popleft()
        if self._expect:
            self._waiting_since = self._clock.seconds()
        handler(code, lines, transaction)
        if self._closing and not self._expect and not self._handshaking:
            self._send_quit()

    def _expect_reply(self, handler, transaction=None):
        # Called before the write it expects a reply to: a transport may
        # hand the reply back within write() (an in-memory one does).
        if not self._expect:
            self._waiting_since = self._clock.seconds()
            self._arm(self._reply_timeout)
        self._expect.append((handler, transaction))

    def _malformed(self, what):
        self._complain("malformed", f"{self.name} sent {what}; dropping the connection")
        self._drop(f"{self.name} sent {what}", relay_at_fault=True)

    def _drop(self, why, relay_at_fault, settle_ready=True):
        if self._lost or self._dropped:
            return
        self._dropped = True
        self._closing = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if settle_ready and not self.ready.called:
            self.ready.errback(HandshakeFailed(why))
        self._abort_all(why, relay_at_fault=relay_at_fault)
        self.clearLineBuffer()
        self.transport.abortConnection()

    def _relay_failed(self, why):
        self.log.info("{why}", why=why)
        self._drop(why, relay_at_fault=True)

    # The handshake.

    def _handshake_failed(self, why):
        # The sender logs it, with what it does about it (the relay is left alone for a while).
        self.log.debug("{name}: {why}", name=self.name, why=why)
        self._closing = True
        if not self.ready.called:
            self.ready.errback(HandshakeFailed(f"{self.name}: {why}"))
        if not self._lost:
            self._send_quit()

    def _on_greeting(self, code, lines, _):
        if code != 220:
            self._handshake_failed(f"greeting {code} {_text(lines)}")
            return
        self._ehlo()

    def _ehlo(self):
        self._expect_reply(self._on_ehlo)
        self.sendLine(b"EHLO " + self._helo)

    def _on_ehlo(self, code, lines, _):
        if code == 250:
            self._parse_extensions(lines[1:])
            self._after_ehlo()
        elif code in (500, 502) and not self.tls:
            self._expect_reply(self._on_helo)
            self.sendLine(b"HELO " + self._helo)
        else:
            self._handshake_failed(f"EHLO answered {code} {_text(lines)}")

    def _on_helo(self, code, lines, _):
        if code != 250:
            self._handshake_failed(f"HELO answered {code} {_text(lines)}")
            return
        self._parse_extensions([])
        self._after_ehlo()

    def _parse_extensions(self, lines):
        extensions = {}
        for line in lines:
            keyword, _, parameters = line.decode("ascii", "replace").strip().partition(" ")
            keyword = keyword.upper()
            if keyword.startswith("AUTH="):  # the pre-RFC 4954 form some servers still add
                keyword, parameters = "AUTH", keyword[5:] + " " + parameters
            if keyword:
                extensions[keyword] = (extensions.get(keyword, "") + " " + parameters).strip()
        self.extensions = extensions
        self.pipelining = "PIPELINING" in extensions
        size = extensions.get("SIZE", "").split()
        self._size_limit = int(size[0]) if size and size[0].isdigit() else 0

    def _after_ehlo(self):
        if not self.tls and self._starttls != STARTTLS_OFF and not self._tls_declined:
            if "STARTTLS" in self.extensions:
                self._expect_reply(self._on_starttls)
                self.sendLine(b"STARTTLS")
                return
            if self._starttls == STARTTLS_REQUIRED:
                self._handshake_failed("no STARTTLS offered and TLS is required")
                return
        if self._credentials is not None:
            self._authenticate()
            return
        self._handshake_done()

    def _on_starttls(self, code, lines, _):
        if code != 220:
            if self._starttls == STARTTLS_REQUIRED:
                self._handshake_failed(f"STARTTLS answered {code} {_text(lines)}")
                return
            self._tls_declined = True
            self._after_ehlo()
            return
        # Anything after the 220 was sent before TLS and could have been
        # injected by a man in the middle (CVE-2011-0411): not to be read.
        if self.clearLineBuffer():
            self._malformed("plaintext after its STARTTLS reply")
            return
        self.transport.startTLS(self._tls_options)
        self.tls = True
        self.extensions = {}
        # RFC 3207 §4.2: forget what was said before TLS, ask again.
        self._ehlo()

    def _authenticate(self):
        if not self.tls and not self._allow_plaintext_auth:
            self._handshake_failed("not sending credentials without TLS")
            return
        mechanisms = self.extensions.get("AUTH", "").upper().split()
        username, password = (value.encode("utf-8") for value in self._credentials)
        if "PLAIN" in mechanisms:
            # RFC 4616 §2: authzid NUL authcid NUL passwd, as the initial response.
            self._expect_reply(self._on_auth_done)
            self.sendLine(b"AUTH PLAIN " + base64.b64encode(b"\0" + username + b"\0" + password))
        elif "LOGIN" in mechanisms:
            self._expect_reply(self._on_login_challenge, (username, password))
            self.sendLine(b"AUTH LOGIN")
        else:
            self._handshake_failed(f"no AUTH mechanism we know among {mechanisms or 'none'}")

    def _on_login_challenge(self, code, lines, secrets):
        if code != 334:
            self._handshake_failed(f"AUTH LOGIN answered {code} {_text(lines)}")
            return
        first, rest = secrets
        if rest is None:
            self._expect_reply(self._on_auth_done)
        else:
            self._expect_reply(self._on_login_challenge, (rest, None))
        self.sendLine(base64.b64encode(first))

    def _on_auth_done(self, code, lines, _):
        if code != 235:
            self._handshake_failed(f"authentication refused: {code} {_text(lines)}")
            return
        self._handshake_done()

    def _handshake_done(self):
        self._handshaking = False
        self._idle_since = self._clock.seconds()
        self._arm_idle()
        if self._closing:
            self._send_quit()
            return
        self.ready.callback(self)

    # Transactions.

    def _pump(self, out=None):
        """Write C{out} and the commands of waiting transactions that may go now, in one write."""
        out = out if out is not None else []
        # RFC 2920 §3.1: DATA ends a group; nothing more until its reply.
        # Without PIPELINING, each command waits for the last reply (RFC 5321 §4.1).
        while (self._pending and self._awaiting_data is None and not self._closing
               and (self.pipelining or not self._expect)):
            transaction = self._pending.popleft()
            self._awaiting_data = transaction
            out.append(b"MAIL FROM:<" + transaction.mail_from + b">" + transaction.params + b"\r\n")
            self._expect_reply(self._on_mail, transaction)
            if self.pipelining:
                out.append(b"RCPT TO:<" + transaction.rcpt_to + b">\r\nDATA\r\n")
                self._expect_reply(self._on_rcpt, transaction)
                self._expect_reply(self._on_data, transaction)
        if out:
            self.transport.write(b"".join(out))

    def _on_mail(self, code, lines, transaction):
        if code // 100 == 2:
            transaction.mail_accepted = True
            if not self.pipelining:
                self._expect_reply(self._on_rcpt, transaction)
                self.transport.write(b"RCPT TO:<" + transaction.rcpt_to + b">\r\n")
            return
        # The envelope sender is ours and the same for every message: a
        # refusal is the relay's (unauthenticated, over quota, broken).
        transaction.failure = TransactionAborted(
            f"{self.name} refused MAIL FROM: {code} {_text(lines)}", relay_at_fault=True
        )
        self._closing = True
        self._fail_pending("the relay refused MAIL FROM", relay_at_fault=True)
        if not self.pipelining:
            self._finish(transaction)

    def _on_rcpt(self, code, lines, transaction):
        if code // 100 != 2 and transaction.failure is None:
            why = f"{self.name} refused RCPT TO:<{transaction.rcpt_to.decode('utf-8')}>: {code} {_text(lines)}"
            transaction.failure = PermanentFailure(why) if code >= 500 else TemporaryFailure(why)
        if not self.pipelining:
            if transaction.failure is None:
                self._expect_reply(self._on_data, transaction)
                self.transport.write(b"DATA\r\n")
            else:
                self._reset_after(transaction)

    def _on_data(self, code, lines, transaction):
        self._awaiting_data = None
        out = []
        if code == 354:
            if transaction.failure is not None:
                # A server that opens DATA after refusing the envelope
                # gets an empty message it has no recipient for.
                out.append(b".\r\n")
                self._expect_reply(self._on_discarded, transaction)
            else:
                out.append(transaction.data)
                transaction.content_sent = True
                self._expect_reply(self._on_content, transaction)
        else:
            if transaction.failure is None:
                transaction.failure = TemporaryFailure(f"{self.name} refused DATA: {code} {_text(lines)}")
            if transaction.mail_accepted and not self._closing:
                out.append(b"RSET\r\n")
                self._expect_reply(self._on_reset)
            self._finish(transaction)
        self._pump(out)

    def _on_content(self, code, lines, transaction):
        text = _text(lines)
        if code // 100 == 2:
            outcome = Accepted(provider_ids=tuple(filter(None, [queue_id(text)])), detail=f"{code} {text}")
            self._finish(transaction, outcome)
            return
        why = f"{self.name} refused the message: {code} {text}"
        transaction.failure = PermanentFailure(why) if code >= 500 else TemporaryFailure(why)
        self._finish(transaction)

    def _on_discarded(self, code, lines, transaction):
        self._finish(transaction)

    def _reset_after(self, transaction):
        """Without pipelining: RSET after a refused envelope, then the next message."""
        self._awaiting_data = None
        out = []
        if transaction.mail_accepted and not self._closing:
            out.append(b"RSET\r\n")
            self._expect_reply(self._on_reset)
        self._finish(transaction)
        self._pump(out)

    def _on_reset(self, code, lines, _):
        if code != 250:
            self._drop(f"{self.name} answered RSET with {code} {_text(lines)}", relay_at_fault=True)
            return
        self._pump()

    def _finish(self, transaction, outcome=None):
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle_since = self._clock.seconds()
            self._arm_idle()
        if outcome is None:
            transaction.deferred.errback(transaction.failure)
        else:
            transaction.deferred.callback(outcome)

    def _fail_pending(self, why, relay_at_fault=False):
        while self._pending:
            transaction = self._pending.popleft()
            transaction.failure = TransactionAborted(f"{self.name}: {why}", relay_at_fault=relay_at_fault)
            self._finish(transaction)

    def _abort_all(self, why, relay_at_fault):
        """Fail every message on this connection: those awaiting replies, then those not started."""
        expected, self._expect = self._expect, collections.deque()
        self._awaiting_data = None
        seen = set()
        for _, transaction in expected:
            if isinstance(transaction, _Transaction) and id(transaction) not in seen:
                seen.add(id(transaction))
                # A refusal of the message itself (RCPT 5xx) stands; a
                # refusal of MAIL FROM is already a TransactionAborted.
                if transaction.failure is None:
                    transaction.failure = TransactionAborted(
                        f"{self.name}: {why}", content_sent=transaction.content_sent, relay_at_fault=relay_at_fault
                    )
                self._finish(transaction)
        self._fail_pending(why, relay_at_fault)

    # Closing and time.

    def _send_quit(self):
        if self._quit_sent or self._lost or self._dropped:
            return
        self._quit_sent = True
        self._closing = True
        self._expect_reply(self._on_quit)
        self.transport.write(b"QUIT\r\n")

    def _on_quit(self, code, lines, _):
        self.transport.loseConnection()

    def _arm(self, delay):
        if self._timer is None:
            self._timer = self._clock.callLater(delay, self._tick)
        elif self._timer.getTime() > self._clock.seconds() + delay:
            self._timer.reset(delay)

    def _arm_idle(self):
        if self._idle_timeout is not None:
            self._arm(self._idle_timeout)

    def _tick(self):
        """
        One timer serves both waits: a reply overdue (then the relay has
        hung: drop it) and an idle connection (then QUIT).  It is moved
        only when it would fire too late; firing early it re-arms itself
        for the rest, which keeps per-message cost to a clock read.
        """
        self._timer = None
        if self._lost:
            return
        now = self._clock.seconds()
        if self._expect:
            late = now - self._waiting_since - self._reply_timeout
            if late >= 0:
                why = f"{self.name}: no reply within {self._reply_timeout:g} s"
                self._complain("timeout", f"{why}; dropping the connection")
                self._drop(why, relay_at_fault=True)
            else:
                self._arm(-late)
            return
        if self._in_flight or self._handshaking or self._idle_timeout is None:
            return
        idle = now - self._idle_since
        if idle >= self._idle_timeout:
            self.log.debug("{name}: idle for {idle:g} s, closing", name=self.name, idle=idle)
            self.quit()
        else:
            self._arm(self._idle_timeout - idle)
