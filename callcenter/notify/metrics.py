"""
The notify subsystem on the server's Prometheus registry: every attempt's
outcome per channel, receipts, and how many messages wait.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge


class NotifyMetrics:
    """
    C{callcenter_notify_attempts_total{channel, outcome}} (sent, queued: a
    failed attempt to retry, dead), C{callcenter_notify_receipts_total{
    channel, outcome}} (delivered, failed) and the gauges of messages
    waiting in each channel's worker and in flight at its peer.
    """

    def __init__(self, registry=None):
        self.registry = CollectorRegistry() if registry is None else registry
        self.attempts = Counter(
            "callcenter_notify_attempts",
            "Attempts to send a message, by channel and outcome (sent, queued: failed and to be retried, dead).",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.receipts = Counter(
            "callcenter_notify_receipts",
            "Delivery receipts recorded, by channel and outcome (delivered, failed, unknown: not a message of ours).",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self._children = {}

    def outcome(self, channel, state):
        key = (channel, state)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.attempts.labels(channel, state)
        child.inc()

    def receipt(self, channel, outcome):
        self.receipts.labels(channel, outcome).inc()

    def watch(self, workers):
        """Gauges read from the running workers at each scrape."""
        waiting = Gauge("callcenter_notify_waiting", "Messages waiting in a channel's worker (due or not).",
                        ["channel"], registry=self.registry)
        in_flight = Gauge("callcenter_notify_in_flight", "Messages handed to a channel's peer, not yet answered.",
                          ["channel"], registry=self.registry)
        for channel, worker in workers.items():
            waiting.labels(channel).set_function(lambda w=worker: w.waiting)
            in_flight.labels(channel).set_function(lambda w=worker: w.in_flight)
