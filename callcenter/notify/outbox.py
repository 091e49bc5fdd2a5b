"""
The durable outbox: events in, messages stored, channel workers fed,
outcomes and receipts recorded.

Every write goes through one group committer, in the order things
happened: an event's messages are stored (and the event acknowledged)
before any worker sees them, and a message's "sent" is written before the
receipt the SMSC sends right after its submit_sm_resp.  Writes that come in
the same reactor turn share one piece of work, so that a burst of ten
thousand alerts is a few transactions, not ten thousand.

After a restart the queued messages are read back and sent (again: one
the peer took just before the process died, whose "sent" had not been
written yet, goes twice; that window is one commit long).  Fills booked
while the process was down, or between the ledger's commit and the
event, are found in the ledger and given their messages: their keys make
the ones already stored no-ops.
"""

import datetime
from dataclasses import dataclass

import sqlalchemy as sa
from twisted.internet import defer
from twisted.logger import Logger

from callcenter.notify import records
from callcenter.notify.fanout import drafts_for, fill_happening, happening_of
from callcenter.notify.worker import ChannelWorker
from callcenter.store.batches import GroupCommitter
from callcenter.store.schema import fills, instruments, orders

_log = Logger()

FILLS_CURSOR = "fills"
# Happenings stored per transaction in a burst.
STORE_CHUNK = 500
# How long a receipt waits for the "sent" of its message before it is
# taken for another system's (and answered all the same).
RECEIPT_PATIENCE = 30.0


@dataclass(slots=True)
class _PendingReceipt:
    channel: str
    receipt: object
    done: defer.Deferred
    until: float


class _Coalescing:
    """
    Items handed over together: those added in one reactor turn, and, while
    a hand-over is being written, all that arrive meanwhile, in the next
    one.  Under load the store sees a few large statements rather than a
    small one per turn.
    """

    def __init__(self, clock, flush, held=lambda: False):
        self._clock = clock
        self._flush = flush
        # While true, items wait (see Outbox._events_first).
        self._held = held
        self._items = []
        self._waiters = []
        self._drained = []
        self._call = None
        self._flushing = False

    def add(self, item):
        self._items.append(item)
        d = defer.Deferred()
        self._waiters.append(d)
        self._schedule()
        return d

    def _schedule(self):
        if self._call is None and not self._flushing and self._items and not self._held():
            self._call = self._clock.callLater(0, self._go)

    def release(self):
        """The hold may be over: hand over what waited."""
        self._schedule()

    @property
    def busy(self):
        return bool(self._items) or self._flushing

    def drained(self):
        """Fires once nothing waits here and no hand-over is being written."""
        if not self.busy:
            return defer.succeed(None)
        d = defer.Deferred()
        self._drained.append(d)
        return d

    def _go(self):
        self._call = None
        items, waiters = self._items, self._waiters
        self._items, self._waiters = [], []
        self._flushing = True
        done = self._flush(items)

        def fired(result):
            for d in waiters:
                d.callback(None)

        def failed(failure):
            for d in waiters:
                d.errback(failure)

        def next_one(result):
            self._flushing = False
            self._schedule()
            if not self.busy:
                drained, self._drained = self._drained, []
                for d in drained:
                    d.callback(None)
            return result

        done.addBoth(next_one)
        done.addCallbacks(fired, failed)


