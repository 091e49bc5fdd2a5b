"""Wiring of the telephony subsystem: listeners, transaction layer, registrar."""

import ipaddress
import os

from prometheus_client import Counter, Gauge
from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from zope.interface import implementer

from callcenter.health import OK, Health
from callcenter.interfaces import IHealthCheck
from callcenter.listeners import datagram_listener, stream_listener
from callcenter.media.engine import MediaEngine
from callcenter.media.remote import MediaWorkers
from callcenter.passwords import verify_password
from callcenter.sip.accounts import REFRESH_SECONDS, AccountCache
from callcenter.sip.authn import Authenticator
from callcenter.sip.calls import Calls
from callcenter.sip.digest import DigestVerifier, NonceCounts, NonceIssuer
from callcenter.sip.dispatch import RequestDispatcher
from callcenter.sip.guard import SourceGuard
from callcenter.sip.location import LocationService
from callcenter.sip.registrar import Registrar, RegistrationPolicy
from callcenter.sip.transaction import Timers, TransactionLayer
from callcenter.sip.trunk import Trunk, udp_destinations
from callcenter.sip.transport import SIPCore, SIPDatagramProtocol, SIPStreamFactory, destination_of
from callcenter.telephony.apps import APPLICATIONS
from callcenter.telephony.b2bua import Connector
from callcenter.telephony.apps import ivr_application
from callcenter.telephony.conferences import Conferences
from callcenter.telephony.routing import Router, TrunkRoute

PURGE_INTERVAL = 60
# The route targets whose calls' media may run in a media worker, besides
# IVR flows and the B2BUA's applications (marked media_in_worker) and
# conference rooms (media_affinity: a room's callers go to one worker).
WORKER_TARGETS = ("echo", "tone", "dtmf")


