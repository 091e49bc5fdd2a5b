"""
A notification as an Internet message (RFC 5322, MIME per RFC 2045-2049),
in the bytes SMTP carries: CRLF line ends, no line over 998 octets.

Headers that are not ASCII (a Chinese subject, the broker's name) are
RFC 2047 encoded-words in UTF-8; the text is text/plain; charset=utf-8,
sent as is when it is short-lined ASCII and in base64 otherwise (smaller
than quoted-printable for Chinese, and never a long line).  The only
8-bit content ever produced is an internationalised address (RFC 6532),
which the client then sends with SMTPUTF8.

Why not C{EmailMessage} for every message: composing one with the
header registry and generator costs ~1.1 ms here, which alone would cap
sending below 1,000 messages a second.  A notification is one text part
and a handful of headers, so they are assembled from the same stdlib
pieces the package uses underneath (L{email.header.Header} for
encoded-words, L{email.utils} for addresses and dates) in under 10 µs
(subjects cached: alerts repeat them).  A message with attachments (the daily statement as PDF)
is rare and goes through L{email.message.MIMEPart} whole.  The tests
parse both kinds back with C{email.policy.default}.
"""

import base64
import datetime
import functools
import hashlib
from dataclasses import dataclass
from email import policy as email_policy
from email.header import Header
from email.message import MIMEPart
from email.utils import format_datetime, quote

# RFC 5322 §2.1.1: at most 998 octets a line, CRLF excluded.
MAX_LINE = 998

# 7bit so that the generator picks base64 or quoted-printable for any
# non-ASCII part: the message then passes through relays without 8BITMIME.
_MIME_POLICY = email_policy.SMTP.clone(cte_type="7bit")

# Characters that would break a header or an address out of its line: a
# subject with CRLF in it must not become a Bcc header.
_CONTROLS = {code: " " for code in [*range(0x20), 0x7F]}
_ADDRESS_FORBIDDEN = frozenset('<>()[]\\,;:"') | frozenset(map(chr, [*range(0x21), 0x7F]))
_NAME_SPECIALS = frozenset('()<>[]:;@\\,."')


class InvalidAddress(ValueError):
    """An address SMTP cannot carry, or that would inject commands or headers."""


@dataclass(frozen=True)
class Attachment:
    """A file carried with the text: the daily statement, say (C{content_type} 'application/pdf')."""

    content: bytes
    filename: str
    content_type: str = "application/pdf"


def one_line(text):
    """C{text} with control characters (CR and LF among them) turned into spaces."""
    return text.translate(_CONTROLS).strip()


def normalize_address(address):
    """
    C{address} checked for what an SMTP path and a header may hold (RFC
    5321 §4.1.2, dot-atoms only: no quoted local parts, no comments), its
    domain in IDNA (A-labels) when only the domain is not ASCII.  A local
    part that is not ASCII stays as it is: it needs SMTPUTF8 (RFC 6531).

    @raise InvalidAddress: it is not one.
    """
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise InvalidAddress(f"not an e-mail address: {address!r}")
    if any(c in _ADDRESS_FORBIDDEN for c in address) or "@" in local:
        raise InvalidAddress(f"e-mail address with characters SMTP cannot carry: {address!r}")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise InvalidAddress(f"e-mail address with a malformed local part: {address!r}")
    labels = domain.split(".")
    if any(not label or label.startswith("-") or label.endswith("-") for label in labels):
        raise InvalidAddress(f"e-mail address with a malformed domain: {address!r}")
    if not domain.isascii() and local.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as e:
            raise InvalidAddress(f"e-mail domain not valid in IDNA: {address!r}: {e}") from None
    # RFC 5321 §4.5.3.1: 64 octets of local part, 255 of domain.
    if len(local.encode("utf-8")) > 64 or len(domain.encode("utf-8")) > 255:
        raise InvalidAddress(f"e-mail address too long: {address!r}")
    return f"{local}@{domain}"


def _encoded_words(text, header_name):
    """RFC 2047 encoded-words of C{text} in UTF-8, folded (each word at most 75 characters)."""
    return Header(text, "utf-8", header_name=header_name).encode(linesep="\r\n")


