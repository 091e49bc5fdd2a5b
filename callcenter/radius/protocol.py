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

The Access-Request path is written for speed (about 20 µs of CPU for one
answered from the policy's memory, the kernel's receive and send
included, where pyrad's decoding and replies and a Deferred per request
took 50): L{callcenter.radius.codec} splits the attributes, checks the
Message-Authenticator, reveals User-Password and makes the answer with
the client's secret keyed once; the policy is asked first for a decision
from what it remembers (C{decide_now}), without a Deferred, and only then
through its Deferred; alike answers are encoded once; answers
leave by the socket's own C{sendto}.  So is the Accounting-Request path:
the codec splits the attributes, checks the Request Authenticator and
Message-Authenticator and makes the Accounting-Response, and a sink that
offers C{keep} is told of each record without a Deferred.  pyrad does the
rest of the wire format: the dictionary (enumerated values, the policy's
extra reply attributes) and Status-Server (replies signed by
L{signed_reply}: byte for byte what pyrad's C{ReplyPacket} makes, for half
its cost).  The tests check what the fast paths make against pyrad.
"""

import hashlib
import hmac
import socket

from pyrad import packet as radius
from pyrad import tools
from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from callcenter.radius import metrics as outcomes
from callcenter.radius.codec import (
    HEADER_LENGTH, MAX_LENGTH, MESSAGE_AUTHENTICATOR, SharedSecret, attribute, integer_attribute, split_attributes,
)
from callcenter.radius.dictionary import load_dictionary
from callcenter.radius.duplicates import PENDING, DuplicateCache
from callcenter.radius.limits import ClientRateLimiter, LogThrottle
from callcenter.radius.metrics import RadiusMetrics
from callcenter.radius.model import AccessDecision, AccessRequest, AccountingRecord
from callcenter.radius.mschap import VENDOR_SPECIFIC, read_ms_chap

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
NAS_IPV6_ADDRESS = 95

MAX_TEXT = 253  # octets in one attribute's value (RFC 2865 §5)
ZERO_AUTHENTICATOR = bytes(16)
WRONG_SIGNATURE = "Message-Authenticator does not match (wrong secret?)"
WRONG_REQUEST_AUTHENTICATOR = "Request Authenticator does not match (wrong secret?)"
# Answers kept encoded (see AuthenticationProtocol._encoding): a few
# hundred octets each; beyond this many, starting over costs one encoding
# per kind of answer.
MOST_ENCODED = 4096

# Several MiB: a burst from a NAS rebooting its thousands of sessions must
# queue in the kernel, not be dropped before we read it.
RECEIVE_BUFFER = 8 * 1024 * 1024

_md5 = hashlib.md5


def reveal_password(secret, authenticator, hidden):
    """
    The User-Password of RFC 2865 §5.2, as bytes.  pyrad's C{PwDecrypt}
    returns text and drops octets that are not UTF-8, which would turn a
    password typed in GBK on a Chinese NAS into a different one.

    @raise ValueError: not 16 to 128 octets in blocks of 16.
    """
    return SharedSecret(secret).reveal_password(authenticator, hidden)


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


# Attribute values, each the first of its kind or None.


def _text(value):
    return None if value is None else value.decode("utf-8", "replace")


def _integer(value):
    if value is None:
        return None
    if len(value) != 4:
        raise ValueError(f"an integer of {len(value)} octets")
    return int.from_bytes(value, "big")


def _address(value):
    """An ipaddr value (RFC 8044 §3.8).  inet_ntoa: pyrad's decoder goes through ipaddress, 5x slower."""
    if value is None:
        return None
    if len(value) != 4:
        raise ValueError(f"an IPv4 address of {len(value)} octets")
    return socket.inet_ntoa(value)


def _nas_address(nas_ip, nas_ipv6):
    if nas_ip is not None:
        return _address(nas_ip)
    return None if nas_ipv6 is None else tools.DecodeIPv6Address(nas_ipv6)


