"""
The data layer, on the backend chosen with --db: schema migrations, durable
transactions in a thread pool, and a shutdown that loses nothing in flight.
"""

import threading

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer, reactor
from twisted.internet.task import Clock

from callcenter.config import StorageConfig
from callcenter.errors import StartupError
from callcenter.metrics import Metrics
from callcenter.store import schema
from callcenter.store.database import Database, DatabaseError, normalise_url
from callcenter.store.service import StoreClosed, StoreService
from outcomes import CapturedLog
from postgres import PostgresServer, create_database


def test_open_creates_the_schema_at_the_head_revision(database):
    assert database.current_revision() == database.head()
    assert database.check() is False


def test_migrations_create_what_the_code_queries(database):
    """schema.py and the migrations describe the same tables and columns."""
    inspector = sa.inspect(database.engine)
    created = set(inspector.get_table_names()) - {"alembic_version"}
    assert created == set(schema.metadata.tables)
    for name, table in schema.metadata.tables.items():
        columns = {c["name"]: c for c in inspector.get_columns(name)}
        assert set(columns) == {c.name for c in table.columns}, name
        for column in table.columns:
            assert columns[column.name]["nullable"] == column.nullable, (name, column.name)


def test_every_migration_can_be_undone_and_redone(database):
    import alembic.command

    with database.engine.begin() as connection:
        alembic.command.downgrade(database._alembic_config(connection), "base")
    assert set(sa.inspect(database.engine).get_table_names()) <= {"alembic_version"}
    assert database.current_revision() is None
    database.upgrade()
    assert database.current_revision() == database.head()
    assert set(schema.metadata.tables) <= set(sa.inspect(database.engine).get_table_names())


def test_upgrading_to_editors_categories_keeps_every_editors_rights(db_url):
    """Before 0005 every editor published in every category: after it, still."""
    import alembic.command

    from callcenter.ivr import bulletins

    database = Database(db_url)
    try:
        with database.engine.begin() as connection:
            alembic.command.upgrade(database._alembic_config(connection), "0004")
        with database.engine.begin() as connection:
            connection.execute(schema.bulletin_categories.insert(), [
                {"code": code, "name_zh": code, "name_en": code, "sort": int(code)} for code in ("2", "1", "3")
            ])
            connection.execute(schema.editors.insert(), [
                {"editor_id": editor, "name": editor, "pin_hash": "h"} for editor in ("7001", "7002")
            ])
        with database.engine.begin() as connection:
            alembic.command.upgrade(database._alembic_config(connection), "0005")
        for editor in ("7001", "7002"):
            assert database.transaction(bulletins.editor_categories, editor) == ["1", "2", "3"]
        database.upgrade()
        assert database.current_revision() == database.head()
        assert database.transaction(bulletins.editor_categories, "7001") == ["1", "2", "3"]
    finally:
        database.close()


def test_a_committed_transaction_is_visible_and_returns_its_result(database):
    def insert(connection):
        connection.execute(
            schema.branches.insert().values(code="9901", name_zh="测试", name_en="Test", city="Xiamen")
        )
        return "done"

    assert database.transaction(insert) == "done"
    with database.engine.connect() as connection:
        assert connection.execute(sa.select(schema.branches.c.name_zh)).scalar() == "测试"


def test_a_failing_transaction_leaves_nothing_behind(database):
    def insert_then_fail(connection):
        connection.execute(
            schema.branches.insert().values(code="9902", name_zh="回滚", name_en="Rollback", city="X")
        )
        raise ValueError("refused")

    with pytest.raises(ValueError):
        database.transaction(insert_then_fail)
    with database.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(schema.branches)).scalar() == 0


def test_constraints_are_enforced(database):
    """Foreign keys hold on SQLite too (they are off unless switched on)."""

    def orphan(connection):
        connection.execute(
            schema.customers.insert().values(branch_code="nope", name_zh="孤儿")
        )

    with pytest.raises(sa.exc.IntegrityError):
        database.transaction(orphan)


def test_a_database_from_a_newer_version_is_refused(database):
    database.transaction(lambda c: c.exec_driver_sql("UPDATE alembic_version SET version_num = 'f00d'"))
    with pytest.raises(DatabaseError, match="revision f00d, unknown to this version"):
        database.check()


def test_tables_without_schema_history_are_refused(db_url):
    engine = sa.create_engine(normalise_url(db_url))
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE somebody_elses (x INTEGER)")
    engine.dispose()
    database = Database(db_url)
    with pytest.raises(DatabaseError, match="has tables but no callcenter schema history"):
        database.open()
    database.engine.dispose()


def test_looking_at_a_missing_sqlite_database_creates_nothing(tmp_path):
    path = tmp_path / "later" / "db.sqlite"
    database = Database(f"sqlite:///{path}")
    assert database.check() is True
    assert not path.parent.exists()


@pytest.mark.parametrize(
    "url, message",
    [
        ("sqlite://", "SQLite needs a file"),
        ("mysql://x@y/z", "unsupported database 'mysql'"),
        ("::nonsense::", "not a database URL"),
    ],
)
def test_unusable_urls_are_one_line_errors(url, message):
    with pytest.raises(DatabaseError, match=message):
        Database(url)


