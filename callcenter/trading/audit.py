"""
The audit log: every trading and staff action, append-only, each row
chained to the one before by a SHA-256 hash, so that a row changed, deleted
or moved in the database shows when the chain is checked.

How a row's hash is made, so that an auditor can recompute it with any tool:
take the JSON array

    [seq, at, channel, action, outcome, fund_account_no, caller, call_id,
     agent_id, correlation_id, detail, prev_hash]

of the row's values as stored (C{seq} a JSON number, absent values
C{null}, everything else a JSON string; C{detail} is itself JSON text and so
appears as a string), written without any whitespace, non-ASCII characters
as themselves, and only C{"}, C{\\} and control characters escaped (as
Python's C{json.dumps(values, ensure_ascii=False, separators=(",", ":"))}
writes it); C{hash} is the lowercase hex SHA-256 of its UTF-8 bytes.  The
first row's C{prev_hash} is 64 zeros.  For example, in the shell::

    sqlite3 -json callcenter.sqlite 'SELECT * FROM audit_log WHERE seq = 1' |
      jq -j '.[0] | [.seq, .at, .channel, .action, .outcome, .fund_account_no,
             .caller, .call_id, .agent_id, .correlation_id, .detail, .prev_hash]
             | tojson' | sha256sum

A JSON array cannot be read two ways, so no two different rows encode
alike: moving text from one field to the next changes the hash.

The chain alone shows a row edited in place, a row deleted from the middle
and rows renumbered.  Someone with write access could still delete the last
rows, or rewrite a row and every row after it with fresh hashes; an anchor
shows that: L{head} gives the last C{(seq, hash)}, which an operator writes
down or exports (daily, say), and L{verify} with that anchor finds the log
cut short before it or rewritten up to it.

Everything here blocks and runs inside the caller's transaction.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from callcenter.store.schema import audit_log
from callcenter.trading.model import CHANNELS

ZERO_HASH = "0" * 64

# The fields a row's hash covers, in the order they are encoded.
HASHED_FIELDS = (
    "seq",
    "at",
    "channel",
    "action",
    "outcome",
    "fund_account_no",
    "caller",
    "call_id",
    "agent_id",
    "correlation_id",
    "detail",
    "prev_hash",
)

# Any fixed number will do, as long as nothing else takes this advisory
# lock; the ASCII of "ccaudit1" makes a clash with another program unlikely.
POSTGRESQL_LOCK_KEY = int.from_bytes(b"ccaudit1", "big")

# Detail keys that must never reach the log: a trading password or PIN in
# the audit trail would be readable by everyone who may read the trail.
_SECRET_WORDS = ("password", "passwd", "passcode", "secret", "pwd", "pin")
_WORD = re.compile(r"[a-z0-9]+")


def _secret_key(key):
    words = _WORD.findall(re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(key)).lower())
    return any(word in _SECRET_WORDS or "password" in word or "secret" in word for word in words)


def _refuse_secrets(value, where="detail"):
    if isinstance(value, dict):
        for key, inner in value.items():
            if _secret_key(key):
                raise ValueError(f"{where} key {key!r} looks like a secret: secrets are never audited")
            _refuse_secrets(inner, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for inner in value:
            _refuse_secrets(inner, where)


def encode_detail(detail):
    """The canonical JSON text of a detail mapping: keys sorted, no spaces."""
    if detail is None:
        detail = {}
    if not isinstance(detail, dict):
        raise ValueError(f"detail must be a mapping, not {type(detail).__name__}")
    _refuse_secrets(detail)
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def row_hash(row):
    """The hash a row must carry: see the module docstring for the encoding."""
    values = [row[name] for name in HASHED_FIELDS]
    encoded = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def format_at(now):
    """ISO 8601 UTC with microseconds, as the C{at} column holds it."""
    if now.tzinfo is None:
        raise ValueError("audit times must be aware datetimes")
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _fits(values):
    """
    Refuse text longer than its column here, since SQLite would store it
    and PostgreSQL refuse it: the same call must behave alike on both.
    """
    for name, value in values.items():
        length = getattr(audit_log.c[name].type, "length", None)
        if isinstance(value, str) and length is not None and len(value) > length:
            raise ValueError(f"audit {name} is longer than {length} characters")


# Built once: SQLAlchemy then reuses their compiled form without walking them
# again (appending is on every trading action's path).
_LAST = sa.select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
_INSERT = audit_log.insert()


def _last(connection):
    return connection.execute(_LAST).first()


def _serialise_appends(connection):
    """
    Make concurrent appends take turns from here to the end of the
    transaction, so that each reads the true last row: two that both read
    row N would both write N + 1 on the same prev_hash, forking the chain
    (the primary key would then fail one of them).
    """
    if connection.dialect.name == "postgresql":
        # Released at commit or rollback.  Under the default READ COMMITTED
        # isolation the next statement sees what the previous holder
        # committed.
        connection.execute(
            sa.text("SELECT pg_advisory_xact_lock(CAST(:key AS BIGINT))"), {"key": POSTGRESQL_LOCK_KEY}
        )
    # SQLite: Database begins every transaction with BEGIN IMMEDIATE, which
    # takes the database's single write lock before the first statement;
    # no other writer can append until this transaction ends.


def append(connection, origin, action, outcome, fund_account_no=None, detail=None, now=None):
    """
    Add a row to the log, inside the caller's transaction: it is written if
    and only if the transaction commits.

    Appends take turns until commit (see L{_serialise_appends}), so append
    as late in a transaction as possible, and take no row locks after it.

    @param origin: a L{callcenter.trading.model.Origin}.
    @param detail: a JSON-serialisable mapping; None for none.
    @param now: an aware datetime; default the current time.
    @return: the row's C{seq}.
    @raise ValueError: a detail key names a secret (password, PIN, ...), a
        value does not fit its column, or the channel is unknown.
    """
    if origin.channel not in CHANNELS:
        raise ValueError(f"unknown channel {origin.channel!r}: one of {', '.join(CHANNELS)}")
    encoded_detail = encode_detail(detail)
    _serialise_appends(connection)
    last = _last(connection)
    row = {
        "seq": last.seq + 1 if last else 1,
        "at": format_at(now or datetime.now(timezone.utc)),
        "channel": origin.channel,
        "action": action,
        "outcome": outcome,
        "fund_account_no": fund_account_no,
        "caller": origin.caller,
        "call_id": origin.call_id,
        "agent_id": origin.agent_id,
        "correlation_id": origin.correlation_id,
        "detail": encoded_detail,
        "prev_hash": last.hash if last else ZERO_HASH,
    }
    _fits(row)
    row["hash"] = row_hash(row)
    connection.execute(_INSERT, row)
    return row["seq"]


def head(connection):
    """
    The last row's C{(seq, hash)}, or C{(0, ZERO_HASH)} for an empty log:
    what an operator keeps as an anchor for L{verify}.
    """
    last = _last(connection)
    return (last.seq, last.hash) if last else (0, ZERO_HASH)


@dataclass(frozen=True)
class AuditVerification:
    """
    What L{verify} found.  C{rows} were checked and sound; C{head_seq} and
    C{head_hash} are the last of them.  When not C{ok}, C{first_bad_seq} is
    where the chain breaks and C{problem} says how, in one line.
    """

    ok: bool
    rows: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None


def parse_anchor(text):
    """C{"SEQ:HASH"}, as C{callcenter audit head} prints it, to C{(seq, hash)}."""
    match = re.fullmatch(r"([0-9]+):([0-9a-f]{64})", text.strip())
    if not match:
        raise ValueError(f"anchor {text!r} is not SEQ:HASH (a row number and 64 lowercase hex digits)")
    return int(match.group(1)), match.group(2)


def _rows(connection, batch_size):
    """Every row in C{seq} order, read C{batch_size} at a time."""
    after = None
    while True:
        query = sa.select(audit_log).order_by(audit_log.c.seq).limit(batch_size)
        if after is not None:
            query = query.where(audit_log.c.seq > after)
        batch = connection.execute(query).mappings().all()
        yield from batch
        if len(batch) < batch_size:
            return
        after = batch[-1]["seq"]


def _missing(expected, seq):
    if seq == expected + 1:
        return f"row {expected} is missing"
    return f"rows {expected} to {seq - 1} are missing"


def verify(connection, anchor=None, batch_size=1000):
    """
    Check the whole chain, reading C{batch_size} rows at a time.

    @param anchor: C{(seq, hash)} from an earlier L{head}: the row at C{seq}
        must still carry that hash, and the log must reach it.
    @return: L{AuditVerification}.
    """
    if anchor is not None:
        anchor_seq, anchor_hash = anchor
        if anchor_seq == 0 and anchor_hash != ZERO_HASH:
            raise ValueError("an anchor at row 0 (an empty log) has the hash of 64 zeros")
    checked, last_seq, last_hash = 0, 0, ZERO_HASH

    def failed(seq, problem):
        return AuditVerification(False, checked, last_seq, last_hash, seq, problem)

    for row in _rows(connection, batch_size):
        seq = row["seq"]
        expected = last_seq + 1
        if seq != expected:
            where = f"gap after {last_seq}" if last_seq else f"the log starts at {seq}"
            return failed(expected, f"{_missing(expected, seq)} ({where})")
        if row_hash(row) != row["hash"]:
            return failed(seq, f"row {seq} was changed")
        if row["prev_hash"] != last_hash:
            if seq == 1:
                return failed(seq, "row 1 does not start the chain: its prev_hash is not 64 zeros")
            return failed(
                seq, f"row {seq} does not follow row {last_seq}: its prev_hash is not row {last_seq}'s hash "
                f"(one of the two was rewritten)"
            )
        if anchor is not None and seq == anchor_seq and row["hash"] != anchor_hash:
            return failed(seq, f"row {seq} does not match the anchor: the log was rewritten up to row {seq}")
        checked, last_seq, last_hash = checked + 1, seq, row["hash"]
    if anchor is not None and last_seq < anchor_seq:
        return failed(
            last_seq + 1,
            f"the log ends at row {last_seq}, before the anchor at row {anchor_seq}: "
            f"rows after {last_seq} were deleted",
        )
    return AuditVerification(True, checked, last_seq, last_hash)
