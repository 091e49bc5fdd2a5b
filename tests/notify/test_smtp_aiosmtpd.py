"""
End to end on real sockets of 127.0.0.1: the e-mail sender against
aiosmtpd, an independent SMTP server (asyncio, in a thread of this
process), which records what it receives for the tests to read back:
the Chinese text as the stdlib parser sees it, how many connections
carried the messages, STARTTLS with a certificate made here and AUTH,
and the failover to the next relay when the first refuses.
"""

import datetime
import email
import email.policy
import ipaddress
import socket
import ssl
import threading

import pytest
import pytest_twisted
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import defer, reactor

from callcenter.notify.interfaces import IMessageSender
from callcenter.notify.message import Accepted, OutgoingMessage, TemporaryFailure
from callcenter.notify.smtp.relays import Relay
from callcenter.notify.smtp.sender import SmtpSender
from smtp_peer import EphemeralController
from zope.interface.verify import verifyObject

DEADLINE = 30
SUBJECT = "行情报警：600519 贵州茅台 现价 1,700.00 元，突破您设定的 1,688.00 元"
BODY = "尊敬的客户：\n600519 贵州茅台 现价 1,700.00 元，已突破您设定的报警价 1,688.00 元。\n.\n以上信息仅供参考。\n华安证券"
USER, PASSWORD = "notify", "s3cret-密码"


class Mailbox:
    """An aiosmtpd handler that keeps what it receives; C{refuse_mail}: answer MAIL FROM with that."""

    def __init__(self, pipelining=False, refuse_mail=None):
        self.pipelining = pipelining
        self.refuse_mail = refuse_mail
        self.received = []  # (mail_from, rcpt_tos, content, peer, tls, authenticated as)
        self.mail_commands = 0
        self.quits = 0
        self._lock = threading.Lock()

    @property
    def peers(self):
        return {peer for *_, peer, _, _ in self.received}

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self._lock:
            self.mail_commands += 1
        if self.refuse_mail:
            return self.refuse_mail
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            self.received.append((
                envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content, session.peer,
                session.ssl is not None, session.auth_data if session.authenticated else None,
            ))
            n = len(self.received)
        return f"250 2.0.0 OK queued as Q{n:05d}"

    async def handle_QUIT(self, server, session, envelope):
        with self._lock:
            self.quits += 1
        return "221 Bye"


def make_certificate(directory, name):
    """A self-signed certificate for 127.0.0.1 and localhost: (cert path, key path, PEM bytes)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"test relay {name}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(pem)
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path, pem


def check_password(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
    # handled=False: aiosmtpd then answers 535 itself (its default, True, answers nothing).
    return AuthResult(success=ok, handled=False, auth_data=auth_data.login.decode() if ok else None)


@pytest.fixture
def smtp_servers(tmp_path):
    """C{start(mailbox, tls=False, auth=False)} -> (port, certificate PEM); all stopped after the test."""
    controllers = []

    def start(mailbox, tls=False, auth=False):
        options, pem = {}, None
        if tls:
            cert, key, pem = make_certificate(tmp_path, f"relay{len(controllers)}")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            options.update(tls_context=context, require_starttls=True)
        if auth:
            options.update(authenticator=check_password, auth_require_tls=True)
        controller = EphemeralController(mailbox, hostname="127.0.0.1", port=0, **options)
        controller.start()
        controllers.append(controller)
        return controller.port, pem

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def senders():
    """C{make(relays, **kwargs)} -> a started SmtpSender; stopped after the test."""
    started = []

    def make(relays, **kwargs):
        kwargs.setdefault("pool_size", 2)
        kwargs.setdefault("reply_timeout", DEADLINE)
        kwargs.setdefault("connect_timeout", DEADLINE)
        sender = SmtpSender(reactor, relays, "notify@broker.example", from_name="华安证券 客户服务", **kwargs)
        sender.startService()
        started.append(sender)
        return sender

    yield make
    for sender in started:
        if sender.running:
            pytest_twisted.blockon(sender.stopService())


def alert(n=1, address="investor@example.com"):
    return OutgoingMessage(n, "email", address, BODY, SUBJECT, idempotency_key=f"alert:{n}:investor:email")


def closed_port():
    """A port of 127.0.0.1 nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send(sender, *messages):
    return defer.gatherResults([sender.send(m) for m in messages], consumeErrors=True).addTimeout(DEADLINE, reactor)


def send_one(sender, message):
    return sender.send(message).addTimeout(DEADLINE, reactor)


@pytest_twisted.inlineCallbacks
def test_chinese_subject_and_body_arrive_intact(smtp_servers, senders):
    mailbox = Mailbox()
    port, _ = smtp_servers(mailbox)
    sender = senders([Relay("127.0.0.1", port, starttls="off")])
    verifyObject(IMessageSender, sender)
    assert sender.channel == "email"
    [accepted] = yield send(sender, alert())
    assert accepted == Accepted(provider_ids=("Q00001",), detail="250 2.0.0 OK queued as Q00001")
    [(mail_from, rcpt_tos, content, _, _, _)] = mailbox.received
    assert (mail_from, rcpt_tos) == ("notify@broker.example", ["investor@example.com"])
    parsed = email.message_from_bytes(content, policy=email.policy.default)
    assert parsed["Subject"] == SUBJECT
    assert parsed["From"].addresses[0].display_name == "华安证券 客户服务"
    assert parsed["To"] == "investor@example.com"
    # The "." line in the text survived dot-stuffing both ways.
    assert parsed.get_content().replace("\r\n", "\n").rstrip("\n") == BODY
    assert parsed["Message-ID"] == sender._composer.message_id(alert())


