"""
HTTP Digest authentication as SIP uses it (RFC 3261 §22), with the
computations of RFC 7616 (which obsoletes RFC 2617) and the algorithms of
RFC 8760: SHA-256 and MD5, a server offering both, SHA-256 first (§2).

The server side never sees a password: it checks responses against the
HA1 = H(username:realm:password) the registrar stores (L{callcenter.passwords.sip_ha1}).
Nonces are stateless (an HMAC under a shared secret) so that every node
behind the same proxy can verify any node's nonce; only the replay table
(L{NonceCounts}) is per node.
"""

import base64
import binascii
import dataclasses
import hashlib
import heapq
import hmac
import os
import re

from callcenter.passwords import sip_ha1

_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}

# The order a server offers its challenges in: most preferred first (RFC 8760 §2).
SERVER_ALGORITHMS = ("SHA-256", "MD5")

# RFC 7230 §3.2.6 tchar, a superset of RFC 3261 §25.1 token.
_TOKEN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~"
)
# Folded LWS (RFC 3261 §7.3.1) may still be present if the caller did not unfold.
_SPACE = " \t\r\n"
_UNQUOTED_STOP = frozenset(_SPACE + ',"')

_NC = re.compile(r"[0-9a-fA-F]{8}")  # nc-value = 8LHEX (RFC 7616 §3.4)
_HEX_DIGEST_LENGTH = {"MD5": 32, "SHA-256": 64}


# -- header syntax ---------------------------------------------------------


# The same grammar as the careful parser below, as expressions: one
# parameter with the comma (or the end) after it, and a whole value (the
# scheme, then what separates it from the first parameter, then the
# parameters).  A value they do not match whole goes to the careful
# parser, which says what is wrong.
_TCHAR = r"[A-Za-z0-9!#$%&'*+\-.^_`|~]"
_LWS = r"[ \t\r\n]*"
_QUOTED_CONTENT = r'[^"\\]*(?:\\.[^"\\]*)*'
_UNQUOTED = r'[^ \t\r\n,"]+'
_AFTER_PARAM = rf"{_LWS}(?:,[ \t\r\n,]*|\Z)"
_AUTH_PARAM_RE = re.compile(
    rf'({_TCHAR}+){_LWS}={_LWS}(?:"({_QUOTED_CONTENT})"|({_UNQUOTED})){_AFTER_PARAM}', re.DOTALL
)
_AUTH_VALUE_RE = re.compile(
    rf"({_TCHAR}+)(?:[ \t\r\n][ \t\r\n,]*"
    rf'(?:{_TCHAR}+{_LWS}={_LWS}(?:"{_QUOTED_CONTENT}"|{_UNQUOTED}){_AFTER_PARAM})*)?',
    re.DOTALL,
)
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)


def parse_auth_params(value):
    """
    Split a WWW-Authenticate, Authorization, Proxy-Authenticate or
    Proxy-Authorization value into C{(scheme, params)}.

    The scheme is returned as written (compare it case-insensitively);
    parameter names are lower-cased, quoted-string values unquoted
    (RFC 7230 §3.2.6 quoted-pair), token values taken as they are.
    Empty list elements are skipped as RFC 7230 §7 asks.

    @raise ValueError: with a short reason, for anything malformed; a
        parameter given twice is malformed (RFC 7235 §2.1).
    """
    if not isinstance(value, str):
        raise ValueError("header value is not text")
    text = value.strip(_SPACE)
    # Every authenticated REGISTER comes through here: a well-formed value
    # is checked whole by one expression and split by another; anything
    # else, however slightly off, is left to the careful parser.
    found = _AUTH_VALUE_RE.fullmatch(text)
    if found is not None:
        params = {}
        for name, quoted, token in _AUTH_PARAM_RE.findall(text, found.end(1)):
            name = name.lower()
            if name in params:
                break  # Given twice: the careful parser says so.
            if token:
                params[name] = token
            else:
                params[name] = _QUOTED_PAIR_RE.sub(r"\1", quoted) if "\\" in quoted else quoted
        else:
            return found.group(1), params
    return _parse_auth_params_carefully(text)


