"""
The Access-Request path's own wire format (callcenter.radius.codec),
checked against pyrad and the standard library: the same attributes, the
same HMAC-MD5, the same User-Password, the same answers byte for byte.
"""

import hashlib
import hmac
import struct

import pytest
from pyrad import packet as radius
from pyrad.packet import AcctPacket, AuthPacket

from callcenter.radius.codec import SharedSecret, attribute, integer_attribute, split_attributes
from callcenter.radius.dictionary import load_dictionary

SECRET = b"nas-secret-1"
DICTIONARY = load_dictionary()


def access_request(secret=SECRET, **attributes):
    pkt = AuthPacket(id=9, secret=secret, dict=DICTIONARY)
    pkt.authenticator = pkt.CreateAuthenticator()
    pkt["User-Name"] = "investor"
    pkt["User-Password"] = pkt.PwCrypt("right")
    for name, value in attributes.items():
        pkt[name.replace("_", "-")] = value
    pkt.add_message_authenticator()
    return pkt, pkt.RequestPacket()


def test_attributes_are_split_as_pyrad_splits_them():
    pkt, data = access_request(NAS_Port=17, Proxy_State=[b"one", b"two"], Reply_Message=["a", "b"])
    values, proxy_states, signature_at, signatures = split_attributes(data, len(data))
    decoded = AuthPacket(secret=SECRET, dict=DICTIONARY, packet=data)
    # pyrad's raw interface: attribute code -> its values, in order.
    assert values == {code: raw[0] for code, raw in dict.items(decoded)}
    assert proxy_states == [bytes([33, 5]) + b"one", bytes([33, 5]) + b"two"]
    assert signatures == 1 and data[signature_at] == 80 and data[signature_at + 2:signature_at + 18] == values[80]


def test_octets_past_the_length_are_not_attributes():
    _, data = access_request()
    assert split_attributes(data + b"\x01\x05abc", len(data))[0][1] == b"investor"


def test_without_proxy_state_or_message_authenticator():
    header = bytes([1, 1, 0, 26]) + bytes(16)
    assert split_attributes(header + b"\x01\x06user", 26) == ({1: b"user"}, None, None, 0)


def test_two_message_authenticators_are_counted():
    header = bytes([1, 1, 0, 56]) + bytes(16)
    data = header + (b"\x50\x12" + bytes(16)) * 2
    assert split_attributes(data, len(data))[2:] == (20, 2)


@pytest.mark.parametrize(
    "attributes",
    [b"\x01", b"\x01\x01a", b"\x01\x00", b"\x01\x09ab", b"\x01\x03a\x01"],
    ids=["half a header", "length 1", "length 0", "overrunning", "a second one cut short"],
)
def test_attributes_that_do_not_fit_are_malformed(attributes):
    data = bytes([1, 1, 0, 20 + len(attributes)]) + bytes(16) + attributes
    assert split_attributes(data, len(data)) is None


@pytest.mark.parametrize("size", [1, 12, 63, 64, 65, 200])
def test_hmac_md5_is_the_standard_librarys(size):
    secret = bytes(range(size))
    for message in (b"", b"x", bytes(range(256)) * 3):
        assert SharedSecret(secret).sign(message) == hmac.digest(secret, message, "md5")


def test_a_signed_request_verifies_and_a_changed_one_does_not():
    pkt, data = access_request(NAS_Port=1)
    _, _, signature_at, _ = split_attributes(data, len(data))
    assert SharedSecret(SECRET).verify_request(data, len(data), signature_at)
    assert not SharedSecret(b"another-secret").verify_request(data, len(data), signature_at)
    tampered = data.replace(b"\x05\x06\x00\x00\x00\x01", b"\x05\x06\x00\x00\x00\x02")
    assert not SharedSecret(SECRET).verify_request(tampered, len(tampered), signature_at)


@pytest.mark.parametrize("password", [b"x", b"right", b"exactly16octets!", b"p" * 17, b"\xc3\xdc\xc2\xeb", b"\xff" * 128])
def test_user_password_is_what_pyrad_hid(password):
    pkt = AuthPacket(secret=SECRET, dict=DICTIONARY)
    pkt.authenticator = pkt.CreateAuthenticator()
    hidden = pkt.PwCrypt(password)
    assert SharedSecret(SECRET).reveal_password(pkt.authenticator, hidden) == password


@pytest.mark.parametrize("size", [0, 15, 17, 144])
def test_a_user_password_of_a_wrong_size_is_refused(size):
    with pytest.raises(ValueError):
        SharedSecret(SECRET).reveal_password(bytes(16), bytes(size))


@pytest.mark.parametrize("proxy_states", [[], [b"p1", b"\x00\x01binary"]])
@pytest.mark.parametrize("code", [radius.AccessAccept, radius.AccessReject])
def test_answers_are_byte_for_byte_what_pyrad_makes(code, proxy_states):
    request, data = access_request(**({"Proxy_State": proxy_states} if proxy_states else {}))
    theirs = request.CreateReply()
    theirs.code = code
    theirs["Session-Timeout"] = 3600
    theirs["Reply-Message"] = ["好", "ok"]
    ours = b"".join(bytes([33, len(state) + 2]) + state for state in proxy_states)
    ours += integer_attribute(27, 3600) + attribute(18, "好".encode()) + attribute(18, b"ok")
    assert SharedSecret(SECRET).reply(code, data, ours) == theirs.ReplyPacket()


