"""
SDP parsing and writing (RFC 8866) and offer/answer (RFC 3264), against
bodies in the shape real endpoints send.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.sip.sdp import (
    AudioFormat,
    MediaDescription,
    NegotiatedAudio,
    NoCommonCodec,
    Origin,
    SDPError,
    SessionDescription,
    accept_answer,
    answer,
    hold_offer,
    offer,
)


def sdp(text):
    """A body with CRLF line ends, as most endpoints send it."""
    return "\r\n".join(line.strip() for line in text.strip().splitlines()).encode() + b"\r\n"


# SIPp's built-in uac scenario; SIPp scenario files are written with LF only.
SIPP_UAC = b"""v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""

# SIPp's uac_pcap scenario: PCMA and RFC 2833 events with a gap.
SIPP_UAC_PCAP = sdp("""
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-11,16
""")

BARESIP = sdp("""
v=0
o=- 1948256118 3178935937 IN IP4 192.168.1.20
s=-
c=IN IP4 192.168.1.20
t=0 0
a=tool:baresip 1.0.0
m=audio 10230 RTP/AVP 96 97 9 0 8 101
b=AS:128
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:97 G7221/16000
a=fmtp:97 bitrate=32000
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp-mux
a=sendrecv
a=label:1
a=ssrc:1413127297 cname:6e0d9c3c-7d4c-4f5a-9a3e-1f0b2f8a8c11
a=ptime:20
""")

# Linphone offers telephone-event at three clock rates; only 8000 Hz is ours.
LINPHONE = sdp("""
v=0
o=alice 2174 3265 IN IP4 10.0.0.12
s=Talk
c=IN IP4 10.0.0.12
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 SILK/16000
a=rtpmap:98 speex/16000
a=fmtp:98 vbr=on
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp:7079
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
""")

ASTERISK_18 = sdp("""
v=0
o=- 1622565432 1622565432 IN IP4 203.0.113.5
s=Asterisk
c=IN IP4 203.0.113.5
t=0 0
m=audio 17246 RTP/AVP 8 0 3 101
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:3 GSM/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
""")

# Polycom VVX: direction at session level, G.722 first.
POLYCOM = sdp("""
v=0
o=- 1623768422 1623768422 IN IP4 192.168.10.51
s=Polycom IP Phone
c=IN IP4 192.168.10.51
t=0 0
a=sendrecv
m=audio 2222 RTP/AVP 9 102 0 8 18 127
a=rtpmap:9 G722/8000
a=rtpmap:102 G7221/16000
a=fmtp:102 bitrate=32000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:127 telephone-event/8000
""")

# Yealink T46 with "RFC 2543 hold" switched on, putting us on hold.
YEALINK_HOLD_2543 = sdp("""
v=0
o=- 20001 20002 IN IP4 192.168.1.101
s=SDP data
c=IN IP4 0.0.0.0
t=0 0
m=audio 11796 RTP/AVP 0 8 9 18 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:9 G722/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=ptime:20
a=sendrecv
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
""")

# A softphone offering video first, then audio with its own c=.
VIDEO_FIRST = sdp("""
v=0
o=bob 3724394400 3724394405 IN IP4 198.51.100.7
s=-
c=IN IP4 198.51.100.7
t=0 0
m=video 51372 RTP/AVP 96 97
b=AS:512
a=rtpmap:96 H264/90000
a=fmtp:96 profile-level-id=42801F
a=rtpmap:97 VP8/90000
m=audio 49170 RTP/AVP 0 101
c=IN IP4 198.51.100.8
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
""")

REAL_WORLD = {
    "sipp-uac": SIPP_UAC,
    "sipp-uac-pcap": SIPP_UAC_PCAP,
    "baresip": BARESIP,
    "linphone": LINPHONE,
    "asterisk-18": ASTERISK_18,
    "polycom": POLYCOM,
    "yealink-hold": YEALINK_HOLD_2543,
    "video-first": VIDEO_FIRST,
}


def offer_from(text):
    return SessionDescription.parse(sdp(text))


def answer_to(body, **kwargs):
    return answer(SessionDescription.parse(body), "192.0.2.10", 40000, 77, 1, **kwargs)


def body_lines(description):
    return description.to_bytes().decode().split("\r\n")


