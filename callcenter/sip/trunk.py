"""
A carrier trunk: we register our contact with the carrier's registrar as a
client (RFC 3261 §10.2), keep the registration fresh, back off when the
carrier fails (RFC 5626 §4.5), unregister on shutdown, and dial out through
it with its credentials.

The trunk is a Twisted service: the telephony service adds it as a child.
How a registrar's host becomes a transport destination is injected
(C{destination_for}); L{udp_destinations} does it for our UDP socket.
"""

import random
import secrets
from datetime import datetime, timezone

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.logger import Logger
from zope.interface import implementer

from callcenter.health import FAILING, OK, Health
from callcenter.interfaces import IHealthCheck
from callcenter.sip.address import NameAddr, SipURI
from callcenter.sip.digest import authorization_for, choose_challenge, parse_auth_params
from callcenter.sip.message import Request
from callcenter.sip.outbound import dial
from callcenter.sip.transaction import ClientOwner
from callcenter.sip.transport import DatagramDestination

# Header carrying the challenge, and the one carrying our answer, by status.
_CHALLENGES = {
    401: ("WWW-Authenticate", "Authorization"),
    407: ("Proxy-Authenticate", "Proxy-Authorization"),
}


def refresh_delay(expires, margin):
    """
    When to refresh a registration granted for C{expires} seconds: at the
    lesser of half of it and C{margin} before it runs out, so a refresh
    that needs a challenge and a retransmission or two still lands in time.
    """
    if expires <= margin:
        return expires / 2
    return min(expires / 2, expires - margin)


def backoff_delay(failures, base, cap, uniform):
    """
    RFC 5626 §4.5: after C{failures} consecutive failures wait a random
    time between 50% and 100% of min(cap, base * 2**failures), so that a
    carrier coming back is not hit by every client at once.
    C{uniform(a, b)} draws the random number.
    """
    return uniform(0.5, 1.0) * min(cap, base * 2**failures)


def udp_destinations(protocol, resolver):
    """
    A C{destination_for} for trunks over our UDP socket (C{protocol}, a
    L{SIPDatagramProtocol}): the host is resolved with C{resolver}
    (L{twisted.internet.interfaces.IResolverSimple}, e.g. the reactor) on
    each registration, so a carrier that moves is followed.
    """

    def destination_for(transport, host, port):
        if transport.upper() != "UDP":
            raise ValueError(f"no {transport} trunks yet, only UDP")
        if isIPAddress(host) or isIPv6Address(host):
            return DatagramDestination(protocol, (host, port))
        d = resolver.resolve(host)
        return d.addCallback(lambda address: DatagramDestination(protocol, (address, port)))

    return destination_for


class TrunkUnavailable(Exception):
    """The trunk has no destination yet: it has never reached its registrar."""


def _when(seconds):
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


