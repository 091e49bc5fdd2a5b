from dataclasses import dataclass

from twisted.plugin import IPlugin
from zope.interface import implementer

from callcenter.config import DatagramAddress, HostPort, Integer, Number, Text, setting
from callcenter.interfaces import ISubsystem
from callcenter.radius.chap import CHAP_KEY_VARIABLE
from callcenter.radius.clients import ClientList
from callcenter.radius.dictionary import DictionaryFiles


@dataclass(frozen=True)
class RadiusConfig:
    auth: HostPort = setting(
        DatagramAddress("127.0.0.1:1812"), HostPort("127.0.0.1", 1812), "Where RADIUS authentication listens (UDP)."
    )
    accounting: HostPort = setting(
        DatagramAddress("127.0.0.1:1813"), HostPort("127.0.0.1", 1813), "Where RADIUS accounting listens (UDP)."
    )
    clients: tuple = setting(
        ClientList(),
        (),
        "The NASes answered, by source address or prefix; each one's shared secret comes from the "
        "environment variable its secret_env names, never from this file.  Others are dropped.",
        shown="[]",
    )
    vendor_dictionaries: tuple = setting(
        DictionaryFiles(),
        (),
        "Vendor dictionaries (FreeRADIUS format) loaded after etc/radius/dictionary.",
        shown="[]",
    )
    chap_key_variable: str = setting(
        Text(),
        CHAP_KEY_VARIABLE,
        "The environment variable holding the key (openssl rand -hex 32) that seals the passwords of "
        "accounts allowed CHAP and MS-CHAP, which need them in clear; unset: both are refused.",
    )
    max_attempts: int = setting(
        Integer(1, 100), 5, "Wrong passwords in a row that lock an internet account until staff unlock it."
    )
    credential_cache_seconds: float = setting(
        Number(0, 86400),
        600.0,
        "How long a verified password is remembered (as a keyed hash) so that the NAS's next request "
        "skips argon2.",
    )
    account_cache_seconds: float = setting(
        Number(0, 3600),
        5.0,
        "How long account rows are cached; a change made by the CLI from another process shows after it.",
    )
    disconnect_tries: int = setting(Integer(1, 10), 3, "Disconnect-Requests sent before a NAS is given up on.")
    disconnect_timeout: float = setting(
        Number(0.1, 60), 2.0, "Seconds for a NAS to answer the first Disconnect-Request (doubling each try)."
    )


@implementer(IPlugin, ISubsystem)
class RadiusSubsystem:
    name = "radius"
    description = "RADIUS for investors' free internet access: authentication, accounting, disconnect"
    config_schema = RadiusConfig

    def makeService(self, config, context):
        from callcenter.radius.service import radius_service

        return radius_service(config, context)


radius = RadiusSubsystem()
