"""
SIP messages (RFC 3261 §7, §20): parsing datagrams and streams into Request
and Response objects, writing them back, and the response a UAS builds from
a request (§8.2.6).

Every SIP packet passes through here, so the parser does one pass over the
header section with precompiled expressions and parses only what the SIP
core needs on every message (start line, Via, From, To, Call-ID, CSeq,
Max-Forwards, Content-Length, Contact); everything else stays text until a
layer above asks for it.
"""

import re

from callcenter.sip.address import TOKEN_CHARS, NameAddr, SipURI, Via, parse_uri

__all__ = [
    "Headers",
    "Request",
    "Response",
    "SIPParseError",
    "StreamFramer",
    "make_response",
    "parse_message",
]


class SIPParseError(Exception):
    """
    A message that cannot be taken in.  C{reason} is one printable line, fit
    for the reason phrase of the answer; C{status} is the code to answer with
    (400; 505 for another SIP version, RFC 3261 §21.5.6; 513 for an
    oversized stream message); C{message} is the partly parsed Request when
    it carries the header fields a response copies (Via, From, To, Call-ID,
    CSeq, RFC 3261 §8.2.6.2), else None.  Those fields may be the malformed
    part themselves: when its top Via does not parse, answer to the
    packet's source address.
    """

    def __init__(self, reason, message=None, status=400):
        super().__init__(reason)
        self.reason = reason
        self.message = message
        self.status = status


# Canonical spelling of the header names we know (RFC 3261 §20 and the
# extensions a contact center meets); unknown names keep their own.
_KNOWN_NAMES = (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Accept-Resource-Priority",
    "Alert-Info", "Allow", "Allow-Events", "Authentication-Info", "Authorization", "Call-ID",
    "Call-Info", "Contact", "Content-Disposition", "Content-Encoding", "Content-ID",
    "Content-Language", "Content-Length", "Content-Transfer-Encoding", "Content-Type", "CSeq",
    "Date", "Error-Info", "Event", "Expires", "From", "History-Info", "Identity", "Identity-Info",
    "In-Reply-To", "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE", "Organization",
    "P-Asserted-Identity", "P-Associated-URI", "P-Preferred-Identity", "Path", "Priority",
    "Privacy", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason",
    "Record-Route", "Refer-To", "Referred-By", "Reject-Contact", "Replaces", "Reply-To",
    "Request-Disposition", "Require", "Resource-Priority", "Retry-After", "Route", "RSeq",
    "Security-Client", "Security-Server", "Security-Verify", "Server", "Service-Route",
    "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject", "Subscription-State", "Supported",
    "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
)  # fmt: skip

# Compact forms: RFC 3261 §7.3.3 and the IANA SIP header registry.
_COMPACT_NAMES = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To", "v": "Via",
    "o": "Event", "r": "Refer-To", "b": "Referred-By", "u": "Allow-Events",
    "x": "Session-Expires", "y": "Identity", "a": "Accept-Contact", "j": "Reject-Contact",
    "d": "Request-Disposition",
}  # fmt: skip

# lower-case spelling or compact letter -> (canonical name, lookup key)
_NAMES = {name.lower(): (name, name.lower()) for name in _KNOWN_NAMES}
_NAMES.update({letter: _NAMES[name.lower()] for letter, name in _COMPACT_NAMES.items()})
# The spellings seen on the wire, so that most lines need no lower().
_WIRE_NAMES = dict(_NAMES)
_WIRE_NAMES.update({name: _NAMES[name.lower()] for name in _KNOWN_NAMES})
_WIRE_NAMES.update({letter.upper(): _NAMES[letter] for letter in _COMPACT_NAMES})

# Fields whose grammar is a comma-separated list (RFC 3261 §7.3.1: only these
# may be combined into one line, so only these are split).
_LIST_KEYS = frozenset(
    name.lower()
    for name in (
        "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Accept-Resource-Priority",
        "Alert-Info", "Allow", "Allow-Events", "Call-Info", "Contact", "Content-Encoding",
        "Content-Language", "Error-Info", "History-Info", "In-Reply-To", "P-Asserted-Identity",
        "P-Associated-URI", "P-Preferred-Identity", "Path", "Proxy-Require", "Reason",
        "Record-Route", "Reject-Contact", "Request-Disposition", "Require", "Resource-Priority",
        "Route", "Security-Client", "Security-Server", "Security-Verify", "Service-Route",
        "Supported", "Unsupported", "Via", "Warning",
    )
)  # fmt: skip

