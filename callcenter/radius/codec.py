"""
The few pieces of the RADIUS wire format on the Access-Request and
Accounting-Request paths, made for speed: splitting a datagram's
attributes, the shared secret's cryptography (Message-Authenticator,
User-Password, Request and Response Authenticators), and the datagram of
an answer.

pyrad stays the codec of everything else (the dictionary, vendor and TLV
attributes, Status-Server, Disconnect); its generic decoder and encoder
cost more than the rest of a request together.  The tests check what is
made here against pyrad, byte for byte.
"""

import hashlib
import struct
from hmac import compare_digest

__all__ = [
    "ACCOUNTING_RESPONSE",
    "HEADER_LENGTH",
    "MAX_LENGTH",
    "MESSAGE_AUTHENTICATOR",
    "PROXY_STATE",
    "SharedSecret",
    "attribute",
    "integer_attribute",
    "split_attributes",
]

HEADER_LENGTH = 20
ACCOUNTING_RESPONSE = 5  # RFC 2866 §4.2
MAX_LENGTH = 4096  # RFC 2865 §3
PROXY_STATE = 33
MESSAGE_AUTHENTICATOR = 80

_md5 = hashlib.md5
# Message-Authenticator with its value zeroed, as it is signed (RFC 3579 §3.2).
_ZEROS = bytes(16)
_SIGNATURE_HEADER = bytes((MESSAGE_AUTHENTICATOR, 18))
_UNSIGNED = _SIGNATURE_HEADER + _ZEROS
_BLOCK = 64  # MD5's block, HMAC's key size (RFC 2104 §2)
_integer_attribute = struct.Struct("!BBI").pack
_header = struct.Struct("!BBH").pack


def split_attributes(data, length):
    """
    The attributes of a packet of C{length} octets (C{data} may run past
    it): a tuple of

     - {code: value of its first occurrence};
     - the Proxy-State attributes, whole (type and length included), in
       order, or None;
     - the offset of the first Message-Authenticator, or None;
     - how many Message-Authenticators there are.

    None when an attribute's Length is under 2 or runs past the packet
    (RFC 2865 §5): the packet is malformed.
    """
    values = {}
    proxy_states = None
    signature_at = None
    signatures = 0
    position = HEADER_LENGTH
    while position < length:
        if position + 2 > length:
            return None
        code = data[position]
        end = position + data[position + 1]
        if end < position + 2 or end > length:
            return None
        if code not in values:
            values[code] = data[position + 2:end]
        if code == PROXY_STATE:
            if proxy_states is None:
                proxy_states = []
            proxy_states.append(data[position:end])
        elif code == MESSAGE_AUTHENTICATOR:
            if signature_at is None:
                signature_at = position
            signatures += 1
        position = end
    return values, proxy_states, signature_at, signatures


def attribute(code, value):
    """One attribute (RFC 2865 §5); ValueError if C{value} is over 253 octets."""
    if len(value) > 253:
        raise ValueError(f"attribute {code}: {len(value)} octets, at most 253 fit")
    return bytes((code, len(value) + 2)) + value


def integer_attribute(code, value):
    """An integer attribute (RFC 8044 §3.1); struct.error if not 0 to 2**32 - 1."""
    return _integer_attribute(code, 6, value)


