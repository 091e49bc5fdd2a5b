"""
Where a dialled number goes, and who may dial it: public numbers for
anyone, extensions and trunks for authenticated extensions (407 digest on
the INVITE) or trusted sources only.  In memory, with the real digest
verifier and a dict of accounts.
"""

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.task import Clock

from callcenter.passwords import sip_ha1
from callcenter.sip.authn import Authenticator
from callcenter.sip.digest import DigestVerifier, NonceCounts, NonceIssuer, authorization_for
from callcenter.sip.guard import BLOCK, SourceGuard
from callcenter.sip.message import Request
from callcenter.sip.transaction import new_branch
from callcenter.sip.transport import DatagramDestination
from callcenter.telephony.callerid import CallerID
from callcenter.telephony.routing import Router, TrunkRoute

REALM = "callcenter"
PHONE = ("192.0.2.10", 5062)
CARRIER = ("203.0.113.1", 5060)


class Accounts:
    def __init__(self, **passwords):
        self._accounts = {
            user: {"MD5": sip_ha1(user, REALM, password, "MD5"), "SHA-256": None, "display_name": f"Desk {user}"}
            for user, password in passwords.items()
        }

    def lookup(self, username):
        return defer.succeed(self.known(username))

    def known(self, username):
        return self._accounts.get(username)


class Connector:
    def to_extension(self, aor):
        return ("extension", aor)

    def through_trunk(self, trunk, number):
        return ("trunk", trunk, number)


def echo(channel):
    pass


@pytest.fixture
def guard():
    return SourceGuard(Clock(), max_failures=2)


@pytest.fixture
def router(guard):
    clock = Clock()
    verifier = DigestVerifier(REALM, NonceIssuer(b"k" * 32, clock, 300), NonceCounts(clock), algorithms=("MD5",))
    accounts = Accounts(**{"1001": "demo1001", "1002": "demo1002"})
    return Router(
        {"9196": echo},
        Authenticator(accounts, verifier, guard),
        accounts,
        Connector(),
        trunk_routes=[TrunkRoute("0", "carrier", strip=1), TrunkRoute("00", "international", strip=0)],
        trusted=lambda host: host == CARRIER[0],
    )


def invite(number, from_user="1002", challenge=None, password="demo1002"):
    uri = f"sip:{number}@127.0.0.1"
    request = Request("INVITE", uri)
    request.headers.add("Via", f"SIP/2.0/UDP 192.0.2.10:5062;branch={new_branch()}")
    request.headers.add("From", f"<sip:{from_user}@127.0.0.1>;tag=f")
    request.headers.add("To", f"<{uri}>")
    request.headers.add("Call-ID", "route-test")
    request.headers.add("CSeq", "1 INVITE")
    if challenge is not None:
        request.headers.add(
            "Proxy-Authorization",
            authorization_for(challenge, "INVITE", uri, from_user, password, lambda: "c", 1),
        )
    return request


CALLER = CallerID("13800138000", "Someone", asserted=False)


@pytest_twisted.inlineCallbacks
def route(router, number, source=PHONE, **kwargs):
    """Route as a phone does: answering one 407 challenge."""
    result = yield router.route(invite(number), DatagramDestination(None, source), CALLER)
    if getattr(result, "status", None) == 407:
        challenge = result.headers.get("Proxy-Authenticate")
        result = yield router.route(invite(number, challenge=challenge, **kwargs), DatagramDestination(None, source), CALLER)
    return result


@pytest_twisted.inlineCallbacks
def test_a_public_number_answers_anyone_without_a_challenge(router):
    application, caller = yield router.route(invite("9196"), DatagramDestination(None, PHONE), CALLER)
    assert (application, caller) == (echo, CALLER)


@pytest_twisted.inlineCallbacks
def test_an_extension_is_challenged_with_407_first(router):
    response = yield router.route(invite("1001"), DatagramDestination(None, PHONE), CALLER)
    assert response.status == 407
    assert response.headers.get("Proxy-Authenticate").startswith("Digest ")
    assert response.to_addr.tag


@pytest_twisted.inlineCallbacks
def test_an_authenticated_extension_reaches_another_as_itself(router):
    application, caller = yield route(router, "1001")
    assert application == ("extension", "1001")
    # Known by its credentials, whatever its From said.
    assert caller == CallerID("1002", "Desk 1002", asserted=True)


@pytest_twisted.inlineCallbacks
def test_a_wrong_password_is_forbidden_and_guessing_gets_the_source_blocked(router, guard):
    for _ in range(2):
        response = yield route(router, "1001", password="guess")
        assert response.status == 403
    assert guard.admit(PHONE[0]) == BLOCK


@pytest_twisted.inlineCallbacks
def test_a_scanner_learns_nothing_about_which_numbers_exist(router):
    # Unknown or known, every private number gets the same challenge.
    for number in ("1001", "5555", "0013800138000"):
        response = yield router.route(invite(number), DatagramDestination(None, PHONE), CALLER)
        assert response.status == 407


@pytest_twisted.inlineCallbacks
def test_after_authentication_an_unknown_number_is_404(router):
    response = yield route(router, "5555")
    assert response.status == 404


@pytest_twisted.inlineCallbacks
def test_trunk_prefixes_longest_first_with_digits_stripped(router):
    application, _ = yield route(router, "013800138000")
    assert application == ("trunk", "carrier", "13800138000")
    application, _ = yield route(router, "0044207946000")
    assert application == ("trunk", "international", "0044207946000")


@pytest_twisted.inlineCallbacks
def test_a_trusted_source_is_not_challenged_and_keeps_its_caller_id(router):
    application, caller = yield router.route(invite("1001"), DatagramDestination(None, CARRIER), CALLER)
    assert (application, caller) == (("extension", "1001"), CALLER)
