"""
RADIUS over UDP: the authentication (1812) and accounting (1813)
listeners.  Datagrams in, datagrams out; what to answer is decided behind
L{IAccessPolicy} and L{IAccountingSink}.

Every datagram ends in one counted outcome.  In order of the checks:

 - from no configured client: dropped, never answered (RFC 2865 §3);
 - over its client's rate limit: dropped;
 - shorter than a header, a Length field out of range (RFC 2865 §3: 20 to
   4096, at most the datagram), a code this port does not serve, an
   attribute that does not parse: dropped;
 - a retransmission (RFC 5080 §2.2.2): answered from the duplicate cache,
   or dropped while the original is being decided;
 - a Message-Authenticator (RFC 2869 §5.14, RFC 3579 §3.2) that does not
   match, or missing where the client requires one (the default, and
   always for Status-Server, RFC 5997 §3), or an Accounting-Request whose
   Request Authenticator does not match (RFC 2866 §3): dropped;
 - then the policy or the accounting store, and the answer, signed with
   Message-Authenticator as its first attribute (the BlastRADIUS
   mitigation, CVE-2024-3596) and Proxy-State copied in order (RFC 2865
   §5.33).  If the policy or the store fails there is no answer: the NAS
   retries.

Drops are logged, at most a few lines per kind every ten seconds.

pyrad does the wire format: L{pyrad.packet.Packet} splits the attributes,
checks the Message-Authenticator and Request Authenticator, and encodes
replies (signed by L{signed_reply}: byte for byte what pyrad's
C{ReplyPacket} makes, for half its cost).  The hot path reads attributes
by code, the raw interface pyrad documents, rather than by name: the name
machinery costs more than the rest of a request together.  The dictionary
(read once) names the enumerated values and encodes the policy's extra
reply attributes.
"""

import hashlib
import hmac
import socket
import struct

from pyrad import packet as radius
from pyrad import tools
from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from callcenter.radius import metrics as outcomes
from callcenter.radius.dictionary import load_dictionary
from callcenter.radius.duplicates import PENDING, DuplicateCache
from callcenter.radius.limits import ClientRateLimiter, LogThrottle
from callcenter.radius.metrics import RadiusMetrics
from callcenter.radius.model import AccessDecision, AccessRequest, AccountingRecord

# Attribute codes read on the packet path (RFC 2865 §5, RFC 2866 §5,
# RFC 2869 §5, RFC 3162 §2).
USER_NAME = 1
USER_PASSWORD = 2
CHAP_PASSWORD = 3
NAS_IP_ADDRESS = 4
NAS_PORT = 5
FRAMED_IP_ADDRESS = 8
REPLY_MESSAGE = 18
SESSION_TIMEOUT = 27
IDLE_TIMEOUT = 28
CALLING_STATION_ID = 31
NAS_IDENTIFIER = 32
ACCT_STATUS_TYPE = 40
ACCT_DELAY_TIME = 41
ACCT_INPUT_OCTETS = 42
ACCT_OUTPUT_OCTETS = 43
ACCT_SESSION_ID = 44
ACCT_SESSION_TIME = 46
ACCT_INPUT_PACKETS = 47
ACCT_OUTPUT_PACKETS = 48
ACCT_TERMINATE_CAUSE = 49
ACCT_INPUT_GIGAWORDS = 52
ACCT_OUTPUT_GIGAWORDS = 53
EVENT_TIMESTAMP = 55
CHAP_CHALLENGE = 60
MESSAGE_AUTHENTICATOR = 80
NAS_IPV6_ADDRESS = 95

HEADER_LENGTH = 20
MAX_LENGTH = 4096  # RFC 2865 §3
MAX_TEXT = 253  # octets in one attribute's value (RFC 2865 §5)
ZERO_AUTHENTICATOR = bytes(16)
WRONG_SIGNATURE = "Message-Authenticator does not match (wrong secret?)"

# Several MiB: a burst from a NAS rebooting its thousands of sessions must
# queue in the kernel, not be dropped before we read it.
RECEIVE_BUFFER = 8 * 1024 * 1024

