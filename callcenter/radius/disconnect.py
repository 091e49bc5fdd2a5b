"""
Dynamic authorization (RFC 5176): we ask a NAS to end a session
(Disconnect-Request) or change it (CoA-Request, e.g. a shorter
Session-Timeout), on its port 3799, retrying on a clock, and keep what
became of it.

The request names the session the way RFC 5176 §3 asks: the NAS
(NAS-IP-Address or NAS-IPv6-Address) and the session (Acct-Session-Id,
User-Name), with Event-Timestamp against replays (§3.3) and
Message-Authenticator first.  pyrad builds and signs requests and checks
replies (Response Authenticator and, when present, Message-Authenticator).
"""

import ipaddress
import random
from collections.abc import Mapping
from dataclasses import dataclass

from pyrad import packet as radius
from pyrad import tools
from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from zope.interface import implementer

from callcenter.radius.dictionary import load_dictionary
from callcenter.radius.interfaces import IDisconnector
from callcenter.radius.metrics import RadiusMetrics

ACK = "ack"
NAK = "nak"
TIMEOUT = "timeout"

ERROR_CAUSE = 101  # RFC 5176 §3.5

_ANSWERS = {
    radius.DisconnectRequest: {radius.DisconnectACK: ACK, radius.DisconnectNAK: NAK},
    radius.CoARequest: {radius.CoAACK: ACK, radius.CoANAK: NAK},
}
_KINDS = {radius.DisconnectRequest: "disconnect", radius.CoARequest: "coa"}


class NoRoute(LookupError):
    """The session's NAS is not one we can address (client gone, or no usable NAS-IP)."""


@dataclass(frozen=True)
class DynamicAuthorizationResult:
    """
    What the NAS said: C{outcome} is "ack", "nak" or "timeout";
    C{error_cause} the NAK's (or ACK's) Error-Cause number (RFC 5176 §3.5)
    and C{error_name} its name in the dictionary; C{attempts} how many times
    the request was sent.
    """

    outcome: str
    attempts: int
    error_cause: int = None
    error_name: str = None


class _Exchange:
    __slots__ = ("attempts", "client", "d", "datagram", "destination", "kind", "reason", "request",
                 "requested_at", "session", "timer", "timeout")


def _field(session, name):
    """A column of the session: a row object with attributes, or a mapping."""
    if isinstance(session, Mapping):
        return session.get(name)
    return getattr(session, name, None)


