"""``/health`` and ``/metrics``: what monitoring asks the server."""

import json

from klein import Klein
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from twisted.internet import defer

from callcenter import __version__
from callcenter.health import OK


class OperationsApp:
    app = Klein()

    def __init__(self, health, metrics, node):
        self._health = health
        self._metrics = metrics
        self._node = node

    @app.route("/health", methods=["GET"])
    @defer.inlineCallbacks
    def health(self, request):
        overall, subsystems = yield self._health.report()
        request.setResponseCode(200 if overall == OK else 503)
        request.setHeader("Content-Type", "application/json")
        request.setHeader("Cache-Control", "no-store")
        body = {
            "status": overall,
            "node": self._node,
            "version": __version__,
            "subsystems": {name: h.as_json() for name, h in subsystems.items()},
        }
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request):
        request.setHeader("Content-Type", CONTENT_TYPE_LATEST)
        return generate_latest(self._metrics.registry)
