from dataclasses import dataclass

from twisted.plugin import IPlugin
from zope.interface import implementer

from callcenter.config import (
    DatagramAddress,
    HostPort,
    Integer,
    Kind,
    Mismatch,
    NetworkList,
    Number,
    ServerEndpoint,
    Text,
    setting,
)
from callcenter.interfaces import ISubsystem


class AlgorithmList(Kind):
    expected = 'a non-empty array of "MD5" and "SHA-256"'

    def parse(self, value):
        if (
            not isinstance(value, (list, tuple))
            or not value
            or len(set(value)) != len(value)
            or not set(value) <= {"MD5", "SHA-256"}
        ):
            raise Mismatch()
        return tuple(value)


@dataclass(frozen=True)
class TelephonyConfig:
    udp: HostPort = setting(
        DatagramAddress("127.0.0.1:5060"), HostPort("127.0.0.1", 5060), "Where SIP over UDP listens."
    )
    tcp: str = setting(
        ServerEndpoint("tcp:5060:interface=127.0.0.1"),
        "tcp:5060:interface=127.0.0.1",
        "Where SIP over TCP listens.",
    )
    realm: str = setting(
        Text(), "callcenter", "Digest realm; SIP accounts' HA1 values are made for it."
    )
    digest_algorithms: tuple = setting(
        AlgorithmList(),
        ("MD5", "SHA-256"),
        "Digest challenges offered, preferred first (RFC 8760).  MD5 first by default: "
        "many phones and SIPp answer the topmost challenge whatever it is; put SHA-256 "
        "first when every phone supports it.",
    )
    nonce_lifetime: int = setting(
        Integer(30, 3600), 300, "Seconds a digest nonce is good for before the phone must take a new one."
    )
    max_auth_failures: int = setting(
        Integer(1, 1000), 5, "Authentication failures from one source, within a minute, that get it blocked."
    )
    block_seconds: int = setting(Integer(1, 604800), 600, "How long a source stays blocked.")
    request_rate: float = setting(
        Number(1, 100000), 50.0, "Requests a second one source may send (bursts up to request_burst)."
    )
    request_burst: int = setting(Integer(1, 1000000), 100, "Requests one source may send at once.")
    trusted_networks: tuple = setting(
        NetworkList(), (), "Sources never throttled or blocked: the carrier's trunk, our Kamailio."
    )
    min_expires: int = setting(Integer(1, 86400), 60, "Shortest registration accepted (423 below it).")
    max_expires: int = setting(Integer(1, 86400), 7200, "Longest registration granted.")
    default_expires: int = setting(
        Integer(1, 86400), 3600, "Registration lifetime when the phone does not ask for one."
    )


@implementer(IPlugin, ISubsystem)
class TelephonySubsystem:
    name = "telephony"
    description = "SIP over UDP and TCP: registrar with digest authentication (calls and media to come)"
    config_schema = TelephonyConfig

    def makeService(self, config, context):
        from callcenter.telephony.service import TelephonyService

        return TelephonyService(config, context)


telephony = TelephonySubsystem()
