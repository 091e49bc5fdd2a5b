"""
End to end over real HTTPS on 127.0.0.1: the webhook sender, with its own
Agent and connection pool, against a receiver made of Python's standard
library (http.server over ssl, in a thread): an HTTP and TLS stack
independent of Twisted's.  The receiver checks the signature itself with
hmac, as a broker's system would.  Its certificate is self-signed, made
here with cryptography, and trusted through the sender's TLS policy.
"""

import datetime
import hashlib
import hmac
import http.server
import ipaddress
import json
import queue
import ssl
import threading
import time

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet import ssl as twisted_ssl
from twisted.web.client import BrowserLikePolicyForHTTPS

from callcenter.notify.message import Accepted, OutgoingMessage, PermanentFailure, TemporaryFailure
from callcenter.notify.webhook import WebhookSender

SECRET = b"e2e-webhook-secret"
DEADLINE = 30
BODY = json.dumps({"event": "price_alert", "symbol": "600519", "name": "贵州茅台", "price": "1800.00"})


def self_signed(tmp_path):
    """A key and certificate for 127.0.0.1; returns (cert file, key file, cert PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(pem)
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_file), str(key_file), pem


class Receiver(http.server.ThreadingHTTPServer):
    """
    Records each POST (headers, body, whether its signature verified, the
    client's port) and answers from C{answers} (status, headers), 200 when
    it is empty; with C{hang} set, answers nothing until released.
    """

    daemon_threads = True

    def __init__(self, context):
        super().__init__(("127.0.0.1", 0), Handler)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.requests = queue.Queue()
        self.answers = queue.Queue()
        self.hang = False
        self.release = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        timestamp = self.headers["X-Callcenter-Timestamp"]
        expected = "v1=" + hmac.new(SECRET, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        self.server.requests.put(
            {
                "headers": dict(self.headers),
                "body": body,
                "verified": hmac.compare_digest(expected, self.headers["X-Callcenter-Signature"]),
                "fresh": abs(time.time() - int(timestamp)) <= 300,
                "port": self.client_address[1],
            }
        )
        if self.server.hang:
            self.server.release.wait(DEADLINE)
            return
        try:
            status, headers = self.server.answers.get_nowait()
        except queue.Empty:
            status, headers = 200, {}
        reply = b'{"ok": true}' if status < 300 else b'{"error": "refused"}'
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture
def certificate(tmp_path):
    return self_signed(tmp_path)


@pytest.fixture
def receiver(certificate):
    cert_file, key_file, _ = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = Receiver(context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
    thread.join(DEADLINE)


@pytest.fixture
def senders(receiver, certificate):
    """start(trusted=True, **options): a started sender to the receiver; all stopped after the test."""
    started = []
    trust = twisted_ssl.Certificate.loadPEM(certificate[2])

    def start(trusted=True, timeout=DEADLINE, **options):
        policy = BrowserLikePolicyForHTTPS(trustRoot=trust) if trusted else None
        url = f"https://127.0.0.1:{receiver.server_address[1]}/hooks/callcenter"
        sender = WebhookSender(reactor, url, SECRET, tls_policy=policy, timeout=timeout, **options)
        sender.startService()
        started.append(sender)
        return sender

    yield start
    for sender in started:
        pytest_twisted.blockon(sender.stopService())


def message(n=1):
    return OutgoingMessage(
        message_id=n, channel="webhook", address="investor-1001", body=BODY, idempotency_key=f"alert-{n}:1001:webhook"
    )


async def outcome_of(d):
    try:
        return await d.addTimeout(DEADLINE, reactor)
    except Exception as e:
        return e


@pytest_twisted.ensureDeferred
async def test_a_message_arrives_signed_and_connections_are_reused(senders, receiver):
    sender = senders()
    first = await outcome_of(sender.send(message(1)))
    second = await outcome_of(sender.send(message(2)))
    assert first == second == Accepted(detail="HTTP 200")
    one, two = receiver.requests.get_nowait(), receiver.requests.get_nowait()
    assert one["body"] == BODY.encode()
    assert one["verified"] and one["fresh"] and two["verified"]
    assert one["headers"]["Content-Type"] == "application/json"
    assert one["headers"]["X-Callcenter-Id"] == "alert-1:1001:webhook"
    assert one["headers"]["X-Callcenter-Subscriber"] == "investor-1001"
    assert one["port"] == two["port"]


@pytest_twisted.ensureDeferred
async def test_refusals_and_retry_after(senders, receiver):
    sender = senders()
    receiver.answers.put((503, {"Retry-After": "30"}))
    receiver.answers.put((404, {}))
    busy = await outcome_of(sender.send(message(1)))
    gone = await outcome_of(sender.send(message(2)))
    assert isinstance(busy, TemporaryFailure) and busy.retry_after == 30
    assert isinstance(gone, PermanentFailure) and "refused" in str(gone)


@pytest_twisted.ensureDeferred
async def test_an_untrusted_certificate_is_a_temporary_failure(senders, receiver):
    sender = senders(trusted=False)
    outcome = await outcome_of(sender.send(message()))
    assert isinstance(outcome, TemporaryFailure)
    assert "certificate" in str(outcome).lower()
    assert receiver.requests.empty()


@pytest_twisted.ensureDeferred
async def test_a_receiver_that_never_answers_times_out(senders, receiver):
    receiver.hang = True
    sender = senders(timeout=0.5)
    outcome = await outcome_of(sender.send(message()))
    assert isinstance(outcome, TemporaryFailure) and "no answer from the webhook within 0.5 s" in str(outcome)
    assert receiver.requests.get(timeout=DEADLINE)["verified"]