class Outbox:
    """
    @param senders: the L{callcenter.notify.interfaces.IMessageSender}s of
        the channels in use.
    @param rates: messages a second per channel (0 or missing: unlimited).
    """

    def __init__(self, store, clock, renderer, senders, rates=None, max_attempts=8, backoff=None,
                 alerts_are_urgent=True, max_batch=64, sweep_seconds=30.0, metrics=None):
        self._store = store
        self._clock = clock
        self._renderer = renderer
        self._alerts_are_urgent = alerts_are_urgent
        self._committer = GroupCommitter(store, max_batch=max_batch)
        rates = rates or {}
        self.workers = {}
        for sender in senders:
            self.workers[sender.channel] = ChannelWorker(
                sender, self._record_outcome, clock, rates.get(sender.channel, 0), max_attempts, backoff,
                metrics=metrics,
            )
            sender.set_receipt_handler(lambda receipt, channel=sender.channel: self._receipt(channel, receipt))
        self._events = _Coalescing(clock, self._store_happenings)
        # Outcomes and receipts wait while events' messages are being
        # stored: in a burst, the store's thread first makes the messages
        # (each one stored is one that can go), then records how they went.
        self._storing = 0
        self._outcomes = _Coalescing(clock, self._store_outcomes, held=lambda: self._storing > 0)
        self._receipts = []
        self._receipt_retry = None
        self.unknown_receipts = 0
        self._sweep_seconds = sweep_seconds
        self._sweeper = None
        self._metrics = metrics
        if metrics is not None:
            metrics.watch(self.workers)

    def now(self):
        return datetime.datetime.fromtimestamp(self._clock.seconds(), datetime.timezone.utc)

    @defer.inlineCallbacks
    def start(self):
        """Read back what waits to be sent, catch up with the ledger's fills, and start the workers."""
        pending = yield self._store.transaction(records.pending_messages, list(self.workers))
        for item in pending:
            self.workers[item.message.channel].add(item)
        caught_up = yield self._committer.submit(self._catch_up, self.now())
        for item in caught_up:
            self._dispatch(item)
        for worker in self.workers.values():
            worker.start()
        if self._sweep_seconds:
            self._sweeper = self._clock.callLater(self._sweep_seconds, self._sweep)
        if pending or caught_up:
            _log.info("outbox: {n} queued messages read back, {m} made for fills booked while down",
                      n=len(pending), m=len(caught_up))

    def stop(self):
        if self._sweeper is not None and self._sweeper.active():
            self._sweeper.cancel()
        self._sweeper = None
        if self._receipt_retry is not None and self._receipt_retry.active():
            self._receipt_retry.cancel()
        self._receipt_retry = None
        for worker in self.workers.values():
            worker.stop()
        return self.idle()

    def _sweep(self):
        """Take up messages queued by others (the CLI, another node); the workers ignore those they have."""
        self._sweeper = None
        d = self._store.transaction(records.pending_messages, list(self.workers), self.now())
        d.addCallback(self._dispatch_all)
        d.addErrback(lambda f: _log.failure("sweeping the outbox", f))

        def again(_):
            if self._sweep_seconds and self._sweeper is None and any(w.running for w in self.workers.values()):
                self._sweeper = self._clock.callLater(self._sweep_seconds, self._sweep)

        d.addCallback(again)

    # -- events in

    def notify(self, event):
        """
        Make and store the messages of a trading event.

        @return: a Deferred firing once they are durable (at once for
            events nobody is notified of).
        """
        happening = happening_of(event, self._alerts_are_urgent)
        if happening is None:
            return defer.succeed(None)
        return self._events.add(happening)

    def _store_happenings(self, happenings):
        # A burst (ten thousand alerts on one tick) is stored a few hundred
        # at a time, each part sent while the next is written: the first
        # messages leave after one small commit, not after the last.
        self._storing += 1
        d = defer.succeed(None)
        for start in range(0, len(happenings), STORE_CHUNK):
            d.addCallback(self._store_chunk, happenings[start:start + STORE_CHUNK])

        def stored(result):
            self._storing -= 1
            self._outcomes.release()
            return result

        return d.addBoth(stored)

    def _store_chunk(self, _, happenings):
        d = self._committer.submit(self._drafts_stored, happenings, self.now())
        return d.addCallback(self._dispatch_all)

    def _drafts_stored(self, connection, happenings, now):
        drafts = drafts_for(connection, happenings, self._renderer, now, _log)
        return records.store_drafts(connection, drafts, now)

    def _dispatch_all(self, stored):
        for item in stored:
            self._dispatch(item)

    def _dispatch(self, item):
        worker = self.workers.get(item.message.channel)
        if worker is None:
            # Kept in the store: it goes once the channel is configured.
            _log.warn("message {id}: channel {channel} is not configured", id=item.message.message_id,
                      channel=item.message.channel)
            return
        worker.add(item)

    def requeue(self, message_id):
        """Staff send a dead-lettered message again.  Fires True if it was dead and is queued now."""

        def requeued(connection, now):
            if not records.requeue_dead(connection, message_id, now):
                return None
            # Empty when its channel is not configured: queued all the same.
            return records.pending_messages(connection, list(self.workers), message_id=message_id)

        d = self._committer.submit(requeued, self.now())

        def queued(found):
            if found is None:
                return False
            self._dispatch_all(found)
            return True

        return d.addCallback(queued)

    # -- outcomes and receipts

    def _record_outcome(self, outcome):
        return self._outcomes.add(outcome)

    def _receipt(self, channel, receipt):
        """
        Through the same per-turn flush as the outcomes and after them, so
        a receipt never overtakes the "sent" of its message.  The Deferred
        (the SMSC's deliver_sm_resp waits for it) fires once the receipt is
        written: if we die before, the SMSC sends it again.
        """
        done = defer.Deferred()
        self._receipts.append(_PendingReceipt(channel, receipt, done, self._clock.seconds() + RECEIPT_PATIENCE))
        self._outcomes.add(None)
        return done

    def _store_outcomes(self, outcomes):
        outcomes = [o for o in outcomes if o is not None]
        receipts, self._receipts = self._receipts, []
        d = self._committer.submit(self._write_outcomes, outcomes, receipts, self.now())
        return d.addCallback(self._receipts_written, receipts)

    def _receipts_written(self, unmatched, receipts):
        now = self._clock.seconds()
        waiting = []
        for pending in receipts:
            if id(pending.receipt) not in unmatched:
                if self._metrics is not None and pending.receipt.delivered is not None:
                    self._metrics.receipt(pending.channel, "delivered" if pending.receipt.delivered else "failed")
                pending.done.callback(None)
            elif pending.until > now:
                # Its message's "sent" is not written yet (the first
                # segment's receipt before the last segment's
                # submit_sm_resp): matched again at the next flush.
                waiting.append(pending)
            else:
                self.unknown_receipts += 1
                if self._metrics is not None:
                    self._metrics.receipt(pending.channel, "unknown")
                _log.info("a delivery receipt for {id}, which is not a message of ours", id=pending.receipt.provider_id)
                pending.done.callback(None)
        if waiting:
            self._receipts[:0] = waiting
            if self._receipt_retry is None:
                self._receipt_retry = self._clock.callLater(1.0, self._retry_receipts)

    def _retry_receipts(self):
        self._receipt_retry = None
        self._outcomes.add(None)

    @staticmethod
    def _write_outcomes(connection, outcomes, receipts, now):
        records.record_outcomes(connection, outcomes, now)
        unmatched = set()
        by_channel = {}
        for pending in receipts:
            by_channel.setdefault(pending.channel, []).append(pending.receipt)
        for channel, batch in by_channel.items():
            unmatched.update(id(receipt) for receipt in records.record_receipts(connection, channel, batch, now))
        return unmatched

    @defer.inlineCallbacks
    def idle(self):
        """
        Fires once everything handed to the outbox so far is written: the
        events' messages and how their sends went (for tests and shutdown:
        an outcome still waiting for its turn when the process stops would
        have the message sent again after a restart).
        """
        # A send that fails at once turns an event's hand-over into an
        # outcome's: wait until both are quiet together.
        while self._events.busy or self._outcomes.busy:
            yield self._events.drained()
            yield self._outcomes.drained()
        yield self._committer.idle()

    # -- catching up with the ledger

    def _catch_up(self, connection, now):
        last = connection.execute(sa.select(sa.func.max(fills.c.fill_id))).scalar() or 0
        seen = records.cursor(connection, FILLS_CURSOR)
        records.move_cursor(connection, FILLS_CURSOR, last)
        if seen is None or last <= seen:
            # The first start: what was filled before notifications existed is not news.
            return []
        new = connection.execute(
            sa.select(fills.c.fill_id, fills.c.order_no).where(fills.c.fill_id > seen)
        ).all()
        order_nos = sorted({row.order_no for row in new})
        happenings = []
        for start in range(0, len(order_nos), 500):
            chunk = order_nos[start:start + 500]
            order_rows = {
                row.order_no: row
                for row in connection.execute(
                    sa.select(orders, instruments.c.name_zh, instruments.c.name_en)
                    .select_from(orders.outerjoin(instruments, instruments.c.code == orders.c.code))
                    .where(orders.c.order_no.in_(chunk))
                )
            }
            filled = {}
            for row in connection.execute(
                sa.select(fills.c.fill_id, fills.c.order_no, fills.c.quantity, fills.c.price_fen)
                .where(fills.c.order_no.in_(chunk))
                .order_by(fills.c.fill_id)
            ):
                filled[row.order_no] = filled.get(row.order_no, 0) + row.quantity
                if row.fill_id <= seen:
                    continue
                order = order_rows[row.order_no]
                happenings.append(
                    fill_happening(
                        order.order_no, order.fund_account_no, order.code, order.name_zh, order.name_en, order.side,
                        row.quantity, row.price_fen, filled[row.order_no], order.quantity, order.status,
                    )
                )
        return self._drafts_stored(connection, happenings, now)