def _parse_auth_params_carefully(text):
    end = _token_end(text, 0)
    if end == 0:
        raise ValueError("no authentication scheme")
    scheme = text[:end]
    if end < len(text) and text[end] not in _SPACE:
        raise ValueError("malformed authentication scheme")
    params = {}
    pos = end
    after_param = False
    while True:
        pos = _skip_space(text, pos)
        if pos == len(text):
            return scheme, params
        if text[pos] == ",":
            pos += 1
            after_param = False
            continue
        if after_param:
            raise ValueError("missing comma between parameters")
        name_end = _token_end(text, pos)
        if name_end == pos:
            raise ValueError("malformed parameter name")
        name = text[pos:name_end].lower()
        pos = _skip_space(text, name_end)
        if pos == len(text) or text[pos] != "=":
            raise ValueError("parameter without value")
        pos = _skip_space(text, pos + 1)
        if pos < len(text) and text[pos] == '"':
            param_value, pos = _quoted_string(text, pos)
        else:
            value_end = pos
            while value_end < len(text) and text[value_end] not in _UNQUOTED_STOP:
                value_end += 1
            if value_end == pos:
                raise ValueError("empty parameter value")
            param_value, pos = text[pos:value_end], value_end
        if name in params:
            raise ValueError("duplicate parameter")
        params[name] = param_value
        after_param = True


def _token_end(text, pos):
    while pos < len(text) and text[pos] in _TOKEN_CHARS:
        pos += 1
    return pos


def _skip_space(text, pos):
    while pos < len(text) and text[pos] in _SPACE:
        pos += 1
    return pos


def _quoted_string(text, pos):
    """The unquoted content of the quoted-string at C{pos}, and where it ends."""
    content = []
    pos += 1
    while pos < len(text):
        char = text[pos]
        if char == '"':
            return "".join(content), pos + 1
        if char == "\\":
            if pos + 1 == len(text):
                break
            content.append(text[pos + 1])
            pos += 2
        else:
            content.append(char)
            pos += 1
    raise ValueError("unterminated quoted string")


def _quote(value):
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- the computation (RFC 7616 §3.4.1) -------------------------------------


def _hash_hex(algorithm, text):
    # surrogatepass: header text decoded leniently must hash, not raise.
    return _HASHES[algorithm](text.encode("utf-8", "surrogatepass")).hexdigest()


def digest_response(algorithm, ha1, nonce, method, uri, qop=None, nc=None, cnonce=None):
    """
    The request-digest: with qop=auth H(HA1:nonce:nc:cnonce:qop:HA2)
    (RFC 7616 §3.4.1), without qop the RFC 2069 form H(HA1:nonce:HA2);
    HA2 = H(method:uri) either way.
    """
    ha2 = _hash_hex(algorithm, f"{method}:{uri}")
    if qop is None:
        return _hash_hex(algorithm, f"{ha1}:{nonce}:{ha2}")
    return _hash_hex(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def _canonical_algorithm(name):
    """C{"MD5"} or C{"SHA-256"} for a supported algorithm name, else None."""
    name = name.upper()
    return name if name in _HASHES else None


# -- nonces ----------------------------------------------------------------

VALID = "valid"
STALE = "stale"
INVALID = "invalid"

# Nodes sharing a nonce secret keep their clocks in step with NTP; a nonce
# dated further ahead than this was not issued by a healthy node.
MAX_CLOCK_SKEW = 30

_STAMP_BYTES = 8
_SALT_BYTES = 8
_MAC_BYTES = hashlib.sha256().digest_size
# 48 bytes: a multiple of 3, so the base64 text has no padding and no
# spare bits, hence exactly one spelling per nonce (the replay table keys on it).
_NONCE_BYTES = _STAMP_BYTES + _SALT_BYTES + _MAC_BYTES
_NONCE_TEXT = re.compile(rf"[A-Za-z0-9_-]{{{_NONCE_BYTES * 4 // 3}}}")


class NonceIssuer:
    """
    Stateless nonces: base64url(timestamp, salt, HMAC-SHA256(secret,
    timestamp, salt)).  Any node holding the same secret verifies them; the
    random salt keeps two nonces issued in the same second apart, so their
    nonce-counts are tracked apart.  Realm-independent: one secret serves
    every realm.
    """

    _LABEL = b"callcenter sip digest nonce 1\x00"

    def __init__(self, secret, clock, lifetime=300, random_bytes=os.urandom):
        if len(secret) < 16:
            raise ValueError("the nonce secret must be at least 16 bytes")
        self._keyed = hmac.new(secret, self._LABEL, hashlib.sha256)
        self._clock = clock
        self.lifetime = lifetime
        self._random_bytes = random_bytes

    def issue(self):
        stamp = int(self._clock.seconds()).to_bytes(_STAMP_BYTES, "big")
        signed = stamp + self._random_bytes(_SALT_BYTES)
        return base64.urlsafe_b64encode(signed + self._mac(signed)).decode("ascii")

    def check(self, nonce):
        """
        C{"valid"}; C{"stale"} when authentic but older than the lifetime,
        so the UA may retry without asking its user (RFC 7616 §3.3); or
        C{"invalid"}: not one of ours.
        """
        return self.examine(nonce)[0]

    def examine(self, nonce):
        """
        C{(state, expires_at)}: what L{check} says, and for an authentic
        nonce what L{expires_at} says (else None), from one decoding.
        """
        issued = self._issued_at(nonce)
        if issued is None:
            return INVALID, None
        age = self._clock.seconds() - issued
        if age < -MAX_CLOCK_SKEW:
            return INVALID, issued + self.lifetime
        if age > self.lifetime:
            return STALE, issued + self.lifetime
        return VALID, issued + self.lifetime

    def expires_at(self, nonce):
        """When an authentic C{nonce} turns stale (clock seconds), else None."""
        issued = self._issued_at(nonce)
        return None if issued is None else issued + self.lifetime

    def _issued_at(self, nonce):
        if not isinstance(nonce, str) or not _NONCE_TEXT.fullmatch(nonce):
            return None
        try:
            raw = base64.b64decode(nonce, altchars=b"-_", validate=True)
        except binascii.Error:
            return None
        signed, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(signed)):
            return None
        return int.from_bytes(signed[:_STAMP_BYTES], "big")

    def _mac(self, signed):
        # From the state after the secret and the label, computed once:
        # twice per authenticated REGISTER, the key schedule is most of it.
        mac = self._keyed.copy()
        mac.update(signed)
        return mac.digest()


