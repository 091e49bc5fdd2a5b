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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
