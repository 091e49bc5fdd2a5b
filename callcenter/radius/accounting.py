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

Records are written in batches (L{callcenter.store.batches.GroupCommitter}),
all committed together, then each answered.  A batch is applied in a few
statements (L{apply_records}); one that raises (a bad record) is undone
and applied again a record at a time, each in its own savepoint, so that
only the bad record fails.

L{AccountingSink.record} fires with the sessions to disconnect: after the
record, their user has used up the month's time and they are still online;
L{AccountingSink.keep} says the same to a function, without a Deferred.
The service sends them a Disconnect-Request (L{IDisconnector}); the next
Interim-Update reports them again if they are still online.
"""

import datetime
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from callcenter.radius.accounts import ACCOUNT_TIER_USAGE, as_aware, as_utc, month_of, sessions_online
from callcenter.radius.interfaces import IAccountingSink
from callcenter.radius.model import ACCOUNTING_OFF, ACCOUNTING_ON, INTERIM_UPDATE, START, STOP
from callcenter.store.batches import GroupCommitter, run_each
from callcenter.store.schema import internet_accounts, internet_tiers, internet_usage, radius_sessions

__all__ = ["NAS_REBOOT", "AccountingSink", "Applied", "apply_record", "apply_records", "run_records"]

_log = Logger()

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


def _apply(before, record, moment):
    """
    A session's columns (L{_UPDATED}) after C{record}, and what it adds to
    the month's usage (seconds, input and output octets).
    """
    after = dict(before)
    increase = []
    for name in COUNTERS:
        reported = getattr(record, name)
        added = max(0, reported - before[name]) if reported is not None else 0
        increase.append(added)
        after[name] = before[name] + added
    for name in _DETAILS:
        if before[name] is None:
            after[name] = _detail(record, name)
    after["updated_at"] = max(moment, before["updated_at"])
    if record.status_type == STOP and before["stopped_at"] is None:
        after["stopped_at"] = moment
        after["terminate_cause"] = record.terminate_cause
    return after, tuple(increase)


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
    after, increase = _apply(before, record, moment)
    if after != before:
        connection.execute(_UPDATE_SESSION, {"p_id": row.id, **{f"p_{name}": after[name] for name in _UPDATED}})
    username = after["username"]
    if username is None:
        return Applied()
    month = month_of(received_time)
    if any(increase):
        add_usage = _dialect_statements(connection)[1]
        connection.execute(add_usage, {"p_username": username, "p_month": month,
                                       **{f"p_{name}": added for name, added in zip(_USAGE, increase)}})
    return Applied((username,), _over_quota(connection, username, month))


# -- a batch of records in a few statements
#
# The same rules as apply_record, applied in arrival order in Python to the
# batch's sessions read at once; then one executemany each for the new
# sessions, the changed ones and the usage, and one quota query for all the
# batch's users.  The executemany statements go straight to the driver, as
# in callcenter.notify.records: SQLAlchemy's per-row parameter processing
# (DateTime columns) costs more than the database there.

# Enough ids in one IN list for few round trips, few enough for any SQLite.
_CHUNK = 400
_TIMES = ("started_at", "updated_at", "stopped_at")
_READ = ("id", "client", "acct_session_id", *_UPDATED)
_INSERTED = ("client", "acct_session_id", "started_at", *_UPDATED)
_INSERT_SESSIONS = (
    f"INSERT INTO radius_sessions ({', '.join(_INSERTED)}) VALUES ({', '.join('?' * len(_INSERTED))}) "
    "ON CONFLICT DO NOTHING"
)
_UPDATE_SESSIONS = f"UPDATE radius_sessions SET {', '.join(f'{name} = ?' for name in _UPDATED)} WHERE id = ?"
_ADD_USAGE = (
    f"INSERT INTO internet_usage (username, month, {', '.join(_USAGE)}) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (username, month) DO UPDATE SET "
    + ", ".join(f"{name} = internet_usage.{name} + excluded.{name}" for name in _USAGE)
)
_QUOTAS = (
    sa.select(internet_accounts.c.username, internet_tiers.c.monthly_seconds, internet_usage.c.seconds)
    .select_from(ACCOUNT_TIER_USAGE)
    .where(internet_accounts.c.username.in_(sa.bindparam("p_usernames", expanding=True)))
)


def _driver_sql(connection, sql):
    """C{sql} written with C{?} placeholders, as the connection's driver takes it."""
    return sql if connection.dialect.paramstyle == "qmark" else sql.replace("?", "%s")


def _many(connection, sql, rows):
    if rows:
        connection.exec_driver_sql(_driver_sql(connection, sql), rows)


