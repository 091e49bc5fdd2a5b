"""
MS-CHAP end to end on real UDP sockets of 127.0.0.1, against our listener
with the real access policy on a real store (SQLite), and independent
implementations on the other side:

 - MS-CHAPv1: FreeRADIUS's radclient and radtest as the NAS (radclient
   turns MS-CHAP-Password into MS-CHAP-Challenge and MS-CHAP-Response;
   neither can make an MS-CHAPv2 response);
 - MS-CHAPv2: the request is built here, and sent to our server and to
   FreeRADIUS 3.2 (its mschap module, the same user in its files module,
   started as bench/radius_vs_freeradius.py and PEERS.md start it): both
   must accept the right password with the same MS-CHAP2-Success and the
   same MPPE keys, and reject a wrong one with MS-CHAP-Error E=691.
"""

import glob
import ipaddress
import os
import re
import shutil
import socket
import subprocess

import pytest
import pytest_twisted
from pyrad.packet import AccessAccept, AccessReject, AccessRequest, AuthPacket, Packet
from twisted.internet import defer, reactor, threads
from twisted.internet.utils import getProcessOutputAndValue

from callcenter.radius import accounts
from callcenter.radius import mschap as m
from callcenter.radius.chap import ChapSecrets
from callcenter.radius.clients import RadiusClient, RadiusClients
from callcenter.radius.dictionary import load_dictionary
from callcenter.radius.directory import AccountDirectory
from callcenter.radius.metrics import RadiusMetrics
from callcenter.radius.policy import AccessPolicy
from callcenter.radius.protocol import AuthenticationProtocol
from internet_helpers import PASSWORD, CountingStore, add_tiers, open_internet
from postgres import free_port

SECRET = "mschap-e2e-secret"
DEADLINE = 30
DICTIONARY = load_dictionary()
KEY = bytes(range(32))
FREERADIUS_CONFIG = "/etc/freeradius/3.0"


def in_thread(function, *args):
    return threads.deferToThread(function, *args)


class Server:
    """Our authentication listener, the real policy and directory over the test's database."""

    def __init__(self, database):
        add_tiers(database)
        secrets = ChapSecrets(KEY)
        open_internet(database, "zhang", "10010001", chap_secret=secrets.seal("zhang", PASSWORD), language="en")
        open_internet(database, "li", "10010002")  # PAP only
        open_internet(database, "wang", "10010003", chap_secret=secrets.seal("wang", PASSWORD))
        database.transaction(accounts.set_enabled, "wang", False)
        self.database = database
        store = CountingStore(database)
        self.policy = AccessPolicy(store, reactor, in_thread, AccountDirectory(store, reactor), secrets)
        clients = RadiusClients([RadiusClient("nas", ipaddress.ip_network("127.0.0.1/32"), SECRET.encode())])
        self.metrics = RadiusMetrics()
        self.auth = AuthenticationProtocol(clients, self.policy, reactor, metrics=self.metrics, dictionary=DICTIONARY)
        self.listening = reactor.listenUDP(0, self.auth, interface="127.0.0.1")
        self.port = self.listening.getHost().port


@pytest.fixture
def server(database):
    server = Server(database)
    yield server
    pytest_twisted.blockon(defer.maybeDeferred(server.listening.stopListening))


@defer.inlineCallbacks
def run(executable, *arguments):
    out, err, status = yield getProcessOutputAndValue(executable, arguments, env=os.environ).addTimeout(
        DEADLINE, reactor
    )
    return (out + err).decode("utf-8", "replace"), status


def radclient(tmp_path, port, attributes):
    path = tmp_path / "packet.txt"
    path.write_text(attributes + "\n")
    return run("radclient", "-x", "-r", "1", "-t", "2", "-f", str(path), f"127.0.0.1:{port}", "auth", SECRET)


def ms_chap_v1(user, password):
    return f'User-Name = "{user}", MS-CHAP-Password = "{password}", Message-Authenticator = 0x00'


def hex_attribute(output, name):
    found = re.search(rf"{name} = 0x([0-9a-f]+)", output)
    assert found, output
    return bytes.fromhex(found.group(1))


