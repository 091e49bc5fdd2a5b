"""
Investors' sessions of the HTTP APIs: bearer tokens (RFC 6750) issued at
login by the trading API and accepted by every API an investor uses (the
trading API, their notification subscriptions).  Only a token's SHA-256 is
stored (table C{api_sessions}), so a copy of the database logs nobody in.
A session ends after C{idle_timeout} seconds without use; its expiry moves
on at most once per C{refresh_interval} so that a busy client does not
cost a database write per request.
"""

import datetime
import hashlib
import re
import secrets

from twisted.internet import defer
from zope.interface import implementer

from callcenter.store.schema import api_sessions
from callcenter.trading.interfaces import IInvestorSessions
from callcenter.web.json_api import APIError, header

# RFC 6750 §2.1 b64token; secrets.token_urlsafe(32) gives 43 of these.
_BEARER = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]{1,256}=*)", re.IGNORECASE | re.ASCII)

_BEARER_REALM = 'Bearer realm="callcenter"'


def _token_required():
    return APIError(401, "token_required", "请先登录（需要 Authorization: Bearer 令牌）",
                    "log in first: this needs an Authorization: Bearer token",
                    headers={"WWW-Authenticate": _BEARER_REALM})


def _session_expired():
    return APIError(401, "session_expired", "登录已失效，请重新登录", "the session has expired or ended: log in again",
                    headers={"WWW-Authenticate": _BEARER_REALM + ', error="invalid_token"'})


def _token_hash(token):
    return hashlib.sha256(token.encode("ascii")).hexdigest()


# -- sessions in the store (run in the store's threads)


def _open_session(connection, token_hash, fund_account_no, expires_at, now, purge):
    if purge:
        connection.execute(api_sessions.delete().where(api_sessions.c.expires_at <= now))
    connection.execute(api_sessions.insert().values(
        token_hash=token_hash,
        fund_account_no=fund_account_no,
        expires_at=expires_at,
        created_at=datetime.datetime.fromtimestamp(now, datetime.timezone.utc),
    ))


def _use_session(connection, token_hash, now, idle_timeout, refresh_interval):
    """The session's fund account, its expiry moved on if last moved C{refresh_interval} ago; None if gone."""
    row = connection.execute(
        api_sessions.select().where(api_sessions.c.token_hash == token_hash)
    ).first()
    if row is None:
        return None
    if row.expires_at <= now:
        connection.execute(api_sessions.delete().where(api_sessions.c.token_hash == token_hash))
        return None
    refreshed_at = row.expires_at - idle_timeout
    if now - refreshed_at >= refresh_interval:
        connection.execute(
            api_sessions.update().where(api_sessions.c.token_hash == token_hash).values(expires_at=now + idle_timeout)
        )
    return row.fund_account_no


def _close_session(connection, token_hash):
    connection.execute(api_sessions.delete().where(api_sessions.c.token_hash == token_hash))


@implementer(IInvestorSessions)
class InvestorSessions:
    """
    @param store: the L{IStore} holding the sessions.
    @param clock: IReactorTime; sessions expire by its C{seconds()}.
    @param idle_timeout: seconds a session lasts without use.
    @param refresh_interval: a session's expiry is moved on at most this often.
    @param purge_interval: expired sessions are deleted at a login at most this often.
    """

    def __init__(self, store, clock, idle_timeout=1800.0, refresh_interval=60.0, purge_interval=600.0):
        self._store = store
        self._clock = clock
        self.idle_timeout = idle_timeout
        self.refresh_interval = refresh_interval
        self.purge_interval = purge_interval
        self._last_purge = None

    @defer.inlineCallbacks
    def open(self, fund_account_no):
        """A new session: fires with (token, expires_at in POSIX seconds)."""
        token = secrets.token_urlsafe(32)
        now = self._clock.seconds()
        expires_at = now + self.idle_timeout
        yield self._store.transaction(
            _open_session, _token_hash(token), fund_account_no, expires_at, now, self._purge_due(now)
        )
        return token, expires_at

    @defer.inlineCallbacks
    def authenticate(self, request):
        """The fund account of the request's session; L{APIError} 401 without a live one."""
        account = yield self._store.transaction(
            _use_session, self._presented_token_hash(request), self._clock.seconds(), self.idle_timeout,
            self.refresh_interval,
        )
        if account is None:
            raise _session_expired()
        return account

    def close(self, request):
        """End the request's session."""
        return self._store.transaction(_close_session, self._presented_token_hash(request))

    def _presented_token_hash(self, request):
        authorization = header(request, b"authorization")
        if authorization is None:
            raise _token_required()
        match = _BEARER.fullmatch(authorization.strip())
        if match is None:
            raise _session_expired()
        return _token_hash(match.group(1))

    def _purge_due(self, now):
        if self._last_purge is not None and now - self._last_purge < self.purge_interval:
            return False
        self._last_purge = now
        return True
