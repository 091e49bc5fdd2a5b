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
        self._date_cache = (None, None)

    def contacts(self, aor):
        """The live L{Binding}s of an extension."""
        return self._location.current(aor)

    def register(self, transaction, request, source):
        """
        Answer one REGISTER on its server transaction.  Fires once answered:
        for a change, after the bindings are committed.  A chain of
        callbacks rather than inlineCallbacks: most steps have their result
        at once, and a generator per REGISTER cost more than the steps;
        the only Deferred left on the way is the commit's.
        """
        try:
            outcome = self._authenticator.check(request, source)
            if isinstance(outcome, defer.Deferred):  # The account was read from the database.
                return outcome.addCallback(self._authenticated, transaction, request, source)
            waiting = self._authenticated(outcome, transaction, request, source)
        except Exception:
            return defer.fail()  # The caller answers 500 for any failure.
        return defer.succeed(None) if waiting is None else waiting

    def _authenticated(self, outcome, transaction, request, source):
        if not isinstance(outcome, Authenticated):
            transaction.respond(outcome)  # A challenge or a refusal.
            return None
        try:
            aor = request.to_addr.uri.user
        except (ValueError, AttributeError):
            aor = None
        if aor != outcome.username:
            # Authenticated as one extension, registering another: §10.3 step 6.
            _log.info("{user} may not register {aor}", user=outcome.username, aor=aor, cid=request.call_id)
            transaction.respond(403, "Forbidden")
            return None
        if self._location.loaded:
            return self._apply(transaction, request, source, aor)
        return self._location.when_loaded().addCallback(
            lambda _: self._apply(transaction, request, source, aor)
        )

    def _apply(self, transaction, request, source, aor):
        existing = self._location.current(aor)
        try:
            updates = self._updates(aor, request, repr(source), self._clock.seconds(), existing)
        except RegistrationRefused as refused:
            response = make_response(request, refused.status, refused.reason, to_tag=_tag())
            for name, value in refused.headers.items():
                response.headers.add(name.replace("_", "-"), value)
            transaction.respond(response)
            return None
        if not updates:
            self._answer(transaction, request, source, aor, existing)
            return None
        d = self._location.change(aor, updates)
        return d.addCallback(lambda _: self._answer(transaction, request, source, aor, existing))

    def _answer(self, transaction, request, source, aor, before):
        bindings = self._location.current(aor)
        now = self._clock.seconds()
        response = make_response(request, 200, to_tag=_tag())
        for binding in bindings:
            response.headers.add("Contact", f"<{binding.contact}>;expires={max(0, int(binding.expires_at - now))}")
        response.headers.add("Date", self._date(now))
        transaction.respond(response)
        # Phones refresh every few minutes: only a change is worth a line at info.
        changed = [binding.contact for binding in before] != [binding.contact for binding in bindings]
        _log.emit(
            LogLevel.info if changed else LogLevel.debug,
            "{aor} registered {count} contacts from {source}",
            aor=aor, count=len(bindings), source=repr(source), cid=request.call_id,
        )

    def _date(self, now):
        # §20.17 Date, to the second: formatted once a second, not per 200.
        second = int(now)
        if self._date_cache[0] != second:
            self._date_cache = (second, formatdate(second, usegmt=True))
        return self._date_cache[1]

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

    def _updates(self, aor, request, source, now, current):
        """RFC 3261 §10.3 steps 6-8: what the REGISTER changes, contact -> L{Binding} or None."""
        contacts = request.headers.get_all("Contact")
        call_id, cseq = request.call_id, request.cseq[0]
        existing = {b.contact: b for b in current}
        if "*" in [c.strip() for c in contacts]:
            if len(contacts) != 1 or request.headers.get("Expires", "").strip() != "0":
                raise RegistrationRefused(400, "Bad Request - Wildcard Contact needs Expires: 0 alone")
            for binding in existing.values():
                self._check_order(binding, call_id, cseq)
            return dict.fromkeys(existing)
        user_agent = (request.headers.get("User-Agent") or "")[:255] or None
        updates = {}
        # Parsed with the message (and checked then, when it came from the wire).
        for contact in request.contacts:
            if not isinstance(contact, NameAddr):
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
