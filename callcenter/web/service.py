"""Wiring of the web subsystem."""

from twisted.application.service import MultiService
from twisted.web.server import Site

from callcenter.listeners import stream_listener
from callcenter.web.operations import OperationsApp


class WebService(MultiService):
    def __init__(self, config, context):
        super().__init__()
        self.operations = OperationsApp(context.health, context.metrics, context.node)
        site = Site(self.operations.app.resource())
        site.displayTracebacks = False
        stream_listener(context, "web", "listen", config.listen, site, "HTTP").setServiceParent(self)