# One element of a comma-separated list: commas inside quotes or <> do not
# separate.  An unterminated quote or < runs to the end, so that a broken
# value stays broken instead of losing its opening character.
_LIST_ITEM_RE = re.compile(r'(?:[^,"<]+|"(?:[^"\\]|\\.)*"?|<[^>]*>?)+', re.DOTALL)


def _name_and_key(name):
    known = _NAMES.get(name.lower())
    if known is not None:
        return known
    return name, name.lower()


def _split_list(value):
    if "," not in value:
        return [value] if value else []
    return [item.strip(" \t") for item in _LIST_ITEM_RE.findall(value) if item.strip(" \t")]


class Headers:
    """
    Ordered, case-insensitive header fields.  Compact forms (RFC 3261 §7.3.3
    and the registered ones) are stored under their canonical long names
    with canonical capitalisation; unknown names keep the case they arrived
    with but match case-insensitively.

    Each add() (or header line received) is one stored value; get_all()
    splits the fields whose grammar is a comma-separated list (Via, Contact,
    Route, ...) at commas outside quotes and <>, and never splits the others
    (WWW-Authenticate, Authorization, Date, ...).
    """

    __slots__ = ("_fields",)

    def __init__(self, fields=()):
        # [(name as written, lower-case key, value)], in message order
        self._fields = []
        if isinstance(fields, dict):
            fields = fields.items()
        for name, value in fields:
            self.add(name, value)

    def get(self, name, default=None):
        """The first value (the first list element for list fields)."""
        key = _name_and_key(name)[1]
        for _, field_key, value in self._fields:
            if field_key == key:
                if key in _LIST_KEYS:
                    items = _split_list(value)
                    return items[0] if items else value
                return value
        return default

    def get_all(self, name):
        key = _name_and_key(name)[1]
        values = [value for _, field_key, value in self._fields if field_key == key]
        if key in _LIST_KEYS:
            return [item for value in values for item in _split_list(value)]
        return values

    def add(self, name, value):
        name, key = _name_and_key(name)
        self._fields.append((name, key, value))

    def set(self, name, value):
        """Replace every value of that name, keeping the position of the first."""
        name, key = _name_and_key(name)
        fields = self._fields
        for index, field in enumerate(fields):
            if field[1] == key:
                fields[index] = (name, key, value)
                self._fields = fields[: index + 1] + [f for f in fields[index + 1 :] if f[1] != key]
                return
        fields.append((name, key, value))

    def remove(self, name):
        key = _name_and_key(name)[1]
        self._fields = [field for field in self._fields if field[1] != key]

    def __contains__(self, name):
        key = _name_and_key(name)[1]
        return any(field[1] == key for field in self._fields)

    def items(self):
        """(canonical name, value) in order, one per stored value."""
        return [(name, value) for name, _, value in self._fields]

    def __len__(self):
        return len(self._fields)

    def __repr__(self):
        return f"Headers({self.items()!r})"

    def _values(self, key):
        return [value for _, field_key, value in self._fields if field_key == key]


# RFC 3261 §21 reason phrases, plus the later codes a contact center meets.
REASON_PHRASES = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated", 200: "OK", 202: "Accepted",
    204: "No Notification", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service", 400: "Bad Request",
    401: "Unauthorized", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 407: "Proxy Authentication Required",
    408: "Request Timeout", 410: "Gone", 412: "Conditional Request Failed",
    413: "Request Entity Too Large", 414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    422: "Session Interval Too Small", 423: "Interval Too Brief", 428: "Use Identity Header",
    429: "Provide Referrer Identity", 430: "Flow Failed", 433: "Anonymity Disallowed",
    439: "First Hop Lacks Outbound Support", 440: "Max-Breadth Exceeded", 469: "Bad Info Package",
    470: "Consent Needed", 480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here", 489: "Bad Event",
    491: "Request Pending", 493: "Undecipherable", 494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 580: "Precondition Failure", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
    607: "Unwanted", 608: "Rejected",
}  # fmt: skip
# RFC 3261 §8.1.3.2: an unknown code is treated as the x00 of its class.
_CLASS_PHRASES = {1: "Trying", 2: "OK", 3: "Multiple Choices", 4: "Bad Request", 5: "Server Internal Error", 6: "Busy Everywhere"}

