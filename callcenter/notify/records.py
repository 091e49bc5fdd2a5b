"""
The outbox in the store: messages, their history and the SMSC's segment
ids.  Functions of a connection, run in the store's transactions (most in
the outbox's group commits).

A message is stored before anything acknowledges the event that made it; its idempotency key (event,
recipient, channel) is unique, so a redelivered event or a restart's
catch-up inserts nothing twice.
"""

import datetime
from dataclasses import dataclass

import sqlalchemy as sa

from callcenter.notify.message import OutgoingMessage
from callcenter.store.schema import notify_cursors, notify_history, notify_messages, notify_provider_ids

QUEUED = "queued"
SENT = "sent"
DELIVERED = "delivered"
FAILED = "failed"
DEAD = "dead"
STATES = (QUEUED, SENT, DELIVERED, FAILED, DEAD)


@dataclass(frozen=True, slots=True)
class Draft:
    """A message to store: rendered, addressed, not yet numbered."""

    idempotency_key: str
    fund_account_no: str | None
    event: str
    channel: str
    address: str
    language: str
    subject: str
    body: str
    not_before: datetime.datetime


@dataclass(frozen=True, slots=True)
class Pending:
    """A stored message waiting to be sent: what to send, when, and how many tries it has had."""

    message: OutgoingMessage
    not_before: datetime.datetime
    attempts: int


def _insert(connection, table, rows):
    if rows:
        connection.execute(table.insert(), rows)


# The statements a burst of alerts runs ten thousand rows at a time go
# straight to the driver's executemany: SQLAlchemy's per-row parameter
# processing (three DateTime columns a row) cost more than the database.
def _many(connection, sql, rows):
    """C{sql} with C{?} placeholders (C{%s} on PostgreSQL's driver), once per row."""
    if rows:
        if connection.dialect.paramstyle != "qmark":
            sql = sql.replace("?", "%s")
        connection.exec_driver_sql(sql, rows)


def _stamp(connection, moment):
    """A time as the driver takes it: on SQLite the text SQLAlchemy's DateTime stores (UTC)."""
    if connection.dialect.name == "sqlite":
        return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    return moment


def store_drafts(connection, drafts, now):
    """
    Insert the drafts whose keys are new.

    @return: a L{Pending} for each message inserted (repeats of a stored
        key are left out).
    """
    if not drafts:
        return []
    keys = [draft.idempotency_key for draft in drafts]
    known = set()
    # Bounded IN lists: SQLite takes at most 32,766 parameters a statement.
    for start in range(0, len(keys), 500):
        known.update(
            connection.execute(
                sa.select(notify_messages.c.idempotency_key).where(
                    notify_messages.c.idempotency_key.in_(keys[start:start + 500])
                )
            ).scalars()
        )
    fresh = {}
    for draft in drafts:
        if draft.idempotency_key not in known and draft.idempotency_key not in fresh:
            fresh[draft.idempotency_key] = draft
    if not fresh:
        return []
    stamp = _stamp(connection, now)
    # Most drafts of a batch share the very same time object (now, or a
    # quiet hours' end): strftime per row was a third of this function, and
    # hashing an aware datetime costs nearly as much, so by identity (the
    # drafts keep each object alive meanwhile).
    stamps = {id(now): stamp}

    def stamped(moment):
        found = stamps.get(id(moment))
        if found is None:
            found = stamps[id(moment)] = _stamp(connection, moment)
        return found

    rows = [
        (d.idempotency_key, d.fund_account_no, d.event, d.channel, d.address, d.language, d.subject, d.body,
         stamped(d.not_before), stamp)
        for d in fresh.values()
    ]
    # One executemany, then the ids by key: RETURNING in the order of the
    # rows makes SQLAlchemy run one INSERT per row on SQLite, ten times
    # slower in a burst of alerts.  Its "queued" history is the row's
    # created_at (see message_with_history).
    _many(
        connection,
        "INSERT INTO notify_messages (idempotency_key, fund_account_no, event, channel, address, language, subject, "
        "body, state, attempts, not_before, provider_ids, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, '', ?, ?)",
        [row + (row[-1],) for row in rows],
    )
    ids = {}
    fresh_keys = list(fresh)
    for start in range(0, len(fresh_keys), 500):
        ids.update(
            connection.execute(
                sa.select(notify_messages.c.idempotency_key, notify_messages.c.message_id).where(
                    notify_messages.c.idempotency_key.in_(fresh_keys[start:start + 500])
                )
            ).all()
        )
    return [Pending(_outgoing(ids[key], draft), draft.not_before, 0) for key, draft in fresh.items()]


def _outgoing(message_id, row):
    return OutgoingMessage(
        message_id=message_id,
        channel=row.channel,
        address=row.address,
        body=row.body,
        subject=row.subject,
        language=row.language,
        idempotency_key=row.idempotency_key,
    )


