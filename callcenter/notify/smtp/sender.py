"""
The e-mail channel's L{IMessageSender}: a pool of persistent ESMTP
connections over a list of relays with failover.

Each message is composed (L{MailComposer}) and handed to a connection
with room for it; each connection carries message after message
(pipelined when the relay allows, L{ESMTPClient}).  Connections are
opened when messages wait for one, up to C{pool_size}, to the most
preferred relay that is up; a relay that refuses the connection, fails
TLS or AUTH, answers 4xx/5xx to EHLO or MAIL, or 421, is marked down
(L{RelayList}: a backoff doubling per failure) and the next one is
tried at once.  A connection idle for C{idle_timeout} says QUIT; the next
message opens a new one.

Why not one C{ClientService} per connection: a ClientService keeps one
endpoint connected for ever, counts a connection as made before EHLO,
TLS and AUTH have succeeded, and reconnects the moment an idle
connection is closed.  Here a connection is wanted only while there is
mail, "up" means the handshake passed, and the backoff belongs to the
relay (shared by all its connections), not to the connection.

Nothing is lost: a message whose connection fails before its content was
sent goes through the next connection (or relay) at once, up to once per
relay; any other failure is the outbox's to retry (L{TemporaryFailure}),
and a message waits for a connection at most C{queue_timeout} seconds.
"""

import collections

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

from callcenter.notify.interfaces import IMessageSender
from callcenter.notify.message import PermanentFailure, TemporaryFailure
from callcenter.notify.smtp.mail import InvalidAddress, MailComposer, normalize_address
from callcenter.notify.smtp.protocol import ESMTPClient, HandshakeFailed, TransactionAborted
from callcenter.notify.smtp.relays import RelayList


class NoRelayAvailable(TemporaryFailure):
    """Every relay is down (C{retry_after}: seconds until the first is tried again) or failed just now."""


class LogThrottle:
    """At most C{burst} lines per C{interval} seconds of each kind; the next line says how many were held back."""

    def __init__(self, clock, log, interval=10.0, burst=5):
        self._clock = clock
        self._log = log
        self._interval = interval
        self._burst = burst
        self._kinds = {}  # kind -> [window start, lines, held back]

    def __call__(self, kind, text):
        now = self._clock.seconds()
        state = self._kinds.setdefault(kind, [now, 0, 0])
        if now - state[0] >= self._interval or now < state[0]:
            state[0], state[1] = now, 0
        if state[1] >= self._burst:
            state[2] += 1
            return
        state[1] += 1
        held, state[2] = state[2], 0
        if held:
            text = f"{text} ({held} more like it not logged)"
        self._log.warn("{text}", text=text)


class _Job:
    __slots__ = ("message_id", "recipient", "content", "deferred", "attempts", "expiry")

    def __init__(self, message_id, recipient, content):
        self.message_id = message_id
        self.recipient = recipient
        self.content = content
        self.deferred = defer.Deferred()
        self.attempts = 0
        self.expiry = None


class _ConnectionFactory(Factory):
    def __init__(self, sender, relay_state):
        self._sender = sender
        self.relay_state = relay_state

    def buildProtocol(self, addr):
        return self._sender._build_connection(self.relay_state)


