from dataclasses import dataclass

from twisted.plugin import IPlugin
from zope.interface import implementer

from callcenter.config import Integer, Text, setting
from callcenter.interfaces import ISubsystem


@dataclass(frozen=True)
class IVRConfig:
    prompts: str = setting(
        Text(),
        "var/prompts",
        "Directory of the prompt pack (callcenter prompts build --dir ...); studio recordings go "
        "in its studio/ folder.",
    )
    max_login_attempts: int = setting(
        Integer(1, 5), 3, "Wrong trading passwords one call may try before it is ended."
    )
    recordings: str = setting(
        Text(),
        "var/recordings",
        "Directory of what callers record: bulletins (自动声讯) and expert commentaries (名家股评), "
        "in bulletins/ and commentaries/ folders the IVR makes.",
    )


@implementer(IPlugin, ISubsystem)
class IVRSubsystem:
    name = "ivr"
    description = (
        "Call flows: phone trading (电话委托), bulletins (自动声讯) and expert mailboxes (名家股评信箱), "
        "for SIP routes (\"ivr:<flow>\") and FastAGI"
    )
    config_schema = IVRConfig

    def makeService(self, config, context):
        from callcenter.ivr.service import ivr_service

        return ivr_service(config, context)


ivr = IVRSubsystem()
