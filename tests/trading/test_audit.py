"""
The audit log's hash chain, on the backend chosen with --db: what it
records, that every kind of tampering shows, and that appends racing from
several threads still make one chain.
"""

import hashlib
import json
import threading
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from callcenter.store.schema import audit_log
from callcenter.trading import audit
from callcenter.trading.model import Origin

PHONE = Origin("phone", caller="13800138001", call_id="call-1@pbx", agent_id=None, correlation_id="c-1")
STAFF = Origin("staff", agent_id="ops01")
T0 = datetime(2026, 11, 30, 9, 30, tzinfo=timezone.utc)


def _append(database, count, start=0):
    for i in range(start, start + count):
        database.transaction(
            audit.append, PHONE, "login", "ok", f"1001{i:04d}", {"attempt": i, "名字": "张伟"},
            now=T0 + timedelta(seconds=i),
        )


def _rows(database):
    with database.engine.connect() as connection:
        return [row._asdict() for row in connection.execute(sa.select(audit_log).order_by(audit_log.c.seq))]


def _execute(database, sql, **params):
    database.transaction(lambda connection: connection.execute(sa.text(sql), params))


def _verify(database, **kwargs):
    return database.transaction(audit.verify, **kwargs)


def test_rows_are_numbered_and_chained(database):
    first = database.transaction(audit.append, PHONE, "login", "ok", "10010001", {"b": 1, "a": "张"}, now=T0)
    second = database.transaction(audit.append, STAFF, "unlock", "ok", now=T0 + timedelta(microseconds=7))
    assert (first, second) == (1, 2)
    one, two = _rows(database)
    assert one == {
        "seq": 1,
        "at": "2026-11-30T09:30:00.000000Z",
        "channel": "phone",
        "action": "login",
        "outcome": "ok",
        "fund_account_no": "10010001",
        "caller": "13800138001",
        "call_id": "call-1@pbx",
        "agent_id": None,
        "correlation_id": "c-1",
        "detail": '{"a":"张","b":1}',
        "prev_hash": "0" * 64,
        "hash": one["hash"],
    }
    assert two["at"] == "2026-11-30T09:30:00.000007Z"
    assert two["detail"] == "{}"
    assert two["agent_id"] == "ops01"
    assert two["prev_hash"] == one["hash"]
    assert _verify(database) == audit.AuditVerification(True, 2, 2, two["hash"])
    assert database.transaction(audit.head) == (2, two["hash"])


def test_the_hash_is_what_the_documentation_says(database):
    """An auditor's own code, written from the module docstring, gets the same hashes."""
    _append(database, 3)
    previous = "0" * 64
    for row in _rows(database):
        fields = ["seq", "at", "channel", "action", "outcome", "fund_account_no", "caller", "call_id",
                  "agent_id", "correlation_id", "detail"]
        text = json.dumps([row[name] for name in fields] + [previous], ensure_ascii=False, separators=(",", ":"))
        assert row["prev_hash"] == previous
        assert row["hash"] == hashlib.sha256(text.encode("utf-8")).hexdigest()
        previous = row["hash"]


def test_times_are_utc_with_microseconds(database):
    beijing = timezone(timedelta(hours=8))
    database.transaction(audit.append, STAFF, "unlock", "ok", now=datetime(2026, 12, 1, 1, 2, 3, 456, beijing))
    database.transaction(audit.append, STAFF, "unlock", "ok")
    stamped, current = (row["at"] for row in _rows(database))
    assert stamped == "2026-11-30T17:02:03.000456Z"
    written = datetime.strptime(current, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert abs(datetime.now(timezone.utc) - written) < timedelta(minutes=1)


def test_an_empty_log_verifies_and_has_a_zero_head(database):
    assert _verify(database) == audit.AuditVerification(True, 0, 0, "0" * 64)
    assert database.transaction(audit.head) == (0, "0" * 64)
    assert _verify(database, anchor=(0, "0" * 64)).ok


# Each column set to something else in row 2 of 4, as an UPDATE would.
CHANGED = {
    "at": "2026-11-30T09:30:09.000000Z",
    "channel": "web",
    "action": "logout",
    "outcome": "refused",
    "fund_account_no": "10019999",
    "caller": "13900000000",
    "call_id": "call-2@pbx",
    "agent_id": "ops02",
    "correlation_id": "c-2",
    "detail": '{"attempt":1,"名字":"王芳"}',
    "prev_hash": "1" * 64,
    "hash": "2" * 64,
}


@pytest.mark.parametrize("column", sorted(CHANGED))
def test_a_changed_column_breaks_the_chain_at_its_row(database, column):
    _append(database, 4)
    _execute(database, f"UPDATE audit_log SET {column} = :value WHERE seq = 2", value=CHANGED[column])
    result = _verify(database)
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 2, "row 2 was changed")
    assert (result.rows, result.head_seq) == (1, 1)


