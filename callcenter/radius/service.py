"""
Assembling the radius subsystem: the authentication and accounting
listeners, the policy and the accounting sink behind them, the
Disconnect-Request client that ends the sessions of users out of time or
kicked by staff, and the staff's HTTP API (served by the web subsystem).
"""

from twisted.application.service import MultiService
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from callcenter.config import HostPort
from callcenter.interfaces import IWebAPI
from callcenter.listeners import datagram_listener
from callcenter.radius.accounting import AccountingSink
from callcenter.radius.accounts import record_disconnect
from callcenter.radius.api import InternetAPI
from callcenter.radius.chap import chap_secrets_from_environment
from callcenter.radius.clients import RadiusClients
from callcenter.radius.dictionary import load_dictionary
from callcenter.radius.directory import AccountDirectory
from callcenter.radius.disconnect import Disconnector
from callcenter.radius.interfaces import IAccountingSink, IDisconnector
from callcenter.radius.metrics import RadiusMetrics
from callcenter.radius.policy import AccessPolicy
from callcenter.radius.protocol import AccountingProtocol, AuthenticationProtocol
from callcenter.web.staff_auth import StaffAuthenticator

_log = Logger()


@implementer(IAccountingSink)
class QuotaEnforcingSink:
    """
    The accounting sink, and then the disconnection of the sessions it
    reports out of monthly time.  The NAS's Accounting-Response does not
    wait for the disconnection: only for the record to be durable.
    """

    def __init__(self, sink, disconnector):
        self._sink = sink
        self._disconnector = disconnector

    def record(self, record):
        return self._sink.record(record).addCallback(self._disconnect)

    def keep(self, record, done, context):
        """L{AccountingSink.keep}, then the disconnections: no Deferred per record."""
        self._sink.keep(record, self._kept, (done, context))

    def _kept(self, outcome, caller):
        done, context = caller
        # The record is durable: the NAS is answered whatever the
        # disconnections do.
        done(outcome, context)
        if not isinstance(outcome, Failure):
            self._disconnect(outcome)

    def _disconnect(self, sessions):
        for session in sessions:
            self._disconnector.disconnect(session, "quota_exhausted").addErrback(
                lambda failure, session=session: _log.failure(
                    "could not disconnect session {id} of {user}", failure, id=session.id, user=session.username
                )
            )

    def idle(self):
        return self._sink.idle()


def radius_service(config, context):
    store, clock, reactor = context.store, context.clock, context.reactor

    def in_thread(function, *args):
        # argon2 takes tens of milliseconds: never on the reactor thread.
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)

    def record(session, **outcome):
        return store.transaction(record_disconnect, session.id, **outcome)

    dictionary = load_dictionary(config.vendor_dictionaries)
    clients = RadiusClients(config.clients)
    metrics = RadiusMetrics(context.metrics.registry)
    directory = AccountDirectory(store, clock, ttl=config.account_cache_seconds)
    policy = AccessPolicy(
        store, clock, in_thread, directory, chap_secrets=chap_secrets_from_environment(config.chap_key_variable),
        max_attempts=config.max_attempts, credential_ttl=config.credential_cache_seconds,
    )
    disconnector = Disconnector(
        clients, clock, record, dictionary=dictionary, metrics=metrics,
        tries=config.disconnect_tries, timeout=config.disconnect_timeout,
    )
    sink = QuotaEnforcingSink(AccountingSink(store, clock, directory=directory), disconnector)
    context.components.provide(IDisconnector, disconnector)
    # The API's changes are made through the store; the policy (and with it
    # the directory) forgets each account changed, so this server sees it
    # at its next Access-Request.
    staff = StaffAuthenticator(store, clock, in_thread)
    context.components.provide(IWebAPI, InternetAPI(store, clock, staff, policy, disconnector))

    service = MultiService()
    auth = AuthenticationProtocol(clients, policy, clock, metrics=metrics, dictionary=dictionary)
    accounting = AccountingProtocol(clients, sink, clock, metrics=metrics, dictionary=dictionary)
    datagram_listener(context, "radius", "auth", config.auth, auth, "RADIUS authentication").setServiceParent(service)
    datagram_listener(
        context, "radius", "accounting", config.accounting, accounting, "RADIUS accounting"
    ).setServiceParent(service)
    # Disconnect-Requests leave from an ephemeral port on the authentication address.
    datagram_listener(
        context, "radius", "auth", HostPort(config.auth.host, 0), disconnector, "RADIUS dynamic authorization"
    ).setServiceParent(service)
    return service
