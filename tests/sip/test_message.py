"""SIP messages: parsing, headers, writing, stream framing, responses (RFC 3261 §7, §8.2.6, §18.3)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callcenter.sip.message import (
    Headers,
    Request,
    Response,
    SIPParseError,
    StreamFramer,
    make_response,
    parse_message,
)

SDP = (
    b"v=0\r\no=agent 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)


def invite(body=SDP, extra=b"", length=None):
    length = len(body) if length is None else length
    return (
        b"INVITE sip:2001@pbx.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
        b"Via: SIP/2.0/TCP proxy.example.com;branch=z9hG4bK1\r\n"
        b"Max-Forwards: 70\r\n"
        b'From: "Agent 7" <sip:agent7@example.com>;tag=1928301774\r\n'
        b"To: <sip:2001@pbx.example.com>\r\n"
        b"Call-ID: a84b4c76e66710@192.0.2.10\r\n"
        b"CSeq: 314159 INVITE\r\n"
        b"Contact: <sip:agent7@192.0.2.10:5060>\r\n"
        b"Content-Type: application/sdp\r\n" + extra + b"Content-Length: " + str(length).encode() + b"\r\n\r\n" + body
    )


def test_request_fields():
    request = parse_message(invite())
    assert isinstance(request, Request)
    assert (request.method, request.uri, request.version) == ("INVITE", "sip:2001@pbx.example.com", "SIP/2.0")
    assert request.call_id == "a84b4c76e66710@192.0.2.10"
    assert request.cseq == (314159, "INVITE")
    assert [via.host for via in request.vias] == ["192.0.2.10", "proxy.example.com"]
    assert request.vias[0].branch == "z9hG4bK776asdhds"
    assert request.from_addr.display_name == "Agent 7"
    assert request.from_addr.tag == "1928301774"
    assert request.to_addr.tag is None
    assert request.body == SDP


def test_response_fields():
    response = parse_message(
        b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\n"
        b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>;tag=2\r\n"
        b"Call-ID: x\r\nCSeq: 1 INVITE\r\n\r\n"
    )
    assert isinstance(response, Response)
    assert (response.status, response.reason, response.cseq) == (486, "Busy Here", (1, "INVITE"))
    assert response.to_addr.tag == "2"
    assert response.body == b""


def test_round_trip_is_stable():
    first = parse_message(invite())
    again = parse_message(first.to_bytes())
    assert again.to_bytes() == first.to_bytes()
    assert again.headers.items() == first.headers.items()
    assert first.to_bytes() == invite()


def test_to_bytes_always_writes_content_length_of_the_body():
    request = Request("OPTIONS", "sip:a@example.com")
    request.headers.add("Call-ID", "1")
    assert request.to_bytes() == b"OPTIONS sip:a@example.com SIP/2.0\r\nCall-ID: 1\r\nContent-Length: 0\r\n\r\n"
    request.headers.add("l", "999")
    request.body = b"hello"
    assert request.to_bytes().endswith(b"Call-ID: 1\r\nContent-Length: 5\r\n\r\nhello")


def test_messages_take_headers_as_pairs_or_a_dict():
    request = Request("BYE", "sip:a@example.com", [("i", "c1"), ("CSeq", "2 BYE")])
    assert request.headers.items() == [("Call-ID", "c1"), ("CSeq", "2 BYE")]
    assert Response(200, headers={"t": "<sip:a@b>;tag=1"}).to_addr.tag == "1"


def test_response_reason_defaults_to_the_rfc_phrase():
    assert Response(180).reason == "Ringing"
    assert Response(481).reason == "Call/Transaction Does Not Exist"
    assert Response(499).reason == "Bad Request"  # RFC 3261 §8.1.3.2: as x00 of its class
    assert Response(200, "Fine").to_bytes().startswith(b"SIP/2.0 200 Fine\r\n")


def test_compact_forms_become_canonical_names():
    request = parse_message(
        b"MESSAGE sip:a@example.com SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:b@example.com>;tag=1\r\n"
        b"t: sip:a@example.com\r\ni: cid\r\nCSEQ: 1 MESSAGE\r\nm: <sip:b@h>\r\nc: text/plain\r\nk: path\r\n"
        b"o: presence\r\nu: dialog\r\nx: 1800\r\ns: hi\r\nr: <sip:c@h>\r\nb: <sip:d@h>\r\ne: gzip\r\n"
        b"a: *;audio\r\nj: *;video\r\nd: proxy\r\ny: abc\r\nwww-authenticate: Digest realm=\"x\"\r\nl: 2\r\n\r\nhi"
    )
    assert [name for name, _ in request.headers.items()] == [
        "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Content-Type", "Supported", "Event",
        "Allow-Events", "Session-Expires", "Subject", "Refer-To", "Referred-By", "Content-Encoding",
        "Accept-Contact", "Reject-Contact", "Request-Disposition", "Identity", "WWW-Authenticate",
        "Content-Length",
    ]  # fmt: skip
    assert request.headers.get("call-id") == request.headers.get("I") == "cid"
    assert request.body == b"hi"


def test_unknown_names_keep_their_case_and_match_without_it():
    headers = Headers()
    headers.add("X-Queue-Name", "sales")
    headers.add("x-queue-name", "support")
    assert headers.get_all("X-QUEUE-NAME") == ["sales", "support"]
    assert headers.items() == [("X-Queue-Name", "sales"), ("x-queue-name", "support")]
    assert "x-QUEUE-name" in headers
    assert "X-Other" not in headers


def test_list_fields_split_at_commas_outside_quotes_and_angles():
    headers = Headers()
    headers.add("Contact", '"Smith, John" <sip:j@h;a=1,2>;q=0.5, <sip:k@h>')
    headers.add("Via", "SIP/2.0/UDP a;branch=1 , SIP/2.0/UDP b;branch=2")
    headers.add("Via", "SIP/2.0/UDP c;branch=3")
    headers.add("Allow", "INVITE, ACK,CANCEL,  BYE")
    headers.add("Contact", "*")
    assert headers.get_all("Contact") == ['"Smith, John" <sip:j@h;a=1,2>;q=0.5', "<sip:k@h>", "*"]
    assert headers.get_all("v") == ["SIP/2.0/UDP a;branch=1", "SIP/2.0/UDP b;branch=2", "SIP/2.0/UDP c;branch=3"]
    assert headers.get("Via") == "SIP/2.0/UDP a;branch=1"
    assert headers.get_all("Allow") == ["INVITE", "ACK", "CANCEL", "BYE"]


@pytest.mark.parametrize("name", ["WWW-Authenticate", "Authorization", "Proxy-Authenticate", "Proxy-Authorization", "Date", "Subject", "X-Unknown"])
def test_other_fields_are_never_split(name):
    value = 'Digest realm="a, b", nonce="n", qop="auth,auth-int"'
    headers = Headers([(name, value)])
    assert headers.get_all(name) == [value]
    assert headers.get(name) == value


def test_set_replaces_every_value_at_the_first_position_and_remove_drops_them():
    headers = Headers([("Route", "<sip:a>"), ("To", "<sip:t>"), ("route", "<sip:b>"), ("From", "<sip:f>")])
    headers.set("ROUTE", "<sip:c>")
    assert headers.items() == [("Route", "<sip:c>"), ("To", "<sip:t>"), ("From", "<sip:f>")]
    headers.set("Max-Forwards", "70")
    assert headers.items()[-1] == ("Max-Forwards", "70")
    headers.remove("t")
    assert headers.get("To") is None and headers.get("To", "none") == "none"
    assert len(headers) == 3


def test_header_folding_and_space_around_colon():
    request = parse_message(
        b"OPTIONS sip:a@example.com SIP/2.0\r\nVia : SIP/2.0/UDP h\r\n  ;branch=z9hG4bK1\r\n"
        b"From\t:\t<sip:b@example.com>\r\n\t;tag=1\r\nTo:sip:a@example.com\r\nCall-ID: c\r\n"
        b"CSeq: 1\r\n OPTIONS\r\nSubject: a\r\n b\r\n\tc  \r\n\r\n"
    )
    assert request.headers.get("Via") == "SIP/2.0/UDP h ;branch=z9hG4bK1"
    assert request.from_addr.tag == "1"
    assert request.cseq == (1, "OPTIONS")
    assert request.headers.get("Subject") == "a b c"


def test_leading_crlfs_are_skipped():
    assert parse_message(b"\r\n\r\n\r\n" + invite()).method == "INVITE"


def test_udp_content_length_may_be_absent_and_extra_octets_are_dropped():
    without = invite().replace(b"Content-Length: %d\r\n" % len(SDP), b"")
    assert parse_message(without).body == SDP
    assert parse_message(invite(body=SDP + b"garbage", length=len(SDP))).body == SDP
    assert parse_message(invite(body=b"", length=0)).body == b""


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (invite(body=SDP[:-1], length=len(SDP)), "Body shorter than Content-Length"),
        (invite(length="-1"), "Bad Content-Length"),
        (invite(length="five"), "Bad Content-Length"),
        (invite(extra=b"Content-Length: 3\r\n"), "Multiple Content-Length"),
        (invite().replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"), "CSeq method mismatch"),
        (invite().replace(b"CSeq: 314159 INVITE", b"CSeq: 4294967296 INVITE"), "Malformed CSeq"),
        (invite().replace(b"CSeq: 314159 INVITE", b"CSeq: INVITE"), "Malformed CSeq"),
        (invite().replace(b"Max-Forwards: 70", b"Max-Forwards: seventy"), "Malformed Max-Forwards"),
        (invite().replace(b"Max-Forwards: 70", b"This line has no colon"), "Malformed header line"),
        (invite().replace(b"Max-Forwards: 70", b"Bad Name: 70"), "Malformed header line"),
        (invite().replace(b"INVITE sip:", b"INVITE  sip:"), "Malformed Request-Line"),
        (invite().replace(b"sip:2001@pbx.example.com SIP", b"sip:2001@pbx.example.com;a=b c SIP"), "Malformed Request-Line"),
        (invite().replace(b"INVITE sip:2001@pbx", b"INVITE sip:20%ZZ01@pbx"), "Malformed Request-URI"),
        (invite().replace(b"INVITE sip:2001", b"INVITE 2001"), "Malformed Request-URI"),
        (invite().replace(b"Contact: <sip:agent7@192.0.2.10:5060>", b"Contact: <sip:agent7@192.0.2.10:5060"), "Malformed Contact"),
        (invite().replace(b"Call-ID: a84b4c76e66710@192.0.2.10", b"Call-ID: a b"), "Malformed Call-ID"),
    ],
)
def test_malformed_requests_keep_enough_to_answer_400(packet, reason):
    with pytest.raises(SIPParseError) as raised:
        parse_message(packet)
    assert raised.value.reason == f"Bad Request - {reason}"
    assert raised.value.status == 400
    assert isinstance(raised.value.message, Request)
    assert raised.value.message.method == "INVITE"
    assert make_response(raised.value.message, 400, raised.value.reason).headers.get("From").endswith("tag=1928301774")


def test_other_sip_versions_get_505():
    with pytest.raises(SIPParseError) as raised:
        parse_message(invite().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1))
    assert (raised.value.status, raised.value.reason) == (505, "Version Not Supported")
    assert raised.value.message.method == "INVITE"


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n",  # no end of headers
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"SIP/2.0 099 Too Low\r\n\r\n",
        b"SIP/2.0 700 Too High\r\n\r\n",
        b"SIP/2.0 20 Short\r\n\r\n",
        b"SIP/2.0 4294967301 Long\r\n\r\n",
        invite().replace(b"Call-ID: a84b4c76e66710@192.0.2.10\r\n", b""),
        invite().replace(b"Via: SIP/2.0/TCP proxy.example.com;branch=z9hG4bK1\r\n", b"X: a\nb\r\n"),
        invite().replace(b"To: <sip:2001@pbx.example.com>\r\n", b"To: <sip:2001@pbx.example.com>\rX: y\r\n"),
    ],
)
def test_messages_that_cannot_be_answered_have_no_message(packet):
    with pytest.raises(SIPParseError) as raised:
        parse_message(packet)
    assert raised.value.message is None
    assert raised.value.reason.isprintable() and raised.value.reason.isascii()


def test_missing_header_is_named_in_the_reason():
    with pytest.raises(SIPParseError, match="Missing Call-ID"):
        parse_message(invite().replace(b"Call-ID: a84b4c76e66710@192.0.2.10\r\n", b""))


def test_max_forwards_may_be_absent():
    assert parse_message(invite().replace(b"Max-Forwards: 70\r\n", b"")).method == "INVITE"


def test_malformed_responses_are_never_answered():
    with pytest.raises(SIPParseError) as raised:
        parse_message(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a@b>\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: x\r\n\r\n")
    assert raised.value.message is None


def test_non_utf8_octets_survive_a_round_trip():
    packet = invite().replace(b'"Agent 7"', b'"Agent \xe9\xff"')
    request = parse_message(packet)
    assert request.to_bytes() == packet


def test_parsed_views_follow_header_changes():
    request = parse_message(invite())
    request.headers.set("To", "<sip:other@example.com>;tag=9")
    request.headers.set("CSeq", "2 INVITE")
    request.headers.add("Via", "SIP/2.0/UDP c;branch=z9hG4bK3")
    assert request.to_addr.tag == "9"
    assert request.cseq == (2, "INVITE")
    assert [via.host for via in request.vias] == ["192.0.2.10", "proxy.example.com", "c"]
    request.headers.remove("CSeq")
    with pytest.raises(ValueError):
        _ = request.cseq


def test_make_response_copies_the_rfc_3261_8_2_6_2_fields():
    request = parse_message(invite(extra=b"Timestamp: 54.2\r\nRecord-Route: <sip:p;lr>\r\n"))
    ringing = make_response(request, 180, to_tag="callee-1")
    assert ringing.reason == "Ringing"
    assert ringing.headers.items() == [
        ("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport"),
        ("Via", "SIP/2.0/TCP proxy.example.com;branch=z9hG4bK1"),
        ("From", '"Agent 7" <sip:agent7@example.com>;tag=1928301774'),
        ("To", "<sip:2001@pbx.example.com>;tag=callee-1"),
        ("Call-ID", "a84b4c76e66710@192.0.2.10"),
        ("CSeq", "314159 INVITE"),
        ("Content-Length", "0"),
    ]
    trying = make_response(request, 100)
    assert trying.headers.get("Timestamp") == "54.2"
    assert trying.to_addr.tag is None
    assert "Timestamp" not in make_response(request, 200, "OK", to_tag="t").headers


def test_make_response_keeps_an_existing_to_tag():
    request = parse_message(invite().replace(b"To: <sip:2001@pbx.example.com>", b"To: <sip:2001@pbx.example.com>;tag=old"))
    assert make_response(request, 200, to_tag="new").to_addr.tag == "old"


def test_make_response_answers_a_malformed_request():
    with pytest.raises(SIPParseError) as raised:
        parse_message(invite().replace(b"To: <sip:2001@pbx.example.com>", b'To: "unterminated <sip:2001@pbx.example.com>'))
    error = raised.value
    response = make_response(error.message, 400, error.reason, to_tag="x")
    assert response.to_bytes().startswith(b"SIP/2.0 400 Bad Request - Malformed To\r\n")
    assert response.headers.get("To") == '"unterminated <sip:2001@pbx.example.com>'


# -- StreamFramer (RFC 3261 §18.3) --------------------------------------------


def register(number):
    return (
        b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.7;branch=z9hG4bK%d\r\n"
        b"From: <sip:7@example.com>;tag=a\r\nTo: <sip:7@example.com>\r\nCall-ID: reg\r\n"
        b"CSeq: %d REGISTER\r\nContact: <sip:7@192.0.2.7;transport=tcp>\r\nContent-Length: 0\r\n\r\n"
    ) % (number, number)


def test_framer_handles_a_message_split_at_every_byte_boundary():
    stream = invite() + register(1) + b"\r\n\r\n" + invite()
    for cut in range(1, len(stream)):
        framer = StreamFramer()
        messages = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert [type(m).__name__ for m in messages] == ["Request"] * 3, cut
        assert messages[0].body == SDP and messages[2].body == SDP
        assert framer.keepalives == 1


def test_framer_byte_by_byte():
    framer = StreamFramer()
    stream = register(1) + invite() + register(2)
    messages = [message for byte in stream for message in framer.feed(bytes([byte]))]
    assert [m.cseq[0] for m in messages] == [1, 314159, 2]


def test_framer_returns_several_messages_from_one_chunk():
    framer = StreamFramer()
    messages = framer.feed(register(1) + register(2) + register(3))
    assert [m.cseq for m in messages] == [(1, "REGISTER"), (2, "REGISTER"), (3, "REGISTER")]


def test_framer_counts_crlf_keepalives():
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.feed(b"\r\n\r\n\r\n") == []
    assert framer.feed(b"\r\n") == []
    assert framer.keepalives == 3
    assert [m.method for m in framer.feed(register(1))] == ["REGISTER"]


def test_framer_keeps_body_octets_that_look_like_a_message_end():
    body = b"\r\n\r\nINVITE sip:x SIP/2.0\r\n\r\n"
    request = invite(body=body)
    assert StreamFramer().feed(request + register(5))[0].body == body


def test_framer_requires_content_length_and_stays_broken():
    framer = StreamFramer()
    with pytest.raises(SIPParseError, match="Missing Content-Length"):
        framer.feed(register(1).replace(b"Content-Length: 0\r\n", b""))
    with pytest.raises(SIPParseError):
        framer.feed(register(2))


@pytest.mark.parametrize("length", [b"-1", b"five", b"99999999999"])
def test_framer_rejects_bad_content_length(length):
    with pytest.raises(SIPParseError):
        StreamFramer().feed(register(1).replace(b"Content-Length: 0", b"Content-Length: " + length))


def test_framer_rejects_oversize_messages():
    framer = StreamFramer(max_message_size=1000)
    with pytest.raises(SIPParseError) as raised:
        framer.feed(invite(body=b"x" * 2000))
    assert raised.value.status == 513
    endless = StreamFramer(max_message_size=1000)
    assert endless.feed(b"INVITE sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 100) == []
    with pytest.raises(SIPParseError, match="Too Large"):
        endless.feed(b"X: y\r\n" * 100)


def test_framer_survives_a_well_framed_bad_message():
    framer = StreamFramer()
    bad = register(2).replace(b"CSeq: 2 REGISTER", b"CSeq: 2 INVITE")
    with pytest.raises(SIPParseError) as raised:
        framer.feed(register(1) + bad + register(3)[:10])
    assert [m.cseq[0] for m in raised.value.complete] == [1]
    assert raised.value.message.cseq == (2, "INVITE")
    assert [m.cseq[0] for m in framer.feed(register(3)[10:])] == [3]


# -- Fuzzing: nothing but SIPParseError ever escapes ----------------------------

VALID = [invite(), register(1), invite(body=b"", length=0)]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_fuzz_random_bytes(data):
    for packet in (data, b"INVITE sip:a@b SIP/2.0\r\n" + data, b"SIP/2.0 200 OK\r\n" + data):
        try:
            parse_message(packet)
        except SIPParseError as error:
            assert error.reason.isascii() and error.reason.isprintable()
            assert error.__cause__ is None  # a deliberate rejection, not the safety net


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(VALID),
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=2000), st.binary(min_size=0, max_size=4), st.integers(0, 4)),
        min_size=1,
        max_size=6,
    ),
)
def test_fuzz_mutated_messages(packet, mutations):
    data = bytearray(packet)
    for position, insert, delete in mutations:
        position %= len(data) + 1
        data[position : position + delete] = insert
    message = None
    try:
        message = parse_message(bytes(data))
    except SIPParseError as error:
        assert error.__cause__ is None  # a deliberate rejection, not the safety net
        message = error.message
    if message is not None:
        # Whatever was taken in can be written out and answered.
        message.to_bytes()
        if isinstance(message, Request):
            make_response(message, 400, "Bad Request").to_bytes()


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_fuzz_stream_framer(chunks):
    framer = StreamFramer(max_message_size=2000)
    for chunk in chunks:
        try:
            framer.feed(chunk)
        except SIPParseError as error:
            assert error.__cause__ is None
