"""
The pager channel: pages to a paging terminal over SNPP (RFC 1861), one
page per transaction, C{connections} links to the terminal, each carrying
one page at a time.

Links are opened when a page needs one (and one when the service starts,
so that an unreachable terminal shows in the log at once), not kept up by
a C{ClientService}: paging terminals close idle links (Net::SNPP::Server
with its C{Timeout}, "421 Timeout, Goodbye"), and reconnecting after each
of those would only churn.  We say QUIT ourselves after C{idle_timeout}
seconds without a page.  After a failed attempt to open a link, pages fail
at once (L{TemporaryFailure} with C{retry_after}) until the next attempt is
due: 1, 2, 4 ... seconds, at most C{max_backoff}; the outbox's own retries
do the rest.

What a refusal means for the message (RFC 1861 4.2):

* 550 to PAGE, MESS, DATA or SEND: an "administrative" refusal of this
  page (an invalid pager id, a message the terminal will never take):
  L{PermanentFailure}.
* Any other 5xx (554 "technical" failure, 500, 503, 552 ...), any 4xx
  (the terminal closes the link), a lost connection, a reply timeout, a
  refused login: L{TemporaryFailure}, the outbox tries again later.

A link that was idle and turns out closed before the terminal took the
page (SEND not yet written) is reopened and the page sent again at once:
the terminal discarded the unfinished transaction, so nothing goes twice.
Once SEND is written, a lost link fails the page as temporary and the
outbox sends it again: the terminal may then deliver it twice, which SNPP
cannot prevent.
"""

from collections import deque

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, gatherResults, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

from callcenter.notify.interfaces import IMessageSender
from callcenter.notify.message import Accepted, PermanentFailure, TemporaryFailure
from callcenter.notify.snpp_protocol import (
    TOKEN,
    LinkClosed,
    NegativeReply,
    Page,
    SNPPClientProtocol,
    pager_text,
)

SNPP_PORT = 444
# The commands whose 550 refuses the page itself, not our configuration.
_PAGE_COMMANDS = frozenset({"PAGE", "MESS", "DATA", "SEND"})


def classify(error):
    """The L{TemporaryFailure} or L{PermanentFailure} an SNPP error means for its message."""
    if isinstance(error, NegativeReply):
        if error.reply.code == 550 and error.verb in _PAGE_COMMANDS:
            return PermanentFailure(f"paging terminal refused the page: {error}")
        return TemporaryFailure(f"paging terminal: {error}")
    if isinstance(error, LinkClosed):
        return TemporaryFailure(f"paging terminal link: {error}")
    return TemporaryFailure(f"paging terminal: {error!r}")


class _Link:
    """One connection slot to the terminal, opened when needed."""

    log = Logger()

    def __init__(self, sender, number):
        self.sender = sender
        self.number = number
        self.protocol = None
        self.failures = 0
        self.retry_at = None
        self.last_error = ""
        self.idle_timer = None

    async def deliver(self, page):
        reused = self.protocol is not None and self.protocol.usable
        protocol = await self.connected()
        try:
            return await protocol.page(page)
        except LinkClosed as e:
            if not reused or e.after_send:
                raise
            self.log.info("pager link {n} was closed under us ({error}): reopening it", n=self.number, error=e)
        protocol = await self.connected()
        return await protocol.page(page)

    async def connected(self):
        """The link's protocol, greeted and logged in; opened now if need be."""
        if self.protocol is not None and self.protocol.usable:
            return self.protocol
        sender = self.sender
        now = sender.clock.seconds()
        if self.retry_at is not None and now < self.retry_at:
            wait = self.retry_at - now
            raise TemporaryFailure(
                f"paging terminal unreachable ({self.last_error}); next attempt in {wait:.0f} s", retry_after=wait
            )
        try:
            attempt = sender.endpoint.connect(Factory.forProtocol(sender.build_protocol))
            protocol = await attempt.addTimeout(sender.connect_timeout, sender.clock)
            # A copy, so that cancelling this wait does not touch the protocol's own Deferred.
            def cancel(greeted):
                greeted.errback(CancelledError())
                protocol.abort("cancelled")

            greeted = Deferred(cancel)

            def relay(result):
                if not greeted.called:
                    greeted.callback(result)

            protocol.ready.addBoth(relay)
            await greeted
        except CancelledError:
            raise
        except Exception as e:
            self.failures += 1
            delay = min(sender.max_backoff, 2.0 ** (self.failures - 1))
            self.retry_at = sender.clock.seconds() + delay
            if isinstance(e, TimeoutError):
                self.last_error = f"no connection within {sender.connect_timeout} s"
            else:
                self.last_error = str(e) or type(e).__name__
            self.log.warn(
                "cannot open pager link {n}: {error}; next attempt in {delay} s",
                n=self.number, error=self.last_error, delay=delay,
            )
            raise TemporaryFailure(f"cannot open a link to the paging terminal: {self.last_error}", retry_after=delay)
        self.failures = 0
        self.retry_at = None
        self.protocol = protocol
        protocol.when_closed().addCallback(self._closed, protocol)
        return protocol

    def _closed(self, _, protocol):
        if self.protocol is protocol:
            self.protocol = None
        self.stop_idle_timer()

    def start_idle_timer(self):
        self.stop_idle_timer()
        if self.protocol is not None and self.protocol.usable:
            self.idle_timer = self.sender.clock.callLater(self.sender.idle_timeout, self.close)

    def stop_idle_timer(self):
        if self.idle_timer is not None and self.idle_timer.active():
            self.idle_timer.cancel()
        self.idle_timer = None

    def close(self):
        """QUIT if open; fires once closed (every wait bounded by the reply timeout)."""
        self.stop_idle_timer()
        if self.protocol is None:
            return succeed(None)
        return self.protocol.quit()


