"""
Group commit: many small pieces of work in one database transaction, so
that they share one durable commit (one fsync) instead of queueing for one
each.  By default each piece runs in its own savepoint (L{run_each}): one
that raises is undone alone and its caller gets the exception; the others
commit.  Every Deferred fires only after the transaction has committed, so
an acknowledgement given from its callback is as durable as with
L{IStore.transaction}.

Work submitted while a batch is being written waits for the next one, which
starts as soon as the previous commits: under light load a piece of work is
written at once, under heavy load batches grow by themselves.

A caller submitting thousands of pieces a second may be told of each
outcome by a plain function (L{GroupCommitter.submit_then}): a Deferred and
its callbacks cost more than the rest of a small piece's way through the
reactor.
"""

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

_log = Logger()


def run_each(connection, batch):
    """
    The default way to run a batch: each C{(work, args)} in its own
    savepoint.  Returns each one's result, or its L{Failure}.
    """
    outcomes = []
    for work, args in batch:
        savepoint = connection.begin_nested()
        try:
            result = work(connection, *args)
        except Exception:
            savepoint.rollback()
            outcomes.append(Failure())
        else:
            savepoint.commit()
            outcomes.append(result)
    return outcomes


class GroupCommitter:
    """
    @param store: the L{IStore} whose transactions carry the batches.
    @param max_batch: the most pieces of work in one transaction, so that
        one transaction never holds the write lock for long.
    @param run_batch: C{run_batch(connection, [(work, args), ...])} runs a
        batch in its transaction and returns an outcome (a result or a
        L{Failure}) for each piece, in order; L{run_each} by default.  A
        caller whose pieces are cheaper done together passes its own (and
        keeps one failing piece from failing the others).
    """

    def __init__(self, store, max_batch=256, run_batch=run_each):
        self._store = store
        self._max_batch = max_batch
        self._run_batch = run_batch
        self._queue = []
        # Whether the batch loop runs, and its Deferred while it waits for
        # the store; a flag apart, since a store that answers at once
        # finishes the loop before its Deferred could be kept.
        self._running = False
        self._writing = None

    def submit(self, work, *args):
        """
        Run C{work(connection, *args)} in the next batch.

        @return: a Deferred firing with its result once committed, or
            failing with its exception (or the transaction's).
        """
        d = defer.Deferred()
        self._enqueue((work, args, None, d))
        return d

    def submit_then(self, done, context, work, *args):
        """
        Run C{work(connection, *args)} in the next batch, then call
        C{done(outcome, context)} once committed: the outcome is its result,
        or a L{Failure} (its exception, or the transaction's).  An exception
        from C{done} is logged and costs nothing else.
        """
        self._enqueue((work, args, done, context))

    def _enqueue(self, entry):
        self._queue.append(entry)
        if not self._running:
            self._running = True
            writing = self._write()
            if self._running:
                self._writing = writing

    def idle(self):
        """Fires once everything submitted so far is written."""
        if not self._running:
            return defer.succeed(None)
        d = defer.Deferred()

        def written(result):
            d.callback(None)
            return result

        self._writing.addBoth(written)
        return d

    @defer.inlineCallbacks
    def _write(self):
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch:]
                try:
                    outcomes = yield self._store.transaction(
                        self._run_batch, [(work, args) for work, args, _, _ in batch]
                    )
                except Exception:
                    outcomes = [Failure()] * len(batch)
                for (_, _, done, context), outcome in zip(batch, outcomes):
                    if done is None:  # context is submit's Deferred
                        if isinstance(outcome, Failure):
                            context.errback(outcome)
                        else:
                            context.callback(outcome)
                        continue
                    try:
                        done(outcome, context)
                    except Exception:
                        _log.failure("group commit: the caller's function failed on an outcome")
        finally:
            self._running = False
            self._writing = None
