"""
RFC 4475 (SIP torture test messages) against the message layer.

tests/sip/torture/NAME.dat holds the exact octets of each message, rebuilt
from the RFC text (CRLF line ends, the <hex> and UTF-8 escapes expanded).
mpart01.dat is the one exception: its binary body part is a stand-in (the
RFC's is an S/MIME blob), keeping what matters to a parser: NULs, CRLFs
and CRLFCRLF inside the body, framed only by Content-Length.

For the §3.1.2 and §3.3 messages a parser may reject or, where the RFC lets
it, take in and leave to a higher layer; each test says which and why.
"""

import os

import pytest

from callcenter.sip.address import NameAddr
from callcenter.sip.message import (
    Request,
    Response,
    SIPParseError,
    StreamFramer,
    make_response,
    parse_message,
)

TORTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torture")


def load(name):
    with open(os.path.join(TORTURE, f"{name}.dat"), "rb") as dat:
        return dat.read()


def rejected(name):
    with pytest.raises(SIPParseError) as raised:
        parse_message(load(name))
    return raised.value


def answerable(name, reason):
    """Rejected, with enough kept to send the 400 RFC 4475 asks for."""
    error = rejected(name)
    assert error.reason == reason
    assert error.status == 400
    assert isinstance(error.message, Request)
    response = make_response(error.message, error.status, error.reason)
    assert response.to_bytes().startswith(f"SIP/2.0 400 {reason}\r\n".encode())
    return error


# -- 3.1.1 Valid messages: every element must take these in ------------------


def test_wsinv_short_tortuous_invite():
    request = parse_message(load("wsinv"))
    assert request.method == "INVITE"
    assert request.sip_uri.params == {"unknownparam": None}
    assert request.to_addr.display_name is None
    assert request.to_addr.tag == "1918181833n"
    assert request.from_addr.display_name == 'J Rosenberg \\"'
    assert request.from_addr.tag == "98asjd8"
    assert request.headers.get("Max-Forwards") == "0068"
    assert request.cseq == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in request.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert request.headers.get("Subject") == ""
    # Unfolded (RFC 3261 §7.3.1), and never parsed as params: unknown fields are text.
    assert request.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert request.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    contact = NameAddr.parse(request.headers.get("m"))
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    route = NameAddr.parse(request.headers.get("Route"))
    assert route.uri.params == {"lr": None, "unknownwith": "value", "unknown-no-value": None}
    assert len(request.body) == 150 and request.body.endswith(b"a=rtpmap:31 LPC\r\n")


def test_intmeth_wide_range_of_valid_characters():
    request = parse_message(load("intmeth"))
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert request.method == method
    assert request.cseq == (139122385, method)
    assert request.sip_uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert request.sip_uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert request.vias[0].branch == "z9hG4bK-.!%66*_+`'~"
    assert request.to_addr.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert request.from_addr.display_name == "token1~` token2'+_ token3*%!.-"
    assert request.from_addr.params == {"fromparam''~+*_!.-%": '"работающий"', "tag": "_token~1'+`*%!-."}
    assert request.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert request.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_esc01_escaping_mechanism():
    request = parse_message(load("esc01"))
    assert request.sip_uri.user == "sips:user@example.com"
    assert request.to_addr.uri.user == "user"
    assert request.from_addr.uri.user == "I have spaces"
    contact = NameAddr.parse(request.headers.get("Contact"))
    assert contact.uri.user == "caller"
    assert contact.uri.params == {"lr": None, "name": "value%41"}  # unescaped once only (RFC 3986)
    assert request.headers.get("Content-Type") == "application/sdp"


def test_escnull_escaped_nulls_in_uris():
    request = parse_message(load("escnull"))
    assert request.to_addr.uri.user == "null-\x00-null"
    contacts = [NameAddr.parse(value).uri.user for value in request.headers.get_all("Contact")]
    assert contacts == ["\x00", "\x00\x00"]  # two distinct contacts


