"""
SIP addresses: SIP/SIPS URIs, name-addr header values and Via values
(RFC 3261 §19.1, §20.10, §20.42 and the §25 grammar).

Parsers take header values that the message layer has already unfolded
(RFC 3261 §7.3.1), so linear white space here is only SP and HTAB.  They
raise ValueError with a short reason; the message layer turns that into a
400.
"""

import ipaddress
import re
from urllib.parse import quote, unquote

__all__ = ["NameAddr", "SipURI", "Via"]

# token (RFC 3261 §25.1): alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"
TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
_TOKEN = rf"[{TOKEN_CHARS}]+"
# quoted-string with quoted-pairs; values are already unfolded, so no CR/LF.
_QUOTED = r'"(?:[^"\\\r\n]|\\[^\r\n])*"'
_IPV6_REFERENCE = r"\[[0-9A-Fa-f:.]+\]"
# Lenient hostname (real deployments use "_" in names); IPv4 fits too.
_HOSTNAME = r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*)"

_ESCAPED = r"%[0-9A-Fa-f]{2}"
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
# RFC 3261 §25.1: user = 1*( unreserved / escaped / user-unreserved )
_USER = rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPED})+"
_PASSWORD = rf"(?:[{_UNRESERVED}&=+$,]|{_ESCAPED})*"
# paramchar = param-unreserved / unreserved / escaped
_PARAMCHAR = rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESCAPED})"
# hname / hvalue = *( hnv-unreserved / unreserved / escaped )
_HCHAR = rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})"
# The whole SIP-URI / SIPS-URI in one match (one pass over the text).  The
# user part may hold ";", "?" and "/" (RFC 4475 intmeth); "@" ends it, as
# it is never unescaped after the userinfo.
_SIP_URI_RE = re.compile(
    rf"([Ss][Ii][Pp][Ss]?):(?:({_USER})(?::({_PASSWORD}))?@)?"
    rf"(?:\[([0-9A-Fa-f:.]+)\]|({_HOSTNAME}))(?::([0-9]{{1,5}}))?"
    rf"((?:;{_PARAMCHAR}+(?:={_PARAMCHAR}+)?)*)"
    rf"(?:\?({_HCHAR}+={_HCHAR}*(?:&{_HCHAR}+={_HCHAR}*)*))?"
)

# What may stay unescaped when writing each URI component back (RFC 3261 §25.1).
_USER_SAFE = "-_.!~*'()&=+$,;?/"
_PASSWORD_SAFE = "-_.!~*'()&=+$,"
_PARAM_SAFE = "-_.!~*'()[]/:&+$"
_HEADER_SAFE = "-_.!~*'()[]/?:+$"

# A bare IPv6address, as in via-received (RFC 3261 §20.42): tried before
# token, which would stop at the first ":".
_IPV6_ADDRESS = r"[0-9A-Fa-f]*:[0-9A-Fa-f:.]*"
# generic-param with SWS around ";" and "=" (RFC 3261 §25.1 SEMI, EQUAL).
_PARAM_RE = re.compile(
    rf"[ \t]*;[ \t]*({_TOKEN})"
    rf"(?:[ \t]*=[ \t]*({_IPV6_ADDRESS}|{_TOKEN}|{_QUOTED}|{_IPV6_REFERENCE}))?[ \t]*"
)
_QUOTED_RE = re.compile(_QUOTED)
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)
_NEEDS_QUOTED_PAIR_RE = re.compile(r'[\\"\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')
_DISPLAY_TOKENS_RE = re.compile(rf"({_TOKEN}(?:[ \t]+{_TOKEN})*)?[ \t]*<")
_TOKEN_WORDS_RE = re.compile(rf"{_TOKEN}(?:[ \t]+{_TOKEN})*")
_BARE_URI_RE = re.compile(r"[^ \t;]+")
_ABSOLUTE_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:[^ \t\r\n<>\"]+")
_SENT_PROTOCOL_RE = re.compile(
    rf"({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]+"
    rf"(?:\[([0-9A-Fa-f:.]+)\]|({_HOSTNAME}))(?:[ \t]*:[ \t]*([0-9]{{1,5}}))?"
)


