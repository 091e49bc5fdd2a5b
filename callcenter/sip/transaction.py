"""
The SIP transaction layer (RFC 3261 §17, as updated by RFC 6026).

A transaction is one request and the responses to it.  Over UDP this layer
makes SIP reliable: it retransmits requests (Timers A, E) and final
responses (Timer G), absorbs retransmissions from the other side, and gives
up after 64*T1 (Timers B, F, H).  Over TCP the transport is reliable and the
"wait for stray retransmissions" timers (D, I, J, K) are zero.

Time is injected (an IReactorTime: the reactor, or a Clock in tests) and so
is sending (``send(message, destination, reliable)``), so the whole state
machine runs in memory in tests.

The layer talks to its user (the "TU": the UA core, registrar, B2BUA)
through two small protocols, see L{ServerUser} and L{ClientOwner}.
"""

import collections
import secrets
from dataclasses import dataclass

from twisted.logger import Logger

from callcenter.sip.message import Request, make_response

# RFC 3261 §8.1.1.7: branches of RFC 3261 elements start with this cookie.
MAGIC_COOKIE = "z9hG4bK"


@dataclass(frozen=True)
class Timers:
    """RFC 3261 §17.1.1.1 and Table 4: T1 (RTT estimate), T2, T4, in seconds."""

    T1: float = 0.5
    T2: float = 4.0
    T4: float = 5.0

    @property
    def timeout(self):
        # Timers B, F, H, L, M: 64*T1.
        return 64 * self.T1


def new_branch():
    return MAGIC_COOKIE + secrets.token_hex(10)


class ServerUser:
    """
    What the layer calls on the TU for incoming requests.  Methods may be
    missing; the layer then answers as RFC 3261 says a UAS does.
    """

    def request_received(self, transaction, request):
        """A new request (not ACK, not a retransmission): respond via C{transaction.respond}."""

    def ack_received(self, request, source):
        """An ACK for a 2xx (RFC 3261 §13.2.2.4: end to end, no transaction)."""

    def cancel_received(self, invite_transaction, cancel):
        """A CANCEL matched a pending INVITE; it has been answered 200 already."""

    def stray_response(self, response, source):
        """A response matching no transaction (e.g. a retransmitted 2xx after Timer M)."""

    def transaction_timed_out(self, transaction):
        """An INVITE server transaction's final response was never ACKed (Timer H)."""


class ClientOwner:
    """What a client transaction calls on whoever sent the request."""

    def response_received(self, transaction, response):
        """Each provisional and final response (2xx retransmissions too, RFC 6026)."""

    def transaction_timed_out(self, transaction):
        """No final response within 64*T1 (Timer B or F): treat as 408 (§8.1.3.1)."""


def _call(target, method, *args):
    callback = getattr(target, method, None)
    if callback is not None:
        callback(*args)


