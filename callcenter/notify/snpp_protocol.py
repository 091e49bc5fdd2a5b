"""
The client side of the Simple Network Paging Protocol (RFC 1861), levels 1
and 2, as a paging terminal speaks it.

One connection carries one transaction at a time (RFC 1861 section 4)::

    S: 220 SNPP Gateway Ready          (some terminals: 214 lines, then 250)
    C: LOGIn <user> <password>         (4.5.1, only when we have credentials)
    C: PAGEr <pager id>                (4.3.1)
    C: LEVEl <0-11>                    (4.5.3, when configured)
    C: SUBJect <text>                  (4.5.8, when the message has one)
    C: MESSage <text>                  (4.3.2: one line)
       or DATA, 354, lines, "."        (4.4.1: several lines or long text)
    C: SEND                            (4.3.4: the page leaves now)
    ...                                (the next page on the same link)
    C: QUIT                            (4.3.5)

Every command gets exactly one reply line: ``NNN text``.  The first digit
says what happened (4.2): 2xx done; 3xx send the DATA lines; 4xx failed
and the terminal closes the connection (421 may also come unasked, e.g.
when the terminal drops an idle link); 5xx failed but the session goes on
(500 not implemented, 503 duplicate entry, 550 an "administrative" refusal
such as an invalid pager id or an illegal parameter, 552 too many entries,
554 a "technical" failure such as a gateway down).  214 lines are help
text that precedes a final reply (4.2.1).

Text: many paging terminals relay pages to 7-bit TAP/IXO networks, so by
default a page is made ASCII: characters with a compatibility or accented
form lose it (full-width "１２：３０" becomes "12:30", "é" becomes "e"),
and what has no ASCII form (Chinese characters) becomes "?", one per
character.  The templates write pager text in ASCII anyway; a terminal
known to take UTF-8 can be sent it unchanged (C{utf8=True}).

This module is the wire only: what a refusal means for the message (try
again or give up) is the sender's business (L{callcenter.notify.snpp}).
"""

import re
import unicodedata
from dataclasses import dataclass

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver

_REPLY = re.compile(rb"(\d{3})(?:[ -](.*))?")
# Printable ASCII without spaces: a pager id, a login or a password is one
# word on a command line.
TOKEN = re.compile(r"[!-~]+")


class SNPPError(Exception):
    """A page did not go through a link."""


class NegativeReply(SNPPError):
    """
    The terminal refused a command with a 5xx (or answered something else
    than it should); the session goes on (RFC 1861 4.2).  C{verb} is the
    command refused (PAGE, MESS, DATA, SEND, LOGI ...).
    """

    def __init__(self, verb, reply):
        super().__init__(f"{verb}: {reply}")
        self.verb = verb
        self.reply = reply


class LinkClosed(SNPPError):
    """
    The link is gone: the terminal said 4xx (C{reply}), the connection was
    lost, a reply did not come in time, or the terminal said something we
    cannot read.  C{after_send} tells whether SEND had been written: if
    not, the terminal discarded the unfinished transaction, and the page
    can go again on another link at once.
    """

    def __init__(self, reason, reply=None):
        super().__init__(reason)
        self.reply = reply
        self.after_send = False


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str

    def __str__(self):
        return f"{self.code} {self.text}".rstrip()


@dataclass(frozen=True, slots=True)
class Page:
    """
    One page: the pager id, the text (numeric pagers: digits only, e.g. a
    callback number; alphanumeric: any text), an optional subject and
    service level.
    """

    pager_id: str
    text: str
    subject: str = ""
    level: int | None = None


