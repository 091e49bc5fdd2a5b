"""
SIP over UDP and TCP (RFC 3261 §18): bytes in, messages to the transaction
layer; messages out to where they must go.  Everything a hostile network
can send ends here as a parsed message, a 400 answer, or a logged drop.
"""

from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger

from callcenter.sip.guard import OK
from callcenter.sip.message import SIPParseError, StreamFramer, make_response, parse_message

# RFC 3261 §18.1.1 lets a UDP message be as large as the path allows; no real
# SIP message comes near 64 KiB, and nothing larger fits a datagram anyway.
MAX_MESSAGE_SIZE = 65535


class DatagramDestination:
    """A peer reached over our UDP socket."""

    reliable = False

    def __init__(self, protocol, address):
        self._protocol = protocol
        self.address = address

    def send(self, data):
        # The socket's own sendto: Twisted's Port.write checks the address
        # is an IP literal on every call, which costs as much as the send.
        # Addresses here came from the socket or from our own resolution.
        try:
            self._protocol.transport.socket.sendto(data, self.address)
        except OSError as error:
            # A full buffer or an ICMP error from an earlier datagram: the
            # transaction layer retransmits over UDP, so count and go on.
            self._protocol.send_failed(self.address, error)

    def local(self):
        """Our end: (transport, host, port), for Via and Contact."""
        host = self._protocol.transport.getHost()
        return "UDP", host.host, host.port

    def __repr__(self):
        return f"udp:{self.address[0]}:{self.address[1]}"


class StreamDestination:
    """A peer on one TCP or TLS connection: responses go back over it (§18.2.2)."""

    reliable = True

    def __init__(self, connection, address, transport="TCP"):
        self._connection = connection
        self.address = address
        self.transport = transport

    def send(self, data):
        if self._connection.transport is not None and self._connection.connected:
            self._connection.transport.write(data)

    def local(self):
        host = self._connection.transport.getHost()
        return self.transport, host.host, host.port

    def __repr__(self):
        return f"{self.transport.lower()}:{self.address[0]}:{self.address[1]}"


class SIPCore:
    """
    Between the wire and the transaction layer: police the source, parse,
    stamp the top Via with where the request really came from (RFC 3261
    §18.2.1, RFC 3581), answer malformed requests statelessly, and hand
    everything else to the layer.
    """

    log = Logger()

    def __init__(self, guard, layer=None, metrics=None):
        self.guard = guard
        self.layer = layer
        self._metrics = metrics
        # outcome -> its counter: labels() takes a lock and builds a key
        # each time, for every message.
        self._counters = {}

    def _count(self, outcome):
        if self._metrics is not None:
            counter = self._counters.get(outcome)
            if counter is None:
                counter = self._counters[outcome] = self._metrics.labels(outcome)
            counter.inc()

    def send(self, message, destination, reliable=None):
        """The transaction layer's C{send}."""
        destination.send(message.to_bytes())

    def admit(self, host):
        if self.guard.admit(host) == OK:
            return True
        self._count("dropped")
        return False

    def datagram_received(self, data, destination):
        if not self.admit(destination.address[0]):
            return
        try:
            message = parse_message(data)
        except SIPParseError as error:
            self.parse_failed(error, destination)
            return
        self.message_received(message, destination)

    def parse_failed(self, error, destination):
        self._count("malformed")
        request = error.message
        self.log.info(
            "malformed SIP from {source}: {reason}", source=repr(destination), reason=error.reason
        )
        if request is None or request.method == "ACK":
            return  # Nothing to answer with, or nothing may answer an ACK.
        try:
            destination.send(make_response(request, error.status, error.reason).to_bytes())
        except Exception:
            self.log.failure("cannot answer malformed SIP from {source}", source=repr(destination))

    def message_received(self, message, destination):
        self._count("accepted")
        if hasattr(message, "method"):
            reply_to = self._stamp_via(message, destination)
            self.layer.request_received(message, reply_to, destination.reliable)
        else:
            self.layer.response_received(message, destination)

    def _stamp_via(self, request, destination):
        """
        Record the real source in the top Via (received, rport) and return
        where responses must go: over the same connection for TCP; for UDP
        to the source port when the client asked for rport (RFC 3581 §4),
        else to the source address and the Via's port (§18.2.2).
        """
        host, port = destination.address
        vias = request.vias
        top = vias[0]
        rport_asked = "rport" in top.params
        if top.host != host or rport_asked:
            top.params["received"] = host
        if rport_asked:
            top.params["rport"] = str(port)
        request.set_vias(vias)
        if destination.reliable or rport_asked:
            return destination
        return DatagramDestination(destination._protocol, (host, top.port or 5060))


class SIPDatagramProtocol(DatagramProtocol):
    log = Logger()

    def __init__(self, core):
        self.core = core
        self.send_errors = 0

    def send_failed(self, address, error):
        self.send_errors += 1
        if self.send_errors % 1000 == 1:
            self.log.warn(
                "SIP send to {address} failed: {error} ({count} so far)",
                address=address, error=error, count=self.send_errors,
            )

    def datagramReceived(self, data, address):
        self.core.datagram_received(data, DatagramDestination(self, address))


class SIPStreamProtocol(Protocol):
    log = Logger()

    def __init__(self, core):
        self.core = core
        self.framer = StreamFramer(MAX_MESSAGE_SIZE)

    def connectionMade(self):
        peer = self.transport.getPeer()
        self.destination = StreamDestination(self, (peer.host, peer.port), self.factory.transport)
        self.factory.connections[self.destination.address] = self

    def connectionLost(self, reason):
        if self.factory.connections.get(self.destination.address) is self:
            del self.factory.connections[self.destination.address]

    def dataReceived(self, data):
        pings = self.framer.keepalives
        try:
            messages = self.framer.feed(data)
        except SIPParseError as error:
            for message in getattr(error, "complete", []):
                self._deliver(message)
            self.core.parse_failed(error, self.destination)
            if self.framer.broken:
                # The stream is out of step: nothing after this can be framed.
                self.transport.loseConnection()
            return
        if self.framer.keepalives > pings:
            # RFC 5626 §3.5.1: a CRLFCRLF ping is answered with a CRLF pong.
            self.transport.write(b"\r\n" * (self.framer.keepalives - pings))
        for message in messages:
            self._deliver(message)

    def _deliver(self, message):
        # Policed per message, not per read: TCP splits and joins at will.
        if self.core.admit(self.destination.address[0]):
            self.core.message_received(message, self.destination)


class SIPStreamFactory(Factory):
    def __init__(self, core, transport="TCP"):
        """C{transport}: "TCP", or "TLS" for a listener on a TLS endpoint (same framing)."""
        self.core = core
        self.transport = transport
        # Open connections by peer (host, port): a phone registered over TCP
        # is called back over the connection it registered on (RFC 5626 §5).
        self.connections = {}

    def buildProtocol(self, address):
        protocol = SIPStreamProtocol(self.core)
        protocol.factory = self
        return protocol


def destination_of(source, udp, streams):
    """
    Where to reach a peer last heard from at C{source} (a destination's
    repr, such as C{"udp:192.0.2.7:5060"}): over our UDP socket C{udp}, or
    over its TCP or TLS connection, held by the factory in C{streams} for
    its transport (C{{"tcp": factory, "tls": factory}}); None when that
    connection has closed.
    """
    transport, _, address = source.partition(":")
    host, _, port = address.rpartition(":")
    if transport == "udp":
        return DatagramDestination(udp, (host, int(port)))
    factory = streams.get(transport)
    connection = None if factory is None else factory.connections.get((host, int(port)))
    return None if connection is None else connection.destination