@implementer(IMessageSender)
class SmtpSender(Service):
    """
    Sends e-mail notifications through C{relays}
    (L{callcenter.notify.smtp.relays.Relay}s, most preferred first).

    @param reactor: for TCP connections (and the clock unless C{clock} is given).
    @param from_address: the From address; also the envelope sender unless
        C{envelope_from} is given (a bounce address, say).
    @param from_name: the From display name (the broker's name).
    @param helo_name: our name in EHLO; the From domain by default.
    @param pool_size: connections open at most at once.
    @param pipeline_depth: messages in flight per connection with PIPELINING.
    @param attachments: C{attachments(message)} -> L{Attachment}s to add to
        it (the daily statement), or None.
    """

    channel = "email"
    log = Logger()

    def __init__(self, reactor, relays, from_address, *, from_name="", envelope_from=None, helo_name=None,
                 message_id_domain=None, pool_size=4, pipeline_depth=2, connect_timeout=15.0, reply_timeout=60.0,
                 idle_timeout=30.0, queue_timeout=30.0, relay_backoff=5.0, max_relay_backoff=300.0,
                 stop_timeout=10.0, attachments=None, clock=None):
        if pool_size < 1 or pipeline_depth < 1:
            raise ValueError("pool_size and pipeline_depth must be at least 1")
        self._reactor = reactor
        self._clock = clock if clock is not None else reactor
        self._relays = RelayList(relays, self._clock, relay_backoff, max_relay_backoff)
        for state in self._relays.states:
            state.tls_options()  # a bad trust root is a configuration error: now, not at the first message
        self._composer = MailComposer(from_address, from_name, message_id_domain)
        self._envelope_from = normalize_address(envelope_from) if envelope_from else self._composer.from_address
        self._helo_name = helo_name or self._composer.from_address.rpartition("@")[2]
        self._pool_size = pool_size
        self._depth = pipeline_depth
        self._connect_timeout = connect_timeout
        self._reply_timeout = reply_timeout
        self._idle_timeout = idle_timeout
        self._queue_timeout = queue_timeout
        self._stop_timeout = stop_timeout
        self._attachments = attachments
        # Once per relay, and once more: a message that keeps losing its
        # connection before its content went out is the outbox's again.
        self._max_attempts = len(self._relays) + 1
        self._complain = LogThrottle(self._clock, self.log)
        self._receipt_handler = None

        self._queue = collections.deque()  # jobs waiting for a connection
        self._connections = []  # ready connections (ESMTPClient)
        self._attempts = set()  # connection attempts in progress (Deferreds)
        self._dispatching = False
        self._dispatch_again = False
        self._failing_soon = None

    @property
    def window(self):
        return self._pool_size * self._depth

    @property
    def relays(self):
        """The relays' states (L{RelayState}), most preferred first: for status pages and tests."""
        return list(self._relays.states)

    @property
    def connections(self):
        return list(self._connections)

    def set_receipt_handler(self, handler):
        # SMTP reports nothing after the 250 here: bounces come by mail, later.
        self._receipt_handler = handler

    # IMessageSender.

    def send(self, message):
        if not self.running:
            return defer.fail(TemporaryFailure("the e-mail sender is not running"))
        try:
            attachments = self._attachments(message) if self._attachments is not None else ()
            recipient, content = self._composer.compose(message, self._clock.seconds(), attachments)
        except InvalidAddress as e:
            return defer.fail(PermanentFailure(str(e)))
        except Exception:
            return defer.fail()
        job = _Job(message.message_id, recipient, content)
        connection = None if self._queue else self._free_connection()
        if connection is not None:
            self._give(connection, job)
        else:
            self._enqueue(job)
            self._dispatch()
        return job.deferred

    # Jobs and connections.

    def _free_connection(self):
        best, room = None, 0
        for connection in self._connections:
            capacity = connection.capacity
            if capacity > room:
                best, room = connection, capacity
        return best

    def _give(self, connection, job):
        job.attempts += 1
        d = connection.send(self._envelope_from, job.recipient, job.content)
        d.addCallbacks(self._delivered, self._undelivered, callbackArgs=(job,), errbackArgs=(job, connection))

    def _delivered(self, accepted, job):
        self._dispatch()
        job.deferred.callback(accepted)

    def _undelivered(self, failure, job, connection):
        error = failure.value
        if isinstance(error, TransactionAborted):
            if error.relay_at_fault:
                self._relay_failed(connection.relay, str(error))
            if not error.content_sent and self.running and job.attempts < self._max_attempts:
                # The relay never had it: safe to send through another connection now.
                self._enqueue(job, front=True)
                self._dispatch()
                return
        self._dispatch()
        job.deferred.errback(failure)

    def _enqueue(self, job, front=False):
        job.expiry = self._clock.callLater(self._queue_timeout, self._expire, job)
        if front:
            self._queue.appendleft(job)
        else:
            self._queue.append(job)

    def _expire(self, job):
        job.expiry = None
        try:
            self._queue.remove(job)
        except ValueError:
            return
        job.deferred.errback(TemporaryFailure(
            f"no SMTP connection within {self._queue_timeout:g} s", retry_after=self._relays.next_up_in() or None
        ))

    def _dispatch(self):
        """Give waiting jobs to connections with room; open connections for the rest."""
        # A job failing synchronously (a relay without SMTPUTF8) calls back
        # here: loop rather than recurse.
        if self._dispatching:
            self._dispatch_again = True
            return
        self._dispatching = True
        try:
            again = True
            while again:
                self._dispatch_again = False
                while self._queue:
                    connection = self._free_connection()
                    if connection is None:
                        break
                    job = self._queue.popleft()
                    if job.expiry is not None:
                        job.expiry.cancel()
                        job.expiry = None
                    self._give(connection, job)
                again = self._dispatch_again
            if self._queue:
                self._grow()
        finally:
            self._dispatching = False

    def _grow(self):
        """Open connections for the jobs no open connection has room for, up to the pool's size."""
        if not self.running:
            return
        room = sum(connection.capacity for connection in self._connections) + len(self._attempts) * self._depth
        wanted = len(self._queue) - room
        while wanted > 0 and len(self._connections) + len(self._attempts) < self._pool_size:
            if not self._connect():
                break  # Settled at once (every relay down): another try would too.
            wanted -= self._depth

    def _connect(self):
        """Start opening a connection; False if that settled at once."""
        attempt = self._open_any()
        if attempt.called:
            attempt.addCallbacks(self._connected, self._connect_failed)
            return False
        self._attempts.add(attempt)

        def settled(result):
            self._attempts.discard(attempt)
            return result

        attempt.addBoth(settled)
        attempt.addCallbacks(self._connected, self._connect_failed)
        return True

    @defer.inlineCallbacks
    def _open_any(self):
        """A ready connection to the most preferred relay that takes one, trying each in turn."""
        tried = []
        while True:
            if not self.running:
                raise defer.CancelledError()
            state = self._relays.first_up(exclude=tried)
            if state is None:
                if tried:
                    raise NoRelayAvailable(f"no SMTP relay took a connection (last: {tried[-1].last_error})")
                reasons = "; ".join(f"{s.name}: {s.last_error}" for s in self._relays.states)
                raise NoRelayAvailable(f"every SMTP relay is down ({reasons})",
                                       retry_after=self._relays.next_up_in() or None)
            tried.append(state)
            try:
                connection = yield self._open(state)
            except defer.CancelledError:
                raise
            except HandshakeFailed as e:
                self._relay_failed(state, str(e))
            except Exception as e:
                self._relay_failed(state, f"{state.name}: {e}")
            else:
                self._relays.succeeded(state)
                return connection

    def _open(self, state):
        relay = state.relay
        endpoint = relay.endpoint or HostnameEndpoint(
            self._reactor, relay.host, relay.port, timeout=self._connect_timeout
        )
        d = endpoint.connect(_ConnectionFactory(self, state))
        d.addTimeout(self._connect_timeout, self._clock)
        # The handshake's replies each have reply_timeout.
        d.addCallback(lambda connection: connection.ready)
        return d

    def _build_connection(self, state):
        relay = state.relay
        connection = ESMTPClient(
            self._clock, self._helo_name, starttls=relay.starttls, tls_options=state.tls_options(),
            credentials=relay.credentials, allow_plaintext_auth=relay.allow_plaintext_auth,
            reply_timeout=self._reply_timeout, idle_timeout=self._idle_timeout, pipeline_depth=self._depth,
            name=state.name, complain=self._complain,
        )
        connection.relay = state
        return connection

    def _connected(self, connection):
        if not self.running:
            connection.quit()
            return
        self.log.info(
            "SMTP connection to {relay} ready (TLS: {tls}, PIPELINING: {pipelining})",
            relay=connection.name, tls=connection.tls, pipelining=connection.pipelining,
        )
        self._connections.append(connection)
        connection.when_closed().addCallback(self._closed, connection)
        self._dispatch()

    def _closed(self, _, connection):
        if connection in self._connections:
            self._connections.remove(connection)
        if self._queue:
            self._dispatch()

    def _connect_failed(self, failure):
        if failure.check(defer.CancelledError):
            return
        if self._connections or self._attempts:
            return  # The jobs wait for those (at most queue_timeout).
        error = failure.value
        if not isinstance(error, TemporaryFailure):
            error = NoRelayAvailable(failure.getErrorMessage())
        # Later, not in this call: a sender failing synchronously would
        # have the outbox recurse through its whole queue.
        if self._failing_soon is None:
            self._failing_soon = self._clock.callLater(0, self._fail_queue_unless_connecting, error)

    def _fail_queue_unless_connecting(self, error):
        self._failing_soon = None
        if not (self._connections or self._attempts):
            self._fail_queue(error)

    def _fail_queue(self, error):
        jobs, self._queue = self._queue, collections.deque()
        for job in jobs:
            if job.expiry is not None:
                job.expiry.cancel()
                job.expiry = None
            job.deferred.errback(error)

    def _relay_failed(self, state, why):
        down_for = self._relays.failed(state, why)
        if down_for:
            self.log.warn("SMTP relay {relay} down for {seconds:g} s: {why}",
                          relay=state.name, seconds=down_for, why=why)

    # The service.

    def stopService(self):
        """
        Stop taking messages: those waiting for a connection fail now,
        those on the wire get their replies, then each connection says
        QUIT; after C{stop_timeout} seconds what is left is cut (and fails
        with L{TemporaryFailure}).
        """
        super().stopService()
        if self._failing_soon is not None:
            self._failing_soon.cancel()
            self._failing_soon = None
        self._fail_queue(TemporaryFailure("the e-mail sender is stopping"))
        for attempt in list(self._attempts):
            attempt.cancel()
        connections = list(self._connections)
        closed = defer.DeferredList([connection.quit() for connection in connections])

        def cut():
            for connection in connections:
                connection.abort("the e-mail sender stopped")

        deadline = self._clock.callLater(self._stop_timeout, cut)

        def done(result):
            if deadline.active():
                deadline.cancel()
            return None

        return closed.addBoth(done)