def pending_messages(connection, channels, due_by=None, message_id=None):
    """
    The queued messages of C{channels} (due by C{due_by}, if given), oldest
    first: what a restart sends (again), and what a sweep finds queued by
    another process (the CLI's retry, another node).
    """
    query = (
        sa.select(notify_messages)
        .where(notify_messages.c.state == QUEUED, notify_messages.c.channel.in_(list(channels)))
        .order_by(notify_messages.c.message_id)
    )
    if due_by is not None:
        query = query.where(notify_messages.c.not_before <= due_by)
    if message_id is not None:
        query = query.where(notify_messages.c.message_id == message_id)
    rows = connection.execute(query)
    return [Pending(_outgoing(row.message_id, row), _aware(row.not_before), row.attempts) for row in rows]


def _aware(moment):
    # SQLite gives back naive datetimes for what was stored in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.timezone.utc)


@dataclass(frozen=True, slots=True)
class Outcome:
    """
    What became of one attempt: C{state} SENT (C{provider_ids} given),
    QUEUED (to be retried at C{not_before}) or DEAD; C{detail} for the
    history.
    """

    message_id: int
    channel: str
    state: str
    attempts: int
    detail: str = ""
    provider_ids: tuple = ()
    not_before: datetime.datetime | None = None


_NOT_SENT = (
    notify_messages.update()
    .where(notify_messages.c.message_id == sa.bindparam("p_message_id"))
    .values(
        state=sa.bindparam("p_state"),
        attempts=sa.bindparam("p_attempts"),
        last_error=sa.bindparam("p_last_error"),
        not_before=sa.bindparam("p_not_before"),
        finished_at=sa.bindparam("p_finished_at"),
        updated_at=sa.bindparam("p_now"),
    )
)


def record_outcomes(connection, outcomes, now):
    """
    Apply a batch of attempts' outcomes.  A message taken by its peer is
    its row's state and sent_at (and its SMS segments' ids, for the
    receipts); a failed attempt or a dead letter is also a history row,
    with the reason.
    """
    sent = [o for o in outcomes if o.state == SENT]
    other = [o for o in outcomes if o.state != SENT]
    if sent:
        stamp = _stamp(connection, now)
        _many(
            connection,
            "UPDATE notify_messages SET state = 'sent', attempts = ?, provider_ids = ?, last_error = NULL, "
            "sent_at = ?, updated_at = ? WHERE message_id = ?",
            [(o.attempts, ",".join(o.provider_ids), stamp, stamp, o.message_id) for o in sent],
        )
        # One id (a short SMS) is found in the message's row; a long one's
        # segments each have theirs.
        _insert(connection, notify_provider_ids, [
            {"channel": o.channel, "provider_id": provider_id, "message_id": o.message_id, "delivered": None}
            for o in sent
            if len(o.provider_ids) > 1
            for provider_id in o.provider_ids
        ])
    if other:
        connection.execute(_NOT_SENT, [
            {"p_message_id": o.message_id, "p_state": o.state, "p_attempts": o.attempts, "p_last_error": o.detail,
             "p_not_before": o.not_before or now, "p_finished_at": now if o.state == DEAD else None, "p_now": now}
            for o in other
        ])
        _insert(connection, notify_history, [
            {"message_id": o.message_id, "at": now, "state": o.state, "detail": o.detail} for o in other
        ])


def record_receipts(connection, channel, receipts, now):
    """
    Delivery reports: a message is delivered when every segment is, failed
    as soon as one is not.  A batch is a few statements whatever its size
    (the receipts of a burst of alerts come as fast as the messages went).

    @return: the receipts that match no segment we know (yet: the receipt
        of a long SMS's first segment comes before the message is taken
        whole; or never: another system's messages on a shared account).
    """
    final = {}
    for receipt in receipts:
        if receipt.delivered is not None:
            final[receipt.provider_id] = receipt
    if not final:
        return []
    outcomes = []
    ids = list(final)
    for start in range(0, len(ids), 500):
        for message_id, provider_id, state in connection.execute(
            sa.select(notify_messages.c.message_id, notify_messages.c.provider_ids, notify_messages.c.state).where(
                notify_messages.c.channel == channel, notify_messages.c.provider_ids.in_(ids[start:start + 500]),
            )
        ):
            receipt = final.pop(provider_id)
            # Only from "sent": a repeated receipt never moves a message again.
            if state == SENT:
                outcomes.append((message_id, DELIVERED if receipt.delivered else FAILED, receipt))
    owners = {}
    ids = list(final)
    for start in range(0, len(ids), 500):
        owners.update(
            connection.execute(
                sa.select(notify_provider_ids.c.provider_id, notify_provider_ids.c.message_id).where(
                    notify_provider_ids.c.channel == channel, notify_provider_ids.c.provider_id.in_(ids[start:start + 500])
                )
            ).all()
        )
    unknown = [receipt for provider_id, receipt in final.items() if provider_id not in owners]
    if owners:
        outcomes += _segments_received(connection, channel, owners, final)
    stamp = _stamp(connection, now)
    _many(
        connection,
        "UPDATE notify_messages SET state = ?, updated_at = ?, finished_at = ?, last_error = ? WHERE message_id = ?",
        [(state, stamp, stamp, None if state == DELIVERED else (r.state if not r.detail else f"{r.state}: {r.detail}"), m)
         for m, state, r in outcomes],
    )
    return unknown