def test_esc02_percent_is_not_an_escape_everywhere():
    request = parse_message(load("esc02"))
    assert request.method == "RE%47IST%45R"  # an unknown method, not REGISTER
    assert request.to_addr.display_name == "%Z%45"
    assert request.vias[0].branch == "z9hG4bK209%fzsnel234"
    assert request.headers.get_all("Contact") == ["<sip:alias1@host1.example.com>", "<sip:alias3@host3.example.com>"]
    assert request.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_no_lws_between_display_name_and_angle():
    request = parse_message(load("lwsdisp"))
    assert request.from_addr.display_name == "caller"
    assert request.from_addr.tag == "323"


def test_longreq_long_values():
    request = parse_message(load("longreq"))
    assert request.to_addr.display_name.startswith("I have a user name of extremeextreme")
    assert request.to_addr.uri.port == 6000
    assert len(request.to_addr.uri.params) == 3
    assert request.from_addr.tag.startswith("1298298") and len(request.from_addr.tag) > 150
    assert [v.host for v in request.vias[:33]] == [f"sip{n}.example.com" for n in range(33, 0, -1)]
    assert request.vias[33].params["received"] == "192.0.2.5"
    assert len(request.vias) == 34
    assert len(request.body) == 150


def test_dblreq_extra_octets_after_a_datagram_are_ignored():
    request = parse_message(load("dblreq"))
    assert (request.method, request.body) == ("REGISTER", b"")
    assert request.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    assert request.headers.get("Contact") == "sip:j.user@host.example.com"


def test_semiuri_semicolon_in_user_part():
    request = parse_message(load("semiuri"))
    assert request.sip_uri.user == "user;par=u@example.net"
    assert request.sip_uri.host == "example.com"
    assert len(request.headers.get_all("Accept")) == 6