# A Packet is a dict of attribute code -> raw values (pyrad's raw
# interface); reading it as a dict skips pyrad's per-call type checks.
_raw = dict.get

_md5 = hashlib.md5


def reveal_password(secret, authenticator, hidden):
    """
    The User-Password of RFC 2865 §5.2, as bytes.  pyrad's C{PwDecrypt}
    returns text and drops octets that are not UTF-8, which would turn a
    password typed in GBK on a Chinese NAS into a different one.

    @raise ValueError: not 16 to 128 octets in blocks of 16.
    """
    size = len(hidden)
    if size < 16 or size > 128 or size % 16:
        raise ValueError(f"User-Password of {size} octets (RFC 2865 §5.2: 16 to 128, in blocks of 16)")
    plain = bytearray()
    last = authenticator
    for start in range(0, size, 16):
        block = hidden[start:start + 16]
        pad = _md5(secret + last).digest()
        plain += (int.from_bytes(block, "big") ^ int.from_bytes(pad, "big")).to_bytes(16, "big")
        last = block
    return bytes(plain).rstrip(b"\x00")


def signed_reply(reply, request_code):
    """
    The datagram of C{reply} (made by C{CreateReply}), Message-Authenticator
    first, as C{reply.ReplyPacket()} makes it, for half the cost: pyrad
    encodes every attribute twice to sign (once for the HMAC, once for the
    datagram); here pyrad encodes once and the two digests are computed over
    its bytes.  Verifying what NASes send stays pyrad's own code; the tests
    check this against pyrad's C{ReplyPacket} byte for byte.
    """
    request_authenticator = reply.authenticator
    reply.add_message_authenticator()  # first, zeroed: RFC 3579 §3.2 signs it so
    reply.message_authenticator = False  # encode once, sign below
    data = reply.ReplyPacket()
    head = data[:4]
    if reply.code == radius.AccountingResponse and request_code != radius.StatusServer:
        vector = ZERO_AUTHENTICATOR  # as for the Accounting-Request it answers (RFC 2866 §3)
    else:
        vector = request_authenticator  # RFC 3579 §3.2, RFC 5997 §3
    attributes = data[HEADER_LENGTH:]
    signature = hmac.digest(reply.secret, head + vector + attributes, "md5")
    attributes = attributes[:2] + signature + attributes[18:]
    # RFC 2865 §3: the Response Authenticator covers the signed attributes.
    return head + _md5(head + request_authenticator + attributes + reply.secret).digest() + attributes


def split_text(text, limit=MAX_TEXT):
    """
    C{text} in UTF-8, cut into values of at most C{limit} octets, never
    inside a character (RFC 2865 §5.18: the NAS shows them in order).
    """
    data = text.encode("utf-8")
    pieces = []
    while len(data) > limit:
        cut = limit
        while data[cut] & 0xC0 == 0x80:  # a continuation octet: back to the character's start
            cut -= 1
        pieces.append(data[:cut])
        data = data[cut:]
    pieces.append(data)
    return pieces


def _attributes_fit(data, length):
    """RFC 2865 §5: each attribute's Length is at least 2 and ends within the packet."""
    position = HEADER_LENGTH
    while position < length:
        if position + 2 > length:
            return False
        size = data[position + 1]
        if size < 2:
            return False
        position += size
    return position == length


def _text(values):
    return None if values is None else values[0].decode("utf-8", "replace")


def _integer(values):
    return None if values is None else tools.DecodeInteger(values[0])


def _address(values):
    """An ipaddr value (RFC 8044 §3.8).  inet_ntoa: pyrad's decoder goes through ipaddress, 5x slower."""
    if values is None:
        return None
    value = values[0]
    if len(value) != 4:
        raise ValueError(f"an IPv4 address of {len(value)} octets")
    return socket.inet_ntoa(value)


def _nas_address(pkt):
    nas_ip = _raw(pkt, NAS_IP_ADDRESS)
    if nas_ip is not None:
        return _address(nas_ip)
    nas_ipv6 = _raw(pkt, NAS_IPV6_ADDRESS)
    return None if nas_ipv6 is None else tools.DecodeIPv6Address(nas_ipv6[0])


