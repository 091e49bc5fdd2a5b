"""Wiring of the web subsystem."""

from twisted.application.service import MultiService

from callcenter.listeners import stream_listener
from callcenter.web.operations import OperationsApp
from callcenter.web.site import CorrelatedSite


class WebService(MultiService):
    def __init__(self, config, context):
        super().__init__()
        self.operations = OperationsApp(context.health, context.metrics, context.node)
        site = CorrelatedSite(self.operations.app.resource())
        stream_listener(context, "web", "listen", config.listen, site, "HTTP").setServiceParent(self)