def test_a_null_made_text_breaks_the_chain(database):
    _append(database, 2)
    _execute(database, "UPDATE audit_log SET agent_id = NULL, caller = NULL WHERE seq = 1")
    assert _verify(database).problem == "row 1 was changed"


def test_a_deleted_row_leaves_a_gap(database):
    _append(database, 6)
    _execute(database, "DELETE FROM audit_log WHERE seq = 3")
    result = _verify(database)
    assert (result.ok, result.first_bad_seq, result.rows) == (False, 3, 2)
    assert result.problem == "row 3 is missing (gap after 2)"
    _execute(database, "DELETE FROM audit_log WHERE seq = 4")
    assert _verify(database).problem == "rows 3 to 4 are missing (gap after 2)"


def test_a_deleted_first_row_shows(database):
    _append(database, 3)
    _execute(database, "DELETE FROM audit_log WHERE seq = 1")
    result = _verify(database)
    assert (result.first_bad_seq, result.problem) == (1, "row 1 is missing (the log starts at 2)")


def test_reordered_rows_show(database):
    _append(database, 4)
    _execute(database, "UPDATE audit_log SET seq = -2 WHERE seq = 2")
    _execute(database, "UPDATE audit_log SET seq = 2 WHERE seq = 3")
    _execute(database, "UPDATE audit_log SET seq = 3 WHERE seq = -2")
    result = _verify(database)
    assert (result.first_bad_seq, result.problem) == (2, "row 2 was changed")


def test_renumbered_rows_after_a_deletion_show(database):
    """Closing the gap left by a deleted row changes the seq the later rows were hashed with."""
    _append(database, 4)
    _execute(database, "DELETE FROM audit_log WHERE seq = 2")
    _execute(database, "UPDATE audit_log SET seq = seq - 1 WHERE seq > 2")
    assert _verify(database).problem == "row 2 was changed"


def _rehash(database, seqs):
    """What a forger with write access does: recompute the hashes of C{seqs}, in order."""
    for seq in seqs:
        rows = {row["seq"]: row for row in _rows(database)}
        row = rows[seq]
        row["prev_hash"] = rows[seq - 1]["hash"] if seq > 1 else "0" * 64
        _execute(
            database, "UPDATE audit_log SET prev_hash = :p, hash = :h WHERE seq = :s",
            p=row["prev_hash"], h=audit.row_hash(row), s=seq,
        )


def test_a_row_rehashed_alone_breaks_the_link_to_the_next(database):
    _append(database, 4)
    _execute(database, "UPDATE audit_log SET outcome = 'refused' WHERE seq = 2")
    _rehash(database, [2])
    result = _verify(database)
    assert result.first_bad_seq == 3
    assert result.problem == (
        "row 3 does not follow row 2: its prev_hash is not row 2's hash (one of the two was rewritten)"
    )


def test_a_rewritten_first_row_must_start_from_zeros(database):
    _append(database, 2)
    row = _rows(database)[0]
    row["prev_hash"] = "1" * 64
    _execute(database, "UPDATE audit_log SET prev_hash = :p, hash = :h WHERE seq = 1",
             p=row["prev_hash"], h=audit.row_hash(row))
    assert _verify(database).problem == "row 1 does not start the chain: its prev_hash is not 64 zeros"


def test_a_rewrite_to_the_end_needs_an_anchor_to_show(database):
    _append(database, 5)
    anchor = database.transaction(audit.head)
    _execute(database, "UPDATE audit_log SET outcome = 'refused' WHERE seq = 2")
    _rehash(database, [2, 3, 4, 5])
    assert _verify(database).ok
    result = _verify(database, anchor=anchor)
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert result.problem == "row 5 does not match the anchor: the log was rewritten up to row 5"


