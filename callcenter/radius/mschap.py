"""
MS-CHAP over RADIUS: version 2 (RFC 2759) and version 1 (RFC 2433), in
Microsoft's Vendor-Specific attributes (RFC 2548), with the MPPE keys a
NAS needs to encrypt the link (RFC 3079, RFC 2548 §2.4).

What the server needs.  Both versions answer a challenge with DES under
the NT hash of the password, MD4(UTF-16LE(password)): the server must
hold the NT hash, which is a password equivalent (whoever has it passes
MS-CHAP as the user, and it is unsalted MD4, quick to guess from).  It is
derived, for each request, from the password sealed for CHAP
(L{callcenter.radius.chap}): an account allowed CHAP is allowed MS-CHAP,
and MS-CHAP keeps nothing more at rest.  See L{callcenter.radius.chap}
for the seal and the key, and README.rst for the trade-off.

What this module does, without a packet or a store:

 - the RFC 2759 / RFC 3079 functions, named as the RFCs name them, in
   snake case; their §9.2 and §3.5.3 test vectors are in the tests;
 - L{read_ms_chap}: the MS-CHAP fields of an Access-Request;
 - L{ms_chap_matches}: whether its response proves the password;
 - L{ms_chap_success} and L{ms_chap_error}: the attributes of the answer,
   made per request (they name the response's Ident, and the MPPE keys
   are hidden with the client's secret and the Request Authenticator), as
   the callables that L{callcenter.radius.model.AccessDecision} carries in
   C{request_attributes}.

MD4 and DES are pycryptodome's: OpenSSL 3 drops MD4 from hashlib, and the
C{cryptography} package offers no MD4 and keeps DES among its "decrepit"
ciphers.
"""

import hashlib
import hmac
import os
import struct

from Crypto.Cipher import DES
from Crypto.Hash import MD4

__all__ = [
    "MS_CHAP_ERRORS",
    "MSCHAP",
    "MSCHAPV2",
    "challenge_hash",
    "challenge_response",
    "generate_authenticator_response",
    "generate_nt_response",
    "get_asymmetric_start_key",
    "get_master_key",
    "hash_nt_password_hash",
    "hide_mppe_key",
    "ms_chap_error",
    "ms_chap_matches",
    "ms_chap_success",
    "nt_password_hash",
    "read_ms_chap",
    "reveal_mppe_key",
]

MSCHAP = "mschap"  # version 1, RFC 2433
MSCHAPV2 = "mschapv2"  # RFC 2759

VENDOR_SPECIFIC = 26
MICROSOFT = 311
_MICROSOFT_ID = MICROSOFT.to_bytes(4, "big")
# Microsoft's vendor types (RFC 2548 §2).
MS_CHAP_RESPONSE = 1
MS_CHAP_ERROR = 2
MS_MPPE_ENCRYPTION_POLICY = 7
MS_MPPE_ENCRYPTION_TYPES = 8
MS_CHAP_CHALLENGE = 11
MS_CHAP_MPPE_KEYS = 12
MS_MPPE_SEND_KEY = 16
MS_MPPE_RECV_KEY = 17
MS_CHAP2_RESPONSE = 25
MS_CHAP2_SUCCESS = 26

# RFC 2548 §2.4.4-5, as FreeRADIUS's rlm_mschap sends them by default:
# encryption allowed (not required), RC4 with 40 or 128-bit keys.
ENCRYPTION_ALLOWED = 1
RC4_40_OR_128 = 6

# MS-CHAP-Error codes (RFC 2759 §6, RFC 2433 §5): the Windows error a
# client shows for each of our reasons to reject.
MS_CHAP_ERRORS = {
    "bad_password": 691,  # ERROR_AUTHENTICATION_FAILURE
    "locked": 647,  # ERROR_ACCT_DISABLED
    "disabled": 647,
    "quota_exhausted": 646,  # ERROR_RESTRICTED_LOGON_HOURS
    "already_online": 649,  # ERROR_NO_DIALIN_PERMISSION
    "method_not_allowed": 649,
}
_ERROR_MESSAGES = {
    646: "Internet time used up",
    647: "Account disabled",
    649: "Not allowed",
    691: "Authentication failed",
}

