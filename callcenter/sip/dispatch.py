"""
The transaction user: what the server does with each request.  REGISTER
goes to the registrar; INVITE and everything inside a call to the calls;
OPTIONS is answered here (phones and proxies ping with it).
"""

from twisted.logger import Logger

from callcenter.sip.message import make_response
from callcenter.sip.transaction import ServerUser
from callcenter.telephony.callerid import caller_of


class RequestDispatcher(ServerUser):
    log = Logger()

    def __init__(self, registrar, calls, trusted):
        """
        @param trusted: C{host -> bool}: whether a source is in our trust
            domain (may assert a caller's identity, RFC 3325).
        """
        self._registrar = registrar
        self._calls = calls
        self._trusted = trusted

    def request_received(self, transaction, request):
        method = request.method
        in_dialog = request.to_addr.tag is not None
        if method == "REGISTER":
            d = self._registrar.register(transaction, request, transaction.destination)
            d.addErrback(self._failed, transaction, request)
        elif in_dialog:
            self._calls.in_dialog(transaction, request)
        elif method == "INVITE":
            caller = caller_of(request, self._trusted(transaction.destination.address[0]))
            self._calls.invite(transaction, request, caller)
        elif method == "OPTIONS":
            # RFC 3261 §11.2: say what we can do.
            response = make_response(request, 200)
            response.headers.add("Allow", self._calls.allowed)
            response.headers.add("Accept", "application/sdp")
            transaction.respond(response)
        elif method == "BYE":
            transaction.respond(481, "Call/Transaction Does Not Exist")
        else:
            # §8.2.1: a method we do not handle.
            response = make_response(request, 405)
            response.headers.add("Allow", self._calls.allowed)
            transaction.respond(response)

    def ack_received(self, request, source):
        self._calls.ack(request)

    def cancel_received(self, invite_transaction, cancel):
        self._calls.cancel(invite_transaction)

    def stray_response(self, response, source):
        self._calls.stray_response(response)

    def transaction_timed_out(self, transaction):
        self._calls.transaction_timed_out(transaction)

    def _failed(self, failure, transaction, request):
        # A database that is down must cost a 500, never a hung transaction.
        self.log.failure("{method} failed", failure, method=request.method, cid=request.call_id)
        response = make_response(request, 500, "Server Internal Error")
        response.headers.add("Retry-After", "30")
        transaction.respond(response)
