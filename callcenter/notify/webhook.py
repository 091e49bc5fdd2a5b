"""
The webhook channel: each message POSTed to one HTTPS URL, signed, for
brokers' own systems (a CRM, a chat bot) to take notifications from.

The request: the message's body as it is (JSON text rendered by the
templates), UTF-8, and these headers::

    Content-Type: application/json
    X-Callcenter-Id: <idempotency key>     the same on every retry of a message
    X-Callcenter-Message-Id: <outbox id>
    X-Callcenter-Subscriber: <subscriber id>   the message's address
    X-Callcenter-Timestamp: <unix seconds>     when this attempt was signed
    X-Callcenter-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>

How a receiver checks a request (L{verify_signature} does it in Python):

 1. Take the body as raw bytes, before any JSON parsing.
 2. Refuse a timestamp that is not an integer or is more than five minutes
    from its own clock, either way: a captured request cannot be replayed
    later, since the signature covers the timestamp.
 3. Compute HMAC-SHA256 with the shared secret over the timestamp's
    digits, ".", and the body; hex.
 4. Accept if any comma-separated C{v1=} entry of the signature header
    equals it (compared in constant time, C{hmac.compare_digest});
    entries of other schemes are for later versions and are ignored.
 5. Drop a request whose X-Callcenter-Id it has already processed: we send
    again whatever was not answered 2xx in time, so a repeat is normal.

What the answer means to us: 2xx the message is delivered; 408, 429 and
5xx (and no answer within C{timeout}, or no connection) try again later,
after Retry-After if given; any other status (3xx included: a POST is not
replayed to a place the operator did not configure) gives up on the
message, which goes to the dead letters.
"""

import hashlib
import hmac
import json
from email.utils import parsedate_to_datetime

from hyperlink import URL
from treq.client import HTTPClient
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from zope.interface import implementer

from callcenter.notify.interfaces import IMessageSender
from callcenter.notify.message import Accepted, PermanentFailure, TemporaryFailure

SIGNATURE_SCHEME = "v1"
DEFAULT_TOLERANCE = 300
USER_AGENT = b"callcenter-notify-webhook/1"
# Enough of an error answer's body to say why in the message's history.
EXCERPT_BYTES = 300


def signature(secret, timestamp, body):
    """The hex HMAC-SHA256 of C{timestamp}.C{body} (bytes) with C{secret} (bytes)."""
    return hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(secret, timestamp, signature_header, body, now, tolerance=DEFAULT_TOLERANCE):
    """
    True when C{signature_header} (X-Callcenter-Signature) signs C{body}
    (bytes) at C{timestamp} (X-Callcenter-Timestamp, text) with C{secret},
    and C{timestamp} is within C{tolerance} seconds of C{now}.
    """
    try:
        when = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(now - when) > tolerance:
        return False
    expected = signature(secret, when, body)
    for entry in (signature_header or "").split(","):
        scheme, _, value = entry.strip().partition("=")
        if scheme == SIGNATURE_SCHEME and hmac.compare_digest(expected, value.strip()):
            return True
    return False


def retry_after_seconds(values, now):
    """Seconds asked by a Retry-After header (delay-seconds or HTTP-date), or None."""
    if not values:
        return None
    value = values[0].decode("latin-1").strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when - now)


def _header_value(text, what):
    """C{text} as a header value; a control character could forge headers."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise PermanentFailure(f"the {what} has control characters: {text!r}")
    return text.encode("utf-8")


class _Body(Protocol):
    """Reads a response's body, keeping its beginning; can be cut short."""

    def __init__(self):
        self.excerpt = bytearray()
        self.done = Deferred(lambda _: self.stop())

    def dataReceived(self, data):
        self.excerpt += data[: max(0, EXCERPT_BYTES - len(self.excerpt))]

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.callback(bytes(self.excerpt).decode("utf-8", "replace"))

    def stop(self):
        if self.transport is not None:
            self.transport.stopProducing()


