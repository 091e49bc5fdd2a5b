"""
SDP (RFC 8866, which obsoletes RFC 4566) and the offer/answer model
(RFC 3264) for our media engine.  Pure data and functions, no I/O.

L{SessionDescription.parse} reads a message body, L{SessionDescription.to_bytes}
writes one; L{answer}, L{offer}, L{accept_answer} and L{hold_offer} decide
what the media engine sends and receives and sum it up in a
L{NegotiatedAudio}.

What the media engine does, and so all we ever agree to:

  - one audio stream over RTP/AVP, RTCP on the RTP port + 1 (RFC 3550 §11).
    No SRTP, no AVPF, no a=rtcp-mux: leaving rtcp-mux out of an answer
    declines it (RFC 5761 §5.1.1).  Any other stream is refused with port 0
    (RFC 3264 §6).
  - PCMU or PCMA, 8000 Hz, one channel, one codec for the whole call.
  - 20 ms packets, always.  We say a=ptime:20 and disregard the peer's
    a=ptime, which states what it would like to receive, not what it can
    (RFC 8866 §6.4); every endpoint we meet takes 20 ms.
  - RFC 4733 telephone-event at 8000 Hz: DTMF events 0-15 and flash (16).

Hold: we put a peer on hold with a=sendonly/inactive (RFC 3264 §8.4) and
understand the RFC 2543 form c=0.0.0.0 on input, never generating it.
"""

import copy
import dataclasses
import re
from dataclasses import dataclass, field

# (sends, receives) for each media direction attribute, RFC 8866 §6.7.
_SENDS_RECEIVES = {
    "sendrecv": (True, True),
    "sendonly": (True, False),
    "recvonly": (False, True),
    "inactive": (False, False),
}
_DIRECTION = {flow: name for name, flow in _SENDS_RECEIVES.items()}

# Static payload types of the codecs we speak, RFC 3551 §6 Table 4.
_STATIC_PAYLOAD_TYPES = {"PCMU": "0", "PCMA": "8"}
_STATIC_MAPPINGS = {pt: f"{name}/8000" for name, pt in _STATIC_PAYLOAD_TYPES.items()}
_OUR_CODECS = tuple(_STATIC_PAYLOAD_TYPES)

_PTIME_MS = 20
_TELEPHONE_EVENT = "telephone-event/8000"
# RFC 4733 §3.2: events 0-15 are the DTMF digits, 16 is flash.
_OUR_EVENTS = frozenset(range(17))
# RFC 4733 §2.4.1: a receiver that gives no events list takes 0-15.
_DEFAULT_EVENTS = "0-15"
# RFC 3551 §3: the dynamic payload type range.
_DYNAMIC_PAYLOAD_TYPES = range(96, 128)

# RFC 8866 §5: the order of the lines we do not model, within the session
# and within a media description.  t= and r= share a rank so that each r=
# stays behind its t=; lines of unknown types go last, before a=.
_SESSION_ORDER = {"i": 0, "u": 1, "e": 2, "p": 3, "c": 4, "b": 5, "t": 6, "r": 6, "z": 7, "k": 8}
_MEDIA_ORDER = {"i": 0, "c": 1, "b": 2, "k": 3}

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_NUMBER = re.compile(r"[0-9]{1,40}")
_PORT = re.compile(r"([0-9]{1,5})(?:/([0-9]{1,5}))?")
_PAYLOAD_TYPE = re.compile(r"[0-9]{1,3}")
_PTIME = re.compile(r"[0-9]{1,4}")
_EVENT_RANGE = re.compile(r"([0-9]{1,3})(?:-([0-9]{1,3}))?")


class SDPError(ValueError):
    """The SDP is malformed.  The message is one short line."""


class NoCommonCodec(Exception):
    """
    There is no audio stream we can take: the offer gets 488 Not Acceptable
    Here (RFC 3261 §21.4.26).  The message is one short line.
    """


@dataclass(frozen=True)
class Origin:
    """The o= line, RFC 8866 §5.2."""

    username: str
    session_id: int
    session_version: int
    nettype: str
    addrtype: str
    address: str


