"""What every subsystem is given: shared objects, never globals."""

import socket
from dataclasses import dataclass
from typing import Any

from callcenter.config import CallcenterConfig
from callcenter.health import HealthRegistry
from callcenter.metrics import Metrics


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

    @property
    def node(self):
        return self.config.server.node or socket.gethostname()