def test_postgresql_urls_use_psycopg():
    assert normalise_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalise_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert Database("postgresql://u:secret@127.0.0.1/d").display_url == "postgresql+psycopg://u:***@127.0.0.1/d"


class Started:
    """A started StoreService on a fresh database; stopped by the test or at the end."""

    def __init__(self, db_url, clock=None, timeout=10.0):
        self.metrics = Metrics()
        self.service = StoreService(
            StorageConfig(url=db_url), reactor, self.metrics, shutdown_timeout=timeout, clock=clock
        )
        self.service.privilegedStartService()
        self.service.startService()

    def count(self, outcome):
        value = self.metrics.registry.get_sample_value(
            "callcenter_store_transactions_total", {"outcome": outcome}
        )
        return value or 0


@pytest.fixture
def store(db_url):
    started = Started(db_url)
    yield started
    if started.service.running:
        pytest_twisted.blockon(started.service.stopService())


def insert_branch(connection, code):
    connection.execute(schema.branches.insert().values(code=code, name_zh="分", name_en="B", city="C"))


def branch_codes(connection):
    return sorted(connection.execute(sa.select(schema.branches.c.code)).scalars())


@pytest_twisted.inlineCallbacks
def test_transactions_run_off_the_reactor_thread(store):
    reactor_thread = threading.current_thread()
    worker = yield store.service.transaction(lambda connection: threading.current_thread())
    assert worker is not reactor_thread
    assert store.count("committed") == 1


@pytest_twisted.inlineCallbacks
def test_a_failed_transaction_fails_its_deferred_and_is_counted(store):
    def fail(connection):
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        yield store.service.transaction(fail)
    assert store.count("failed") == 1


@pytest_twisted.inlineCallbacks
def test_health_reports_the_dialect(store, backend):
    health = yield store.service.check_health()
    assert (health.state, health.detail) == ("ok", {"dialect": backend})


@pytest_twisted.inlineCallbacks
def test_stopping_waits_for_transactions_in_flight_then_refuses_new_ones(store):
    release = threading.Event()

    def slow(connection):
        release.wait(30)
        insert_branch(connection, "0001")

    in_flight = store.service.transaction(slow)
    stopped = store.service.stopService()
    assert not stopped.called
    with pytest.raises(StoreClosed):
        yield store.service.transaction(insert_branch, "0002")
    release.set()
    yield in_flight
    yield stopped
    assert store.count("refused") == 1

    reopened = Database(store.service._config.url)
    assert reopened.transaction(branch_codes) == ["0001"]
    reopened.close()


@pytest_twisted.inlineCallbacks
def test_stopping_is_bounded_by_the_shutdown_timeout(db_url):
    clock = Clock()
    started = Started(db_url, clock=clock, timeout=5.0)
    release = threading.Event()
    in_flight = started.service.transaction(lambda connection: release.wait(30))
    with CapturedLog() as logged:
        stopped = started.service.stopService()
        clock.advance(4.9)
        assert logged.formats("still running") == []
        clock.advance(0.1)
        [gave_up] = logged.formats("still running")
    assert (gave_up["count"], gave_up["timeout"]) == (1, 5.0)
    # Closing is queued behind the stuck transaction, which still ends
    # normally once it can: nothing is cut off mid-commit.
    release.set()
    assert (yield in_flight) is True
    yield stopped


def test_a_database_that_cannot_open_is_a_startup_error_naming_the_key(tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"\x00not sqlite" * 1000)
    service = StoreService(
        StorageConfig(url=f"sqlite:///{garbage}"), reactor, Metrics(), where="x.toml: [storage] url"
    )
    with pytest.raises(StartupError, match=r"^x.toml: \[storage\] url: cannot open database .*file is not a database"):
        service.privilegedStartService()


@pytest_twisted.inlineCallbacks
def test_concurrent_writers_all_commit(store):
    writes = [store.service.transaction(insert_branch, f"{i:04d}") for i in range(40)]
    yield defer.gatherResults(writes)
    codes = yield store.service.transaction(branch_codes)
    assert codes == [f"{i:04d}" for i in range(40)]


@pytest_twisted.inlineCallbacks
def test_a_database_server_that_dies_and_comes_back(backend):
    """
    PostgreSQL crashes under a running store: work fails cleanly (no hang,
    no crash, health says so), and once the server is back the store
    recovers by itself without a restart of ours.
    """
    if backend != "postgresql":
        pytest.skip("a server to kill: PostgreSQL runs only")
    server = PostgresServer()
    server.start()
    try:
        started = Started(create_database(server.url))
        yield started.service.transaction(insert_branch, "0001")

        server.crash()
        with pytest.raises(sa.exc.OperationalError):
            yield started.service.transaction(insert_branch, "0002")
        health = yield started.service.check_health()
        assert health.state == "failing"

        server.resume()
        yield started.service.transaction(insert_branch, "0003")
        assert (yield started.service.transaction(branch_codes)) == ["0001", "0003"]
        health = yield started.service.check_health()
        assert health.state == "ok"
        yield started.service.stopService()
    finally:
        server.stop()
