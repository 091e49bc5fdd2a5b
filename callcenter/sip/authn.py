"""
Digest authentication of requests from our extensions (RFC 3261 §22,
RFC 8760): REGISTER is challenged with 401 and WWW-Authenticate, as a
registrar does; INVITE with 407 and Proxy-Authenticate, as the proxy in
front of every call does.  Failures count against the source, so scanners
guessing passwords get blocked.
"""

import secrets
from dataclasses import dataclass

from twisted.internet import defer
from twisted.logger import Logger

from callcenter.sip.accounts import UNKNOWN
from callcenter.sip.digest import parse_auth_params
from callcenter.sip.message import make_response

_log = Logger()

# status, reason, the header we challenge in, the header the answer comes in
_REGISTRAR = (401, "Unauthorized", "WWW-Authenticate", "Authorization")
_PROXY = (407, "Proxy Authentication Required", "Proxy-Authenticate", "Proxy-Authorization")


@dataclass(frozen=True)
class Authenticated:
    username: str
    display_name: str | None


class Authenticator:
    def __init__(self, accounts, verifier, guard):
        """
        @param accounts: an L{callcenter.sip.accounts.AccountCache}.
        @param verifier: a L{callcenter.sip.digest.DigestVerifier}.
        @param guard: the L{callcenter.sip.guard.SourceGuard} told of each outcome.
        """
        self._accounts = accounts
        self._verifier = verifier
        self._guard = guard

    def authenticate(self, request, source, proxy=False):
        """
        Check C{request}'s credentials.  Fires with L{Authenticated}, or with
        the response to send instead: a challenge (first contact, or a stale
        nonce) or 403.  C{proxy} selects 407 over 401.
        """
        try:
            outcome = self.check(request, source, proxy)
        except Exception:
            return defer.fail()
        return outcome if isinstance(outcome, defer.Deferred) else defer.succeed(outcome)

    def check(self, request, source, proxy=False):
        """
        L{authenticate}'s outcome itself when no database read is needed
        (the account is in the cache: a phone's refreshes), else a Deferred
        of it.  The registrar takes this, for no Deferred per REGISTER.
        """
        answer_header = _PROXY[3] if proxy else _REGISTRAR[3]
        answer = request.headers.get(answer_header)
        if answer is None:
            return self.challenge(request, proxy)
        # Split once: the user name to look up, then the check itself.
        try:
            credentials = parse_auth_params(answer)
        except ValueError:
            credentials = None
        username = credentials[1].get("username", "") if credentials is not None else ""
        if not username:
            account = None
        else:
            account = self._accounts.known(username)
            if account is UNKNOWN:
                d = self._accounts.lookup(username)
                return d.addCallback(self._check, request, source, proxy, answer, credentials, username)
        return self._check(account, request, source, proxy, answer, credentials, username)

    def _check(self, account, request, source, proxy, answer, credentials, username):
        def lookup(user, algorithm):
            return account.get(algorithm) if account is not None and user == username else None

        if credentials is None:
            # Malformed: verify() says why, for the log.
            outcome = self._verifier.verify(request.method, answer, lookup, request.uri)
        else:
            outcome = self._verifier.verify_parsed(request.method, credentials, lookup, request.uri)
        if outcome.stale:
            return self.challenge(request, proxy, stale=True)
        host = source.address[0]
        if not outcome.ok:
            if self._guard.auth_failed(host):
                _log.warn(
                    "blocking {source}: repeated authentication failures", source=repr(source), cid=request.call_id
                )
            _log.info(
                "{method} from {source} refused: {why}",
                method=request.method, source=repr(source), why=outcome.log_reason, cid=request.call_id,
            )
            return make_response(request, 403, "Forbidden", to_tag=_tag())
        self._guard.auth_succeeded(host)
        return Authenticated(outcome.username, account.get("display_name"))

    def challenge(self, request, proxy=False, stale=False):
        status, reason, challenge_header, _ = _PROXY if proxy else _REGISTRAR
        response = make_response(request, status, reason, to_tag=_tag())
        for value in self._verifier.challenge(stale=stale):
            response.headers.add(challenge_header, value)
        return response


def _tag():
    # §8.2.6.2: every final response carries a To tag; these make no dialog.
    return secrets.token_hex(6)