# Parsing


def test_parse_sipp_uac_with_lf_line_ends():
    parsed = SessionDescription.parse(SIPP_UAC)
    assert parsed.origin == Origin("user1", 53655765, 2353687637, "IN", "IP4", "127.0.0.1")
    assert parsed.session_name == "-"
    assert parsed.connection == "127.0.0.1"
    [audio] = parsed.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == (
        "audio",
        6000,
        "RTP/AVP",
        ["0"],
    )
    assert audio.rtpmap == {"0": "PCMU/8000"}
    assert audio.direction is None and audio.connection is None and audio.ptime is None


def test_parse_baresip_keeps_attributes_we_do_not_model_in_order():
    parsed = SessionDescription.parse(BARESIP)
    assert parsed.attributes == ["tool:baresip 1.0.0"]
    [audio] = parsed.media
    assert audio.formats == ["96", "97", "9", "0", "8", "101"]
    assert audio.rtpmap["96"] == "opus/48000/2"
    assert audio.fmtp == {"96": "stereo=1;sprop-stereo=1", "97": "bitrate=32000", "101": "0-15"}
    assert audio.direction == "sendrecv"
    assert audio.ptime == 20
    assert audio.attributes == [
        "rtcp-mux",
        "label:1",
        "ssrc:1413127297 cname:6e0d9c3c-7d4c-4f5a-9a3e-1f0b2f8a8c11",
    ]
    assert audio.other_lines == [("b", "AS:128")]


def test_parse_session_level_direction():
    parsed = SessionDescription.parse(POLYCOM)
    assert parsed.direction == "sendrecv"
    assert parsed.media[0].direction is None


def test_parse_media_level_connection():
    parsed = SessionDescription.parse(VIDEO_FIRST)
    assert [m.media for m in parsed.media] == ["video", "audio"]
    assert parsed.connection == "198.51.100.7"
    assert parsed.media[1].connection == "198.51.100.8"
    assert parsed.media[0].other_lines == [("b", "AS:512")]


def test_parse_tolerates_trailing_whitespace_blank_lines_and_case():
    parsed = SessionDescription.parse(
        "v=0 \n\no=- 1 2 IN IP4 10.0.0.1\t\ns=x  \nc=IN IP4 10.0.0.1\nt=0 0\n"
        "m=audio 5004 RTP/AVP 0\na=rtpmap:0 PCMU/8000 \na=SENDONLY\n\n\n"
    )
    assert parsed.session_name == "x"
    assert parsed.media[0].rtpmap == {"0": "PCMU/8000"}
    assert parsed.media[0].direction == "sendonly"


def test_parse_keeps_unknown_lines_and_port_count():
    parsed = offer_from("""
        v=0
        o=- 1 1 IN IP4 10.0.0.1
        s=-
        i=a session with everything
        u=http://example.com/
        e=ops@example.com
        c=IN IP4 224.2.1.1/127
        b=CT:256
        t=2873397496 2873404696
        r=7d 1h 0 25h
        z=2882844526 -1h
        k=prompt
        y=1234
        m=audio 49170/2 RTP/AVP 0
        i=the main audio
        k=prompt
        a=ptime:22.5
        """)
    assert parsed.connection == "224.2.1.1/127"
    assert [kind for kind, _ in parsed.other_lines] == ["i", "u", "e", "b", "t", "r", "z", "k", "y"]
    audio = parsed.media[0]
    assert (audio.port, audio.port_count) == (49170, 2)
    assert audio.ptime is None and audio.attributes == ["ptime:22.5"]
    assert "m=audio 49170/2 RTP/AVP 0" in body_lines(parsed)


def test_parse_accepts_str_and_bytes_alike():
    assert SessionDescription.parse(ASTERISK_18) == SessionDescription.parse(ASTERISK_18.decode())


def test_parse_supplies_the_missing_t_line():
    parsed = SessionDescription.parse(
        "v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 h\nm=audio 1 RTP/AVP 0\n"
    )
    assert parsed.other_lines == [("t", "0 0")]