# RFC 2759 §8.7 and RFC 3079 §3.4.
_SIGNING_MAGIC = b"Magic server to client signing constant"
_PAD_MAGIC = b"Pad to make it do more than one iteration"
_MASTER_KEY_MAGIC = b"This is the MPPE Master Key"
_CLIENT_SEND_MAGIC = b"On the client side, this is the send key; on the server side, it is the receive key."
_SERVER_SEND_MAGIC = b"On the client side, this is the receive key; on the server side, it is the send key."
_SHS_PAD1 = bytes(40)
_SHS_PAD2 = b"\xf2" * 40


# -- RFC 2759 §8 and RFC 2433 §A


def nt_password_hash(password):
    """RFC 2759 §8.3: MD4 of the password (str, or bytes in UTF-8) in UTF-16LE."""
    if isinstance(password, bytes):
        password = password.decode("utf-8")
    return MD4.new(password.encode("utf-16-le")).digest()


def hash_nt_password_hash(password_hash):
    """RFC 2759 §8.4."""
    return MD4.new(password_hash).digest()


def challenge_hash(peer_challenge, authenticator_challenge, username):
    """RFC 2759 §8.2: the 8-octet challenge both ends answer; C{username} in bytes."""
    return hashlib.sha1(peer_challenge + authenticator_challenge + username).digest()[:8]


def _des_key(seven):
    """RFC 2759 §8.6: 56 key bits spread over 8 octets (DES ignores the parity bits)."""
    bits = int.from_bytes(seven, "big")
    return bytes(((bits >> (49 - 7 * i)) & 0x7F) << 1 for i in range(8))


def challenge_response(challenge, password_hash):
    """RFC 2759 §8.5 (RFC 2433 §A.5): three DES blocks of C{challenge} under the zero-padded hash."""
    key = password_hash.ljust(21, b"\0")
    return b"".join(DES.new(_des_key(key[i:i + 7]), DES.MODE_ECB).encrypt(challenge) for i in (0, 7, 14))


def generate_nt_response(authenticator_challenge, peer_challenge, username, password):
    """RFC 2759 §8.1: what the peer sends (the tests, and a NAS played in them, need it)."""
    challenge = challenge_hash(peer_challenge, authenticator_challenge, username)
    return challenge_response(challenge, nt_password_hash(password))


def generate_authenticator_response(password_hash, nt_response, peer_challenge, authenticator_challenge, username):
    """RFC 2759 §8.7: "S=" and 40 upper-case hex digits, proving to the peer that we know the hash."""
    digest = hashlib.sha1(hash_nt_password_hash(password_hash) + nt_response + _SIGNING_MAGIC).digest()
    challenge = challenge_hash(peer_challenge, authenticator_challenge, username)
    return "S=" + hashlib.sha1(digest + challenge + _PAD_MAGIC).hexdigest().upper()


# -- RFC 3079 §3.4: the MPPE keys of MS-CHAPv2


def get_master_key(password_hash_hash, nt_response):
    return hashlib.sha1(password_hash_hash + nt_response + _MASTER_KEY_MAGIC).digest()[:16]


def get_asymmetric_start_key(master_key, length, is_send, is_server):
    magic = _SERVER_SEND_MAGIC if is_send == is_server else _CLIENT_SEND_MAGIC
    return hashlib.sha1(master_key + _SHS_PAD1 + magic + _SHS_PAD2).digest()[:length]


# -- RFC 2548 §2.4.2-3: MS-MPPE-Send-Key and MS-MPPE-Recv-Key hidden with the shared secret


def hide_mppe_key(key, secret, request_authenticator, salt):
    """
    The attribute's value: the 2-octet C{salt} (its first bit set; each
    key of a packet has its own), then length, key and zero padding to
    16-octet blocks, each XORed with MD5(secret + the previous block, or
    the Request Authenticator and the salt for the first).
    """
    plain = bytes((len(key),)) + key
    plain += bytes(-len(plain) % 16)
    hidden = []
    last = request_authenticator + salt
    for start in range(0, len(plain), 16):
        pad = hashlib.md5(secret + last).digest()
        last = bytes(a ^ b for a, b in zip(plain[start:start + 16], pad))
        hidden.append(last)
    return salt + b"".join(hidden)


def reveal_mppe_key(value, secret, request_authenticator):
    """The key L{hide_mppe_key} hid (what the NAS does; for the tests)."""
    salt, hidden = value[:2], value[2:]
    plain = []
    last = request_authenticator + salt
    for start in range(0, len(hidden), 16):
        block = hidden[start:start + 16]
        plain.append(bytes(a ^ b for a, b in zip(block, hashlib.md5(secret + last).digest())))
        last = block
    plain = b"".join(plain)
    return plain[1:1 + plain[0]]


