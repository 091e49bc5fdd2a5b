"""
Investors' internet accounts, their tiers, sessions and monthly usage.

An internet account belongs to one fund account and has a password of its
own (never the trading password): its argon2 hash for PAP, and for CHAP
and MS-CHAP optionally the password sealed with
L{callcenter.radius.chap.ChapSecrets}.
Hash and seal before calling these functions, outside the transaction
(argon2 takes tens of milliseconds on purpose; a write transaction on
SQLite would hold the database's only write lock that long).

Every function taking a C{connection} blocks: run it in
L{callcenter.interfaces.IStore.transaction}.  Those that change an account
return it as it is after the change, and raise L{InternetAccountError}
(one line for a person) for a mistake.

Monthly quotas count calendar months in China Standard Time (L{month_of}).
Times are stored in UTC and read back aware (SQLite keeps no zone).
"""

import dataclasses
import datetime
import re
from dataclasses import dataclass

import sqlalchemy as sa

from callcenter.store.schema import (
    customers,
    fund_accounts,
    internet_accounts,
    internet_tiers,
    internet_usage,
    radius_disconnects,
    radius_sessions,
)

__all__ = [
    "ACCOUNT_TIER_USAGE",
    "DISCONNECT_OUTCOMES",
    "LANGUAGES",
    "MONTH_ZONE",
    "AccessState",
    "InternetAccount",
    "InternetAccountError",
    "Session",
    "Tier",
    "Usage",
    "access_states",
    "account",
    "add_tier",
    "as_aware",
    "as_utc",
    "check_password",
    "clear_failures",
    "month_of",
    "open_account",
    "record_disconnect",
    "record_failure",
    "session",
    "sessions_online",
    "set_enabled",
    "set_password",
    "set_tier",
    "tiers",
    "unlock",
    "usage",
]

MONTH_ZONE = datetime.timezone(datetime.timedelta(hours=8), "CST")
LANGUAGES = ("zh", "en")
DISCONNECT_OUTCOMES = ("ack", "nak", "timeout")
# What a NAS's login page lets investors type, and what fits the column:
# a mobile number, a name, an e-mail address.
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_TIER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,15}")
# RFC 2865 §5.2: a User-Password is at most 128 octets.
PASSWORD_LENGTHS = (6, 64)


class InternetAccountError(ValueError):
    """A change that cannot be made; the message says why in one line."""


@dataclass(frozen=True)
class Tier:
    name: str
    monthly_seconds: int | None  # None: unlimited
    idle_timeout: int | None  # None: the NAS's own
    simultaneous_use: int


@dataclass(frozen=True)
class InternetAccount:
    username: str
    fund_account_no: str
    tier: str
    enabled: bool
    chap: bool
    failed_logins: int
    locked_at: datetime.datetime | None
    created_at: datetime.datetime
    language: str


@dataclass(frozen=True)
class Session:
    """A row of radius_sessions: online while C{stopped_at} is None."""

    id: int
    client: str
    acct_session_id: str
    username: str | None
    nas_ip: str | None
    nas_port: int | None
    framed_ip: str | None
    calling_station_id: str | None
    started_at: datetime.datetime
    updated_at: datetime.datetime
    stopped_at: datetime.datetime | None
    session_time: int
    input_octets: int
    output_octets: int
    terminate_cause: str | None


@dataclass(frozen=True)
class Usage:
    month: str
    seconds: int = 0
    input_octets: int = 0
    output_octets: int = 0


@dataclass(frozen=True)
class AccessState:
    """
    What deciding an Access-Request needs to know of an account, read in
    one go (L{access_states}): the account, its tier, its usage in
    C{month} and how many sessions it has online.
    """

    username: str
    password_hash: str
    chap_secret: str | None
    enabled: bool
    locked: bool
    failed_logins: int
    language: str
    monthly_seconds: int | None
    idle_timeout: int | None
    simultaneous_use: int
    month: str
    used_seconds: int
    online: int