def pager_text(text, utf8=False):
    """
    C{text} as it goes on the wire, lines separated by "\\n": ASCII unless
    C{utf8} (see the module's docstring), tabs as spaces, other control
    characters as "?", no trailing spaces or blank lines at the ends.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    if not utf8:
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
        text = text.encode("ascii", "replace").decode("ascii")
    else:
        # Lone surrogates (from a broken template) have no UTF-8 form.
        text = text.encode("utf-8", "replace").decode("utf-8")
    text = "".join("?" if c != "\n" and unicodedata.category(c) == "Cc" else c for c in text)
    return "\n".join(line.rstrip() for line in text.strip().split("\n"))


def one_line(text):
    """The lines of prepared text on one line, as MESSage and SUBJect take it."""
    return " ".join(line.strip() for line in text.split("\n") if line.strip())


def data_block(text, encoding):
    """
    The DATA lines of C{text} and the terminating ".", dot-stuffed: a line
    that starts with "." gets another one (RFC 1861 4.4.1, as SMTP does).
    """
    lines = [("." + line if line.startswith(".") else line).encode(encoding) for line in text.split("\n")]
    return b"".join(line + b"\r\n" for line in lines) + b".\r\n"


class SNPPClientProtocol(LineReceiver):
    """
    One link to a paging terminal.  L{ready} fires once the terminal has
    greeted us (and accepted our login); then L{page} sends one page at a
    time.  Every reply is awaited at most C{reply_timeout} seconds of
    C{clock}: a link that stops answering is dropped, since we could no
    longer tell which reply belongs to which command.
    """

    delimiter = b"\n"
    # Replies are short; a line this long means the peer is not a terminal.
    MAX_LENGTH = 4096
    log = Logger()

    def __init__(self, clock, *, reply_timeout=60.0, login=None, utf8=False, mess_limit=240):
        self.clock = clock
        self.reply_timeout = reply_timeout
        self.login = login
        self.encoding = "utf-8" if utf8 else "ascii"
        self.utf8 = utf8
        self.mess_limit = mess_limit
        self.ready = Deferred()
        # Optional commands the terminal said it does not implement: not
        # asked again on this link.
        self.unsupported = set()
        self.in_transaction = False
        self._greeted = False
        self._quitting = False
        self._closing = False
        self._lost = False
        self._waiting = None
        self._close_timer = None
        self._close_watchers = []

    @property
    def usable(self):
        """True when a page can start on this link now."""
        return self._greeted and not (self._quitting or self._closing or self._lost or self.in_transaction)

    def when_closed(self):
        """A Deferred that fires (with None) once the connection is closed."""
        if self._lost:
            return succeed(None)
        d = Deferred()
        self._close_watchers.append(d)
        return d

    # The conversation.

    def connectionMade(self):
        Deferred.fromCoroutine(self._open()).chainDeferred(self.ready)

    async def _open(self):
        try:
            greeting = await self._expect("greeting")
            if greeting.code not in (220, 250):
                raise NegativeReply("greeting", greeting)
            if self.login is not None:
                user, password = self.login
                await self._ok("LOGI", f"LOGI {user} {password}")
        except SNPPError:
            self._abort()
            raise
        self._greeted = True
        return greeting

    def page(self, page):
        """
        Send one page (PAGE, LEVE, SUBJ, MESS or DATA, SEND).  Fires with
        the reply to SEND; fails with L{NegativeReply} (the transaction was
        then reset, the link still usable) or L{LinkClosed}.
        """
        if not self.usable:
            raise RuntimeError("this link cannot take a page now")
        if not TOKEN.fullmatch(page.pager_id):
            # It goes on a command line: a space or a line end would forge commands.
            raise ValueError(f"not a pager id: {page.pager_id!r}")
        self.in_transaction = True

        def done(result):
            self.in_transaction = False
            return result

        return Deferred.fromCoroutine(self._transaction(page)).addBoth(done)

    async def _transaction(self, page):
        after_send = False
        try:
            await self._ok("PAGE", f"PAGE {page.pager_id}")
            if page.level is not None:
                await self._optional("LEVE", f"LEVE {page.level}")
            subject = one_line(pager_text(page.subject, self.utf8))
            if subject:
                await self._optional("SUBJ", f"SUBJ {subject}")
            await self._message(pager_text(page.text, self.utf8))
            after_send = True
            return await self._ok("SEND", "SEND")
        except NegativeReply:
            await self._reset()
            raise
        except LinkClosed as e:
            e.after_send = after_send
            raise

    async def _message(self, text):
        single = "\n" not in text and len(text.encode(self.encoding)) <= self.mess_limit
        if single or "DATA" in self.unsupported:
            await self._ok("MESS", f"MESS {one_line(text)}")
            return
        reply = await self._command("DATA", "DATA")
        if reply.code == 354:
            self.transport.write(data_block(text, self.encoding))
            end = await self._expect("DATA")
            if end.code // 100 != 2:
                raise NegativeReply("DATA", end)
        elif reply.code in (500, 502):
            # A level 1 terminal: the text goes as one line instead.
            self.unsupported.add("DATA")
            self.log.info("paging terminal does not implement DATA ({reply}): sending text with MESS", reply=reply)
            await self._ok("MESS", f"MESS {one_line(text)}")
        else:
            raise NegativeReply("DATA", reply)

    async def _optional(self, verb, line):
        """A level 2 option: the page goes without it if the terminal refuses it."""
        if verb in self.unsupported:
            return
        try:
            await self._ok(verb, line)
        except NegativeReply as e:
            if e.reply.code in (500, 502):
                self.unsupported.add(verb)
            self.log.warn("paging terminal refused {verb} ({reply}): paging without it", verb=verb, reply=e.reply)

    async def _reset(self):
        """Clear what a failed transaction left at the terminal (RFC 1861 4.3.3)."""
        if self._lost or self._closing:
            return
        try:
            await self._ok("RESE", "RESE")
        except NegativeReply as e:
            self.log.warn("paging terminal refused RESE ({reply}): dropping the link", reply=e.reply)
            self._abort()
        except LinkClosed:
            pass

    def quit(self):
        """
        Say QUIT and close (RFC 1861 4.3.5); a link in the middle of
        something is aborted instead.  Fires once the connection is closed.
        """
        closed = self.when_closed()
        if self._lost or self._closing:
            return closed
        if not self.usable or self._waiting is not None:
            self._abort()
            return closed

        def close(_):
            if self._lost:
                return
            self._closing = True
            self.transport.loseConnection()
            # A peer that does not take the close within the reply timeout is cut.
            self._close_timer = self.clock.callLater(self.reply_timeout, self.transport.abortConnection)

        self._quitting = True
        self._command("QUIT", "QUIT").addErrback(lambda f: f.trap(SNPPError)).addCallback(close)
        return closed

    def abort(self, reason):
        """Fail what is in progress with L{LinkClosed}(C{reason}) and cut the connection."""
        self._fail_waiting(LinkClosed(reason))
        self._abort()

    # Commands and replies.

    async def _ok(self, verb, line):
        reply = await self._command(verb, line)
        if reply.code // 100 != 2:
            raise NegativeReply(verb, reply)
        return reply

    def _command(self, verb, line):
        self._check_open(verb)
        self.transport.write(line.encode(self.encoding) + b"\r\n")
        return self._expect(verb)

    def _check_open(self, verb):
        if self._lost or self._closing:
            raise LinkClosed(f"link closed before {verb}")

    def _expect(self, verb):
        self._check_open(verb)
        # Cancelling a command leaves the dialogue out of step: drop the link.
        waiting = Deferred(lambda d: self._cancelled(d))
        timer = self.clock.callLater(self.reply_timeout, self._timed_out)
        self._waiting = (verb, waiting, timer)
        return waiting

    def _cancelled(self, waiting):
        if self._waiting is not None and self._waiting[1] is waiting:
            self._waiting[2].cancel()
            self._waiting = None
        self._abort()

    def lineReceived(self, line):
        try:
            self._reply_line(line.rstrip(b"\r"))
        except Exception:
            # A bug of ours must not escape into the reactor.
            self.log.failure("error handling a line from the paging terminal")
            self.abort("internal error")

    def _reply_line(self, line):
        match = _REPLY.fullmatch(line)
        if match is None:
            self._protocol_error("not an SNPP reply", line)
            return
        reply = Reply(int(match.group(1)), (match.group(2) or b"").decode("utf-8", "replace").strip())
        if reply.code == 214:
            return
        if self._waiting is None:
            if reply.code // 100 == 4:
                self.log.info("paging terminal closed the link: {reply}", reply=reply)
                self._closing = True
                self.transport.loseConnection()
            elif not self._closing:
                self._protocol_error("reply to no command", line)
            return
        verb, waiting, timer = self._waiting
        self._waiting = None
        timer.cancel()
        if reply.code // 100 == 4:
            # RFC 1861 4.2.4: the terminal ends the session after a 4xx.
            self._closing = True
            self.transport.loseConnection()
            waiting.errback(LinkClosed(f"{verb}: {reply}", reply))
            return
        waiting.callback(reply)

    def _timed_out(self):
        verb, waiting, _ = self._waiting
        self._waiting = None
        self.log.warn(
            "paging terminal did not answer {verb} within {timeout} s: dropping the link",
            verb=verb, timeout=self.reply_timeout,
        )
        self._abort()
        waiting.errback(LinkClosed(f"no reply to {verb} within {self.reply_timeout} s"))

    def _protocol_error(self, what, line):
        # One line per connection at most: the link is dropped right after.
        self.log.warn("paging terminal sent {what}: {line!r}; dropping the link", what=what, line=line[:80])
        self.abort(f"paging terminal sent {what}")

    def lineLengthExceeded(self, line):
        self._protocol_error(f"a line over {self.MAX_LENGTH} bytes", line)

    def _fail_waiting(self, error):
        if self._waiting is not None:
            verb, waiting, timer = self._waiting
            self._waiting = None
            timer.cancel()
            waiting.errback(error)

    def _abort(self):
        if not self._lost:
            self._closing = True
            self.transport.abortConnection()

    def connectionLost(self, reason):
        self._lost = True
        self._closing = True
        if self._close_timer is not None and self._close_timer.active():
            self._close_timer.cancel()
        if self._waiting is not None:
            why = f"connection lost waiting for the reply to {self._waiting[0]}: {reason.getErrorMessage()}"
            self._fail_waiting(LinkClosed(why))
        watchers, self._close_watchers = self._close_watchers, []
        for watcher in watchers:
            watcher.callback(None)

