"""
The root service, in process: the store is up before subsystems start and
closed only after they stop, within the shutdown timeout.
"""

import socket
from dataclasses import dataclass

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.application.service import Service
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from zope.interface import implementer

from callcenter.config import Text, parse_config, setting
from callcenter.errors import StartupError
from callcenter.interfaces import ISubsystem
from callcenter.plugins.web import web
from callcenter.server import CallcenterService
from callcenter.store import schema
from callcenter.tap import StartupGuard


@dataclass(frozen=True)
class ProbeConfig:
    code: str = setting(Text(), "0009")


class ProbeService(Service):
    """Writes when it starts and again while it stops, as a real subsystem might."""

    def __init__(self, config, context, journal, stopping):
        self.config, self.context, self.journal, self.stopping = config, context, journal, stopping

    def startService(self):
        super().startService()
        self.journal.append("probe started")
        self.started = self.context.store.transaction(self._insert, self.config.code)

    def _insert(self, connection, code):
        connection.execute(schema.branches.insert().values(code=code, name_zh="测", name_en="P", city="C"))

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        self.journal.append("probe stopping")
        yield self.stopping
        yield self.context.store.transaction(self._insert, "last")
        self.journal.append("probe stopped")


@implementer(ISubsystem)
class ProbeSubsystem:
    name = "probe"
    description = "test only"
    config_schema = ProbeConfig

    def __init__(self, journal, stopping):
        self.journal, self.stopping = journal, stopping

    def makeService(self, config, context):
        return ProbeService(config, context, self.journal, self.stopping)


def build(db_url, stopping, clock=None, timeout=3.0):
    journal = []
    plugin = ProbeSubsystem(journal, stopping)
    config = parse_config(
        "test.toml",
        {"storage": {"url": db_url}, "server": {"shutdown_timeout": timeout}, "probe": {}},
        {"probe": plugin},
    )
    root = CallcenterService(config, {"probe": plugin}, reactor, clock=clock)
    return root, journal


def codes(db_url):
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        found = sorted(connection.execute(sa.select(schema.branches.c.code)).scalars())
    engine.dispose()
    return found


@pytest_twisted.inlineCallbacks
def test_subsystems_use_the_store_from_start_to_the_end_of_their_stop(db_url):
    root, journal = build(db_url, defer.succeed(None))
    root.privilegedStartService()
    root.startService()
    yield root.getServiceNamed("probe").started
    assert root.context.store is root.getServiceNamed("storage")
    yield root.stopService()
    assert journal == ["probe started", "probe stopping", "probe stopped"]
    assert codes(db_url) == ["0009", "last"]


@pytest_twisted.inlineCallbacks
def test_a_subsystem_that_never_stops_is_given_up_on_after_the_timeout(db_url):
    clock = Clock()
    root, journal = build(db_url, defer.Deferred(), clock=clock, timeout=3.0)
    root.privilegedStartService()
    root.startService()
    yield root.getServiceNamed("probe").started
    stopped = root.stopService()
    clock.advance(2.9)
    assert not stopped.called
    clock.advance(0.1)
    yield stopped
    assert journal == ["probe started", "probe stopping"]
    assert codes(db_url) == ["0009"]


def test_a_taken_port_is_a_startup_error_naming_the_key(db_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        listen = f"tcp:{port}:interface=127.0.0.1"
        config = parse_config(
            "test.toml", {"storage": {"url": db_url}, "web": {"listen": listen}}, {"web": web}
        )
        root = CallcenterService(config, {"web": web}, reactor)
        with pytest.raises(StartupError) as raised:
            root.privilegedStartService()
    assert str(raised.value).startswith(f"test.toml: [web] listen: cannot listen on {listen}: ")
    root.getServiceNamed("storage").stopService()


def test_the_twistd_guard_turns_a_startup_error_into_one_line_and_status_1(capfd):
    class Unstartable(Service):
        def privilegedStartService(self):
            raise StartupError("x.toml: [web] listen: cannot listen on tcp:80: denied")

    with pytest.raises(SystemExit) as exited:
        StartupGuard(Unstartable()).privilegedStartService()
    assert exited.value.code == 1
    assert capfd.readouterr().err == "callcenter: x.toml: [web] listen: cannot listen on tcp:80: denied\n"