@dataclass
class MediaDescription:
    """
    One m= section, RFC 8866 §5.14.  C{formats} are payload types as text;
    C{rtpmap} and C{fmtp} map a payload type to the attribute's value;
    C{connection} is the address of this section's own c=, if any;
    C{attributes} holds every other a= value in order and C{other_lines}
    every other line as (type, value).
    """

    media: str
    port: int
    proto: str
    formats: list[str]
    rtpmap: dict[str, str] = field(default_factory=dict)
    fmtp: dict[str, str] = field(default_factory=dict)
    direction: str | None = None
    connection: str | None = None
    ptime: int | None = None
    attributes: list[str] = field(default_factory=list)
    port_count: int | None = None
    other_lines: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class SessionDescription:
    """
    A whole SDP body.  C{connection} is the address of the session-level
    c=; C{direction} a session-level direction attribute, which every media
    section without its own inherits (RFC 8866 §6.7).  C{attributes} and
    C{other_lines} keep what we do not model, as in L{MediaDescription}; the
    t= and r= lines are among the other lines.
    """

    origin: Origin
    session_name: str
    connection: str | None = None
    media: list[MediaDescription] = field(default_factory=list)
    direction: str | None = None
    attributes: list[str] = field(default_factory=list)
    other_lines: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, text):
        """
        Read SDP from C{str} or UTF-8 C{bytes}.  RFC 8866 §5 wants CRLF and
        no trailing blanks, but phones send LF alone and trailing spaces, so
        any line break is taken and trailing blanks and empty lines dropped.

        @raise SDPError: the text is not structurally SDP.
        """
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError:
                raise SDPError("SDP is not UTF-8 text") from None
        lines = [line.rstrip(" \t") for line in _LINE_BREAK.split(text)]
        lines = [line for line in lines if line]
        if not lines or lines[0].replace(" ", "") != "v=0":
            raise SDPError("SDP must begin with v=0")
        session = cls(origin=None, session_name=None)
        for line in lines[1:]:
            if len(line) < 2 or line[1] != "=" or not "a" <= line[0] <= "z":
                raise SDPError(f"not an SDP line: {_excerpt(line)}")
            kind, value = line[0], line[2:]
            if kind == "m":
                session.media.append(_parse_media_line(value))
            elif session.media:
                _parse_media_level(session.media[-1], kind, value)
            else:
                _parse_session_level(session, kind, value)
        _check_complete(session)
        _put_in_order(session)
        return session

    def to_bytes(self):
        """SDP with CRLF line ends, the lines in RFC 8866 §5 order."""
        o = self.origin
        lines = [
            "v=0",
            f"o={o.username} {o.session_id} {o.session_version} {o.nettype} {o.addrtype} {o.address}",
            # RFC 8866 §5.3: a session without a name is "s= ".
            f"s={self.session_name or ' '}",
        ]
        modelled = []
        if self.connection is not None:
            modelled.append(("c", _connection_value(self.connection)))
        if not any(kind == "t" for kind, _ in self.other_lines):
            # RFC 8866 §5.9 requires a t=; RFC 3264 §5 says t=0 0.
            modelled.append(("t", "0 0"))
        lines += _ordered_lines(modelled + self.other_lines, _SESSION_ORDER)
        lines += [f"a={attribute}" for attribute in self.attributes]
        if self.direction is not None:
            lines.append(f"a={self.direction}")
        for media in self.media:
            lines += _media_lines(media)
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")


@dataclass(frozen=True)
class AudioFormat:
    """
    What the media engine sends and receives: a payload type carrying
    PCMU or PCMA, and the telephone-event payload type if DTMF goes in RTP.
    """

    payload_type: int
    encoding: str
    dtmf_payload_type: int | None


@dataclass(frozen=True)
class NegotiatedAudio:
    """
    The outcome of an offer/answer exchange for the media engine.
    C{direction} is ours; C{on_hold} says the peer wants nothing from us
    (a=sendonly, a=inactive or c=0.0.0.0, RFC 3264 §8.4).
    """

    remote_address: str
    remote_port: int
    codec: AudioFormat
    direction: str
    on_hold: bool


