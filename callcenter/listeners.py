"""
Listening services that report a port they cannot have as one line naming
the config key, and log where they really listen (port 0 included).
"""

import socket

from twisted.application.internet import StreamServerEndpointService, UDPServer
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from callcenter.errors import StartupError


class _StreamListener(StreamServerEndpointService):
    # Fail in privilegedStartService, before the reactor runs, not in a log line later.
    _raiseSynchronously = True

    def __init__(self, endpoint, factory, description, where, what, table):
        super().__init__(endpoint, factory)
        # Logged as the subsystem it serves: "[callcenter.web#info] HTTP listening on ..."
        self.log = Logger(namespace=f"callcenter.{table}", source=self)
        self._description = description
        self._where = where
        self._what = what

    def privilegedStartService(self):
        try:
            super().privilegedStartService()
        except Exception as e:
            reason = " ".join(str(e).split()) or type(e).__name__
            raise StartupError(f"{self._where}: cannot listen on {self._description}: {reason}")
        self._waitingForPort.addCallback(self._listening)

    def _listening(self, port):
        address = port.getHost()
        shown = getattr(address, "name", None) or f"{address.host}:{address.port}"
        self.log.info("{what} listening on {address}", what=self._what, address=shown)
        return port


class _DatagramListener(UDPServer):
    """
    A UDP listener with a large receive buffer: a burst of packets (a
    REGISTER storm after a network blip) must queue, not be dropped by the
    kernel before we see it.
    """

    RECEIVE_BUFFER = 4 * 1024 * 1024

    def __init__(self, address, protocol, where, what, table):
        super().__init__(address.port, protocol, interface=address.host, maxPacketSize=65535)
        self._address = address
        self._where = where
        self._what = what
        self.log = Logger(namespace=f"callcenter.{table}", source=self)

    def privilegedStartService(self):
        try:
            super().privilegedStartService()
        except Exception as e:
            reason = " ".join(str(e).split()) or type(e).__name__
            raise StartupError(f"{self._where}: cannot listen on {self._address}: {reason}")
        try:
            self._port.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.RECEIVE_BUFFER)
        except OSError:
            pass  # The kernel caps it (net.core.rmem_max); what we get still helps.
        address = self._port.getHost()
        self.log.info("{what} listening on {host}:{port}", what=self._what, host=address.host, port=address.port)


def datagram_listener(context, table, key, address, protocol, what):
    """A service receiving datagrams on C{address} (a HostPort), configured as C{key} of C{[table]}."""
    return _DatagramListener(address, protocol, context.config.where(table, key), what, table)


def stream_listener(context, table, key, description, factory, what):
    """
    A service listening on the endpoint string C{description}, configured
    as C{key} of C{[table]}.

    @param what: what listens, for the log line (e.g. "HTTP").
    """
    endpoint = serverFromString(context.reactor, description)
    return _StreamListener(endpoint, factory, description, context.config.where(table, key), what, table)
