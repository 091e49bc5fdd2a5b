"""
What the NASes report (RFC 2866): sessions in radius_sessions, usage per
user and month in internet_usage, both durable before the NAS is answered.

- Start creates the session; a Start for a session already known (a
  retransmission, or one arriving after its Interim-Update) changes
  nothing.
- Interim-Update and Stop carry the session's cumulative counters
  (Acct-Session-Time, octets with their Gigawords).  A session keeps the
  highest reported, and only the increase is added to the month's usage:
  a record retransmitted, or overtaken by a later one, adds nothing.
  Stop also closes the session (once: its first Stop's time and cause).
- An Interim-Update or Stop for a session we never saw (the NAS restarted,
  or its Start was lost) creates it.
- Accounting-On and Accounting-Off (RFC 2866 §5.1: the NAS starts or stops)
  close every session still open at that NAS, with the Terminate-Cause
  "NAS-Reboot": they ended, and no Stop will come.

Usage counts in the month it is reported in, by this server's clock (a
NAS's wrong clock must not move usage out of the month the quota looks
at); the session's times are the NAS's (Event-Timestamp) when given.

Records are written in batches (L{callcenter.store.batches.GroupCommitter}):
each in its own savepoint, all committed together, then each answered.

L{AccountingSink.record} fires with the sessions to disconnect: after the
record, their user has used up the month's time and they are still online.
The service sends them a Disconnect-Request (L{IDisconnector}); the next
Interim-Update reports them again if they are still online.
"""

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from callcenter.radius.accounts import ACCOUNT_TIER_USAGE, as_aware, as_utc, month_of, sessions_online
from callcenter.radius.interfaces import IAccountingSink
from callcenter.radius.model import ACCOUNTING_OFF, ACCOUNTING_ON, INTERIM_UPDATE, START, STOP
from callcenter.store.batches import GroupCommitter
from callcenter.store.schema import internet_accounts, internet_tiers, internet_usage, radius_sessions

__all__ = ["NAS_REBOOT", "AccountingSink", "Applied", "apply_record"]

NAS_REBOOT = "NAS-Reboot"
# A session's cumulative counters, and the usage columns they add to.
COUNTERS = ("session_time", "input_octets", "output_octets")
_USAGE = ("seconds", "input_octets", "output_octets")
# Copied from a record onto its session when the session has none yet.
_DETAILS = ("username", "nas_ip", "nas_port", "framed_ip", "calling_station_id")
# What a record may change of its session.
_UPDATED = (*COUNTERS, *_DETAILS, "updated_at", "stopped_at", "terminate_cause")


@dataclass(frozen=True)
class Applied:
    """
    What a record did: the users whose sessions or usage changed (their
    cached state is stale), and the sessions to disconnect.
    """

    usernames: tuple = ()
    disconnect: tuple = ()


_SESSION_BY_ID = sa.select(radius_sessions).where(
    radius_sessions.c.client == sa.bindparam("p_client"),
    radius_sessions.c.acct_session_id == sa.bindparam("p_session_id"),
)
_SESSION_FOR_UPDATE = _SESSION_BY_ID.with_for_update()
_QUOTA = (
    sa.select(internet_tiers.c.monthly_seconds, internet_usage.c.seconds)
    .select_from(ACCOUNT_TIER_USAGE)
    .where(internet_accounts.c.username == sa.bindparam("p_username"))
)


_UPDATE_SESSION = (
    radius_sessions.update()
    .where(radius_sessions.c.id == sa.bindparam("p_id"))
    .values({name: sa.bindparam(f"p_{name}") for name in _UPDATED})
)
# The statements are built once (per dialect for the upserts): SQLAlchemy
# then reuses their compiled form; building them anew for each record was
# most of its cost.
_DIALECT_STATEMENTS = {}


def _dialect_statements(connection):
    """C{(insert a session unless there, add to a month's usage)} in the connection's dialect."""
    name = connection.dialect.name
    found = _DIALECT_STATEMENTS.get(name)
    if found is None:
        insert = (postgresql if name == "postgresql" else sqlite).insert
        create = insert(radius_sessions).values(
            {name: sa.bindparam(f"p_{name}") for name in ("client", "acct_session_id", "started_at", *_UPDATED)}
        ).on_conflict_do_nothing()
        usage = insert(internet_usage).values(
            {name: sa.bindparam(f"p_{name}") for name in ("username", "month", *_USAGE)}
        )
        usage = usage.on_conflict_do_update(
            index_elements=[internet_usage.c.username, internet_usage.c.month],
            set_={name: internet_usage.c[name] + usage.excluded[name] for name in _USAGE},
        )
        found = _DIALECT_STATEMENTS[name] = (create, usage)
    return found


def _session(connection, record):
    query = _SESSION_FOR_UPDATE if connection.dialect.name == "postgresql" else _SESSION_BY_ID
    return connection.execute(query, {"p_client": record.client, "p_session_id": record.session_id}).first()


