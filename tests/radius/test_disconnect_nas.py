"""
Disconnect- and CoA-Requests (RFC 5176, callcenter.radius.disconnect):
in memory on a Clock (retries, timeout doubling, ACK, NAK with
Error-Cause, answers that are not ours), then over real UDP sockets to a
NAS stand-in written here with pyrad.  radclient cannot play the NAS for
this: it only sends requests (its "disconnect" command is the NAS's
counterpart, us), it never answers one.

The outcome is recorded through the function the Disconnector is given;
here a list (the real one wraps callcenter.radius.accounts.record_disconnect,
another module).
"""

import ipaddress
from dataclasses import dataclass

import pytest
import pytest_twisted
from pyrad import packet as radius
from pyrad.packet import CoAPacket
from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from callcenter.radius.clients import RadiusClient, RadiusClients
from callcenter.radius.dictionary import load_dictionary
from callcenter.radius.disconnect import Disconnector, DynamicAuthorizationResult, NoRoute
from callcenter.radius.interfaces import IDisconnector
from outcomes import CapturedLog, results_of

SECRET = b"nas-secret-1"
DICTIONARY = load_dictionary()
NAS = ("192.0.2.10", 3799)


@dataclass(frozen=True)
class Session:
    """The columns of a radius_sessions row the Disconnector reads."""

    id: int = 7
    client: str = "bras-1"
    acct_session_id: str = "8100a2f3"
    username: str = "investor"
    nas_ip: str = "10.1.0.1"


class DatagramTransport:
    def __init__(self):
        self.written = []

    def write(self, data, address):
        self.written.append((data, address))


class Recorder:
    def __init__(self):
        self.calls = []
        self.fail = False

    def __call__(self, session, **outcome):
        self.calls.append((session, outcome))
        if self.fail:
            return defer.fail(RuntimeError("store down"))
        return defer.succeed(None)


def make_clients(coa_port=3799):
    return RadiusClients([
        RadiusClient("bras-1", ipaddress.ip_network("192.0.2.10/32"), SECRET, coa_port=coa_port),
        RadiusClient("pool", ipaddress.ip_network("198.51.100.0/24"), b"pool-secret"),
    ])


@pytest.fixture
def clock():
    clock = Clock()
    clock.advance(1_700_000_000)
    return clock


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def disconnector(clock, recorder):
    disconnector = Disconnector(make_clients(), clock, recorder, dictionary=DICTIONARY)
    disconnector.makeConnection(DatagramTransport())
    return disconnector


def sent(disconnector, index=-1, secret=SECRET):
    """A request sent, decoded and checked as the NAS checks it."""
    data, address = disconnector.transport.written[index]
    request = CoAPacket(secret=secret, dict=DICTIONARY, packet=data)
    assert request.VerifyCoARequest(), "Request Authenticator (RFC 5176 §3.3)"
    assert request.message_authenticator and request.verify_message_authenticator()
    assert data[20] == 80, "Message-Authenticator first"
    return request, address


def answer(disconnector, request, code, address=NAS, secret=SECRET, **attributes):
    reply = request.CreateReply()
    reply.secret = secret
    reply.code = code
    for name, value in attributes.items():
        reply[name.replace("_", "-")] = value
    disconnector.datagramReceived(reply.ReplyPacket(), address)


def test_it_provides_the_interface(disconnector):
    assert verifyObject(IDisconnector, disconnector)


def test_a_disconnect_names_the_session_and_an_ack_is_recorded(disconnector, recorder, clock):
    result = results_of(disconnector.disconnect(Session(), "staff"))
    request, address = sent(disconnector)
    assert address == NAS
    assert request.code == radius.DisconnectRequest
    assert request["User-Name"] == ["investor"]
    assert request["Acct-Session-Id"] == ["8100a2f3"]
    assert request["NAS-IP-Address"] == ["10.1.0.1"]
    assert request["Event-Timestamp"] == [1_700_000_000]
    clock.advance(0.5)
    answer(disconnector, request, radius.DisconnectACK)
    assert result == [DynamicAuthorizationResult("ack", 1)]
    [(session, outcome)] = recorder.calls
    assert session == Session()
    assert outcome == {
        "reason": "staff", "outcome": "ack", "error_cause": None, "attempts": 1,
        "requested_at": 1_700_000_000, "finished_at": 1_700_000_000.5,
    }
    assert disconnector.metrics.registry.get_sample_value(
        "callcenter_radius_dynamic_authorization_total", {"client": "bras-1", "kind": "disconnect", "outcome": "ack"}
    ) == 1


