"""
What every caller of the voice information service reads on each round
of its menus: the categories, and a category's current bulletins.  They
change a few times a day and are read twice a round by every caller, so
they are kept for a couple of seconds: with hundreds of callers that is
one store read a category per interval instead of one per key press (and
no thread hand-off on the path from a key to the bulletin it asks for).
A change made elsewhere (the upload API, the CLI, another node) shows
within C{ttl} seconds.
"""

from twisted.internet import defer

from callcenter.ivr import bulletins as data


class Listings:
    def __init__(self, store, clock, ttl=2.0):
        self._store = store
        self._clock = clock
        self._ttl = ttl
        self._entries = {}  # key -> (value, until)
        self._reading = {}  # key -> Deferreds waiting for the read in progress

    def categories(self):
        return self._get(("categories",), data.categories)

    def current_bulletins(self, category, now):
        return self._get(("bulletins", category), data.current_bulletins, category, now)

    def changed(self):
        """Forget everything: this process has just published or withdrawn something."""
        self._entries.clear()

    def _get(self, key, work, *args):
        entry = self._entries.get(key)
        if entry is not None and entry[1] > self._clock.seconds():
            return defer.succeed(entry[0])
        waiting = self._reading.get(key)
        d = defer.Deferred()
        if waiting is not None:
            # Callers asking while a read is under way share it.
            waiting.append(d)
            return d
        self._reading[key] = [d]
        read = self._store.transaction(work, *args)

        def fired(value):
            self._entries[key] = (value, self._clock.seconds() + self._ttl)
            for waiter in self._reading.pop(key):
                waiter.callback(value)

        def failed(failure):
            for waiter in self._reading.pop(key):
                waiter.errback(failure)

        read.addCallbacks(fired, failed)
        return d