class NonceCounts:
    """
    The highest nonce-count accepted for each nonce, so that a replayed
    request (same or lower nc) is refused: RFC 7616 §3.4 has the server
    detect replays this way.  An entry lives until its nonce turns stale;
    after that the nonce itself is refused, so forgetting it is safe.
    Memory is bounded: expired entries go as new ones come, and when the
    table is full a new nonce is answered C{"stale"} (the UA fetches a
    fresh nonce and retries once entries have expired).
    """

    def __init__(self, clock, max_entries=100_000):
        self._clock = clock
        self._max_entries = max_entries
        self._highest = {}
        self._expiry = []  # heap of (expires_at, nonce), one per entry

    def __len__(self):
        return len(self._highest)

    def advance(self, nonce, nc, expires_at):
        """
        Record C{nc} (an int) for C{nonce}: C{"ok"} when it is higher than
        any seen for that nonce, C{"replayed"} when not, C{"stale"} when the
        table is full.
        """
        self._evict_expired()
        highest = self._highest.get(nonce)
        if highest is None:
            if len(self._highest) >= self._max_entries:
                return STALE
            heapq.heappush(self._expiry, (expires_at, nonce))
        elif nc <= highest:
            return "replayed"
        self._highest[nonce] = nc
        return "ok"

    def _evict_expired(self):
        now = self._clock.seconds()
        while self._expiry and self._expiry[0][0] < now:
            _, nonce = heapq.heappop(self._expiry)
            del self._highest[nonce]


# -- server side -----------------------------------------------------------

# What the network is told: whether the user exists stays in the log.
PUBLIC_BAD_CREDENTIALS = "invalid credentials"
PUBLIC_MALFORMED = "malformed credentials"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """
    The verdict on one Authorization value.  C{kind} is C{"ok"},
    C{"stale"} (re-challenge with stale=true) or C{"failed"};
    C{log_reason} is the detail for our logs, C{public} what may go back
    to the network.  C{username} is as claimed, verified only when ok.
    """

    kind: str
    log_reason: str
    public: str
    username: str | None = None
    algorithm: str | None = None

    @property
    def ok(self):
        return self.kind == "ok"

    @property
    def stale(self):
        return self.kind == STALE


class _Refused(Exception):
    def __init__(self, log_reason, public=PUBLIC_MALFORMED, kind="failed"):
        super().__init__(log_reason)
        self.log_reason = log_reason
        self.public = public
        self.kind = kind