@functools.lru_cache(maxsize=4096)
def subject_header(subject):
    """
    The Subject line, CRLF included.  Cached: alerts on one stock and
    fills of one order share their subjects.
    """
    subject = one_line(subject)
    # ASCII folds at spaces; a word too long to fold would make a long
    # line, so that (rare) subject is encoded, which splits anywhere.
    if subject.isascii() and all(len(word) <= 76 for word in subject.split()):
        value = Header(subject, "us-ascii", header_name="Subject").encode(linesep="\r\n")
    else:
        value = _encoded_words(subject, "Subject")
    return b"Subject: " + value.encode("ascii") + b"\r\n"


def mailbox(name, address):
    """C{"name" <address>} for a header, the name quoted or encoded as it needs."""
    name = one_line(name)
    if not name:
        return address
    if not name.isascii():
        name = _encoded_words(name, "From")
    elif any(c in _NAME_SPECIALS for c in name):
        name = f'"{quote(name)}"'
    return f"{name} <{address}>"


def _text_body(text):
    """(Content-Transfer-Encoding, body bytes) for C{text} as text/plain; charset=utf-8."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.isascii() and "\x00" not in text:
        lines = text.split("\n")
        if max(map(len, lines)) <= MAX_LINE:
            body = "\r\n".join(lines)
            return "7bit", (body if body.endswith("\r\n") else body + "\r\n").encode("ascii")
    # RFC 2045 §6.8: text is put in canonical form (CRLF) before base64.
    data = text.replace("\n", "\r\n").encode("utf-8")
    return "base64", base64.encodebytes(data).replace(b"\n", b"\r\n")


class MailComposer:
    """
    Makes the message for each L{callcenter.notify.message.OutgoingMessage}
    from one sender.

    @param from_address: the From address (and usually the envelope sender).
    @param from_name: its display name, e.g. the broker's name in Chinese.
    @param message_id_domain: the right-hand side of Message-IDs; the From
        address's domain by default.
    """

    def __init__(self, from_address, from_name="", message_id_domain=None):
        self.from_address = normalize_address(from_address)
        self._domain = message_id_domain or self.from_address.rpartition("@")[2]
        self._from_line = ("From: " + mailbox(from_name, self.from_address) + "\r\n").encode("utf-8")
        self._date_second = None
        self._date_line = b""

    def message_id(self, message):
        """
        A Message-ID that is the same every time this message is sent
        (RFC 5322 §3.6.4), so that a resend after a lost reply can be told
        from a new message: a digest of the outbox's idempotency key.
        """
        key = message.idempotency_key or f"message-{message.message_id}"
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
        return f"<notify.{digest}@{self._domain}>"

    def _date(self, now):
        second = int(now)
        if second != self._date_second:
            moment = datetime.datetime.fromtimestamp(second, datetime.timezone.utc)
            self._date_line = f"Date: {format_datetime(moment)}\r\n".encode("ascii")
            self._date_second = second
        return self._date_line

    def compose(self, message, now, attachments=()):
        """
        (recipient, message bytes) for C{message} at POSIX time C{now}, the
        C{attachments} (L{Attachment}s) after the text.

        @raise InvalidAddress: C{message.address} is not an address SMTP can carry.
        """
        recipient = normalize_address(message.address)
        head = [
            self._from_line,
            b"To: " + recipient.encode("utf-8") + b"\r\n",
            subject_header(message.subject),
            self._date(now),
            b"Message-ID: " + self.message_id(message).encode("ascii") + b"\r\n",
            b"MIME-Version: 1.0\r\n",
            # RFC 3834 §5: no auto-replies (vacation notices) to notifications.
            b"Auto-Submitted: auto-generated\r\n",
        ]
        if attachments:
            return recipient, b"".join(head) + self._multipart(message.body, attachments)
        encoding, body = _text_body(message.body)
        head.append(b'Content-Type: text/plain; charset="utf-8"\r\n')
        head.append(b"Content-Transfer-Encoding: " + encoding.encode("ascii") + b"\r\n\r\n")
        head.append(body)
        return recipient, b"".join(head)

    def _multipart(self, text, attachments):
        """The Content-Type header on, for a multipart/mixed of the text and the attachments."""
        container = MIMEPart(policy=_MIME_POLICY)
        container.set_content(text, charset="utf-8")
        for attachment in attachments:
            maintype, _, subtype = attachment.content_type.partition("/")
            container.add_attachment(
                attachment.content, maintype=maintype, subtype=subtype or "octet-stream",
                filename=one_line(attachment.filename),
            )
        return container.as_bytes(policy=_MIME_POLICY)