def _hide_like_user_password(value, secret, request_authenticator):
    """RFC 2865 §5.2's hiding, which RFC 2548 §2.4.1 prescribes for MS-CHAP-MPPE-Keys."""
    value += bytes(-len(value) % 16)
    hidden = []
    last = request_authenticator
    for start in range(0, len(value), 16):
        pad = hashlib.md5(secret + last).digest()
        last = bytes(a ^ b for a, b in zip(value[start:start + 16], pad))
        hidden.append(last)
    return b"".join(hidden)


# -- the request


def read_ms_chap(data):
    """
    The MS-CHAP fields of the Access-Request C{data} (its exact octets, the
    attributes already known to be well framed), as keywords of
    L{callcenter.radius.model.AccessRequest}: C{method}, C{chap_id} (the
    response's Ident), C{chap_challenge} (MS-CHAP-Challenge),
    C{chap_response} (the 24-octet NT-Response) and, for version 2,
    C{peer_challenge}.  None when it holds no MS-CHAP response; "method_not_allowed"
    for an LM-only MS-CHAPv1 response (RFC 2433 §A: LM is not served).

    @raise ValueError: a Microsoft attribute of the wrong size, or a
        response without its challenge.
    """
    found = {}
    position = 20
    end = len(data)
    while position < end:
        code, length = data[position], data[position + 1]
        if code == VENDOR_SPECIFIC and length >= 6 and data[position + 2:position + 6] == _MICROSOFT_ID:
            at, stop = position + 6, position + length
            while at + 2 <= stop:
                kind, size = data[at], data[at + 1]
                if size < 2 or at + size > stop:
                    raise ValueError("a Microsoft Vendor-Specific attribute that does not parse (RFC 2548 §2)")
                found.setdefault(kind, data[at + 2:at + size])
                at += size
        position += length
    v2 = found.get(MS_CHAP2_RESPONSE)
    v1 = found.get(MS_CHAP_RESPONSE)
    if v2 is None and v1 is None:
        return None
    challenge = found.get(MS_CHAP_CHALLENGE)
    if v2 is not None:
        if len(v2) != 50:
            raise ValueError(f"MS-CHAP2-Response of {len(v2)} octets (RFC 2548 §2.3.2: 50)")
        if challenge is None or len(challenge) != 16:
            raise ValueError("MS-CHAP2-Response without a 16-octet MS-CHAP-Challenge (RFC 2548 §2.3.2)")
        return {
            "method": MSCHAPV2, "chap_id": v2[0], "chap_challenge": challenge,
            "peer_challenge": v2[2:18], "chap_response": v2[26:50],
        }
    if len(v1) != 50:
        raise ValueError(f"MS-CHAP-Response of {len(v1)} octets (RFC 2548 §2.1.3: 50)")
    if challenge is None or len(challenge) != 8:
        raise ValueError("MS-CHAP-Response without an 8-octet MS-CHAP-Challenge (RFC 2548 §2.1.3)")
    if not v1[1] & 1:
        return "method_not_allowed"  # the Flags say: LM-Response only
    return {"method": MSCHAP, "chap_id": v1[0], "chap_challenge": challenge, "chap_response": v1[26:50]}


def _username(request):
    # RFC 2759 §8.2 hashes the user name as sent (our names have no domain part).
    return request.user_name.encode("utf-8")


def ms_chap_matches(password, request):
    """
    Whether C{request}'s NT-Response answers its challenge with
    C{password} (bytes, UTF-8); compared in constant time.
    """
    password_hash = nt_password_hash(password)
    if request.method == MSCHAPV2:
        challenge = challenge_hash(request.peer_challenge, request.chap_challenge, _username(request))
    else:
        challenge = request.chap_challenge
    return hmac.compare_digest(challenge_response(challenge, password_hash), request.chap_response or b"")


# -- the answer


def _vendor_attribute(kind, value):
    """One Microsoft sub-attribute in its own Vendor-Specific attribute (RFC 2865 §5.26, RFC 2548 §2)."""
    return struct.pack("!BBIBB", VENDOR_SPECIFIC, len(value) + 8, MICROSOFT, kind, len(value) + 2) + value


