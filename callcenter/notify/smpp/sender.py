"""
The SMS channel: an L{IMessageSender} that keeps one SMPP link bound to
the SMSC (a C{ClientService}: reconnecting with backoff) and submits each
message as one submit_sm per segment.

 - A message is Accepted once the SMSC has taken every segment; its
   provider_ids are the segments' message_ids, in order (each segment
   gets its own receipt).  The first segment refused fails the message,
   temporarily or permanently as the SMSC's status says.
 - A send() while the link is down or its window full waits in a queue, at
   most C{link_timeout} s, then fails as temporary: the outbox retries
   later.  So does one still in flight when the link drops.
 - A refused bind (a wrong password) is logged at every attempt, and each
   one in a row waits longer before the next (the backoff counts refused
   binds as failed connections); messages meanwhile fail as temporary:
   the SMSC's configuration is not the message's fault.

Destination addresses (C{OutgoingMessage.address}): digits, spaces and
hyphens ignored.  A leading "+" or "00" is an international number (TON 1,
NPI 1 E.164), sent without it; so are 13 digits "861..." (a Chinese mobile
number with its country code, written without "+").  Anything else is sent
as given with TON 0 (unknown), NPI 1: the SMSC reads it in its own
numbering plan, where an 11-digit "1..." is a national mobile number.
"""

import collections

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from callcenter.notify.interfaces import IMessageSender
from callcenter.notify.message import Accepted, PermanentFailure, TemporaryFailure
from callcenter.notify.smpp.pdu import ESM_UDHI, MAX_ADDRESS, status_name
from callcenter.notify.smpp.protocol import ESMEFactory, LinkSettings
from callcenter.notify.smpp.text import segment_text, with_udh

TON_UNKNOWN, TON_INTERNATIONAL = 0, 1
NPI_E164 = 1
_IGNORED = str.maketrans("", "", " -")


def destination(address):
    """
    (TON, NPI, address octets) of a mobile number.

    @raise ValueError: not a number.
    """
    number = address.translate(_IGNORED)
    ton = TON_UNKNOWN
    if number.startswith("+"):
        number, ton = number[1:], TON_INTERNATIONAL
    elif number.startswith("00"):
        number, ton = number[2:], TON_INTERNATIONAL
    elif len(number) == 13 and number.startswith("861"):
        ton = TON_INTERNATIONAL
    if not number.isdigit() or not number.isascii() or len(number) > MAX_ADDRESS:
        raise ValueError(f"not a mobile number: {address!r}")
    return ton, NPI_E164, number.encode("ascii")


class _Outgoing:
    """One message on its way: its segments, and what the SMSC said of each."""

    __slots__ = ("deferred", "message_id", "dest_ton", "dest_npi", "destination", "esm_class", "data_coding",
                 "short_messages", "ids", "remaining", "done", "deadline")

    def __init__(self, message_id, dest_ton, dest_npi, destination_addr, esm_class, data_coding, short_messages,
                 deadline):
        self.deferred = defer.Deferred()
        self.message_id = message_id
        self.dest_ton = dest_ton
        self.dest_npi = dest_npi
        self.destination = destination_addr
        self.esm_class = esm_class
        self.data_coding = data_coding
        self.short_messages = short_messages
        self.ids = [None] * len(short_messages)
        self.remaining = len(short_messages)
        self.done = False
        self.deadline = deadline

    def accepted(self, index, message_id):
        if self.done:
            return
        self.ids[index] = message_id
        self.remaining -= 1
        if not self.remaining:
            self.done = True
            self.deferred.callback(Accepted(provider_ids=tuple(self.ids)))

    def failed(self, index, error):
        if self.done:
            return
        self.done = True
        self.deferred.errback(error)


