"""
What CHAP requires, and how its secrets are kept.

PAP (RFC 2865 §5.2) brings the password to the server, hidden with the
shared secret: we keep only its argon2 hash and compare.  CHAP (RFC 1994
§4.1, carried as RFC 2865 §5.3 CHAP-Password) brings only

    MD5(CHAP Ident || password || challenge)

for a challenge the NAS chose (CHAP-Challenge, or the Request
Authenticator when there is none, RFC 2865 §2.2).  To check it the server
must compute the same MD5, so it must hold the password itself: no hash at
rest can answer CHAP.  So an account allowed CHAP keeps, beside its argon2
hash, its password encrypted:

- AES-256-GCM (the C{cryptography} package), a random 96-bit nonce per
  secret, the user name as associated data (a secret copied onto another
  account does not decrypt there);
- the key is 32 random bytes given in an environment variable
  (C{CALLCENTER_RADIUS_CHAP_KEY} unless the configuration names another),
  as 64 hex digits or in base64 (C{openssl rand -hex 32}), never in the
  repository, the configuration file or the database: a stolen database
  alone gives no CHAP password;
- the server decrypts a secret only to check one CHAP response and keeps
  no clear password; the CLI encrypts when an account is opened with
  C{--chap} or its password changed.

MS-CHAP (L{callcenter.radius.mschap}) needs the NT hash of the password,
a password equivalent: it is derived from the same sealed password at each
MS-CHAP login, and never stored, so the accounts allowed CHAP are those
allowed MS-CHAP and MS-CHAP adds nothing at rest.

An account without a CHAP secret is refused CHAP and MS-CHAP
(C{method_not_allowed}) and still logs in with PAP.  Anyone holding both the database and the key
can read CHAP passwords, which is why CHAP is per account and off by
default.  Losing the key loses CHAP (not PAP) for every account until
their passwords are set again.
"""

import base64
import binascii
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "CHAP_KEY_VARIABLE",
    "ChapSecretError",
    "ChapSecrets",
    "chap_response_matches",
    "chap_secrets_from_environment",
]

CHAP_KEY_VARIABLE = "CALLCENTER_RADIUS_CHAP_KEY"
# Sealed secrets start with their format, so that another can follow.
_FORMAT = "g1:"
_NONCE_BYTES = 12


class ChapSecretError(Exception):
    """A CHAP key or sealed secret that cannot be used; the message is one line."""


def _key_bytes(text):
    text = text.strip()
    try:
        if len(text) == 64:
            key = binascii.unhexlify(text)
        else:
            key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ChapSecretError("a CHAP key is 32 bytes as 64 hex digits or in base64 (openssl rand -hex 32)")
    return key


class ChapSecrets:
    """Seals and opens the CHAP passwords of internet accounts with one key."""

    def __init__(self, key):
        self._aead = AESGCM(_key_bytes(key) if isinstance(key, str) else key)

    def seal(self, username, password):
        """The text stored in internet_accounts.chap_secret for C{password} (str or bytes)."""
        if isinstance(password, str):
            password = password.encode("utf-8")
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, password, username.encode("utf-8"))
        return _FORMAT + base64.b64encode(sealed).decode("ascii")

    def open(self, username, sealed):
        """
        The password (bytes) C{sealed} holds for C{username}.

        @raise ChapSecretError: another key sealed it, it belongs to
            another account, or it was altered.
        """
        if not sealed.startswith(_FORMAT):
            raise ChapSecretError("not a CHAP secret this version can read")
        try:
            raw = base64.b64decode(sealed[len(_FORMAT):], validate=True)
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], username.encode("utf-8"))
        except (binascii.Error, ValueError, InvalidTag):
            raise ChapSecretError("the CHAP secret does not open with this key for this account")


def chap_secrets_from_environment(variable=CHAP_KEY_VARIABLE, environ=None):
    """
    The L{ChapSecrets} for the key in the environment variable C{variable},
    or None when it is not set (CHAP is then refused to everyone).

    @raise ChapSecretError: it is set but is not a key.
    """
    text = (os.environ if environ is None else environ).get(variable)
    if not text:
        return None
    try:
        return ChapSecrets(text)
    except ChapSecretError as e:
        raise ChapSecretError(f"${variable}: {e}")


def chap_response_matches(password, chap_id, challenge, response):
    """RFC 1994 §4.1: C{response} is MD5(Ident || password || challenge); compared in constant time."""
    expected = hashlib.md5(bytes((chap_id,)) + password + challenge).digest()
    return hmac.compare_digest(expected, response or b"")
