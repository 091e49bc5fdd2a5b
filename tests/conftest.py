"""
Shared fixtures.  ``pytest --db=postgresql`` runs every test that touches the
store against a real PostgreSQL server started for the run (or the one
$CALLCENTER_TEST_POSTGRES_URL names); the default is SQLite.
"""

import os

import pytest

from postgres import PostgresServer, copy_database, create_database, drop_database

TESTS = os.path.dirname(os.path.abspath(__file__))
PLUGIN_PATH = os.path.join(TESTS, "plugin_path")


def pytest_addoption(parser):
    parser.addoption(
        "--db",
        choices=("sqlite", "postgresql"),
        default=os.environ.get("CALLCENTER_TEST_DB", "sqlite"),
        help="the database backend the tests run against",
    )


# Disjoint per backend, so the two halves of ``make test`` running side by
# side never hand the same port to two peers; below the RTP range
# (20000-29999) and the kernel's ephemeral ports (32768 up).
TEST_PORTS = {"sqlite": "10000-14999", "postgresql": "15000-19999"}


def pytest_configure(config):
    os.environ.setdefault("CALLCENTER_TEST_PORTS", TEST_PORTS[config.getoption("--db")])


def pytest_report_header(config):
    return f"callcenter store backend: {config.getoption('--db')}"


@pytest.fixture(autouse=True, scope="session")
def quick_password_hashing():
    """
    argon2id at its lowest cost in this process: the same code paths and
    hash format (a hash records its own parameters, so verifying is
    unchanged), without tens of milliseconds per hash across thousands of
    tests.  Servers the tests start as processes keep the real cost.
    """
    from argon2 import PasswordHasher

    from callcenter import passwords

    production = passwords._hasher
    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    yield
    passwords._hasher = production


@pytest.fixture(scope="session")
def backend(request):
    return request.config.getoption("--db")


@pytest.fixture(scope="session")
def postgres_admin_url(backend):
    if backend != "postgresql":
        yield None
        return
    given = os.environ.get("CALLCENTER_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    server = PostgresServer()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def db_url(backend, postgres_admin_url, tmp_path):
    """A URL of a new, empty database on the chosen backend."""
    if backend != "postgresql":
        yield f"sqlite:///{tmp_path}/callcenter.sqlite"
        return
    url = create_database(postgres_admin_url)
    yield url
    # Each is a copy of template1 (~7.5 MB): kept, a run's would fill
    # gigabytes of /tmp and take a minute to remove at the end.
    drop_database(postgres_admin_url, url)


@pytest.fixture(scope="session")
def schema_database(backend, postgres_admin_url, tmp_path_factory):
    """
    A database with the schema and nothing else, made once: the databases
    of L{database} and L{running_store} start as copies of it.  Creating
    the schema takes ~0.3 s on PostgreSQL and ~0.1 s on SQLite, for each
    of hundreds of tests; the migrations themselves are tested on new
    databases (test_store, test_cli).
    """
    from callcenter.store.database import Database

    if backend == "postgresql":
        url = create_database(postgres_admin_url)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('schema')}/schema.sqlite"
    db = Database(url)
    db.open()
    db.close()
    return url


@pytest.fixture
def database(db_url, schema_database):
    """An opened L{Database} (schema created) on a new database."""
    from callcenter.store.database import Database

    copy_database(schema_database, db_url)
    db = Database(db_url)
    db.open()
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def running_store(db_url, schema_database):
    """A started L{StoreService} on a new database (the reactor's threads run its work)."""
    import pytest_twisted
    from twisted.internet import reactor

    from callcenter.config import StorageConfig
    from callcenter.metrics import Metrics
    from callcenter.store.service import StoreService

    copy_database(schema_database, db_url)
    service = StoreService(StorageConfig(url=db_url), reactor, Metrics())
    service.privilegedStartService()
    service.startService()
    yield service
    pytest_twisted.blockon(service.stopService())


@pytest.fixture
def cli(capfd, monkeypatch):
    """
    Run the ``callcenter`` command in this process (argon2 and start-up
    would make a child process per command slow): C{cli(*argv, stdin="")}
    gives (exit status, stdout, stderr).
    """
    import io
    import sys

    from callcenter.cli import main

    def run(*argv, stdin=""):
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            status = main(list(argv))
        except SystemExit as e:
            status = e.code
        out, err = capfd.readouterr()
        return status, out, err

    return run


@pytest.fixture
def servers():
    """Register server processes to be killed after the test if still running."""
    started = []
    yield started.append
    for server in started:
        server.stop_if_running()


def pytest_collection_modifyitems(config, items):
    """
    On PostgreSQL, run only the tests that reach the store (they ask for
    C{db_url}, directly or through another fixture) and are not marked
    C{backend_independent}: the rest do not depend on the backend, and the
    SQLite run has already run them.
    """
    if config.getoption("--db") != "postgresql":
        return
    kept, skipped = [], []
    for item in items:
        reaches_store = "db_url" in getattr(item, "fixturenames", ())
        (kept if reaches_store and not item.get_closest_marker("backend_independent") else skipped).append(item)
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = kept
