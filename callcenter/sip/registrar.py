"""
The registrar (RFC 3261 §10.3): extensions REGISTER, authenticated by
digest against the HA1 values in sip_accounts; their bindings are kept by
the location service, durable before the 200 OK, so a restart forgets
nobody.
"""

import secrets
from dataclasses import dataclass
from email.utils import formatdate

from twisted.internet import defer
from twisted.logger import Logger, LogLevel

from callcenter.sip.address import NameAddr
from callcenter.sip.authn import Authenticated
from callcenter.sip.location import Binding
from callcenter.sip.message import make_response

# Module-level: a Logger class attribute builds a new Logger at every access.
_log = Logger()


@dataclass(frozen=True)
class RegistrationPolicy:
    """RFC 3261 §10.2.1.1 / §10.3 step 7: how long a binding may last."""

    default_expires: int = 3600
    min_expires: int = 60
    max_expires: int = 7200


class RegistrationRefused(Exception):
    """The REGISTER cannot be applied: carries the status and reason to answer."""

    def __init__(self, status, reason, **headers):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


class Registrar:
    """Handles REGISTER for the transaction user."""

    def __init__(self, authenticator, location, clock, policy=RegistrationPolicy()):
        """
        @param authenticator: an L{callcenter.sip.authn.Authenticator}.
        @param location: a loaded (or loading) L{callcenter.sip.location.LocationService}.
        """
        self._authenticator = authenticator
        self._location = location
        self._clock = clock
        self._policy = policy

    def contacts(self, aor):
        """The live L{Binding}s of an extension."""
        return self._location.current(aor)

    @defer.inlineCallbacks
    def register(self, transaction, request, source):
        """Answer one REGISTER on its server transaction."""
        cid = request.call_id
        outcome = yield self._authenticator.authenticate(request, source)
        if not isinstance(outcome, Authenticated):
            transaction.respond(outcome)  # A challenge or a refusal.
            return
        try:
            aor = NameAddr.parse(request.headers.get("To")).uri.user
        except (ValueError, AttributeError):
            aor = None
        if aor != outcome.username:
            # Authenticated as one extension, registering another: §10.3 step 6.
            _log.info("{user} may not register {aor}", user=outcome.username, aor=aor, cid=cid)
            transaction.respond(403, "Forbidden")
            return
        yield self._location.when_loaded()
        now = self._clock.seconds()
        try:
            updates = self._updates(aor, request, repr(source), now)
        except RegistrationRefused as refused:
            response = make_response(request, refused.status, refused.reason, to_tag=_tag())
            for name, value in refused.headers.items():
                response.headers.add(name.replace("_", "-"), value)
            transaction.respond(response)
            return
        before = {binding.contact for binding in self._location.current(aor)}
        if updates:
            yield self._location.change(aor, updates)
        bindings = self._location.current(aor)
        now = self._clock.seconds()
        response = make_response(request, 200, to_tag=_tag())
        for binding in bindings:
            response.headers.add("Contact", f"<{binding.contact}>;expires={max(0, int(binding.expires_at - now))}")
        response.headers.add("Date", formatdate(now, usegmt=True))
        transaction.respond(response)
        # Phones refresh every few minutes: only a change is worth a line at info.
        changed = before != {binding.contact for binding in bindings}
        _log.emit(
            LogLevel.info if changed else LogLevel.debug,
            "{aor} registered {count} contacts from {source}",
            aor=aor, count=len(bindings), source=repr(source), cid=cid,
        )

    def _expiry(self, contact_params, request):
        """§10.2.1.1: the Contact's expires parameter, else the Expires header, else our default."""
        given = contact_params.get("expires", request.headers.get("Expires"))
        if given is None:
            return self._policy.default_expires
        try:
            seconds = int(given)
        except ValueError:
            raise RegistrationRefused(400, "Bad Request - Invalid Expires")
        if seconds < 0:
            raise RegistrationRefused(400, "Bad Request - Invalid Expires")
        if 0 < seconds < self._policy.min_expires:
            raise RegistrationRefused(423, "Interval Too Brief", Min_Expires=str(self._policy.min_expires))
        return min(seconds, self._policy.max_expires)

    def _updates(self, aor, request, source, now):
        """RFC 3261 §10.3 steps 6-8: what the REGISTER changes, contact -> L{Binding} or None."""
        contacts = request.headers.get_all("Contact")
        call_id, cseq = request.call_id, request.cseq[0]
        existing = {b.contact: b for b in self._location.current(aor)}
        if "*" in [c.strip() for c in contacts]:
            if len(contacts) != 1 or request.headers.get("Expires", "").strip() != "0":
                raise RegistrationRefused(400, "Bad Request - Wildcard Contact needs Expires: 0 alone")
            for binding in existing.values():
                self._check_order(binding, call_id, cseq)
            return dict.fromkeys(existing)
        user_agent = (request.headers.get("User-Agent") or "")[:255] or None
        updates = {}
        for value in contacts:
            try:
                contact = NameAddr.parse(value)
            except ValueError:
                raise RegistrationRefused(400, "Bad Request - Malformed Contact")
            uri = str(contact.uri)
            if len(uri) > 512:
                raise RegistrationRefused(400, "Bad Request - Contact Too Long")
            expires = self._expiry(contact.params, request)
            old = existing.get(uri)
            if old is not None:
                self._check_order(old, call_id, cseq)
            if expires:
                updates[uri] = Binding(aor, uri, now + expires, call_id, cseq, source, user_agent)
            elif old is not None:
                updates[uri] = None
        return updates

    @staticmethod
    def _check_order(binding, call_id, cseq):
        # §10.3 step 7: a REGISTER older than what the binding already holds
        # (same Call-ID, no higher CSeq) arrived late and must not undo it.
        if binding.call_id == call_id and cseq <= binding.cseq:
            raise RegistrationRefused(400, "Bad Request - Out of Order REGISTER")


def _tag():
    return secrets.token_hex(6)
