"""
Accounting records kept (L{callcenter.radius.accounting.AccountingSink})
through the store's threads, on the backend chosen with --db.
"""

import datetime

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer
from twisted.python.failure import Failure

from callcenter.radius import accounting as accounting_module
from callcenter.radius import accounts as a
from callcenter.radius.accounting import AccountingSink, Applied, apply_record, run_records
from callcenter.radius.directory import AccountDirectory
from callcenter.radius.model import (
    ACCOUNTING_OFF,
    ACCOUNTING_ON,
    INTERIM_UPDATE,
    START,
    STOP,
    AccessRequest,
    AccountingRecord,
)
from callcenter.radius.policy import AccessPolicy
from callcenter.store.schema import internet_usage, radius_sessions
from internet_helpers import NOON, PASSWORD, CountingStore, add_tiers, clock_at, open_internet
from outcomes import CapturedLog

HOUR = 3600
START_TIME = NOON.timestamp() - HOUR


class Accounting:
    def __init__(self, store, database):
        add_tiers(database)
        open_internet(database, "zhang", "10010001")
        self.database = database
        self.store = CountingStore(store)
        self.clock = clock_at()
        self.directory = AccountDirectory(self.store, self.clock)
        self.sink = AccountingSink(self.store, self.clock, self.directory)

    def record(self, status, session_id="s1", client="bras-1", user_name="zhang", **values):
        return self.sink.record(AccountingRecord(client, status, session_id, user_name, **values))

    def sessions(self):
        query = sa.select(radius_sessions).order_by(radius_sessions.c.id)
        return self.database.transaction(lambda c: c.execute(query).all())

    def session(self, session_id="s1"):
        return self.database.transaction(
            lambda c: c.execute(
                sa.select(radius_sessions).where(radius_sessions.c.acct_session_id == session_id)
            ).mappings().one()
        )

    def usage(self, month="2026-12"):
        return self.database.transaction(a.usage, "zhang", month)


@pytest.fixture
def accounting(running_store, database):
    return Accounting(running_store, database)


def utc(posix):
    return datetime.datetime.fromtimestamp(posix, datetime.timezone.utc)


@pytest_twisted.inlineCallbacks
def test_start_creates_the_session_and_a_duplicate_changes_nothing(accounting):
    first = yield accounting.record(START, nas_ip="10.0.0.1", nas_port=2**32 - 1, framed_ip="100.64.0.7",
                                    calling_station_id="00-11-22-33-44-55", event_time=START_TIME)
    assert first == []
    again = yield accounting.record(START, framed_ip="100.64.9.9", event_time=START_TIME + 5)
    assert again == []
    row = accounting.session()
    assert (row["username"], row["nas_ip"], row["nas_port"], row["framed_ip"]) == (
        "zhang", "10.0.0.1", 2**32 - 1, "100.64.0.7"
    )
    assert a.as_aware(row["started_at"]) == a.as_aware(row["updated_at"]) == utc(START_TIME)
    [online] = accounting.database.transaction(a.sessions_online, username="zhang")
    assert online.calling_station_id == "00-11-22-33-44-55" and online.stopped_at is None


@pytest_twisted.inlineCallbacks
def test_interim_updates_add_only_the_increase(accounting):
    yield accounting.record(START, event_time=START_TIME)
    for seconds, octets_in, octets_out in ((600, 1000, 2000), (600, 1000, 2000), (1200, 1500, 2500), (900, 1200, 2100)):
        yield accounting.record(INTERIM_UPDATE, session_time=seconds, input_octets=octets_in,
                                output_octets=octets_out, event_time=START_TIME + seconds)
    assert accounting.usage() == a.Usage("2026-12", 1200, 1500, 2500)
    row = accounting.session()
    assert (row["session_time"], row["input_octets"], row["output_octets"]) == (1200, 1500, 2500)
    assert a.as_aware(row["updated_at"]) == utc(START_TIME + 1200), "an older record does not move it back"


