from dataclasses import dataclass

from twisted.plugin import IPlugin
from zope.interface import implementer

from callcenter.config import EnvironmentSecret, Flag, Integer, Kind, Mismatch, Number, OneOf, Section, Text, setting
from callcenter.interfaces import ISubsystem


def _rate():
    return setting(
        Number(0, 100_000), 0.0,
        "Messages a second at most on this channel (the contract's TPS); 0: no limit of ours.",
    )


@dataclass(frozen=True)
class SMSConfig:
    smsc: str = setting(Text(), help="The SMSC as host:port (SMPP 3.4 over TCP).")
    system_id: str = setting(Text(max_length=15), help="The SMPP account (bind_transceiver system_id, at most 15 characters).")
    password_env: object = setting(
        EnvironmentSecret(max_length=8), help="The environment variable holding its password (SMPP 3.4: at most 8 characters)."
    )
    system_type: str = setting(Text(nonempty=False), "", "The account's system_type, if the SMSC wants one.")
    source_addr: str = setting(Text(nonempty=False), "", "Who the SMS is from (the broker's short code); empty: the SMSC's default.")
    source_addr_ton: int = setting(Integer(0, 6), 0, "TON of source_addr (5 alphanumeric, 3 network specific).")
    source_addr_npi: int = setting(Integer(0, 18), 0, "NPI of source_addr.")
    window: int = setting(Integer(1, 1000), 100, "submit_sm in flight at once.")
    link_timeout: float = setting(
        Number(1, 600), 30.0,
        "Seconds a message waits for the SMPP link (the SMSC down) before the attempt counts as failed and waits for its retry.",
    )
    rate: float = _rate()


@dataclass(frozen=True)
class PagerConfig:
    terminal: str = setting(Text(), help="The paging terminal as host:port (SNPP, RFC 1861; port 444 by convention).")
    login: str = setting(Text(nonempty=False), "", "SNPP LOGIn user, if the terminal wants one.")
    password_env: object = setting(EnvironmentSecret(optional=True), "", "The environment variable holding its password.")
    utf8: bool = setting(Flag(), False, "Send UTF-8 text; false: 7-bit ASCII, other characters as '?' (most pagers).")
    connections: int = setting(Integer(1, 16), 1, "Connections to the terminal, one page at a time each.")
    rate: float = _rate()


@dataclass(frozen=True)
class RelayConfig:
    host: str = setting(Text(), help="The relay's host name.")
    port: int = setting(Integer(1, 65535), 587, "Its port (587 submission, 25 relay).")
    starttls: str = setting(OneOf("required", "optional", "off"), "required", "STARTTLS before anything else.")
    username: str = setting(Text(nonempty=False), "", "AUTH user; empty: no AUTH.")
    password_env: object = setting(EnvironmentSecret(optional=True), "", "The environment variable holding the AUTH password.")
    ca_file: str = setting(Text(nonempty=False), "", "PEM file of the CAs its certificate must chain to; empty: the system's.")


class RelayList(Kind):
    expected = 'an array of tables such as [{host = "smtp.example.com", port = 587, username = "notify", password_env = "SMTP_PASSWORD"}]'

    def parse(self, value):
        if not isinstance(value, list) or not value:
            raise Mismatch()
        relays, problems = [], []
        for index, table in enumerate(value, 1):
            try:
                relays.append(Section(RelayConfig).parse(table))
            except Mismatch as e:
                problems.append(f"relay {index}: {e or 'not a table'}")
        if problems:
            raise Mismatch("; ".join(problems))
        return tuple(relays)


@dataclass(frozen=True)
class EmailConfig:
    relays: tuple = setting(RelayList(), help="The SMTP relays, tried in order: the next takes over when one fails.")
    from_address: str = setting(Text(), help="The sender of the messages (envelope and From).")
    from_name: str = setting(Text(nonempty=False), "", "The From display name (UTF-8, e.g. the broker's name in Chinese).")
    connections: int = setting(Integer(1, 64), 4, "Connections kept open, each sending messages one after another.")
    rate: float = _rate()


@dataclass(frozen=True)
class WebhookConfig:
    url: str = setting(Text(), help="Where events are POSTed (https://).")
    secret_env: object = setting(EnvironmentSecret(), help="The environment variable holding the HMAC-SHA256 signing key.")
    allow_http: bool = setting(Flag(), False, "Allow a plain http:// URL (a receiver on this host).")
    window: int = setting(Integer(1, 256), 16, "Requests in flight at once.")
    rate: float = _rate()


@dataclass(frozen=True)
class NotifyConfig:
    templates: str = setting(Text(), "etc/notify/templates", "Directory of the message templates (event.channel.language.j2).")
    max_attempts: int = setting(Integer(1, 100), 8, "Attempts before a message is dead-lettered.")
    retry_first_seconds: float = setting(Number(0.1, 3600), 5.0, "Wait before the second attempt; doubling after, with ±50% jitter.")
    retry_longest_seconds: float = setting(Number(1, 86400), 1800.0, "The longest wait between attempts.")
    alerts_override_quiet_hours: bool = setting(Flag(), True, "Price alerts reach investors in their quiet hours too.")
    sms_max_segments: int = setting(Integer(1, 10), 3, "Segments a rendered SMS may take; longer texts are cut with an ellipsis.")
    pager_max_chars: int = setting(Integer(16, 1000), 240, "Characters a rendered page may take.")
    sweep_seconds: float = setting(Number(0, 3600), 30.0, "How often the outbox looks for messages queued by other processes (the CLI); 0: never.")
    sms: object = setting(Section(SMSConfig), None, "SMS over SMPP: [notify.sms]; absent: no SMS.", shown="none")
    pager: object = setting(Section(PagerConfig), None, "Pages over SNPP: [notify.pager]; absent: no pages.", shown="none")
    email: object = setting(Section(EmailConfig), None, "E-mail over SMTP: [notify.email]; absent: no e-mail.", shown="none")
    webhook: object = setting(Section(WebhookConfig), None, "A signed HTTPS webhook: [notify.webhook]; absent: none.", shown="none")


@implementer(IPlugin, ISubsystem)
class NotifySubsystem:
    name = "notify"
    description = "notifications: fills, price alerts and rejections by SMS (SMPP), pager (SNPP), e-mail (SMTP) and webhook"
    config_schema = NotifyConfig

    def makeService(self, config, context):
        from callcenter.notify.service import notify_service

        return notify_service(config, context)


notify = NotifySubsystem()