@pytest_twisted.inlineCallbacks
def test_radclient_ms_chap_v1_accepted_with_mppe_keys(tmp_path, server):
    output, status = yield radclient(tmp_path, server.port, ms_chap_v1("zhang", PASSWORD))
    assert status == 0, output
    assert "Received Access-Accept" in output
    assert "Session-Timeout = 108000" in output and "Reply-Message = " in output
    # radclient reveals MS-CHAP-MPPE-Keys with the secret and its Request Authenticator.
    keys = hex_attribute(output, "MS-CHAP-MPPE-Keys")
    assert keys[:24] == bytes(8) + m.hash_nt_password_hash(m.nt_password_hash(PASSWORD))
    assert "MS-MPPE-Encryption-Policy = Encryption-Allowed" in output
    assert "MS-MPPE-Encryption-Types = RC4-40or128-bit-Allowed" in output
    assert server.metrics.value("auth", "accept") == 1


@pytest.mark.parametrize(
    "user, password, reason, error",
    [
        ("zhang", "wrong-password", "Wrong user name or password.", "E=691 R=0"),
        ("nobody", PASSWORD, "用户名或密码错误。", "E=691 R=0"),
        ("wang", PASSWORD, "上网账户已停用", "E=647 R=0"),
        ("li", PASSWORD, "不支持该认证方式", "E=649 R=0"),
    ],
)
@pytest_twisted.inlineCallbacks
def test_radclient_ms_chap_v1_rejected(tmp_path, server, user, password, reason, error):
    output, status = yield radclient(tmp_path, server.port, ms_chap_v1(user, password))
    assert status == 1, output
    assert "Received Access-Reject" in output
    assert reason in output
    assert re.search(rf'MS-CHAP-Error = "[^"]*{error}"', output), output


@pytest_twisted.inlineCallbacks
def test_radtest_ms_chap(server):
    output, status = yield run(
        "radtest", "-t", "mschap", "-x", "zhang", PASSWORD, f"127.0.0.1:{server.port}", "0", SECRET
    )
    assert status == 0, output
    assert "Received Access-Accept" in output
    output, status = yield run(
        "radtest", "-t", "mschap", "-x", "zhang", "wrong-password", f"127.0.0.1:{server.port}", "0", SECRET
    )
    assert status == 1 and "Received Access-Reject" in output, output


@pytest_twisted.inlineCallbacks
def test_a_wrong_password_counts_towards_the_lock_as_pap_does(tmp_path, server):
    for _ in range(5):
        output, status = yield radclient(tmp_path, server.port, ms_chap_v1("zhang", "wrong-password"))
        assert status == 1, output
    output, status = yield radclient(tmp_path, server.port, ms_chap_v1("zhang", PASSWORD))
    assert status == 1 and "Too many wrong passwords" in output, output
    assert server.database.transaction(accounts.account, "zhang").locked_at is not None


# -- MS-CHAPv2, side by side with FreeRADIUS


FREERADIUS_SITE = """\
server mschap_test {{
	listen {{
		type = auth
		ipaddr = 127.0.0.1
		port = {port}
	}}
	authorize {{
		files
		mschap
	}}
	authenticate {{
		Auth-Type MS-CHAP {{
			mschap
		}}
	}}
	post-auth {{
	}}
}}
"""


