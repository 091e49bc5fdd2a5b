import os
import re
from dataclasses import dataclass

from twisted.plugin import IPlugin
from zope.interface import implementer

from callcenter.config import (
    DatagramAddress,
    HostPort,
    IPAddress,
    Integer,
    Kind,
    Mismatch,
    NetworkList,
    Number,
    ServerEndpoint,
    Text,
    setting,
    show,
)
from callcenter.interfaces import ISubsystem


class RouteTable(Kind):
    """
    Dialled numbers and what answers them: a table such as
    C{{"9196" = "echo", "9197" = "tone"}}.  Held as sorted (number, target)
    pairs, since settings are frozen.
    """

    targets = ("echo", "tone", "dtmf", "conference")
    expected = (
        'a table of dialled numbers to "echo", "tone", "dtmf", "conference" (a room named by '
        'the number) or "ivr:<flow>" (an IVR flow, e.g. "ivr:trading"), such as {"9196" = "echo"}'
    )

    def parse(self, value):
        if not isinstance(value, dict):
            raise Mismatch()
        for number, target in value.items():
            if not number or not all(c in "0123456789*#+" for c in number):
                raise Mismatch(f"not a dialable number: {show(number)}")
            if target not in self.targets and not re.fullmatch(r"ivr:[a-z][a-z0-9_-]*", target):
                raise Mismatch(f"unknown target {show(target)} for {number}")
        return tuple(sorted(value.items()))


class ConferenceTable(Kind):
    """
    How conference rooms are run, by number: C{{"9300" = {moderator_pin_hash
    = "$argon2id$...", listeners_muted = true}}}.  Rooms not named are open.
    """

    keys = {"moderator_pin_hash", "wait_for_moderator", "end_with_moderator", "listeners_muted"}
    expected = (
        'a table of room numbers to tables of moderator_pin_hash (from "callcenter hash-pin"), '
        "wait_for_moderator, end_with_moderator and listeners_muted (true or false)"
    )

    def parse(self, value):
        from callcenter.telephony.conferences import RoomSettings

        if not isinstance(value, dict):
            raise Mismatch()
        rooms = []
        for number, table in value.items():
            if not number or not all(c in "0123456789*#+" for c in number):
                raise Mismatch(f"not a dialable number: {show(number)}")
            if not isinstance(table, dict):
                raise Mismatch(f"room {number} is not a table")
            unknown = set(table) - self.keys
            if unknown:
                raise Mismatch(f"room {number}: unknown key {', '.join(sorted(unknown))}")
            pin_hash = table.get("moderator_pin_hash")
            if pin_hash is not None and (not isinstance(pin_hash, str) or not pin_hash.startswith("$argon2")):
                raise Mismatch(f"room {number}: moderator_pin_hash is not an argon2 hash (callcenter hash-pin makes one)")
            flags = {key: table.get(key, False) for key in self.keys - {"moderator_pin_hash"}}
            for key, flag in flags.items():
                if not isinstance(flag, bool):
                    raise Mismatch(f"room {number}: {key} is not true or false")
            if any(flags.values()) and pin_hash is None:
                raise Mismatch(f"room {number}: a room run by a moderator needs moderator_pin_hash")
            rooms.append((number, RoomSettings(moderator_pin_hash=pin_hash, **flags)))
        return tuple(sorted(rooms))


@dataclass(frozen=True)
class TrunkSettings:
    name: str
    registrar: str
    port: int
    domain: str
    username: str
    password: str
    prefix: str
    strip: int
    expires: int


