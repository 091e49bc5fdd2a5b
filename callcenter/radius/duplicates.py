"""
The duplicate-request cache of RFC 5080 §2.2.2: a NAS that retransmits
(same source address and port, same Identifier, same Request
Authenticator) gets the answer it was given, without the policy or the
accounting store being asked twice.  Only requests that passed every check
are cached, so a forged "retransmission" can only fetch, to the address the
original came from, the answer already sent there.
A retransmission of a request still being decided is dropped; the answer
goes out once, when it is decided.
"""

import collections

PENDING = object()


class DuplicateCache:
    """
    Requests seen in the last C{window} seconds, at most C{max_entries}
    (the oldest forgotten first, pending or not: under a flood the window
    shrinks, memory does not grow).  Expiry follows arrival order, so it
    costs O(1) per request.
    """

    def __init__(self, clock, window=30.0, max_entries=131072):
        self._clock = clock
        self._window = window
        self._max_entries = max_entries
        self._entries = {}  # key -> [expires at, PENDING or the response datagram]
        self._order = collections.deque()  # (expires at, key), in arrival order

    def __len__(self):
        return len(self._entries)

    def get(self, key):
        """None for a new request; L{PENDING}; or the response to resend."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock.seconds():
            return None
        return entry[1]

    def begin(self, key):
        """A new request is being decided."""
        now = self._clock.seconds()
        order = self._order
        entries = self._entries
        while order and (order[0][0] <= now or len(entries) >= self._max_entries):
            expires, old = order.popleft()
            entry = entries.get(old)
            if entry is not None and entry[0] == expires:
                del entries[old]
        expires = now + self._window
        entries[key] = [expires, PENDING]
        order.append((expires, key))

    def complete(self, key, response):
        """Remember the answer sent, for retransmissions of the request."""
        entry = self._entries.get(key)
        if entry is not None:
            entry[1] = response

    def forget(self, key):
        """The request got no answer (the NAS will retry): the retry is a new request."""
        self._entries.pop(key, None)
