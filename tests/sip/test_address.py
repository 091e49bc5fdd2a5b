"""SIP URIs, name-addr values and Via values (RFC 3261 §19.1, §20.10, §20.42)."""

import pytest

from callcenter.sip.address import NameAddr, SipURI, Via


def test_sip_uri_components():
    uri = SipURI.parse("sips:alice:secret@Example.COM:5061;transport=TCP;LR?subject=project%20x&priority=urgent")
    assert uri.scheme == "sips"
    assert (uri.user, uri.password, uri.host, uri.port) == ("alice", "secret", "Example.COM", 5061)
    assert uri.params == {"transport": "TCP", "lr": None}
    assert uri.headers == {"subject": "project x", "priority": "urgent"}


def test_sip_uri_without_user_or_port():
    uri = SipURI.parse("sip:192.0.2.4")
    assert (uri.user, uri.password, uri.host, uri.port, uri.params) == (None, None, "192.0.2.4", None, {})
    assert str(uri) == "sip:192.0.2.4"


def test_sip_uri_ipv6_is_held_without_brackets_and_written_with_them():
    uri = SipURI.parse("sip:bob@[2001:db8::10]:5070;maddr=[2001:db8::1]")
    assert uri.host == "2001:db8::10"
    assert uri.port == 5070
    assert str(uri) == "sip:bob@[2001:db8::10]:5070;maddr=[2001:db8::1]"


def test_user_part_is_unescaped_once_and_reescaped():
    # RFC 4475 esc01: value%2541 is "value%41", never "valueA".
    uri = SipURI.parse("sip:I%20have%20spaces@example.net;n%61me=v%61lue%25%34%31")
    assert uri.user == "I have spaces"
    assert uri.params == {"name": "value%41"}
    assert str(uri) == "sip:I%20have%20spaces@example.net;name=value%2541"


def test_user_may_hold_user_unreserved_characters():
    text = "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com"
    uri = SipURI.parse(text)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert str(uri) == text


def test_escaped_null_survives_a_round_trip():
    uri = SipURI.parse("sip:null-%00-null@example.com")
    assert uri.user == "null-\x00-null"
    assert str(uri) == "sip:null-%00-null@example.com"


def test_user_characters_outside_the_grammar_are_escaped_when_written():
    assert str(SipURI("example.com", user="a b@c")) == "sip:a%20b%40c@example.com"


@pytest.mark.parametrize(
    "text",
    [
        "tel:+15551234",
        "sip:",
        "sip:user@",
        "sip:user@host:99999",
        "sip:user@host:port",
        "sip:us er@host",
        "sip:%ZZ@host",
        "sip:host;",
        "sip:host;a=b c",
        "sip:[::1",
        "sip:[zz::1]",
        "sip:host?=x",
        "sip:user@ho st",
    ],
)
def test_malformed_sip_uris_raise_value_error(text):
    with pytest.raises(ValueError):
        SipURI.parse(text)


def test_name_addr_with_quoted_display_name():
    addr = NameAddr.parse('"J Rosenberg \\\\\\""  <sip:jdrosen@example.com> ;  tag = 98asjd8')
    assert addr.display_name == 'J Rosenberg \\"'
    assert addr.uri.user == "jdrosen"
    assert addr.tag == "98asjd8"


def test_name_addr_token_display_name_needs_no_space_before_angle():
    addr = NameAddr.parse("caller<sip:caller@example.com>;tag=323")
    assert (addr.display_name, addr.uri.host, addr.tag) == ("caller", "example.com", "323")


def test_params_after_a_bare_addr_spec_belong_to_the_header():
    bare = NameAddr.parse("sip:+19725552222@gw1.example.net;unknownparam")
    assert bare.params == {"unknownparam": None}
    assert bare.uri.params == {}
    angled = NameAddr.parse("<sip:+19725552222@gw1.example.net;unknownparam>")
    assert angled.params == {}
    assert angled.uri.params == {"unknownparam": None}