def test_transports_known_and_unknown():
    request = parse_message(load("transports"))
    assert [v.transport for v in request.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert request.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_mpart01_binary_multipart_body():
    message = load("mpart01")
    request = parse_message(message)
    assert request.method == "MESSAGE"
    assert request.vias[0].params == {"branch": "z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-", "rport": None}
    assert b"\x00" in request.body and b"\r\n\r\n" in request.body
    assert request.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert request.to_bytes() == message
    assert StreamFramer().feed(message + message)[1].body == request.body


def test_unreason_utf8_reason_phrase():
    response = parse_message(load("unreason"))
    assert response.status == 200
    assert response.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert len(response.body) == 154


def test_noreason_empty_reason_phrase():
    response = parse_message(load("noreason"))
    assert (response.status, response.reason) == (100, "")
    assert response.to_addr.tag == "902jndnke3"


# -- 3.1.2 Invalid messages ---------------------------------------------------


def test_badinv01_extra_separators_in_via_and_contact():
    answerable("badinv01", "Bad Request - Malformed Via")


def test_clerr_content_length_larger_than_body():
    # On UDP: 400.  On a stream the framer just waits for the rest.
    answerable("clerr", "Bad Request - Body shorter than Content-Length")
    assert StreamFramer().feed(load("clerr")) == []


def test_scalar02_cseq_out_of_range():
    # The 400 is due to the CSeq (> 2**32-1); Max-Forwards 300 and the huge
    # expiry values alone would be for the proxy and registrar to tolerate.
    answerable("scalar02", "Bad Request - Malformed CSeq")


def test_scalarlg_response_with_huge_scalars_is_dropped():
    assert rejected("scalarlg").message is None  # responses are discarded, never answered


def test_quotbal_unterminated_quote():
    answerable("quotbal", "Bad Request - Malformed To")


def test_ltgtruri_request_uri_in_angle_brackets():
    error = answerable("ltgtruri", "Bad Request - Malformed Request-Line")
    assert error.message.uri == "<sip:user@example.com>"


def test_lwsruri_lws_inside_request_uri():
    answerable("lwsruri", "Bad Request - Malformed Request-Line")


def test_lwsstart_multiple_sp_in_request_line():
    answerable("lwsstart", "Bad Request - Malformed Request-Line")


def test_trws_trailing_sp_after_version():
    answerable("trws", "Bad Request - Malformed Request-Line")


def test_escruri_escaped_headers_in_request_uri():
    # RFC 3261 §19.1.1: headers are not allowed in a Request-URI; rejecting is allowed.
    answerable("escruri", "Bad Request - Headers in Request-URI")


def test_baddate_non_gmt_date_is_left_to_whoever_reads_date():
    # RFC 4475 (baddate): reject only if the Date matters to the element.
    # This layer never interprets Date, so it takes the message in; a layer
    # that uses Date must reject "EST" (RFC 3261 §20.17 allows only GMT).
    request = parse_message(load("baddate"))
    assert request.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


def test_regbadct_bare_contact_with_escaped_header():
    # RFC 3261 §20.10: a URI with "?" must be in name-addr form.
    answerable("regbadct", "Bad Request - Malformed Contact")


def test_badaspec_spaces_inside_angle_brackets():
    answerable("badaspec", "Bad Request - Malformed To")


def test_baddn_unquoted_display_name_with_comma():
    answerable("baddn", "Bad Request - Malformed From")


def test_badvers_unknown_protocol_version_gets_505():
    error = rejected("badvers")
    assert (error.status, error.reason) == (505, "Version Not Supported")
    assert make_response(error.message, error.status).reason == "Version Not Supported"


def test_mismatch01_cseq_method_differs_from_request_method():
    answerable("mismatch01", "Bad Request - CSeq method mismatch")


def test_mismatch02_unknown_method_with_mismatched_cseq():
    # RFC 4475 (mismatch02) prefers 501 but accepts 400; the parser cannot know
    # which methods the application implements, so it answers 400.
    answerable("mismatch02", "Bad Request - CSeq method mismatch")


def test_bigcode_response_code_too_large():
    assert rejected("bigcode").message is None  # a response: dropped


# -- 3.3 Transaction layer and application semantics ----------------------------


def test_badbranch_magic_cookie_without_identifier_parses():
    # Syntactically fine: the transaction layer decides (400 or RFC 2543 matching).
    assert parse_message(load("badbranch")).vias[0].branch == "z9hG4bK"


def test_insuf_missing_required_headers_cannot_be_answered():
    # No From, To or Call-ID: there is nothing to build a response from.
    error = rejected("insuf")
    assert error.reason == "Bad Request - Missing From"
    assert error.message is None


def test_ncl_negative_content_length():
    answerable("ncl", "Bad Request - Bad Content-Length")
    with pytest.raises(SIPParseError):  # on a stream: a framing error, close the connection
        StreamFramer().feed(load("ncl"))


def test_zeromf_max_forwards_zero_parses():
    # A proxy answers 483 (RFC 3261 §16.3); a UAS just processes the OPTIONS.
    assert parse_message(load("zeromf")).headers.get("Max-Forwards") == "0"


def test_cparam01_bare_contact_params_belong_to_the_header():
    # Registrar semantics: unknownparam is a contact parameter here...
    contact = NameAddr.parse(parse_message(load("cparam01")).headers.get("Contact"))
    assert (contact.params, contact.uri.params) == ({"unknownparam": None}, {})


def test_cparam02_angled_contact_params_belong_to_the_uri():
    # ...and a URI parameter here.
    contact = NameAddr.parse(parse_message(load("cparam02")).headers.get("Contact"))
    assert (contact.params, contact.uri.params) == ({}, {"unknownparam": None})


def test_regaut01_unknown_authorization_scheme_parses():
    # The registrar answers 401 (RFC 4475 regaut01); Authorization is never split.
    request = parse_message(load("regaut01"))
    assert request.headers.get_all("Authorization") == ["NoOneKnowsThisScheme opaque-data=here"]


def test_multi01_repeated_single_value_fields():
    answerable("multi01", "Bad Request - Multiple CSeq")


def test_mcl01_multiple_content_length_values():
    answerable("mcl01", "Bad Request - Multiple Content-Length")
    with pytest.raises(SIPParseError, match="Conflicting Content-Length"):
        StreamFramer().feed(load("mcl01"))


def test_bcast_response_with_broadcast_via_parses():
    # Dropping (not forwarding) a response whose next Via is a broadcast
    # address is the transport's job (RFC 4475 bcast).
    response = parse_message(load("bcast"))
    assert isinstance(response, Response)
    assert response.vias[1].host == "255.255.255.255"


def test_bext01_unknown_required_extensions_parse():
    # The UAS answers 420 Bad Extension with Unsupported (RFC 3261 §8.2.2.3).
    request = parse_message(load("bext01"))
    assert request.headers.get_all("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert request.headers.get_all("Proxy-Require") == ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]


def test_novelsc_unknown_request_uri_scheme_parses():
    # 416 Unsupported URI Scheme is the application's answer (RFC 3261 §8.2.2.1).
    request = parse_message(load("novelsc"))
    assert request.uri == "soap.beep://192.0.2.103:3002"
    assert request.sip_uri == "soap.beep://192.0.2.103:3002"


def test_unkscm_opaque_request_uri_parses():
    # RFC 4475's "unkscm" (the brief's "unksm"): 416 from the application.
    assert parse_message(load("unkscm")).uri == "nobodyKnowsThisScheme:totallyopaquecontent"


def test_unksm2_unknown_schemes_in_to_from_contact_parse():
    # The registrar answers 416: it cannot register isbn:/name: addresses.
    request = parse_message(load("unksm2"))
    assert request.to_addr.uri == "isbn:2983792873"
    assert request.from_addr.uri == "http://www.example.com"
    assert NameAddr.parse(request.headers.get("Contact")).uri == "name:John_Smith"


def test_sdp01_unacceptable_body_type_parses():
    # 415 Unsupported Media Type belongs to the UAS (RFC 3261 §8.2.3).
    request = parse_message(load("sdp01"))
    assert request.headers.get("Accept") == "text/nobodyKnowsThis"
    assert request.headers.get("Content-Type") == "application/sdp"


def test_inv2543_rfc_2543_style_invite_parses():
    # No branch cookie, no Max-Forwards, no From tag, no Content-Length (UDP):
    # RFC 3261 elements must still take it in (backwards compatibility).
    request = parse_message(load("inv2543"))
    assert request.vias[0].branch is None
    assert request.from_addr.tag is None
    assert "Max-Forwards" not in request.headers
    assert request.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")


def test_regescrt_escaped_route_in_angled_contact_parses():
    # Valid syntax; a registrar must not store the Route header it escapes.
    request = parse_message(load("regescrt"))
    assert NameAddr.parse(request.headers.get("Contact")).uri.headers == {"Route": "<sip:sip.example.com>"}


VALID = [
    "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq", "semiuri",
    "transports", "mpart01", "unreason", "noreason", "badbranch", "baddate", "zeromf", "cparam01",
    "cparam02", "regaut01", "bcast", "bext01", "novelsc", "unkscm", "unksm2", "sdp01", "regescrt",
]  # fmt: skip


@pytest.mark.parametrize("name", VALID)
def test_valid_messages_survive_write_and_reparse(name):
    message = parse_message(load(name))
    again = parse_message(message.to_bytes())
    assert again.headers.items() == message.headers.items()
    assert again.body == message.body


# dblreq's trailing octets would be a second message on a stream.
@pytest.mark.parametrize("name", [n for n in VALID if n != "dblreq"])
def test_valid_messages_frame_on_a_stream_split_anywhere(name):
    data = load(name)
    for cut in range(0, len(data), 7):
        framer = StreamFramer()
        assert len(framer.feed(data[:cut]) + framer.feed(data[cut:])) == 1