class _RadiusListener(DatagramProtocol):
    """What both ports share: clients, limits, the duplicate cache, checks, sending."""

    log = Logger()
    listener = None  # the metrics label
    packet_class = None
    request_code = None  # what this port answers, Status-Server aside
    failed_outcome = None  # the outcome when the policy or sink fails
    asked = None  # what failed, for the log
    codes = frozenset()

    def __init__(self, clients, clock, metrics=None, dictionary=None, duplicates=None, limiter=None):
        """
        @param clients: an L{IRadiusClients}.
        @param clock: an L{IReactorTime} (the reactor; a Clock in tests).
        @param metrics: a L{RadiusMetrics}, on the server's registry; both
            listeners may share one.
        @param dictionary: a pyrad Dictionary (L{load_dictionary}); read
            from C{etc/radius/dictionary} when not given.
        @param duplicates: a L{DuplicateCache} (by default 30 s, 131072
            requests).
        @param limiter: a L{ClientRateLimiter}; each listener has its own by
            default, so a client's rate applies per port.
        """
        self._clients = clients
        self._clock = clock
        self.metrics = RadiusMetrics() if metrics is None else metrics
        self.dictionary = load_dictionary() if dictionary is None else dictionary
        self.duplicates = DuplicateCache(clock) if duplicates is None else duplicates
        self._limiter = ClientRateLimiter(clock) if limiter is None else limiter
        self._log_throttle = LogThrottle(clock)
        # One packet decoded into at a time: everything a request needs later
        # is copied out before the policy is asked.
        self._packet = self.packet_class(secret=b"")

    def startProtocol(self):
        sock = getattr(self.transport, "socket", None)
        if sock is None:
            return
        for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if option is None:
                continue
            try:
                # FORCE goes past net.core.rmem_max where we may (root, CAP_NET_ADMIN).
                sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER)
                break
            except OSError:
                continue
        self.log.info(
            "RADIUS {listener} receive buffer {size} octets",
            listener=self.listener,
            size=sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        )

    def datagramReceived(self, data, address):
        try:
            self._received(data, address)
        except Exception:
            # A bug must cost one datagram, never the listener.
            self.metrics.count(self.listener, "", outcomes.ERROR)
            if self._log_throttle.admit(outcomes.ERROR) is not None:
                self.log.failure(
                    "RADIUS {listener}: datagram from {peer} not handled", listener=self.listener, peer=address[0]
                )

    def _received(self, data, address):
        host = address[0]
        client = self._clients.client_for(host)
        if client is None:
            self._drop("", outcomes.UNKNOWN_CLIENT, host, "not a configured client")
            return
        if not self._limiter.admit(client):
            self._drop(client.name, outcomes.RATE_LIMITED, host, "over its rate limit")
            return
        size = len(data)
        if size < HEADER_LENGTH:
            self._drop(client.name, outcomes.MALFORMED, host, f"{size} octets, shorter than a header")
            return
        if data[0] not in self.codes:
            self._drop(client.name, outcomes.UNKNOWN_CODE, host, f"code {data[0]} is not served on this port")
            return
        length = (data[2] << 8) | data[3]
        if length < HEADER_LENGTH or length > size or length > MAX_LENGTH:
            self._drop(client.name, outcomes.MALFORMED, host, f"Length field {length} in a datagram of {size} octets")
            return
        if length < size:
            data = data[:length]  # RFC 2865 §3: octets past Length are padding
        if not _attributes_fit(data, length):
            # pyrad would keep an attribute running past Length, cut short.
            self._drop(client.name, outcomes.MALFORMED, host, "an attribute's length does not fit the packet")
            return
        # RFC 5080 §2.2.2: a retransmission has the same source, Identifier
        # and Request Authenticator; the header holds the last two (and the
        # Code and Length, the same in a retransmission).
        key = (host, address[1], data[:HEADER_LENGTH])
        cached = self.duplicates.get(key)
        if cached is not None:
            if cached is PENDING:
                self.metrics.count(self.listener, client.name, outcomes.DUPLICATE_IN_PROGRESS)
            else:
                self._write(cached, address, client.name)
                self.metrics.count(self.listener, client.name, outcomes.DUPLICATE_ANSWERED)
            return
        pkt = self._packet
        pkt.secret = client.secret
        pkt.message_authenticator = None
        try:
            pkt.DecodePacket(data)
        except radius.PacketError as e:
            self._drop(client.name, outcomes.MALFORMED, host, str(e))
            return
        self._request(client, pkt, key, address)

    def _request(self, client, pkt, key, address):
        if pkt.code == radius.StatusServer:
            self._status(client, pkt, address)
            return
        refused = self._refused(client, pkt)
        if refused is not None:
            outcome, reason = refused
            self._drop(client.name, outcome, address[0], reason)
            return
        try:
            question = self._question(client, pkt)
        except (ValueError, struct.error, radius.PacketError) as e:
            self._drop(client.name, outcomes.MALFORMED, address[0], str(e))
            return
        # Made now, while pkt holds this request: it takes the Identifier,
        # Request Authenticator and Proxy-State (RFC 2865 §5.33).
        reply = pkt.CreateReply()
        self.duplicates.begin(key)
        try:
            d = self._ask(question)
        except Exception:
            d = defer.fail()
        d.addCallbacks(
            self._respond,
            self._failed,
            callbackArgs=(reply, key, address, client.name),
            errbackArgs=(key, address, client.name, self.failed_outcome, self.asked),
        )

    def _refused(self, client, pkt):
        """None if C{pkt} is authentic, else (the outcome, why) to drop it."""
        raise NotImplementedError

    def _question(self, client, pkt):
        """What to ask of the policy or the sink (raising ValueError if malformed)."""
        raise NotImplementedError

    def _ask(self, question):
        """A Deferred firing with what to answer."""
        raise NotImplementedError

    def _fill(self, reply, answer):
        """Put C{answer} in C{reply}; return the outcome to count."""
        raise NotImplementedError

    def _respond(self, answer, reply, key, address, name):
        try:
            outcome = self._fill(reply, answer)
            data = signed_reply(reply, self.request_code)
        except Exception:
            self._failed(Failure(), key, address, name, outcomes.ERROR, "answering")
            return
        self.duplicates.complete(key, data)
        self._write(data, address, name)
        self.metrics.count(self.listener, name, outcome)

    def _message_authenticator(self, pkt):
        """True when present and right, False when wrong, None when absent."""
        values = _raw(pkt, MESSAGE_AUTHENTICATOR)
        if values is None:
            return None
        if len(values) != 1 or len(values[0]) != 16:
            return False
        pkt.message_authenticator = True
        return pkt.verify_message_authenticator()

    def _status(self, client, pkt, address):
        """Status-Server (RFC 5997 §3): answered at once, never cached, only if signed."""
        valid = self._message_authenticator(pkt)
        if valid is None:
            self._drop(
                client.name, outcomes.MISSING_MESSAGE_AUTHENTICATOR, address[0], "Status-Server without Message-Authenticator"
            )
        elif not valid:
            self._drop(client.name, outcomes.BAD_AUTHENTICATOR, address[0], WRONG_SIGNATURE)
        else:
            self._write(signed_reply(pkt.CreateReply(), radius.StatusServer), address, client.name)
            self.metrics.count(self.listener, client.name, outcomes.STATUS)

    def _write(self, data, address, name):
        transport = self.transport
        if transport is None:
            return
        try:
            transport.write(data, address)
        except OSError as e:
            self._drop(name, outcomes.SEND_FAILED, address[0], f"cannot send the answer: {e}")

    def _failed(self, failure, key, address, name, outcome, what):
        """The request got no answer: the NAS retries, and the retry is a new request."""
        self.duplicates.forget(key)
        self.metrics.count(self.listener, name, outcome)
        suppressed = self._log_throttle.admit(outcome)
        if suppressed is not None:
            self.log.failure(
                "RADIUS {listener}: {what} failed for {client} ({peer}); not answered, the NAS will retry"
                " ({suppressed} similar not logged)",
                failure,
                listener=self.listener,
                what=what,
                client=name,
                peer=address[0],
                suppressed=suppressed,
            )

    def _drop(self, name, outcome, peer, reason):
        self.metrics.count(self.listener, name, outcome)
        suppressed = self._log_throttle.admit(outcome)
        if suppressed is not None:
            self.log.warn(
                "RADIUS {listener}: dropped a datagram from {peer} ({client}): {reason}"
                " ({suppressed} similar not logged)",
                listener=self.listener,
                peer=peer,
                client=name or "unknown client",
                reason=reason,
                suppressed=suppressed,
            )


