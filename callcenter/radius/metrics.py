"""
Counters of the RADIUS packet path, on the server's Prometheus registry:
every datagram ends in exactly one outcome, answered or dropped, so a
silent drop (unknown client, wrong secret, flood) is still visible.
"""

from prometheus_client import CollectorRegistry, Counter

# Outcomes of a received datagram.
ACCEPT = "accept"
REJECT = "reject"
ACCOUNTED = "accounted"
STATUS = "status"
DUPLICATE_ANSWERED = "duplicate_answered"
DUPLICATE_IN_PROGRESS = "duplicate_in_progress"
UNKNOWN_CLIENT = "unknown_client"
RATE_LIMITED = "rate_limited"
MALFORMED = "malformed"
UNKNOWN_CODE = "unknown_code"
BAD_AUTHENTICATOR = "bad_authenticator"
MISSING_MESSAGE_AUTHENTICATOR = "missing_message_authenticator"
POLICY_FAILED = "policy_failed"
SINK_FAILED = "sink_failed"
SEND_FAILED = "send_failed"
ERROR = "error"


class RadiusMetrics:
    """
    C{callcenter_radius_packets_total{listener, client, outcome}}, and the
    outcomes of Disconnect/CoA requests.  C{client} is the configured NAS
    name, empty for unknown sources (so spoofed floods add no series).
    Labelled children are kept, since C{labels()} costs more than C{inc()}
    on a path taking tens of thousands of packets a second.
    """

    def __init__(self, registry=None):
        self.registry = CollectorRegistry() if registry is None else registry
        self.packets = Counter(
            "callcenter_radius_packets",
            "RADIUS datagrams received, by listener (auth, acct), NAS client and outcome "
            "(accept, reject, accounted, status, duplicate_answered, or why it was dropped).",
            ["listener", "client", "outcome"],
            registry=self.registry,
        )
        self.dynamic_authorization = Counter(
            "callcenter_radius_dynamic_authorization",
            "Disconnect- and CoA-Requests sent, by NAS client, kind (disconnect, coa) and "
            "outcome (ack, nak, timeout).",
            ["client", "kind", "outcome"],
            registry=self.registry,
        )
        self._children = {}

    def count(self, listener, client, outcome):
        key = (listener, client, outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.packets.labels(listener, client, outcome)
        child.inc()

    def value(self, listener, outcome, client=None):
        """How many datagrams ended in C{outcome} (for all clients unless one is named)."""
        total = 0.0
        for metric in self.packets.collect():
            for sample in metric.samples:
                labels = sample.labels
                if (
                    sample.name.endswith("_total")
                    and labels["listener"] == listener
                    and labels["outcome"] == outcome
                    and (client is None or labels["client"] == client)
                ):
                    total += sample.value
        return total
