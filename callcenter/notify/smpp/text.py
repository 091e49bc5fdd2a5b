"""
A message's text as the short_message octets of one or more submit_sm.

 - The GSM 03.38 default alphabet (3GPP TS 23.038 §6.2.1, data_coding 0)
   when every character is in it or in its extension table (reached with
   the escape 0x1B, two septets each), one septet per octet: SMPP carries
   the default alphabet unpacked.  160 septets in one SMS.
 - Otherwise UCS2 (data_coding 8): UTF-16BE, so a character outside the
   Basic Multilingual Plane (an emoji) is a surrogate pair, as handsets
   expect.  70 characters (140 octets) in one SMS.
 - Longer: concatenated SMS (3GPP TS 23.040 §9.2.3.24.1), each segment
   opening with a 6-octet User Data Header (IEI 0x00, an 8-bit reference
   shared by the segments of one message, their count, this one's number)
   and the submit_sm's esm_class carrying UDHI (0x40): 153 septets or 67
   UTF-16 units a segment.  A cut never separates an escape from its
   character nor the two halves of a surrogate pair.
 - Longer than C{max_segments}: cut to fit and ended with an ellipsis
   ("..." in the GSM alphabet, which has no "…"; "…" in UCS2).
"""

import re

from callcenter.notify.smpp.pdu import DATA_CODING_DEFAULT, DATA_CODING_UCS2

# The default alphabet by code (0x1B, the escape, is no character).
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
ESCAPE = 0x1B
# The extension table: each character is the escape, then this code.
GSM_EXTENSION = {
    "\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65,
}

SINGLE_SEPTETS = 160
SINGLE_UCS2_OCTETS = 140
SEGMENT_SEPTETS = 153  # 160 less the 6-octet UDH (7 septets with its fill bits)
SEGMENT_UCS2_OCTETS = 134  # 140 less the UDH: 67 UTF-16 units
UDH_LENGTH = 6

GSM_ELLIPSIS = "..."
UCS2_ELLIPSIS = "…"

# text.translate(_TO_SEPTETS) gives one character per septet, code < 128,
# for text in the alphabet; anything else stays (or becomes) >= 128, so
# .isascii() of the result says whether the text fits, in C, in one pass.
_NOT_GSM = "\uffff"
_TO_SEPTETS = {ord(ch): chr(code) for code, ch in enumerate(GSM_BASIC) if code != ESCAPE}
_TO_SEPTETS.update({ord(ch): chr(ESCAPE) + chr(code) for ch, code in GSM_EXTENSION.items()})
for _code in range(128):
    _TO_SEPTETS.setdefault(_code, _NOT_GSM)  # ASCII that is not GSM: ` and control characters
del _code

# A character in neither table: one is enough to make the text UCS2.
_GSM_CHARACTERS = "".join(ch for ch in GSM_BASIC if chr(ESCAPE) != ch) + "".join(GSM_EXTENSION)
_OUTSIDE_GSM = re.compile("[^" + re.escape(_GSM_CHARACTERS) + "]")

_FROM_SEPTETS = {code: ch for code, ch in enumerate(GSM_BASIC) if code != ESCAPE}
_FROM_EXTENSION = {code: ch for ch, code in GSM_EXTENSION.items()}


def is_gsm(text):
    return text.translate(_TO_SEPTETS).isascii()


def encode_gsm(text):
    """C{text} as unpacked septets; ValueError if a character is not in the alphabet."""
    septets = text.translate(_TO_SEPTETS)
    if not septets.isascii():
        raise ValueError("text is not in the GSM 03.38 default alphabet")
    return septets.encode("ascii")


def decode_gsm(data):
    """Unpacked septets as text (an escape before an unknown code is read as a space, TS 23.038 §6.2.1.1)."""
    chars = []
    escaped = False
    for code in data:
        if escaped:
            chars.append(_FROM_EXTENSION.get(code, " "))
            escaped = False
        elif code == ESCAPE:
            escaped = True
        else:
            chars.append(_FROM_SEPTETS.get(code & 0x7F, " "))
    return "".join(chars)