@implementer(IMessageSender)
class SMPPSender(Service):
    """
    SMS through one SMSC account.

    @param clock: the reactor (or a Clock in tests): timers and reconnects.
    @param endpoint: an C{IStreamClientEndpoint} to the SMSC, TCP or TLS
        (C{HostnameEndpoint(reactor, host, port)}, or
        C{clientFromString(reactor, "tls:host=...:port=...")}).
    @param system_id, password, system_type: the SMPP account (the password
        as a value, at most 8 characters, SMPP 3.4 §4.1.1).
    @param source_addr, source_addr_ton, source_addr_npi: who the SMS is from
        (empty: the SMSC's default for the account).
    @param window: submit_sm in flight at once; also the outbox's limit of
        concurrent send()s.
    @param max_segments: a longer text is cut, with an ellipsis.
    @param link_timeout: how long a send() may wait for a bound link (or a
        window slot) before failing as temporary.
    @param retry_policy: seconds before reconnect attempt N (by default
        1 s growing 1.5 times an attempt to 30 s, with up to 1 s of jitter);
        refused binds in a row add to N.
    """

    channel = "sms"
    log = Logger()

    def __init__(self, clock, endpoint, system_id, password, system_type="", *, source_addr="", source_addr_ton=0,
                 source_addr_npi=0, service_type="", window=100, max_segments=6, link_timeout=30.0,
                 response_timeout=30.0, enquire_link_interval=30.0, enquire_link_timeout=10.0, bind_timeout=10.0,
                 throttle_pause=1.0, drain_timeout=5.0, retry_policy=None):
        self.settings = LinkSettings(
            system_id=system_id, password=password, system_type=system_type, source_addr=source_addr,
            source_addr_ton=source_addr_ton, source_addr_npi=source_addr_npi, service_type=service_type,
            window=window, enquire_link_interval=enquire_link_interval, enquire_link_timeout=enquire_link_timeout,
            response_timeout=response_timeout, bind_timeout=bind_timeout, throttle_pause=throttle_pause,
        )
        if max_segments < 1:
            raise ValueError("max_segments must be at least 1")
        self.window = window
        self._clock = clock
        self._max_segments = max_segments
        self._link_timeout = link_timeout
        self._drain_timeout = drain_timeout
        self._link = None  # the bound ESMEProtocol, if any
        self._queue = collections.deque()  # (_Outgoing, segment index) not yet submitted
        self._queue_call = None
        self._reference = 0
        self._receipt_handler = None
        self._mobile_originated_handler = None
        self.accepting_links = False
        self.bind_refusals = 0  # in a row
        self.last_error = None
        base_policy = backoffPolicy(initialDelay=1.0, maxDelay=30.0) if retry_policy is None else retry_policy
        # Refused binds lengthen the backoff here rather than by failing
        # ClientService's prepareConnection: a connection rejected there
        # and then closed raises NoTransition in its state machine
        # (Twisted 26.10: no _clientDisconnected in state Waiting).
        self._client = ClientService(
            endpoint,
            ESMEFactory(self.settings, clock, self),
            retryPolicy=lambda attempt: base_policy(attempt + self.bind_refusals),
            clock=clock,
        )

    # IMessageSender

    def set_receipt_handler(self, handler):
        """
        C{handler(receipt)} may return a Deferred: the SMSC's deliver_sm is
        answered when it fires, and if it fails the SMSC is asked to send
        the receipt again later (ESME_RX_T_APPN), e.g. when it comes before
        the message's Accepted is on record.
        """
        self._receipt_handler = handler

    def set_mobile_originated_handler(self, handler):
        """C{handler(source_addr, text)} for each SMS a subscriber sends us (STOP, later)."""
        self._mobile_originated_handler = handler

    def send(self, message):
        if not self.running:
            return defer.fail(TemporaryFailure("SMS sender not running"))
        try:
            dest_ton, dest_npi, destination_addr = destination(message.address)
            data_coding, segments, truncated = segment_text(message.body, self._max_segments)
        except ValueError as e:
            return defer.fail(PermanentFailure(str(e)))
        if truncated:
            self.log.warn("SMS {message_id}: {length} characters cut to fit {count} segment(s)",
                          message_id=message.message_id, length=len(message.body), count=len(segments))
        if len(segments) == 1:
            esm_class = 0
        else:
            self._reference = (self._reference + 1) & 0xFF
            segments = with_udh(segments, self._reference)
            esm_class = ESM_UDHI
        outgoing = _Outgoing(message.message_id, dest_ton, dest_npi, destination_addr, esm_class, data_coding,
                             segments, self._clock.seconds() + self._link_timeout)
        link = self._link
        if not self._queue and link is not None and esm_class == 0 and link.can_submit():
            link.submit(dest_ton, dest_npi, destination_addr, 0, data_coding, segments[0], outgoing, 0)
        else:
            self._queue.extend((outgoing, index) for index in range(len(segments)))
            self._pump()
            if self._queue and self._queue_call is None:
                self._arm_queue_timer()
        return outgoing.deferred

    # Service

    def startService(self):
        Service.startService(self)
        self.accepting_links = True
        self._client.startService()

    def stopService(self):
        """
        Unbind gracefully: what is queued fails now, what is in flight may
        still be answered for C{drain_timeout} s; then what is left fails,
        all as temporary.
        """
        Service.stopService(self)
        self.accepting_links = False
        self._fail_queue(lambda: TemporaryFailure("SMS sender stopping"))
        closing = self._link.unbind(self._drain_timeout) if self._link is not None else defer.succeed(None)
        closing.addBoth(lambda _: self._client.stopService())
        return closing

    def status(self):
        """What an operator's health check shows."""
        return {
            "bound": self._link is not None,
            "queued": len(self._queue),
            "in_flight": self._link.in_flight if self._link is not None else 0,
            "bind_refusals": self.bind_refusals,
            "last_error": self.last_error,
        }

    # The link's handler (see ESMEProtocol)

    def link_bound(self, link):
        self._link = link
        self.bind_refusals = 0
        self.last_error = None
        self._pump()

    def bind_refused(self, link, status):
        self.bind_refusals += 1
        self.last_error = "bind not answered" if status is None else f"bind refused: {status_name(status)}"

    def link_lost(self, link, reason):
        if self._link is link:
            self._link = None
            self.last_error = f"link lost: {reason.getErrorMessage()}"

    def link_ready(self, link):
        if link is self._link and self._queue:
            self._pump()

    def receipt(self, receipt):
        if self._receipt_handler is None:
            return None
        return self._receipt_handler(receipt)

    def mobile_originated(self, source_addr, text, sm):
        if self._mobile_originated_handler is None:
            return None
        return self._mobile_originated_handler(source_addr, text)

    # The queue

    def _pump(self):
        link, queue = self._link, self._queue
        while queue and link is not None and link.can_submit():
            outgoing, index = queue.popleft()
            if outgoing.done:
                continue  # another segment failed, or it timed out
            link.submit(outgoing.dest_ton, outgoing.dest_npi, outgoing.destination, outgoing.esm_class,
                        outgoing.data_coding, outgoing.short_messages[index], outgoing, index)

    def _arm_queue_timer(self):
        delay = max(0.0, self._queue[0][0].deadline - self._clock.seconds())
        self._queue_call = self._clock.callLater(delay, self._expire_queue)

    def _expire_queue(self):
        self._queue_call = None
        now, queue = self._clock.seconds(), self._queue
        while queue and (queue[0][0].done or queue[0][0].deadline <= now):
            outgoing, _ = queue.popleft()
            if outgoing.done:
                continue
            if self._link is None:
                why = f"SMSC link not bound within {self._link_timeout} s ({self.last_error or 'connecting'})"
            else:
                why = f"not submitted within {self._link_timeout} s (window full or throttled)"
            outgoing.failed(None, TemporaryFailure(why))
        if queue:
            self._arm_queue_timer()

    def _fail_queue(self, error):
        queue, self._queue = self._queue, collections.deque()
        if self._queue_call is not None and self._queue_call.active():
            self._queue_call.cancel()
        self._queue_call = None
        for outgoing, _ in queue:
            outgoing.failed(None, error())
