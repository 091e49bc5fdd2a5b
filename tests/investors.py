"""What tests of several subsystems share: a store run at once, a clock at a given moment, investors."""

import datetime

import sqlalchemy as sa
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from callcenter.store.schema import branches, customers, fund_accounts

UTC = datetime.timezone.utc
# 2026-12-10 12:00 in Beijing.
NOON = datetime.datetime(2026, 12, 10, 4, 0, tzinfo=UTC)


class CountingStore:
    """
    An IStore counting its transactions, over a L{Database} (run at once:
    no threads) or over another IStore.
    """

    def __init__(self, database):
        self.database = database
        self.transactions = 0

    def transaction(self, work, *args, **kwargs):
        self.transactions += 1
        return defer.maybeDeferred(self.database.transaction, work, *args, **kwargs)


def fired(d):
    """The result of a Deferred that has fired (a failure is raised)."""
    outcome = []
    d.addBoth(outcome.append)
    assert outcome, "not fired"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


def clock_at(moment=NOON):
    clock = Clock()
    clock.advance(moment.timestamp())
    return clock


def add_investor(database, fund_account_no, language="zh"):
    def insert(connection):
        if connection.execute(sa.select(branches.c.code)).first() is None:
            connection.execute(branches.insert().values(code="0101", name_zh="浦东", name_en="Pudong", city="上海"))
        customer = connection.execute(
            customers.insert().values(branch_code="0101", name_zh="张伟", language=language)
        ).inserted_primary_key[0]
        connection.execute(
            fund_accounts.insert().values(account_no=fund_account_no, customer_id=customer, password_hash="x")
        )

    database.transaction(insert)