@implementer(IDisconnector)
class Disconnector(DatagramProtocol):
    """
    Sends Disconnect- and CoA-Requests from one UDP socket (listen on it
    with an ephemeral port, e.g. C{UDPServer(0, disconnector,
    interface=...)}) and matches the answers by NAS address and Identifier.

    @param clients: the L{IRadiusClients}; a session's C{client} names its
        NAS, whose secret signs the request and whose C{coa_port} it goes to.
    @param clock: an L{IReactorTime} for the retries.
    @param record: C{record(session, reason=, outcome=, error_cause=,
        attempts=, requested_at=, finished_at=)} returning a Deferred (the
        keywords of L{callcenter.radius.accounts.record_disconnect}, times as
        POSIX seconds); the result is given once it has fired.  A failure is
        logged; the result stands.
    @param tries: how many times a request is sent before "timeout".
    @param timeout: seconds to wait for the first answer; doubled at each
        retry (2, 4, 8: 14 s in all by default).
    """

    log = Logger()

    def __init__(self, clients, clock, record, dictionary=None, metrics=None, tries=3, timeout=2.0):
        self._clients = clients
        self._clock = clock
        self._record = record
        self.dictionary = load_dictionary() if dictionary is None else dictionary
        self.metrics = RadiusMetrics() if metrics is None else metrics
        self._tries = tries
        self._timeout = timeout
        self._exchanges = {}  # (host, port, identifier) -> _Exchange
        self._waiting = {}  # (host, port) -> [(start, args)] when all 256 identifiers are in use
        self._random = random.SystemRandom()
        self._error_causes = self.dictionary.attributes["Error-Cause"].values

    def disconnect(self, session, reason):
        """End C{session} (a radius_sessions row); fires with a L{DynamicAuthorizationResult}."""
        return self._send(radius.DisconnectRequest, session, reason, {})

    def change(self, session, attributes, reason="coa"):
        """
        CoA-Request: C{attributes} (dictionary names to values, e.g.
        C{{"Session-Timeout": 600}}) applied to C{session}; fires with a
        L{DynamicAuthorizationResult}.
        """
        return self._send(radius.CoARequest, session, reason, attributes)

    def _send(self, code, session, reason, attributes):
        try:
            client, destination = self._route(session)
            request = self._request(code, client, session, attributes)
        except Exception as e:
            return defer.fail(e)
        exchange = _Exchange()
        exchange.kind = code
        exchange.client = client
        exchange.session = session
        exchange.reason = reason
        exchange.request = request
        exchange.destination = destination
        exchange.requested_at = self._clock.seconds()
        exchange.attempts = 0
        exchange.timeout = self._timeout
        exchange.timer = None
        exchange.d = defer.Deferred()
        self._start(exchange)
        return exchange.d

    def _route(self, session):
        name = _field(session, "client")
        client = self._clients.by_name(name)
        if client is None:
            raise NoRoute(f"session {_field(session, 'id')}: NAS client {name!r} is not configured")
        if client.network.num_addresses == 1:
            # One NAS: where its packets come from, whatever NAS-IP it reports (it may be behind NAT).
            return client, (str(client.network.network_address), client.coa_port)
        nas_ip = _field(session, "nas_ip")
        try:
            address = ipaddress.ip_address(nas_ip)
        except (TypeError, ValueError):
            address = None
        if address is None or address not in client.network:
            raise NoRoute(
                f"session {_field(session, 'id')}: NAS-IP {nas_ip!r} is not in client {name}'s {client.network}"
            )
        return client, (str(address), client.coa_port)

    def _request(self, code, client, session, attributes):
        request = radius.CoAPacket(code, id=0, secret=client.secret, dict=self.dictionary)
        request.add_message_authenticator()  # first (BlastRADIUS, CVE-2024-3596)
        username = _field(session, "username")
        if username:
            request["User-Name"] = username
        request["Acct-Session-Id"] = _field(session, "acct_session_id")
        nas_ip = _field(session, "nas_ip")
        if nas_ip:
            version = ipaddress.ip_address(nas_ip).version
            request["NAS-IP-Address" if version == 4 else "NAS-IPv6-Address"] = nas_ip
        request["Event-Timestamp"] = int(self._clock.seconds())
        for name, value in attributes.items():
            request.AddAttribute(name, value)
        return request

    def _start(self, exchange):
        host, port = exchange.destination
        identifier = self._free_identifier(host, port)
        if identifier is None:
            self._waiting.setdefault((host, port), []).append(exchange)
            return
        exchange.request.id = identifier
        # Encoded once: a retransmission is the same datagram (RFC 5080 §2.2.1).
        exchange.datagram = exchange.request.RequestPacket()
        self._exchanges[(host, port, identifier)] = exchange
        self._transmit(exchange)

    def _free_identifier(self, host, port):
        start = self._random.randrange(256)
        for offset in range(256):
            identifier = (start + offset) % 256
            if (host, port, identifier) not in self._exchanges:
                return identifier
        return None

    def _transmit(self, exchange):
        exchange.attempts += 1
        try:
            if self.transport is None:
                raise OSError("the dynamic authorization socket is not open")
            self.transport.write(exchange.datagram, exchange.destination)
        except OSError as e:
            self.log.warn(
                "{kind} to {nas} for session {session}: cannot send: {error}",
                kind=_KINDS[exchange.kind],
                nas=exchange.destination[0],
                session=_field(exchange.session, "id"),
                error=e,
            )
        exchange.timer = self._clock.callLater(exchange.timeout, self._expired, exchange)
        exchange.timeout *= 2

    def _expired(self, exchange):
        exchange.timer = None
        if exchange.attempts < self._tries:
            self._transmit(exchange)
        else:
            self._finish(exchange, DynamicAuthorizationResult(TIMEOUT, exchange.attempts))

    def datagramReceived(self, data, address):
        try:
            self._answer(data, address)
        except Exception:
            self.log.failure("dynamic authorization answer from {peer} not handled", peer=address[0])

    def _answer(self, data, address):
        host, port = address[0], address[1]
        if len(data) < 20:
            return
        exchange = self._exchanges.get((host, port, data[1]))
        if exchange is None:
            self.log.debug("an answer from {peer} to no request of ours: dropped", peer=host)
            return
        request = exchange.request
        try:
            reply = request.CreateReply(packet=data)
        except (radius.PacketError, ValueError) as e:
            self.log.warn("a malformed answer from {peer}: {error}", peer=host, error=e)
            return
        outcome = _ANSWERS[exchange.kind].get(reply.code)
        if outcome is None or not request.VerifyReply(reply, data):
            self.log.warn(
                "an answer from {peer} (code {code}) that is not a signed answer to our {kind}: dropped",
                peer=host, code=reply.code, kind=_KINDS[exchange.kind],
            )
            return
        causes = dict.get(reply, ERROR_CAUSE)
        cause = name = None
        if causes:
            cause = tools.DecodeInteger(causes[0])
            name = self._error_causes.GetBackward(causes[0]) if self._error_causes.HasBackward(causes[0]) else None
        if exchange.timer is not None:
            exchange.timer.cancel()
            exchange.timer = None
        self._finish(exchange, DynamicAuthorizationResult(outcome, exchange.attempts, cause, name))

    def _finish(self, exchange, result):
        host, port = exchange.destination
        del self._exchanges[(host, port, exchange.request.id)]
        waiting = self._waiting.get((host, port))
        if waiting:
            self._start(waiting.pop(0))
            if not waiting:
                del self._waiting[(host, port)]
        kind = _KINDS[exchange.kind]
        self.metrics.dynamic_authorization.labels(exchange.client.name, kind, result.outcome).inc()
        log = self.log.info if result.outcome == ACK else self.log.warn
        log(
            "{kind} for session {session} ({user}) at {nas}: {outcome}{cause} after {attempts} attempt(s)",
            kind=kind,
            session=_field(exchange.session, "id"),
            user=_field(exchange.session, "username"),
            nas=host,
            outcome=result.outcome,
            cause=f" ({result.error_name or result.error_cause})" if result.error_cause is not None else "",
            attempts=result.attempts,
        )
        recorded = defer.maybeDeferred(
            self._record,
            exchange.session,
            reason=exchange.reason,
            outcome=result.outcome,
            error_cause=result.error_cause,
            attempts=result.attempts,
            requested_at=exchange.requested_at,
            finished_at=self._clock.seconds(),
        )

        def not_recorded(failure):
            self.log.failure(
                "the outcome of the {kind} for session {session} was not recorded",
                failure, kind=kind, session=_field(exchange.session, "id"),
            )

        recorded.addErrback(not_recorded)
        recorded.addBoth(lambda _: result)
        recorded.chainDeferred(exchange.d)

    def stopProtocol(self):
        """Closing: requests in flight and waiting fail with L{defer.CancelledError}, unrecorded."""
        exchanges = list(self._exchanges.values()) + [e for queue in self._waiting.values() for e in queue]
        self._exchanges.clear()
        self._waiting.clear()
        for exchange in exchanges:
            if exchange.timer is not None:
                exchange.timer.cancel()
            exchange.d.errback(defer.CancelledError("the dynamic authorization socket closed"))
