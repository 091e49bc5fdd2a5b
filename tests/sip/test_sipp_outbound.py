"""
Our UAC side against SIPp over real sockets on 127.0.0.1: SIPp as a carrier
answering our INVITE (the call ends with our ACK and BYE), and SIPp as a
carrier's registrar that challenges our REGISTER and checks the answer.
The SIP endpoint (transport, transaction layer, calls, media engine) is
built here directly, without the whole server.
"""

import os

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.utils import getProcessOutputAndValue

from callcenter.media.engine import MediaEngine
from callcenter.sip.calls import Calls
from callcenter.sip.dispatch import RequestDispatcher
from callcenter.sip.guard import SourceGuard
from callcenter.sip.outbound import dial
from callcenter.sip.transaction import TransactionLayer
from callcenter.sip.transport import DatagramDestination, SIPCore, SIPDatagramProtocol
from callcenter.sip.trunk import Trunk, udp_destinations
from postgres import free_port

SCENARIOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios")
DEADLINE = 30


class Endpoint:
    """Our SIP endpoint on an ephemeral UDP port of 127.0.0.1."""

    def __init__(self):
        self.media = MediaEngine(reactor, reactor, host="127.0.0.1", port_range=(36000, 36999))
        self.core = SIPCore(SourceGuard(reactor))
        self.layer = TransactionLayer(reactor, self.core.send, None)
        self.calls = Calls(self.layer, reactor, self.media, "127.0.0.1", lambda number: None, lambda d: d.local())
        self.layer.user = RequestDispatcher(None, self.calls, lambda host: False)
        self.core.layer = self.layer
        self.protocol = SIPDatagramProtocol(self.core)

    def start(self):
        self.media.start()
        self.port = reactor.listenUDP(0, self.protocol, interface="127.0.0.1")

    def stop(self):
        return defer.gatherResults([defer.maybeDeferred(self.port.stopListening), self.media.stop()])


@pytest.fixture
def endpoint():
    endpoint = Endpoint()
    endpoint.start()
    yield endpoint
    pytest_twisted.blockon(endpoint.stop())


def sipp(tmp_path, port, *scenario):
    """Start SIPp as a server on C{port} for one call; a Deferred fires with (stdout, stderr, status)."""
    arguments = [
        *scenario, "-m", "1", "-p", str(port),
        "-i", "127.0.0.1", "-mi", "127.0.0.1", "-bind_local", "-ci", "127.0.0.1", "-nostdin",
        "-timeout", "20", "-timeout_error", "-trace_err",
    ]
    return getProcessOutputAndValue("sipp", arguments, env=os.environ, path=str(tmp_path))


@pytest_twisted.inlineCallbacks
def test_sipp_as_a_carrier_answers_our_call_and_takes_our_bye(tmp_path, endpoint):
    port = free_port()
    finished = sipp(tmp_path, port, "-sn", "uas")
    progress = []
    call = dial(
        endpoint.calls,
        f"sip:13900000000@127.0.0.1:{port}",
        DatagramDestination(endpoint.protocol, ("127.0.0.1", port)),
        endpoint.media.open_session(),
        "sip:4008001234@127.0.0.1",
        display_name="Hotline",
        progress=progress.append,
    )
    answered = yield call.answered.addTimeout(DEADLINE, reactor)
    assert answered is call
    assert [r.status for r in progress] == [180]
    assert call.codec.encoding == "PCMU"
    call.hangup()
    out, err, status = yield finished.addTimeout(DEADLINE, reactor)
    assert status == 0, (out, err)
    assert call.ended.called
    assert len(endpoint.calls) == 0


@pytest_twisted.inlineCallbacks
def test_sipp_as_a_registrar_challenges_and_takes_our_registration(tmp_path, endpoint):
    port = free_port()
    finished = sipp(tmp_path, port, "-sf", os.path.join(SCENARIOS, "carrier_registrar.xml"))
    trunk = Trunk(
        endpoint.calls,
        udp_destinations(endpoint.protocol, reactor),
        "127.0.0.1",
        "4008001234",
        "s3cret-4008",
        domain="carrier.test",
        registrar_port=port,
        expires=600,
    )
    trunk.startService()
    yield trunk.when_registered().addTimeout(DEADLINE, reactor)
    granted = trunk.registered_until - reactor.seconds()
    assert 55 < granted <= 60  # the registrar's expires=60, not our 600
    yield trunk.stopService()
    assert trunk.state == "stopped"
    out, err, status = yield finished.addTimeout(DEADLINE, reactor)
    assert status == 0, (out, err)

