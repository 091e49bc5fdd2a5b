"""
Investors logging in with fund account and trading password: argon2
verification off the reactor, a lockout after repeated failures, and the
caller restriction (主叫限拨) for the phone.

A login is three steps so that the slow hash never runs inside a write
transaction (SQLite would hold its write lock for the whole argon2 time):
read the account, verify in a thread, then record the outcome.
"""

from dataclasses import dataclass

import sqlalchemy as sa
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool

from callcenter.passwords import hash_password, verify_password
from callcenter.store.schema import customers, fund_accounts
from callcenter.trading import audit
from callcenter.trading.ledger import caller_allowed
from callcenter.trading.reasons import TradingRefused

PASSWORD_DIGITS = 6


@dataclass(frozen=True)
class Investor:
    fund_account_no: str
    name_zh: str
    name_en: str | None
    language: str
    branch_code: str


def _read(connection, fund_account_no, origin):
    row = connection.execute(
        sa.select(
            fund_accounts.c.password_hash,
            fund_accounts.c.locked_at,
            customers.c.name_zh,
            customers.c.name_en,
            customers.c.language,
            customers.c.branch_code,
        )
        .select_from(fund_accounts.join(customers))
        .where(fund_accounts.c.account_no == fund_account_no)
    ).first()
    if row is None:
        return None, None
    allowed = origin.channel != "phone" or caller_allowed(connection, fund_account_no, origin.caller)
    return row, allowed


def _refuse(connection, fund_account_no, origin, action, code, now, known=True):
    audit.append(connection, origin, action, code, fund_account_no if known else None,
                 {} if known else {"fund_account_no": fund_account_no}, now=now)


def _record_failure(connection, fund_account_no, origin, action, max_attempts, now):
    """Count a wrong password; lock at C{max_attempts}.  Returns True if now locked."""
    connection.execute(
        fund_accounts.update()
        .where(fund_accounts.c.account_no == fund_account_no)
        .values(failed_logins=fund_accounts.c.failed_logins + 1)
    )
    failed = connection.execute(
        sa.select(fund_accounts.c.failed_logins).where(fund_accounts.c.account_no == fund_account_no)
    ).scalar()
    locked = failed >= max_attempts
    if locked:
        connection.execute(
            fund_accounts.update()
            .where(fund_accounts.c.account_no == fund_account_no, fund_accounts.c.locked_at.is_(None))
            .values(locked_at=now)
        )
    audit.append(connection, origin, action, "locked" if locked else "wrong_password", fund_account_no,
                 {"failed_attempts": failed}, now=now)
    return locked


def _record_success(connection, fund_account_no, origin, action, now, new_hash=None):
    values = {"failed_logins": 0}
    if new_hash is not None:
        values["password_hash"] = new_hash
    connection.execute(
        fund_accounts.update().where(fund_accounts.c.account_no == fund_account_no).values(**values)
    )
    audit.append(connection, origin, action, "ok", fund_account_no, {}, now=now)


class Logins:
    """
    @param store: IStore.
    @param reactor: for its thread pool (argon2 must not run on the reactor).
    @param now: a callable giving the current aware datetime (the trading clock).
    """

    def __init__(self, store, reactor, now, max_attempts=5):
        self._store = store
        self._reactor = reactor
        self._now = now
        self.max_attempts = max_attempts

    def _verify(self, stored_hash, password):
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), verify_password, stored_hash, password)

    @defer.inlineCallbacks
    def _check(self, fund_account_no, password, origin, action):
        row, allowed = yield self._store.transaction(_read, fund_account_no, origin)
        now = self._now()
        if row is None:
            # Said as a wrong password: a caller must not learn which accounts exist.
            yield self._store.transaction(_refuse, fund_account_no, origin, action, "account_not_found", now,
                                          known=False)
            raise TradingRefused("wrong_password")
        if row.locked_at is not None:
            yield self._store.transaction(_refuse, fund_account_no, origin, action, "account_locked", now)
            raise TradingRefused("account_locked")
        if not allowed:
            # Before the password, and not counted: a restricted number
            # learns nothing about the password by trying.
            yield self._store.transaction(_refuse, fund_account_no, origin, action, "caller_not_allowed", now)
            raise TradingRefused("caller_not_allowed")
        good = yield self._verify(row.password_hash, password)
        if not good:
            locked = yield self._store.transaction(
                _record_failure, fund_account_no, origin, action, self.max_attempts, self._now()
            )
            raise TradingRefused("account_locked" if locked else "wrong_password")
        return row

    @defer.inlineCallbacks
    def login(self, fund_account_no, password, origin):
        row = yield self._check(fund_account_no, password, origin, "login")
        yield self._store.transaction(_record_success, fund_account_no, origin, "login", self._now())
        return Investor(fund_account_no, row.name_zh, row.name_en, row.language, row.branch_code)

    @defer.inlineCallbacks
    def change_password(self, fund_account_no, old_password, new_password, origin):
        if not (len(new_password) == PASSWORD_DIGITS and new_password.isdigit() and new_password.isascii()):
            raise TradingRefused("bad_new_password")
        yield self._check(fund_account_no, old_password, origin, "change_password")
        new_hash = yield deferToThreadPool(self._reactor, self._reactor.getThreadPool(), hash_password, new_password)
        yield self._store.transaction(
            _record_success, fund_account_no, origin, "change_password", self._now(), new_hash
        )
