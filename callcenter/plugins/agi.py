from dataclasses import dataclass

from twisted.plugin import IPlugin
from zope.interface import implementer

from callcenter.config import Integer, NetworkList, Number, ServerEndpoint, setting
from callcenter.interfaces import ISubsystem


@dataclass(frozen=True)
class AGIConfig:
    listen: str = setting(
        ServerEndpoint("tcp:4573:interface=127.0.0.1"),
        "tcp:4573:interface=127.0.0.1",
        "Where FastAGI listens for Asterisk (AGI(agi://host:4573/<flow>)).",
    )
    allowed_peers: tuple = setting(
        NetworkList(),
        (),
        "Networks Asterisk connects from; empty allows any that reaches the port.  FastAGI has no "
        "authentication: bind it to the Asterisk network and list it here.",
        shown="[]",
    )
    max_sessions: int = setting(Integer(1, 10000), 200, "Calls served at once; more are refused.")
    header_timeout: float = setting(Number(1, 120), 10.0, "Seconds Asterisk has to send its agi_* block.")


@implementer(IPlugin, ISubsystem)
class AGISubsystem:
    name = "agi"
    description = "FastAGI: the IVR's flows for calls Asterisk handles"
    config_schema = AGIConfig

    def makeService(self, config, context):
        from twisted.application.service import MultiService

        from callcenter.agi.server import FastAGIFactory
        from callcenter.interfaces import IFlows
        from callcenter.listeners import stream_listener

        class Flows:
            """The IVR's flows, looked up per call (the ivr subsystem is built after us)."""

            def get(self, name):
                flows = context.components.lookup(IFlows)
                return flows.get(name) if flows is not None else None

        factory = FastAGIFactory(
            Flows(),
            context.clock,
            max_sessions=config.max_sessions,
            header_timeout=config.header_timeout,
            allowed_peers=config.allowed_peers or None,
        )
        service = MultiService()
        stream_listener(context, "agi", "listen", config.listen, factory, "FastAGI").setServiceParent(service)
        return service


agi = AGISubsystem()