def test_refused_stream_needs_no_connection():
    parsed = SessionDescription.parse(
        "v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\nc=IN IP4 h\nm=video 0 RTP/AVP 31\n"
    )
    assert parsed.media[1].port == 0


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("o=- 1 1 IN IP4 h\ns=-\n", id="no v="),
        pytest.param("v=1\no=- 1 1 IN IP4 h\ns=-\n", id="v=1"),
        pytest.param("v=0\ns=-\nc=IN IP4 h\n", id="no o="),
        pytest.param("v=0\no=- 1 1 IN IP4 h\nc=IN IP4 h\n", id="no s="),
        pytest.param("v=0\no=- 1 IN IP4 h\ns=-\n", id="o= short"),
        pytest.param("v=0\no=- x 1 IN IP4 h\ns=-\n", id="o= id not a number"),
        pytest.param("v=0\no=- 1 1 IN IP4 h\no=- 1 1 IN IP4 h\ns=-\n", id="two o="),
        pytest.param("v=0\nv=0\no=- 1 1 IN IP4 h\ns=-\n", id="two v="),
        pytest.param("v=0\no=- 1 1 IN IP4 h\ns=-\ns=-\n", id="two s="),
        pytest.param("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN h\n", id="c= short"),
        pytest.param("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 h\nm=audio x RTP/AVP 0\n", id="port"),
        pytest.param(
            "v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 h\nm=audio 70000 RTP/AVP 0\n", id="port>65535"
        ),
        pytest.param(
            "v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 h\nm=audio 5004/0 RTP/AVP 0\n", id="count 0"
        ),
        pytest.param("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 h\nm=audio 5004\n", id="m= short"),
        pytest.param("v=0\no=- 1 1 IN IP4 h\ns=-\nm=audio 5004 RTP/AVP 0\n", id="no c="),
        pytest.param(
            "v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 h\nm=audio 1 RTP/AVP 0\no=- 1 1 IN IP4 h\n",
            id="o= in m",
        ),
        pytest.param(
            "v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 h\nm=audio 1 RTP/AVP 0\na=rtpmap:0\n", id="rtpmap"
        ),
        pytest.param(
            "v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 h\nm=audio 1 RTP/AVP 0\na=fmtp:\n", id="fmtp"
        ),
        pytest.param("v=0\no=- 1 1 IN IP4 h\ns=-\nhello world\n", id="not a line"),
        pytest.param("v=0\no=- 1 1 IN IP4 h\ns=-\nA=sendrecv\n", id="upper-case type"),
        pytest.param(b"v=0\no=- 1 1 IN IP4 h\ns=\xff\n", id="not UTF-8"),
    ],
)
def test_malformed_sdp_raises_one_line_sdp_error(text):
    with pytest.raises(SDPError) as raised:
        SessionDescription.parse(text)
    message = str(raised.value)
    assert message and "\n" not in message and len(message) < 120


# Writing


@pytest.mark.parametrize("body", REAL_WORLD.values(), ids=REAL_WORLD.keys())
def test_round_trip(body):
    parsed = SessionDescription.parse(body)
    written = parsed.to_bytes()
    assert SessionDescription.parse(written) == parsed
    assert written.endswith(b"\r\n") and b"\n" not in written.replace(b"\r\n", b"")


def test_round_trip_of_canonical_body_is_byte_for_byte():
    assert SessionDescription.parse(ASTERISK_18).to_bytes() == ASTERISK_18


def test_to_bytes_writes_lines_in_rfc_8866_order():
    parsed = offer_from("""
        v=0
        o=- 1 1 IN IP4 10.0.0.1
        s=-
        t=0 0
        a=tool:x
        c=IN IP4 10.0.0.1
        b=AS:64
        m=audio 4000 RTP/AVP 8 101
        a=sendrecv
        a=fmtp:101 0-15
        a=rtpmap:8 PCMA/8000
        a=rtpmap:101 telephone-event/8000
        c=IN IP4 10.0.0.2
        """)
    assert body_lines(parsed) == [
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        "c=IN IP4 10.0.0.1",
        "b=AS:64",
        "t=0 0",
        "a=tool:x",
        "m=audio 4000 RTP/AVP 8 101",
        "c=IN IP4 10.0.0.2",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=sendrecv",
        "",
    ]


