import re
from dataclasses import dataclass

from twisted.plugin import IPlugin
from zope.interface import implementer

from callcenter.config import Integer, Kind, Mismatch, OneOf, Text, setting, show
from callcenter.interfaces import ISubsystem, IWebAPI
from callcenter.ivr.flows import FLOWS, LANGUAGE_KEYS

_MENU_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}\Z")


@dataclass(frozen=True)
class MenuSettings:
    name: str
    languages: tuple
    options: tuple  # (key, flow name) pairs, by key


class MenuTable(Kind):
    """Main menus by name: each a table of its languages and a flow per key."""

    expected = (
        'tables of menus such as [ivr.menus.hotline] with languages = ["zh", "en"] '
        'and keys 1-9 naming flows (1 = "trading")'
    )

    def parse(self, value):
        if not isinstance(value, dict):
            raise Mismatch()
        menus = []
        for name, table in value.items():
            if not _MENU_NAME.match(name) or name in FLOWS:
                raise Mismatch(
                    f"menu {show(name)}: a name is lower-case letters, digits and hyphens, "
                    f"not one of the flows ({', '.join(FLOWS)})"
                )
            if not isinstance(table, dict):
                raise Mismatch(f"menu {name} is not a table")
            table = dict(table)
            languages = table.pop("languages", ["zh"])
            if (
                not isinstance(languages, list) or not languages or len(set(languages)) != len(languages)
                or not set(languages) <= set(LANGUAGE_KEYS)
            ):
                raise Mismatch(f"menu {name}: languages must be a list among {', '.join(map(show, LANGUAGE_KEYS))}")
            options = []
            for key, flow in sorted(table.items()):
                if key not in set("123456789"):
                    raise Mismatch(f"menu {name}: {show(key)} is not a key 1-9 (0 is the agent, * goes back)")
                if flow not in FLOWS:
                    raise Mismatch(f"menu {name}: key {key}: {show(flow)} is not a flow ({', '.join(FLOWS)})")
                options.append((key, flow))
            if not options:
                raise Mismatch(f"menu {name} has no keys")
            menus.append(MenuSettings(name, tuple(languages), tuple(options)))
        return tuple(menus)


@dataclass(frozen=True)
class IVRConfig:
    prompts: str = setting(
        Text(),
        "var/prompts",
        "Directory of the prompt pack (callcenter prompts build --dir ...); studio recordings go "
        "in its studio/ folder.",
    )
    language: str = setting(
        OneOf(*LANGUAGE_KEYS),
        "zh",
        "The language of a flow dialled directly (a route \"ivr:trading\"); a menu offers its own.",
    )
    agent: str = setting(
        Text(nonempty=False),
        "",
        "The number 0 reaches (an extension, or a public number such as a hunt group) until the "
        "ACD takes agents' calls; empty: callers are told no agent is available.",
        shown='""',
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
    menus: tuple = setting(
        MenuTable(),
        (),
        "Main menus, each a flow of its own name for the numbers that route to it: "
        '[ivr.menus.hotline] languages = ["zh", "en"], 1 = "trading", 2 = "bulletins", 3 = "experts".',
        shown="{}",
    )


@implementer(IPlugin, ISubsystem)
class IVRSubsystem:
    name = "ivr"
    description = (
        "Call flows: phone trading (电话委托), bulletins (自动声讯) and expert mailboxes (名家股评信箱), "
        "and main menus joining them, for SIP routes (\"ivr:<flow>\") and FastAGI"
    )
    config_schema = IVRConfig

    def makeService(self, config, context):
        from callcenter.ivr.service import ivr_service

        service = ivr_service(config, context)
        if context.store is not None:
            from callcenter.ivr.bulletins_api import bulletins_api

            # Editors upload bulletins over HTTP too, on the web subsystem's listener.
            context.components.provide(IWebAPI, bulletins_api(config, context))
        return service


ivr = IVRSubsystem()
