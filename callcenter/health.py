"""What ``GET /health`` reports: each subsystem's state."""

from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.logger import Logger

from callcenter.interfaces import IHealthCheck
from callcenter.timing import answer_within

OK = "ok"
FAILING = "failing"
STOPPED = "stopped"


@dataclass(frozen=True)
class Health:
    state: str
    detail: dict = field(default_factory=dict)

    def as_json(self):
        return {"state": self.state, **self.detail}


class HealthRegistry:
    """
    Asks every registered service how it is.  A running service that gives
    no IHealthCheck is ok; one whose check raises, or does not answer within
    C{timeout} seconds, is failing: a monitor asking /health must always get
    an answer, most of all when something hangs.
    """

    log = Logger()

    def __init__(self, metrics, clock, timeout=5.0):
        self._services = {}
        self._metrics = metrics
        self._clock = clock
        self._timeout = timeout

    def register(self, name, service):
        self._services[name] = service

    @defer.inlineCallbacks
    def report(self):
        names = sorted(self._services)
        results = yield defer.gatherResults([self._check(n) for n in names])
        subsystems = dict(zip(names, results))
        for name, health in subsystems.items():
            self._metrics.subsystem_up.labels(name).set(1 if health.state == OK else 0)
        overall = OK if all(h.state == OK for h in subsystems.values()) else FAILING
        return overall, subsystems

    def _check(self, name):
        service = self._services[name]
        if not service.running:
            return defer.succeed(Health(STOPPED))
        check = IHealthCheck(service, None)
        if check is None:
            return defer.succeed(Health(OK))
        d = defer.maybeDeferred(check.check_health)

        def failed(failure):
            self.log.failure("health check of {subsystem} failed", failure, subsystem=name)
            return Health(FAILING, {"error": failure.getErrorMessage()})

        d.addErrback(failed)
        silent = Health(FAILING, {"error": f"no answer within {self._timeout:g}s"})
        return answer_within(self._clock, self._timeout, d, silent)