def answer(
    offer,
    local_address,
    local_port,
    session_id,
    session_version,
    supported=("PCMU", "PCMA"),
    direction="sendrecv",
):
    """
    Answer an offer (RFC 3264 §6): the same m= lines in the same order, the
    first audio stream we can take accepted with one codec, every other
    stream refused with port 0.  C{direction} is what we want: C{sendonly}
    keeps a peer we hold on hold when it sends a new offer.  The caller
    keeps C{session_id} for the dialog and bumps C{session_version} for
    each new SDP it sends (RFC 3264 §8).

    @return: (the answer, what was agreed)
    @raise NoCommonCodec: no audio stream we can take.
    """
    supported = _codec_names(supported)
    wanted_send, wanted_receive = _flow(direction)
    _check_port(local_port)
    index, payload_type, encoding = _choose_offered_audio(offer, supported)
    offered = offer.media[index]
    remote_send, remote_receive = _remote_flow(offer, offered)
    # RFC 3264 §6.1: we send what the offerer receives and vice versa.
    our_direction = _DIRECTION[(wanted_send and remote_receive, wanted_receive and remote_send)]

    formats = [payload_type]
    rtpmap = {payload_type: f"{encoding}/8000"}
    fmtp = {}
    dtmf_payload_type = _telephone_event_payload_type(offered)
    events = _answer_events(offered.fmtp.get(dtmf_payload_type)) if dtmf_payload_type else None
    if events:
        # RFC 3264 §6.1: the same payload type number as offered.
        formats.append(dtmf_payload_type)
        rtpmap[dtmf_payload_type] = _TELEPHONE_EVENT
        fmtp[dtmf_payload_type] = events
    else:
        dtmf_payload_type = None
    accepted = MediaDescription(
        media=offered.media,
        port=local_port,
        proto=offered.proto,
        formats=formats,
        rtpmap=rtpmap,
        fmtp=fmtp,
        direction=our_direction,
        ptime=_PTIME_MS,
    )
    media = [accepted if i == index else _refused(m) for i, m in enumerate(offer.media)]
    description = SessionDescription(
        origin=_our_origin(local_address, session_id, session_version),
        session_name="callcenter",
        connection=local_address,
        media=media,
        # RFC 3264 §6: the answer's t= equals the offer's.
        other_lines=[(kind, value) for kind, value in offer.other_lines if kind in "tr"],
    )
    negotiated = NegotiatedAudio(
        remote_address=_connection(offer, offered),
        remote_port=offered.port,
        codec=AudioFormat(
            int(payload_type),
            encoding,
            int(dtmf_payload_type) if dtmf_payload_type else None,
        ),
        direction=our_direction,
        on_hold=not remote_receive,
    )
    return description, negotiated


def offer(
    local_address,
    local_port,
    session_id,
    session_version,
    codecs=("PCMU", "PCMA"),
    dtmf_payload_type=101,
    direction="sendrecv",
):
    """
    An offer of one audio stream (RFC 3264 §5): C{codecs} in our order of
    preference, telephone-event on C{dtmf_payload_type} unless it is None.
    """
    codecs = _codec_names(codecs)
    _flow(direction)
    _check_port(local_port)
    formats = [_STATIC_PAYLOAD_TYPES[name] for name in codecs]
    # Static types need no rtpmap (RFC 3551 §6), but many phones look for one.
    rtpmap = {pt: _STATIC_MAPPINGS[pt] for pt in formats}
    fmtp = {}
    if dtmf_payload_type is not None:
        if dtmf_payload_type not in _DYNAMIC_PAYLOAD_TYPES:
            raise ValueError(f"dtmf_payload_type must be 96-127, not {dtmf_payload_type!r}")
        dtmf = str(dtmf_payload_type)
        formats.append(dtmf)
        rtpmap[dtmf] = _TELEPHONE_EVENT
        fmtp[dtmf] = _format_events(_OUR_EVENTS)
    audio = MediaDescription(
        media="audio",
        port=local_port,
        proto="RTP/AVP",
        formats=formats,
        rtpmap=rtpmap,
        fmtp=fmtp,
        direction=direction,
        ptime=_PTIME_MS,
    )
    return SessionDescription(
        origin=_our_origin(local_address, session_id, session_version),
        session_name="callcenter",
        connection=local_address,
        media=[audio],
        other_lines=[("t", "0 0")],
    )