def _create_session(connection, record, moment):
    """Insert the session with nothing counted yet, unless a concurrent record just did."""
    started = moment
    if record.status_type != START and record.session_time:
        started = as_utc(moment.timestamp() - record.session_time)
    values = {f"p_{name}": _detail(record, name) for name in _DETAILS}
    values.update({f"p_{name}": 0 for name in COUNTERS})
    values.update(p_client=record.client, p_acct_session_id=record.session_id, p_started_at=started,
                  p_updated_at=moment, p_stopped_at=None, p_terminate_cause=None)
    connection.execute(_dialect_statements(connection)[0], values)


def _detail(record, column):
    return record.user_name if column == "username" else getattr(record, column)


def _over_quota(connection, username, month):
    """The sessions of C{username} online if the month's time is used up, else ()."""
    row = connection.execute(_QUOTA, {"p_username": username, "p_month": month}).first()
    if row is None or row.monthly_seconds is None or (row.seconds or 0) < row.monthly_seconds:
        return ()
    return tuple(sessions_online(connection, username=username))


def _close_client(connection, client, moment):
    where = sa.and_(radius_sessions.c.client == client, radius_sessions.c.stopped_at.is_(None))
    usernames = set(connection.scalars(sa.select(radius_sessions.c.username).where(where)))
    connection.execute(radius_sessions.update().where(where).values(stopped_at=moment, terminate_cause=NAS_REBOOT))
    return Applied(tuple(sorted(name for name in usernames if name is not None)))


def apply_record(connection, record, event_time, received_time):
    """
    Keep an L{AccountingRecord}; returns what it did (L{Applied}).

    @param event_time: when it happened (POSIX seconds): the NAS's
        Event-Timestamp, else when it was received.
    @param received_time: when it was received: its usage counts in the
        month of this time.
    """
    moment = as_utc(event_time)
    if record.status_type in (ACCOUNTING_ON, ACCOUNTING_OFF):
        return _close_client(connection, record.client, moment)
    if record.status_type not in (START, INTERIM_UPDATE, STOP) or not record.session_id:
        return Applied()
    row = _session(connection, record)
    if row is None:
        _create_session(connection, record, moment)
        row = _session(connection, record)
    elif record.status_type == START:
        return Applied()
    stored = row._mapping
    before = {name: as_aware(stored[name]) if name.endswith("_at") else stored[name] for name in _UPDATED}
    after = dict(before)
    increase = {}
    for name, used in zip(COUNTERS, _USAGE):
        reported = getattr(record, name)
        increase[f"p_{used}"] = max(0, reported - before[name]) if reported is not None else 0
        after[name] = before[name] + increase[f"p_{used}"]
    for name in _DETAILS:
        if before[name] is None:
            after[name] = _detail(record, name)
    after["updated_at"] = max(moment, before["updated_at"])
    if record.status_type == STOP and before["stopped_at"] is None:
        after["stopped_at"] = moment
        after["terminate_cause"] = record.terminate_cause
    if after != before:
        connection.execute(_UPDATE_SESSION, {"p_id": row.id, **{f"p_{name}": after[name] for name in _UPDATED}})
    username = after["username"]
    if username is None:
        return Applied()
    month = month_of(received_time)
    if any(increase.values()):
        add_usage = _dialect_statements(connection)[1]
        connection.execute(add_usage, {"p_username": username, "p_month": month, **increase})
    return Applied((username,), _over_quota(connection, username, month))


@implementer(IAccountingSink)
class AccountingSink:
    """
    @param store: the L{callcenter.interfaces.IStore}.
    @param clock: L{twisted.internet.interfaces.IReactorTime}.
    @param directory: the L{callcenter.radius.directory.AccountDirectory}
        the access policy reads, told which users changed; None for none.
    @param max_batch: the most records in one transaction.
    """

    log = Logger()

    def __init__(self, store, clock, directory=None, max_batch=256):
        self._clock = clock
        self._directory = directory
        self._committer = GroupCommitter(store, max_batch)

    def record(self, record):
        """
        Keep C{record}.  Fires, once it is durable, with the sessions
        (L{callcenter.radius.accounts.Session}s, often none) to disconnect
        because their user's monthly time is used up.
        """
        if record.status_type not in (ACCOUNTING_ON, ACCOUNTING_OFF) and (
            record.status_type not in (START, INTERIM_UPDATE, STOP) or not record.session_id
        ):
            # Answered all the same: the NAS would retransmit it forever.
            self.log.warn("accounting record from {client} ignored: {status} without a session id or unknown",
                          client=record.client, status=record.status_type)
            return defer.succeed([])
        received = self._clock.seconds()
        event_time = record.event_time if record.event_time is not None else received
        d = self._committer.submit(apply_record, record, event_time, received)
        return d.addCallback(self._applied, record)

    def _applied(self, applied, record):
        if self._directory is not None and applied.usernames:
            self._directory.forget(*applied.usernames)
        if applied.disconnect:
            self.log.info(
                "{username} has used this month's internet time: {count} sessions to disconnect",
                username=applied.disconnect[0].username,
                count=len(applied.disconnect),
            )
        return list(applied.disconnect)

    def idle(self):
        """Fires once every record given so far is written."""
        return self._committer.idle()
