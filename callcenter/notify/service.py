"""
Assembling the notify subsystem: a sender per configured channel, the
outbox in front of them, the trading events it listens to, and the staff's
HTTP API (served by the web subsystem).
"""

from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from zope.interface import implementer

from callcenter.errors import StartupError
from callcenter.health import Health
from callcenter.interfaces import IHealthCheck, IWebAPI
from callcenter.notify.api import InvestorNotificationsAPI, NotificationsAPI
from callcenter.notify.metrics import NotifyMetrics
from callcenter.notify.outbox import Outbox
from callcenter.notify.templates import Renderer, TemplateError
from callcenter.notify.worker import Backoff
from callcenter.trading.events import AlertFired, OrderFilled, OrderRejected
from callcenter.web.staff_auth import StaffAuthenticator

_log = Logger()

OK = "ok"


def _host_port(text, default_port):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        return text, default_port
    return host.strip("[]"), int(port)


def _endpoint(reactor, text, default_port):
    host, port = _host_port(text, default_port)
    return HostnameEndpoint(reactor, host, port, timeout=30)


def sms_sender(config, reactor, max_segments):
    from callcenter.notify.smpp.sender import SMPPSender

    return SMPPSender(
        reactor, _endpoint(reactor, config.smsc, 2775), config.system_id, config.password_env.value,
        config.system_type, source_addr=config.source_addr, source_addr_ton=config.source_addr_ton,
        source_addr_npi=config.source_addr_npi, window=config.window, max_segments=max(max_segments, 1),
        link_timeout=config.link_timeout,
    )


def pager_sender(config, reactor, max_chars):
    from callcenter.notify.snpp import SNPPSender

    login = (config.login, config.password_env.value if config.password_env else "") if config.login else None
    return SNPPSender(
        reactor, _endpoint(reactor, config.terminal, 444), connections=config.connections, login=login,
        utf8=config.utf8, mess_limit=max_chars,
    )


def email_sender(config, reactor):
    from callcenter.notify.smtp.relays import Relay
    from callcenter.notify.smtp.sender import SmtpSender

    relays = []
    for relay in config.relays:
        trust = None
        if relay.ca_file:
            with open(relay.ca_file, "rb") as f:
                trust = f.read()
        relays.append(Relay(
            relay.host, relay.port, relay.starttls, username=relay.username or None,
            password=relay.password_env.value if relay.password_env else None, trust_root=trust,
        ))
    return SmtpSender(reactor, relays, config.from_address, from_name=config.from_name,
                      pool_size=config.connections)


def webhook_sender(config, reactor):
    from callcenter.notify.webhook import WebhookSender

    return WebhookSender(reactor, config.url, config.secret_env.value.encode("utf-8"), window=config.window,
                         allow_http=config.allow_http)


@implementer(IHealthCheck)
class NotifyService(MultiService):
    """The senders (children) and the outbox over them; the outbox starts once the senders have."""

    def __init__(self, config, context):
        super().__init__()
        self._config = config
        self._context = context
        reactor = context.reactor
        self.senders = {}
        for channel, section, build in (
            ("sms", config.sms, lambda c: sms_sender(c, reactor, config.sms_max_segments)),
            ("pager", config.pager, lambda c: pager_sender(c, reactor, config.pager_max_chars)),
            ("email", config.email, lambda c: email_sender(c, reactor)),
            ("webhook", config.webhook, lambda c: webhook_sender(c, reactor)),
        ):
            if section is not None:
                sender = build(section)
                sender.setServiceParent(self)
                self.senders[channel] = sender
        try:
            renderer = Renderer(config.templates, tuple(self.senders), config.sms_max_segments,
                                config.pager_max_chars)
        except (TemplateError, OSError) as e:
            self._problem = f"{context.config.where('notify', 'templates')}: {e}"
            renderer = None
        else:
            self._problem = None
        self.outbox = Outbox(
            context.store, context.clock, renderer, list(self.senders.values()),
            rates={channel: getattr(config, channel).rate for channel in self.senders},
            max_attempts=config.max_attempts,
            backoff=Backoff(config.retry_first_seconds, config.retry_longest_seconds),
            alerts_are_urgent=config.alerts_override_quiet_hours,
            sweep_seconds=config.sweep_seconds,
            metrics=NotifyMetrics(context.metrics.registry),
        )
        self._subscriptions = []

        def in_thread(function, *args):
            return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)

        staff = StaffAuthenticator(context.store, context.clock, in_thread)
        context.components.provide(IWebAPI, NotificationsAPI(context.store, context.clock, staff, self.outbox))
        context.components.provide(IWebAPI, InvestorNotificationsAPI(context.store, context.clock, context.components))

    def startService(self):
        if self._problem is not None:
            raise StartupError(self._problem)
        super().startService()
        bus = self._context.bus
        for event_type in (OrderFilled, AlertFired, OrderRejected):
            self._subscriptions.append(bus.subscribe(event_type, self.outbox.notify, "notify"))
        self._started = self.outbox.start()
        self._started.addErrback(lambda f: _log.failure("the outbox could not start", f))
        channels = ", ".join(sorted(self.senders)) or "none (messages are stored until a channel is configured)"
        _log.info("notifications: channels {channels}", channels=channels)

    @defer.inlineCallbacks
    def stopService(self):
        for subscription in self._subscriptions:
            subscription.cancel()
        self._subscriptions = []
        yield self.outbox.stop()
        yield super().stopService()

    def check_health(self):
        detail = {
            channel: {"waiting": worker.waiting, "in_flight": worker.in_flight}
            for channel, worker in self.outbox.workers.items()
        }
        return Health(OK, {"channels": detail})


def notify_service(config, context):
    return NotifyService(config, context)
