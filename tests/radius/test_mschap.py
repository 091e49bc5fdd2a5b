"""
MS-CHAP (L{callcenter.radius.mschap}): the RFCs' test vectors, the
attributes of requests and answers, and MS-CHAP decided by the access
policy: the same decisions as PAP and CHAP, with MS-CHAP's answers added.
"""

import hashlib
import struct

import pytest
from pyrad.packet import Packet

from callcenter.radius import accounts as a
from callcenter.radius import mschap as m
from callcenter.radius.chap import ChapSecrets
from callcenter.radius.directory import AccountDirectory
from callcenter.radius.model import AccessRequest
from callcenter.radius.policy import MS_CHAP_REPLAY_SECONDS, AccessPolicy
from callcenter.store.schema import radius_sessions
from internet_helpers import NOON, PASSWORD, CountingStore, add_tiers, clock_at, fired, open_internet

KEY = bytes(range(32))
SECRET = b"mschap-test-secret"
REQUEST_AUTHENTICATOR = bytes(range(100, 116))
h = bytes.fromhex

# RFC 2759 §9.2 (the same values open RFC 3079 §3.5).
USER = b"User"
PASSWORD_2759 = "clientPass"
AUTHENTICATOR_CHALLENGE = h("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = h("21402324255E262A28295F2B3A337C7E")
NT_RESPONSE = h("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")


def test_rfc_2759_section_9_2():
    assert m.challenge_hash(PEER_CHALLENGE, AUTHENTICATOR_CHALLENGE, USER) == h("D02E4386BCE91226")
    password_hash = m.nt_password_hash(PASSWORD_2759)
    assert password_hash == h("44EBBA8D5312B8D611474411F56989AE")
    assert m.generate_nt_response(AUTHENTICATOR_CHALLENGE, PEER_CHALLENGE, USER, PASSWORD_2759) == NT_RESPONSE
    assert m.hash_nt_password_hash(password_hash) == h("41C00C584BD2D91C4017A2A12FA59F3F")
    assert m.generate_authenticator_response(
        password_hash, NT_RESPONSE, PEER_CHALLENGE, AUTHENTICATOR_CHALLENGE, USER
    ) == "S=407A5589115FD0D6209F510FE9C04566932CDA56"


def test_rfc_3079_section_3_5_3_128_bit_keys():
    password_hash_hash = m.hash_nt_password_hash(m.nt_password_hash(PASSWORD_2759))
    master = m.get_master_key(password_hash_hash, NT_RESPONSE)
    assert master == h("FDECE3717A8C838CB388E527AE3CDD31")
    # The RFC derives the send key as the server does; the peer's receive key is the same.
    send = m.get_asymmetric_start_key(master, 16, is_send=True, is_server=True)
    assert send == h("8B7CDC149B993A1BA118CB153F56DCCB")
    assert m.get_asymmetric_start_key(master, 16, is_send=False, is_server=False) == send
    receive = m.get_asymmetric_start_key(master, 16, is_send=False, is_server=True)
    assert receive != send and receive == m.get_asymmetric_start_key(master, 16, is_send=True, is_server=False)
    # RFC 3079 §3.5.1: the 40-bit start key is the first 8 octets of the same digest.
    assert m.get_asymmetric_start_key(master, 8, True, True) == h("8B7CDC149B993A1B")


def test_rfc_2433_appendix_b():
    password_hash = m.nt_password_hash("MyPw")
    assert password_hash == h("FC156AF7EDCD6C0EDDE3337D427F4EAC")
    assert m.challenge_response(h("102DB5DF085D3041"), password_hash) == h(
        "4E9D3C8F9CFD385D5BF4D3246791956CA4C351AB409A3D61"
    )


def test_a_password_is_hashed_as_utf_16le_whatever_its_script():
    assert m.nt_password_hash("上网密码2026") == m.nt_password_hash("上网密码2026".encode("utf-8"))
    assert m.nt_password_hash("上网密码2026") != m.nt_password_hash("上网密码2027")


@pytest.mark.parametrize("key_length", [16, 8, 32])
def test_mppe_keys_are_hidden_as_pyrad_reveals_salt_encryption(key_length):
    key = bytes(range(7, 7 + key_length))
    hidden = m.hide_mppe_key(key, SECRET, REQUEST_AUTHENTICATOR, b"\x81\x23")
    assert hidden[:2] == b"\x81\x23" and (len(hidden) - 2) % 16 == 0
    assert key not in hidden
    # pyrad's SaltDecrypt (RFC 2868 §3.5, the same construction as RFC 2548 §2.4.2): independent.
    assert Packet(secret=SECRET, authenticator=REQUEST_AUTHENTICATOR).SaltDecrypt(hidden) == key
    assert m.reveal_mppe_key(hidden, SECRET, REQUEST_AUTHENTICATOR) == key


# -- the attributes of a request


def vsa(kind, value):
    return struct.pack("!BBIBB", 26, len(value) + 8, 311, kind, len(value) + 2) + value


def packet(*attributes):
    body = b"".join(attributes)
    return struct.pack("!BBH", 1, 7, 20 + len(body)) + REQUEST_AUTHENTICATOR + body


def v2_response(ident=5, nt_response=NT_RESPONSE, peer_challenge=PEER_CHALLENGE):
    return bytes((ident, 0)) + peer_challenge + bytes(8) + nt_response


def test_an_ms_chap_v2_request_is_read():
    data = packet(
        b"\x01\x06User", vsa(m.MS_CHAP_CHALLENGE, AUTHENTICATOR_CHALLENGE), vsa(m.MS_CHAP2_RESPONSE, v2_response())
    )
    assert m.read_ms_chap(data) == {
        "method": "mschapv2", "chap_id": 5, "chap_challenge": AUTHENTICATOR_CHALLENGE,
        "peer_challenge": PEER_CHALLENGE, "chap_response": NT_RESPONSE,
    }


def test_an_ms_chap_v1_request_is_read_and_lm_only_is_refused():
    response = bytes((3, 1)) + bytes(24) + bytes(range(24))
    data = packet(vsa(m.MS_CHAP_CHALLENGE, bytes(8)), vsa(m.MS_CHAP_RESPONSE, response))
    assert m.read_ms_chap(data) == {
        "method": "mschap", "chap_id": 3, "chap_challenge": bytes(8), "chap_response": bytes(range(24)),
    }
    lm_only = bytes((3, 0)) + bytes(range(24)) + bytes(24)
    assert m.read_ms_chap(packet(vsa(m.MS_CHAP_CHALLENGE, bytes(8)), vsa(m.MS_CHAP_RESPONSE, lm_only))) == (
        "method_not_allowed"
    )


def test_other_vendors_attributes_are_not_ms_chap():
    other = struct.pack("!BBIBB", 26, 12, 2011, 25, 6) + b"abcd"
    assert m.read_ms_chap(packet(other)) is None


@pytest.mark.parametrize(
    "attributes, problem",
    [
        (
            (vsa(m.MS_CHAP_CHALLENGE, AUTHENTICATOR_CHALLENGE), vsa(m.MS_CHAP2_RESPONSE, v2_response()[:49])),
            "49 octets",
        ),
        ((vsa(m.MS_CHAP2_RESPONSE, v2_response()),), "without a 16-octet"),
        ((vsa(m.MS_CHAP_CHALLENGE, bytes(8)), vsa(m.MS_CHAP2_RESPONSE, v2_response())), "without a 16-octet"),
        ((vsa(m.MS_CHAP_CHALLENGE, bytes(16)), vsa(m.MS_CHAP_RESPONSE, bytes(50))), "without an 8-octet"),
        ((struct.pack("!BBIBB", 26, 10, 311, 25, 9) + b"ab",), "does not parse"),
    ],
)
def test_malformed_ms_chap_attributes_are_named(attributes, problem):
    with pytest.raises(ValueError, match=problem):
        m.read_ms_chap(packet(*attributes))


# -- decided by the policy


class Threads:
    def __call__(self, function, *args):
        return fired_now(function, *args)


def fired_now(function, *args):
    from twisted.internet import defer

    return defer.succeed(function(*args))


class Setting:
    def __init__(self, database):
        add_tiers(database)
        self.database = database
        self.clock = clock_at()
        self.secrets = ChapSecrets(KEY)
        self.directory = AccountDirectory(CountingStore(database), self.clock, ttl=5.0)
        self.policy = AccessPolicy(
            CountingStore(database), self.clock, Threads(), self.directory, self.secrets, max_attempts=3
        )
        self.challenges = 0

    def open(self, username, fund_account_no, chap=True, **options):
        sealed = self.secrets.seal(username, PASSWORD) if chap else None
        open_internet(self.database, username, fund_account_no, chap_secret=sealed, **options)

    def request(self, username="zhang", password=PASSWORD, version=2, challenge=None):
        if challenge is None:
            self.challenges += 1
            challenge = hashlib.md5(b"%d" % self.challenges).digest()
        if version == 2:
            response = m.generate_nt_response(challenge, PEER_CHALLENGE, username.encode(), password)
            return AccessRequest("bras-1", username, "mschapv2", chap_id=7, chap_challenge=challenge,
                                 chap_response=response, peer_challenge=PEER_CHALLENGE)
        challenge = challenge[:8]
        response = m.challenge_response(challenge, m.nt_password_hash(password))
        return AccessRequest("bras-1", username, "mschap", chap_id=7, chap_challenge=challenge, chap_response=response)

    def decide(self, request):
        return fired(self.policy.authenticate(request))


@pytest.fixture
def setting(database):
    setting = Setting(database)
    setting.open("zhang", "10010001")
    return setting


def vendor_attributes(data):
    """{vendor type: [values]} of the Microsoft attributes in encoded attributes."""
    found = {}
    while data:
        assert data[0] == 26
        length = data[1]
        vendor, kind, size = struct.unpack("!IBB", data[2:8])
        assert vendor == 311 and size == length - 6
        found.setdefault(kind, []).append(data[8:length])
        data = data[length:]
    return found


def answered(decision):
    return vendor_attributes(decision.request_attributes(SECRET, REQUEST_AUTHENTICATOR))


def test_ms_chap_v2_is_accepted_with_its_success_and_keys(setting):
    request = setting.request()
    decision = setting.decide(request)
    assert decision.accepted and decision.session_timeout is not None and decision.reply_message
    attributes = answered(decision)
    password_hash = m.nt_password_hash(PASSWORD)
    expected = m.generate_authenticator_response(
        password_hash, request.chap_response, PEER_CHALLENGE, request.chap_challenge, b"zhang"
    )
    assert attributes[m.MS_CHAP2_SUCCESS] == [b"\x07" + expected.encode()]
    master = m.get_master_key(m.hash_nt_password_hash(password_hash), request.chap_response)
    [send], [receive] = attributes[m.MS_MPPE_SEND_KEY], attributes[m.MS_MPPE_RECV_KEY]
    assert send[:2] != receive[:2] and send[0] & 0x80 and receive[0] & 0x80
    assert m.reveal_mppe_key(send, SECRET, REQUEST_AUTHENTICATOR) == m.get_asymmetric_start_key(master, 16, True, True)
    assert m.reveal_mppe_key(receive, SECRET, REQUEST_AUTHENTICATOR) == m.get_asymmetric_start_key(
        master, 16, False, True
    )
    assert attributes[m.MS_MPPE_ENCRYPTION_POLICY] == [struct.pack("!I", 1)]
    assert attributes[m.MS_MPPE_ENCRYPTION_TYPES] == [struct.pack("!I", 6)]
    assert "MS-CHAP success" in repr(decision) and password_hash.hex() not in repr(decision)


def test_ms_chap_v1_is_accepted_with_its_keys(setting):
    decision = setting.decide(setting.request(version=1))
    assert decision.accepted
    attributes = answered(decision)
    assert m.MS_CHAP2_SUCCESS not in attributes
    [hidden] = attributes[m.MS_CHAP_MPPE_KEYS]
    assert len(hidden) == 32
    # RFC 2548 §2.4.1: hidden as a User-Password is (RFC 2865 §5.2); pyrad reveals those independently.
    pad = hashlib.md5(SECRET + REQUEST_AUTHENTICATOR).digest() + hashlib.md5(SECRET + hidden[:16]).digest()
    keys = bytes(x ^ y for x, y in zip(hidden, pad))
    assert keys == bytes(8) + m.hash_nt_password_hash(m.nt_password_hash(PASSWORD)) + bytes(8)


def test_the_policy_answers_at_once_from_memory(setting):
    setting.decide(setting.request())  # the account's state read
    decision = setting.policy.decide_now(setting.request())
    assert decision.accepted and m.MS_CHAP2_SUCCESS in answered(decision)


@pytest.mark.parametrize("version", [1, 2])
def test_a_wrong_password_is_rejected_with_691_and_counts_towards_the_lock(setting, version):
    decisions = [setting.decide(setting.request(password="wrong-pass", version=version)) for _ in range(3)]
    assert [d.reason for d in decisions] == ["bad_password", "bad_password", "locked"]
    [error] = answered(decisions[0])[m.MS_CHAP_ERROR]
    if version == 2:
        # Retry allowed, on the new challenge.
        assert error.startswith(b"\x07E=691 R=1 C=")
        assert b" V=3 M=Authentication failed" in error and len(error.split(b" C=")[1].split()[0]) == 32
    else:
        assert error == b"\x07E=691 R=0"
    # Locked: the right password no longer opens it, as for PAP.
    locked = setting.decide(setting.request(version=version))
    assert locked.reason == "locked" and answered(locked)[m.MS_CHAP_ERROR][0].startswith(b"\x07E=647 R=0")


def test_an_unknown_user_is_told_what_a_wrong_password_is(setting):
    decision = setting.decide(setting.request(username="nobody"))
    assert decision.reason == "bad_password"
    assert answered(decision)[m.MS_CHAP_ERROR][0].startswith(b"\x07E=691 R=1 C=")


def test_disabled_quota_and_simultaneous_use_are_the_policys_decisions(setting):
    setting.database.transaction(a.set_enabled, "zhang", False)
    setting.directory.forget("zhang")
    decision = setting.decide(setting.request())
    assert decision.reason == "disabled" and answered(decision)[m.MS_CHAP_ERROR][0].startswith(b"\x07E=647")
    setting.database.transaction(a.set_enabled, "zhang", True)
    setting.database.transaction(lambda c: c.execute(radius_sessions.insert().values(
        client="bras-1", acct_session_id="s1", username="zhang", started_at=NOON, updated_at=NOON)))
    setting.directory.forget("zhang")
    decision = setting.decide(setting.request())
    assert decision.reason == "already_online" and answered(decision)[m.MS_CHAP_ERROR][0].startswith(b"\x07E=649")
    setting.database.transaction(a.set_tier, "zhang", "vip")
    setting.database.transaction(a.add_tier, "vip", 0, None, 5)
    setting.directory.forget("zhang")
    decision = setting.decide(setting.request())
    assert decision.reason == "quota_exhausted" and answered(decision)[m.MS_CHAP_ERROR][0].startswith(b"\x07E=646")


def test_an_account_without_a_chap_secret_is_refused_ms_chap(setting):
    setting.open("li", "10010002", chap=False)
    decision = setting.decide(setting.request(username="li"))
    assert decision.reason == "method_not_allowed"
    assert answered(decision)[m.MS_CHAP_ERROR][0].startswith(b"\x07E=649 R=0")


def test_a_replayed_response_is_refused_without_counting(setting):
    request = setting.request()
    assert setting.decide(request).accepted
    for _ in range(3):
        replayed = setting.decide(request)
        assert replayed.reason == "bad_password"
    assert setting.database.transaction(a.account, "zhang").failed_logins == 0
    assert setting.policy.decide_now(request).reason == "bad_password"
    # A new challenge is a new login; the old one is forgotten after a while.
    assert setting.decide(setting.request()).accepted
    setting.clock.advance(MS_CHAP_REPLAY_SECONDS + 1)
    assert setting.decide(request).accepted


def test_a_response_to_another_challenge_or_mangled_is_a_wrong_password(setting):
    request = setting.request()
    mangled = request._replace(chap_response=bytes([request.chap_response[0] ^ 1]) + request.chap_response[1:])
    assert setting.decide(mangled).reason == "bad_password"
    other_challenge = request._replace(chap_challenge=bytes(16))
    assert setting.decide(other_challenge).reason == "bad_password"
    other_peer = request._replace(peer_challenge=bytes(16))
    assert setting.decide(other_peer).reason == "locked"  # the third wrong password in a row
    other_user = setting.request()._replace(user_name="zhang2")
    assert setting.decide(other_user).reason == "bad_password"
    assert setting.database.transaction(a.account, "zhang").failed_logins == 3