def as_utc(moment):
    """An aware datetime or POSIX seconds, as an aware UTC datetime."""
    if moment is None:
        return None
    if isinstance(moment, (int, float)):
        return datetime.datetime.fromtimestamp(moment, datetime.timezone.utc)
    if moment.tzinfo is None:
        raise ValueError("internet account times must be aware datetimes")
    return moment.astimezone(datetime.timezone.utc)


def as_aware(moment):
    """A time read back: SQLite gives it without its zone, which is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=datetime.timezone.utc)


def month_of(moment):
    """The quota month ("2026-12") of an aware datetime or POSIX seconds, in China Standard Time."""
    return as_utc(moment).astimezone(MONTH_ZONE).strftime("%Y-%m")


def check_password(password):
    """Raise L{InternetAccountError} unless C{password} may be an internet password."""
    shortest, longest = PASSWORD_LENGTHS
    if not shortest <= len(password) <= longest or len(password.encode("utf-8")) > 128:
        raise InternetAccountError(f"an internet password is {shortest} to {longest} characters")
    if not password.isprintable():
        raise InternetAccountError("an internet password has no control characters")


# -- tiers


def add_tier(connection, name, monthly_seconds, idle_timeout=None, simultaneous_use=1):
    """Add a tier, or change one; True if it is new."""
    if not _TIER_NAME.fullmatch(name):
        raise InternetAccountError(
            f"a tier name is 1 to 16 lower-case letters, digits, - and _, not {name!r}"
        )
    if monthly_seconds is not None and monthly_seconds < 0:
        raise InternetAccountError("a tier's monthly time cannot be negative")
    if idle_timeout is not None and idle_timeout <= 0:
        raise InternetAccountError("a tier's idle timeout is a positive number of seconds")
    if simultaneous_use < 1:
        raise InternetAccountError("a tier allows at least 1 session at a time")
    values = {"monthly_seconds": monthly_seconds, "idle_timeout": idle_timeout, "simultaneous_use": simultaneous_use}
    if connection.execute(internet_tiers.update().where(internet_tiers.c.name == name).values(**values)).rowcount:
        return False
    connection.execute(internet_tiers.insert().values(name=name, **values))
    return True


def tiers(connection):
    rows = connection.execute(sa.select(internet_tiers).order_by(internet_tiers.c.name))
    return [Tier(*row) for row in rows]


def _tier_exists(connection, name):
    if connection.execute(sa.select(internet_tiers.c.name).where(internet_tiers.c.name == name)).first() is None:
        raise InternetAccountError(f"no tier {name!r}: add it with 'callcenter internet tier-add'")


# -- accounts

_ACCOUNT = sa.select(
    internet_accounts.c.username,
    internet_accounts.c.fund_account_no,
    internet_accounts.c.tier,
    internet_accounts.c.enabled,
    internet_accounts.c.chap_secret.is_not(None).label("chap"),
    internet_accounts.c.failed_logins,
    internet_accounts.c.locked_at,
    internet_accounts.c.created_at,
    internet_accounts.c.language,
)


def account(connection, username):
    """The internet account C{username}, or None."""
    row = connection.execute(_ACCOUNT.where(internet_accounts.c.username == username)).first()
    if row is None:
        return None
    return InternetAccount(
        row.username, row.fund_account_no, row.tier, row.enabled, bool(row.chap), row.failed_logins,
        as_aware(row.locked_at), as_aware(row.created_at), row.language,
    )


def _existing(connection, username):
    found = account(connection, username)
    if found is None:
        raise InternetAccountError(f"no internet account {username!r}")
    return found


def open_account(connection, fund_account_no, username, password_hash, tier, chap_secret=None, language=None):
    """
    Open the internet account C{username} for the fund account.

    @param chap_secret: the password sealed for CHAP, or None: PAP only.
    @param language: of its Reply-Messages; by default the investor's.
    """
    if not _USERNAME.fullmatch(username):
        raise InternetAccountError(
            f"an internet user name is 1 to 64 letters, digits, '.', '_', '@' and '-', not {username!r}"
        )
    investor_language = connection.execute(
        sa.select(customers.c.language)
        .select_from(fund_accounts.join(customers))
        .where(fund_accounts.c.account_no == fund_account_no)
    ).scalar()
    if investor_language is None:
        raise InternetAccountError(f"no fund account {fund_account_no!r}")
    language = language or (investor_language if investor_language in LANGUAGES else "zh")
    if language not in LANGUAGES:
        raise InternetAccountError(f"language {language!r} is not one of {', '.join(LANGUAGES)}")
    held = connection.execute(
        sa.select(internet_accounts.c.username).where(internet_accounts.c.fund_account_no == fund_account_no)
    ).scalar()
    if held is not None:
        raise InternetAccountError(f"fund account {fund_account_no} already has the internet account {held!r}")
    if account(connection, username) is not None:
        raise InternetAccountError(f"the internet user name {username!r} is taken")
    _tier_exists(connection, tier)
    connection.execute(
        internet_accounts.insert().values(
            username=username,
            fund_account_no=fund_account_no,
            password_hash=password_hash,
            chap_secret=chap_secret,
            tier=tier,
            language=language,
        )
    )
    return account(connection, username)


def _change(connection, username, **values):
    _existing(connection, username)
    connection.execute(internet_accounts.update().where(internet_accounts.c.username == username).values(**values))
    return account(connection, username)


def set_enabled(connection, username, enabled):
    return _change(connection, username, enabled=enabled)


def set_tier(connection, username, tier):
    _tier_exists(connection, tier)
    return _change(connection, username, tier=tier)


def set_password(connection, username, password_hash, chap_secret):
    """
    A new password: its hash and its CHAP seal (None: CHAP refused from
    now on).  Failed logins are cleared and the account unlocked, as when
    staff reset a trading password.
    """
    return _change(
        connection, username, password_hash=password_hash, chap_secret=chap_secret, failed_logins=0, locked_at=None
    )


def unlock(connection, username):
    """Clear the failed logins and the lock."""
    return _change(connection, username, failed_logins=0, locked_at=None)


def record_failure(connection, username, max_attempts, now):
    """Count a wrong password; lock at C{max_attempts} in a row.  True if now locked."""
    where = internet_accounts.c.username == username
    connection.execute(
        internet_accounts.update().where(where).values(failed_logins=internet_accounts.c.failed_logins + 1)
    )
    failed = connection.execute(sa.select(internet_accounts.c.failed_logins).where(where)).scalar()
    if failed is None or failed < max_attempts:
        return False
    connection.execute(
        internet_accounts.update().where(where, internet_accounts.c.locked_at.is_(None)).values(locked_at=as_utc(now))
    )
    return True


def clear_failures(connection, username):
    """A right password: the wrong ones before it no longer count."""
    connection.execute(
        internet_accounts.update()
        .where(internet_accounts.c.username == username, internet_accounts.c.failed_logins != 0)
        .values(failed_logins=0)
    )


# -- what the access policy reads

# Accounts with their tier and their usage in the month bound as p_month.
ACCOUNT_TIER_USAGE = internet_accounts.join(
    internet_tiers, internet_accounts.c.tier == internet_tiers.c.name
).outerjoin(
    internet_usage,
    sa.and_(
        internet_usage.c.username == internet_accounts.c.username,
        internet_usage.c.month == sa.bindparam("p_month"),
    ),
)
_STATES = (
    sa.select(
        internet_accounts.c.username,
        internet_accounts.c.password_hash,
        internet_accounts.c.chap_secret,
        internet_accounts.c.enabled,
        internet_accounts.c.locked_at,
        internet_accounts.c.failed_logins,
        internet_accounts.c.language,
        internet_tiers.c.monthly_seconds,
        internet_tiers.c.idle_timeout,
        internet_tiers.c.simultaneous_use,
        sa.func.coalesce(internet_usage.c.seconds, 0).label("used_seconds"),
    )
    .select_from(ACCOUNT_TIER_USAGE)
    .where(internet_accounts.c.username.in_(sa.bindparam("p_usernames", expanding=True)))
)
_ONLINE_COUNTS = (
    sa.select(radius_sessions.c.username, sa.func.count())
    .where(
        radius_sessions.c.username.in_(sa.bindparam("p_usernames", expanding=True)),
        radius_sessions.c.stopped_at.is_(None),
    )
    .group_by(radius_sessions.c.username)
)


def access_states(connection, usernames, month):
    """C{{username: AccessState}} for those of C{usernames} that have an account."""
    usernames = list(usernames)
    parameters = {"p_usernames": usernames, "p_month": month}
    online = dict(connection.execute(_ONLINE_COUNTS, parameters).all())
    return {
        row.username: AccessState(
            row.username, row.password_hash, row.chap_secret, row.enabled, row.locked_at is not None,
            row.failed_logins, row.language, row.monthly_seconds, row.idle_timeout, row.simultaneous_use,
            month, row.used_seconds, online.get(row.username, 0),
        )
        for row in connection.execute(_STATES, parameters)
    }


# -- sessions, usage and disconnects

_SESSION_COLUMNS = tuple(radius_sessions.c[field.name] for field in dataclasses.fields(Session))


def _session(row):
    values = row._asdict()
    for name in ("started_at", "updated_at", "stopped_at"):
        values[name] = as_aware(values[name])
    return Session(**values)


def session(connection, session_id):
    row = connection.execute(sa.select(*_SESSION_COLUMNS).where(radius_sessions.c.id == session_id)).first()
    return None if row is None else _session(row)


def sessions_online(connection, username=None, client=None):
    """The sessions online, of one user or one NAS if given; oldest first."""
    query = sa.select(*_SESSION_COLUMNS).where(radius_sessions.c.stopped_at.is_(None))
    if username is not None:
        query = query.where(radius_sessions.c.username == username)
    if client is not None:
        query = query.where(radius_sessions.c.client == client)
    query = query.order_by(radius_sessions.c.started_at, radius_sessions.c.id)
    return [_session(row) for row in connection.execute(query)]


def usage(connection, username, month):
    """What C{username} used in C{month} ("2026-12")."""
    row = connection.execute(
        sa.select(internet_usage.c.seconds, internet_usage.c.input_octets, internet_usage.c.output_octets).where(
            internet_usage.c.username == username, internet_usage.c.month == month
        )
    ).first()
    return Usage(month) if row is None else Usage(month, *row)


def record_disconnect(connection, session_id, reason, outcome, requested_at, finished_at=None, attempts=1,
                      error_cause=None):
    """
    Keep what became of a Disconnect-Request (RFC 5176) for session
    C{session_id}; returns the record's id.

    @param reason: why, e.g. "quota_exhausted" or "staff".
    @param outcome: "ack", "nak" or "timeout".
    @param requested_at: when the first request was sent; C{finished_at}
        when the answer came or the retries gave up.  Aware datetimes or
        POSIX seconds (C{clock.seconds()}).
    @param attempts: how many times the request was sent.
    @param error_cause: the NAK's Error-Cause (RFC 5176 §3.5), if any.
    """
    if outcome not in DISCONNECT_OUTCOMES:
        raise ValueError(f"outcome {outcome!r} is not one of {', '.join(DISCONNECT_OUTCOMES)}")
    return connection.execute(
        radius_disconnects.insert().values(
            session_id=session_id,
            reason=reason,
            outcome=outcome,
            requested_at=as_utc(requested_at),
            finished_at=as_utc(finished_at),
            attempts=attempts,
            error_cause=error_cause,
        )
    ).inserted_primary_key[0]
