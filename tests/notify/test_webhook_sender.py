"""
The webhook sender (callcenter.notify.webhook) in memory: requests go
through treq's StubTreq to a Twisted resource playing the receiver, time
is a Clock.  The receiver checks the signature with hmac itself, as a
broker's system would, not with our helper.
"""

import hashlib
import hmac
import json

import pytest
from twisted.internet.defer import fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from treq.testing import StubTreq
from twisted.web.iweb import IAgent
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer
from zope.interface.verify import verifyObject

from callcenter.notify.interfaces import IMessageSender
from callcenter.notify.message import Accepted, OutgoingMessage, PermanentFailure, TemporaryFailure
from callcenter.notify.webhook import WebhookSender, retry_after_seconds, signature, verify_signature
from outcomes import results_of

SECRET = b"shared-webhook-secret"
URL = "https://hooks.broker.example/callcenter"
TIMEOUT = 10.0
# 2026-01-05 09:30:00 UTC
NOW = 1767605400
BODY = json.dumps({"event": "fill", "symbol": "600519", "name": "贵州茅台", "qty": 100}, ensure_ascii=False)


class Receiver(Resource):
    """Records each POST; answers C{status} with C{headers} and C{body}, or never if C{hang}."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.requests = []
        self.status = 200
        self.headers = {}
        self.body = b""
        self.hang = False
        self.partial = False

    def render_POST(self, request):
        self.requests.append(
            {
                "path": request.path,
                "headers": {k.decode().lower(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()},
                "body": request.content.read(),
            }
        )
        if self.hang:
            return NOT_DONE_YET
        request.setResponseCode(self.status)
        for name, value in self.headers.items():
            request.setHeader(name, value)
        if self.partial:
            request.setHeader("Content-Length", str(len(self.body) + 1))
            request.write(self.body)
            return NOT_DONE_YET
        return self.body


@implementer(IAgent)
class RefusingAgent:
    def request(self, method, uri, headers=None, bodyProducer=None):
        return fail(ConnectionRefusedError("nobody listening"))


@pytest.fixture
def clock():
    clock = Clock()
    clock.advance(NOW)
    return clock


@pytest.fixture
def receiver():
    return Receiver()


@pytest.fixture
def stub(receiver):
    return StubTreq(receiver)


@pytest.fixture
def sender(clock, stub):
    sender = WebhookSender(clock, URL, SECRET, http_client=stub, timeout=TIMEOUT, window=3)
    sender.startService()
    return sender


def message(**fields):
    values = {
        "message_id": 42, "channel": "webhook", "address": "investor-1001", "body": BODY,
        "idempotency_key": "fill-77:investor-1001:webhook",
    }
    values.update(fields)
    return OutgoingMessage(**values)


def failed_with(outcome, kind):
    assert len(outcome) == 1 and isinstance(outcome[0], Failure), outcome
    assert type(outcome[0].value) is kind, outcome[0]
    return outcome[0].value


def test_provides_the_interface(sender):
    assert verifyObject(IMessageSender, sender)
    assert sender.channel == "webhook"
    assert sender.window == 3


def test_a_2xx_is_accepted_and_the_request_is_signed(sender, receiver):
    outcome = results_of(sender.send(message()))
    assert outcome == [Accepted(detail="HTTP 200")]
    [request] = receiver.requests
    headers = request["headers"]
    assert request["path"] == b"/callcenter"
    assert request["body"] == BODY.encode("utf-8")
    assert headers["content-type"] == "application/json"
    assert headers["x-callcenter-id"] == "fill-77:investor-1001:webhook"
    assert headers["x-callcenter-message-id"] == "42"
    assert headers["x-callcenter-subscriber"] == "investor-1001"
    assert headers["x-callcenter-timestamp"] == str(NOW)
    expected = hmac.new(SECRET, f"{NOW}.".encode() + request["body"], hashlib.sha256).hexdigest()
    assert headers["x-callcenter-signature"] == f"v1={expected}"


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_every_2xx_is_accepted(sender, receiver, status):
    receiver.status = status
    assert results_of(sender.send(message())) == [Accepted(detail=f"HTTP {status}")]


def test_each_attempt_is_signed_at_its_own_time_with_the_same_id(clock, sender, receiver):
    sender.send(message())
    clock.advance(3600)
    sender.send(message())
    first, second = (r["headers"] for r in receiver.requests)
    assert first["x-callcenter-id"] == second["x-callcenter-id"]
    assert int(second["x-callcenter-timestamp"]) == int(first["x-callcenter-timestamp"]) + 3600
    assert first["x-callcenter-signature"] != second["x-callcenter-signature"]


def test_without_an_idempotency_key_the_id_is_the_message_id(sender, receiver):
    sender.send(message(idempotency_key=""))
    assert receiver.requests[0]["headers"]["x-callcenter-id"] == "message-42"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_busy_or_broken_receivers_are_temporary(sender, receiver, status):
    receiver.status = status
    receiver.body = b"try later"
    failure = failed_with(results_of(sender.send(message())), TemporaryFailure)
    assert str(failure) == f"webhook answered HTTP {status}: try later"
    assert failure.retry_after is None


@pytest.mark.parametrize("status", [301, 307, 400, 401, 403, 404, 410, 422])
def test_other_answers_are_permanent(sender, receiver, status):
    receiver.status = status
    receiver.body = b'{"error": "unknown subscriber"}'
    failure = failed_with(results_of(sender.send(message())), PermanentFailure)
    assert f"HTTP {status}" in str(failure) and "unknown subscriber" in str(failure)
    assert len(receiver.requests) == 1


def test_a_long_error_body_is_cut(sender, receiver):
    receiver.status = 500
    receiver.body = b"x" * 10000
    failure = failed_with(results_of(sender.send(message())), TemporaryFailure)
    assert len(str(failure)) < 400


def test_retry_after_in_seconds_is_honoured(sender, receiver):
    receiver.status = 429
    receiver.headers = {"Retry-After": "120"}
    assert failed_with(results_of(sender.send(message())), TemporaryFailure).retry_after == 120


def test_retry_after_as_a_date_is_honoured(sender, receiver):
    receiver.status = 503
    receiver.headers = {"Retry-After": "Mon, 05 Jan 2026 09:35:00 GMT"}
    assert failed_with(results_of(sender.send(message())), TemporaryFailure).retry_after == 300


@pytest.mark.parametrize(
    "values, expected",
    [(None, None), ([b"0"], 0), ([b" 7 "], 7), ([b"soon"], None), ([b"-5"], None),
     ([b"Mon, 05 Jan 2026 09:29:00 GMT"], 0)],
)
def test_retry_after_seconds(values, expected):
    assert retry_after_seconds(values, NOW) == expected


def test_no_answer_within_the_timeout_is_temporary(clock, sender, receiver):
    receiver.hang = True
    outcome = results_of(sender.send(message()))
    clock.advance(TIMEOUT - 1)
    assert outcome == []
    clock.advance(1)
    assert "no answer from the webhook within" in str(failed_with(outcome, TemporaryFailure))
    assert clock.getDelayedCalls() == []


def test_a_2xx_whose_body_never_ends_is_still_accepted(clock, sender, stub, receiver):
    receiver.partial = True
    receiver.body = b'{"ok": tr'
    outcome = results_of(sender.send(message()))
    stub.flush()
    assert outcome == []
    clock.advance(TIMEOUT)
    assert outcome == [Accepted(detail="HTTP 200")]


def test_an_error_whose_body_never_ends_is_temporary(clock, sender, stub, receiver):
    receiver.partial = True
    receiver.status = 404
    outcome = results_of(sender.send(message()))
    stub.flush()
    clock.advance(TIMEOUT)
    failed_with(outcome, TemporaryFailure)


def test_stopping_fails_requests_in_flight_as_temporary(clock, sender, receiver):
    receiver.hang = True
    outcome = results_of(sender.send(message()))
    sender.stopService()
    failed_with(outcome, TemporaryFailure)
    assert clock.getDelayedCalls() == []
    failed_with(results_of(sender.send(message())), TemporaryFailure)


def test_a_connection_error_is_temporary(clock):
    sender = WebhookSender(clock, URL, SECRET, agent=RefusingAgent())
    sender.startService()
    assert "nobody listening" in str(failed_with(results_of(sender.send(message())), TemporaryFailure))


def test_a_body_that_is_not_json_is_permanent_and_not_sent(sender, receiver):
    failed_with(results_of(sender.send(message(body="Fill 600519"))), PermanentFailure)
    assert receiver.requests == []


def test_control_characters_cannot_forge_headers(sender, receiver):
    for forged in (message(address="investor\r\nX-Admin: yes"), message(idempotency_key="k\n")):
        failed_with(results_of(sender.send(forged)), PermanentFailure)
    assert receiver.requests == []


def test_nothing_is_sent_before_starting(clock, stub, receiver):
    sender = WebhookSender(clock, URL, SECRET, http_client=stub)
    failed_with(results_of(sender.send(message())), TemporaryFailure)
    assert receiver.requests == []


def test_bad_settings_are_refused(clock):
    with pytest.raises(ValueError, match="https"):
        WebhookSender(clock, "http://hooks.broker.example/", SECRET)
    assert WebhookSender(clock, "http://127.0.0.1:8080/", SECRET, allow_http=True).url == "http://127.0.0.1:8080/"
    with pytest.raises(ValueError):
        WebhookSender(clock, URL, "a text secret")
    with pytest.raises(ValueError):
        WebhookSender(clock, URL, b"")
    with pytest.raises(ValueError):
        WebhookSender(clock, "https:///nohost", SECRET)


def test_verify_signature():
    body = b'{"event": "fill"}'
    good = "v1=" + hmac.new(SECRET, b"1000." + body, hashlib.sha256).hexdigest()
    assert signature(SECRET, 1000, body) == good[3:]
    assert verify_signature(SECRET, "1000", good, body, now=1000)
    assert verify_signature(SECRET, "1000", good, body, now=1300)
    assert verify_signature(SECRET, "1000", "v0=abc, " + good, body, now=1000)
    assert not verify_signature(SECRET, "1000", good, body, now=1301)
    assert not verify_signature(SECRET, "1000", good, body, now=699)
    assert not verify_signature(SECRET, "1000", good, body + b" ", now=1000)
    assert not verify_signature(b"other secret", "1000", good, body, now=1000)
    assert not verify_signature(SECRET, "1001", good, body, now=1000)
    assert not verify_signature(SECRET, "soon", good, body, now=1000)
    assert not verify_signature(SECRET, "1000", None, body, now=1000)
    assert not verify_signature(SECRET, "1000", good.replace("v1", "v2"), body, now=1000)