@pytest_twisted.inlineCallbacks
def test_stop_closes_once_and_what_follows_changes_nothing(accounting):
    yield accounting.record(START, event_time=START_TIME)
    yield accounting.record(STOP, session_time=1800, input_octets=2**33 + 5, output_octets=7,
                            terminate_cause="User-Request", event_time=START_TIME + 1800)
    yield accounting.record(STOP, session_time=1800, input_octets=2**33 + 5, output_octets=7,
                            terminate_cause="Lost-Carrier", event_time=START_TIME + 1900)
    yield accounting.record(INTERIM_UPDATE, session_time=1500, event_time=START_TIME + 1500)
    yield accounting.record(START, event_time=START_TIME)
    row = accounting.session()
    assert a.as_aware(row["stopped_at"]) == utc(START_TIME + 1800)
    assert row["terminate_cause"] == "User-Request"
    assert accounting.usage() == a.Usage("2026-12", 1800, 2**33 + 5, 7)
    assert accounting.database.transaction(a.sessions_online) == []


@pytest_twisted.inlineCallbacks
def test_a_record_for_an_unknown_session_creates_it(accounting):
    yield accounting.record(INTERIM_UPDATE, "lost-start", session_time=300, input_octets=10, event_time=START_TIME)
    row = accounting.session("lost-start")
    assert a.as_aware(row["started_at"]) == utc(START_TIME - 300)
    assert row["stopped_at"] is None
    yield accounting.record(STOP, "never-seen", session_time=60, nas_ip="10.0.0.2")
    stopped = accounting.session("never-seen")
    assert a.as_aware(stopped["stopped_at"]) == NOON and stopped["nas_ip"] == "10.0.0.2"
    assert accounting.usage() == a.Usage("2026-12", 360, 10, 0)


@pytest_twisted.inlineCallbacks
def test_accounting_on_and_off_close_the_sessions_of_that_nas_only(accounting):
    for client, session_id in (("bras-1", "a"), ("bras-1", "b"), ("bras-2", "c")):
        yield accounting.record(START, session_id, client)
    yield accounting.record(STOP, "b", session_time=5, terminate_cause="User-Request")
    yield accounting.record(ACCOUNTING_ON, None, user_name=None)
    closed = {row.acct_session_id: row.terminate_cause for row in accounting.sessions()}
    assert closed == {"a": "NAS-Reboot", "b": "User-Request", "c": None}
    yield accounting.record(ACCOUNTING_OFF, None, "bras-2", user_name=None)
    assert accounting.database.transaction(a.sessions_online) == []


@pytest_twisted.inlineCallbacks
def test_usage_counts_in_the_month_it_is_received(accounting):
    # Event-Timestamp in November (a NAS clock behind): the usage is December's.
    november = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.timezone.utc).timestamp()
    yield accounting.record(INTERIM_UPDATE, session_time=100, event_time=november)
    assert accounting.usage() == a.Usage("2026-12", 100, 0, 0)
    assert accounting.usage("2026-11") == a.Usage("2026-11", 0, 0, 0)


@pytest_twisted.inlineCallbacks
def test_the_sessions_of_a_user_out_of_time_are_given_to_disconnect(accounting):
    accounting.database.transaction(
        lambda c: c.execute(internet_usage.insert().values(username="zhang", month="2026-12", seconds=30 * HOUR - 900))
    )
    yield accounting.record(START, "s1")
    yield accounting.record(START, "s2", client="bras-2")
    assert (yield accounting.record(INTERIM_UPDATE, "s1", session_time=600)) == []
    disconnect = yield accounting.record(INTERIM_UPDATE, "s1", session_time=900)
    assert [(s.client, s.acct_session_id) for s in disconnect] == [("bras-1", "s1"), ("bras-2", "s2")]
    assert all(isinstance(s, a.Session) and s.username == "zhang" for s in disconnect)
    assert [s.acct_session_id for s in (yield accounting.record(STOP, "s1", session_time=960))] == ["s2"]
    assert (yield accounting.record(STOP, "s2", "bras-2", session_time=10)) == []