def test_an_anchor_in_the_middle_is_checked_and_later_rows_too(database):
    _append(database, 3)
    anchor = database.transaction(audit.head)
    _append(database, 3, start=3)
    assert _verify(database, anchor=anchor) == audit.AuditVerification(True, 6, 6, _rows(database)[-1]["hash"])
    _execute(database, "UPDATE audit_log SET action = 'x' WHERE seq = 5")
    assert _verify(database, anchor=anchor).problem == "row 5 was changed"


def test_truncation_shows_only_against_an_anchor(database):
    _append(database, 5)
    anchor = database.transaction(audit.head)
    _execute(database, "DELETE FROM audit_log WHERE seq > 3")
    assert _verify(database).ok
    result = _verify(database, anchor=anchor)
    assert (result.ok, result.first_bad_seq, result.rows) == (False, 4, 3)
    assert result.problem == "the log ends at row 3, before the anchor at row 5: rows after 3 were deleted"
    _execute(database, "DELETE FROM audit_log")
    assert _verify(database, anchor=anchor).problem == (
        "the log ends at row 0, before the anchor at row 5: rows after 0 were deleted"
    )


def test_verify_reads_in_batches(database):
    _append(database, 23)
    assert _verify(database, batch_size=4).rows == 23
    assert _verify(database, batch_size=23).rows == 23
    _execute(database, "UPDATE audit_log SET detail = '{}' WHERE seq = 21")
    result = _verify(database, batch_size=4)
    assert (result.first_bad_seq, result.rows) == (21, 20)


def test_anchors_are_read_as_head_prints_them():
    assert audit.parse_anchor(" 17:" + "ab" * 32 + "\n") == (17, "ab" * 32)
    for text in ("17", "17:" + "AB" * 32, "x:" + "0" * 64, "17:" + "0" * 63):
        with pytest.raises(ValueError):
            audit.parse_anchor(text)


def test_concurrent_appends_make_one_chain(database):
    """Threads appending at once, each in its own transaction, neither fork the chain nor collide."""
    threads, each = 8, 15
    start = threading.Barrier(threads)
    errors = []

    def worker(n):
        try:
            start.wait()
            for i in range(each):
                database.transaction(audit.append, STAFF, "deposit", "ok", f"1001{n:04d}", {"i": i})
        except Exception as e:  # reported below: an exception in a thread is otherwise lost
            errors.append(e)

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert errors == []
    rows = _rows(database)
    assert [row["seq"] for row in rows] == list(range(1, threads * each + 1))
    assert len({row["prev_hash"] for row in rows}) == len(rows)
    assert _verify(database).ok


@pytest.mark.parametrize(
    "detail",
    [
        {"password": "135790"},
        {"trading_password": "x"},
        {"newPassword": "x"},
        {"PIN": "1234"},
        {"pin_code": "1234"},
        {"client_secret": "x"},
        {"passwd": "x"},
        {"order": {"pin": "1"}},
        {"attempts": [{"ok": 1}, {"pwd": "x"}]},
    ],
)
def test_secrets_are_refused_and_nothing_is_written(database, detail):
    with pytest.raises(ValueError, match="looks like a secret"):
        database.transaction(audit.append, PHONE, "login", "ok", "10010001", detail)
    assert _rows(database) == []


def test_words_that_merely_contain_pin_are_allowed(database):
    database.transaction(audit.append, STAFF, "note", "ok", None, {"pinyin": "zhang", "shipping": 1, "opinion": 2})
    assert _verify(database).rows == 1


@pytest.mark.parametrize(
    "origin, action, now, detail",
    [
        (Origin("fax"), "login", T0, {}),
        (STAFF, "x" * 33, T0, {}),
        (Origin("staff", agent_id="a" * 17), "login", T0, {}),
        (STAFF, "login", datetime(2026, 11, 30), {}),
        (STAFF, "login", T0, ["not", "a", "mapping"]),
    ],
)
def test_what_does_not_fit_is_refused_alike_on_every_database(database, origin, action, now, detail):
    with pytest.raises(ValueError):
        database.transaction(audit.append, origin, action, "ok", None, detail, now=now)
    assert _rows(database) == []