_ENCRYPTION = _vendor_attribute(MS_MPPE_ENCRYPTION_POLICY, struct.pack("!I", ENCRYPTION_ALLOWED)) + _vendor_attribute(
    MS_MPPE_ENCRYPTION_TYPES, struct.pack("!I", RC4_40_OR_128)
)


def _salts():
    """Two salts with the high bit set (RFC 2548 §2.4.2), different from each other."""
    first = bytes((0x80 | os.urandom(1)[0] & 0x7F,)) + os.urandom(1)
    second = bytearray(first)
    second[1] ^= 1
    return first, bytes(second)


class _Success:
    """The attributes of an Access-Accept for one MS-CHAP request, made with the client's secret."""

    __slots__ = ("_ident", "_authenticator_response", "_send_key", "_recv_key", "_v1_keys")

    def __init__(self, ident, authenticator_response=None, send_key=None, recv_key=None, v1_keys=None):
        self._ident = ident
        self._authenticator_response = authenticator_response
        self._send_key, self._recv_key, self._v1_keys = send_key, recv_key, v1_keys

    def __call__(self, secret, authenticator):
        if self._v1_keys is not None:
            keys = _hide_like_user_password(self._v1_keys, secret, authenticator)
            return _vendor_attribute(MS_CHAP_MPPE_KEYS, keys) + _ENCRYPTION
        send_salt, recv_salt = _salts()
        return b"".join((
            _vendor_attribute(MS_CHAP2_SUCCESS, bytes((self._ident,)) + self._authenticator_response.encode("ascii")),
            _vendor_attribute(MS_MPPE_RECV_KEY, hide_mppe_key(self._recv_key, secret, authenticator, recv_salt)),
            _vendor_attribute(MS_MPPE_SEND_KEY, hide_mppe_key(self._send_key, secret, authenticator, send_salt)),
            _ENCRYPTION,
        ))

    def __repr__(self):
        return "<MS-CHAP success>"  # never a key in a log line


def ms_chap_success(password, request):
    """
    The callable making the MS-CHAP attributes of the Access-Accept of
    C{request}, whose response matched C{password}: for version 2,
    MS-CHAP2-Success (RFC 2548 §2.3.3) and the MPPE keys of RFC 3079
    §3.4 as the server's (MS-MPPE-Send-Key is the server's send key);
    for version 1, MS-CHAP-MPPE-Keys (RFC 2548 §2.4.1: as FreeRADIUS
    does, eight zero octets where the LM hash would go, which we never
    keep, and the NT hash's hash); both with the encryption policy and
    types.
    """
    password_hash = nt_password_hash(password)
    hash_hash = hash_nt_password_hash(password_hash)
    if request.method == MSCHAP:
        return _Success(request.chap_id, v1_keys=bytes(8) + hash_hash)
    response = generate_authenticator_response(
        password_hash, request.chap_response, request.peer_challenge, request.chap_challenge, _username(request)
    )
    master = get_master_key(hash_hash, request.chap_response)
    return _Success(
        request.chap_id, response,
        send_key=get_asymmetric_start_key(master, 16, is_send=True, is_server=True),
        recv_key=get_asymmetric_start_key(master, 16, is_send=False, is_server=True),
    )


class _Error:
    """The MS-CHAP-Error of an Access-Reject (RFC 2548 §2.1.5)."""

    __slots__ = ("_value",)

    def __init__(self, value):
        self._value = value

    def __call__(self, secret, request_authenticator):
        return _vendor_attribute(MS_CHAP_ERROR, self._value)

    def __repr__(self):
        return f"<MS-CHAP error {self._value[1:]!r}>"


def ms_chap_error(request, reason):
    """
    The callable making the MS-CHAP-Error of the Access-Reject of
    C{request} for C{reason} (a key of L{MS_CHAP_ERRORS}): "E=691 R=0",
    and for version 2 a new challenge, the version and a message (RFC 2759
    §6).  A version 2 client may retry a wrong password (R=1: Windows asks
    again), answering the new challenge, which the NAS sends in its next
    Access-Request; each try counts towards the lockout.  Version 1's
    retry (RFC 2433) would need the NAS to derive the challenge: none.
    """
    code = MS_CHAP_ERRORS.get(reason, 691)
    version_2 = request.method == MSCHAPV2
    text = f"E={code} R={int(version_2 and code == 691)}"
    if version_2:
        text += f" C={os.urandom(16).hex().upper()} V=3 M={_ERROR_MESSAGES[code]}"
    return _Error(bytes((request.chap_id or 0,)) + text.encode("ascii"))