class DigestVerifier:
    """
    Challenges and checks SIP digest credentials for one realm.

    Without qop there is no nonce-count and so no replay protection: the
    RFC 2069 form is refused unless C{allow_rfc2069} is set for old UAs.
    """

    def __init__(
        self, realm, issuer, counts, opaque=None, allow_rfc2069=False, algorithms=SERVER_ALGORITHMS
    ):
        """
        @param algorithms: the challenges offered, most preferred first
            (RFC 8760 §2: a UAC takes the topmost it supports).  Some UAs
            take the topmost without looking (SIPp 3.6 fails on SHA-256):
            an operator with such phones puts MD5 first.
        """
        self.realm = realm
        self._algorithms = tuple(algorithms)
        self._issuer = issuer
        self._counts = counts
        self._opaque = opaque
        self._allow_rfc2069 = allow_rfc2069

    def challenge(self, stale=False):
        """
        WWW-Authenticate (or Proxy-Authenticate) values, one per algorithm
        in order of preference (RFC 8760 §2), sharing one fresh nonce.
        """
        nonce = self._issuer.issue()
        values = []
        for algorithm in self._algorithms:
            params = [
                f"realm={_quote(self.realm)}",
                f"nonce={_quote(nonce)}",
                f"algorithm={algorithm}",
                'qop="auth"',
            ]
            if self._opaque is not None:
                params.append(f"opaque={_quote(self._opaque)}")
            if stale:
                params.append("stale=true")
            values.append("Digest " + ", ".join(params))
        return values

    def verify(self, method, authorization_value, lookup_ha1, request_uri):
        """
        Check credentials for a C{method} request to C{request_uri}.
        C{lookup_ha1(username, algorithm)} gives the stored HA1 hex for
        C{"MD5"} or C{"SHA-256"}, or None.  Returns an L{Outcome}; never
        raises for anything the network sent.
        """
        try:
            credentials = parse_auth_params(authorization_value)
        except ValueError as e:
            return Outcome("failed", f"malformed header: {e}", PUBLIC_MALFORMED)
        return self.verify_parsed(method, credentials, lookup_ha1, request_uri)

    def verify_parsed(self, method, credentials, lookup_ha1, request_uri):
        """L{verify} for a value already split by L{parse_auth_params}: C{(scheme, params)}."""
        scheme, params = credentials
        username = params.get("username")
        # No algorithm parameter means MD5 (RFC 7616 §3.3).
        algorithm = _canonical_algorithm(params.get("algorithm", "MD5"))
        try:
            self._check(scheme, params, algorithm, method, lookup_ha1, request_uri)
        except _Refused as refusal:
            return Outcome(refusal.kind, refusal.log_reason, refusal.public, username, algorithm)
        return Outcome("ok", "ok", "ok", username, algorithm)

    def _check(self, scheme, params, algorithm, method, lookup_ha1, request_uri):
        if scheme.lower() != "digest":
            raise _Refused("not a Digest scheme")
        required = ("username", "realm", "nonce", "uri", "response")
        missing = [name for name in required if name not in params]
        if missing:
            raise _Refused("missing " + ", ".join(missing))
        if params["realm"] != self.realm:
            raise _Refused("realm mismatch", "realm mismatch")
        if algorithm is None or algorithm not in self._algorithms:
            raise _Refused("unsupported algorithm", "unsupported algorithm")
        qop_fields = self._qop_fields(params)
        # RFC 3261 §22.4: the uri parameter must be the Request-URI, or the
        # response could be replayed against another resource.
        if not _same_uri(params["uri"], request_uri):
            raise _Refused("uri does not match the Request-URI", "uri mismatch")
        if self._opaque is not None and params.get("opaque") != self._opaque:
            raise _Refused("opaque mismatch")
        response = params["response"]
        if len(response) != _HEX_DIGEST_LENGTH[algorithm] or not _is_hex(response):
            raise _Refused("malformed response")
        nonce = params["nonce"]
        nonce_state, expires_at = self._issuer.examine(nonce)
        if nonce_state == INVALID:
            raise _Refused("nonce not issued by us", PUBLIC_BAD_CREDENTIALS)

        ha1 = lookup_ha1(params["username"], algorithm)
        # An unknown user costs the same hashing as a known one, so timing
        # does not tell them apart either.
        expected = digest_response(
            algorithm, ha1 or "0" * len(response), nonce, method, params["uri"], **qop_fields
        )
        if ha1 is None:
            raise _Refused("unknown user", PUBLIC_BAD_CREDENTIALS)
        if not hmac.compare_digest(expected, response.lower()):
            raise _Refused("wrong response", PUBLIC_BAD_CREDENTIALS)

        # Only now, with a correct response, may stale be said: stale=true
        # has the UA retry without asking its user (RFC 7616 §3.3), which is
        # for a UA that knows the password (RFC 2617 §3.2.1).  Likewise the
        # nonce-count is recorded only now: a forger must not advance it.
        if nonce_state == STALE:
            raise _Refused("stale nonce", "stale nonce", STALE)
        if qop_fields:
            counted = self._counts.advance(nonce, int(qop_fields["nc"], 16), expires_at)
            if counted == "replayed":
                raise _Refused("replayed nonce-count", PUBLIC_BAD_CREDENTIALS)
            if counted == STALE:
                raise _Refused("nonce-count table full", "stale nonce", STALE)

    def _qop_fields(self, params):
        """The qop, nc and cnonce to hash with; none for the RFC 2069 form."""
        qop = params.get("qop")
        if qop is None:
            if self._allow_rfc2069:
                return {}
            raise _Refused("qop=auth required")
        if qop.lower() != "auth":
            raise _Refused("unsupported qop", "unsupported qop")
        missing = [name for name in ("nc", "cnonce") if name not in params]
        if missing:
            raise _Refused("missing " + ", ".join(missing))
        if not _NC.fullmatch(params["nc"]):
            raise _Refused("malformed nc")
        return {"qop": qop, "nc": params["nc"], "cnonce": params["cnonce"]}