def test_to_bytes_writes_ipv6_connection_and_space_for_no_name():
    description = SessionDescription(
        origin=Origin("-", 1, 1, "IN", "IP6", "2001:db8::1"),
        session_name="",
        connection="2001:db8::1",
        media=[MediaDescription("audio", 4000, "RTP/AVP", ["0"])],
    )
    assert body_lines(description)[:5] == [
        "v=0",
        "o=- 1 1 IN IP6 2001:db8::1",
        "s= ",
        "c=IN IP6 2001:db8::1",
        "t=0 0",
    ]


# Answering an offer


@pytest.mark.parametrize(
    "body, payload_type, encoding, dtmf",
    [
        (SIPP_UAC, 0, "PCMU", None),
        (SIPP_UAC_PCAP, 8, "PCMA", 101),
        (BARESIP, 0, "PCMU", 101),
        (LINPHONE, 0, "PCMU", 100),
        (ASTERISK_18, 8, "PCMA", 101),
        (POLYCOM, 0, "PCMU", 127),
        (VIDEO_FIRST, 0, "PCMU", 101),
    ],
    ids=[
        "sipp-uac",
        "sipp-uac-pcap",
        "baresip",
        "linphone",
        "asterisk-18",
        "polycom",
        "video-first",
    ],
)
def test_answer_takes_the_offerers_first_codec_we_support(body, payload_type, encoding, dtmf):
    _, negotiated = answer_to(body)
    assert negotiated.codec == AudioFormat(payload_type, encoding, dtmf)


def test_answer_to_baresip():
    description, negotiated = answer_to(BARESIP)
    assert negotiated == NegotiatedAudio(
        remote_address="192.168.1.20",
        remote_port=10230,
        codec=AudioFormat(0, "PCMU", 101),
        direction="sendrecv",
        on_hold=False,
    )
    assert body_lines(description) == [
        "v=0",
        "o=callcenter 77 1 IN IP4 192.0.2.10",
        "s=callcenter",
        "c=IN IP4 192.0.2.10",
        "t=0 0",
        "m=audio 40000 RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=sendrecv",
        "",
    ]


def test_answer_declines_rtcp_mux():
    description, _ = answer_to(BARESIP)
    assert b"rtcp-mux" not in description.to_bytes()


def test_answer_respects_the_offerers_order_not_ours():
    _, negotiated = answer_to(ASTERISK_18, supported=("PCMU", "PCMA"))
    assert negotiated.codec.encoding == "PCMA"


def test_answer_honours_supported():
    _, negotiated = answer_to(BARESIP, supported=("PCMA",))
    assert negotiated.codec == AudioFormat(8, "PCMA", 101)


def test_answer_maps_dynamic_payload_type_by_name():
    body = sdp("""
        v=0
        o=- 1 1 IN IP4 10.0.0.1
        s=-
        c=IN IP4 10.0.0.1
        t=0 0
        m=audio 4000 RTP/AVP 110 111 112
        a=rtpmap:110 G726-32/8000
        a=rtpmap:111 pcma/8000/1
        a=rtpmap:112 telephone-event/8000
        """)
    description, negotiated = answer_to(body)
    assert negotiated.codec == AudioFormat(111, "PCMA", 112)
    audio = description.media[0]
    assert audio.formats == ["111", "112"]
    assert audio.rtpmap == {"111": "PCMA/8000", "112": "telephone-event/8000"}
    # RFC 4733 §2.4.1: no events list offered means 0-15.
    assert audio.fmtp == {"112": "0-15"}


def test_answer_ignores_static_number_remapped_to_another_codec():
    body = sdp("""
        v=0
        o=- 1 1 IN IP4 10.0.0.1
        s=-
        c=IN IP4 10.0.0.1
        t=0 0
        m=audio 4000 RTP/AVP 0 8
        a=rtpmap:0 G729/8000
        """)
    _, negotiated = answer_to(body)
    assert negotiated.codec.encoding == "PCMA"


def test_answer_refuses_pcmu_at_another_rate():
    body = sdp("""
        v=0
        o=- 1 1 IN IP4 10.0.0.1
        s=-
        c=IN IP4 10.0.0.1
        t=0 0
        m=audio 4000 RTP/AVP 96 97
        a=rtpmap:96 PCMU/16000
        a=rtpmap:97 PCMA/8000/2
        """)
    with pytest.raises(NoCommonCodec):
        answer_to(body)