@implementer(IHealthCheck)
class TelephonyService(MultiService):
    log = Logger()

    def __init__(self, config, context):
        super().__init__()
        clock = context.clock
        self.guard = SourceGuard(
            clock,
            max_failures=config.max_auth_failures,
            block_for=config.block_seconds,
            rate=config.request_rate,
            burst=config.request_burst,
            allow=config.trusted_networks,
        )
        # One secret per process: a node's nonces are its own.  Several nodes
        # behind Kamailio would share one (a later issue).
        issuer = NonceIssuer(os.urandom(32), clock, config.nonce_lifetime)
        verifier = DigestVerifier(
            config.realm, issuer, NonceCounts(clock), algorithms=config.digest_algorithms
        )
        policy = RegistrationPolicy(config.default_expires, config.min_expires, config.max_expires)
        self.accounts = AccountCache(context.store, clock)
        self.location = LocationService(context.store, clock)
        self.authenticator = Authenticator(self.accounts, verifier, self.guard)
        self.registrar = Registrar(self.authenticator, self.location, clock, policy)
        packets = Counter(
            "callcenter_sip_messages",
            "SIP messages received, by outcome (accepted, malformed, dropped).",
            ["outcome"],
            registry=context.metrics.registry,
        )
        self.core = SIPCore(self.guard, metrics=packets)
        self.media = MediaEngine(
            context.reactor,
            clock,
            host=config.media_address,
            port_range=(config.rtp_port_min, config.rtp_port_max),
            inactivity_timeout=config.media_timeout,
            # Tone detection costs ~10x the rest of a call's media work:
            # only for far ends that send no RFC 4733 events.
            inband_dtmf="auto",
        )
        # With media workers, the calls they can carry go there; the rest,
        # and every call while no worker is up, stay on self.media.
        self.media_workers = None
        if not config.media_workers:
            media_for = None
        else:
            self.media_workers = MediaWorkers(
                context.reactor, clock, self.media, config.media_workers, nice=config.media_worker_nice
            )
            in_worker = {APPLICATIONS[target] for target in WORKER_TARGETS}

            def media_for(application):
                affinity = getattr(application, "media_affinity", None)
                if affinity is not None:
                    return self.media_workers.placed(affinity)
                if application in in_worker or getattr(application, "media_in_worker", False):
                    return self.media_workers
                return self.media

            self.log.info("{count} media workers carry the calls' media", count=config.media_workers)
        trusted = config.trusted_networks

        def local_address(destination):
            transport, host, port = destination.local()
            if ipaddress.ip_address(host).is_unspecified:
                host = config.media_address  # Listening on every address: say the one we use.
            return transport, host, port

        def is_trusted(host):
            return any(ipaddress.ip_address(host) in network for network in trusted)

        udp = SIPDatagramProtocol(self.core)
        streams = SIPStreamFactory(self.core)
        secure = SIPStreamFactory(self.core, "TLS")
        self.layer = TransactionLayer(clock, self.core.send, None, Timers(T1=config.t1))
        self.calls = Calls(
            self.layer, clock, self.media, config.media_address, self._route, local_address, media_for=media_for
        )
        self.connector = Connector(
            self.calls,
            self.media,
            self.location,
            lambda binding: destination_of(binding.source, udp, {"tcp": streams, "tls": secure}),
            config.media_address,
            ring_timeout=config.ring_timeout,
            workers=self.media_workers,
        )
        self.trunks = [
            Trunk(
                self.calls,
                udp_destinations(udp, context.reactor),
                trunk.registrar,
                trunk.username,
                trunk.password,
                domain=trunk.domain,
                registrar_port=trunk.port,
                expires=trunk.expires,
            )
            for trunk in config.trunks
        ]
        def verify_pin(pin_hash, pin):
            # argon2 takes tens of milliseconds: never on the reactor thread.
            return deferToThreadPool(context.reactor, context.reactor.getThreadPool(), verify_password, pin_hash, pin)

        self.conferences = Conferences(
            self.media, dict(config.conferences), verify_pin, context.clock, workers=self.media_workers
        )
        for number in dict(config.conferences):
            if dict(config.routes).get(number) != "conference":
                self.log.warn("[telephony.conferences] names {number}, which no route makes a conference room",
                              number=number)
        self.router = Router(
            {number: self._application(target, number, context.components) for number, target in config.routes},
            self.authenticator,
            self.accounts,
            self.connector,
            trunk_routes=[
                TrunkRoute(settings.prefix, trunk, settings.strip)
                for settings, trunk in zip(config.trunks, self.trunks)
            ],
            trusted=is_trusted,
        )
        self.connector.router = self.router
        self.calls.bridge = self.connector.bridge
        self.calls.transfer = self.connector.transfer
        self.layer.user = RequestDispatcher(self.registrar, self.calls, is_trusted)
        self.core.layer = self.layer
        datagram_listener(context, "telephony", "udp", config.udp, udp, "SIP/UDP").setServiceParent(self)
        stream_listener(context, "telephony", "tcp", config.tcp, streams, "SIP/TCP").setServiceParent(self)
        if config.tls:
            stream_listener(context, "telephony", "tls", config.tls, secure, "SIP/TLS").setServiceParent(self)

        self._export_gauges(context.metrics.registry)
        purge = TimerService(PURGE_INTERVAL, self._purge)
        purge.clock = clock
        purge.setServiceParent(self)
        refresh = TimerService(REFRESH_SECONDS, self._refresh_accounts)
        refresh.clock = clock
        refresh.setServiceParent(self)

    def _export_gauges(self, registry):
        """What operations watch on /metrics, read when scraped."""
        gauges = [
            ("callcenter_calls", "Call legs up or being set up.", lambda: len(self.calls)),
            ("callcenter_sip_transactions", "SIP transactions held.", lambda: len(self.layer)),
            ("callcenter_media_sessions", "RTP sessions open.", lambda: len(self._all_media.sessions)),
            (
                "callcenter_media_late_ticks",
                "Media clock ticks run a whole tick late (the process is short of CPU), over every media process.",
                lambda: self._all_media.late_ticks,
            ),
            (
                "callcenter_media_skipped_ticks",
                "Media clock ticks skipped: audio was not sent for them, over every media process.",
                lambda: self._all_media.skipped_ticks,
            ),
            ("callcenter_sip_registrations", "Extensions with a live registration.", self.location.registered_count),
        ]
        for name, help_text, read in gauges:
            Gauge(name, help_text, registry=registry).set_function(read)

    @property
    def _all_media(self):
        """What counts every media session: the workers with our engine, or our engine alone."""
        return self.media_workers if self.media_workers is not None else self.media

    def _route(self, request, source, caller):
        return self.router.route(request, source, caller)

    def _application(self, target, number, components):
        if target == "conference":
            return self.conferences.application(number)
        if target.startswith("ivr:"):
            application = ivr_application(target[len("ivr:"):], components)
            # Prompts, key presses, recordings, transfers: all work with the media in a worker.
            application.media_in_worker = True
            return application
        return APPLICATIONS[target]

    def startService(self):
        self.media.start()
        if self.media_workers is not None:
            self.media_workers.start()
        self.location.load().addCallbacks(
            lambda count: self.log.info("{count} registrations loaded", count=count),
            lambda f: self.log.failure("loading registrations failed", f),
        )
        super().startService()
        # Not children: they must stop before the listeners, see stopService.
        for trunk in self.trunks:
            trunk.startService()

    def stopService(self):
        # Calls end with a BYE rather than with silence, and trunks
        # un-REGISTER, while the listeners are still there for the answers.
        ended = self.calls.hangup_all("shutdown")
        trunks = defer.gatherResults([defer.maybeDeferred(trunk.stopService) for trunk in self.trunks])
        d = defer.gatherResults([ended, trunks]).addBoth(lambda _: super(TelephonyService, self).stopService())

        def listeners_stopped(result):
            stopping = [self.media.stop(), self.location.flushed()]
            if self.media_workers is not None:
                stopping.append(self.media_workers.stop())
            stopped = defer.gatherResults(stopping)
            return stopped.addCallback(lambda _: result)

        return d.addBoth(listeners_stopped)

    def _purge(self):
        # A failure is logged and the next round tries again.
        return self.location.purge_expired().addErrback(
            lambda f: self.log.failure("purging expired registrations failed", f)
        )

    def _refresh_accounts(self):
        return self.accounts.refresh().addErrback(lambda f: self.log.failure("reading SIP accounts failed", f))

    def check_health(self):
        return Health(
            OK,
            {
                "calls": len(self.calls),
                "transactions": len(self.layer),
                "blocked_sources": len(self.guard.blocked_sources()),
                "conferences": len(self.conferences),
                # Late and skipped ticks say the shared clock is starved.
                # With workers: summed over them and us, and each worker's own.
                "media": self._all_media.stats,
                "trunks": {trunk.username: trunk.status() for trunk in self.trunks},
            },
        )