def accept_answer(offer, answer):
    """
    What the answer to our C{offer} agreed (RFC 3264 §7): the first format
    of the answer's audio stream that we offered, sent with the answer's
    payload type numbers, which are what the answerer receives (§6.1).

    @raise NoCommonCodec: the answer refused our audio or chose nothing we
        offered.
    @raise SDPError: the answer does not match the offer's m= lines (§6).
    """
    if len(answer.media) != len(offer.media):
        raise SDPError(f"answer has {len(answer.media)} m= lines, the offer {len(offer.media)}")
    reason = "we offered no audio stream"
    for offered, answered in zip(offer.media, answer.media):
        if offered.media != "audio" or offered.port == 0:
            continue
        if answered.port == 0:
            reason = "the answer refused the audio stream"
            continue
        offered_codecs = {_codec_of(offered, pt, _OUR_CODECS) for pt in offered.formats}
        chosen = [
            (pt, codec)
            for pt in answered.formats
            if (codec := _codec_of(answered, pt, offered_codecs - {None}))
        ]
        if not chosen:
            reason = "the answer chose no codec we offered"
            continue
        payload_type, encoding = chosen[0]
        dtmf_payload_type = None
        if _telephone_event_payload_type(offered):
            dtmf_payload_type = _telephone_event_payload_type(answered)
        offered_send, offered_receive = _flow(_effective_direction(offer, offered))
        remote_send, remote_receive = _remote_flow(answer, answered)
        return NegotiatedAudio(
            remote_address=_connection(answer, answered),
            remote_port=answered.port,
            codec=AudioFormat(
                int(payload_type),
                encoding,
                int(dtmf_payload_type) if dtmf_payload_type else None,
            ),
            # An answer may only narrow what we offered (RFC 3264 §6.1).
            direction=_DIRECTION[
                (offered_send and remote_receive, offered_receive and remote_send)
            ],
            on_hold=offered_send and not remote_receive,
        )
    raise NoCommonCodec(reason)


def hold_offer(previous, session_version):
    """
    A re-INVITE offer putting the peer on hold (RFC 3264 §8.4): the SDP we
    last sent in the dialog with every live stream no longer receiving, so
    sendrecv becomes sendonly and recvonly becomes inactive.  RFC 3264 §8
    wants the version one more than C{previous}'s.
    """
    if session_version != previous.origin.session_version + 1:
        raise ValueError(
            f"session_version must be {previous.origin.session_version + 1}, not {session_version!r}"
        )
    held = copy.deepcopy(previous)
    held.origin = dataclasses.replace(previous.origin, session_version=session_version)
    for media in held.media:
        if media.port != 0:
            send, _ = _flow(_effective_direction(held, media))
            media.direction = _DIRECTION[(send, False)]
    return held


