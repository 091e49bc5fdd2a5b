"""
End to end with FreeRADIUS's radclient (Debian freeradius-utils) as the
NAS, against our listeners on real UDP sockets of 127.0.0.1 in this
process: PAP accept and reject, CHAP, accounting Start / Interim-Update /
Stop, Status-Server, and the silent drops (wrong secret, no
Message-Authenticator, unknown client, garbage) after which radclient
gives up (exit status 1).  radclient checks our answers itself: the
Response Authenticator and, since we send one, the Message-Authenticator.

The policy and the accounting sink are small in-memory stand-ins written
here (the real ones are other modules, tested on their own).
"""

import hashlib
import ipaddress
import os
import socket

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.utils import getProcessOutputAndValue

from callcenter.radius.clients import RadiusClient, RadiusClients
from callcenter.radius.dictionary import load_dictionary
from callcenter.radius.metrics import RadiusMetrics
from callcenter.radius.model import AccessDecision
from callcenter.radius.protocol import AccountingProtocol, AuthenticationProtocol

SECRET = "radclient-test-secret"
DEADLINE = 30
DICTIONARY = load_dictionary()


class Policy:
    """investor/right by PAP or CHAP; C{delay} seconds before deciding."""

    def __init__(self):
        self.requests = []
        self.delay = 0

    def authenticate(self, request):
        self.requests.append(request)
        if request.method == "pap":
            right = request.password == b"right"
        else:
            right = request.chap_response == hashlib.md5(
                bytes([request.chap_id]) + b"right" + request.chap_challenge
            ).digest()
        if request.user_name == "investor" and right:
            decision = AccessDecision(True, session_timeout=36000, idle_timeout=900, reply_message="欢迎 welcome")
        else:
            decision = AccessDecision.reject("bad_password", language="en")
        if self.delay:
            return task.deferLater(reactor, self.delay, lambda: decision)
        return defer.succeed(decision)


class Sink:
    def __init__(self):
        self.records = []

    def record(self, record):
        self.records.append(record)
        return defer.succeed(None)


class LosingFirstAnswers:
    """A transport that loses the first C{n} answers on the way, as a congested network does."""

    def __init__(self, transport, n):
        self._transport = transport
        self.lost = n

    def write(self, data, address):
        if self.lost:
            self.lost -= 1
            return
        self._transport.write(data, address)


class Server:
    def __init__(self, networks=("127.0.0.1/32",)):
        clients = RadiusClients([
            RadiusClient(f"nas-{n}", ipaddress.ip_network(network), SECRET.encode())
            for n, network in enumerate(networks)
        ])
        self.policy = Policy()
        self.sink = Sink()
        self.metrics = RadiusMetrics()
        self.auth = AuthenticationProtocol(clients, self.policy, reactor, metrics=self.metrics, dictionary=DICTIONARY)
        self.acct = AccountingProtocol(clients, self.sink, reactor, metrics=self.metrics, dictionary=DICTIONARY)
        self.ports = [reactor.listenUDP(0, p, interface="127.0.0.1") for p in (self.auth, self.acct)]
        self.auth_port, self.acct_port = (p.getHost().port for p in self.ports)

    def stop(self):
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in self.ports])


@pytest.fixture
def server():
    server = Server()
    yield server
    pytest_twisted.blockon(server.stop())


@defer.inlineCallbacks
def radclient(tmp_path, port, command, *packets, secret=SECRET, tries=1, timeout=1):
    """Run radclient with C{packets} (attribute lists); fires with (output, exit status)."""
    path = tmp_path / f"packets-{command}-{port}.txt"
    path.write_text("\n\n".join(packets) + "\n")
    out, err, status = yield getProcessOutputAndValue(
        "radclient",
        ["-x", "-r", str(tries), "-t", str(timeout), "-f", str(path), f"127.0.0.1:{port}", command, secret],
        env=os.environ,
    ).addTimeout(DEADLINE, reactor)
    return (out + err).decode("utf-8", "replace"), status


PAP = 'User-Name = "investor", User-Password = "right", NAS-IP-Address = 10.1.0.1, Message-Authenticator = 0x00'


@pytest_twisted.inlineCallbacks
def test_pap_accept(tmp_path, server):
    output, status = yield radclient(tmp_path, server.auth_port, "auth", PAP)
    assert status == 0, output
    assert "Received Access-Accept" in output
    assert "Session-Timeout = 36000" in output and "Idle-Timeout = 900" in output
    assert 'Reply-Message = "欢迎 welcome"' in output
    [request] = server.policy.requests
    assert (request.user_name, request.method, request.password, request.nas_ip) == (
        "investor", "pap", b"right", "10.1.0.1",
    )


@pytest_twisted.inlineCallbacks
def test_pap_reject(tmp_path, server):
    output, status = yield radclient(
        tmp_path, server.auth_port, "auth", PAP.replace('"right"', '"wrong"')
    )
    assert status == 1, output
    assert "Received Access-Reject" in output
    assert 'Reply-Message = "Wrong user name or password."' in output


@pytest_twisted.inlineCallbacks
def test_chap(tmp_path, server):
    output, status = yield radclient(
        tmp_path, server.auth_port, "auth",
        'User-Name = "investor", CHAP-Password = "right", Message-Authenticator = 0x00',
    )
    assert status == 0, output
    assert "Received Access-Accept" in output
    assert server.policy.requests[0].method == "chap"


