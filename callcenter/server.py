"""
The root service: one process hosting the store and every enabled subsystem.
"""

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.logger import Logger

from callcenter.context import Context
from callcenter.events import InProcessEventBus
from callcenter.health import HealthRegistry
from callcenter.metrics import Metrics
from callcenter.store.service import StoreService
from callcenter.timing import within


class CallcenterService(MultiService):
    """
    Starts the store first and stops it last: subsystems may write while
    they shut down, and nothing they acknowledged may be lost.
    """

    log = Logger()

    def __init__(self, config, plugins, reactor, clock=None):
        super().__init__()
        self.config = config
        clock = clock if clock is not None else reactor
        metrics = Metrics()
        self.store = StoreService(
            config.storage,
            reactor,
            metrics,
            shutdown_timeout=config.server.shutdown_timeout,
            where=config.where("storage", "url"),
            clock=clock,
        )
        self.store.setServiceParent(self)
        health = HealthRegistry(metrics, clock)
        health.register("storage", self.store)
        self.context = Context(
            reactor=reactor,
            clock=clock,
            config=config,
            store=self.store,
            bus=InProcessEventBus(metrics),
            metrics=metrics,
            health=health,
        )
        for name, section in sorted(config.subsystems.items()):
            service = plugins[name].makeService(section, self.context)
            service.setName(name)
            service.setServiceParent(self)
            health.register(name, service)

    def startService(self):
        super().startService()
        self.log.info(
            "callcenter node {node} started: {subsystems}",
            node=self.context.node,
            subsystems=", ".join(["storage", *sorted(self.config.subsystems)]),
        )

    def stopService(self):
        Service.stopService(self)
        timeout = self.config.server.shutdown_timeout
        subsystems = [s for s in reversed(list(self)) if s is not self.store]
        stopping = [
            defer.maybeDeferred(s.stopService).addErrback(self._stop_failed, s.name)
            for s in subsystems
        ]
        d = within(self.context.clock, timeout, defer.gatherResults(stopping))

        def subsystems_stopped(in_time):
            if not in_time:
                self.log.warn(
                    "subsystems still busy after {timeout}s; closing the store", timeout=timeout
                )
            return self.store.stopService()

        return d.addCallback(subsystems_stopped)

    def _stop_failed(self, failure, name):
        self.log.failure("stopping {subsystem} failed", failure, subsystem=name)