@pytest.mark.parametrize(
    "offered, answered",
    [
        ("0-15", "0-15"),
        ("0-16", "0-16"),
        ("0-11,16", "0-11,16"),
        ("0-15,66,70", "0-15"),
        ("nonsense", "0-15"),
    ],
)
def test_answer_keeps_offered_events_we_handle(offered, answered):
    body = SIPP_UAC_PCAP.replace(b"0-11,16", offered.encode())
    description, _ = answer_to(body)
    assert description.media[0].fmtp == {"101": answered}


def test_answer_drops_telephone_event_with_no_event_we_handle():
    body = SIPP_UAC_PCAP.replace(b"0-11,16", b"32-49")
    description, negotiated = answer_to(body)
    assert negotiated.codec.dtmf_payload_type is None
    assert description.media[0].formats == ["8"]
    assert description.media[0].fmtp == {}


def test_answer_refuses_other_streams_with_port_zero_in_order():
    description, negotiated = answer_to(VIDEO_FIRST)
    video, audio = description.media
    assert (video.media, video.port, video.proto, video.formats) == (
        "video",
        0,
        "RTP/AVP",
        ["96", "97"],
    )
    assert (audio.media, audio.port) == ("audio", 40000)
    assert (negotiated.remote_address, negotiated.remote_port) == ("198.51.100.8", 49170)
    assert body_lines(description)[5] == "m=video 0 RTP/AVP 96 97"


def test_answer_takes_only_the_first_usable_audio_stream():
    description, negotiated = answer_to(
        sdp("""
        v=0
        o=- 1 1 IN IP4 10.0.0.1
        s=-
        c=IN IP4 10.0.0.1
        t=0 0
        m=audio 4000 RTP/AVP 18
        a=rtpmap:18 G729/8000
        m=audio 4002 RTP/AVP 8
        m=audio 4004 RTP/AVP 0
        """)
    )
    assert [m.port for m in description.media] == [0, 40000, 0]
    assert negotiated.remote_port == 4002


@pytest.mark.parametrize(
    "media_line, reason",
    [
        ("m=audio 4000 RTP/AVP 9 18\na=rtpmap:9 G722/8000", "no PCMU or PCMA"),
        ("m=audio 4000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x", "RTP/AVP"),
        ("m=audio 4000 UDP/TLS/RTP/SAVPF 111 0", "RTP/AVP"),
        ("m=audio 0 RTP/AVP 0", "disables"),
        ("m=video 4000 RTP/AVP 96\na=rtpmap:96 H264/90000", "no audio"),
        ("m=application 4000 UDP/BFCP *", "no audio"),
    ],
)
def test_no_common_codec(media_line, reason):
    offered = offer_from("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 h\nt=0 0\n" + media_line)
    with pytest.raises(NoCommonCodec) as raised:
        answer(offered, "192.0.2.10", 40000, 77, 1)
    assert reason in str(raised.value)
    assert "\n" not in str(raised.value)


def test_no_offered_stream_at_all():
    with pytest.raises(NoCommonCodec):
        answer(
            offer_from("v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 h\nt=0 0"), "192.0.2.10", 40000, 77, 1
        )


def test_answer_copies_the_offers_timing():
    body = SIPP_UAC.replace(b"t=0 0", b"t=3034423619 0")
    description, _ = answer_to(body)
    assert description.other_lines == [("t", "3034423619 0")]


def test_answer_uses_given_session_id_and_version():
    description, _ = answer(SessionDescription.parse(SIPP_UAC), "2001:db8::5", 40000, 12345, 7)
    assert description.origin == Origin("callcenter", 12345, 7, "IN", "IP6", "2001:db8::5")
    assert "c=IN IP6 2001:db8::5" in body_lines(description)


@pytest.mark.parametrize(
    "offered, ours, on_hold",
    [
        ("sendrecv", "sendrecv", False),
        ("sendonly", "recvonly", True),
        ("recvonly", "sendonly", False),
        ("inactive", "inactive", True),
    ],
)
def test_answer_mirrors_direction(offered, ours, on_hold):
    body = ASTERISK_18.replace(b"a=sendrecv", f"a={offered}".encode())
    description, negotiated = answer_to(body)
    assert description.media[0].direction == ours
    assert (negotiated.direction, negotiated.on_hold) == (ours, on_hold)


