"""
Our RADIUS dictionary (etc/radius/dictionary) as pyrad reads it, and vendor
dictionaries named in the configuration.
"""

import pytest

from callcenter.config import Mismatch
from callcenter.radius.dictionary import DictionaryFiles, load_dictionary

# (name, code, type) from the RFCs, a sample of each.
EXPECTED = [
    ("User-Name", 1, "string"),
    ("User-Password", 2, "string"),
    ("CHAP-Password", 3, "octets"),
    ("NAS-IP-Address", 4, "ipaddr"),
    ("Service-Type", 6, "integer"),
    ("Framed-IP-Address", 8, "ipaddr"),
    ("Reply-Message", 18, "string"),
    ("State", 24, "octets"),
    ("Class", 25, "octets"),
    ("Session-Timeout", 27, "integer"),
    ("Idle-Timeout", 28, "integer"),
    ("Calling-Station-Id", 31, "string"),
    ("NAS-Identifier", 32, "string"),
    ("Proxy-State", 33, "octets"),
    ("Acct-Status-Type", 40, "integer"),
    ("Acct-Delay-Time", 41, "integer"),
    ("Acct-Session-Id", 44, "string"),
    ("Acct-Terminate-Cause", 49, "integer"),
    ("Acct-Input-Gigawords", 52, "integer"),
    ("Acct-Output-Gigawords", 53, "integer"),
    ("Event-Timestamp", 55, "date"),
    ("CHAP-Challenge", 60, "octets"),
    ("NAS-Port-Type", 61, "integer"),
    ("EAP-Message", 79, "octets"),
    ("Message-Authenticator", 80, "octets"),
    ("Acct-Interim-Interval", 85, "integer"),
    ("NAS-Port-Id", 87, "string"),
    ("NAS-IPv6-Address", 95, "ipv6addr"),
    ("Framed-Interface-Id", 96, "ifid"),
    ("Framed-IPv6-Prefix", 97, "ipv6prefix"),
    ("Framed-IPv6-Pool", 100, "string"),
    ("Error-Cause", 101, "integer"),
]


def test_our_dictionary_loads_whole_in_pyrad():
    dictionary = load_dictionary()
    assert dictionary.skipped_attributes == set()
    for name, code, kind in EXPECTED:
        attribute = dictionary[name]
        assert (attribute.code, attribute.type, attribute.vendor) == (code, kind, ""), name
    assert dictionary["User-Password"].encrypt == 1


@pytest.mark.parametrize(
    "attribute, name, number",
    [
        ("Acct-Status-Type", "Interim-Update", 3),
        ("Acct-Status-Type", "Accounting-Off", 8),
        ("Acct-Terminate-Cause", "Admin-Reset", 6),
        ("Service-Type", "Authorize-Only", 17),
        ("NAS-Port-Type", "Ethernet", 15),
        ("Error-Cause", "Session-Context-Not-Found", 503),
        ("Error-Cause", "Residual-Session-Context-Removed", 201),
    ],
)
def test_named_values(attribute, name, number):
    values = load_dictionary()[attribute].values
    assert values.GetForward(name) == number.to_bytes(4, "big")


VENDOR = (
    "# a made-up vendor for the tests\n"
    "VENDOR\tExample-Broadband\t64999\n"
    "BEGIN-VENDOR\tExample-Broadband\n"
    "ATTRIBUTE\tExample-Rate-Limit\t1\tstring\n"
    "ATTRIBUTE\tExample-Quota-Class\t2\tinteger\n"
    "VALUE\tExample-Quota-Class\tGold\t3\n"
    "END-VENDOR\tExample-Broadband\n"
)


def test_vendor_dictionaries_load_after_ours(tmp_path):
    vendor = tmp_path / "dictionary.example"
    vendor.write_text(VENDOR)
    dictionary = load_dictionary([str(vendor)])
    assert dictionary["Example-Rate-Limit"].vendor == "Example-Broadband"
    assert dictionary.vendors.GetForward("Example-Broadband") == 64999
    assert dictionary["User-Name"].code == 1


def test_the_setting_checks_each_file(tmp_path):
    good = tmp_path / "dictionary.example"
    good.write_text(VENDOR)
    broken = tmp_path / "dictionary.broken"
    broken.write_text("ATTRIBUTE\tBroken\tnot-a-number\tstring\n")
    assert DictionaryFiles().parse([str(good)]) == (str(good),)
    with pytest.raises(Mismatch) as caught:
        DictionaryFiles().parse([str(good), str(broken), str(tmp_path / "missing")])
    message = str(caught.value)
    assert "dictionary.broken" in message and "Illegal attribute code" in message
    assert "missing\": cannot read" in message
    with pytest.raises(Mismatch):
        DictionaryFiles().parse("dictionary.example")