def _unescape(text):
    """%HEX HEX decoding (RFC 3261 §19.1.2), done exactly once (RFC 3986 §2.4)."""
    if "%" not in text:
        return text
    return unquote(text, errors="surrogateescape")


def _escape(text, safe):
    return quote(text, safe=safe, errors="surrogateescape")


def _port(digits):
    port = int(digits)
    if not 0 < port < 65536:
        raise ValueError("port out of range")
    return port


def _ipv6(text):
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        raise ValueError("bad IPv6 reference") from None
    return text


def _host_text(host):
    return f"[{host}]" if ":" in host else host


def parse_params(text, pos=0):
    """
    Header parameters (RFC 3261 §25.1 generic-param) from text[pos:] to the
    end: a dict with lower-case names, the value string (a quoted value keeps
    its quotes: RFC 3840 feature tags tell "x" from x) or None for a flag.
    """
    params = {}
    end = len(text)
    match = _PARAM_RE.match
    while pos < end:
        found = match(text, pos)
        if found is None:
            raise ValueError("malformed parameter")
        params[found.group(1).lower()] = found.group(2)
        pos = found.end()
    return params


def format_params(params):
    return "".join(f";{name}" if value is None else f";{name}={value}" for name, value in params.items())


class SipURI:
    """A sip: or sips: URI (RFC 3261 §19.1); components are held unescaped."""

    __slots__ = ("headers", "host", "params", "password", "port", "scheme", "user")

    def __init__(self, host, user=None, port=None, params=None, headers=None, scheme="sip", password=None):
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params = {} if params is None else params
        self.headers = {} if headers is None else headers

    @classmethod
    def parse(cls, text):
        found = _SIP_URI_RE.fullmatch(text)
        if found is None:
            raise ValueError("malformed sip URI")
        scheme, user, password, ipv6, host, port, params_text, headers_text = found.groups()
        if user is not None:
            user = _unescape(user)
            if password is not None:
                password = _unescape(password)
        host = _ipv6(ipv6) if ipv6 is not None else host
        port = _port(port) if port is not None else None
        params = {}
        if params_text:
            for item in params_text[1:].split(";"):
                name, has_value, value = item.partition("=")
                params[_unescape(name).lower()] = _unescape(value) if has_value else None
        headers = {}
        if headers_text:
            for item in headers_text.split("&"):
                name, _, value = item.partition("=")
                headers[_unescape(name)] = _unescape(value)
        return cls(host, user, port, params, headers, scheme.lower(), password)

    def __str__(self):
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(_escape(self.user, _USER_SAFE))
            if self.password is not None:
                parts += [":", _escape(self.password, _PASSWORD_SAFE)]
            parts.append("@")
        parts.append(_host_text(self.host))
        if self.port is not None:
            parts.append(f":{self.port}")
        for name, value in self.params.items():
            parts += [";", _escape(name, _PARAM_SAFE)]
            if value is not None:
                parts += ["=", _escape(value, _PARAM_SAFE)]
        if self.headers:
            parts.append("?")
            parts.append(
                "&".join(f"{_escape(n, _HEADER_SAFE)}={_escape(v, _HEADER_SAFE)}" for n, v in self.headers.items())
            )
        return "".join(parts)

    def __repr__(self):
        return f"SipURI({str(self)!r})"

    def __eq__(self, other):
        # Comparison rules of RFC 3261 §19.1.4 belong to the layers that need
        # them (registrar, proxy); this is plain component equality.
        if not isinstance(other, SipURI):
            return NotImplemented
        return (
            self.scheme == other.scheme
            and self.user == other.user
            and self.password == other.password
            and self.host.lower() == other.host.lower()
            and self.port == other.port
            and self.params == other.params
            and self.headers == other.headers
        )

    __hash__ = None


def parse_uri(text):
    """A SipURI for sip/sips, else the absolute URI text itself (tel:, urn:, ...)."""
    if text[:4].lower() in ("sip:", "sips"):
        return SipURI.parse(text)
    if not _ABSOLUTE_URI_RE.fullmatch(text):
        raise ValueError("bad URI")
    return text


