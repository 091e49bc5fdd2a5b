"""What every subsystem is given: shared objects, never globals."""

import socket
from dataclasses import dataclass, field
from typing import Any

from callcenter.config import CallcenterConfig
from callcenter.health import HealthRegistry
from callcenter.metrics import Metrics


class Components:
    """
    What subsystems offer each other, by interface: the trading service
    for the IVR and the web API, say.  A subsystem provides in
    C{makeService}; users look up when they start (or later), since
    subsystems are built in name order.
    """

    def __init__(self):
        self._provided = {}

    def provide(self, interface, component):
        if not interface.providedBy(component):
            raise TypeError(f"{component!r} does not provide {interface.__name__}")
        self._provided.setdefault(interface, []).append(component)

    def lookup(self, interface):
        """The component providing C{interface}, or None when no enabled subsystem offers it."""
        found = self._provided.get(interface)
        return found[0] if found else None

    def all(self, interface):
        return list(self._provided.get(interface, ()))


@dataclass(frozen=True)
class Context:
    reactor: Any
    # IReactorTime for timers; the reactor in production, a Clock in tests.
    clock: Any
    config: CallcenterConfig
    # IStore
    store: Any
    # IEventBus
    bus: Any
    metrics: Metrics
    health: HealthRegistry
    components: Components = field(default_factory=Components)

    @property
    def node(self):
        return self.config.server.node or socket.gethostname()