def _segments_received(connection, channel, owners, final):
    """The long messages whose segments' receipts are all in (or one failed): (message id, state, receipt)."""
    connection.execute(
        notify_provider_ids.update()
        .where(notify_provider_ids.c.channel == channel, notify_provider_ids.c.provider_id == sa.bindparam("p_id"))
        .values(delivered=sa.bindparam("p_delivered")),
        [{"p_id": provider_id, "p_delivered": final[provider_id].delivered} for provider_id in owners],
    )
    touched = {}
    for provider_id, message_id in owners.items():
        touched[message_id] = final[provider_id]
    segments = {}
    message_ids = list(touched)
    for start in range(0, len(message_ids), 500):
        for message_id, delivered in connection.execute(
            sa.select(notify_provider_ids.c.message_id, notify_provider_ids.c.delivered).where(
                notify_provider_ids.c.message_id.in_(message_ids[start:start + 500])
            )
        ):
            segments.setdefault(message_id, []).append(delivered)
    outcomes = []
    for message_id, receipt in touched.items():
        states = segments[message_id]
        if False in states:
            outcomes.append((message_id, FAILED, receipt))
        elif all(states):
            outcomes.append((message_id, DELIVERED, receipt))
    if not outcomes:
        return []
    # Only from "sent": a late receipt never moves a message back.
    sent = set()
    finished = [message_id for message_id, _, _ in outcomes]
    for start in range(0, len(finished), 500):
        sent.update(
            connection.execute(
                sa.select(notify_messages.c.message_id).where(
                    notify_messages.c.message_id.in_(finished[start:start + 500]), notify_messages.c.state == SENT
                )
            ).scalars()
        )
    return [o for o in outcomes if o[0] in sent]


def message_with_history(connection, message_id):
    """The message's row and its history (oldest first), or None."""
    row = connection.execute(sa.select(notify_messages).where(notify_messages.c.message_id == message_id)).mappings().first()
    if row is None:
        return None
    history = connection.execute(
        sa.select(notify_history.c.at, notify_history.c.state, notify_history.c.detail)
        .where(notify_history.c.message_id == message_id)
        .order_by(notify_history.c.id)
    ).mappings().all()
    # The normal course from the row, the rest from notify_history, in time order.
    course = [{"at": row["created_at"], "state": QUEUED, "detail": ""}]
    if row["sent_at"] is not None:
        course.append({"at": row["sent_at"], "state": SENT, "detail": row["provider_ids"]})
    if row["finished_at"] is not None and row["state"] in (DELIVERED, FAILED):
        course.append({"at": row["finished_at"], "state": row["state"], "detail": row["last_error"] or ""})
    events = course + [dict(h) for h in history]
    order = {QUEUED: 0, SENT: 1, DELIVERED: 2, FAILED: 2, DEAD: 2}
    events.sort(key=lambda e: (_aware(e["at"]), order.get(e["state"], 0)))
    return {**row, "history": events}


def recent_messages(connection, fund_account_no=None, state=None, limit=50):
    """The newest messages first, for one investor and/or in one state."""
    query = sa.select(notify_messages).order_by(notify_messages.c.message_id.desc()).limit(limit)
    if fund_account_no is not None:
        query = query.where(notify_messages.c.fund_account_no == fund_account_no)
    if state is not None:
        query = query.where(notify_messages.c.state == state)
    return [dict(row) for row in connection.execute(query).mappings()]


def requeue_dead(connection, message_id, now):
    """Staff send a dead-lettered message again: queued, its attempts counted afresh.  False if not dead."""
    changed = connection.execute(
        notify_messages.update()
        .where(notify_messages.c.message_id == message_id, notify_messages.c.state == DEAD)
        .values(state=QUEUED, attempts=0, not_before=now, updated_at=now)
    ).rowcount
    if changed:
        _insert(connection, notify_history, [{"message_id": message_id, "at": now, "state": QUEUED, "detail": "requeued by staff"}])
    return bool(changed)


def cursor(connection, name):
    return connection.execute(sa.select(notify_cursors.c.position).where(notify_cursors.c.name == name)).scalar()


def move_cursor(connection, name, position):
    if connection.execute(
        notify_cursors.update().where(notify_cursors.c.name == name).values(position=position)
    ).rowcount == 0:
        connection.execute(notify_cursors.insert().values(name=name, position=position))