@pytest_twisted.inlineCallbacks
def test_the_policy_sees_what_accounting_kept_at_once(accounting):
    policy = AccessPolicy(accounting.store, accounting.clock, lambda f, *args: defer.succeed(f(*args)),
                          accounting.directory)
    request = AccessRequest("bras-1", "zhang", "pap", password=PASSWORD.encode())
    assert (yield policy.authenticate(request)).accepted
    yield accounting.record(START)
    assert (yield policy.authenticate(request)).reason == "already_online"
    yield accounting.record(STOP, session_time=30 * HOUR)
    assert (yield policy.authenticate(request)).reason == "quota_exhausted"
    # No expiry was waited for: accounting told the directory.
    assert accounting.clock.seconds() == NOON.timestamp()


@pytest_twisted.inlineCallbacks
def test_records_arriving_together_share_transactions(accounting):
    records = [accounting.record(START, f"s{n}", user_name=f"user{n % 7}") for n in range(200)]
    results = yield defer.gatherResults(records)
    assert results == [[]] * 200
    assert len(accounting.sessions()) == 200
    assert accounting.store.transactions < 20


@pytest_twisted.inlineCallbacks
def test_a_record_without_a_session_id_is_answered_and_ignored(accounting):
    assert (yield accounting.record(INTERIM_UPDATE, None, session_time=5)) == []
    assert (yield accounting.record("Failed", "s1")) == []
    assert accounting.sessions() == [] and accounting.store.transactions == 0


# -- records written in one batch (apply_records), as under load


def together(accounting, *records):
    """Write C{records} (keyword arguments of L{Accounting.record}) in one batch; their outcomes."""
    now = accounting.clock.seconds()
    batch = []
    for values in records:
        values = dict(values)
        status = values.pop("status")
        record = AccountingRecord(values.pop("client", "bras-1"), status, values.pop("session_id", "s1"),
                                  values.pop("user_name", "zhang"), **values)
        event_time = record.event_time if record.event_time is not None else now
        batch.append((apply_record, (record, event_time, now)))
    return accounting.database.transaction(run_records, batch)


@pytest.fixture
def in_few_statements(monkeypatch):
    """The batch is applied together (L{apply_records}), not a record at a time."""
    monkeypatch.setattr(accounting_module, "run_each", None)


def test_several_records_of_one_session_in_one_batch(accounting, in_few_statements):
    outcomes = together(
        accounting,
        dict(status=START, event_time=START_TIME, nas_ip="10.0.0.1"),
        dict(status=INTERIM_UPDATE, session_time=600, input_octets=1000, event_time=START_TIME + 600),
        dict(status=INTERIM_UPDATE, session_time=600, input_octets=1000, event_time=START_TIME + 600),
        dict(status=INTERIM_UPDATE, session_time=300, input_octets=400, event_time=START_TIME + 300),
        dict(status=INTERIM_UPDATE, session_time=1200, input_octets=1500, event_time=START_TIME + 1200),
    )
    assert [o.usernames for o in outcomes] == [("zhang",)] * 5 and not any(o.disconnect for o in outcomes)
    assert accounting.usage() == a.Usage("2026-12", 1200, 1500, 0)
    row = accounting.session()
    assert (row["session_time"], row["input_octets"], row["nas_ip"]) == (1200, 1500, "10.0.0.1")
    assert a.as_aware(row["started_at"]) == utc(START_TIME)
    assert a.as_aware(row["updated_at"]) == utc(START_TIME + 1200)
    assert len(accounting.sessions()) == 1


def test_a_start_after_its_interim_update_in_one_batch_changes_nothing(accounting, in_few_statements):
    outcomes = together(
        accounting,
        dict(status=INTERIM_UPDATE, session_time=300, output_octets=9, framed_ip="100.64.0.7", event_time=START_TIME),
        dict(status=START, framed_ip="100.64.9.9", event_time=START_TIME - 300),
    )
    assert outcomes == [Applied(("zhang",)), Applied()]
    row = accounting.session()
    assert a.as_aware(row["started_at"]) == utc(START_TIME - 300) and row["framed_ip"] == "100.64.0.7"
    assert a.as_aware(row["updated_at"]) == utc(START_TIME)
    assert accounting.usage() == a.Usage("2026-12", 300, 0, 9)