class AuthenticationProtocol(_RadiusListener):
    """
    Access-Requests (PAP or CHAP) decided by an L{IAccessPolicy}, and
    Status-Server; on port 1812.
    """

    listener = "auth"
    packet_class = radius.AuthPacket
    request_code = radius.AccessRequest
    failed_outcome = outcomes.POLICY_FAILED
    asked = "the access policy"
    codes = frozenset({radius.AccessRequest, radius.StatusServer})

    def __init__(self, clients, policy, clock, **options):
        """
        @param policy: an L{IAccessPolicy}.
        @param options: see L{_RadiusListener.__init__}.
        """
        super().__init__(clients, clock, **options)
        self._policy = policy

    def _refused(self, client, pkt):
        valid = self._message_authenticator(pkt)
        if valid is False:
            return outcomes.BAD_AUTHENTICATOR, WRONG_SIGNATURE
        if valid is None and client.require_message_authenticator:
            return outcomes.MISSING_MESSAGE_AUTHENTICATOR, "Access-Request without Message-Authenticator"
        return None

    def _question(self, client, pkt):
        """The L{AccessRequest}, or the reason to reject it without asking the policy."""
        user_name = _raw(pkt, USER_NAME)
        hidden = _raw(pkt, USER_PASSWORD)
        chap = _raw(pkt, CHAP_PASSWORD)
        if user_name is None:
            return "bad_password"
        if (hidden is None) == (chap is None):
            return "method_not_allowed"  # neither PAP nor CHAP (EAP is not served), or both
        user_name = user_name[0].decode("utf-8", "replace")
        nas_ip = _nas_address(pkt)
        nas_identifier = _text(_raw(pkt, NAS_IDENTIFIER))
        nas_port = _integer(_raw(pkt, NAS_PORT))
        calling_station_id = _text(_raw(pkt, CALLING_STATION_ID))
        if hidden is not None:
            return AccessRequest(
                client.name, user_name, "pap",
                password=reveal_password(client.secret, pkt.authenticator, hidden[0]),
                nas_ip=nas_ip, nas_identifier=nas_identifier, nas_port=nas_port,
                calling_station_id=calling_station_id,
            )
        response = chap[0]
        if len(response) != 17:
            raise ValueError(f"CHAP-Password of {len(response)} octets (RFC 2865 §5.3: 17)")
        challenge = _raw(pkt, CHAP_CHALLENGE)
        return AccessRequest(
            client.name, user_name, "chap",
            chap_id=response[0],
            # RFC 2865 §2.2: without CHAP-Challenge the Request Authenticator is the challenge.
            chap_challenge=pkt.authenticator if challenge is None else challenge[0],
            chap_response=response[1:],
            nas_ip=nas_ip, nas_identifier=nas_identifier, nas_port=nas_port,
            calling_station_id=calling_station_id,
        )

    def _ask(self, question):
        if isinstance(question, str):  # a reason to reject, found in the packet
            return defer.succeed(AccessDecision.reject(question))
        return self._policy.authenticate(question)

    def _fill(self, reply, decision):
        if decision.accepted:
            reply.code = radius.AccessAccept
            if decision.session_timeout is not None:
                reply[SESSION_TIMEOUT] = [tools.EncodeInteger(decision.session_timeout)]
            if decision.idle_timeout is not None:
                reply[IDLE_TIMEOUT] = [tools.EncodeInteger(decision.idle_timeout)]
            outcome = outcomes.ACCEPT
        else:
            reply.code = radius.AccessReject
            outcome = outcomes.REJECT
        if decision.reply_message:
            reply[REPLY_MESSAGE] = split_text(decision.reply_message)
        if decision.attributes:
            reply.dict = self.dictionary
            for attribute, value in decision.attributes.items():
                reply.AddAttribute(attribute, value)
        return outcome


