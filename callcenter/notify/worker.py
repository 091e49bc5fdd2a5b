"""
One channel's worker: takes the channel's stored messages when they are
due, hands them to its sender within the sender's window and the
channel's rate limit, and reports each attempt's outcome to be recorded.

Retries back off exponentially with jitter (so that messages that failed
together do not retry together), longer if the peer asked; after the last
attempt, or on a permanent refusal, the message is dead-lettered with the
reason.  Everything here is in memory: the store has every message, and a
restart rebuilds the worker from it.
"""

import datetime
import heapq
import itertools
import random

from twisted.internet import defer
from twisted.logger import Logger

from callcenter.notify.message import Accepted, PermanentFailure, TemporaryFailure
from callcenter.notify.records import DEAD, QUEUED, SENT, Outcome

_log = Logger()


class TokenBucket:
    """C{rate} messages a second on average, bursts of up to C{burst}; rate 0: no limit."""

    def __init__(self, clock, rate, burst=None):
        self._clock = clock
        self.rate = rate
        self._burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self._burst
        self._at = clock.seconds()

    def take(self):
        """Take one token; returns 0, or the seconds until one is available (nothing taken)."""
        if not self.rate:
            return 0
        now = self._clock.seconds()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0
        return (1 - self._tokens) / self.rate


class Backoff:
    """
    The wait before attempt n+1: C{first} seconds doubling per attempt up
    to C{longest}, each drawn from ±50% around that ("equal jitter").
    """

    def __init__(self, first=5.0, longest=1800.0, rng=None):
        self.first = first
        self.longest = longest
        self._random = rng or random.Random()

    def delay(self, attempts, asked=None):
        nominal = min(self.longest, self.first * 2 ** max(0, attempts - 1))
        delay = nominal * self._random.uniform(0.5, 1.5)
        return max(delay, asked or 0)


class ChannelWorker:
    """
    @param sender: the channel's L{callcenter.notify.interfaces.IMessageSender}.
    @param record: C{record(outcome)}, returning a Deferred once the outcome
        is durable (the outbox's group commit).
    @param max_attempts: attempts before a message is dead-lettered.
    """

    def __init__(self, sender, record, clock, rate=0, max_attempts=8, backoff=None, metrics=None):
        self.channel = sender.channel
        self._sender = sender
        self._record = record
        self._clock = clock
        self._bucket = TokenBucket(clock, rate)
        self._max_attempts = max_attempts
        self._backoff = backoff or Backoff()
        self._metrics = metrics
        self._ready = []  # a heap of (due, order, message, attempts)
        self._order = itertools.count()
        self._queued = set()
        self._in_flight = 0
        self._wakeup = None
        self._running = False
        self._pumping = False

    @property
    def waiting(self):
        """Messages queued here and not yet handed to the sender."""
        return len(self._ready)

    @property
    def in_flight(self):
        return self._in_flight

    @property
    def running(self):
        return self._running

    def start(self):
        self._running = True
        self._pump()

    def stop(self):
        self._running = False
        if self._wakeup is not None and self._wakeup.active():
            self._wakeup.cancel()
        self._wakeup = None

    def add(self, pending):
        """Queue a stored message (a L{callcenter.notify.records.Pending}) for its due time."""
        message_id = pending.message.message_id
        if message_id in self._queued:
            return
        self._queued.add(message_id)
        due = pending.not_before.timestamp()
        heapq.heappush(self._ready, (due, next(self._order), pending.message, pending.attempts))
        self._pump()

    def _pump(self):
        # A sender that fails at once (an invalid address) calls back into
        # here from inside the loop below: the loop goes on by itself, so
        # the nested call returns, instead of recursing once per message.
        if not self._running or self._pumping:
            return
        self._pumping = True
        try:
            self._pump_ready()
        finally:
            self._pumping = False

    def _pump_ready(self):
        window = self._sender.window
        now = self._clock.seconds()
        while self._ready and self._in_flight < window:
            due = self._ready[0][0]
            if due > now:
                self._wake_at(due - now)
                return
            wait = self._bucket.take()
            if wait:
                self._wake_at(wait)
                return
            _, _, message, attempts = heapq.heappop(self._ready)
            self._send(message, attempts)

    def _wake_at(self, delay):
        if self._wakeup is not None and self._wakeup.active():
            if self._wakeup.getTime() <= self._clock.seconds() + delay:
                return
            self._wakeup.cancel()
        self._wakeup = self._clock.callLater(delay, self._woken)

    def _woken(self):
        self._wakeup = None
        self._pump()

    def _send(self, message, attempts):
        self._in_flight += 1
        try:
            d = self._sender.send(message)
        except Exception as e:
            d = defer.fail(e)
        d.addCallbacks(self._accepted, self._failed, callbackArgs=(message, attempts), errbackArgs=(message, attempts))
        d.addErrback(lambda f: _log.failure("recording the outcome of message {id}", f, id=message.message_id))

    def _done(self, outcome, again=False):
        self._in_flight -= 1
        if self._metrics is not None:
            self._metrics.outcome(self.channel, outcome.state)
        recorded = self._record(outcome)
        if not again:
            # Forgotten only once the outcome is written: until then the
            # store still says "queued", and a sweep must not take it for
            # a message nobody is sending.
            def forget(result):
                self._queued.discard(outcome.message_id)
                return result

            recorded.addBoth(forget)
        self._pump()
        return recorded

    def _accepted(self, accepted, message, attempts):
        if not isinstance(accepted, Accepted):
            accepted = Accepted()
        return self._done(
            Outcome(message.message_id, self.channel, SENT, attempts + 1, accepted.detail, tuple(accepted.provider_ids))
        )

    def _failed(self, failure, message, attempts):
        attempts += 1
        error = failure.value
        why = str(error) or type(error).__name__
        if isinstance(error, PermanentFailure):
            _log.warn("{channel} message {id} to {address} refused: {why}", channel=self.channel,
                      id=message.message_id, address=message.address, why=why)
            return self._done(Outcome(message.message_id, self.channel, DEAD, attempts, why))
        if not isinstance(error, TemporaryFailure):
            _log.failure("{channel} sender failed on message {id}", failure, channel=self.channel, id=message.message_id)
        if attempts >= self._max_attempts:
            _log.warn("{channel} message {id} given up after {n} attempts: {why}", channel=self.channel,
                      id=message.message_id, n=attempts, why=why)
            return self._done(Outcome(message.message_id, self.channel, DEAD, attempts, f"gave up after {attempts} attempts: {why}"))
        delay = self._backoff.delay(attempts, getattr(error, "retry_after", None))
        due = self._clock.seconds() + delay
        not_before = datetime.datetime.fromtimestamp(due, datetime.timezone.utc)
        outcome = Outcome(message.message_id, self.channel, QUEUED, attempts, f"attempt {attempts}: {why}",
                          not_before=not_before)
        heapq.heappush(self._ready, (due, next(self._order), message, attempts))
        return self._done(outcome, again=True)
