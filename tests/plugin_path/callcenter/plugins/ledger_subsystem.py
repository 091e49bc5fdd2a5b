"""
A test-only subsystem shipped outside the callcenter package, the way a third
party would add one: this directory (tests/plugin_path) goes on PYTHONPATH and
``[ledger]`` in the config enables it.

It writes numbered rows to its own table as fast as the store commits them
and appends each number to ``ack_file`` only after the commit: the number is
"acknowledged".  Tests kill the process and check no acknowledged row is lost
and that a restart carries on from the last row.
"""

import os
from dataclasses import dataclass

import sqlalchemy as sa
from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from callcenter.config import Integer, Text, setting
from callcenter.health import OK, Health
from callcenter.interfaces import IHealthCheck, ISubsystem

rows = sa.Table(
    "test_ledger",
    sa.MetaData(),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("payload", sa.String(64), nullable=False),
)


@dataclass(frozen=True)
class LedgerConfig:
    ack_file: str = setting(Text(), help="Where acknowledged row numbers are appended.")
    announce_every: int = setting(Integer(1), 100, help="Log every so many committed rows.")


@implementer(IHealthCheck)
class LedgerService(Service):
    log = Logger()

    def __init__(self, config, context):
        self._config = config
        self._context = context
        self._writing = None
        self.next_seq = None

    @defer.inlineCallbacks
    def startService(self):
        super().startService()
        store = self._context.store
        self.next_seq = yield store.transaction(self._prepare)
        self.log.info("ledger resumes at row {seq}", seq=self.next_seq)
        self._ack = os.open(self._config.ack_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        self._writing = self._write_forever()

    @staticmethod
    def _prepare(connection):
        rows.create(connection, checkfirst=True)
        last = connection.execute(sa.select(sa.func.max(rows.c.seq))).scalar()
        return (last or 0) + 1

    @staticmethod
    def _insert(connection, seq):
        connection.execute(rows.insert().values(seq=seq, payload=f"row {seq}"))

    @defer.inlineCallbacks
    def _write_forever(self):
        while self.running:
            seq = self.next_seq
            yield self._context.store.transaction(self._insert, seq)
            os.write(self._ack, f"{seq}\n".encode())
            if seq % self._config.announce_every == 0:
                self.log.info("ledger committed row {seq}", seq=seq)
            self.next_seq = seq + 1

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        if self._writing is not None:
            yield self._writing
            os.close(self._ack)
        self.log.info("ledger stopped before row {seq}", seq=self.next_seq)

    def check_health(self):
        return Health(OK, {"next_row": self.next_seq})


@implementer(IPlugin, ISubsystem)
class LedgerSubsystem:
    name = "ledger"
    description = "test only: writes acknowledged rows continuously"
    config_schema = LedgerConfig

    def makeService(self, config, context):
        return LedgerService(config, context)


ledger = LedgerSubsystem()