def test_answer_reads_session_level_direction():
    body = POLYCOM.replace(b"a=sendrecv", b"a=sendonly")
    description, negotiated = answer_to(body)
    assert description.media[0].direction == "recvonly"
    assert negotiated.on_hold


def test_media_level_direction_overrides_session_level():
    body = POLYCOM.replace(b"a=sendrecv", b"a=inactive") + b"a=sendrecv\r\n"
    _, negotiated = answer_to(body)
    assert (negotiated.direction, negotiated.on_hold) == ("sendrecv", False)


def test_rfc_2543_hold_is_understood():
    description, negotiated = answer_to(YEALINK_HOLD_2543)
    # RFC 3264 §8.4: nothing may be sent to 0.0.0.0, so we only receive.
    assert negotiated.on_hold
    assert negotiated.direction == "recvonly"
    assert description.media[0].direction == "recvonly"
    # and we never answer with 0.0.0.0 ourselves.
    assert description.connection == "192.0.2.10"


def test_rfc_2543_hold_on_media_level_connection():
    body = VIDEO_FIRST.replace(b"c=IN IP4 198.51.100.8", b"c=IN IP4 0.0.0.0")
    _, negotiated = answer_to(body)
    assert negotiated.on_hold and negotiated.direction == "recvonly"


def test_answer_keeps_our_own_hold():
    _, negotiated = answer_to(ASTERISK_18, direction="sendonly")
    assert (negotiated.direction, negotiated.on_hold) == ("sendonly", False)
    _, negotiated = answer_to(
        ASTERISK_18.replace(b"a=sendrecv", b"a=sendonly"), direction="sendonly"
    )
    assert (negotiated.direction, negotiated.on_hold) == ("inactive", True)


def test_answer_rejects_bad_arguments():
    parsed = SessionDescription.parse(SIPP_UAC)
    with pytest.raises(ValueError):
        answer(parsed, "192.0.2.10", 40000, 1, 1, supported=("G729",))
    with pytest.raises(ValueError):
        answer(parsed, "192.0.2.10", 40000, 1, 1, direction="hold")


# Our offers and their answers


def test_offer():
    description = offer("192.0.2.10", 40000, 555, 1)
    assert body_lines(description) == [
        "v=0",
        "o=callcenter 555 1 IN IP4 192.0.2.10",
        "s=callcenter",
        "c=IN IP4 192.0.2.10",
        "t=0 0",
        "m=audio 40000 RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
        "",
    ]


def test_offer_without_dtmf_and_in_our_order():
    description = offer(
        "192.0.2.10", 40000, 555, 1, codecs=("PCMA", "PCMU"), dtmf_payload_type=None
    )
    assert description.media[0].formats == ["8", "0"]
    assert description.media[0].fmtp == {}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"codecs": ()},
        {"codecs": ("G722",)},
        {"dtmf_payload_type": 8},
        {"direction": "up"},
        {"local_port": 0},
    ],
)
def test_offer_rejects_bad_arguments(kwargs):
    arguments = {
        "local_address": "192.0.2.10",
        "local_port": 40000,
        "session_id": 1,
        "session_version": 1,
    }
    with pytest.raises(ValueError):
        offer(**(arguments | kwargs))


def test_offer_answered_by_our_own_answer():
    ours = offer("192.0.2.10", 40000, 555, 1)
    theirs, answered = answer(
        SessionDescription.parse(ours.to_bytes()), "198.51.100.1", 30000, 9, 1
    )
    negotiated = accept_answer(ours, SessionDescription.parse(theirs.to_bytes()))
    assert negotiated == NegotiatedAudio(
        "198.51.100.1", 30000, AudioFormat(0, "PCMU", 101), "sendrecv", False
    )
    assert answered == NegotiatedAudio(
        "192.0.2.10", 40000, AudioFormat(0, "PCMU", 101), "sendrecv", False
    )


ASTERISK_ANSWER = sdp("""
v=0
o=- 1622565500 1622565500 IN IP4 203.0.113.5
s=Asterisk
c=IN IP4 203.0.113.5
t=0 0
m=audio 18000 RTP/AVP 8 0 102
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:102 telephone-event/8000
a=fmtp:102 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
""")


