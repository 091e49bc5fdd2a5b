"""
The FastAGI listener's factory: one session per connection from Asterisk,
running the flow the AGI URL names (``agi://host:4573/<flow>``, a registry
by script name like Wazo's agid) with an L{AGIChannel}.

A flow is C{flow(channel) -> Deferred} (or a plain value).  When it
returns, the connection is closed and Asterisk carries on with the next
dialplan line (AGISTATUS=SUCCESS), unless the flow hung up.  A flow that
fails, or a URL naming no flow, is logged and the call is hung up.
"""

import ipaddress

from twisted.internet import defer
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from callcenter.agi import commands
from callcenter.agi.channel import AGIChannel
from callcenter.agi.protocol import AGIError, AGIHangup, FastAGIProtocol

DEFAULT_PORT = 4573


class FastAGIFactory(Factory):
    """
    @param flows: anything with C{get(name)} giving C{flow(channel)} or None:
        a dict, or the IVR's L{callcenter.interfaces.IFlows}.
    @param clock: the reactor's IReactorTime (header timeouts).
    @param max_sessions: connections served at once; more are closed at
        once with a log line (Asterisk then goes on with AGISTATUS=FAILURE).
    @param header_timeout: seconds a connection has to send its agi_* block.
    @param allowed_peers: if given, IP networks (ipaddress objects or
        strings) connections may come from; others are closed at once.
    @param channel_options: keyword arguments for each L{AGIChannel}
        (C{dial_template}, C{dial_timeout}).
    """

    log = Logger()

    def __init__(
        self, flows, clock, max_sessions=200, header_timeout=10.0, allowed_peers=None, channel_options=None
    ):
        # Looked up per call: the IVR may offer its flows after we are built.
        self.flows = flows
        self.clock = clock
        self.max_sessions = max_sessions
        self.header_timeout = header_timeout
        self.allowed_peers = None
        if allowed_peers is not None:
            self.allowed_peers = tuple(ipaddress.ip_network(n, strict=False) for n in allowed_peers)
        self.channel_options = dict(channel_options or {})
        self.sessions = set()

    def buildProtocol(self, addr):
        host = getattr(addr, "host", None)
        if self.allowed_peers is not None and not self._allowed(host):
            self.log.warn("FastAGI connection from {peer} refused: not an allowed peer", peer=host)
            return None
        if len(self.sessions) >= self.max_sessions:
            self.log.warn(
                "FastAGI connection from {peer} refused: {count} sessions already (max_sessions)",
                peer=host,
                count=len(self.sessions),
            )
            return None
        agi = FastAGIProtocol(self.clock, self.header_timeout)
        agi.factory = self
        self.sessions.add(agi)
        agi.closed.addBoth(lambda _: self.sessions.discard(agi))
        agi.request_ready.addCallbacks(self._run, self._no_request, callbackArgs=(agi,))
        return agi

    def _allowed(self, host):
        try:
            address = ipaddress.ip_address(host)
        except (TypeError, ValueError):
            return False
        return any(address in network for network in self.allowed_peers)

    def _no_request(self, failure):
        failure.trap(AGIError)  # Gone before its header: already logged if it was dropped.

    def _run(self, request, agi):
        flow = self.flows.get(request.script)
        if flow is None:
            self.log.warn(
                "FastAGI request for unknown flow {script!r} ({channel}, caller {caller}); hanging up",
                script=request.script,
                channel=request.channel,
                caller=request.get("callerid"),
            )
            self._hang_up_and_close(agi)
            return
        channel = AGIChannel(agi, **self.channel_options)
        channel.log.info(
            "FastAGI flow {script} for {channel} from {caller}",
            script=request.script,
            channel=request.channel,
            caller=channel.caller.number,
        )
        outcome = defer.maybeDeferred(flow, channel)
        outcome.addCallbacks(lambda _: self._close(agi), self._flow_failed, errbackArgs=(channel, agi))

    def _flow_failed(self, failure, channel, agi):
        if failure.check(AGIHangup):
            # The caller hung up under the flow: nothing went wrong.
            channel.log.info("flow {script} ended by the hang-up", script=channel.request.script)
            self._close(agi)
            return
        channel.log.failure("flow {script} failed; hanging up", failure, script=channel.request.script)
        if channel.state == "ended":
            self._close(agi)
        else:
            channel.hangup("error").addBoth(lambda _: self._close(agi))

    def _hang_up_and_close(self, agi):
        commands.hangup(agi).addBoth(lambda _: self._close(agi))

    def _close(self, agi):
        if agi.connected:
            agi.transport.loseConnection()