class TrunkList(Kind):
    """
    Carrier trunks: an array of tables.  The password is never in the file:
    C{password_env} names the environment variable that holds it (set by
    systemd's EnvironmentFile or the operator).
    """

    expected = (
        'an array of tables such as [{name = "carrier", registrar = "sip.carrier.example:5060", '
        'username = "0755123", password_env = "CARRIER_PASSWORD", prefix = "0", strip = 1}]'
    )
    keys = {"name", "registrar", "domain", "username", "password_env", "prefix", "strip", "expires"}
    required = {"name", "registrar", "username", "password_env", "prefix"}

    def parse(self, value):
        if not isinstance(value, list):
            raise Mismatch()
        trunks = []
        for index, table in enumerate(value):
            if not isinstance(table, dict):
                raise Mismatch(f"trunk {index + 1} is not a table")
            unknown, missing = set(table) - self.keys, self.required - set(table)
            if unknown or missing:
                raise Mismatch(
                    f"trunk {index + 1}: " + "; ".join(
                        [f"unknown key {k}" for k in sorted(unknown)] + [f"missing {k}" for k in sorted(missing)]
                    )
                )
            host, _, port = str(table["registrar"]).rpartition(":")
            if not host or not port.isdigit():
                host, port = str(table["registrar"]), "5060"
            password = os.environ.get(str(table["password_env"]))
            if not password:
                raise Mismatch(f"trunk {table['name']}: environment variable {table['password_env']} is not set")
            prefix, strip, expires = str(table["prefix"]), table.get("strip", 0), table.get("expires", 3600)
            if not prefix or not all(c in "0123456789*#+" for c in prefix):
                raise Mismatch(f"trunk {table['name']}: prefix {show(prefix)} is not dialable digits")
            if not isinstance(strip, int) or not 0 <= strip <= len(prefix):
                raise Mismatch(f"trunk {table['name']}: strip must be 0 to the prefix's length")
            if not isinstance(expires, int) or not 60 <= expires <= 86400:
                raise Mismatch(f"trunk {table['name']}: expires must be 60-86400 seconds")
            trunks.append(
                TrunkSettings(
                    str(table["name"]), host, int(port), str(table.get("domain", host)),
                    str(table["username"]), password, prefix, strip, expires,
                )
            )
        return tuple(trunks)


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
    tls: str = setting(
        ServerEndpoint("ssl:5061:privateKey=/etc/callcenter/sip.key:certKey=/etc/callcenter/sip.pem:interface=127.0.0.1", optional=True),
        "",
        "Where SIP over TLS listens (RFC 3261 §26.2.1: phones that keep their signalling private); "
        'empty for none.  Key and certificate files are the operator\'s, never in the repository.',
        shown='""',
    )
    realm: str = setting(
        Text(), "callcenter", "Digest realm; SIP accounts' HA1 values are made for it."
    )
    digest_algorithms: tuple = setting(
        AlgorithmList(),
        ("MD5",),
        "Digest challenges offered, preferred first (RFC 8760).  MD5 alone by default: "
        "phones in the field break on a SHA-256 challenge (baresip 1.0 gives up when it "
        "sees one, SIPp 3.6 answers the topmost whatever it is); offer "
        '["SHA-256", "MD5"] once every phone copes.',
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
    routes: tuple = setting(
        RouteTable(),
        (),
        "Public service numbers, answered for any caller, as a carrier delivers them.",
        shown="{}",
    )
    conferences: tuple = setting(
        ConferenceTable(),
        (),
        "Conference rooms run by a moderator (who keys # PIN #): [telephony.conferences.\"9300\"] "
        "moderator_pin_hash, wait_for_moderator, end_with_moderator, listeners_muted.  Others are open rooms.",
        shown="{}",
    )
    media_address: str = setting(
        IPAddress(), "127.0.0.1", "The IP address RTP uses, bound and written in SDP."
    )
    rtp_port_min: int = setting(Integer(1024, 65534), 20000, "Lowest RTP port (even).")
    rtp_port_max: int = setting(Integer(1025, 65535), 29999, "Highest RTP port.")
    media_timeout: float = setting(
        Number(5, 3600), 30.0, "Seconds without RTP from a caller (not on hold) before the call is ended."
    )
    media_workers: int = setting(
        Integer(0, 64),
        0,
        "Media worker processes, each carrying its share of the calls' RTP on its own clock (one "
        "process holds about 500 calls: give one per core).  0 keeps all media in the server process, "
        "as do calls that come while no worker is ready.",
    )
    media_worker_nice: int = setting(
        Integer(-20, 0),
        0,
        "Scheduling priority (nice) of the media workers: below 0 they get a core before other work when "
        "the machine is busy, as Asterisk's -p does.  Needs root or CAP_SYS_NICE (systemd: LimitNICE=); "
        "without, the workers log it and run at 0.",
    )
    trunks: tuple = setting(
        TrunkList(),
        (),
        "Carrier trunks we register with and dial out through (authenticated extensions only).",
        shown="[]",
    )
    ring_timeout: int = setting(
        Integer(5, 600), 60, "Seconds an extension or an outside number may ring before the caller hears 480."
    )
    t1: float = setting(
        Number(0.05, 5),
        0.5,
        "RFC 3261 T1 in seconds, the round-trip estimate every SIP timer is a multiple of "
        "(retransmissions from T1, giving up after 64*T1).  Lower it only on a network known "
        "to be faster (§17.1.1.1).",
    )
    min_expires: int = setting(Integer(1, 86400), 60, "Shortest registration accepted (423 below it).")
    max_expires: int = setting(Integer(1, 86400), 7200, "Longest registration granted.")
    default_expires: int = setting(
        Integer(1, 86400), 3600, "Registration lifetime when the phone does not ask for one."
    )


@implementer(IPlugin, ISubsystem)
class TelephonySubsystem:
    name = "telephony"
    description = "SIP over UDP and TCP: registrar with digest authentication, calls to service numbers with RTP media"
    config_schema = TelephonyConfig

    def makeService(self, config, context):
        from callcenter.telephony.service import TelephonyService

        return TelephonyService(config, context)


telephony = TelephonySubsystem()