def test_a_nak_carries_its_error_cause(disconnector, recorder):
    result = results_of(disconnector.disconnect(Session(), "quota_exhausted"))
    request, _ = sent(disconnector)
    answer(disconnector, request, radius.DisconnectNAK, Error_Cause="Session-Context-Not-Found")
    assert result == [DynamicAuthorizationResult("nak", 1, 503, "Session-Context-Not-Found")]
    assert recorder.calls[0][1]["error_cause"] == 503


def test_no_answer_is_retried_with_doubling_waits_then_a_timeout(disconnector, recorder, clock):
    result = results_of(disconnector.disconnect(Session(), "staff"))
    assert len(disconnector.transport.written) == 1
    clock.advance(1.9)
    assert len(disconnector.transport.written) == 1
    clock.advance(0.1)
    assert len(disconnector.transport.written) == 2
    clock.advance(3.9)
    assert len(disconnector.transport.written) == 2
    clock.advance(0.1)
    assert len(disconnector.transport.written) == 3
    # The same datagram each time (RFC 5080 §2.2.1: the NAS can spot a retransmission).
    assert len({data for data, _ in disconnector.transport.written}) == 1
    with CapturedLog():
        clock.advance(8)
    assert result == [DynamicAuthorizationResult("timeout", 3)]
    assert recorder.calls[0][1]["outcome"] == "timeout" and recorder.calls[0][1]["attempts"] == 3
    assert clock.getDelayedCalls() == []


def test_an_answer_to_a_retransmission_counts_the_attempts(disconnector, clock):
    result = results_of(disconnector.disconnect(Session(), "staff"))
    clock.advance(2)
    request, _ = sent(disconnector)
    answer(disconnector, request, radius.DisconnectACK)
    assert result == [DynamicAuthorizationResult("ack", 2)]
    assert clock.getDelayedCalls() == []


def test_answers_that_are_not_ours_are_ignored(disconnector, clock):
    result = results_of(disconnector.disconnect(Session(), "staff"))
    request, _ = sent(disconnector)
    with CapturedLog():
        answer(disconnector, request, radius.DisconnectACK, secret=b"not-the-secret")
        answer(disconnector, request, radius.DisconnectACK, address=("192.0.2.99", 3799))
        answer(disconnector, request, radius.CoAACK)  # the wrong kind of answer
        disconnector.datagramReceived(b"\x29\x00", NAS)
        disconnector.datagramReceived(b"\x29" + bytes([request.id]) + b"\x00\x20" + bytes(16), NAS)
    assert result == []
    answer(disconnector, request, radius.DisconnectACK)
    assert result[0].outcome == "ack"


def test_a_coa_request_carries_the_changes(disconnector):
    result = results_of(disconnector.change(Session(), {"Session-Timeout": 600, "Reply-Message": "本月余量不足"}))
    request, _ = sent(disconnector)
    assert request.code == radius.CoARequest
    assert request["Session-Timeout"] == [600] and request["Acct-Session-Id"] == ["8100a2f3"]
    answer(disconnector, request, radius.CoANAK, Error_Cause="Unsupported-Service")
    assert result == [DynamicAuthorizationResult("nak", 1, 405, "Unsupported-Service")]


def test_a_prefix_client_is_reached_at_the_session_nas_ip(disconnector):
    disconnector.disconnect(Session(client="pool", nas_ip="198.51.100.23"), "staff")
    request, address = sent(disconnector, secret=b"pool-secret")
    assert address == ("198.51.100.23", 3799)


@pytest.mark.parametrize(
    "session, reason",
    [
        (Session(client="gone"), "not configured"),
        (Session(client="pool", nas_ip="203.0.113.5"), "is not in client pool's"),
        (Session(client="pool", nas_ip=None), "is not in client pool's"),
    ],
)
def test_sessions_we_cannot_route_fail_at_once(disconnector, session, reason):
    [failure] = results_of(disconnector.disconnect(session, "staff"))
    assert failure.check(NoRoute) and reason in str(failure.value)
    assert disconnector.transport.written == []