@implementer(IMessageSender)
class WebhookSender(Service):
    """
    POSTs messages to one webhook URL.

    @param reactor: builds the HTTPS agent (when no C{http_client} or
        C{agent} is given); also the clock, unless C{clock} is given.
    @param url: the receiver's URL; https only, unless C{allow_http}.
    @param secret: the shared signing secret (bytes).
    @param http_client: a treq C{HTTPClient} (or C{StubTreq}) to use as is.
    @param agent: an C{IAgent} to use (wrapped in a treq C{HTTPClient}).
    @param tls_policy: the C{IPolicyForHTTPS} of our own agent (default:
        the system's trusted CAs, hostname checked).
    @param window: requests in flight at most, as the outbox keeps to;
        also the persistent connections kept to the receiver.
    @param timeout: seconds from sending to an answer, connection included.
    """

    channel = "webhook"
    log = Logger()

    def __init__(
        self, reactor, url, secret, *, clock=None, http_client=None, agent=None, tls_policy=None,
        window=4, timeout=30.0, allow_http=False,
    ):
        if not isinstance(secret, bytes) or not secret:
            raise ValueError("the webhook secret must be non-empty bytes")
        parsed = URL.from_text(url)
        if parsed.scheme != "https" and not (allow_http and parsed.scheme == "http"):
            raise ValueError(f"webhook URL must be https: {url}")
        if not parsed.host:
            raise ValueError(f"webhook URL has no host: {url}")
        if window < 1:
            raise ValueError("window must be at least 1")
        self.reactor = reactor
        self.clock = clock or reactor
        self.url = url
        self.window = window
        self.timeout = timeout
        self._secret = secret
        self._tls_policy = tls_policy
        self._client = http_client
        if self._client is None and agent is not None:
            self._client = HTTPClient(agent)
        # Our own agent and pool, made at each start, closed at each stop.
        self._own_client = self._client is None
        self._pool = None
        self._in_flight = {}

    def set_receipt_handler(self, handler):
        # A 2xx is the receiver's last word: no delivery reports.
        pass

    def startService(self):
        super().startService()
        if self._own_client:
            self._pool = HTTPConnectionPool(self.reactor, persistent=True)
            self._pool.maxPersistentPerHost = self.window
            agent = Agent(self.reactor, contextFactory=self._tls_policy or BrowserLikePolicyForHTTPS(), pool=self._pool)
            self._client = HTTPClient(agent)

    def stopService(self):
        """
        Fail every request in flight with L{TemporaryFailure} (the outbox
        sends it again), and close the connections; fires once closed.
        """
        super().stopService()
        for attempt, cut in list(self._in_flight.items()):
            cut.append("the webhook sender stopped before the receiver answered")
            attempt.cancel()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            return pool.closeCachedConnections()
        return None

    def send(self, message):
        try:
            if not self.running:
                raise TemporaryFailure("the webhook sender is not running")
            body = message.body.encode("utf-8")
            try:
                json.loads(body)
            except ValueError as e:
                raise PermanentFailure(f"the webhook body is not JSON: {e}")
            timestamp = str(int(self.clock.seconds()))
            headers = {
                b"Content-Type": [b"application/json"],
                b"User-Agent": [USER_AGENT],
                b"X-Callcenter-Id": [_header_value(message.idempotency_key or f"message-{message.message_id}", "id")],
                b"X-Callcenter-Message-Id": [str(message.message_id).encode("ascii")],
                b"X-Callcenter-Subscriber": [_header_value(message.address, "subscriber id")],
                b"X-Callcenter-Timestamp": [timestamp.encode("ascii")],
                b"X-Callcenter-Signature": [
                    f"{SIGNATURE_SCHEME}={signature(self._secret, timestamp, body)}".encode("ascii")
                ],
            }
        except (TemporaryFailure, PermanentFailure) as e:
            failed = Deferred()
            failed.errback(e)
            return failed
        attempt = Deferred.fromCoroutine(self._post(body, headers))
        # Why it was cut short, if it was: Twisted's HTTP client reports a
        # cancelled request as a failed one, so we keep the reason.
        cut = []

        def expire():
            cut.append(f"no answer from the webhook within {self.timeout} s")
            attempt.cancel()

        timer = self.clock.callLater(self.timeout, expire)
        self._in_flight[attempt] = cut

        def settle(result):
            del self._in_flight[attempt]
            if timer.active():
                timer.cancel()
            return result

        return attempt.addBoth(settle).addErrback(self._failed, message, cut)

    async def _post(self, body, headers):
        response = await self._client.request(
            "POST", self.url, data=body, headers=headers, allow_redirects=False, unbuffered=True
        )
        reader = _Body()
        response.deliverBody(reader)
        code = response.code
        if 200 <= code < 300:
            # Delivered, whatever happens to the body: it is read to its
            # end only so that the connection can take the next request.
            try:
                await reader.done
            except CancelledError:
                pass
            return Accepted(detail=f"HTTP {code}")
        excerpt = await reader.done
        reason = f"webhook answered HTTP {code}: {excerpt.strip()}".rstrip(": ")
        if code in (408, 429) or code >= 500:
            asked = response.headers.getRawHeaders(b"retry-after")
            raise TemporaryFailure(reason, retry_after=retry_after_seconds(asked, self.clock.seconds()))
        raise PermanentFailure(reason)

    def _failed(self, failure, message, cut):
        error = failure.value
        if cut:
            raise TemporaryFailure(cut[0])
        if isinstance(error, (TemporaryFailure, PermanentFailure)):
            return failure
        if isinstance(error, CancelledError):
            raise TemporaryFailure("the webhook request was cancelled")
        # Connection refused or reset, DNS, TLS (an untrusted certificate): all worth another try.
        reason = _describe(error)
        self.log.info("webhook request for message {id} failed: {reason}", id=message.message_id, reason=reason)
        raise TemporaryFailure(f"webhook request failed: {reason}")


def _describe(error):
    # ResponseFailed and its kin hold the Failures that caused them.
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(f"{r.type.__name__}: {r.getErrorMessage()}" for r in reasons)
    return f"{type(error).__name__}: {error}"