def test_accept_answer_uses_the_answerers_choice_and_numbers():
    negotiated = accept_answer(
        offer("192.0.2.10", 40000, 555, 1), SessionDescription.parse(ASTERISK_ANSWER)
    )
    # RFC 3264 §6.1: the answer's payload type numbers are what it receives.
    assert negotiated == NegotiatedAudio(
        "203.0.113.5", 18000, AudioFormat(8, "PCMA", 102), "sendrecv", False
    )


def test_accept_answer_skips_codecs_we_did_not_offer():
    ours = offer("192.0.2.10", 40000, 555, 1, codecs=("PCMU",))
    negotiated = accept_answer(ours, SessionDescription.parse(ASTERISK_ANSWER))
    assert negotiated.codec.encoding == "PCMU"


def test_accept_answer_without_dtmf_when_we_offered_none():
    negotiated = accept_answer(
        offer("192.0.2.10", 40000, 555, 1, dtmf_payload_type=None),
        SessionDescription.parse(ASTERISK_ANSWER),
    )
    assert negotiated.codec.dtmf_payload_type is None


@pytest.mark.parametrize(
    "offered, answered, ours, on_hold",
    [
        ("sendrecv", "sendrecv", "sendrecv", False),
        ("sendrecv", "recvonly", "sendonly", False),
        ("sendrecv", "inactive", "inactive", True),
        ("sendonly", "recvonly", "sendonly", False),
        # An answer may not widen what we offered.
        ("sendonly", "sendrecv", "sendonly", False),
        ("inactive", "inactive", "inactive", False),
    ],
)
def test_accept_answer_direction(offered, answered, ours, on_hold):
    body = ASTERISK_ANSWER.replace(b"a=sendrecv", f"a={answered}".encode())
    negotiated = accept_answer(
        offer("192.0.2.10", 40000, 555, 1, direction=offered), SessionDescription.parse(body)
    )
    assert (negotiated.direction, negotiated.on_hold) == (ours, on_hold)


def test_accept_answer_with_port_zero_is_no_common_codec():
    body = ASTERISK_ANSWER.replace(b"m=audio 18000", b"m=audio 0")
    with pytest.raises(NoCommonCodec, match="refused"):
        accept_answer(offer("192.0.2.10", 40000, 555, 1), SessionDescription.parse(body))


def test_accept_answer_choosing_nothing_we_offered_is_no_common_codec():
    body = sdp("""
        v=0
        o=- 1 1 IN IP4 203.0.113.5
        s=-
        c=IN IP4 203.0.113.5
        t=0 0
        m=audio 18000 RTP/AVP 3 101
        a=rtpmap:3 GSM/8000
        a=rtpmap:101 telephone-event/8000
        """)
    with pytest.raises(NoCommonCodec, match="no codec"):
        accept_answer(offer("192.0.2.10", 40000, 555, 1), SessionDescription.parse(body))


def test_accept_answer_with_other_m_line_count_is_sdp_error():
    with pytest.raises(SDPError):
        accept_answer(offer("192.0.2.10", 40000, 555, 1), SessionDescription.parse(VIDEO_FIRST))


# Hold


def test_hold_offer_marks_sendonly_and_bumps_the_version():
    first = offer("192.0.2.10", 40000, 555, 1)
    held = hold_offer(first, 2)
    assert held.origin == Origin("callcenter", 555, 2, "IN", "IP4", "192.0.2.10")
    assert held.media[0].direction == "sendonly"
    assert held.connection == "192.0.2.10"
    # The previous SDP is untouched.
    assert first.media[0].direction == "sendrecv" and first.origin.session_version == 1
    assert body_lines(held)[1] == "o=callcenter 555 2 IN IP4 192.0.2.10"
    assert "a=sendonly" in body_lines(held)


def test_hold_offer_from_recvonly_is_inactive_and_keeps_refused_streams():
    ours, _ = answer_to(VIDEO_FIRST.replace(b"a=fmtp:101 0-15", b"a=fmtp:101 0-15\r\na=sendonly"))
    assert ours.media[1].direction == "recvonly"
    held = hold_offer(ours, 2)
    assert [(m.port, m.direction) for m in held.media] == [(0, None), (40000, "inactive")]


