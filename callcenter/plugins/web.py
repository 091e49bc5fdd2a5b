from dataclasses import dataclass

from twisted.plugin import IPlugin
from zope.interface import implementer

from callcenter.config import ServerEndpoint, setting
from callcenter.interfaces import ISubsystem


@dataclass(frozen=True)
class WebConfig:
    listen: str = setting(
        ServerEndpoint("tcp:8080:interface=127.0.0.1"),
        "tcp:8080:interface=127.0.0.1",
        "Where HTTP listens (health, metrics, APIs).",
    )


@implementer(IPlugin, ISubsystem)
class WebSubsystem:
    name = "web"
    description = "HTTP: /health, /metrics and the APIs other subsystems add"
    config_schema = WebConfig

    def makeService(self, config, context):
        from callcenter.web.service import WebService

        return WebService(config, context)


web = WebSubsystem()