class _Transaction:
    log = Logger()

    def __init__(self, layer, key, destination, reliable):
        self.layer = layer
        self.key = key
        self.destination = destination
        self.reliable = reliable
        self.state = None
        self._timers = {}

    @property
    def clock(self):
        return self.layer.clock

    @property
    def timers(self):
        return self.layer.timers

    def _start(self, name, delay, fired):
        self._stop(name)
        self._timers[name] = self.clock.callLater(delay, self._fire, name, fired)

    def _fire(self, name, fired):
        del self._timers[name]
        fired()

    def _stop(self, name):
        timer = self._timers.pop(name, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _send(self, message):
        self.layer.send(message, self.destination, self.reliable)

    def terminate(self):
        self.state = "terminated"
        for name in list(self._timers):
            self._stop(name)
        self.layer.forget(self)

    def _after(self, unreliable_delay, then):
        """Wait C{unreliable_delay} on UDP (zero on a reliable transport), then C{then}."""
        if self.reliable:
            then()
        else:
            self._start("wait", unreliable_delay, then)


class ClientTransaction(_Transaction):
    def __init__(self, layer, key, request, destination, reliable, owner):
        super().__init__(layer, key, destination, reliable)
        self.request = request
        self.owner = owner

    def _retransmit_request(self):
        self._send(self.request)


class ClientInviteTransaction(ClientTransaction):
    """RFC 3261 §17.1.1 (Figure 5) with RFC 6026's Accepted state."""

    def start(self):
        self.state = "calling"
        self._send(self.request)
        if not self.reliable:
            self._interval = self.timers.T1
            self._start("A", self._interval, self._timer_a)
        self._start("B", self.timers.timeout, self._timer_b)

    def _timer_a(self):
        self._retransmit_request()
        self._interval *= 2
        self._start("A", self._interval, self._timer_a)

    def _timer_b(self):
        if self.state == "calling":
            self.terminate()
            _call(self.owner, "transaction_timed_out", self)

    def response_received(self, response):
        status = response.status
        if self.state in ("calling", "proceeding"):
            self._stop("A")
            if status < 200:
                self.state = "proceeding"
                self._stop("B")
            elif status < 300:
                # RFC 6026 §8.4: keep matching 2xx retransmissions for 64*T1
                # and hand them up; the TU ACKs each (§13.2.2.4).
                self.state = "accepted"
                self._stop("B")
                self._start("M", self.timers.timeout, self.terminate)
            else:
                self.state = "completed"
                self._stop("B")
                self._send(self.ack_for(response))
                self._after(32.0, self.terminate)  # Timer D: at least 32 s on UDP.
            _call(self.owner, "response_received", self, response)
        elif self.state == "completed" and status >= 300:
            self._send(self.ack_for(response))  # The ACK was lost: §17.1.1.2.
        elif self.state == "accepted" and 200 <= status < 300:
            _call(self.owner, "response_received", self, response)

    def ack_for(self, response):
        """The ACK for a non-2xx final response, RFC 3261 §17.1.1.3."""
        original = self.request
        ack = Request("ACK", original.uri)
        ack.headers.add("Via", original.headers.get("Via"))
        for route in original.headers.get_all("Route"):
            ack.headers.add("Route", route)
        ack.headers.add("Max-Forwards", "70")
        ack.headers.add("From", original.headers.get("From"))
        ack.headers.add("To", response.headers.get("To"))
        ack.headers.add("Call-ID", original.headers.get("Call-ID"))
        ack.headers.add("CSeq", f"{original.cseq[0]} ACK")
        return ack


class ClientNonInviteTransaction(ClientTransaction):
    """RFC 3261 §17.1.2 (Figure 6)."""

    def start(self):
        self.state = "trying"
        self._send(self.request)
        if not self.reliable:
            self._interval = self.timers.T1
            self._start("E", self._interval, self._timer_e)
        self._start("F", self.timers.timeout, self._timer_f)

    def _timer_e(self):
        self._retransmit_request()
        if self.state == "trying":
            self._interval = min(2 * self._interval, self.timers.T2)
        else:
            self._interval = self.timers.T2
        self._start("E", self._interval, self._timer_e)

    def _timer_f(self):
        self.terminate()
        _call(self.owner, "transaction_timed_out", self)

    def response_received(self, response):
        if self.state not in ("trying", "proceeding"):
            return  # Completed: absorb retransmitted responses.
        if response.status < 200:
            self.state = "proceeding"
        else:
            self.state = "completed"
            self._stop("E")
            self._stop("F")
            self._after(self.timers.T4, self.terminate)  # Timer K.
        _call(self.owner, "response_received", self, response)


class ServerTransaction(_Transaction):
    def __init__(self, layer, key, request, source, reliable):
        super().__init__(layer, key, source, reliable)
        self.request = request
        self.method = request.method
        self.last_response = None

    def respond(self, status_or_response, reason=None, to_tag=None):
        """
        Send a response (a Response, or a status code to build one from the
        request with L{make_response}).  Returns the Response sent, or None
        when the transaction has already answered.
        """
        if self.state in ("completed", "confirmed", "accepted", "terminated"):
            status = getattr(status_or_response, "status", status_or_response)
            self.log.warn(
                "{method} transaction already answered; not sending {status}",
                method=self.method,
                status=status,
            )
            return None
        response = status_or_response
        if isinstance(response, int):
            if to_tag is None and response > 100:
                # §8.2.6.2: every response but 100 carries a To tag; one that
                # makes no dialog can take any fresh one.
                to_tag = secrets.token_hex(6)
            response = make_response(self.request, response, reason, to_tag=to_tag)
        elif response.status > 100 and _lacks_to_tag(response):
            # Built whole by the TU without one: the same rule applies.
            response.headers.set("To", f"{response.headers.get('To')};tag={secrets.token_hex(6)}")
        self.last_response = response
        self._send(response)
        self._responded(response)
        return response


def _lacks_to_tag(response):
    try:
        return response.to_addr.tag is None
    except ValueError:
        return False  # No To, or one we cannot parse: sent as it is.


class ServerInviteTransaction(ServerTransaction):
    """RFC 3261 §17.2.1 (Figure 7) with RFC 6026's Accepted state."""

    def start(self):
        self.state = "proceeding"
        # §17.2.1: answer 100 Trying unless the TU answers within 200 ms; a
        # B2BUA rarely does, so say it at once and stop the retransmissions.
        self.respond(100)

    def _responded(self, response):
        status = response.status
        if status < 200:
            return
        if status < 300:
            # §13.3.1.4: the UAS core retransmits its 2xx until the ACK
            # comes; RFC 6026 §8.5 keeps the transaction (Accepted) to absorb
            # retransmitted INVITEs meanwhile.
            self.state = "accepted"
            self._interval = self.timers.T1
            self._start("2xx", self._interval, self._retransmit_2xx)
            self._start("L", self.timers.timeout, self._timer_l)
            self.layer.awaiting_ack(self)
        else:
            self.state = "completed"
            if not self.reliable:
                self._interval = self.timers.T1
                self._start("G", self._interval, self._timer_g)
            self._start("H", self.timers.timeout, self._timer_h)

    def _retransmit_2xx(self):
        self._send(self.last_response)
        self._interval = min(2 * self._interval, self.timers.T2)
        self._start("2xx", self._interval, self._retransmit_2xx)

    def _timer_l(self):
        if "2xx" in self._timers:
            # Never ACKed (§13.3.1.4): the dialog must be ended with a BYE.
            _call(self.layer.user, "transaction_timed_out", self)
        self.terminate()

    def _timer_g(self):
        self._send(self.last_response)
        self._interval = min(2 * self._interval, self.timers.T2)
        self._start("G", self._interval, self._timer_g)

    def _timer_h(self):
        self.terminate()
        _call(self.layer.user, "transaction_timed_out", self)

    def request_retransmitted(self, request):
        if request.method == "ACK":
            if self.state == "completed":
                self.state = "confirmed"
                self._stop("G")
                self._stop("H")
                self._after(self.timers.T4, self.terminate)  # Timer I.
            return
        if self.state in ("proceeding", "completed") and self.last_response is not None:
            self._send(self.last_response)

    def ack_for_2xx(self):
        """The end-to-end ACK arrived: stop retransmitting the 2xx."""
        self._stop("2xx")


class ServerNonInviteTransaction(ServerTransaction):
    """RFC 3261 §17.2.2 (Figure 8)."""

    def start(self):
        self.state = "trying"

    def _responded(self, response):
        if response.status < 200:
            self.state = "proceeding"
        else:
            self.state = "completed"
            if self.reliable:
                self.terminate()  # Timer J is zero on a reliable transport.
                return
            # For the 32 s of Timer J this transaction only answers
            # retransmissions: it keeps the bytes it sent, not the
            # parsed request and response (thousands of objects a
            # second for the collector to walk, and ~10 KiB each).
            self.request = None
            self.last_response = _Sent(response.to_bytes())
            self.layer.linger(self)

    def request_retransmitted(self, request):
        if self.last_response is not None:
            self._send(self.last_response)


class _Sent(bytes):
    """A message already serialised, sent again as it was."""

    def to_bytes(self):
        return self


def server_key(request, source):
    """
    RFC 3261 §17.2.3: the branch, the sent-by and the method (ACK and CANCEL
    are looked up against their INVITE separately).  Requests from RFC 2543
    elements, without the magic cookie, are keyed on the §17.2.3 fallback
    fields instead.
    """
    via = request.vias[0]
    method = "INVITE" if request.method == "ACK" else request.method
    sent_by = (via.host.lower(), via.port)
    if via.branch and via.branch.startswith(MAGIC_COOKIE):
        return ("server", via.branch, sent_by, method)
    return (
        "server-2543",
        request.uri,
        request.from_addr.tag,
        request.call_id,
        request.cseq[0],
        sent_by,
        method,
    )


def client_key(branch, method):
    # §17.1.3: branch plus CSeq method (a CANCEL shares its INVITE's branch).
    return ("client", branch, "INVITE" if method == "ACK" else method)


class TransactionLayer:
    """
    Matches messages to transactions and creates them.  C{send(message,
    destination, reliable)} hands a message to the transport.
    """

    log = Logger()

    # Completed transactions waiting out Timer J are swept at most this
    # often: a few milliseconds more of absorbing retransmissions, and one
    # timer for all of them instead of one each.
    SWEEP_INTERVAL = 0.01

    def __init__(self, clock, send, user, timers=Timers()):
        self.clock = clock
        self.send = send
        self.user = user
        self.timers = timers
        self._transactions = {}
        self._accepted = {}
        # (when Timer J fires, transaction): all wait the same 64*T1, so
        # the order they came in is the order they leave in.
        self._lingering = collections.deque()
        self._sweep = None

    def __len__(self):
        return len(self._transactions)

    def forget(self, transaction):
        if self._transactions.get(transaction.key) is transaction:
            del self._transactions[transaction.key]
        if isinstance(transaction, ServerInviteTransaction):
            key = self._dialog_key(transaction.request)
            if self._accepted.get(key) is transaction:
                del self._accepted[key]

    def linger(self, transaction):
        """
        Timer J (RFC 3261 §17.2.2) for a completed non-INVITE server
        transaction on UDP: terminate it 64*T1 from now.  Every REGISTER
        leaves two of these behind; a reactor timer each cost more than
        the rest of their stay.
        """
        self._lingering.append((self.clock.seconds() + self.timers.timeout, transaction))
        if self._sweep is None:
            self._sweep = self.clock.callLater(self.timers.timeout, self._end_lingering)

    def _end_lingering(self):
        self._sweep = None
        now = self.clock.seconds()
        lingering = self._lingering
        while lingering and lingering[0][0] <= now:
            transaction = lingering.popleft()[1]
            if transaction.state == "completed":
                transaction.terminate()
        if lingering:
            delay = max(lingering[0][0] - now, self.SWEEP_INTERVAL)
            self._sweep = self.clock.callLater(delay, self._end_lingering)

    @staticmethod
    def _dialog_key(request):
        return (request.call_id, request.cseq[0])

    def awaiting_ack(self, transaction):
        self._accepted[self._dialog_key(transaction.request)] = transaction

    # Requests

    def request_received(self, request, source, reliable):
        key = server_key(request, source)
        existing = self._transactions.get(key)
        if request.method == "ACK":
            if existing is not None and existing.state in ("completed", "confirmed"):
                existing.request_retransmitted(request)
                return
            accepted = self._accepted.get(self._dialog_key(request))
            if accepted is not None:
                accepted.ack_for_2xx()
            _call(self.user, "ack_received", request, source)
            return
        if existing is not None:
            existing.request_retransmitted(request)
            return
        if request.method == "INVITE":
            transaction = ServerInviteTransaction(self, key, request, source, reliable)
        else:
            transaction = ServerNonInviteTransaction(self, key, request, source, reliable)
        self._transactions[key] = transaction
        transaction.start()
        if request.method == "CANCEL":
            self._cancel(transaction, request, source)
        else:
            _call(self.user, "request_received", transaction, request)

    def _cancel(self, transaction, cancel, source):
        # §9.2: the CANCEL matches the INVITE transaction with the same
        # branch (and sent-by); it is answered 200 on its own transaction,
        # and the TU then ends the INVITE with 487.
        invite_key = server_key(cancel, source)[:-1] + ("INVITE",)
        invite = self._transactions.get(invite_key)
        if invite is None or invite.state != "proceeding":
            transaction.respond(481)
            return
        transaction.respond(200)
        _call(self.user, "cancel_received", invite, cancel)

    # Responses

    def send_request(self, request, destination, reliable, owner):
        """
        Start a client transaction for C{request} (its top Via must carry a
        fresh branch, see L{new_branch}).  ACK for a 2xx is not a
        transaction: use C{send} directly.
        """
        key = client_key(request.vias[0].branch, request.method)
        if request.method == "INVITE":
            transaction = ClientInviteTransaction(self, key, request, destination, reliable, owner)
        else:
            transaction = ClientNonInviteTransaction(self, key, request, destination, reliable, owner)
        self._transactions[key] = transaction
        transaction.start()
        return transaction

    def response_received(self, response, source):
        vias = response.vias
        transaction = None
        if vias and vias[0].branch:
            transaction = self._transactions.get(client_key(vias[0].branch, response.cseq[1]))
        if transaction is None:
            _call(self.user, "stray_response", response, source)
            return
        transaction.response_received(response)