def test_hold_offer_is_understood_as_hold_by_our_answer():
    held = hold_offer(offer("192.0.2.10", 40000, 555, 1), 2)
    _, negotiated = answer(SessionDescription.parse(held.to_bytes()), "198.51.100.1", 30000, 9, 2)
    assert (negotiated.direction, negotiated.on_hold) == ("recvonly", True)


def test_hold_offer_requires_the_next_version():
    with pytest.raises(ValueError):
        hold_offer(offer("192.0.2.10", 40000, 555, 5), 5)


# Properties

MIRRORED = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}


sdp_line = st.tuples(st.sampled_from("vosicbtrzkamxy"), st.text(max_size=30)).map(
    lambda kv: "=".join(kv)
)
line_end = st.sampled_from(["\r\n", "\n", "\r", " \n", "\t\r\n"])
HEADER = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\n"


@settings(max_examples=300)
@given(st.one_of(st.text(), st.binary(), st.lists(sdp_line).map("\n".join)))
def test_parse_raises_nothing_but_sdp_error(text):
    try:
        SessionDescription.parse(text)
    except SDPError:
        pass


@settings(max_examples=300)
@given(st.lists(st.tuples(sdp_line, line_end)))
def test_parse_then_write_is_stable(lines):
    text = HEADER + "".join(line + end for line, end in lines)
    try:
        parsed = SessionDescription.parse(text)
    except SDPError:
        return
    written = parsed.to_bytes()
    assert SessionDescription.parse(written) == parsed
    assert SessionDescription.parse(written).to_bytes() == written


media_line = st.builds(
    "m={} {} {} {}".format,
    st.sampled_from(["audio", "video", "text"]),
    st.integers(0, 65535),
    st.sampled_from(["RTP/AVP", "RTP/SAVP"]),
    st.lists(
        st.sampled_from(["0", "8", "9", "18", "96", "101", "127"]), min_size=1, max_size=5
    ).map(" ".join),
)
media_attribute = st.one_of(
    st.sampled_from(
        [
            "a=sendrecv",
            "a=sendonly",
            "a=recvonly",
            "a=inactive",
            "a=rtcp-mux",
            "a=ptime:30",
            "c=IN IP4 0.0.0.0",
        ]
    ),
    st.builds(
        "a=rtpmap:{} {}".format,
        st.sampled_from(["0", "8", "96", "101", "127"]),
        st.sampled_from(
            ["PCMU/8000", "pcma/8000", "PCMU/8000/1", "telephone-event/8000", "opus/48000/2"]
        ),
    ),
    st.builds(
        "a=fmtp:{} {}".format,
        st.sampled_from(["96", "101"]),
        st.sampled_from(["0-15", "0-16", "x"]),
    ),
)
offered_body = st.lists(
    st.tuples(media_line, st.lists(media_attribute, max_size=6)), max_size=4
).map(
    lambda sections: (
        HEADER
        + "t=0 0\r\n"
        + "".join(m + "\r\n" + "".join(a + "\r\n" for a in attrs) for m, attrs in sections)
    )
)


@settings(max_examples=300)
@given(offered_body)
def test_answer_to_any_offer_is_well_formed(body):
    offered = SessionDescription.parse(body)
    assert SessionDescription.parse(offered.to_bytes()) == offered
    try:
        description, negotiated = answer(offered, "192.0.2.10", 40000, 1, 1)
    except NoCommonCodec:
        return
    reparsed = SessionDescription.parse(description.to_bytes())
    assert len(reparsed.media) == len(offered.media)
    accepted = [m for m in reparsed.media if m.port != 0]
    assert len(accepted) == 1 and accepted[0].media == "audio"
    assert accepted[0].formats[0] == str(negotiated.codec.payload_type)
    assert negotiated.codec.encoding in ("PCMU", "PCMA")
    for answered, offered_media in zip(reparsed.media, offered.media):
        assert answered.media == offered_media.media and answered.proto == offered_media.proto
    # The offerer can read our answer back to the same agreement.
    ours = accept_answer(offered, reparsed)
    assert ours.codec == negotiated.codec
    assert ours.direction == MIRRORED[negotiated.direction]
    assert (ours.remote_address, ours.remote_port) == ("192.0.2.10", 40000)
