"""
Limits on the packet path: each NAS's request rate, and how often a kind of
dropped packet is logged (a flood of garbage must not become a flood of log
lines).  Both run on a clock, so tests drive them with
L{twisted.internet.task.Clock}.
"""


class ClientRateLimiter:
    """
    A token bucket per client (L{callcenter.radius.clients.RadiusClient}):
    C{client.rate} requests a second, C{client.burst} at once.  Memory is
    one small list per configured client.
    """

    def __init__(self, clock):
        self._clock = clock
        self._buckets = {}  # client name -> [tokens, refilled at]

    def admit(self, client):
        now = self._clock.seconds()
        bucket = self._buckets.get(client.name)
        if bucket is None:
            bucket = self._buckets[client.name] = [float(client.burst), now]
        tokens = bucket[0] + max(0.0, now - bucket[1]) * client.rate  # a wall clock may step back
        bucket[1] = now
        if tokens > client.burst:
            tokens = float(client.burst)
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True


class LogThrottle:
    """
    At most C{burst} log lines per C{interval} seconds for each kind of
    event; the first line let through after a quiet spell says how many were
    held back, so nothing is silently lost (the counters have every one).
    """

    def __init__(self, clock, interval=10.0, burst=5):
        self._clock = clock
        self._interval = interval
        self._burst = burst
        self._kinds = {}  # kind -> [window start, lines in window, suppressed]

    def admit(self, kind):
        """
        None if this event must not be logged; else how many events of
        this kind were not logged since the last line.
        """
        now = self._clock.seconds()
        state = self._kinds.get(kind)
        if state is None:
            self._kinds[kind] = [now, 1, 0]
            return 0
        if now - state[0] >= self._interval or now < state[0]:
            suppressed = state[2]
            state[:] = [now, 1, 0]
            return suppressed
        if state[1] < self._burst:
            state[1] += 1
            suppressed, state[2] = state[2], 0
            return suppressed
        state[2] += 1
        return None