def test_an_answer_pyrad_accepts_as_the_reply_to_the_request():
    request, data = access_request()
    answer = SharedSecret(SECRET).reply(radius.AccessAccept, data, b"")
    assert request.VerifyReply(request.CreateReply(packet=answer), answer, enforce_ma=True)
    assert answer[20] == 80 and len(answer) == 38


def test_an_answer_over_4096_octets_is_refused():
    _, data = access_request()
    with pytest.raises(ValueError, match="4096"):
        SharedSecret(SECRET).reply(radius.AccessAccept, data, attribute(18, b"x" * 253) * 17)


def test_attribute_values_that_do_not_fit():
    with pytest.raises(ValueError):
        attribute(18, b"x" * 254)
    assert attribute(18, b"x" * 253)[:2] == b"\x12\xff"
    with pytest.raises(struct.error):
        integer_attribute(27, -1)
    with pytest.raises(struct.error):
        integer_attribute(27, 2**32)
    assert integer_attribute(27, 2**32 - 1) == b"\x1b\x06\xff\xff\xff\xff"


def test_the_secret_is_keyed_once_and_not_changed_by_use():
    shared = SharedSecret(SECRET)
    first = shared.sign(b"message")
    shared.sign(b"another")
    shared.reveal_password(bytes(16), bytes(16))
    assert shared.sign(b"message") == first == hmac.new(SECRET, b"message", hashlib.md5).digest()


# -- the Accounting-Request path


def accounting_request(secret=SECRET, identifier=9, signed=False, **attributes):
    pkt = AcctPacket(id=identifier, secret=secret, dict=DICTIONARY)
    pkt["Acct-Status-Type"] = "Interim-Update"
    pkt["Acct-Session-Id"] = "81000001"
    pkt["Acct-Session-Time"] = 60
    for name, value in attributes.items():
        pkt[name.replace("_", "-")] = value
    if signed:
        pkt.add_message_authenticator()
    return pkt, pkt.RequestPacket()  # the Request Authenticator made here (RFC 2866 §3)


def signature_of(data):
    return split_attributes(data, len(data))[2]


def test_an_accounting_request_from_the_secret_verifies():
    _, data = accounting_request(User_Name="investor")
    assert split_attributes(data, len(data))[3] == 0
    assert SharedSecret(SECRET).verify_accounting_request(data, len(data))
    assert not SharedSecret(b"another-secret").verify_accounting_request(data, len(data))
    tampered = data.replace(b"\x00\x00\x00\x3c", b"\x00\x00\x00\x3d")  # Acct-Session-Time 60 -> 61
    assert tampered != data and not SharedSecret(SECRET).verify_accounting_request(tampered, len(tampered))


def test_an_accounting_request_is_read_to_its_length_only():
    _, data = accounting_request()
    assert SharedSecret(SECRET).verify_accounting_request(data + b"padding", len(data))


def test_a_signed_accounting_request_verifies_as_pyrad_verifies_it():
    pkt, data = accounting_request(signed=True, Proxy_State=b"hop")
    assert AcctPacket(secret=SECRET, dict=DICTIONARY, packet=data).verify_message_authenticator()
    assert SharedSecret(SECRET).verify_accounting_request(data, len(data), signature_of(data))


def test_a_message_authenticator_from_another_secret_is_refused():
    # Signed with another secret, then the Request Authenticator made with
    # the right one: only the Message-Authenticator gives it away.
    forged = AcctPacket(id=9, secret=b"wrong", dict=DICTIONARY)
    forged["Acct-Status-Type"] = "Start"
    forged.add_message_authenticator()
    forged.RequestPacket()
    forged.secret = SECRET
    forged.message_authenticator = False
    data = forged.RequestPacket()
    assert SharedSecret(SECRET).verify_accounting_request(data, len(data))  # the Request Authenticator alone
    assert not SharedSecret(SECRET).verify_accounting_request(data, len(data), signature_of(data))


def pyrads_accounting_response(request):
    reply = request.CreateReply()  # the Identifier, Request Authenticator and Proxy-States
    reply.add_message_authenticator()  # first
    return reply.ReplyPacket()


@pytest.mark.parametrize("proxy_states", [[], [b"p1"], [b"p1", b"\x00\x01binary", b"x" * 253]])
@pytest.mark.parametrize("identifier", [0, 9, 255])
def test_accounting_responses_are_byte_for_byte_what_pyrad_makes(identifier, proxy_states):
    request, data = accounting_request(identifier=identifier, **({"Proxy_State": proxy_states} if proxy_states else {}))
    _, proxy, _, _ = split_attributes(data, len(data))
    ours = SharedSecret(SECRET).accounting_response(data, b"".join(proxy or ()))
    assert ours == pyrads_accounting_response(request)
    assert request.VerifyReply(request.CreateReply(packet=ours), ours, enforce_ma=True)


def test_a_response_made_once_for_an_identifier_is_right_for_every_request():
    # Without Proxy-State the signed attribute is remembered per Identifier;
    # the Response Authenticator is still each request's own.
    shared = SharedSecret(SECRET)
    for session_time in (60, 61, 62):
        request, data = accounting_request(identifier=7, Acct_Session_Time=session_time)
        assert shared.accounting_response(data, b"") == pyrads_accounting_response(request)
    request, data = accounting_request(identifier=8)
    assert shared.accounting_response(data, b"") == pyrads_accounting_response(request)


def test_an_accounting_response_over_4096_octets_is_refused():
    _, data = accounting_request()
    with pytest.raises(ValueError, match="4096"):
        SharedSecret(SECRET).accounting_response(data, attribute(33, b"x" * 253) * 17)