@implementer(IHealthCheck)
class Trunk(Service, ClientOwner):
    """
    One carrier account.  C{state}: stopped, registering (first attempt),
    registered, failing (the last attempt failed; retrying with backoff),
    unregistering (stopping).
    """

    log = Logger()

    def __init__(
        self,
        calls,
        destination_for,
        registrar_host,
        username,
        password,
        domain=None,
        registrar_port=5060,
        transport="UDP",
        expires=3600,
        contact=None,
        auth_username=None,
        margin=30,
        backoff_base=30,
        backoff_cap=1800,
        stop_timeout=5,
        uniform=random.uniform,
    ):
        """
        @param calls: the L{Calls} of our endpoint (transaction layer,
            clock, Via and Contact for our end, and where dialled calls go).
        @param destination_for: C{(transport, host, port) -> destination}
            (or a Deferred firing with one), see L{udp_destinations}.
        @param domain: the carrier's domain, in the REGISTER's Request-URI,
            To and From and in the URIs we dial; the registrar's host if None.
        @param contact: our contact URI; by default C{username} at the
            address of our end of the destination.
        @param auth_username: the digest username, when not C{username}.
        @param margin: refresh at least this many seconds before expiry.
        @param stop_timeout: how long stopping waits for the un-REGISTER.
        """
        self._calls = calls
        self._clock = calls.clock
        self._destination_for = destination_for
        self.registrar = (transport.upper(), registrar_host, registrar_port)
        self.domain = domain or registrar_host
        self.username = username
        self._auth_username = auth_username or username
        self._password = password
        self._wanted_expires = expires
        self._contact = contact
        self._margin = margin
        self._backoff = (backoff_base, backoff_cap)
        self._stop_timeout = stop_timeout
        self._uniform = uniform
        # §10.2: one Call-ID for every registration from us to this registrar,
        # the CSeq growing across them.
        self._call_id = f"{secrets.token_hex(16)}@callcenter"
        self._tag = secrets.token_hex(6)
        self._cseq = 0
        self._destination = None
        self._transaction = None
        self._timer = None
        self._challenge = None  # (status, challenge value) to answer, nonce count
        self._nonce_count = 0
        self._fresh_challenge_answered = False
        self._stopped = None
        self._registration_waiters = []
        self.state = "stopped"
        self.registered_until = None
        self.failing_since = None
        self.failures = 0
        self.last_status = None
        self.last_reason = None

    def __repr__(self):
        transport, host, port = self.registrar
        return f"<Trunk {self.username}@{self.domain} via {transport.lower()}:{host}:{port}>"

    # Service

    def startService(self):
        super().startService()
        self.state = "registering"
        self._attempt()

    def stopService(self):
        super().stopService()
        self._cancel_timer()
        self._transaction = None
        bound = self.registered_until is not None and self.registered_until > self._clock.seconds()
        if not bound or self._destination is None:
            self.state = "stopped"
            return None
        # Remove our binding (§10.2.2) rather than leave the carrier sending
        # calls to a server that is gone; but never hold shutdown for long.
        self.state = "unregistering"
        self._stopped = defer.Deferred()
        self._timer = self._clock.callLater(self._stop_timeout, self._unregistered, "no answer")
        self._send(0, fresh=True)
        return self._stopped

    def _unregistered(self, outcome):
        self._cancel_timer()
        self._transaction = None
        self.state = "stopped"
        self.registered_until = None
        self.log.info("{trunk}: unregistered ({outcome})", trunk=repr(self), outcome=outcome)
        stopped, self._stopped = self._stopped, None
        if stopped is not None:
            stopped.callback(None)

    # Status

    def status(self):
        """What the health check shows: registered until X, or failing since Y with the last status."""
        return {
            "state": self.state,
            "registrar": "{}:{}:{}".format(self.registrar[0].lower(), *self.registrar[1:]),
            "registered_until": _when(self.registered_until),
            "failing_since": _when(self.failing_since),
            "last_status": self.last_status,
            "last_reason": self.last_reason,
        }

    def when_registered(self):
        """A Deferred firing with the trunk once it is registered (at once if it is)."""
        if self.state == "registered":
            return defer.succeed(self)
        d = defer.Deferred()
        self._registration_waiters.append(d)
        return d

    def check_health(self):
        return Health(FAILING if self.state == "failing" else OK, self.status())

    # Dialling out

    def dial(self, number, session, caller_number=None, display_name=None, **options):
        """
        Call C{number} through the carrier with the trunk's credentials:
        an L{OutboundCall} to C{sip:number@domain}, From our C{caller_number}
        (the account's username by default) at the carrier's domain.  Other
        C{options} (asserted_identity, progress, correlation_id) go to the call.

        @raise TrunkUnavailable: the registrar was never reached.
        """
        if self._destination is None:
            raise TrunkUnavailable(repr(self))
        return dial(
            self._calls,
            f"sip:{number}@{self.domain}",
            self._destination,
            session,
            f"sip:{caller_number or self.username}@{self.domain}",
            display_name=display_name,
            credentials=(self._auth_username, self._password),
            **options,
        )

    # Registering

    def _attempt(self):
        self._timer = None
        transport, host, port = self.registrar
        d = defer.maybeDeferred(self._destination_for, transport, host, port)
        d.addCallbacks(self._reached, self._unreachable)

    def _reached(self, destination):
        if not self.running:
            return
        self._destination = destination
        self._send(self._wanted_expires, fresh=True)

    def _unreachable(self, failure):
        if self.running:
            self._failed(None, f"cannot reach the registrar: {failure.getErrorMessage()}")

    def _send(self, expires, fresh=False):
        """
        A REGISTER for C{expires} seconds (0 removes our binding).  C{fresh}
        starts an attempt: it may answer one new challenge.
        """
        if fresh:
            self._fresh_challenge_answered = False
        destination = self._destination
        if self._contact is None:
            uri = SipURI.parse(self._calls.local_contact(destination))
            uri.user = self.username
            self._contact = str(uri)
        self._cseq += 1
        aor = f"<sip:{self.username}@{self.domain}>"
        request = Request("REGISTER", f"sip:{self.domain}")
        request.headers.add("Via", self._calls.via(destination))
        request.headers.add("Max-Forwards", "70")
        request.headers.add("From", f"{aor};tag={self._tag}")
        request.headers.add("To", aor)
        request.headers.add("Call-ID", self._call_id)
        request.headers.add("CSeq", f"{self._cseq} REGISTER")
        request.headers.add("Contact", f"<{self._contact}>")
        request.headers.add("Expires", str(expires))
        request.headers.add("User-Agent", "callcenter")
        if self._challenge is not None:
            # Answer the last challenge again (nonce count + 1, RFC 7616
            # §3.4): a registrar that still takes the nonce saves a round trip.
            status, challenge = self._challenge
            self._nonce_count += 1
            try:
                value = authorization_for(
                    challenge, "REGISTER", request.uri, self._auth_username, self._password,
                    lambda: secrets.token_hex(8), self._nonce_count,
                )
            except ValueError:
                self._challenge = None
            else:
                request.headers.add(_CHALLENGES[status][1], value)
        self._requested = expires
        self._transaction = self._calls.layer.send_request(
            request, destination, destination.reliable, self
        )

    def response_received(self, transaction, response):
        status = response.status
        if transaction is not self._transaction or status < 200:
            return
        if status in _CHALLENGES:
            self._challenged(response)
        elif status == 423 and self.state != "unregistering":
            self._too_brief(response)
        elif status < 300:
            if self.state == "unregistering":
                self._unregistered("done")
            else:
                self._registered(self._granted(response))
        elif self.state == "unregistering":
            self._unregistered(f"{status} {response.reason}")
        else:
            self._failed(status, response.reason, response)

    def transaction_timed_out(self, transaction):
        if transaction is not self._transaction:
            return
        if self.state == "unregistering":
            self._unregistered("no answer")
        else:
            self._failed(408, "Request Timeout")

    def _challenged(self, response):
        status = response.status
        challenge = choose_challenge(response.headers.get_all(_CHALLENGES[status][0]))
        # A challenge after our answer to a fresh one means the credentials
        # are wrong, unless it only says our nonce went stale (RFC 7616 §3.3).
        refused = self._fresh_challenge_answered and not _is_stale(challenge)
        if challenge is None or refused:
            self._challenge = None
            if self.state == "unregistering":
                self._unregistered(f"{status} {response.reason}")
            else:
                self._failed(status, response.reason, response)
            return
        self._challenge = (status, challenge)
        self._nonce_count = 0
        self._fresh_challenge_answered = True
        self._send(self._requested)

    def _too_brief(self, response):
        # §10.2.8: ask again for at least Min-Expires.
        try:
            minimum = int(response.headers.get("Min-Expires", ""))
        except ValueError:
            minimum = None
        if minimum is None or minimum <= self._requested:
            self._failed(423, response.reason, response)
            return
        self.log.info("{trunk}: registrar wants at least {minimum} s", trunk=repr(self), minimum=minimum)
        self._wanted_expires = minimum
        self._send(minimum)

    def _granted(self, response):
        """
        The expiry the registrar granted (§10.2.4): our Contact's expires
        param, else the Expires header, else what we asked for.  Carriers
        that rewrite our Contact (NAT) still return one with our user,
        host and port.
        """
        ours = SipURI.parse(self._contact)
        for value in response.headers.get_all("Contact"):
            try:
                contact = NameAddr.parse(value)
            except ValueError:
                continue
            uri = contact.uri
            same = (getattr(uri, "user", None), getattr(uri, "host", None), getattr(uri, "port", None))
            if same == (ours.user, ours.host, ours.port) and "expires" in contact.params:
                try:
                    return int(contact.params["expires"])
                except ValueError:
                    break
        try:
            return int(response.headers.get("Expires", ""))
        except ValueError:
            return self._requested

    def _registered(self, expires):
        now = self._clock.seconds()
        self.state = "registered"
        self.registered_until = now + expires
        self.failing_since = None
        self.failures = 0
        self.last_status, self.last_reason = 200, "OK"
        self.log.info("{trunk}: registered for {expires} s", trunk=repr(self), expires=expires)
        self._schedule(refresh_delay(expires, self._margin))
        waiters, self._registration_waiters = self._registration_waiters, []
        for d in waiters:
            d.callback(self)

    def _failed(self, status, reason, response=None):
        now = self._clock.seconds()
        self.state = "failing"
        self.failures += 1
        if self.failing_since is None:
            self.failing_since = now
        if self.registered_until is not None and self.registered_until <= now:
            self.registered_until = None
        self.last_status, self.last_reason = status, reason
        delay = backoff_delay(self.failures, *self._backoff, self._uniform)
        retry_after = response.headers.get("Retry-After") if response is not None else None
        if retry_after and retry_after.split(";")[0].strip().isdigit():
            delay = max(delay, int(retry_after.split(";")[0]))
        self.log.warn(
            "{trunk}: registration failed ({status} {reason}); retrying in {delay:.0f} s",
            trunk=repr(self), status=status, reason=reason, delay=delay,
        )
        self._schedule(delay)

    def _schedule(self, delay):
        self._cancel_timer()
        self._timer = self._clock.callLater(delay, self._attempt)

    def _cancel_timer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


def _is_stale(challenge):
    if challenge is None:
        return False
    try:
        _, params = parse_auth_params(challenge)
    except ValueError:
        return False
    return params.get("stale", "").lower() == "true"