def freeradius_config(directory, port, users):
    """PEERS.md's recipe, as bench/radius_vs_freeradius.py follows it, with MS-CHAP in the site."""
    conf = os.path.join(directory, "raddb")
    shutil.copytree(FREERADIUS_CONFIG, conf, symlinks=True)
    os.remove(os.path.join(conf, "mods-enabled", "eap"))  # needs certificates made at install
    for site in glob.glob(os.path.join(conf, "sites-enabled", "*")):
        os.remove(site)
    for sub in ("log", "run"):
        os.makedirs(os.path.join(directory, sub), exist_ok=True)
    path = os.path.join(conf, "radiusd.conf")
    with open(path) as f:
        text = f.read()
    for pattern, replacement in {
        r"(?m)^raddbdir = .*$": f"raddbdir = {conf}",
        r"(?m)^logdir = .*$": f"logdir = {directory}/log",
        r"(?m)^run_dir = .*$": f"run_dir = {directory}/run",
        r"(?m)^\s*user = freerad\s*$": "",
        r"(?m)^\s*group = freerad\s*$": "",
        r"(?m)^proxy_requests\s*=.*$": "proxy_requests = no",
    }.items():
        text, count = re.subn(pattern, replacement, text)
        assert count == 1, pattern
    with open(path, "w") as f:
        f.write(text)
    with open(os.path.join(conf, "clients.conf"), "w") as f:
        f.write(f"client test {{\n\tipaddr = 127.0.0.1\n\tsecret = {SECRET}\n}}\n")
    with open(os.path.join(conf, "mods-config", "files", "authorize"), "w") as f:
        for user, password in users:
            f.write(f'{user}\tCleartext-Password := "{password}"\n\n')
    with open(os.path.join(conf, "sites-enabled", "mschap_test"), "w") as f:
        f.write(FREERADIUS_SITE.format(port=port))
    check = subprocess.run(["freeradius", "-C", "-d", conf], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, (check.stdout + check.stderr)[-2000:]
    return conf


@pytest.fixture(scope="module")
def freeradius(tmp_path_factory):
    """FreeRADIUS in the foreground on a port of its own; its port."""
    directory = str(tmp_path_factory.mktemp("freeradius"))
    port = free_port()
    conf = freeradius_config(directory, port, [("zhang", PASSWORD)])
    log = open(os.path.join(directory, "freeradius.out"), "w")
    process = subprocess.Popen(["freeradius", "-f", "-l", "stdout", "-d", conf], stdout=log, stderr=subprocess.STDOUT)
    try:
        # Ready when it answers: a Status-Server would need the status site; an Access-Request is answered.
        for _ in range(100):
            if process.poll() is not None:
                break
            try:
                exchange(port, v2_request("zhang", PASSWORD)[0], timeout=0.1)
                break
            except socket.timeout:
                continue
        assert process.poll() is None, open(log.name).read()[-2000:]
        yield port
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def v2_request(user, password, ident=0x4A, mangle=False, challenge=None):
    """
    An MS-CHAPv2 Access-Request as a NAS sends it, signed: (datagram, pyrad
    packet, NT-Response); with C{mangle}, one bit of the response flipped;
    C{challenge}, the authenticator challenge (else a new one).
    """
    authenticator_challenge, peer_challenge = challenge or os.urandom(16), os.urandom(16)
    nt_response = m.generate_nt_response(authenticator_challenge, peer_challenge, user.encode(), password)
    if mangle:
        nt_response = bytes([nt_response[0] ^ 0x80]) + nt_response[1:]
    request = AuthPacket(code=AccessRequest, secret=SECRET.encode(), dict=DICTIONARY, id=ident)
    request["User-Name"] = user
    request["NAS-IP-Address"] = "127.0.0.1"
    request["MS-CHAP-Challenge"] = authenticator_challenge
    request["MS-CHAP2-Response"] = bytes((ident, 0)) + peer_challenge + bytes(8) + nt_response
    request.add_message_authenticator()
    return request.RequestPacket(), request, nt_response


def exchange(port, datagram, timeout=5.0):
    """One datagram to 127.0.0.1:port and its answer (blocking: run it in a thread)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(datagram, ("127.0.0.1", port))
        return sock.recv(4096)


def decoded(request, answer):
    reply = Packet(secret=SECRET.encode(), dict=DICTIONARY, packet=answer)
    assert request.VerifyReply(reply, answer), "a Response Authenticator that does not match"
    return reply


def one(reply, name):
    [value] = reply[name]
    return value


@pytest_twisted.inlineCallbacks
def test_ms_chap_v2_as_freeradius_answers_it(server, freeradius):
    answers = {}
    for name, port in (("ours", server.port), ("freeradius", freeradius)):
        datagram, request, nt_response = v2_request("zhang", PASSWORD)
        reply = decoded(request, (yield threads.deferToThread(exchange, port, datagram)))
        assert reply.code == AccessAccept, name
        # What the NAS does with the keys: reveal them with the secret and its Request Authenticator.
        # (pyrad's own decoding would reveal them with the reply's authenticator: read them raw.)
        keys = [
            m.reveal_mppe_key(dict.__getitem__(reply, (311, kind))[0], SECRET.encode(), request.authenticator)
            for kind in (m.MS_MPPE_SEND_KEY, m.MS_MPPE_RECV_KEY)
        ]
        authenticator_challenge = request["MS-CHAP-Challenge"][0]
        peer_challenge = request["MS-CHAP2-Response"][0][2:18]
        expected = m.generate_authenticator_response(
            m.nt_password_hash(PASSWORD), nt_response, peer_challenge, authenticator_challenge, b"zhang"
        )
        assert one(reply, "MS-CHAP2-Success") == b"\x4a" + expected.encode(), name
        master = m.get_master_key(m.hash_nt_password_hash(m.nt_password_hash(PASSWORD)), nt_response)
        assert keys == [m.get_asymmetric_start_key(master, 16, True, True),
                        m.get_asymmetric_start_key(master, 16, False, True)], name
        answers[name] = (
            one(reply, "MS-MPPE-Encryption-Policy"), one(reply, "MS-MPPE-Encryption-Types"),
        )
    assert answers["ours"] == answers["freeradius"] == ("Encryption-Allowed", "RC4-40or128-bit-Allowed")


@pytest_twisted.inlineCallbacks
def test_ms_chap_v2_same_request_same_success_from_both(server, freeradius):
    # The very same request (challenges and response) to both: the same MS-CHAP2-Success, byte for byte.
    datagram, request, _ = v2_request("zhang", PASSWORD)
    successes = []
    for port in (server.port, freeradius):
        reply = decoded(request, (yield threads.deferToThread(exchange, port, datagram)))
        assert reply.code == AccessAccept
        successes.append(one(reply, "MS-CHAP2-Success"))
    assert successes[0] == successes[1] and successes[0].startswith(b"\x4aS=")


@pytest_twisted.inlineCallbacks
def test_ms_chap_v2_wrong_password_rejected_by_both(server, freeradius):
    for port in (server.port, freeradius):
        datagram, request, _ = v2_request("zhang", "wrong-password")
        reply = decoded(request, (yield threads.deferToThread(exchange, port, datagram)))
        assert reply.code == AccessReject
        error = one(reply, "MS-CHAP-Error")
        assert error[1:].startswith("E=691 R=") and " V=3" in error, error
        assert "MS-CHAP2-Success" not in reply and "MS-MPPE-Send-Key" not in reply


@pytest_twisted.inlineCallbacks
def test_ms_chap_v2_unknown_disabled_and_mangled(server):
    answers = {}
    for case, (user, password) in {
        "unknown": ("nobody", PASSWORD), "disabled": ("wang", PASSWORD), "no CHAP secret": ("li", PASSWORD),
    }.items():
        datagram, request, _ = v2_request(user, password)
        reply = decoded(request, (yield threads.deferToThread(exchange, server.port, datagram)))
        assert reply.code == AccessReject, case
        answers[case] = one(reply, "MS-CHAP-Error")[1:].split(" C=")[0]
    assert answers == {"unknown": "E=691 R=1", "disabled": "E=647 R=0", "no CHAP secret": "E=649 R=0"}
    # A response with one bit flipped: a wrong password.
    datagram, request, _ = v2_request("zhang", PASSWORD, mangle=True)
    reply = decoded(request, (yield threads.deferToThread(exchange, server.port, datagram)))
    assert reply.code == AccessReject and one(reply, "MS-CHAP-Error")[1:].startswith("E=691 R=1")


@pytest_twisted.inlineCallbacks
def test_ms_chap_v2_a_wrong_password_may_be_retried_on_the_new_challenge(server):
    """RFC 2759 §6: R=1 and C, the challenge the client answers; the NAS sends it in its next request."""
    datagram, request, _ = v2_request("zhang", "wrong-password", ident=0x10)
    reply = decoded(request, (yield threads.deferToThread(exchange, server.port, datagram)))
    error = one(reply, "MS-CHAP-Error")
    assert reply.code == AccessReject and error[1:].startswith("E=691 R=1 C=")
    challenge = bytes.fromhex(error.split(" C=")[1].split()[0])
    datagram, request, _ = v2_request("zhang", PASSWORD, ident=0x11, challenge=challenge)
    reply = decoded(request, (yield threads.deferToThread(exchange, server.port, datagram)))
    assert reply.code == AccessAccept
    assert server.database.transaction(accounts.account, "zhang").failed_logins == 0


@pytest_twisted.inlineCallbacks
def test_ms_chap_v2_replayed_from_another_port_is_refused(server):
    datagram, request, _ = v2_request("zhang", PASSWORD)
    first = decoded(request, (yield threads.deferToThread(exchange, server.port, datagram)))
    assert first.code == AccessAccept
    # The same datagram again from a new socket: not a retransmission (another source port, RFC 5080
    # §2.2.2), so not answered from the duplicate cache: a replay of an accepted response.
    again = decoded(request, (yield threads.deferToThread(exchange, server.port, datagram)))
    assert again.code == AccessReject and one(again, "MS-CHAP-Error")[1:].startswith("E=691 R=1")
    assert server.database.transaction(accounts.account, "zhang").failed_logins == 0


def test_freeradius_is_installed():
    # The cross-checks above need it; the suite must not pass without it.
    assert shutil.which("freeradius") and shutil.which("radclient"), "apt-get install freeradius freeradius-utils"
