"""
The transaction user: what the server does with each request.  For now a
registrar that also answers OPTIONS (phones and proxies ping with it);
calls, transfers and the rest are added as the telephony issue proceeds.
"""

from twisted.logger import Logger

from callcenter.sip.message import make_response
from callcenter.sip.transaction import ServerUser

ALLOWED = "REGISTER, OPTIONS"


class RequestDispatcher(ServerUser):
    log = Logger()

    def __init__(self, registrar):
        self._registrar = registrar

    def request_received(self, transaction, request):
        method = request.method
        if method == "REGISTER":
            d = self._registrar.register(transaction, request, transaction.destination)
            d.addErrback(self._failed, transaction, request)
        elif method == "OPTIONS":
            # RFC 3261 §11.2: say what we can do.
            response = make_response(request, 200)
            response.headers.add("Allow", ALLOWED)
            response.headers.add("Accept", "application/sdp")
            transaction.respond(response)
        else:
            # §8.2.1: a method we do not (yet) handle.
            response = make_response(request, 405)
            response.headers.add("Allow", ALLOWED)
            transaction.respond(response)

    def _failed(self, failure, transaction, request):
        # A database that is down must cost a 500, never a hung transaction.
        self.log.failure("{method} failed", failure, method=request.method, cid=request.call_id)
        response = make_response(request, 500, "Server Internal Error")
        response.headers.add("Retry-After", "30")
        transaction.respond(response)