class AccountingProtocol(_RadiusListener):
    """
    Accounting-Requests kept by an L{IAccountingSink} and acknowledged once
    it has them, and Status-Server; on port 1813.
    """

    listener = "acct"
    packet_class = radius.AcctPacket
    request_code = radius.AccountingRequest
    failed_outcome = outcomes.SINK_FAILED
    asked = "keeping the accounting record"
    codes = frozenset({radius.AccountingRequest, radius.StatusServer})

    def __init__(self, clients, sink, clock, **options):
        """
        @param sink: an L{IAccountingSink}.
        @param options: see L{_RadiusListener.__init__}.
        """
        super().__init__(clients, clock, **options)
        self._sink = sink
        self._status_types = self.dictionary.attributes["Acct-Status-Type"].values
        self._terminate_causes = self.dictionary.attributes["Acct-Terminate-Cause"].values

    def _refused(self, client, pkt):
        # RFC 2866 §3: the Request Authenticator is an MD5 over the packet and the secret.
        if not pkt.VerifyAcctRequest() or self._message_authenticator(pkt) is False:
            return outcomes.BAD_AUTHENTICATOR, "Request Authenticator does not match (wrong secret?)"
        return None

    def _question(self, client, pkt):
        status = _raw(pkt, ACCT_STATUS_TYPE)
        if status is None:
            raise ValueError("no Acct-Status-Type (RFC 2866 §5.1)")
        cause = _raw(pkt, ACCT_TERMINATE_CAUSE)
        if cause is not None:
            cause = self._named(self._terminate_causes, cause[0])
        event_time = _integer(_raw(pkt, EVENT_TIMESTAMP))
        delay = _integer(_raw(pkt, ACCT_DELAY_TIME))
        if event_time is None and delay is not None:
            event_time = self._clock.seconds()
        if event_time is not None and delay is not None:
            # RFC 2866 §5.2: how long the NAS has been trying to send this.
            event_time -= delay
        return AccountingRecord(
            client=client.name,
            status_type=self._named(self._status_types, status[0]),
            session_id=_text(_raw(pkt, ACCT_SESSION_ID)),
            user_name=_text(_raw(pkt, USER_NAME)),
            nas_ip=_nas_address(pkt),
            nas_identifier=_text(_raw(pkt, NAS_IDENTIFIER)),
            nas_port=_integer(_raw(pkt, NAS_PORT)),
            framed_ip=_address(_raw(pkt, FRAMED_IP_ADDRESS)),
            calling_station_id=_text(_raw(pkt, CALLING_STATION_ID)),
            session_time=_integer(_raw(pkt, ACCT_SESSION_TIME)),
            input_octets=_octets(_raw(pkt, ACCT_INPUT_OCTETS), _raw(pkt, ACCT_INPUT_GIGAWORDS)),
            output_octets=_octets(_raw(pkt, ACCT_OUTPUT_OCTETS), _raw(pkt, ACCT_OUTPUT_GIGAWORDS)),
            input_packets=_integer(_raw(pkt, ACCT_INPUT_PACKETS)),
            output_packets=_integer(_raw(pkt, ACCT_OUTPUT_PACKETS)),
            terminate_cause=cause,
            event_time=None if event_time is None else float(event_time),
        )

    def _ask(self, question):
        return self._sink.record(question)

    def _fill(self, reply, answer):
        return outcomes.ACCOUNTED

    @staticmethod
    def _named(values, raw):
        """The dictionary's name for an enumerated value, else its number as text."""
        if values.HasBackward(raw):
            return values.GetBackward(raw)
        return str(tools.DecodeInteger(raw))


def _octets(low, gigawords):
    """RFC 2869 §5.1-2: Gigawords counts the times the 32-bit octet counter wrapped."""
    if low is None and gigawords is None:
        return None
    total = 0 if low is None else tools.DecodeInteger(low[0])
    if gigawords is not None:
        total += tools.DecodeInteger(gigawords[0]) << 32
    return total