def _gsm_cut(data, end):
    # The escape is never the last octet of a whole text (a code follows it).
    return end - 1 if data[end - 1] == ESCAPE else end


def _ucs2_cut(data, end):
    # A high surrogate (D800-DBFF) must stay with the low one after it.
    return end - 2 if 0xD8 <= data[end - 2] <= 0xDB else end


def _split(data, single, size, safe_cut):
    if len(data) <= single:
        return [data]
    segments = []
    start, total = 0, len(data)
    while start < total:
        end = start + size
        if end >= total:
            end = total
        else:
            end = safe_cut(data, end)
        segments.append(data[start:end])
        start = end
    return segments


_GSM_LIMITS = (SINGLE_SEPTETS, SEGMENT_SEPTETS, _gsm_cut)
_UCS2_LIMITS = (SINGLE_UCS2_OCTETS, SEGMENT_UCS2_OCTETS, _ucs2_cut)


def _encode(text):
    """(data_coding, octets, (single limit, segment size, safe cut))."""
    # translate() is slow on text mostly outside the table (a dict miss per
    # character): a Chinese text is told apart by the regex, at its first
    # character, before any translating.
    if text.isascii() or _OUTSIDE_GSM.search(text) is None:
        septets = text.translate(_TO_SEPTETS)
        if septets.isascii():
            return DATA_CODING_DEFAULT, septets.encode("ascii"), _GSM_LIMITS
    return DATA_CODING_UCS2, text.encode("utf-16-be", "surrogatepass"), _UCS2_LIMITS


def segment_text(text, max_segments=6):
    """
    (data_coding, segments, truncated): C{text} encoded, in at most
    C{max_segments} payloads (no UDH yet: see L{with_udh}), and whether it
    had to be cut to fit.
    """
    data_coding, data, (single, size, cut) = _encode(text)
    if len(data) <= single:  # the common case: one SMS
        return data_coding, [data], False
    segments = _split(data, single, size, cut)
    if len(segments) <= max_segments:
        return data_coding, segments, False
    # The longest prefix that fits with the ellipsis (in the same alphabet:
    # cutting only shortens a text, so a GSM text stays GSM).
    ellipsis = GSM_ELLIPSIS if data_coding == DATA_CODING_DEFAULT else UCS2_ELLIPSIS
    low, high = 0, len(text)
    best = None
    while low <= high:
        middle = (low + high) // 2
        encoded = _encode(text[:middle].rstrip() + ellipsis)[1]
        fitted = _split(encoded, single, size, cut)
        if len(fitted) <= max_segments:
            best, low = fitted, middle + 1
        else:
            high = middle - 1
    if best is None:  # max_segments < 1: nothing fits, not even the ellipsis
        raise ValueError(f"no text fits in {max_segments} segments")
    return data_coding, best, True


def with_udh(segments, reference):
    """The short_message of each segment: its concatenation UDH (IEI 0x00, 8-bit C{reference}), then the payload."""
    total = len(segments)
    if total > 255:
        raise ValueError(f"{total} segments: at most 255 in one concatenated message")
    reference &= 0xFF
    return [bytes((UDH_LENGTH - 1, 0x00, 0x03, reference, total, number)) + payload
            for number, payload in enumerate(segments, 1)]


def split_udh(short_message):
    """(UDH octets, payload) of a short_message whose esm_class has UDHI."""
    if not short_message:
        return b"", b""
    length = short_message[0] + 1
    return short_message[:length], short_message[length:]


def decode_text(data_coding, short_message, udhi=False):
    """
    The text of a received short_message (a mobile-originated message),
    never failing: UCS2, the GSM alphabet, else Latin-1 (IA5, Latin-1 and
    the national codings an SMSC here would not send are shown as such).
    """
    if udhi:
        short_message = split_udh(short_message)[1]
    if data_coding == DATA_CODING_UCS2:
        return short_message.decode("utf-16-be", "replace")
    if data_coding == DATA_CODING_DEFAULT:
        return decode_gsm(short_message)
    return short_message.decode("latin-1")
