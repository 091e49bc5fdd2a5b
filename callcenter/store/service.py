"""
The store as a Twisted service: database work in a thread pool of its own,
never on the reactor thread, and a shutdown that lets in-flight transactions
commit before the database is closed.
"""

import time

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from callcenter.errors import StartupError
from callcenter.health import FAILING, OK, Health
from callcenter.interfaces import IHealthCheck, IStore
from callcenter.store.database import Database, DatabaseError
from callcenter.timing import within


class StoreClosed(Exception):
    """The store is shutting down and takes no new work."""


@implementer(IStore, IHealthCheck)
class StoreService(Service):
    name = "storage"
    log = Logger()

    def __init__(
        self, storage_config, reactor, metrics, shutdown_timeout=10.0, where="[storage] url", clock=None
    ):
        """
        @param where: the error-line prefix naming the config key, so a
            database that cannot be opened is reported against C{url}.
        """
        self._config = storage_config
        self._reactor = reactor
        self._metrics = metrics
        self._where = where
        self._shutdown_timeout = shutdown_timeout
        self._clock = clock if clock is not None else reactor
        self._database = None
        self._pool = None
        self._accepting = False
        self._inflight = 0
        self._drained = []

    @property
    def dialect(self):
        return self._database.dialect

    def privilegedStartService(self):
        # Opening runs before the reactor does (twistd calls this first), so
        # a database that cannot be used stops start-up with one line
        # instead of a server that answers calls it cannot record.
        super().privilegedStartService()
        try:
            database = Database(self._config.url, self._config.busy_timeout, self._config.pool_size)
            database.open()
        except DatabaseError as e:
            raise StartupError(f"{self._where}: {e}")
        self._database = database

    def startService(self):
        if self._database is None:
            self.privilegedStartService()
        super().startService()
        size = self._database.pool_size
        self._pool = ThreadPool(minthreads=1, maxthreads=size, name="store")
        self._pool.start()
        self._accepting = True
        self.log.info(
            "database {url} open ({threads} threads)",
            url=self._database.display_url,
            threads=size,
        )

    def transaction(self, work, *args, **kwargs):
        if not self._accepting:
            self._metrics.store_transactions.labels("refused").inc()
            return defer.fail(StoreClosed("the store is shutting down"))
        self._inflight += 1
        self._metrics.store_inflight.inc()
        started = time.monotonic()
        d = deferToThreadPool(
            self._reactor, self._pool, self._database.transaction, work, *args, **kwargs
        )

        def finished(result, outcome):
            self._inflight -= 1
            self._metrics.store_inflight.dec()
            self._metrics.store_seconds.observe(time.monotonic() - started)
            self._metrics.store_transactions.labels(outcome).inc()
            if self._inflight == 0:
                waiters, self._drained = self._drained, []
                for waiter in waiters:
                    waiter.callback(None)
            return result

        return d.addCallbacks(
            finished, finished, callbackArgs=("committed",), errbackArgs=("failed",)
        )

    def check_health(self):
        d = self.transaction(lambda connection: connection.exec_driver_sql("SELECT 1"))
        d.addCallback(lambda _: Health(OK, {"dialect": self.dialect}))
        d.addErrback(lambda f: Health(FAILING, {"error": f.getErrorMessage()}))
        return d

    def _drain(self):
        if self._inflight == 0:
            return defer.succeed(None)
        d = defer.Deferred()
        self._drained.append(d)
        return d

    def stopService(self):
        """
        Refuse new work, give what is in flight up to C{shutdown_timeout} to
        commit, then flush and close the database.
        """
        super().stopService()
        self._accepting = False
        if self._pool is None:
            # Opened by privilegedStartService but never started: nothing
            # was written through us, just let the connections go.
            if self._database is not None:
                self._database.engine.dispose()
            return defer.succeed(None)
        timeout = self._shutdown_timeout
        d = within(self._clock, timeout, self._drain())

        def close(drained):
            if not drained:
                self.log.warn(
                    "{count} database transactions still running after {timeout}s; "
                    "closing after they end",
                    count=self._inflight,
                    timeout=timeout,
                )
            return deferToThreadPool(self._reactor, self._pool, self._database.close)

        def stop_pool(result):
            self._pool.stop()
            self.log.info("database closed")
            return result

        return d.addCallback(close).addErrback(
            lambda f: self.log.failure("closing the database failed", f)
        ).addBoth(stop_pool)
