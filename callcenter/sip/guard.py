"""
Protection against SIP scanners and floods, which reach every public PBX
daily: a request rate limit per source, and a block on sources that keep
failing authentication.  Throttled and blocked requests are dropped
without an answer, since any answer helps a scanner map us.
"""

import collections
import ipaddress

OK = "ok"
THROTTLE = "throttle"
BLOCK = "block"

# One IPv6 end site gets at least a whole /64 (RFC 6177):
# limiting per address would give a single scanner 2**64 fresh buckets.
_IPV6_PREFIX = 64


class _Source:
    __slots__ = ("failures", "last_seen", "refilled_at", "tokens")

    def __init__(self, burst, now, max_failures):
        self.tokens = float(burst)
        self.refilled_at = now
        self.last_seen = now
        self.failures = collections.deque(maxlen=max_failures)


class SourceGuard:
    """
    Per source: a token bucket of C{rate} requests a second holding at most
    C{burst}, and the times of the last authentication failures.  When
    C{max_failures} fall within C{failure_window} seconds, the source is
    blocked for C{block_for} seconds.  Sources in C{allow} (networks, such
    as the carrier's trunk and our own proxy) are never limited or blocked.

    Memory is bounded whatever the traffic, spoofed sources included: at
    most C{max_sources} tracked sources, least recently seen dropped first,
    and at most C{max_blocked} blocks, the oldest lifted first.  A source
    idle long enough to have a full bucket and no failures in the window
    is forgotten early, which changes nothing it would be told.
    """

    def __init__(
        self,
        clock,
        max_failures=5,
        failure_window=60,
        block_for=600,
        rate=50,
        burst=100,
        allow=(),
        max_sources=65_536,
        max_blocked=65_536,
    ):
        self._clock = clock
        self._max_failures = max_failures
        self._failure_window = failure_window
        self._block_for = block_for
        self._rate = rate
        self._burst = burst
        self._allow = tuple(ipaddress.ip_network(network, strict=False) for network in allow)
        self._max_sources = max_sources
        self._max_blocked = max_blocked
        self._idle_after = max(burst / rate, failure_window)
        self._sources = collections.OrderedDict()  # least recently seen first
        self._blocked = {}  # key -> unblock time; insertion order is expiry order
        self._identities = {}  # source address text -> (allowed, key)

    def admit(self, source_ip):
        """C{"ok"}, C{"throttle"} (over its rate) or C{"block"} for one request."""
        allowed, key = self._identify(source_ip)
        now = self._clock.seconds()
        if allowed:
            return OK
        self._lift_expired_blocks(now)
        if key in self._blocked:
            return BLOCK
        source = self._touch(key, now)
        elapsed = max(0.0, now - source.refilled_at)  # a wall clock may step back
        source.tokens = min(float(self._burst), source.tokens + elapsed * self._rate)
        source.refilled_at = now
        if source.tokens < 1:
            return THROTTLE
        source.tokens -= 1
        return OK

    def auth_failed(self, source_ip):
        """
        Count a failed authentication; True when this one blocks the
        source, so the caller logs the block once.
        """
        allowed, key = self._identify(source_ip)
        now = self._clock.seconds()
        self._lift_expired_blocks(now)
        if key in self._blocked or allowed:
            return False
        failures = self._touch(key, now).failures
        failures.append(now)
        if len(failures) < self._max_failures or now - failures[0] > self._failure_window:
            return False
        del self._sources[key]
        if len(self._blocked) >= self._max_blocked:
            del self._blocked[next(iter(self._blocked))]
        self._blocked[key] = now + self._block_for
        return True

    def auth_succeeded(self, source_ip):
        """A success forgives the failures before it."""
        _, key = self._identify(source_ip)
        source = self._sources.get(key)
        if source is not None:
            source.failures.clear()

    def blocked_sources(self):
        """C{{source: unblock time}}; a source is an IPv4 address or an IPv6 /64."""
        self._lift_expired_blocks(self._clock.seconds())
        return dict(self._blocked)

    def unblock(self, source):
        """Lift the block on an address or a L{blocked_sources} key; True if there was one."""
        try:
            _, key = self._identify(source)
        except ValueError:
            key = str(ipaddress.ip_network(source, strict=False))
        return self._blocked.pop(key, None) is not None

    def __len__(self):
        """How many sources are tracked, blocked ones included."""
        return len(self._sources) + len(self._blocked)

    def _identify(self, source_ip):
        """
        C{(allowed, key)}: whether C{source_ip} is in an allowed network,
        and what it is tracked as.  Three times per authenticated request:
        remembered by the address text as it came (as many as sources are
        tracked, then anew).
        """
        known = self._identities.get(source_ip)
        if known is not None:
            return known
        known = self._identify_anew(source_ip)
        if len(self._identities) >= self._max_sources:
            self._identities.clear()
        self._identities[source_ip] = known
        return known

    def _identify_anew(self, source_ip):
        address = ipaddress.ip_address(source_ip)
        if address.version == 6 and address.ipv4_mapped is not None:
            # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
            address = address.ipv4_mapped
        if address.version == 6:
            key = str(ipaddress.ip_network((address, _IPV6_PREFIX), strict=False))
        else:
            key = str(address)
        return self._allowed(address), key

    def _allowed(self, address):
        return any(address in network for network in self._allow)

    def _touch(self, key, now):
        """The state of C{key}, now its most recently seen, created if new."""
        self._forget_idle(now)
        source = self._sources.get(key)
        if source is None:
            if len(self._sources) >= self._max_sources:
                self._sources.popitem(last=False)
            source = self._sources[key] = _Source(self._burst, now, self._max_failures)
        else:
            self._sources.move_to_end(key)
        source.last_seen = now
        return source

    def _forget_idle(self, now):
        # A couple per call keeps the cost constant and still outpaces arrivals.
        for _ in range(2):
            if not self._sources:
                return
            key, oldest = next(iter(self._sources.items()))
            if now - oldest.last_seen <= self._idle_after:
                return
            del self._sources[key]

    def _lift_expired_blocks(self, now):
        while self._blocked:
            key, until = next(iter(self._blocked.items()))
            if until > now:
                return
            del self._blocked[key]