@pytest_twisted.inlineCallbacks
def test_accounting_start_interim_stop(tmp_path, server):
    session = 'Acct-Session-Id = "8100a2f3", User-Name = "investor", NAS-IP-Address = 10.1.0.1, NAS-Port = 3'
    output, status = yield radclient(
        tmp_path, server.acct_port, "acct",
        f"Acct-Status-Type = Start, {session}, Framed-IP-Address = 100.64.0.9, Event-Timestamp = 1700000000",
        f"Acct-Status-Type = Interim-Update, {session}, Acct-Session-Time = 600, Acct-Input-Octets = 1000, "
        "Acct-Output-Octets = 2000",
        f"Acct-Status-Type = Stop, {session}, Acct-Session-Time = 1200, Acct-Input-Octets = 10, "
        "Acct-Input-Gigawords = 1, Acct-Output-Octets = 20, Acct-Terminate-Cause = User-Request, "
        "Acct-Delay-Time = 5, Event-Timestamp = 1700001200",
    )
    assert status == 0, output
    assert output.count("Received Accounting-Response") == 3
    order = ["Start", "Interim-Update", "Stop"]
    start, interim, stop = sorted(server.sink.records, key=lambda r: order.index(r.status_type))
    assert (start.session_id, start.user_name, start.framed_ip, start.event_time) == (
        "8100a2f3", "investor", "100.64.0.9", 1_700_000_000.0,
    )
    assert (interim.session_time, interim.input_octets, interim.output_octets) == (600, 1000, 2000)
    assert (stop.input_octets, stop.output_octets, stop.terminate_cause) == (2**32 + 10, 20, "User-Request")
    assert stop.event_time == 1_700_001_195.0


@pytest_twisted.inlineCallbacks
def test_a_wrong_secret_gets_no_answer(tmp_path, server):
    output, status = yield radclient(tmp_path, server.auth_port, "auth", PAP, secret="not-the-secret")
    assert status == 1 and "Received" not in output, output
    output, status = yield radclient(
        tmp_path, server.acct_port, "acct", 'Acct-Status-Type = Start, Acct-Session-Id = "1"', secret="not-the-secret"
    )
    assert status == 1 and "Received" not in output, output
    assert server.metrics.value("auth", "bad_authenticator") >= 1
    assert server.metrics.value("acct", "bad_authenticator") >= 1
    assert server.policy.requests == [] and server.sink.records == []


@pytest_twisted.inlineCallbacks
def test_no_message_authenticator_gets_no_answer(tmp_path, server):
    output, status = yield radclient(
        tmp_path, server.auth_port, "auth", 'User-Name = "investor", User-Password = "right"'
    )
    assert status == 1 and "Received" not in output, output
    assert server.metrics.value("auth", "missing_message_authenticator") >= 1
    assert server.policy.requests == []


@pytest_twisted.inlineCallbacks
def test_a_retransmission_gets_the_answer_that_was_lost(tmp_path, server):
    server.auth.transport = LosingFirstAnswers(server.auth.transport, 1)
    output, status = yield radclient(tmp_path, server.auth_port, "auth", PAP, tries=3, timeout=1)
    assert status == 0, output
    assert "Received Access-Accept" in output
    assert len(server.policy.requests) == 1
    assert server.metrics.value("auth", "duplicate_answered") == 1


@pytest_twisted.inlineCallbacks
def test_a_retransmission_while_deciding_is_answered_once(tmp_path, server):
    server.policy.delay = 1.5
    output, status = yield radclient(tmp_path, server.auth_port, "auth", PAP, tries=3, timeout=1)
    assert status == 0, output
    assert output.count("Received Access-Accept") == 1
    assert len(server.policy.requests) == 1
    assert server.metrics.value("auth", "duplicate_in_progress") >= 1


@pytest_twisted.inlineCallbacks
def test_status_server_on_both_ports(tmp_path, server):
    for port, answer in [(server.auth_port, "Access-Accept"), (server.acct_port, "Accounting-Response")]:
        output, status = yield radclient(tmp_path, port, "status", "Message-Authenticator = 0x00")
        assert status == 0, output
        assert f"Received {answer}" in output
    assert server.metrics.value("auth", "status") == 1 and server.metrics.value("acct", "status") == 1


@pytest_twisted.inlineCallbacks
def test_an_unknown_client_gets_no_answer(tmp_path):
    elsewhere = Server(networks=("192.0.2.0/24",))
    try:
        output, status = yield radclient(tmp_path, elsewhere.auth_port, "auth", PAP)
    finally:
        yield elsewhere.stop()
    assert status == 1 and "Received" not in output, output
    assert elsewhere.metrics.value("auth", "unknown_client") >= 1


@pytest_twisted.inlineCallbacks
def test_garbage_and_truncated_datagrams_are_dropped_and_service_goes_on(tmp_path, server):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        for datagram in [b"", b"\x01\x02", b"GET / HTTP/1.0\r\n\r\n", b"\x01\x07\x00\x30" + bytes(16) + b"\x01\x05ab"]:
            sock.sendto(datagram, ("127.0.0.1", server.auth_port))
        sock.settimeout(0.3)
        yield task.deferLater(reactor, 0.3, lambda: None)
        with pytest.raises(socket.timeout):
            sock.recv(4096)
    assert server.metrics.value("auth", "malformed") + server.metrics.value("auth", "unknown_code") == 4
    output, status = yield radclient(tmp_path, server.auth_port, "auth", PAP)
    assert status == 0, output