class SharedSecret:
    """
    A client's shared secret, with the MD5 states that start every digest
    keyed with it computed once: HMAC-MD5's inner and outer pads (RFC 2104
    §2), and MD5 over the secret, where each User-Password block's pad
    starts (RFC 2865 §5.2).  Each digest copies a state (0.1 µs here):
    hmac.digest sets its key up on every call, and costs 2 µs where
    this HMAC costs 0.8.
    """

    __slots__ = ("secret", "_inner", "_outer", "_secret_md5", "_acknowledgements")

    def __init__(self, secret):
        self.secret = secret
        key = _md5(secret).digest() if len(secret) > _BLOCK else secret  # RFC 2104 §2
        key = key.ljust(_BLOCK, b"\0")
        self._inner = _md5(bytes(octet ^ 0x36 for octet in key))
        self._outer = _md5(bytes(octet ^ 0x5C for octet in key))
        self._secret_md5 = _md5(secret)
        self._acknowledgements = {}  # Identifier -> a bare Accounting-Response's signed attribute

    def sign(self, message):
        """HMAC-MD5 of C{message} keyed with the secret (RFC 2104)."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def verify_request(self, data, length, signature_at):
        """
        Whether the Message-Authenticator at C{signature_at} (its Length
        already known to be 18) signs the first C{length} octets of
        C{data}, an Access-Request or Status-Server: HMAC-MD5 over the
        packet with the value zeroed (RFC 3579 §3.2).
        """
        value_at = signature_at + 2
        expected = self.sign(data[:value_at] + _ZEROS + data[value_at + 16:length])
        # hmac.compare_digest: the time taken must not tell how much matched.
        return compare_digest(expected, data[value_at:value_at + 16])

    def verify_accounting_request(self, data, length, signature_at=None):
        """
        Whether the first C{length} octets of C{data}, an
        Accounting-Request, are from a holder of the secret: the Request
        Authenticator is MD5 over the packet with 16 zero octets in its
        place, then the secret (RFC 2866 §3); and a Message-Authenticator
        at C{signature_at} (None: there is none; its Length already known
        to be 18) is HMAC-MD5 over the packet with both the Request
        Authenticator and its own value zeroed, as FreeRADIUS and pyrad
        sign it (the rule RFC 5176 §3.3 gives its requests).
        """
        attributes = data[HEADER_LENGTH:length]
        head = data[:4]
        expected = _md5(head + _ZEROS + attributes + self.secret).digest()
        if not compare_digest(expected, data[4:HEADER_LENGTH]):
            return False
        if signature_at is None:
            return True
        value_at = signature_at + 2
        signed = self.sign(head + _ZEROS + data[HEADER_LENGTH:value_at] + _ZEROS + data[value_at + 16:length])
        return compare_digest(signed, data[value_at:value_at + 16])

    def reveal_password(self, authenticator, hidden):
        """
        The User-Password of RFC 2865 §5.2, as bytes (NULs padding it
        removed); ValueError unless 16 to 128 octets in blocks of 16.
        """
        size = len(hidden)
        if size == 16:  # nearly every password: one block, no loop
            pad = self._secret_md5.copy()
            pad.update(authenticator)
            return _unmask(hidden, pad.digest()).rstrip(b"\0")
        if size < 16 or size > 128 or size % 16:
            raise ValueError(f"User-Password of {size} octets (RFC 2865 §5.2: 16 to 128, in blocks of 16)")
        blocks = []
        last = authenticator
        for start in range(0, size, 16):
            block = hidden[start:start + 16]
            pad = self._secret_md5.copy()
            pad.update(last)  # MD5(secret + the previous block, hidden)
            blocks.append(_unmask(block, pad.digest()))
            last = block
        return b"".join(blocks).rstrip(b"\0")

    def reply(self, code, request, attributes):
        """
        The datagram answering C{request} (an Access-Request or
        Status-Server as received) with C{code}: the request's Identifier,
        Message-Authenticator first (the BlastRADIUS mitigation,
        CVE-2024-3596; signed over the Request Authenticator, RFC 3579
        §3.2), then C{attributes} (encoded), and the Response Authenticator
        (RFC 2865 §3).  ValueError if it would be longer than 4096 octets.
        """
        length = HEADER_LENGTH + 18 + len(attributes)
        if length > MAX_LENGTH:
            raise ValueError(f"an answer of {length} octets (RFC 2865 §3: at most {MAX_LENGTH})")
        head = _header(code, request[1], length)
        authenticator = request[4:HEADER_LENGTH]
        signed = _SIGNATURE_HEADER + self.sign(head + authenticator + _UNSIGNED + attributes) + attributes
        return head + _md5(head + authenticator + signed + self.secret).digest() + signed

    def accounting_response(self, request, proxy_states):
        """
        The Accounting-Response to C{request} (an Accounting-Request as
        received): its Identifier, Message-Authenticator first, signed
        over 16 zero octets in place of the Request Authenticator (as
        FreeRADIUS signs it, and pyrad checks it), then C{proxy_states}
        (the request's Proxy-State attributes, whole, in order: RFC 2865
        §5.33), and the Response Authenticator over the Request
        Authenticator (RFC 2866 §3).  Without Proxy-State the signed
        attribute depends on the Identifier alone: made once for each.
        ValueError if it would be longer than 4096 octets.
        """
        identifier = request[1]
        length = HEADER_LENGTH + 18 + len(proxy_states)
        if length > MAX_LENGTH:
            raise ValueError(f"an answer of {length} octets (RFC 2865 §3: at most {MAX_LENGTH})")
        head = _header(ACCOUNTING_RESPONSE, identifier, length)
        if proxy_states:
            signed = _SIGNATURE_HEADER + self.sign(head + _ZEROS + _UNSIGNED + proxy_states) + proxy_states
        else:
            signed = self._acknowledgements.get(identifier)
            if signed is None:
                signed = self._acknowledgements[identifier] = _SIGNATURE_HEADER + self.sign(head + _ZEROS + _UNSIGNED)
        return head + _md5(head + request[4:HEADER_LENGTH] + signed + self.secret).digest() + signed


def _unmask(block, pad):
    """Two blocks of 16 octets XORed: as integers, a quarter of the cost octet by octet."""
    return (int.from_bytes(block, "big") ^ int.from_bytes(pad, "big")).to_bytes(16, "big")