@implementer(IMessageSender)
class SNPPSender(Service):
    """
    Sends pages to one paging terminal.

    @param clock: the reactor (or a L{task.Clock} in tests) for every timeout.
    @param endpoint: an C{IStreamClientEndpoint} to the terminal (see L{for_host}).
    @param connections: links opened at most at once; the outbox's window.
    @param login: C{(user, password)} for LOGIn (RFC 1861 4.5.1), or None.
    @param utf8: send text as UTF-8 rather than made ASCII (see L{callcenter.notify.snpp_protocol}).
    @param service_level: LEVEl 0-11 for every page (4.5.3), or None.
    @param mess_limit: longer single-line text goes with DATA rather than MESS.
    """

    channel = "pager"
    log = Logger()

    def __init__(
        self, clock, endpoint, *, connections=1, login=None, utf8=False, service_level=None,
        reply_timeout=60.0, connect_timeout=30.0, idle_timeout=120.0, mess_limit=240, max_backoff=300.0,
    ):
        if connections < 1:
            raise ValueError("connections must be at least 1")
        if login is not None:
            user, password = login
            if not (TOKEN.fullmatch(user) and TOKEN.fullmatch(password)):
                raise ValueError("SNPP login and password must be printable ASCII without spaces")
            login = (user, password)
        if service_level is not None and service_level not in range(12):
            raise ValueError("SNPP service level must be 0 to 11")
        self.clock = clock
        self.endpoint = endpoint
        self.window = connections
        self.login = login
        self.utf8 = utf8
        self.service_level = service_level
        self.reply_timeout = reply_timeout
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.mess_limit = mess_limit
        self.max_backoff = max_backoff
        self._links = [_Link(self, n) for n in range(connections)]
        self._free = deque(self._links)
        self._waiters = deque()
        self._in_flight = set()
        self._receipt_handler = None

    @classmethod
    def for_host(cls, reactor, host, port=SNPP_PORT, *, clock=None, **options):
        """A sender to C{host}:C{port} over TCP; C{clock} defaults to C{reactor}."""
        timeout = options.get("connect_timeout", 30.0)
        return cls(clock or reactor, HostnameEndpoint(reactor, host, port, timeout=timeout), **options)

    def build_protocol(self):
        return SNPPClientProtocol(
            self.clock, reply_timeout=self.reply_timeout, login=self.login, utf8=self.utf8, mess_limit=self.mess_limit
        )

    def set_receipt_handler(self, handler):
        # SNPP levels 1 and 2 have no delivery reports.
        self._receipt_handler = handler

    def startService(self):
        super().startService()
        self._track(Deferred.fromCoroutine(self._warm_up())).addErrback(lambda f: f.trap(Exception))

    async def _warm_up(self):
        link = await self._acquire()
        try:
            await link.connected()
        except TemporaryFailure:
            pass
        finally:
            self._release(link)

    def stopService(self):
        """
        Fail every page waiting or in flight with L{TemporaryFailure} (the
        outbox sends it again), QUIT the idle links; fires once all are closed.
        """
        super().stopService()
        for waiter in list(self._waiters):
            waiter.cancel()
        for attempt in list(self._in_flight):
            attempt.cancel()
        return gatherResults([link.close() for link in self._links])

    def send(self, message):
        if not self.running:
            return _failed(TemporaryFailure("the pager sender is not running"))
        if not TOKEN.fullmatch(message.address):
            return _failed(PermanentFailure(f"not a pager id: {message.address!r}"))
        if not pager_text(message.body, self.utf8):
            return _failed(PermanentFailure("nothing to page: the text is empty"))
        page = Page(message.address, message.body, message.subject, self.service_level)
        attempt = self._track(Deferred.fromCoroutine(self._send(page)))
        return attempt.addCallbacks(self._accepted, self._refused, errbackArgs=(message,))

    async def _send(self, page):
        link = await self._acquire()
        try:
            return await link.deliver(page)
        finally:
            self._release(link)

    def _accepted(self, reply):
        return Accepted(detail=str(reply))

    def _refused(self, failure, message):
        error = failure.value
        if isinstance(error, (TemporaryFailure, PermanentFailure)):
            return failure
        if isinstance(error, CancelledError):
            raise TemporaryFailure("paging cancelled (the sender stopped) before the terminal took the page")
        if not isinstance(error, (NegativeReply, LinkClosed)):
            self.log.failure("unexpected error paging message {id}", failure, id=message.message_id)
        raise classify(error)

    def _track(self, attempt):
        self._in_flight.add(attempt)

        def forget(result):
            self._in_flight.discard(attempt)
            return result

        return attempt.addBoth(forget)

    def _acquire(self):
        if self._free:
            link = self._free.popleft()
            link.stop_idle_timer()
            return succeed(link)
        # More pages than links: the outbox keeps to the window, but a
        # page beyond it waits for a link rather than fail.
        waiter = Deferred(lambda d: self._waiters.remove(d))
        self._waiters.append(waiter)
        return waiter

    def _release(self, link):
        if self._waiters:
            self._waiters.popleft().callback(link)
            return
        self._free.append(link)
        if self.running:
            link.start_idle_timer()


def _failed(error):
    d = Deferred()
    d.errback(error)
    return d
