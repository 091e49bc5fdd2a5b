"""Group commit (callcenter.store.batches) over a store that answers at once or later."""

import sqlalchemy as sa
from twisted.internet import defer

from callcenter.store.batches import GroupCommitter
from callcenter.store.schema import branches


class AtOnceStore:
    """IStore.transaction run at once on a real database: the Deferred has fired when returned."""

    def __init__(self, database):
        self.database = database

    def transaction(self, work, *args):
        return defer.maybeDeferred(self.database.transaction, work, *args)


class LaterStore(AtOnceStore):
    """The same, answering only when the test says so, as the thread pool does."""

    def __init__(self, database):
        super().__init__(database)
        self.waiting = []

    def transaction(self, work, *args):
        d = defer.Deferred()
        self.waiting.append((d, work, args))
        return d

    def answer(self):
        d, work, args = self.waiting.pop(0)
        d.callback(self.database.transaction(work, *args))


def add_branch(connection, code):
    if code == "bad":
        raise ValueError("refused")
    connection.execute(branches.insert().values(code=code, name_zh=code, name_en=code, city="x", phone="1"))
    return code


def codes(database):
    return database.transaction(lambda c: sorted(c.scalars(sa.select(branches.c.code))))


def outcome(d):
    results = []
    d.addBoth(results.append)
    return results


def test_a_store_that_answers_at_once_keeps_being_written_to(database):
    committer = GroupCommitter(AtOnceStore(database))
    assert outcome(committer.submit(add_branch, "B1")) == ["B1"]
    assert outcome(committer.submit(add_branch, "B2")) == ["B2"]
    assert outcome(committer.idle()) == [None]
    assert codes(database) == ["B1", "B2"]


def test_work_waiting_for_a_batch_goes_in_the_next_one(database):
    store = LaterStore(database)
    committer = GroupCommitter(store, max_batch=2)
    first = outcome(committer.submit(add_branch, "B1"))
    later = [outcome(committer.submit(add_branch, code)) for code in ("B2", "bad", "B3")]
    idle = outcome(committer.idle())
    assert len(store.waiting) == 1 and first == [] and idle == []
    store.answer()
    assert first == ["B1"] and later[0] == [] and len(store.waiting) == 1
    store.answer()
    assert later[0] == ["B2"] and later[1][0].check(ValueError)
    store.answer()
    assert later[2] == ["B3"] and idle == [None]
    assert codes(database) == ["B1", "B2", "B3"]
