"""
The relays e-mail goes through, in order of preference, and which of them
are down: a relay that refuses connections, fails TLS or AUTH, or refuses
MAIL is left alone for a while (doubling each time it fails again) and
the next one takes the mail.
"""

import re
from dataclasses import dataclass

from twisted.internet import ssl

from callcenter.notify.smtp.protocol import STARTTLS_MODES, STARTTLS_OFF, STARTTLS_REQUIRED

_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


@dataclass(frozen=True)
class Relay:
    """
    One SMTP relay (a submission server, usually port 587).

    @param starttls: 'required' (the default: credentials and statements
        never travel in clear), 'optional' (TLS when offered) or 'off'.
    @param username: with C{password}, AUTH PLAIN or LOGIN; None: no AUTH.
    @param trust_root: the CA certificates (PEM bytes, one or more) the
        relay's certificate must chain to; None: the system's.
    @param tls_hostname: the name its certificate must carry; C{host} by default.
    @param allow_plaintext_auth: send credentials without TLS (a relay on
        this host or a trusted network).
    @param endpoint: an C{IStreamClientEndpoint} to reach it by instead of
        TCP to host:port.
    """

    host: str
    port: int = 587
    starttls: str = STARTTLS_REQUIRED
    username: str | None = None
    password: str | None = None
    trust_root: bytes | None = None
    tls_hostname: str | None = None
    allow_plaintext_auth: bool = False
    endpoint: object = None

    def __post_init__(self):
        if self.starttls not in STARTTLS_MODES:
            raise ValueError(f"relay {self.host}: starttls must be one of {STARTTLS_MODES}, not {self.starttls!r}")
        if (self.username is None) != (self.password is None):
            raise ValueError(f"relay {self.host}: a username needs a password and the other way round")

    @property
    def name(self):
        return f"{self.host}:{self.port}"

    @property
    def credentials(self):
        return None if self.username is None else (self.username, self.password)

    def tls_options(self):
        """The client TLS options for STARTTLS to this relay: its hostname, checked against the trust root."""
        if self.trust_root is None:
            trust = None  # optionsForClientTLS then uses the platform's
        else:
            certificates = [ssl.Certificate.loadPEM(pem) for pem in _PEM_CERTIFICATE.findall(self.trust_root)]
            if not certificates:
                raise ValueError(f"relay {self.name}: no PEM certificate in trust_root")
            trust = ssl.trustRootFromCertificates(certificates)
        return ssl.optionsForClientTLS(self.tls_hostname or self.host, trustRoot=trust)

    def __repr__(self):
        # Never the password: reprs end up in logs.
        return f"Relay({self.name}, starttls={self.starttls}, user={self.username!r})"


class RelayState:
    """A relay and whether it is down: until when, after how many failures in a row."""

    __slots__ = ("relay", "failures", "down_until", "last_error", "_tls_options")

    def __init__(self, relay):
        self.relay = relay
        self.failures = 0
        self.down_until = 0.0
        self.last_error = ""
        self._tls_options = None

    @property
    def name(self):
        return self.relay.name

    def tls_options(self):
        # Made once: each makes an OpenSSL context and loads the trust root.
        if self._tls_options is None and self.relay.starttls != STARTTLS_OFF:
            self._tls_options = self.relay.tls_options()
        return self._tls_options


class RelayList:
    """
    The relays in order of preference, each marked down for
    C{backoff} seconds after a failure, doubling with each failure in a
    row up to C{max_backoff}.
    """

    def __init__(self, relays, clock, backoff=5.0, max_backoff=300.0):
        if not relays:
            raise ValueError("at least one SMTP relay is needed")
        self.states = [RelayState(relay) for relay in relays]
        self._clock = clock
        self._backoff = backoff
        self._max_backoff = max_backoff

    def __len__(self):
        return len(self.states)

    def first_up(self, exclude=()):
        """The most preferred relay not down and not in C{exclude}; None if there is none."""
        now = self._clock.seconds()
        for state in self.states:
            if state.down_until <= now and state not in exclude:
                return state
        return None

    def next_up_in(self):
        """Seconds until some relay is up again (0 if one is up now)."""
        now = self._clock.seconds()
        return max(0.0, min(state.down_until for state in self.states) - now)

    def failed(self, state, why):
        """
        C{state}'s relay failed: down for its backoff.  A failure while it
        is already down (another connection to it failing) does not count
        again.  Returns the seconds it is down for (0 if it already was).
        """
        now = self._clock.seconds()
        state.last_error = why
        if state.down_until > now:
            return 0.0
        state.failures += 1
        delay = min(self._max_backoff, self._backoff * 2 ** (state.failures - 1))
        state.down_until = now + delay
        return delay

    def succeeded(self, state):
        state.failures = 0
        state.down_until = 0.0