def test_a_mapping_row_works_too(disconnector):
    row = {"id": 1, "client": "bras-1", "acct_session_id": "s1", "username": None, "nas_ip": None}
    disconnector.disconnect(row, "x")
    request, _ = sent(disconnector)
    assert "User-Name" not in request and "NAS-IP-Address" not in request
    assert request["Acct-Session-Id"] == ["s1"]


def test_a_recording_failure_is_logged_and_the_outcome_stands(disconnector, recorder):
    recorder.fail = True
    result = results_of(disconnector.disconnect(Session(), "staff"))
    request, _ = sent(disconnector)
    with CapturedLog() as log:
        answer(disconnector, request, radius.DisconnectACK)
    assert result[0].outcome == "ack"
    assert log.formats("was not recorded")


def test_256_requests_in_flight_to_one_nas_then_the_next_waits_for_an_identifier(disconnector):
    results = [results_of(disconnector.disconnect(Session(acct_session_id=f"s{n}"), "staff")) for n in range(257)]
    assert len(disconnector.transport.written) == 256
    assert len({data[1] for data, _ in disconnector.transport.written}) == 256
    request, _ = sent(disconnector, index=0)
    answer(disconnector, request, radius.DisconnectACK)
    assert results[0][0].outcome == "ack"
    assert len(disconnector.transport.written) == 257
    last, _ = sent(disconnector)
    assert last["Acct-Session-Id"] == ["s256"] and last.id == request.id


def test_closing_cancels_what_is_in_flight(disconnector, clock, recorder):
    [results_of(disconnector.disconnect(Session(acct_session_id=f"s{n}"), "staff")) for n in range(2)]
    result = results_of(disconnector.disconnect(Session(), "staff"))
    disconnector.stopProtocol()
    assert result[0].check(defer.CancelledError)
    assert clock.getDelayedCalls() == [] and recorder.calls == []


class NASStandIn(DatagramProtocol):
    """
    A NAS's RFC 5176 server: checks the request as a NAS must (Request
    Authenticator, Message-Authenticator), ends known sessions (ACK), NAKs
    unknown ones with Session-Context-Not-Found, and ignores the first
    C{deaf} requests.
    """

    def __init__(self, sessions, deaf=0):
        self.sessions = set(sessions)
        self.deaf = deaf
        self.received = []

    def datagramReceived(self, data, address):
        request = CoAPacket(secret=SECRET, dict=DICTIONARY, packet=data)
        signed = request.message_authenticator and request.verify_message_authenticator()
        if not (request.VerifyCoARequest() and signed):
            return
        self.received.append(request)
        if self.deaf:
            self.deaf -= 1
            return
        reply = request.CreateReply()
        session = request["Acct-Session-Id"][0]
        if session in self.sessions:
            self.sessions.discard(session)
        else:
            reply.code = radius.DisconnectNAK if request.code == radius.DisconnectRequest else radius.CoANAK
            reply["Error-Cause"] = "Session-Context-Not-Found"
        reply.add_message_authenticator()
        self.transport.write(reply.ReplyPacket(), address)


@pytest_twisted.inlineCallbacks
def test_over_udp_to_a_nas(recorder):
    nas = NASStandIn({"8100a2f3"}, deaf=1)
    nas_port = reactor.listenUDP(0, nas, interface="127.0.0.1")
    clients = RadiusClients([
        RadiusClient("bras-1", ipaddress.ip_network("127.0.0.1/32"), SECRET, coa_port=nas_port.getHost().port)
    ])
    disconnector = Disconnector(clients, reactor, recorder, dictionary=DICTIONARY, timeout=0.2)
    our_port = reactor.listenUDP(0, disconnector, interface="127.0.0.1")
    try:
        first = yield disconnector.disconnect(Session(nas_ip="127.0.0.1"), "staff")
        again = yield disconnector.disconnect(Session(nas_ip="127.0.0.1"), "staff")
        coa = yield disconnector.change(Session(acct_session_id="unknown"), {"Session-Timeout": 60})
    finally:
        yield our_port.stopListening()
        yield nas_port.stopListening()
    assert first == DynamicAuthorizationResult("ack", 2)  # the first request went unheard
    assert again == DynamicAuthorizationResult("nak", 1, 503, "Session-Context-Not-Found")
    assert coa.outcome == "nak"
    assert [r.code for r in nas.received] == [radius.DisconnectRequest] * 3 + [radius.CoARequest]
    assert [call[1]["outcome"] for call in recorder.calls] == ["ack", "nak", "nak"]