def test_name_addr_keeps_other_schemes_as_text():
    assert NameAddr.parse("isbn:2983792873").uri == "isbn:2983792873"
    addr = NameAddr.parse('"Help desk" <tel:+15551234;phone-context=example.com>;tag=x')
    assert addr.uri == "tel:+15551234;phone-context=example.com"
    assert addr.tag == "x"


def test_quoted_param_values_keep_their_quotes():
    addr = NameAddr.parse('<sip:a@b>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";expires=60')
    assert addr.params == {"+sip.instance": '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"', "expires": "60"}
    assert str(addr) == '<sip:a@b>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";expires=60'


def test_name_addr_is_always_written_in_angle_form():
    assert str(NameAddr.parse("sip:alice@example.com;tag=1")) == "<sip:alice@example.com>;tag=1"
    assert str(NameAddr.parse("Alice <sip:alice@example.com>")) == "Alice <sip:alice@example.com>"


def test_display_names_are_quoted_when_they_need_it():
    addr = NameAddr(SipURI("example.com", user="bell"), 'Bell, "Alec"')
    assert str(addr) == '"Bell, \\"Alec\\"" <sip:bell@example.com>'
    assert NameAddr.parse(str(addr)).display_name == 'Bell, "Alec"'


def test_a_display_name_cannot_inject_a_header_line():
    addr = NameAddr(SipURI("example.com"), "evil\r\nVia: SIP/2.0/UDP attacker")
    assert "\r" not in str(addr) and "\n" not in str(addr)


@pytest.mark.parametrize(
    "text",
    [
        '"Mr. J. User <sip:j.user@example.com>',  # RFC 4475 quotbal
        '"Watson, Thomas" < sip:t.watson@example.org >',  # badaspec
        "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",  # baddn
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",  # regbadct
        '"Joe" <sip:joe@example.org>;;;;',  # badinv01
        "<sip:joe@example.org",
        "",
        "*",
        "<>",
    ],
)
def test_malformed_name_addrs_raise_value_error(text):
    with pytest.raises(ValueError):
        NameAddr.parse(text)


def test_via_with_lws_everywhere_is_unfolded_and_parsed():
    via = Via.parse("SIP  /    2.0   / udp  192.168.255.111   ; branch= z9hG4bK30239 ; rport ; received = 192.0.2.1")
    assert (via.protocol, via.transport, via.host, via.port) == ("SIP/2.0", "UDP", "192.168.255.111", None)
    assert via.branch == "z9hG4bK30239"
    assert via.params == {"branch": "z9hG4bK30239", "rport": None, "received": "192.0.2.1"}
    assert str(via) == "SIP/2.0/UDP 192.168.255.111;branch=z9hG4bK30239;rport;received=192.0.2.1"


def test_via_with_port_and_ipv6():
    via = Via.parse("SIP/2.0/TLS [2001:db8::9]:5061;branch=z9hG4bKx;rport=5062;maddr=224.2.0.1;ttl=16")
    assert (via.host, via.port, via.transport) == ("2001:db8::9", 5061, "TLS")
    assert via.params["rport"] == "5062"
    assert str(via) == "SIP/2.0/TLS [2001:db8::9]:5061;branch=z9hG4bKx;rport=5062;maddr=224.2.0.1;ttl=16"


def test_via_received_may_be_a_bare_ipv6_address():
    via = Via.parse("SIP/2.0/UDP [2001:db8::9]:5060;received=2001:db8::9;branch=z9hG4bK2")
    assert via.params == {"received": "2001:db8::9", "branch": "z9hG4bK2"}


def test_via_built_by_hand():
    via = Via("ws", "edge.example.com", 443, {"branch": "z9hG4bK1"})
    assert str(via) == "SIP/2.0/WS edge.example.com:443;branch=z9hG4bK1"


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0/UDP 192.0.2.15;;",
        "SIP/2.0/UDP",
        "SIP/2.0 192.0.2.1",
        "SIP/2.0/UDP host:70000",
        "SIP/2.0/UDP host;branch=a b",
        "SIP/2.0/UDP [::1;branch=x",
    ],
)
def test_malformed_vias_raise_value_error(text):
    with pytest.raises(ValueError):
        Via.parse(text)