class _Stamps(dict):
    """
    Times as the driver takes them: on SQLite the text SQLAlchemy's
    DateTime stores (UTC).  Remembered: a batch's records share few
    moments, and strftime was a tenth of a batch's cost.
    """

    def __init__(self, connection):
        super().__init__()
        self.text = connection.dialect.name == "sqlite"

    def __missing__(self, moment):
        stamp = moment
        if self.text and moment is not None:
            stamp = moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
        self[moment] = stamp
        return stamp


def _read_time(value):
    """A time as the driver gives it (text on SQLite), aware."""
    if isinstance(value, str):
        return datetime.datetime.fromisoformat(value).replace(tzinfo=datetime.timezone.utc)
    return as_aware(value)


def _read_sessions(connection, keys):
    """The sessions of C{keys} ((client, acct_session_id)) that exist, by key; locked on PostgreSQL."""
    by_client = {}
    for client, session_id in keys:
        by_client.setdefault(client, []).append(session_id)
    lock = " FOR UPDATE" if connection.dialect.name == "postgresql" else ""
    found = {}
    for client, session_ids in by_client.items():
        for first in range(0, len(session_ids), _CHUNK):
            chunk = session_ids[first:first + _CHUNK]
            sql = (f"SELECT {', '.join(_READ)} FROM radius_sessions "
                   f"WHERE client = ? AND acct_session_id IN ({', '.join('?' * len(chunk))}){lock}")
            # fetchall: one call to the driver; iterating the result fetches row by row.
            for row in connection.exec_driver_sql(_driver_sql(connection, sql), (client, *chunk)).fetchall():
                values = dict(zip(_READ, row))
                for name in ("updated_at", "stopped_at"):
                    values[name] = _read_time(values[name])
                found[values["client"], values["acct_session_id"]] = values
    return found


def _new_session(stamps, record, moment):
    """The row L{_create_session} would insert for C{record}, as driver parameters."""
    started = moment
    if record.status_type != START and record.session_time:
        started = as_utc(moment.timestamp() - record.session_time)
    values = {name: _detail(record, name) for name in _DETAILS}
    values.update({name: 0 for name in COUNTERS})
    values.update(client=record.client, acct_session_id=record.session_id, started_at=started,
                  updated_at=moment, stopped_at=None, terminate_cause=None)
    return tuple(stamps[values[name]] if name in _TIMES else values[name] for name in _INSERTED)


def _quotas(connection, usernames, month):
    """C{{username: (monthly_seconds, seconds used in month)}} of those with a limited tier."""
    quotas = {}
    for first in range(0, len(usernames), _CHUNK):
        rows = connection.execute(_QUOTAS, {"p_usernames": usernames[first:first + _CHUNK], "p_month": month})
        for row in rows:
            if row.monthly_seconds is not None:
                quotas[row.username] = (row.monthly_seconds, row.seconds or 0)
    return quotas


def apply_records(connection, records):
    """
    Keep many L{AccountingRecord}s (Start, Interim-Update and Stop, each
    with a session id) in arrival order: what L{apply_record} does for
    each in turn, in a few statements.

    @param records: C{(record, event_time, received_time)} for each, as
        L{apply_record} takes them.
    @return: an L{Applied} for each record.  A record whose user is out of
        time is given the user's sessions online after the whole batch.
    """
    keys = list(dict.fromkeys((record.client, record.session_id) for record, _, _ in records))
    stamps = _Stamps(connection)
    months = {}
    stored = _read_sessions(connection, keys)
    # The first record of a session unknown creates it, as apply_record
    # does; one created meanwhile by another server is kept (conflict).
    created = {}
    for record, event_time, _ in records:
        key = (record.client, record.session_id)
        if key not in stored and key not in created:
            created[key] = _new_session(stamps, record, as_utc(event_time))
    if created:
        _many(connection, _INSERT_SESSIONS, list(created.values()))
        stored.update(_read_sessions(connection, list(created)))
    sessions = {key: {name: values[name] for name in _UPDATED} for key, values in stored.items()}
    seen = set()
    usage = {}
    # For each record: None (it changed nothing of a user), else its user,
    # month and the seconds the batch has added to them up to it.
    marks = []
    for record, event_time, received_time in records:
        key = (record.client, record.session_id)
        first = key not in seen
        seen.add(key)
        if record.status_type == START and not (first and key in created):
            marks.append(None)
            continue
        after, increase = _apply(sessions[key], record, as_utc(event_time))
        sessions[key] = after
        username = after["username"]
        if username is None:
            marks.append(None)
            continue
        # Remembered by the minute (time zones are whole minutes from UTC):
        # by the second, nearly every record had its own, and month_of
        # costs as much as the rest of a record's arithmetic.
        minute = received_time // 60
        month = months.get(minute)
        if month is None:
            month = months[minute] = month_of(minute * 60)
        added = usage.setdefault((username, month), [0, 0, 0])
        for n, value in enumerate(increase):
            added[n] += value
        marks.append((username, month, added[0]))
    changed = []
    for key, after in sessions.items():
        values = stored[key]
        if any(after[name] != values[name] for name in _UPDATED):
            changed.append(tuple(stamps[after[name]] if name in _TIMES else after[name]
                                 for name in _UPDATED) + (values["id"],))
    _many(connection, _UPDATE_SESSIONS, changed)
    _many(connection, _ADD_USAGE, [(username, month, *added) for (username, month), added in sorted(usage.items())
                                   if any(added)])
    # Over quota after a record: the seconds used after the batch, less
    # what the batch's later records of that user added.
    quotas = {}
    for month in {mark[1] for mark in marks if mark is not None}:
        names = sorted({mark[0] for mark in marks if mark is not None and mark[1] == month})
        for username, quota in _quotas(connection, names, month).items():
            quotas[username, month] = quota
    online = {}
    applied = []
    for mark in marks:
        if mark is None:
            applied.append(Applied())
            continue
        username, month, added_so_far = mark
        disconnect = ()
        if (username, month) in quotas:
            monthly, used = quotas[username, month]
            if used - (usage[username, month][0] - added_so_far) >= monthly:
                if username not in online:
                    online[username] = tuple(sessions_online(connection, username=username))
                disconnect = online[username]
        applied.append(Applied((username,), disconnect))
    return applied


