"""
The database itself: connecting to SQLite or PostgreSQL with durable
settings, and bringing its schema up to date with Alembic.

Everything here blocks.  The server calls it from the store's thread pool
(see L{callcenter.store.service}) or before the reactor runs; the CLI calls it
directly.
"""

import os

import alembic.command
import alembic.config
import sqlalchemy
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

SCRIPT_LOCATION = "callcenter.store:migrations"


class DatabaseError(Exception):
    """The database cannot be used; the message is one line for a person."""


def normalise_url(url):
    """
    Accept the URLs people write (C{postgresql://}, C{postgres://}) and pick
    the driver we ship for them (psycopg 3).
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _one_line(exception):
    original = getattr(exception, "orig", None) or exception
    text = " ".join(str(original).split())
    return text or type(original).__name__


class Database:
    """
    One database, opened with the settings that make a committed transaction
    durable: SQLite in WAL mode with C{synchronous=FULL} (every commit is
    fsynced before it returns), PostgreSQL with its default synchronous
    commit.
    """

    def __init__(self, url, busy_timeout=10.0, pool_size=0):
        """
        @param pool_size: connections kept open; 0 picks 1 for SQLite (it has
            one writer at a time: more would only queue on its lock) and 8
            for PostgreSQL.
        """
        self.url = normalise_url(url)
        try:
            parsed = make_url(self.url)
        except ArgumentError as e:
            raise DatabaseError(f"not a database URL: {_one_line(e)}")
        self.display_url = parsed.render_as_string(hide_password=True)
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise DatabaseError(f"unsupported database {self.dialect!r}: use sqlite or postgresql")
        self._busy_timeout = busy_timeout
        self.pool_size = pool_size or (1 if self.dialect == "sqlite" else 8)
        if self.dialect == "sqlite":
            self._sqlite_path = parsed.database
            if not self._sqlite_path or self._sqlite_path == ":memory:":
                raise DatabaseError("SQLite needs a file: an in-memory database loses everything")
            self.engine = sqlalchemy.create_engine(
                self.url,
                poolclass=sqlalchemy.pool.QueuePool,
                pool_size=self.pool_size,
                connect_args={"check_same_thread": False, "timeout": busy_timeout},
            )
            event.listen(self.engine, "connect", self._configure_sqlite)
            event.listen(self.engine, "begin", self._begin_sqlite)
        else:
            try:
                self.engine = sqlalchemy.create_engine(
                    self.url,
                    pool_size=self.pool_size,
                    pool_pre_ping=True,
                    connect_args={"connect_timeout": max(1, int(busy_timeout))},
                )
            except NoSuchModuleError:
                raise DatabaseError("PostgreSQL needs psycopg: pip install 'callcenter[postgres]'")
            event.listen(self.engine, "connect", self._configure_postgresql)

    def _sqlite_missing(self):
        return self.dialect == "sqlite" and not os.path.exists(self._sqlite_path)

    def _create_sqlite_directory(self):
        directory = os.path.dirname(os.path.abspath(self._sqlite_path))
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise DatabaseError(f"cannot create directory {directory}: {e.strerror or e}")

    def _configure_sqlite(self, dbapi_connection, record):
        # We issue BEGIN ourselves (below), so that DDL is transactional too:
        # a migration killed halfway leaves the schema as it was.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    def _begin_sqlite(self, connection):
        # IMMEDIATE takes the write lock up front, so two writers wait on
        # busy_timeout instead of failing on a lock upgrade.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    def _configure_postgresql(self, dbapi_connection, record):
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
        dbapi_connection.commit()

    def _alembic_config(self, connection):
        config = alembic.config.Config()
        config.set_main_option("script_location", SCRIPT_LOCATION)
        config.attributes["connection"] = connection
        return config

    def head(self):
        """The revision this code's schema is at."""
        return ScriptDirectory.from_config(self._alembic_config(None)).get_current_head()

    def current_revision(self):
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def upgrade(self):
        """Migrate the schema to this code's head revision."""
        if self._sqlite_missing():
            self._create_sqlite_directory()
        # One transaction for all pending revisions: all of them or none.
        try:
            with self.engine.begin() as connection:
                alembic.command.upgrade(self._alembic_config(connection), "head")
        except (DBAPIError, OSError) as e:
            raise DatabaseError(f"cannot migrate database {self.display_url}: {_one_line(e)}")

    def state(self):
        """
        What the database holds, changing nothing.

        @return: C{(current revision or None, whether it has any tables)}
        @raise DatabaseError: it cannot be opened or read.
        """
        if self._sqlite_missing():
            # Connecting would create the file: looking must change nothing.
            return None, False
        try:
            with self.engine.connect() as connection:
                current = MigrationContext.configure(connection).get_current_revision()
                tables = sqlalchemy.inspect(connection).get_table_names()
        except (DBAPIError, OSError) as e:
            raise DatabaseError(f"cannot open database {self.display_url}: {_one_line(e)}")
        return current, bool(tables)

    def check(self):
        """
        Raise L{DatabaseError} unless the database is usable by this version
        as it is, or is empty (L{open} will create the schema).

        @return: True when the schema must still be created.
        """
        current, has_tables = self.state()
        if current is None:
            if has_tables:
                raise DatabaseError(
                    f"database {self.display_url} has tables but no callcenter schema history"
                )
            return True
        head = self.head()
        if current != head:
            scripts = ScriptDirectory.from_config(self._alembic_config(None))
            try:
                scripts.get_revision(current)
            except Exception:
                raise DatabaseError(
                    f"database {self.display_url} is at schema revision {current}, "
                    "unknown to this version (written by a newer one?)"
                )
            raise DatabaseError(
                f"database {self.display_url} is at schema revision {current}, this version "
                f"needs {head}: run 'callcenter db upgrade'"
            )
        return False

    def open(self):
        """
        Check the database can be used, creating the schema when it is empty;
        a database with an older schema is left to C{callcenter db upgrade}
        (migrating production data is an operator's decision).

        @raise DatabaseError: one line saying what is wrong.
        """
        if self.check():
            self.upgrade()

    def ping(self):
        with self.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")

    def transaction(self, work, *args, **kwargs):
        with self.engine.begin() as connection:
            return work(connection, *args, **kwargs)

    def close(self):
        """Flush everything to the main file and release connections."""
        if self.dialect == "sqlite":
            try:
                with self.engine.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            except DBAPIError:
                pass  # The WAL is still durable; the next open replays it.
        self.engine.dispose()
