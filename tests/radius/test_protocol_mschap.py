"""
MS-CHAP at the authentication listener, in memory: what it reads from the
Microsoft attributes, the answer's attributes made per request with the
client's secret, and the malformed drops.  The policy is a stand-in; the
real one is in test_mschap.py.
"""

import ipaddress

import pytest
from pyrad import packet as radius
from pyrad.packet import AuthPacket
from twisted.internet import defer
from twisted.internet.task import Clock

from callcenter.radius import mschap as m
from callcenter.radius.clients import RadiusClient, RadiusClients
from callcenter.radius.dictionary import load_dictionary
from callcenter.radius.model import AccessDecision
from callcenter.radius.protocol import AuthenticationProtocol

SECRET = b"nas-secret-1"
DICTIONARY = load_dictionary()
NAS = ("192.0.2.10", 40000)


class Transport:
    def __init__(self):
        self.written = []

    def write(self, data, address):
        self.written.append(data)


class Policy:
    """Accepts investor/right by MS-CHAP, with the real success and error attributes."""

    def __init__(self):
        self.requests = []

    def authenticate(self, request):
        self.requests.append(request)
        if request.user_name == "investor" and m.ms_chap_matches(b"right", request):
            return defer.succeed(
                AccessDecision(True, session_timeout=600, request_attributes=m.ms_chap_success(b"right", request))
            )
        decision = AccessDecision.reject("bad_password", "en")
        return defer.succeed(AccessDecision(
            False, decision.reason, decision.reply_message,
            request_attributes=m.ms_chap_error(request, decision.reason),
        ))


@pytest.fixture
def policy():
    return Policy()


@pytest.fixture
def server(policy):
    clients = RadiusClients([RadiusClient("bras-1", ipaddress.ip_network("192.0.2.10/32"), SECRET)])
    protocol = AuthenticationProtocol(clients, policy, Clock(), dictionary=DICTIONARY)
    protocol.makeConnection(Transport())
    return protocol


def v2_request(password="right", user="investor", response_size=50, ident=9):
    challenge, peer = bytes(range(16)), bytes(range(16, 32))
    pkt = AuthPacket(id=3, secret=SECRET, dict=DICTIONARY)
    pkt.authenticator = pkt.CreateAuthenticator()
    pkt["User-Name"] = user
    pkt["MS-CHAP-Challenge"] = challenge
    response = bytes((ident, 0)) + peer + bytes(8) + m.generate_nt_response(challenge, peer, user.encode(), password)
    pkt["MS-CHAP2-Response"] = response[:response_size]
    pkt.add_message_authenticator()
    return pkt, pkt.RequestPacket()


def answer(server, pkt, datagram):
    server.datagramReceived(datagram, NAS)
    data = server.transport.written[-1]
    reply = radius.Packet(secret=SECRET, dict=DICTIONARY, packet=data)
    assert pkt.VerifyReply(reply, data)
    return reply, data


def test_an_ms_chap_v2_request_reaches_the_policy_and_its_answer_has_the_success(server, policy):
    pkt, datagram = v2_request()
    reply, data = answer(server, pkt, datagram)
    assert reply.code == radius.AccessAccept
    [request] = policy.requests
    assert (request.method, request.chap_id, request.chap_challenge, request.peer_challenge) == (
        "mschapv2", 9, bytes(range(16)), bytes(range(16, 32)),
    )
    assert reply["Session-Timeout"] == [600]
    [success] = reply["MS-CHAP2-Success"]
    assert success[:3] == b"\x09S=" and len(success) == 43
    send = dict.__getitem__(reply, (311, m.MS_MPPE_SEND_KEY))[0]
    assert len(m.reveal_mppe_key(send, SECRET, pkt.authenticator)) == 16
    # A retransmission gets the same answer, keys included, without asking again.
    server.datagramReceived(datagram, NAS)
    assert server.transport.written[-1] == data and len(policy.requests) == 1


def test_a_wrong_response_gets_ms_chap_error(server):
    pkt, datagram = v2_request(password="wrong")
    reply, _ = answer(server, pkt, datagram)
    assert reply.code == radius.AccessReject
    [error] = reply["MS-CHAP-Error"]
    assert error.startswith("\tE=691 R=1 C=") and error.endswith(" V=3 M=Authentication failed")
    assert reply["Reply-Message"] == ["Wrong user name or password."]


def test_a_truncated_response_is_dropped_as_malformed(server, policy):
    pkt, datagram = v2_request(response_size=49)
    server.datagramReceived(datagram, NAS)
    assert server.transport.written == [] and policy.requests == []
    assert server.metrics.value("auth", "malformed") == 1


def test_an_lm_only_ms_chap_v1_response_is_refused(server, policy):
    pkt = AuthPacket(id=4, secret=SECRET, dict=DICTIONARY)
    pkt.authenticator = pkt.CreateAuthenticator()
    pkt["User-Name"] = "investor"
    pkt["MS-CHAP-Challenge"] = bytes(8)
    pkt["MS-CHAP-Response"] = bytes((1, 0)) + bytes(range(48))
    pkt.add_message_authenticator()
    reply, _ = answer(server, pkt, pkt.RequestPacket())
    assert reply.code == radius.AccessReject and policy.requests == []
    assert reply["Reply-Message"] == ["不支持该认证方式。"]