class _RadiusListener(DatagramProtocol):
    """What both ports share: clients, limits, the duplicate cache, checks, sending."""

    log = Logger()
    listener = None  # the metrics label
    packet_class = None
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
        self._secrets = {}  # a client's secret -> its SharedSecret
        # The transport listening on a socket, and that socket's sendto (see _write).
        self._port = self._sendto = None
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
        self._port, self._sendto = self.transport, sock.sendto
        self.log.info(
            "RADIUS {listener} receive buffer {size} octets",
            listener=self.listener,
            size=sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        )

    def stopProtocol(self):
        self._port = self._sendto = None

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
        attributes = split_attributes(data, length)
        if attributes is None:
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
        self._serve(client, data, attributes, key, address)

    def _serve(self, client, data, attributes, key, address):
        """Check and answer a well-formed datagram (the values of L{split_attributes} in C{attributes})."""
        raise NotImplementedError

    def _decoded(self, client, data, address):
        """C{data} decoded by pyrad, with the client's secret; None if pyrad finds it malformed (dropped)."""
        pkt = self._packet
        pkt.secret = client.secret
        pkt.message_authenticator = None
        try:
            pkt.DecodePacket(data)
        except radius.PacketError as e:
            self._drop(client.name, outcomes.MALFORMED, address[0], str(e))
            return None
        return pkt

    def _shared_secret(self, client):
        shared = self._secrets.get(client.secret)
        if shared is None:
            shared = self._secrets[client.secret] = SharedSecret(client.secret)
        return shared

    def _message_authenticator(self, pkt):
        """True when present and right, False when wrong, None when absent."""
        values = dict.get(pkt, MESSAGE_AUTHENTICATOR)
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
            if transport is self._port:
                # The socket's own sendto: the Port's write checks that the
                # address is an IP literal of the socket's family, on every
                # datagram, and ours are addresses datagrams came from.
                self._sendto(data, address)
            else:
                transport.write(data, address)
        except OSError as e:
            # The send buffer full (EAGAIN, ENOBUFS), an ICMP error from an
            # earlier datagram (ECONNREFUSED): the NAS retries.
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
    asked = "the access policy"
    codes = frozenset({radius.AccessRequest, radius.StatusServer})

    def __init__(self, clients, policy, clock, **options):
        """
        @param policy: an L{IAccessPolicy}.  If it has C{decide_now(request)}
            (the decision, or None if it cannot decide without waiting), that
            is asked first, and C{authenticate} only when it says None.
        @param options: see L{_RadiusListener.__init__}.
        """
        super().__init__(clients, clock, **options)
        self._policy = policy
        self._decide_now = getattr(policy, "decide_now", None)
        self._encoded = {}  # what a decision says -> (code, attributes, outcome)

    def _serve(self, client, data, attributes, key, address):
        values, proxy_states, signature_at, signatures = attributes
        if data[0] == radius.StatusServer:
            pkt = self._decoded(client, data, address)
            if pkt is not None:
                self._status(client, pkt, address)
            return
        secret = self._shared_secret(client)
        if signatures:
            if (
                signatures != 1
                or len(values[MESSAGE_AUTHENTICATOR]) != 16
                or not secret.verify_request(data, len(data), signature_at)
            ):
                self._drop(client.name, outcomes.BAD_AUTHENTICATOR, address[0], WRONG_SIGNATURE)
                return
        elif client.require_message_authenticator:
            self._drop(
                client.name, outcomes.MISSING_MESSAGE_AUTHENTICATOR, address[0],
                "Access-Request without Message-Authenticator",
            )
            return
        try:
            question = self._question(client, secret, data, values)
        except ValueError as e:
            self._drop(client.name, outcomes.MALFORMED, address[0], str(e))
            return
        # RFC 2865 §5.33: the answer carries the Proxy-States, in order.
        proxy = b"" if proxy_states is None else b"".join(proxy_states)
        if isinstance(question, str):  # a reason to reject, found in the packet
            decision = AccessDecision.reject(question)
        else:
            decision = None
            if self._decide_now is not None:
                try:
                    decision = self._decide_now(question)
                except Exception:
                    self._failed(Failure(), key, address, client.name, outcomes.POLICY_FAILED, self.asked)
                    return
            if decision is None:
                self.duplicates.begin(key)
                try:
                    d = self._policy.authenticate(question)
                except Exception:
                    d = defer.fail()
                d.addCallbacks(
                    self._answer,
                    self._failed,
                    callbackArgs=(secret, data, proxy, key, address, client.name),
                    errbackArgs=(key, address, client.name, outcomes.POLICY_FAILED, self.asked),
                )
                return
        self.duplicates.begin(key)
        self._answer(decision, secret, data, proxy, key, address, client.name)

    def _question(self, client, secret, data, values):
        """The L{AccessRequest}, or the reason to reject it without asking the policy."""
        user_name = values.get(USER_NAME)
        hidden = values.get(USER_PASSWORD)
        chap = values.get(CHAP_PASSWORD)
        if user_name is None:
            return "bad_password"
        ms_chap = None
        if hidden is None and chap is None and VENDOR_SPECIFIC in values:
            ms_chap = read_ms_chap(data)  # RFC 2548: in Microsoft's Vendor-Specific attributes
            if isinstance(ms_chap, str):
                return ms_chap
        if (hidden is None) == (chap is None) and ms_chap is None:
            return "method_not_allowed"  # neither PAP, CHAP nor MS-CHAP (EAP is not served), or both
        user_name = user_name.decode("utf-8", "replace")
        nas_ip = _nas_address(values.get(NAS_IP_ADDRESS), values.get(NAS_IPV6_ADDRESS))
        nas_identifier = _text(values.get(NAS_IDENTIFIER))
        nas_port = _integer(values.get(NAS_PORT))
        calling_station_id = _text(values.get(CALLING_STATION_ID))
        authenticator = data[4:HEADER_LENGTH]
        if hidden is not None:
            return AccessRequest(
                client.name, user_name, "pap",
                password=secret.reveal_password(authenticator, hidden),
                nas_ip=nas_ip, nas_identifier=nas_identifier, nas_port=nas_port,
                calling_station_id=calling_station_id,
            )
        if ms_chap is not None:
            return AccessRequest(
                client.name, user_name, nas_ip=nas_ip, nas_identifier=nas_identifier, nas_port=nas_port,
                calling_station_id=calling_station_id, **ms_chap,
            )
        if len(chap) != 17:
            raise ValueError(f"CHAP-Password of {len(chap)} octets (RFC 2865 §5.3: 17)")
        challenge = values.get(CHAP_CHALLENGE)
        return AccessRequest(
            client.name, user_name, "chap",
            chap_id=chap[0],
            # RFC 2865 §2.2: without CHAP-Challenge the Request Authenticator is the challenge.
            chap_challenge=authenticator if challenge is None else challenge,
            chap_response=chap[1:],
            nas_ip=nas_ip, nas_identifier=nas_identifier, nas_port=nas_port,
            calling_station_id=calling_station_id,
        )

    def _answer(self, decision, secret, request, proxy, key, address, name):
        try:
            code, attributes, outcome = self._encoding(decision)
            if decision.request_attributes is not None:  # this request's alone (MS-CHAP)
                attributes += decision.request_attributes(secret.secret, request[4:HEADER_LENGTH])
            data = secret.reply(code, request, proxy + attributes)
        except Exception:
            self._failed(Failure(), key, address, name, outcomes.ERROR, "answering")
            return
        self.duplicates.complete(key, data)
        self._write(data, address, name)
        self.metrics.count(self.listener, name, outcome)

    def _encoding(self, decision):
        """
        (code, attributes, outcome) of the answer to C{decision}, encoded
        once for all the decisions that say the same: the policy decides
        most requests alike (one decision per account until its state
        changes, one per reject reason and language).  Decisions with
        dictionary attributes are encoded every time (pyrad's encoder; rare).
        """
        if decision.attributes:
            return self._encode(decision)
        said = (decision.accepted, decision.session_timeout, decision.idle_timeout, decision.reply_message)
        encoding = self._encoded.get(said)
        if encoding is None:
            encoding = self._encode(decision)
            if len(self._encoded) >= MOST_ENCODED:
                self._encoded.clear()
            self._encoded[said] = encoding
        return encoding

    def _encode(self, decision):
        parts = []
        if decision.accepted:
            code, outcome = radius.AccessAccept, outcomes.ACCEPT
            if decision.session_timeout is not None:
                parts.append(integer_attribute(SESSION_TIMEOUT, decision.session_timeout))
            if decision.idle_timeout is not None:
                parts.append(integer_attribute(IDLE_TIMEOUT, decision.idle_timeout))
        else:
            code, outcome = radius.AccessReject, outcomes.REJECT
        if decision.reply_message:
            parts.extend(attribute(REPLY_MESSAGE, piece) for piece in split_text(decision.reply_message))
        if decision.attributes:
            # The dictionary's names and types, vendor attributes: pyrad's.
            carrier = radius.Packet(id=0, authenticator=ZERO_AUTHENTICATOR, dict=self.dictionary)
            for name, value in decision.attributes.items():
                carrier.AddAttribute(name, value)
            parts.append(carrier.ReplyPacket()[HEADER_LENGTH:])
        return code, b"".join(parts), outcome