def test_a_stop_and_its_retransmission_in_one_batch_close_once(accounting, in_few_statements):
    assert together(accounting, dict(status=START, event_time=START_TIME)) == [Applied(("zhang",))]
    stop = dict(status=STOP, session_time=1800, input_octets=7, terminate_cause="User-Request",
                event_time=START_TIME + 1800)
    together(accounting, stop, {**stop, "terminate_cause": "Lost-Carrier", "event_time": START_TIME + 1900},
             dict(status=STOP, session_id="s2", session_time=60, event_time=START_TIME + 60))
    row = accounting.session()
    assert a.as_aware(row["stopped_at"]) == utc(START_TIME + 1800) and row["terminate_cause"] == "User-Request"
    assert a.as_aware(row["updated_at"]) == utc(START_TIME + 1900), "as for a record alone"
    other = accounting.session("s2")
    assert a.as_aware(other["started_at"]) == utc(START_TIME)
    assert a.as_aware(other["stopped_at"]) == utc(START_TIME + 60)
    assert accounting.usage() == a.Usage("2026-12", 1860, 7, 0)
    assert accounting.database.transaction(a.sessions_online) == []


def test_a_bad_record_in_a_batch_fails_alone(accounting):
    outcomes = together(
        accounting,
        dict(status=START, session_id="good-1"),
        # Beyond a BIGINT: refused by the database.
        dict(status=START, session_id="bad", nas_port=2**70),
        dict(status=INTERIM_UPDATE, session_id="good-2", session_time=60),
    )
    assert outcomes[0] == Applied(("zhang",)) and outcomes[2] == Applied(("zhang",))
    assert isinstance(outcomes[1], Failure)
    assert [row.acct_session_id for row in accounting.sessions()] == ["good-1", "good-2"]
    assert accounting.usage() == a.Usage("2026-12", 60, 0, 0)


def test_accounting_on_in_a_batch_closes_what_came_before_it_only(accounting):
    together(
        accounting,
        dict(status=START, session_id="a"),
        dict(status=ACCOUNTING_ON, session_id=None, user_name=None),
        dict(status=START, session_id="b"),
    )
    closed = {row.acct_session_id: row.terminate_cause for row in accounting.sessions()}
    assert closed == {"a": "NAS-Reboot", "b": None}


def test_in_a_batch_the_records_after_the_quota_is_used_up_give_its_sessions(accounting, in_few_statements):
    accounting.database.transaction(
        lambda c: c.execute(internet_usage.insert().values(username="zhang", month="2026-12", seconds=30 * HOUR - 900))
    )
    outcomes = together(
        accounting,
        dict(status=START, session_id="s1"),
        dict(status=START, session_id="s2", client="bras-2"),
        dict(status=INTERIM_UPDATE, session_id="s1", session_time=600),
        dict(status=INTERIM_UPDATE, session_id="s1", session_time=900),
        dict(status=INTERIM_UPDATE, session_id="s2", client="bras-2", session_time=5),
        dict(status=START, session_id="s3", user_name="nobody"),
    )
    assert [[(s.client, s.acct_session_id) for s in o.disconnect] for o in outcomes] == [
        [], [], [], [("bras-1", "s1"), ("bras-2", "s2")], [("bras-1", "s1"), ("bras-2", "s2")], []
    ]
    assert outcomes[5] == Applied(("nobody",))


