"""
A throwaway PostgreSQL server for the test run: initdb into a temporary
directory, start it on a free 127.0.0.1 port, stop and delete it at the end.

PostgreSQL refuses to run as root, so as root the cluster belongs to the
``postgres`` system user (created by Debian's postgresql package).
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid


def _bindir():
    configured = os.environ.get("PG_BINDIR")
    if configured:
        return configured
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(path.split("/")[4]),
    )
    if candidates:
        return os.path.dirname(candidates[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise RuntimeError("PostgreSQL is not installed: run 'make test' (it installs it)")


_next_ports = {}


def free_port():
    """
    A port on 127.0.0.1 free for both TCP and UDP, for a peer the tests
    start (SIPp, baresip, PostgreSQL) that must be told its port.

    A port learnt by binding port 0 comes from the kernel's ephemeral range,
    where the servers under test, the other half of ``make test`` running
    alongside, and every outgoing connection also draw: between closing it
    here and the peer binding it, another process may take it.  So when
    $CALLCENTER_TEST_PORTS names a range (conftest gives each backend's run
    its own, outside the ephemeral and RTP ranges), ports are handed out in
    turn from there, each checked free first.  Every other one: a peer given
    port P may take P+1 too (baresip's TLS listener, SIPp's RTCP).
    """
    span = os.environ.get("CALLCENTER_TEST_PORTS")
    if not span:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    first, last = (int(end) for end in span.split("-"))
    candidate = _next_ports.get(span, first)
    for _ in range((last - first) // 2):
        port, candidate = candidate, (first if candidate + 3 > last else candidate + 2)
        if _bindable(port):
            _next_ports[span] = candidate
            return port
    raise RuntimeError(f"no free port in {span}")


def _bindable(port):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


class PostgresServer:
    def __init__(self):
        # Not under pytest's tmp_path: that is root's, mode 0700, and the
        # server may have to run as another user.
        self.directory = tempfile.mkdtemp(prefix="callcenter-pg-")
        directory = self.directory
        self.data = os.path.join(directory, "data")
        self.sockets = os.path.join(directory, "sockets")
        self.port = free_port()
        self.user = "callcenter"
        self._bindir = _bindir()
        self._as = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(directory, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *argv):
        subprocess.run(
            self._as + [os.path.join(self._bindir, argv[0]), *argv[1:]],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def start(self):
        """Create the cluster and start the server."""
        os.makedirs(self.sockets)
        if self._as:
            owner = pwd.getpwnam("postgres")
            os.chown(self.sockets, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", self.user, "-E", "UTF8", "--no-locale")
        self.resume()

    def resume(self):
        """Start the server again after L{crash}, on the same port and data."""
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} "
            "-c fsync=on -c max_connections=200"
        )
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", os.path.join(self.data, "log"), "-w", "start")

    def crash(self):
        """Stop the server the hard way, as a power cut or an OOM kill would."""
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def stop(self):
        try:
            self.crash()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def url(self):
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"


def create_database(admin_url):
    """A new empty database on the server; returns its URL."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url, url):
    """Drop the database at C{url}, closing what is still connected to it (a server the test killed)."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def copy_database(source_url, target_url):
    """
    Make the database at C{target_url} a copy of C{source_url}'s, when the
    target is still new (no SQLite file yet, or a PostgreSQL database without
    tables); returns whether it did.  The source must have no connections.
    """
    if target_url.startswith("sqlite:///"):
        return _copy_sqlite(source_url[len("sqlite:///"):], target_url[len("sqlite:///"):])
    import psycopg

    admin_url, name = target_url.rsplit("/", 1)
    source = source_url.rsplit("/", 1)[1]
    with psycopg.connect(target_url) as connection:
        tables = connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()[0]
    if tables:
        return False
    with psycopg.connect(admin_url + "/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE "{name}"')
        connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    return True


def _copy_sqlite(source_path, target_path):
    import sqlite3

    if os.path.exists(target_path):
        return False
    source, target = sqlite3.connect(source_path), sqlite3.connect(target_path)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return True