class AccountingProtocol(_RadiusListener):
    """
    Accounting-Requests kept by an L{IAccountingSink} and acknowledged once
    it has them, and Status-Server; on port 1813.

    An Accounting-Request is read straight from the datagram: the
    attributes split by L{split_attributes}, the Request Authenticator and
    any Message-Authenticator checked and the Accounting-Response made by
    the client's L{SharedSecret}, before the record is handed over, so
    that answering is a write.  pyrad, which read them before, had no
    dictionary here (vendor and TLV attributes kept raw, never refused):
    this reads every datagram as it did, and the tests check its answers
    against pyrad's byte for byte.  Status-Server still goes through pyrad.  A sink with C{keep(record,
    done, context)} (L{AccountingSink.keep}) is given records that way,
    without a Deferred each; else through C{record}.
    """

    listener = "acct"
    packet_class = radius.AcctPacket
    asked = "keeping the accounting record"
    codes = frozenset({radius.AccountingRequest, radius.StatusServer})

    def __init__(self, clients, sink, clock, **options):
        """
        @param sink: an L{IAccountingSink}, with C{keep} or without.
        @param options: see L{_RadiusListener.__init__}.
        """
        super().__init__(clients, clock, **options)
        self._sink = sink
        self._keep = getattr(sink, "keep", None)
        attributes = self.dictionary.attributes
        # The dictionary's names of enumerated values, by their encoded value.
        self._status_types = attributes["Acct-Status-Type"].values.backward
        self._terminate_causes = attributes["Acct-Terminate-Cause"].values.backward

    def _serve(self, client, data, attributes, key, address):
        values, proxy_states, signature_at, signatures = attributes
        if data[0] == radius.StatusServer:
            pkt = self._decoded(client, data, address)
            if pkt is not None:
                self._status(client, pkt, address)
            return
        secret = self._shared_secret(client)
        if signatures and (signatures != 1 or len(values[MESSAGE_AUTHENTICATOR]) != 16):
            valid = False
        else:
            valid = secret.verify_accounting_request(data, len(data), signature_at)
        if not valid:
            self._drop(client.name, outcomes.BAD_AUTHENTICATOR, address[0], WRONG_REQUEST_AUTHENTICATOR)
            return
        try:
            record = self._record(client.name, values)
            # RFC 2865 §5.33: the answer carries the Proxy-States, in order.
            response = secret.accounting_response(data, b"" if proxy_states is None else b"".join(proxy_states))
        except ValueError as e:
            self._drop(client.name, outcomes.MALFORMED, address[0], str(e))
            return
        self._hand_over(record, response, key, address, client.name)

    def _hand_over(self, record, response, key, address, name):
        """C{record} to the sink; C{response} sent once the sink has it."""
        self.duplicates.begin(key)
        context = (response, key, address, name)
        try:
            if self._keep is not None:
                self._keep(record, self._kept, context)
                return
            d = self._sink.record(record)
        except Exception:
            self._kept(Failure(), context)
            return
        d.addBoth(self._kept, context)

    def _kept(self, outcome, context):
        response, key, address, name = context
        if isinstance(outcome, Failure):
            self._failed(outcome, key, address, name, outcomes.SINK_FAILED, self.asked)
            return
        self.duplicates.complete(key, response)
        self._write(response, address, name)
        self.metrics.count(self.listener, name, outcomes.ACCOUNTED)

    def _record(self, client, values):
        """The L{AccountingRecord} of an Accounting-Request's attributes ({code: first value})."""
        get = values.get
        status = get(ACCT_STATUS_TYPE)
        if status is None:
            raise ValueError("no Acct-Status-Type (RFC 2866 §5.1)")
        cause = get(ACCT_TERMINATE_CAUSE)
        if cause is not None:
            cause = _named(self._terminate_causes, cause)
        event_time = _integer(get(EVENT_TIMESTAMP))
        delay = _integer(get(ACCT_DELAY_TIME))
        if event_time is None and delay is not None:
            event_time = self._clock.seconds()
        if event_time is not None and delay is not None:
            # RFC 2866 §5.2: how long the NAS has been trying to send this.
            event_time -= delay
        return AccountingRecord(
            client=client,
            status_type=_named(self._status_types, status),
            session_id=_text(get(ACCT_SESSION_ID)),
            user_name=_text(get(USER_NAME)),
            nas_ip=_nas_address(get(NAS_IP_ADDRESS), get(NAS_IPV6_ADDRESS)),
            nas_identifier=_text(get(NAS_IDENTIFIER)),
            nas_port=_integer(get(NAS_PORT)),
            framed_ip=_address(get(FRAMED_IP_ADDRESS)),
            calling_station_id=_text(get(CALLING_STATION_ID)),
            session_time=_integer(get(ACCT_SESSION_TIME)),
            input_octets=_octets(get(ACCT_INPUT_OCTETS), get(ACCT_INPUT_GIGAWORDS)),
            output_octets=_octets(get(ACCT_OUTPUT_OCTETS), get(ACCT_OUTPUT_GIGAWORDS)),
            input_packets=_integer(get(ACCT_INPUT_PACKETS)),
            output_packets=_integer(get(ACCT_OUTPUT_PACKETS)),
            terminate_cause=cause,
            event_time=None if event_time is None else float(event_time),
        )


def _named(names, raw):
    """The dictionary's name for an enumerated value, else its number as text."""
    name = names.get(raw)
    return str(_integer(raw)) if name is None else name

def _octets(low, gigawords):
    """RFC 2869 §5.1-2: Gigawords counts the times the 32-bit octet counter wrapped."""
    if low is None and gigawords is None:
        return None
    total = 0 if low is None else _integer(low)
    if gigawords is not None:
        total += _integer(gigawords) << 32
    return total