def _apply_together(connection, batch):
    """C{batch}'s records in a few statements; if that raises, each alone, so that one bad record fails alone."""
    if not batch:
        return []
    savepoint = connection.begin_nested()
    try:
        outcomes = apply_records(connection, [args for _, args in batch])
    except Exception as e:
        savepoint.rollback()
        # A bad record is then refused alone; a fault of the batch path
        # itself would otherwise only show as lost speed.
        _log.warn("accounting batch of {n} written record by record: {why}", n=len(batch), why=str(e) or type(e).__name__)
        return run_each(connection, batch)
    savepoint.commit()
    return outcomes


def run_records(connection, batch):
    """
    A L{GroupCommitter} batch of C{(apply_record, (record, event_time,
    received_time))}: together (L{apply_records}) but for Accounting-On and
    Accounting-Off, rare, kept in their place and each alone.
    """
    outcomes = []
    together = []
    for work, args in batch:
        record = args[0]
        if record.status_type in (START, INTERIM_UPDATE, STOP) and record.session_id:
            together.append((work, args))
        else:
            outcomes += _apply_together(connection, together)
            together = []
            outcomes += run_each(connection, [(work, args)])
    return outcomes + _apply_together(connection, together)


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
        self._committer = GroupCommitter(store, max_batch, run_records)

    def record(self, record):
        """
        Keep C{record}.  Fires, once it is durable, with the sessions
        (L{callcenter.radius.accounts.Session}s, often none) to disconnect
        because their user's monthly time is used up.
        """
        if self._ignored(record):
            return defer.succeed([])
        received = self._clock.seconds()
        event_time = record.event_time if record.event_time is not None else received
        d = self._committer.submit(apply_record, record, event_time, received)
        return d.addCallback(self._applied)

    def keep(self, record, done, context):
        """
        L{record} without a Deferred, for the accounting listener's
        thousands a second: C{done(outcome, context)} once C{record} is
        durable, the outcome the sessions to disconnect (as L{record}
        fires with), or a L{Failure} if it was not kept.  C{done} may be
        called before this returns (a record ignored).
        """
        if self._ignored(record):
            done([], context)
            return
        received = self._clock.seconds()
        event_time = record.event_time if record.event_time is not None else received
        self._committer.submit_then(self._kept, (done, context), apply_record, record, event_time, received)

    def _kept(self, outcome, caller):
        done, context = caller
        if not isinstance(outcome, Failure):
            try:
                outcome = self._applied(outcome)
            except Exception:
                outcome = Failure()
        done(outcome, context)

    def _ignored(self, record):
        if record.status_type not in (ACCOUNTING_ON, ACCOUNTING_OFF) and (
            record.status_type not in (START, INTERIM_UPDATE, STOP) or not record.session_id
        ):
            # Answered all the same: the NAS would retransmit it forever.
            self.log.warn("accounting record from {client} ignored: {status} without a session id or unknown",
                          client=record.client, status=record.status_type)
            return True
        return False

    def _applied(self, applied):
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
