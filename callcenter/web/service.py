"""Wiring of the web subsystem."""

from twisted.application.service import MultiService
from twisted.web.resource import Resource

from callcenter.interfaces import IWebAPI
from callcenter.listeners import stream_listener
from callcenter.web.operations import OperationsApp
from callcenter.web.site import CorrelatedSite

# What the operations app serves: no IWebAPI can take these paths over.
OPERATIONS_PATHS = (b"health", b"metrics")


class WebRoot(Resource):
    """
    The site's root: each L{IWebAPI} provided in C{components} under its
    prefix, the operations app (C{/health}, C{/metrics}) for everything
    else.

    Providers are looked up at each request, not when this is built:
    subsystems are built in name order, so trading provides its API after
    web exists.
    """

    def __init__(self, components, operations):
        super().__init__()
        self._components = components
        self._operations = operations
        self._resources = {}

    def _mounts(self):
        mounts = []
        for api in self._components.all(IWebAPI):
            segments = api.prefix.strip("/").encode("utf-8").split(b"/")
            if segments[0] not in OPERATIONS_PATHS:
                mounts.append((segments, api))
        mounts.sort(key=lambda mount: -len(mount[0]))
        return mounts

    def _resource_of(self, api):
        resource = self._resources.get(api)
        if resource is None:
            resource = self._resources[api] = api.resource()
        return resource

    def getChild(self, name, request):
        # Traversal has moved C{name} from postpath to prepath already.
        path = [name] + request.postpath
        for segments, api in self._mounts():
            if path[: len(segments)] == segments:
                taken = len(segments) - 1
                request.prepath.extend(request.postpath[:taken])
                del request.postpath[:taken]
                return self._resource_of(api)
        # The operations app routes from the root (it is a leaf, a Klein
        # resource): give it back the segment traversal took.
        request.postpath.insert(0, request.prepath.pop())
        return self._operations

    def render(self, request):
        return self._operations.render(request)


class WebService(MultiService):
    def __init__(self, config, context):
        super().__init__()
        self.operations = OperationsApp(context.health, context.metrics, context.node)
        self.root = WebRoot(context.components, self.operations.app.resource())
        site = CorrelatedSite(self.root)
        stream_listener(context, "web", "listen", config.listen, site, "HTTP").setServiceParent(self)
