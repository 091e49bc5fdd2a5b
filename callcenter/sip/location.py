"""
The location service (RFC 3261 §10): which contacts each extension has
registered, held in memory for the registrar and for routing calls, and
written to the database with group commit.

Every change is durable before the registrar answers 200 OK, as before;
what changes is that concurrent REGISTERs share one transaction.  While
one batch commits, the next fills up, so under load one commit (and its
fsync) carries hundreds of registrations, and when idle a registration
waits for a commit of its own only.  Reading never touches the database:
the memory copy is the one this process trusts, loaded at start.
"""

import functools
from dataclasses import dataclass
from operator import attrgetter

import sqlalchemy as sa
from twisted.internet import defer
from twisted.logger import Logger

from callcenter.store.schema import sip_bindings

# A commit costs about a millisecond of CPU however few rows it carries:
# waiting this long for company costs a phone nothing and, at a few
# hundred registrations a second, divides the commits by ten.
BATCH_WINDOW = 0.01

# After a failed commit, the changes nobody waits for any more are tried
# again this long after, if no new registration has carried them by then.
RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class Binding:
    aor: str
    contact: str
    expires_at: float
    call_id: str
    cseq: int
    source: str
    user_agent: str | None


_by_contact = attrgetter("contact")


def _load_live(connection, now):
    rows = connection.execute(sa.select(sip_bindings).where(sip_bindings.c.expires_at > now))
    return [Binding(**row._asdict()) for row in rows]


_COLUMNS = ("aor", "contact", "expires_at", "call_id", "cseq", "source", "user_agent")
_DELETE = "DELETE FROM sip_bindings WHERE aor = {p} AND contact = {p}"
# Rows per upsert statement: 128 * 7 parameters stay under the 999 that
# SQLite before 3.32 allows.
UPSERT_ROWS = 128


@functools.lru_cache(maxsize=2 * UPSERT_ROWS)
def _upsert(rows, placeholder):
    """INSERT of C{rows} rows at once, a binding that exists updated (both SQLite and PostgreSQL)."""
    row = "(" + ", ".join([placeholder] * len(_COLUMNS)) + ")"
    return (
        f"INSERT INTO sip_bindings ({', '.join(_COLUMNS)}) VALUES {', '.join([row] * rows)} "
        "ON CONFLICT (aor, contact) DO UPDATE SET "
        + ", ".join(f"{column} = excluded.{column}" for column in _COLUMNS[2:])
    )


def _write(connection, changes):
    """
    One batch: live bindings upserted, removed ones deleted.  Plain SQL on
    the driver's own cursor, in the transaction SQLAlchemy began (its
    executemany builds bind objects per row, and even exec_driver_sql an
    execution context per statement).

    The upsert is one statement for up to L{UPSERT_ROWS} bindings, not an
    executemany: the driver lets the GIL go around every statement it
    steps, and this runs on the store's thread while the reactor's holds
    the GIL, so each row of an executemany waited up to the interpreter's
    switch interval (5 ms) to get it back.  A batch's keys are distinct,
    as PostgreSQL needs for one ON CONFLICT statement.
    """
    placeholder = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    live = [
        (b.aor, b.contact, b.expires_at, b.call_id, b.cseq, b.source, b.user_agent)
        for b in changes.values()
        if b is not None
    ]
    gone = [key for key, binding in changes.items() if binding is None]
    cursor = connection.connection.cursor()
    try:
        for start in range(0, len(live), UPSERT_ROWS):
            rows = live[start : start + UPSERT_ROWS]
            cursor.execute(_upsert(len(rows), placeholder), [value for row in rows for value in row])
        if gone:
            cursor.executemany(_DELETE.format(p=placeholder), gone)
    finally:
        cursor.close()


def _purge(connection, now):
    return connection.execute(sip_bindings.delete().where(sip_bindings.c.expires_at <= now)).rowcount


