"""
The SIP accounts' digest secrets (HA1), as the registrar and the INVITE
check need them for every authenticated request.  All enabled accounts
are read at start and again every L{REFRESH_SECONDS}, in one query, so a
phone's refreshes and calls cost no database round trip; a name not
(yet) in that copy is looked up on its own.  A disabled account or a
changed password therefore takes effect within L{REFRESH_SECONDS}.
"""

import sqlalchemy as sa
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from callcenter.store.schema import sip_accounts

REFRESH_SECONDS = 30.0
# Names not found are remembered briefly: a scanner trying thousands of
# them would otherwise turn each guess into a query.
NEGATIVE_SECONDS = 5.0
MAX_MISSES = 100_000

# What AccountCache.known() says of a name it would have to query.
UNKNOWN = object()

_COLUMNS = (sip_accounts.c.username, sip_accounts.c.ha1_md5, sip_accounts.c.ha1_sha256, sip_accounts.c.display_name)


def _account(row):
    return {"MD5": row.ha1_md5, "SHA-256": row.ha1_sha256, "display_name": row.display_name}


def _load_all(connection):
    rows = connection.execute(sa.select(*_COLUMNS).where(sip_accounts.c.enabled.is_(True)))
    return {row.username: _account(row) for row in rows}


def _load_one(connection, username):
    row = connection.execute(
        sa.select(*_COLUMNS)
        .where(sip_accounts.c.username == username)
        .where(sip_accounts.c.enabled.is_(True))
    ).first()
    return None if row is None else _account(row)


class AccountCache:
    log = Logger()

    def __init__(self, store, clock):
        self._store = store
        self._clock = clock
        self._accounts = {}
        self._misses = {}
        self._loading = {}

    def __len__(self):
        return len(self._accounts)

    def refresh(self):
        """Read every enabled account again; fires with how many there are."""

        def loaded(accounts):
            self._accounts = accounts
            self._misses.clear()
            return len(accounts)

        return self._store.transaction(_load_all).addCallback(loaded)

    def lookup(self, username):
        """
        A Deferred firing with the account's C{{"MD5": ha1, "SHA-256": ha1,
        "display_name": ...}}, or None when there is no enabled account.
        Concurrent lookups of one name share one query.
        """
        known = self.known(username)
        if known is not UNKNOWN:
            return defer.succeed(known)
        waiters = self._loading.get(username)
        if waiters is None:
            waiters = self._loading[username] = []
            self._store.transaction(_load_one, username).addBoth(self._loaded, username)
        d = defer.Deferred()
        waiters.append(d)
        return d

    def known(self, username):
        """
        What L{lookup} would fire with, when it is known without a query
        (the account, or None); else L{UNKNOWN}.  For the callers on every
        request, which need no Deferred then.
        """
        account = self._accounts.get(username)
        if account is not None:
            return account
        miss = self._misses.get(username)
        if miss is not None and miss[0] > self._clock.seconds():
            return miss[1]
        return UNKNOWN

    def _loaded(self, result, username):
        waiters = self._loading.pop(username)
        if not isinstance(result, Failure):
            if len(self._misses) >= MAX_MISSES:
                # A flood of distinct names: start over rather than keep a
                # structure for picking the oldest.
                self._misses.clear()
            self._misses[username] = (self._clock.seconds() + NEGATIVE_SECONDS, result)
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)