@pytest_twisted.inlineCallbacks
def test_records_queued_together_are_written_together_and_each_answered(accounting):
    first = accounting.record(START, "s0")
    records = [accounting.record(INTERIM_UPDATE, "s1", session_time=n * 10) for n in range(1, 6)]
    records.append(accounting.record(START, "s2", "bras-2", nas_port=2**70))
    records.append(accounting.record(STOP, "s1", session_time=100))
    assert (yield first) == []
    results = yield defer.DeferredList(records, consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * 5 + [False, True]
    assert accounting.usage() == a.Usage("2026-12", 100, 0, 0)
    assert [row.acct_session_id for row in accounting.sessions()] == ["s0", "s1"]
    assert accounting.store.transactions <= 3


# -- keep: told by a function, without a Deferred per record


class Told:
    """The function given to AccountingSink.keep: what it was told, in order."""

    def __init__(self):
        self.outcomes = []

    def __call__(self, outcome, context):
        self.outcomes.append((context, outcome))


def keep(accounting, told, context, status, session_id="s1", client="bras-1", user_name="zhang", **values):
    accounting.sink.keep(AccountingRecord(client, status, session_id, user_name, **values), told, context)


@pytest_twisted.inlineCallbacks
def test_keep_tells_each_record_once_durable_and_a_bad_one_alone(accounting):
    told = Told()
    keep(accounting, told, "start", START, "s0")
    for n in range(1, 4):
        keep(accounting, told, f"interim {n}", INTERIM_UPDATE, "s1", session_time=n * 10)
    keep(accounting, told, "bad", START, "s2", "bras-2", nas_port=2**70)  # beyond a BIGINT
    keep(accounting, told, "stop", STOP, "s1", session_time=100)
    assert told.outcomes == []  # nothing is durable yet: the store works in its threads
    yield accounting.sink.idle()
    assert [context for context, _ in told.outcomes] == ["start", "interim 1", "interim 2", "interim 3", "bad", "stop"]
    outcomes = dict(told.outcomes)
    assert isinstance(outcomes.pop("bad"), Failure)
    assert set(map(repr, outcomes.values())) == {"[]"}
    assert accounting.usage() == a.Usage("2026-12", 100, 0, 0)
    assert [row.acct_session_id for row in accounting.sessions()] == ["s0", "s1"]
    assert accounting.store.transactions <= 3


@pytest_twisted.inlineCallbacks
def test_keep_gives_the_sessions_to_disconnect(accounting):
    accounting.database.transaction(
        lambda c: c.execute(internet_usage.insert().values(username="zhang", month="2026-12", seconds=30 * HOUR - 900))
    )
    told = Told()
    keep(accounting, told, 1, START, "s1")
    keep(accounting, told, 2, INTERIM_UPDATE, "s1", session_time=900)
    yield accounting.sink.idle()
    assert told.outcomes[0] == (1, [])
    assert [(s.client, s.acct_session_id) for s in told.outcomes[1][1]] == [("bras-1", "s1")]


def test_keep_of_a_record_ignored_tells_at_once(accounting):
    told = Told()
    keep(accounting, told, "no session", INTERIM_UPDATE, None, session_time=5)
    assert told.outcomes == [("no session", [])] and accounting.store.transactions == 0


@pytest_twisted.inlineCallbacks
def test_keep_tells_every_record_of_a_batch_whose_transaction_fails(accounting, monkeypatch):
    def refused(connection, batch):
        raise RuntimeError("disk full")

    monkeypatch.setattr(accounting.sink._committer, "_run_batch", refused)
    told = Told()
    keep(accounting, told, 1, START, "s1")
    keep(accounting, told, 2, START, "s2")
    yield accounting.sink.idle()
    assert [context for context, _ in told.outcomes] == [1, 2]
    assert all(isinstance(outcome, Failure) for _, outcome in told.outcomes)
    assert accounting.sessions() == []


@pytest_twisted.inlineCallbacks
def test_a_function_that_raises_costs_the_others_nothing(accounting):
    told = Told()

    def raising(outcome, context):
        raise RuntimeError("bug in the caller")

    with CapturedLog() as log:
        keep(accounting, raising, 1, START, "s1")
        keep(accounting, told, 2, START, "s2")
        yield accounting.sink.idle()
    assert told.outcomes == [(2, [])]
    assert log.formats("the caller's function failed")
    assert [row.acct_session_id for row in accounting.sessions()] == ["s1", "s2"]