_CSEQ_RE = re.compile(rf"([0-9]+)[ \t]+([{TOKEN_CHARS}]+)")
_MAX_CSEQ = 2**32 - 1  # RFC 3261 §8.1.1.5


def _parse_cseq(value):
    found = _CSEQ_RE.fullmatch(value)
    # Length first: int() of a huge digit string is slow, then refused.
    if found is None or len(found.group(1)) > 10 or int(found.group(1)) > _MAX_CSEQ:
        raise ValueError("bad CSeq")
    return int(found.group(1)), found.group(2)


def _parse_vias(values):
    return [Via.parse(item) for value in values for item in _split_list(value)]


def _parse_contacts(values):
    parsed = []
    for value in values:
        for item in _split_list(value):
            try:
                parsed.append(NameAddr.parse(item))
            except ValueError:
                parsed.append(item)
    return parsed


class _Message:
    __slots__ = ("_parsed", "body", "headers", "version")

    def __init__(self, headers, body, version):
        self.version = version
        # A Headers, or anything Headers() takes: [(name, value)] or a dict.
        self.headers = headers if isinstance(headers, Headers) else Headers(headers or ())
        self.body = body
        # header key -> (raw values, parsed): parse_message fills it, and
        # a changed header is simply parsed again.
        self._parsed = {}

    def _view(self, key, parse):
        raw = self.headers._values(key)
        if not raw:
            raise ValueError(f"no {_NAMES[key][0]} header")
        cached = self._parsed.get(key)
        if cached is not None and cached[0] == raw:
            return cached[1]
        parsed = parse(raw)
        self._parsed[key] = (raw, parsed)
        return parsed

    @property
    def call_id(self):
        """The Call-ID, or None when the message has none."""
        return self.headers.get("Call-ID")

    @property
    def cseq(self):
        """(number, method); ValueError when missing or malformed."""
        return self._view("cseq", lambda raw: _parse_cseq(raw[0]))

    @property
    def vias(self):
        """The Via values, topmost first (a new list; the Via objects are shared)."""
        return list(self._view("via", _parse_vias))

    @property
    def contacts(self):
        """
        The Contact values, one per list element: a L{NameAddr}, or the
        element's text where it is not one (the wildcard "*", or a
        malformed value in a message built here).  No Contact: [].
        """
        raw = self.headers._values("contact")
        cached = self._parsed.get("contact")
        if cached is not None and cached[0] == raw:
            return cached[1]
        parsed = _parse_contacts(raw)
        self._parsed["contact"] = (raw, parsed)
        return parsed

    def set_vias(self, vias):
        """
        Replace the Via fields with C{vias} (L{Via}s, topmost first), one
        field each after the others, as L{vias} will then give them.
        """
        values = [str(via) for via in vias]
        fields = self.headers._fields
        fields[:] = [field for field in fields if field[1] != "via"]
        fields.extend([("Via", "via", value) for value in values])
        self._parsed["via"] = (values, list(vias))

    @property
    def from_addr(self):
        return self._view("from", lambda raw: NameAddr.parse(raw[0]))

    @property
    def to_addr(self):
        return self._view("to", lambda raw: NameAddr.parse(raw[0]))

    def _start_line(self):
        raise NotImplementedError

    def to_bytes(self):
        """Start line, headers in order, Content-Length (always, = len(body)), CRLF CRLF, body."""
        body = self.body
        lines = [self._start_line()]
        length_written = False
        for name, key, value in self.headers._fields:
            if key == "content-length":
                if length_written:
                    continue
                value = str(len(body))
                length_written = True
            lines.append(f"{name}: {value}")
        if not length_written:
            lines.append(f"Content-Length: {len(body)}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + body


class Request(_Message):
    __slots__ = ("method", "uri")

    def __init__(self, method, uri, headers=None, body=b"", version="SIP/2.0"):
        super().__init__(headers, body, version)
        self.method = method
        self.uri = uri

    @property
    def sip_uri(self):
        """The Request-URI parsed (SipURI for sip/sips, else the text); ValueError if malformed."""
        cached = self._parsed.get(None)
        if cached is not None and cached[0] == self.uri:
            return cached[1]
        parsed = parse_uri(self.uri)
        self._parsed[None] = (self.uri, parsed)
        return parsed

    def _start_line(self):
        return f"{self.method} {self.uri} {self.version}"

    def __repr__(self):
        return f"<Request {self.method} {self.uri}>"


class Response(_Message):
    __slots__ = ("reason", "status")

    def __init__(self, status, reason=None, headers=None, body=b"", version="SIP/2.0"):
        super().__init__(headers, body, version)
        self.status = status
        if reason is None:
            reason = REASON_PHRASES.get(status) or _CLASS_PHRASES.get(status // 100, "")
        self.reason = reason

    def _start_line(self):
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self):
        return f"<Response {self.status} {self.reason}>"


_FOLD_RE = re.compile(r"\r\n[ \t]+")  # LWS = [*WSP CRLF] 1*WSP (RFC 3261 §25.1)
_TOKEN_RE = re.compile(rf"[{TOKEN_CHARS}]+")
_REQUEST_LINE_RE = re.compile(rf'([{TOKEN_CHARS}]+) ([^\x00-\x20\x7f<>"]+) (SIP/[0-9]+\.[0-9]+)')
_STATUS_LINE_RE = re.compile(r"SIP/2\.0 ([1-6][0-9][0-9])(?: (.*))?", re.DOTALL)
_URI_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:")
_DIGITS_RE = re.compile(r"[0-9]{1,10}")
_NO_SPACE_RE = re.compile(r"[^ \t]+")
# RFC 3261 §20: fields a message carries at most once.
_SINGLE_KEYS = frozenset(("call-id", "cseq", "from", "to", "max-forwards", "content-length"))
_REQUIRED = (("via", "Via"), ("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq"))


def parse_message(data):
    """
    One datagram (RFC 3261 §18.3) -> Request or Response.  Content-Length may
    be absent (the body is the rest of the datagram); octets past it are
    dropped; a body shorter than it is an error.  Raises SIPParseError, and
    nothing else, for anything malformed.
    """
    try:
        return _parse(bytes(data), None)
    except SIPParseError:
        raise
    except Exception as exc:
        # Safety net for the network edge: a parser bug must cost one
        # message, not the listener.
        raise SIPParseError("Bad Request - Malformed message") from exc


def _parse(data, content_length):
    """content_length: None to read it from the headers (datagrams), else the framed body size."""
    start = 0
    while data.startswith(b"\r\n", start):  # RFC 3261 §7.5
        start += 2
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        raise SIPParseError("Bad Request - Incomplete header section")
    head = data[start:end].decode("utf-8", "surrogateescape")
    if "\r\n " in head or "\r\n\t" in head:
        head = _FOLD_RE.sub(" ", head)
    crlfs = head.count("\r\n")
    if head.count("\r") != crlfs or head.count("\n") != crlfs:
        raise SIPParseError("Bad Request - Bare CR or LF")
    lines = head.split("\r\n")
    start_line = lines[0]
    problem = None
    status = 400

    if start_line.startswith("SIP/"):
        found = _STATUS_LINE_RE.fullmatch(start_line)
        if found is None:
            raise SIPParseError("Bad Request - Malformed Status-Line")
        message = Response(int(found.group(1)), found.group(2) or "")
    else:
        found = _REQUEST_LINE_RE.fullmatch(start_line)
        if found is not None:
            method, uri, version = found.groups()
            if version != "SIP/2.0":
                problem, status = "Version Not Supported", 505  # RFC 3261 §21.5.6
            else:
                problem = _check_request_uri(uri)
        else:
            # Keep enough of a malformed Request-Line (RFC 4475 ltgtruri,
            # lwsruri, lwsstart, trws: <>, LWS, extra SP) to answer a 400.
            words = start_line.split()
            if len(words) < 3 or not words[-1].startswith("SIP/") or not _TOKEN_RE.fullmatch(words[0]):
                raise SIPParseError("Bad Request - Malformed start line")
            method, uri, version = words[0], " ".join(words[1:-1]), "SIP/2.0"
            problem = "Bad Request - Malformed Request-Line"
        message = Request(method, uri, version=version)

    fields = message.headers._fields
    first = {}  # key -> first value: one pass instead of a scan per field
    vias = []
    contacts = []
    wire_names = _WIRE_NAMES
    is_token = _TOKEN_RE.fullmatch
    for line in lines[1:]:
        # header-name HCOLON value: the name is a token, so the first ":"
        # ends it (RFC 3261 §7.3.1).
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        value = value.strip(" \t")
        known = wire_names.get(name) or _NAMES.get(name.lower())
        if known is None:
            if not colon or not is_token(name):
                problem = problem or "Bad Request - Malformed header line"
                continue
            fields.append((name, name.lower(), value))
            continue
        if not colon:
            problem = problem or "Bad Request - Malformed header line"
            continue
        name, key = known
        if key not in first:
            first[key] = value
        elif key in _SINGLE_KEYS:
            problem = problem or f"Bad Request - Multiple {name}"  # RFC 4475 multi01
        if key == "via":
            vias.append(value)
        elif key == "contact":
            contacts.append(value)
        fields.append((name, key, value))

    missing = [name for key, name in _REQUIRED if key not in first]
    parsed = message._parsed
    if not missing:
        problem = problem or _check_core_headers(first, vias, contacts, parsed)
    is_request = isinstance(message, Request)
    if is_request and problem is None:
        cseq = parsed.get("cseq")
        if cseq is not None and cseq[1][1] != message.method:
            problem = "Bad Request - CSeq method mismatch"  # RFC 3261 §8.1.1.5, RFC 4475 mismatch01

    body_start = end + 4
    available = len(data) - body_start
    length = first.get("content-length")
    if content_length is None and length is not None:
        if _DIGITS_RE.fullmatch(length) is None:
            problem = problem or "Bad Request - Bad Content-Length"
        else:
            content_length = int(length)
            if content_length > available:
                problem = problem or "Bad Request - Body shorter than Content-Length"
    if content_length is None or content_length > available:
        message.body = data[body_start:]
    else:
        message.body = data[body_start : body_start + content_length]

    if missing:
        raise SIPParseError(f"Bad Request - Missing {missing[0]}")
    if problem is not None:
        raise SIPParseError(problem, message if is_request else None, status)
    return message


def _check_request_uri(uri):
    if _URI_SCHEME_RE.match(uri) is None:
        return "Bad Request - Malformed Request-URI"
    if uri[:4].lower() in ("sip:", "sips"):
        try:
            parsed = SipURI.parse(uri)
        except ValueError:
            return "Bad Request - Malformed Request-URI"
        if parsed.headers:
            return "Bad Request - Headers in Request-URI"  # RFC 3261 §19.1.1 table 1
    return None


def _check_core_headers(first, vias, contacts, parsed):
    """
    Parse what every message needs (first: header key -> first value) into
    the message's view cache; the first problem as a reason, else None.
    """
    try:
        parsed["via"] = (vias, _parse_vias(vias))
    except ValueError:
        return "Bad Request - Malformed Via"
    for key, name in (("from", "From"), ("to", "To")):
        raw = first[key]
        try:
            parsed[key] = ([raw], NameAddr.parse(raw))
        except ValueError:
            return f"Bad Request - Malformed {name}"
    raw = first["cseq"]
    try:
        parsed["cseq"] = ([raw], _parse_cseq(raw))
    except ValueError:
        return "Bad Request - Malformed CSeq"
    if _NO_SPACE_RE.fullmatch(first["call-id"]) is None:
        return "Bad Request - Malformed Call-ID"
    max_forwards = first.get("max-forwards")
    if max_forwards is not None and _DIGITS_RE.fullmatch(max_forwards) is None:
        return "Bad Request - Malformed Max-Forwards"
    # Kept: the registrar reads them again.
    parsed_contacts = _parse_contacts(contacts)
    parsed["contact"] = (contacts, parsed_contacts)
    for item in parsed_contacts:
        if item.__class__ is str and item != "*":
            return "Bad Request - Malformed Contact"
    return None


_LENGTH_LINE_RE = re.compile(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*((?:\r\n)?[^\r\n]*)", re.IGNORECASE)


class StreamFramer:
    """
    For SIP over TCP (RFC 3261 §18.3): feed() bytes as they arrive, get
    complete messages; Content-Length is mandatory on streams; CRLF
    keepalives (RFC 5626 §3.5.1: CRLFCRLF ping) are skipped and counted in
    C{keepalives} (the transport answers each with CRLF).

    feed() raises SIPParseError on a framing error (no or bad Content-Length,
    a message larger than max_message_size): the caller closes the
    connection, and later feed() calls raise the same error.  A well-framed
    message that does not parse raises too, after it has been consumed: the
    caller may answer it (error.message) and go on feeding.  Messages
    completed earlier in the same feed() call are then on error.complete.
    """

    def __init__(self, max_message_size=65535):
        self.max_message_size = max_message_size
        self.keepalives = 0
        self._buffer = bytearray()
        self._scanned = 0  # how far the search for CRLFCRLF got (no rescans)
        self._size = None  # the whole message's size, once its headers are in
        self._broken = None

    def feed(self, data):
        if self._broken is not None:
            raise self._broken
        buffer = self._buffer
        buffer += data
        complete = []
        while True:
            if self._size is None:
                # Keepalives and the CRLFs RFC 3261 §7.5 lets precede a message.
                while buffer.startswith(b"\r\n"):
                    if buffer.startswith(b"\r\n\r\n"):
                        self.keepalives += 1
                        del buffer[:4]
                    elif len(buffer) < 4 and b"\r\n\r\n".startswith(bytes(buffer)):
                        return complete  # maybe the start of a ping
                    else:
                        del buffer[:2]
                if not buffer:
                    return complete
                end = buffer.find(b"\r\n\r\n", max(0, self._scanned - 3))
                if end < 0:
                    self._scanned = len(buffer)
                    if len(buffer) > self.max_message_size:
                        self._fail("Message Too Large", complete)
                    return complete
                self._size = end + 4 + self._content_length(buffer, end + 4, complete)
                if self._size > self.max_message_size:
                    self._fail("Message Too Large", complete)
            size = self._size
            if len(buffer) < size:
                return complete
            packet = bytes(buffer[:size])
            del buffer[:size]
            self._size = None
            self._scanned = 0
            try:
                complete.append(_parse(packet, size - packet.find(b"\r\n\r\n") - 4))
            except SIPParseError as error:
                error.complete = complete
                raise
            except Exception as exc:
                error = SIPParseError("Bad Request - Malformed message")
                error.complete = complete
                raise error from exc

    def _content_length(self, buffer, head_end, complete):
        lengths = _LENGTH_LINE_RE.findall(buffer, 0, head_end)
        if not lengths:
            self._fail("Bad Request - Missing Content-Length", complete)
        values = {value.strip(b" \t\r\n") for value in lengths}
        if len(values) != 1:
            self._fail("Bad Request - Conflicting Content-Length", complete)
        value = values.pop()
        if not value.isdigit() or len(value) > 10:
            self._fail("Bad Request - Bad Content-Length", complete)
        return int(value)

    @property
    def broken(self):
        """True once a framing error has put the stream out of step for good."""
        return self._broken is not None

    def _fail(self, reason, complete):
        self._broken = SIPParseError(reason, status=513 if reason == "Message Too Large" else 400)
        self._broken.complete = complete
        del self._buffer[:]
        raise self._broken


_COPIED_KEYS = frozenset(("from", "to", "call-id", "cseq"))


def make_response(request, status, reason=None, to_tag=None):
    """
    The response a UAS builds for request (RFC 3261 §8.2.6.2): every Via in
    order, From, To (plus ;tag=to_tag when given and To has no tag),
    Call-ID, CSeq; Timestamp for 100 Trying (§8.2.6.1); Content-Length 0.
    """
    headers = Headers()
    fields = headers._fields
    # One pass over the request: every Via, the first of the others.
    copied = {}
    for field in request.headers._fields:
        key = field[1]
        if key == "via":
            fields.append(field)
        elif key in _COPIED_KEYS and key not in copied:
            copied[key] = field[2]
    to = None
    for key in ("from", "to", "call-id", "cseq"):
        value = copied.get(key)
        if value is not None:
            name = _NAMES[key][0]
            if key == "to":
                try:
                    to = request.to_addr  # Parsed once, with the request.
                except ValueError:
                    pass  # A malformed To is echoed as it came (answering a 400).
                else:
                    params = dict(to.params)  # The response's own, should it change.
                    if to_tag is not None and to.tag is None:
                        value = f"{value};tag={to_tag}"
                        params["tag"] = to_tag
                    to = ([value], NameAddr(to.uri, to.display_name, params))
            fields.append((name, key, value))
    if status == 100:
        timestamp = request.headers._values("timestamp")
        if timestamp:
            fields.append(("Timestamp", "timestamp", timestamp[0]))
    fields.append(("Content-Length", "content-length", "0"))
    response = Response(status, reason, headers)
    if to is not None:
        # The To just written, already parsed: what the transaction layer
        # checks for a tag, with nothing to parse again.
        response._parsed["to"] = to
    return response