@pytest.mark.parametrize("pipelining", [False, True], ids=["lock-step", "pipelined"])
@pytest_twisted.inlineCallbacks
def test_fifty_messages_reuse_the_pool_connections(smtp_servers, senders, pipelining):
    mailbox = Mailbox(pipelining=pipelining)
    port, _ = smtp_servers(mailbox)
    sender = senders([Relay("127.0.0.1", port, starttls="off")], pool_size=3)
    results = yield send(sender, *[alert(n, f"investor{n}@example.com") for n in range(50)])
    assert all(isinstance(r, Accepted) for r in results)
    assert sorted(r.provider_ids[0] for r in results) == [f"Q{n:05d}" for n in range(1, 51)]
    assert sorted(rcpt for _, [rcpt], *_ in mailbox.received) == sorted(f"investor{n}@example.com" for n in range(50))
    assert 1 <= len(mailbox.peers) <= 3
    assert mailbox.mail_commands == 50
    assert all(c.pipelining == pipelining for c in sender.connections)


@pytest_twisted.inlineCallbacks
def test_starttls_and_auth(smtp_servers, senders):
    mailbox = Mailbox()
    port, pem = smtp_servers(mailbox, tls=True, auth=True)
    sender = senders([Relay("127.0.0.1", port, starttls="required", username=USER, password=PASSWORD, trust_root=pem)])
    [accepted] = yield send(sender, alert())
    assert isinstance(accepted, Accepted)
    [(_, _, content, _, tls, user)] = mailbox.received
    assert tls and user == USER
    assert email.message_from_bytes(content, policy=email.policy.default)["Subject"] == SUBJECT
    assert all(c.tls for c in sender.connections)


def assert_failed_over(first, second, sender, why):
    """The message went to the second relay once, the first has none and is marked down."""
    assert len(second.received) == 1
    assert first.received == []
    down = sender.relays[0]
    assert down.down_until > reactor.seconds() and down.failures == 1
    assert why in down.last_error, down.last_error
    assert sender.relays[1].failures == 0


@pytest_twisted.inlineCallbacks
def test_wrong_credentials_the_next_relay_takes_over(smtp_servers, senders):
    first, second = Mailbox(), Mailbox()
    port1, pem = smtp_servers(first, tls=True, auth=True)
    port2, _ = smtp_servers(second)
    sender = senders([
        Relay("127.0.0.1", port1, starttls="required", username=USER, password="wrong", trust_root=pem),
        Relay("127.0.0.1", port2, starttls="off"),
    ])
    [accepted] = yield send(sender, alert())
    assert isinstance(accepted, Accepted)
    assert_failed_over(first, second, sender, "535")


@pytest_twisted.inlineCallbacks
def test_a_relay_refusing_mail_from_the_next_relay_takes_over(smtp_servers, senders):
    first, second = Mailbox(refuse_mail="451 4.3.0 try again later"), Mailbox()
    port1, _ = smtp_servers(first)
    port2, _ = smtp_servers(second)
    sender = senders([Relay("127.0.0.1", port1, starttls="off"), Relay("127.0.0.1", port2, starttls="off")])
    [accepted] = yield send(sender, alert())
    assert isinstance(accepted, Accepted)
    assert first.mail_commands == 1
    assert_failed_over(first, second, sender, "451 4.3.0 try again later")


@pytest_twisted.inlineCallbacks
def test_a_closed_port_the_next_relay_takes_over(smtp_servers, senders):
    first, second = Mailbox(), Mailbox()
    port2, _ = smtp_servers(second)
    sender = senders([Relay("127.0.0.1", closed_port(), starttls="off"), Relay("127.0.0.1", port2, starttls="off")])
    [accepted] = yield send(sender, alert())
    assert isinstance(accepted, Accepted)
    assert_failed_over(first, second, sender, "refused")


@pytest_twisted.inlineCallbacks
def test_an_untrusted_certificate_the_next_relay_takes_over(smtp_servers, senders, tmp_path):
    first, second = Mailbox(), Mailbox()
    port1, _ = smtp_servers(first, tls=True)
    port2, _ = smtp_servers(second)
    *_, other_pem = make_certificate(tmp_path, "impostor")
    sender = senders([
        Relay("127.0.0.1", port1, starttls="required", trust_root=other_pem),
        Relay("127.0.0.1", port2, starttls="off"),
    ])
    [accepted] = yield send(sender, alert())
    assert isinstance(accepted, Accepted)
    assert_failed_over(first, second, sender, "certificate verify failed")


@pytest_twisted.inlineCallbacks
def test_every_relay_down_is_a_temporary_failure(senders):
    sender = senders([Relay("127.0.0.1", closed_port(), starttls="off")], relay_backoff=60)
    with pytest.raises(TemporaryFailure):
        yield send_one(sender, alert())
    # Down now: the next message fails at once, saying when to come back.
    with pytest.raises(TemporaryFailure) as caught:
        yield send_one(sender, alert(2))
    assert 0 < caught.value.retry_after <= 60


@pytest_twisted.inlineCallbacks
def test_stopping_says_quit_and_refuses_new_messages(smtp_servers, senders):
    mailbox = Mailbox()
    port, _ = smtp_servers(mailbox)
    sender = senders([Relay("127.0.0.1", port, starttls="off")])
    yield send(sender, alert())
    yield sender.stopService().addTimeout(DEADLINE, reactor)
    assert mailbox.quits == 1
    assert sender.connections == []
    with pytest.raises(TemporaryFailure):
        yield send_one(sender, alert(2))
