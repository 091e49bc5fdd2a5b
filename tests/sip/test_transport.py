"""
SIP over UDP and TCP in memory: what reaches the transaction layer, what is
answered 400, what is dropped, and how the top Via is stamped (RFC 3261
§18.2.1, RFC 3581).
"""

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from callcenter.sip.guard import SourceGuard
from callcenter.sip.message import parse_message
from callcenter.sip.transport import SIPCore, SIPDatagramProtocol, SIPStreamFactory, destination_of

OPTIONS = (
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-1;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:1001@127.0.0.1>;tag=a\r\n"
    b"To: <sip:127.0.0.1>\r\n"
    b"Call-ID: opt-1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


class Layer:
    def __init__(self):
        self.requests, self.responses = [], []

    def request_received(self, request, reply_to, reliable):
        self.requests.append((request, reply_to, reliable))

    def response_received(self, response, source):
        self.responses.append(response)


class Datagrams:
    """A UDP port whose socket keeps what is sent, or fails as told."""

    def __init__(self):
        self.written = []
        self.socket = self
        self.error = None

    def sendto(self, data, address):
        if self.error is not None:
            raise self.error
        self.written.append((parse_message(data), address))


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def layer():
    return Layer()


@pytest.fixture
def udp(clock, layer):
    core = SIPCore(SourceGuard(clock, rate=5, burst=5), layer)
    protocol = SIPDatagramProtocol(core)
    protocol.transport = Datagrams()
    return protocol


def test_a_request_reaches_the_layer_with_its_via_stamped(udp, layer):
    udp.datagramReceived(OPTIONS, ("203.0.113.7", 40000))
    [(request, reply_to, reliable)] = layer.requests
    via = request.vias[0]
    assert (via.params["received"], via.params["rport"]) == ("203.0.113.7", "40000")
    # rport asked: answer where it came from (the NAT's mapping).
    assert (reply_to.address, reliable) == (("203.0.113.7", 40000), False)


def test_without_rport_responses_go_to_the_source_address_and_the_via_port(udp, layer):
    udp.datagramReceived(OPTIONS.replace(b";rport", b""), ("203.0.113.7", 40000))
    [(request, reply_to, _)] = layer.requests
    assert request.vias[0].params["received"] == "203.0.113.7"
    assert "rport" not in request.vias[0].params
    assert reply_to.address == ("203.0.113.7", 5060)


def test_a_via_that_tells_the_truth_is_left_alone(udp, layer):
    udp.datagramReceived(OPTIONS.replace(b";rport", b""), ("10.0.0.5", 5060))
    [(request, _, _)] = layer.requests
    assert "received" not in request.vias[0].params


def test_a_response_goes_to_the_layer(udp, layer):
    udp.datagramReceived(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-2\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        ("203.0.113.7", 5060),
    )
    assert [r.status for r in layer.responses] == [200]


def test_garbage_is_dropped_without_an_answer(udp, layer):
    udp.datagramReceived(b"\x00\xff garbage \r\n\r\n", ("203.0.113.7", 5060))
    udp.datagramReceived(b"", ("203.0.113.7", 5060))
    assert udp.transport.written == [] and layer.requests == []


def test_a_malformed_request_is_answered_400_with_the_reason(udp, layer):
    udp.datagramReceived(OPTIONS.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE"), ("203.0.113.7", 40000))
    [(response, address)] = udp.transport.written
    assert response.status == 400
    assert response.reason.startswith("Bad Request")
    assert response.call_id == "opt-1"
    assert address == ("203.0.113.7", 40000)
    assert layer.requests == []


def test_a_malformed_ack_is_never_answered(udp):
    ack = OPTIONS.replace(b"OPTIONS sip", b"ACK sip").replace(b"CSeq: 1 OPTIONS", b"CSeq: x ACK")
    udp.datagramReceived(ack, ("203.0.113.7", 40000))
    assert udp.transport.written == []


def test_a_flooding_source_is_throttled_silently_and_others_are_not(udp, layer):
    for _ in range(20):
        udp.datagramReceived(OPTIONS, ("198.51.100.66", 5060))
    udp.datagramReceived(OPTIONS, ("203.0.113.7", 5060))
    sources = [reply_to.address[0] for _, reply_to, _ in layer.requests]
    assert sources.count("198.51.100.66") == 5  # the burst
    assert sources[-1] == "203.0.113.7"
    assert udp.transport.written == []


@pytest.fixture
def tcp(clock, layer):
    core = SIPCore(SourceGuard(clock), layer)
    protocol = SIPStreamFactory(core).buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "203.0.113.9", 51000))
    protocol.makeConnection(transport)
    return protocol, transport


def test_tcp_messages_split_anyhow_are_reassembled(tcp, layer):
    protocol, transport = tcp
    stream = OPTIONS + OPTIONS.replace(b"opt-1", b"opt-2")
    for i in range(len(stream)):
        protocol.dataReceived(stream[i : i + 1])
    assert [r.call_id for r, _, _ in layer.requests] == ["opt-1", "opt-2"]
    [(_, reply_to, reliable)] = layer.requests[:1]
    assert reliable is True and reply_to.address == ("203.0.113.9", 51000)


def test_tcp_keepalive_ping_gets_a_pong(tcp):
    protocol, transport = tcp
    protocol.dataReceived(b"\r\n\r\n")
    assert transport.value() == b"\r\n"
    assert not transport.disconnecting


def test_a_tcp_stream_out_of_step_is_closed(tcp, layer):
    protocol, transport = tcp
    protocol.dataReceived(OPTIONS.replace(b"Content-Length: 0\r\n", b""))
    assert transport.disconnecting
    assert layer.requests == []


def test_an_oversized_tcp_message_is_refused_and_the_connection_closed(tcp):
    protocol, transport = tcp
    protocol.dataReceived(b"OPTIONS sip:x SIP/2.0\r\nSubject: " + b"x" * 70000)
    assert transport.disconnecting


def test_a_failed_udp_send_is_counted_not_raised(udp):
    # ECONNREFUSED from an earlier datagram's ICMP, or a full buffer.
    udp.transport.error = ConnectionRefusedError(111, "Connection refused")
    udp.datagramReceived(OPTIONS.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE"), ("203.0.113.7", 40000))
    assert udp.send_errors == 1
    udp.transport.error = None
    udp.datagramReceived(OPTIONS.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE"), ("203.0.113.7", 40000))
    assert [response.status for response, _ in udp.transport.written] == [400]


def test_a_phone_registered_over_tcp_is_reached_over_its_connection_while_it_lasts(tcp, udp):
    protocol, transport = tcp
    streams = {"tcp": protocol.factory}
    assert destination_of("tcp:203.0.113.9:51000", udp, streams) is protocol.destination
    assert destination_of("tls:203.0.113.9:51000", udp, streams) is None
    protocol.connectionLost(None)
    assert destination_of("tcp:203.0.113.9:51000", udp, streams) is None
    # A destination's repr: IPv6 hosts are not bracketed, the port is last.
    assert destination_of("udp:2001:db8::1:5060", udp, streams).address == ("2001:db8::1", 5060)