def _unquote_display(quoted):
    inner = quoted[1:-1]
    return _QUOTED_PAIR_RE.sub(r"\1", inner) if "\\" in inner else inner


def _quote_display(name):
    if _TOKEN_WORDS_RE.fullmatch(name):
        return name
    # CR and LF cannot be quoted (RFC 3261 §25.1 quoted-pair): a display name
    # from outside must not be able to start a new header line.
    name = name.replace("\r", " ").replace("\n", " ")
    return '"' + _NEEDS_QUOTED_PAIR_RE.sub(r"\\\g<0>", name) + '"'


class NameAddr:
    """
    From/To/Contact/Route/Record-Route/Refer-To values: [display-name] <uri>
    *(;param) or addr-spec *(;param) (params after a bare addr-spec belong to
    the header, RFC 3261 §20.10).
    """

    __slots__ = ("display_name", "params", "uri")

    def __init__(self, uri, display_name=None, params=None):
        self.uri = uri
        self.display_name = display_name
        self.params = {} if params is None else params

    @property
    def tag(self):
        return self.params.get("tag")

    @classmethod
    def parse(cls, text):
        text = text.strip(" \t")
        display_name = None
        if text.startswith("<"):
            angle = 0
        elif text.startswith('"'):
            quoted = _QUOTED_RE.match(text)
            if quoted is None:
                raise ValueError("unterminated quoted display name")
            display_name = _unquote_display(quoted.group())
            angle = text.find("<", quoted.end())
            if angle < 0 or text[quoted.end() : angle].strip(" \t"):
                raise ValueError("display name without <uri>")
        else:
            # RFC 4475 lwsdisp: no LWS is needed between a token display
            # name and "<".
            words = _DISPLAY_TOKENS_RE.match(text)
            angle = words.end() - 1 if words is not None else -1
            if words is not None and words.group(1):
                display_name = words.group(1)
        if angle >= 0:
            close = text.find(">", angle + 1)
            if close < 0:
                raise ValueError("missing '>'")
            uri_text = text[angle + 1 : close]
            if not uri_text or uri_text.strip(" \t") != uri_text:
                raise ValueError("white space inside <>")
            params_at = close + 1
        else:
            bare = _BARE_URI_RE.match(text)
            if bare is None:
                raise ValueError("empty address")
            uri_text = bare.group()
            # RFC 3261 §20.10: a URI with a comma, question mark or semicolon
            # must be in name-addr form.
            if "?" in uri_text or "," in uri_text:
                raise ValueError("addr-spec needs <> around it")
            params_at = bare.end()
        return cls(parse_uri(uri_text), display_name, parse_params(text, params_at))

    def __str__(self):
        parts = []
        if self.display_name:
            parts += [_quote_display(self.display_name), " "]
        parts += ["<", str(self.uri), ">", format_params(self.params)]
        return "".join(parts)

    def __repr__(self):
        return f"NameAddr({str(self)!r})"


class Via:
    """One Via value (RFC 3261 §20.42): sent-protocol, sent-by and via-params."""

    __slots__ = ("host", "params", "port", "protocol", "transport")

    def __init__(self, transport, host, port=None, params=None, protocol="SIP/2.0"):
        self.protocol = protocol
        self.transport = transport.upper()
        self.host = host
        self.port = port
        self.params = {} if params is None else params

    @property
    def branch(self):
        return self.params.get("branch")

    @classmethod
    def parse(cls, text):
        text = text.strip(" \t")
        found = _SENT_PROTOCOL_RE.match(text)
        if found is None:
            raise ValueError("malformed Via")
        name, version, transport, ipv6, host, port = found.groups()
        host = _ipv6(ipv6) if ipv6 is not None else host
        port = _port(port) if port is not None else None
        return cls(transport, host, port, parse_params(text, found.end()), f"{name.upper()}/{version}")

    def __str__(self):
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {_host_text(self.host)}{port}{format_params(self.params)}"

    def __repr__(self):
        return f"Via({str(self)!r})"