class LocationService:
    log = Logger()

    def __init__(self, store, clock, batch_window=BATCH_WINDOW):
        """
        @param batch_window: seconds a change waits for others to share its
            commit when none is in progress (0: commit at once).
        """
        self._store = store
        self._clock = clock
        self._batch_window = batch_window
        self._scheduled = None
        self._by_aor = {}
        self._loaded = False
        self._waiting_for_load = []
        # Changes not yet handed to a transaction, and who waits for them.
        self._pending = {}
        self._pending_waiters = []
        self._flushing = None

    def load(self):
        """Read the live bindings (at start); registrations wait until this is done."""

        def loaded(bindings):
            for binding in bindings:
                self._by_aor.setdefault(binding.aor, {})[binding.contact] = binding
            self._loaded = True
            waiting, self._waiting_for_load = self._waiting_for_load, []
            for d in waiting:
                d.callback(None)
            return len(bindings)

        return self._store.transaction(_load_live, self._clock.seconds()).addCallback(loaded)

    @property
    def loaded(self):
        """Whether L{load} has read the bindings (registrations may proceed)."""
        return self._loaded

    def when_loaded(self):
        if self._loaded:
            return defer.succeed(None)
        d = defer.Deferred()
        self._waiting_for_load.append(d)
        return d

    def registered_count(self):
        """How many extensions have a binding (expired ones count until the purge)."""
        return len(self._by_aor)

    def current(self, aor):
        """The live bindings of C{aor}, by contact."""
        contacts = self._by_aor.get(aor)
        if not contacts:
            return []
        now = self._clock.seconds()
        if len(contacts) == 1:  # Most phones: nothing to sort.
            return [b for b in contacts.values() if b.expires_at > now]
        return sorted((b for b in contacts.values() if b.expires_at > now), key=_by_contact)

    def change(self, aor, updates):
        """
        Apply C{updates} (contact -> L{Binding}, or None to remove) to
        C{aor}; returns a Deferred that fires once they are committed.  The
        memory copy changes at once, so the next REGISTER already sees it.
        """
        contacts = self._by_aor.setdefault(aor, {})
        for contact, binding in updates.items():
            if binding is None:
                contacts.pop(contact, None)
            else:
                contacts[contact] = binding
            self._pending[(aor, contact)] = binding
        if not contacts:
            del self._by_aor[aor]
        done = defer.Deferred()
        self._pending_waiters.append(done)
        if self._flushing is None and self._scheduled is None:
            if self._batch_window:
                self._scheduled = self._clock.callLater(self._batch_window, self._flush)
            else:
                self._flush()
        return done

    def _flush(self):
        if self._scheduled is not None:
            if self._scheduled.active():
                self._scheduled.cancel()
            self._scheduled = None
        changes, self._pending = self._pending, {}
        waiters, self._pending_waiters = self._pending_waiters, []

        def committed(_):
            for d in waiters:
                d.callback(None)

        def failed(failure):
            # Not lost: the changes go again with the next batch, while the
            # phones that waited are told to retry.
            self.log.failure("writing {count} registrations failed", failure, count=len(changes))
            for key, binding in changes.items():
                self._pending.setdefault(key, binding)
            for d in waiters:
                d.errback(failure)

        def next_batch(_):
            self._flushing = None
            if self._pending_waiters:
                # Under load too, a batch gathers for the window from the
                # start of the one before: a commit costs a few hundred
                # microseconds of CPU (its fsync above all) however few
                # rows it carries, and on a fast disk batches that follow
                # each other at once carried one or two.
                delay = started + self._batch_window - self._clock.seconds()
                if delay > 0:
                    self._scheduled = self._clock.callLater(delay, self._flush)
                else:
                    self._flush()
            elif self._pending:
                self._clock.callLater(RETRY_SECONDS, self.flushed)

        started = self._clock.seconds()
        self._flushing = self._store.transaction(_write, changes)
        self._flushing.addCallbacks(committed, failed).addBoth(next_batch)

    def flushed(self):
        """A Deferred that fires once every change so far is committed (or failed)."""
        if self._flushing is None and not self._pending_waiters and not self._pending:
            return defer.succeed(None)
        d = defer.Deferred()
        self._pending_waiters.append(d)
        if self._flushing is None:
            self._flush()
        return d.addErrback(lambda _: None)

    def purge_expired(self):
        """Forget lapsed bindings, here and in the database; fires with the rows deleted."""
        now = self._clock.seconds()
        for aor in list(self._by_aor):
            contacts = self._by_aor[aor]
            for contact in [c for c, b in contacts.items() if b.expires_at <= now]:
                del contacts[contact]
            if not contacts:
                del self._by_aor[aor]
        return self._store.transaction(_purge, now)
