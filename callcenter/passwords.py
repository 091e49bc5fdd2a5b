"""
Password and PIN hashing (argon2id), and SIP digest secrets.

Hashing costs tens of milliseconds on purpose: on the server call these from
a thread (the store's transaction thread does), never on the reactor.
"""

import hashlib

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def hash_password(secret):
    return _hasher.hash(secret)


def verify_password(stored_hash, secret):
    """True when C{secret} matches; never raises for a wrong or corrupt hash."""
    try:
        return _hasher.verify(stored_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


def sip_ha1(username, realm, password, algorithm="MD5"):
    """
    H(username:realm:password), what SIP digest (RFC 3261 §22.4, RFC 8760)
    needs instead of the password: the registrar stores only these.
    """
    digest = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[algorithm]
    return digest(f"{username}:{realm}:{password}".encode("utf-8")).hexdigest()
