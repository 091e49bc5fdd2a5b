"""
The internet accounts as the access policy reads them: a cache in front of
the store, so that an Access-Request for a known user costs no thread and
no transaction.

How current it is:

- what this process changes is current at once: the policy (failed
  logins, locks) and the accounting sink (sessions online, usage) call
  L{AccountDirectory.forget} once their transaction has committed, and so
  must anything else in the server that changes an account (the HTTP API);
- what another process changes (C{callcenter internet disable} from a
  shell, another server) is seen within C{ttl} seconds, when the cached
  state expires and is read again.

States are read in batches: the users missed while one read is running
are read together by the next, so a burst of new users costs a few
transactions, not one each.
"""

from twisted.internet import defer
from twisted.python.failure import Failure

from callcenter.radius.accounts import access_states, month_of

__all__ = ["NOT_CACHED", "AccountDirectory", "Expiring"]

# What is not cached, or no longer (None is a value: an unknown user is
# cached too).
NOT_CACHED = object()
# Names per read: well below the bound parameters SQLite allows.
_MOST_PER_READ = 500


class Expiring:
    """
    Values by key, each until its expiry on C{clock}; at most
    C{max_entries}: beyond, the expired are dropped, then the oldest tenth.
    """

    def __init__(self, clock, max_entries):
        self._clock = clock
        self._max_entries = max_entries
        self._entries = {}  # key -> (value, expiry)

    def __len__(self):
        return len(self._entries)

    def get(self, key):
        """The value, or L{NOT_CACHED} if there is none or it has expired."""
        entry = self._entries.get(key)
        if entry is None:
            return NOT_CACHED
        if entry[1] <= self._clock.seconds():
            del self._entries[key]
            return NOT_CACHED
        return entry[0]

    def put(self, key, value, ttl):
        entries = self._entries
        if len(entries) >= self._max_entries and key not in entries:
            now = self._clock.seconds()
            for expired in [k for k, (_, expiry) in entries.items() if expiry <= now]:
                del entries[expired]
            if len(entries) >= self._max_entries:
                for oldest in list(entries)[: max(1, self._max_entries // 10)]:
                    del entries[oldest]
        entries[key] = (value, self._clock.seconds() + ttl)

    def pop(self, key):
        self._entries.pop(key, None)

    def clear(self):
        self._entries.clear()


class AccountDirectory:
    """
    L{callcenter.radius.accounts.AccessState}s by user name.

    @param store: the L{callcenter.interfaces.IStore}.
    @param clock: L{twisted.internet.interfaces.IReactorTime}.
    @param ttl: seconds a state read from the store is used; 0 reads
        every time.
    @param max_entries: the most states kept; beyond it expired ones are
        dropped, then the oldest.
    """

    def __init__(self, store, clock, ttl=5.0, max_entries=200_000):
        self._store = store
        self._clock = clock
        self.ttl = ttl
        self._states = Expiring(clock, max_entries)
        self._queued = {}  # username -> Deferreds waiting for the next read
        self._reading = {}  # the same, for the read running now
        self._stale = set()  # read running now, but forgotten since it began
        self._running = False
        self._month = None
        self._month_ends = 0.0

    def month(self):
        """The quota month now ("2026-12"), recomputed only when a month ends."""
        now = self._clock.seconds()
        if now >= self._month_ends or self._month is None:
            self._month = month_of(now)
            # Read again in an hour if the month lasts that long (it then
            # lasts the whole hour), else in a second.
            self._month_ends = now + 3600 if month_of(now + 3600) == self._month else now + 1
        return self._month

    def cached(self, username):
        """The state of C{username} if cached and fresh (None: no such account), else L{NOT_CACHED}."""
        return self._states.get(username)

    def get(self, username):
        """A Deferred firing with the state of C{username}, read if not cached."""
        state = self.cached(username)
        if state is NOT_CACHED:
            return self.load(username)
        return defer.succeed(state)

    def load(self, username):
        """A Deferred firing with the state of C{username} read from the store (None: no account)."""
        d = defer.Deferred()
        if username in self._reading and username not in self._stale:
            self._reading[username].append(d)
        else:
            self._queued.setdefault(username, []).append(d)
            if not self._running:
                # Set here, not from _read's Deferred: a store that answers
                # at once would have finished before the assignment.
                self._running = True
                self._read()
        return d

    def forget(self, *usernames):
        """These users changed: read them again at their next request."""
        for username in usernames:
            self._states.pop(username)
            if username in self._reading:
                self._stale.add(username)

    def forget_all(self):
        self._states.clear()
        self._stale.update(self._reading)

    @defer.inlineCallbacks
    def _read(self):
        try:
            while self._queued:
                names = list(self._queued)[:_MOST_PER_READ]
                self._reading = {name: self._queued.pop(name) for name in names}
                self._stale = set()
                try:
                    states = yield self._store.transaction(access_states, names, self.month())
                except Exception:
                    failure = Failure()
                    for waiters in self._reading.values():
                        for d in waiters:
                            d.errback(failure)
                    continue
                reading, self._reading = self._reading, {}
                for name, waiters in reading.items():
                    state = states.get(name)
                    if name not in self._stale and self.ttl > 0:
                        self._states.put(name, state, self.ttl)
                    for d in waiters:
                        d.callback(state)
        finally:
            self._running = False
            self._reading = {}
