"""/health and /metrics, in memory (treq's StubTreq against the Klein app)."""

import pytest_twisted
from prometheus_client import CONTENT_TYPE_LATEST
from treq.testing import StubTreq
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface import implementer

from callcenter.health import FAILING, OK, Health, HealthRegistry
from callcenter.interfaces import IHealthCheck
from callcenter.metrics import Metrics
from callcenter.web.operations import OperationsApp
from outcomes import results_of


def running(service):
    service.startService()
    return service


@implementer(IHealthCheck)
class Reporting(Service):
    def __init__(self, answer):
        self.answer = answer

    def check_health(self):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def client(*services, clock=None):
    metrics = Metrics()
    registry = HealthRegistry(metrics, clock or Clock(), timeout=5.0)
    for name, service in services:
        registry.register(name, service)
    app = OperationsApp(registry, metrics, "node-a")
    return StubTreq(app.app.resource()), metrics


@pytest_twisted.inlineCallbacks
def test_health_is_ok_when_every_subsystem_is():
    treq, metrics = client(
        ("storage", running(Reporting(Health(OK, {"dialect": "sqlite"})))),
        ("web", running(Service())),
    )
    response = yield treq.get("http://x/health")
    assert response.code == 200
    assert response.headers.getRawHeaders("Content-Type") == ["application/json"]
    body = yield response.json()
    assert body["status"] == "ok"
    assert body["node"] == "node-a"
    assert body["subsystems"] == {
        "storage": {"state": "ok", "dialect": "sqlite"},
        "web": {"state": "ok"},
    }
    assert metrics.registry.get_sample_value("callcenter_subsystem_up", {"subsystem": "web"}) == 1


@pytest_twisted.inlineCallbacks
def test_health_is_503_when_a_subsystem_fails_or_is_stopped():
    treq, metrics = client(
        ("ivr", running(Reporting(Health(FAILING, {"error": "no prompts"})))),
        ("sip", running(Reporting(RuntimeError("boom")))),
        ("fax", Service()),
        ("web", running(Service())),
    )
    response = yield treq.get("http://x/health")
    assert response.code == 503
    body = yield response.json()
    assert body["status"] == "failing"
    assert body["subsystems"] == {
        "ivr": {"state": "failing", "error": "no prompts"},
        "sip": {"state": "failing", "error": "boom"},
        "fax": {"state": "stopped"},
        "web": {"state": "ok"},
    }
    assert metrics.registry.get_sample_value("callcenter_subsystem_up", {"subsystem": "sip"}) == 0


def test_health_answers_even_when_a_check_hangs():
    clock = Clock()
    treq, _ = client(
        ("stuck", running(Reporting(defer.Deferred()))),
        ("web", running(Service())),
        clock=clock,
    )
    pending = results_of(treq.get("http://x/health"))
    clock.advance(4.9)
    treq.flush()
    assert pending == []
    clock.advance(0.1)
    treq.flush()
    [response] = pending
    assert response.code == 503
    [body] = results_of(response.json())
    assert body["subsystems"]["stuck"] == {"state": "failing", "error": "no answer within 5s"}
    assert body["subsystems"]["web"] == {"state": "ok"}


@pytest_twisted.inlineCallbacks
def test_metrics_are_prometheus_text():
    treq, metrics = client(("web", running(Service())))
    metrics.events_published.labels("test.topic").inc(3)
    response = yield treq.get("http://x/metrics")
    assert response.code == 200
    assert response.headers.getRawHeaders("Content-Type") == [CONTENT_TYPE_LATEST]
    text = yield response.text()
    assert 'callcenter_events_published_total{topic="test.topic"} 3.0' in text
    assert "process_cpu_seconds_total" in text


@pytest_twisted.inlineCallbacks
def test_only_get_is_allowed():
    treq, _ = client(("web", running(Service())))
    response = yield treq.post("http://x/health")
    assert response.code == 405