def _excerpt(text):
    """Quote a piece of the input for an error message of one short line."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _number(text, what):
    if not _NUMBER.fullmatch(text):
        raise SDPError(f"{what} is not a number: {_excerpt(text)}")
    return int(text)


def _parse_origin(value):
    fields = value.split()
    if len(fields) != 6:
        raise SDPError(f"o= needs 6 fields: {_excerpt(value)}")
    username, session_id, session_version, nettype, addrtype, address = fields
    return Origin(
        username,
        _number(session_id, "o= session id"),
        _number(session_version, "o= session version"),
        nettype,
        addrtype,
        address,
    )


def _parse_connection(value):
    """The address of a c= line, RFC 8866 §5.7."""
    fields = value.split()
    if len(fields) != 3:
        raise SDPError(f"c= needs 3 fields: {_excerpt(value)}")
    return fields[2]


def _connection_value(address):
    return f"IN {'IP6' if ':' in address else 'IP4'} {address}"


def _parse_media_line(value):
    fields = value.split()
    if len(fields) < 3:
        raise SDPError(f"m= needs media, port and proto: {_excerpt(value)}")
    media, port, proto, *formats = fields
    match = _PORT.fullmatch(port)
    if not match or int(match[1]) > 65535 or (match[2] and int(match[2]) == 0):
        raise SDPError(f"m= port is not a port number: {_excerpt(port)}")
    return MediaDescription(
        media=media,
        port=int(match[1]),
        proto=proto,
        formats=formats,
        port_count=int(match[2]) if match[2] else None,
    )


def _parse_session_level(session, kind, value):
    if kind == "o":
        if session.origin is not None:
            raise SDPError("more than one o= line")
        session.origin = _parse_origin(value)
    elif kind == "s":
        if session.session_name is not None:
            raise SDPError("more than one s= line")
        session.session_name = value
    elif kind == "v":
        raise SDPError("more than one v= line")
    elif kind == "c" and session.connection is None:
        session.connection = _parse_connection(value)
    elif kind == "a":
        name = value.lower()
        if name in _SENDS_RECEIVES:
            session.direction = name
        else:
            session.attributes.append(value)
    else:
        session.other_lines.append((kind, value))


def _parse_media_level(media, kind, value):
    if kind in "vos":
        raise SDPError(f"{kind}= line inside an m= section")
    if kind == "c" and media.connection is None:
        media.connection = _parse_connection(value)
    elif kind == "a":
        _parse_media_attribute(media, value)
    else:
        media.other_lines.append((kind, value))


def _parse_media_attribute(media, value):
    name, colon, argument = value.partition(":")
    name = name.lower()
    if name in ("rtpmap", "fmtp") and colon:
        payload_type, *rest = argument.split(None, 1) or [""]
        if not payload_type or (name == "rtpmap" and not rest):
            raise SDPError(f"malformed a={name}: {_excerpt(argument)}")
        target = media.rtpmap if name == "rtpmap" else media.fmtp
        target[payload_type] = rest[0] if rest else ""
    elif name == "ptime" and colon and _PTIME.fullmatch(argument.strip()):
        # A ptime that is not a whole number of ms (RFC 8866 §6.4 allows a
        # fraction) is kept as an unknown attribute: we send 20 ms anyway.
        media.ptime = int(argument)
    elif name in _SENDS_RECEIVES and not colon:
        media.direction = name
    else:
        media.attributes.append(value)


def _check_complete(session):
    if session.origin is None:
        raise SDPError("no o= line")
    if session.session_name is None:
        raise SDPError("no s= line")
    if session.connection is None:
        # RFC 8866 §5.7: c= at session level or in every media section; a
        # stream refused with port 0 needs no address.
        for media in session.media:
            if media.port != 0 and media.connection is None:
                raise SDPError(f"m={media.media} has no c= and there is no session c=")


def _put_in_order(session):
    """
    Sort the lines we do not model as L{SessionDescription.to_bytes} writes
    them, so that what we parse equals what we parse back from our output.
    """
    if not any(kind == "t" for kind, _ in session.other_lines):
        # RFC 8866 §5.9 requires a t=; without one the session is unbounded.
        session.other_lines.append(("t", "0 0"))
    session.other_lines.sort(key=_rank(_SESSION_ORDER))
    for media in session.media:
        media.other_lines.sort(key=_rank(_MEDIA_ORDER))


def _rank(order):
    return lambda line: order.get(line[0], len(order))


def _ordered_lines(lines, order):
    """Lines in the RFC 8866 §5 order; sorted() is stable, so equals keep theirs."""
    return [f"{kind}={value}" for kind, value in sorted(lines, key=_rank(order))]


def _media_lines(media):
    port = media.port if media.port_count is None else f"{media.port}/{media.port_count}"
    lines = [" ".join([f"m={media.media}", str(port), media.proto, *media.formats])]
    modelled = [] if media.connection is None else [("c", _connection_value(media.connection))]
    lines += _ordered_lines(modelled + media.other_lines, _MEDIA_ORDER)
    # Each format's rtpmap and fmtp together, in format order, then any
    # that name a payload type the m= line does not list.
    payload_types = list(dict.fromkeys([*media.formats, *media.rtpmap, *media.fmtp]))
    for pt in payload_types:
        if pt in media.rtpmap:
            lines.append(f"a=rtpmap:{pt} {media.rtpmap[pt]}")
        if pt in media.fmtp:
            lines.append(f"a=fmtp:{pt} {media.fmtp[pt]}".rstrip(" "))
    if media.ptime is not None:
        lines.append(f"a=ptime:{media.ptime}")
    lines += [f"a={attribute}" for attribute in media.attributes]
    if media.direction is not None:
        lines.append(f"a={media.direction}")
    return lines


def _flow(direction):
    """(sends, receives) of a direction attribute."""
    try:
        return _SENDS_RECEIVES[direction]
    except KeyError:
        raise ValueError(
            f"direction must be one of {', '.join(_SENDS_RECEIVES)}, not {direction!r}"
        ) from None


def _effective_direction(session, media):
    # RFC 3264 §5.1: sendrecv unless the media section or session says otherwise.
    return media.direction or session.direction or "sendrecv"


def _connection(session, media):
    address = media.connection or session.connection
    if address is None:
        raise SDPError(f"m={media.media} has no c= and there is no session c=")
    return address


def _remote_flow(session, media):
    """(sends, receives) of the peer for one of its media sections."""
    send, receive = _flow(_effective_direction(session, media))
    # RFC 3264 §8.4: c=0.0.0.0 means send the peer neither RTP nor RTCP.
    if _connection(session, media) == "0.0.0.0":
        receive = False
    return send, receive


def _codec_names(codecs):
    names = tuple(name.upper() for name in codecs)
    if not names or any(name not in _OUR_CODECS for name in names):
        raise ValueError(f"codecs must be some of {', '.join(_OUR_CODECS)}, not {codecs!r}")
    return names


def _check_port(port):
    if not 0 < port < 65536:
        raise ValueError(f"local_port must be 1-65535, not {port!r}")


def _mapping(media, payload_type):
    """(ENCODING, clock, channels) of a payload type; static ones need no rtpmap."""
    mapping = media.rtpmap.get(payload_type) or _STATIC_MAPPINGS.get(payload_type)
    if mapping is None:
        return None
    encoding, _, rest = mapping.partition("/")
    clock, _, channels = rest.partition("/")
    # RFC 4855 §3: encoding names are case-insensitive.
    return encoding.upper(), clock, channels or "1"


def _codec_of(media, payload_type, codecs):
    """The name of one of C{codecs} that C{payload_type} carries, or None."""
    if not _PAYLOAD_TYPE.fullmatch(payload_type) or int(payload_type) > 127:
        return None
    mapping = _mapping(media, payload_type)
    if mapping and mapping[0] in codecs and mapping[1:] == ("8000", "1"):
        return mapping[0]
    return None


def _telephone_event_payload_type(media):
    for payload_type in media.formats:
        if _PAYLOAD_TYPE.fullmatch(payload_type) and _mapping(media, payload_type) == (
            "TELEPHONE-EVENT",
            "8000",
            "1",
        ):
            return payload_type
    return None


def _choose_offered_audio(offer, supported):
    """(index, payload type, codec) of the audio we take, RFC 3264 §6.1."""
    reason = "no audio stream in the offer"
    for index, media in enumerate(offer.media):
        if media.media != "audio":
            continue
        if media.port == 0:
            reason = "the offer disables its audio stream"
        elif media.proto.upper() != "RTP/AVP":
            reason = f"audio over {_excerpt(media.proto)}, only RTP/AVP is supported"
        else:
            # The offerer lists formats in its order of preference.
            for payload_type in media.formats:
                if codec := _codec_of(media, payload_type, supported):
                    return index, payload_type, codec
            reason = f"no {' or '.join(supported)} among offered formats {_excerpt(' '.join(media.formats))}"
    raise NoCommonCodec(reason)


def _parse_events(text):
    """The event codes of a telephone-event fmtp (RFC 4733 §2.4.1), or None."""
    events = set()
    for item in text.split(","):
        match = _EVENT_RANGE.fullmatch(item.strip())
        if not match:
            return None
        low = int(match[1])
        high = int(match[2]) if match[2] else low
        if not low <= high <= 255:
            return None
        events.update(range(low, high + 1))
    return events


def _format_events(events):
    ranges = []
    for event in sorted(events):
        if ranges and ranges[-1][1] == event - 1:
            ranges[-1][1] = event
        else:
            ranges.append([event, event])
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in ranges)


def _answer_events(offered_fmtp):
    """
    The events list of our answer: those offered that we handle (RFC 4733
    §7.1.1).  An absent or unreadable list is taken as the 0-15 default.
    """
    offered = _parse_events(offered_fmtp or _DEFAULT_EVENTS) or _parse_events(_DEFAULT_EVENTS)
    return _format_events(offered & _OUR_EVENTS)


def _our_origin(local_address, session_id, session_version):
    return Origin(
        "callcenter",
        session_id,
        session_version,
        "IN",
        "IP6" if ":" in local_address else "IP4",
        local_address,
    )


def _refused(media):
    # RFC 3264 §6: a refused stream keeps its m= line, with port 0.
    return MediaDescription(
        media=media.media, port=0, proto=media.proto, formats=list(media.formats)
    )