_HEX_RE = re.compile(r"[0-9a-fA-F]*")


def _is_hex(text):
    return _HEX_RE.fullmatch(text) is not None


def _same_uri(given, expected):
    """
    Equal as strings, or once the scheme and host are lower-cased (both
    compare case-insensitively, RFC 3261 §19.1.4); the rest of §19.1.4's
    rules are not applied.
    """
    return given == expected or _fold_scheme_and_host(given) == _fold_scheme_and_host(expected)


def _fold_scheme_and_host(uri):
    scheme, colon, rest = uri.partition(":")
    if not colon:
        return uri
    before_headers, question, headers = rest.partition("?")
    user, at, host_and_params = before_headers.rpartition("@")
    host, semicolon, uri_params = host_and_params.partition(";")
    return f"{scheme.lower()}:{user}{at}{host.lower()}{semicolon}{uri_params}{question}{headers}"


# -- client side -----------------------------------------------------------


def choose_challenge(challenge_values):
    """
    Of the Digest challenges a server sent, the one to answer: the first
    SHA-256 one, else the first MD5 one (RFC 8760 §2), else None.
    """
    offered = {}
    for value in challenge_values:
        try:
            scheme, params = parse_auth_params(value)
        except ValueError:
            continue
        if scheme.lower() == "digest":
            algorithm = _canonical_algorithm(params.get("algorithm", "MD5"))
            if algorithm is not None:
                offered.setdefault(algorithm, value)
    return offered.get("SHA-256") or offered.get("MD5")


def authorization_for(challenge_value, method, uri, username, password, cnonce_source, nc):
    """
    The Authorization (or Proxy-Authorization) value answering one Digest
    challenge, as our trunks do when registering upstream: qop=auth when
    offered, else the RFC 2069 form.  C{cnonce_source()} gives a fresh
    cnonce; C{nc} (int) counts the requests made with this nonce, from 1.

    @raise ValueError: when the challenge is malformed or asks for what we
        do not support.
    """
    scheme, params = parse_auth_params(challenge_value)
    if scheme.lower() != "digest":
        raise ValueError("not a Digest challenge")
    if "realm" not in params or "nonce" not in params:
        raise ValueError("challenge lacks realm or nonce")
    algorithm = _canonical_algorithm(params.get("algorithm", "MD5"))
    if algorithm is None:
        raise ValueError("unsupported algorithm")
    realm, nonce = params["realm"], params["nonce"]
    ha1 = sip_ha1(username, realm, password, algorithm)
    fields = [
        f"username={_quote(username)}",
        f"realm={_quote(realm)}",
        f"nonce={_quote(nonce)}",
        f"uri={_quote(uri)}",
    ]
    if "qop" in params:
        # qop-options is a quoted, comma-separated list (RFC 7616 §3.3).
        offered = {option.strip().lower() for option in params["qop"].split(",")}
        if "auth" not in offered:
            raise ValueError("challenge offers no qop=auth")
        nc_value = f"{nc:08x}"
        cnonce = cnonce_source()
        response = digest_response(algorithm, ha1, nonce, method, uri, "auth", nc_value, cnonce)
        fields += [
            f"response={_quote(response)}",
            "qop=auth",
            f"nc={nc_value}",
            f"cnonce={_quote(cnonce)}",
        ]
    else:
        fields.append(f"response={_quote(digest_response(algorithm, ha1, nonce, method, uri))}")
    if "algorithm" in params:
        fields.append(f"algorithm={algorithm}")
    if "opaque" in params:
        fields.append(f"opaque={_quote(params['opaque'])}")
    return "Digest " + ", ".join(fields)
