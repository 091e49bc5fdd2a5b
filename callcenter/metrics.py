"""
Prometheus metrics.  One registry per server (not the library's global one),
so two servers in one test process do not collide; subsystems add their own
metrics to C{Metrics.registry}.
"""

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)


class Metrics:
    def __init__(self, registry=None):
        if registry is None:
            registry = CollectorRegistry()
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                registry.register(collector)
        self.registry = registry
        self.subsystem_up = Gauge(
            "callcenter_subsystem_up",
            "1 while a subsystem's last health check said ok.",
            ["subsystem"],
            registry=registry,
        )
        self.events_published = Counter(
            "callcenter_events_published",
            "Events published on the event bus.",
            ["topic"],
            registry=registry,
        )
        self.event_handler_errors = Counter(
            "callcenter_event_handler_errors",
            "Event subscribers that failed on an event.",
            ["subscriber", "topic"],
            registry=registry,
        )
        self.store_transactions = Counter(
            "callcenter_store_transactions",
            "Database transactions, by outcome (committed, failed, refused).",
            ["outcome"],
            registry=registry,
        )
        self.store_seconds = Histogram(
            "callcenter_store_transaction_seconds",
            "Time from asking for a transaction to its commit, queueing included.",
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.store_inflight = Gauge(
            "callcenter_store_inflight",
            "Database transactions queued or running.",
            registry=registry,
        )
