"""
The HTTP site: every request gets a correlation id, and the access log is
structured (one event per request, carrying that id as C{cid}).
"""

import re
import time

from twisted.logger import Logger
from twisted.web.server import Site

from callcenter.log import new_correlation_id

# A caller (a load balancer, the portal) may send its own id; accept only a
# short token so that nobody can inject text into our logs through it.
_acceptable_id = re.compile(r"[A-Za-z0-9._-]{1,64}")

# Module level: a Logger on a class takes the class's name as its namespace.
access_log = Logger(namespace="callcenter.web.access")


class CorrelatedSite(Site):
    displayTracebacks = False

    def getResourceFor(self, request):
        given = request.getHeader("x-request-id")
        cid = given if given and _acceptable_id.fullmatch(given) else new_correlation_id()
        request.correlation_id = cid
        request.started = time.monotonic()
        request.setHeader("X-Request-Id", cid)
        return super().getResourceFor(request)

    def log(self, request):
        started = getattr(request, "started", None)
        access_log.info(
            "{client} {method} {uri} {code} {length} bytes {ms} ms",
            client=request.getClientAddress().host if request.getClientAddress() else "-",
            method=request.method.decode("ascii", "replace"),
            uri=request.uri.decode("ascii", "replace"),
            code=request.code,
            length=request.sentLength,
            ms=round((time.monotonic() - started) * 1000, 1) if started else None,
            cid=getattr(request, "correlation_id", None),
        )
