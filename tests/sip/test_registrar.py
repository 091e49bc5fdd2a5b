"""
The registrar against the real store (SQLite or PostgreSQL, per --db), with
a fake clock: digest challenge and answer, bindings and their expiry, the
RFC 3261 §10.3 rules, and blocking of sources that keep failing.
"""

import itertools

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer, reactor
from twisted.internet.task import Clock

from callcenter.config import StorageConfig
from callcenter.metrics import Metrics
from callcenter.passwords import sip_ha1
from callcenter.sip.digest import (
    DigestVerifier,
    NonceCounts,
    NonceIssuer,
    authorization_for,
    parse_auth_params,
)
from callcenter.sip.guard import BLOCK, SourceGuard
from callcenter.sip.message import Request
from callcenter.sip.authn import Authenticator
from callcenter.sip.accounts import NEGATIVE_SECONDS, AccountCache
from callcenter.sip.location import RETRY_SECONDS, UPSERT_ROWS, Binding, LocationService
from callcenter.sip.registrar import Registrar, RegistrationPolicy
from callcenter.sip.transaction import ServerNonInviteTransaction, new_branch
from callcenter.sip.transport import DatagramDestination
from callcenter.store.schema import sip_accounts, sip_bindings
from callcenter.store.service import StoreService

REALM = "callcenter"
PHONE = ("192.0.2.10", 5062)


class Transaction(ServerNonInviteTransaction):
    """A real server transaction whose responses are kept, not sent."""

    def __init__(self, request):
        super().__init__(layer=None, key=None, request=request, source=None, reliable=True)
        self.state = "trying"
        self.responses = []

    def _send(self, message):
        self.responses.append(message)

    def _responded(self, response):
        pass


@pytest.fixture
def clock():
    clock = Clock()
    clock.advance(1_800_000_000)  # a realistic epoch: expiry is stored as seconds
    return clock


@pytest.fixture
def store(db_url):
    service = StoreService(StorageConfig(url=db_url), reactor, Metrics())
    service.privilegedStartService()
    service.startService()

    def accounts(connection):
        for user, password in (("1001", "demo1001"), ("1002", "demo1002")):
            connection.execute(
                sip_accounts.insert(),
                {
                    "username": user,
                    "display_name": user,
                    "realm": REALM,
                    "ha1_md5": sip_ha1(user, REALM, password, "MD5"),
                    "ha1_sha256": sip_ha1(user, REALM, password, "SHA-256"),
                },
            )

    pytest_twisted.blockon(service.transaction(accounts))
    yield service
    pytest_twisted.blockon(service.stopService())


@pytest.fixture
def guard(clock):
    return SourceGuard(clock, max_failures=3)


@pytest.fixture
def registrar(store, clock, guard):
    verifier = DigestVerifier(REALM, NonceIssuer(b"k" * 32, clock, 300), NonceCounts(clock))
    location = LocationService(store, clock, batch_window=0)
    location.load()
    authenticator = Authenticator(AccountCache(store, clock), verifier, guard)
    return Registrar(authenticator, location, clock, RegistrationPolicy(3600, 60, 7200))


class Phone:
    """A softphone's view of registering: challenge, answer, nonce-count."""

    def __init__(self, registrar, user="1001", password="demo1001", call_id="reg-1@phone"):
        self.registrar = registrar
        self.user, self.password, self.call_id = user, password, call_id
        self.cseq = itertools.count(1)
        self.challenge = None
        self.nc = itertools.count(1)

    def request(self, contacts=("<sip:1001@192.0.2.10:5062>",), expires=None, authorize=True, aor=None):
        request = Request("REGISTER", "sip:127.0.0.1")
        request.headers.add("Via", f"SIP/2.0/UDP 192.0.2.10:5062;branch={new_branch()};rport")
        request.headers.add("From", f"<sip:{self.user}@127.0.0.1>;tag=ph1")
        request.headers.add("To", f"<sip:{aor or self.user}@127.0.0.1>")
        request.headers.add("Call-ID", self.call_id)
        request.headers.add("CSeq", f"{next(self.cseq)} REGISTER")
        for contact in contacts:
            request.headers.add("Contact", contact)
        if expires is not None:
            request.headers.add("Expires", str(expires))
        if authorize and self.challenge is not None:
            request.headers.add(
                "Authorization",
                authorization_for(
                    self.challenge, "REGISTER", "sip:127.0.0.1", self.user, self.password,
                    lambda: "cn0nce", next(self.nc),
                ),
            )
        return request

    @pytest_twisted.inlineCallbacks
    def send(self, **kwargs):
        request = self.request(**kwargs)
        transaction = Transaction(request)
        yield self.registrar.register(transaction, request, DatagramDestination(None, PHONE))
        [response] = transaction.responses
        if response.status == 401:
            self.challenge = response.headers.get_all("WWW-Authenticate")[0]
        return response

    @pytest_twisted.inlineCallbacks
    def register(self, **kwargs):
        """Register, answering one challenge as a phone does."""
        response = yield self.send(**kwargs)
        if response.status == 401:
            response = yield self.send(**kwargs)
        return response


def expires_of(response):
    return sorted(value.split("expires=")[1] for value in response.headers.get_all("Contact"))


@pytest_twisted.inlineCallbacks
def test_register_is_challenged_then_accepted_and_stored(registrar):
    phone = Phone(registrar)
    challenged = yield phone.send()
    assert challenged.status == 401
    challenges = [parse_auth_params(v)[1] for v in challenged.headers.get_all("WWW-Authenticate")]
    # RFC 8760: SHA-256 offered first, MD5 for older phones; one realm, qop=auth.
    assert [c["algorithm"] for c in challenges] == ["SHA-256", "MD5"]
    assert {(c["realm"], c["qop"]) for c in challenges} == {(REALM, "auth")}
    accepted = yield phone.send(expires=600)
    assert accepted.status == 200
    assert accepted.to_addr.tag
    assert expires_of(accepted) == ["600"]
    assert "Date" in accepted.headers
    [binding] = yield registrar.contacts("1001")
    assert (binding.contact, binding.source) == ("sip:1001@192.0.2.10:5062", "udp:192.0.2.10:5062")


@pytest_twisted.inlineCallbacks
def test_several_contacts_and_their_own_expiry(registrar, clock):
    phone = Phone(registrar)
    response = yield phone.register(
        contacts=("<sip:1001@192.0.2.10:5062>;expires=120", "<sip:1001@198.51.100.4:5060>"), expires=900
    )
    assert response.status == 200
    assert expires_of(response) == ["120", "900"]
    clock.advance(121)
    live = yield registrar.contacts("1001")
    assert [b.contact for b in live] == ["sip:1001@198.51.100.4:5060"]
    assert (yield registrar._location.purge_expired()) == 1


@pytest_twisted.inlineCallbacks
def test_expires_is_capped_and_too_brief_is_refused(registrar):
    phone = Phone(registrar)
    response = yield phone.register(expires=999999)
    assert expires_of(response) == ["7200"]
    brief = yield phone.register(expires=10)
    assert brief.status == 423
    assert brief.headers.get("Min-Expires") == "60"


@pytest_twisted.inlineCallbacks
def test_unregister_one_contact_and_then_all(registrar):
    phone = Phone(registrar)
    yield phone.register(contacts=("<sip:1001@192.0.2.10:5062>", "<sip:1001@198.51.100.4:5060>"))
    gone = yield phone.register(contacts=("<sip:1001@192.0.2.10:5062>;expires=0",))
    assert [c for c in gone.headers.get_all("Contact")] == ["<sip:1001@198.51.100.4:5060>;expires=3600"]
    cleared = yield phone.register(contacts=("*",), expires=0)
    assert cleared.status == 200
    assert cleared.headers.get_all("Contact") == []
    assert (yield registrar.contacts("1001")) == []


@pytest_twisted.inlineCallbacks
def test_wildcard_without_expires_zero_is_a_bad_request(registrar):
    response = yield Phone(registrar).register(contacts=("*",), expires=3600)
    assert response.status == 400


@pytest_twisted.inlineCallbacks
def test_a_late_register_cannot_undo_a_newer_one(registrar):
    phone = Phone(registrar)
    yield phone.register(expires=600)
    phone.cseq = itertools.count(1)  # an old retransmission from the same Call-ID
    stale = yield phone.register(expires=0)
    assert stale.status == 400
    assert len((yield registrar.contacts("1001"))) == 1


@pytest_twisted.inlineCallbacks
def test_wrong_password_is_forbidden_and_repeated_failures_block_the_source(registrar, guard):
    thief = Phone(registrar, password="123456")
    for _ in range(3):
        response = yield thief.register()
        assert response.status == 403
    assert guard.admit(PHONE[0]) == BLOCK
    assert (yield registrar.contacts("1001")) == []


@pytest_twisted.inlineCallbacks
def test_unknown_users_get_the_same_answer_as_wrong_passwords(registrar):
    response = yield Phone(registrar, user="9999", password="x").register()
    assert response.status == 403


@pytest_twisted.inlineCallbacks
def test_one_extension_may_not_register_another(registrar):
    response = yield Phone(registrar).register(aor="1002")
    assert response.status == 403
    assert (yield registrar.contacts("1002")) == []


@pytest_twisted.inlineCallbacks
def test_a_stale_nonce_is_rechallenged_with_stale_true(registrar, clock):
    phone = Phone(registrar)
    yield phone.register()
    clock.advance(301)
    response = yield phone.send()
    assert response.status == 401
    assert "stale=true" in response.headers.get("WWW-Authenticate").lower().replace('"', "")
    assert (yield phone.send()).status == 200


@pytest_twisted.inlineCallbacks
def test_bindings_survive_a_new_registrar(registrar, store, clock, guard):
    yield Phone(registrar).register(expires=600)
    verifier = DigestVerifier(REALM, NonceIssuer(b"z" * 32, clock, 300), NonceCounts(clock))
    location = LocationService(store, clock)
    assert (yield location.load()) == 1
    restarted = Registrar(Authenticator(AccountCache(store, clock), verifier, guard), location, clock)
    assert [b.contact for b in (yield restarted.contacts("1001"))] == ["sip:1001@192.0.2.10:5062"]


class CountingStore:
    """The real store, counting transactions and failing the ones asked to."""

    def __init__(self, store):
        self.store = store
        self.transactions = 0
        self.fail_next = 0

    def transaction(self, work, *args):
        self.transactions += 1
        if self.fail_next:
            self.fail_next -= 1
            return defer.fail(OSError("disk full"))
        return self.store.transaction(work, *args)


def stored_contacts(connection):
    return sorted(row.contact for row in connection.execute(sa.select(sip_bindings.c.contact)))


def binding(contact, clock, expires=600):
    return Binding("1001", contact, clock.seconds() + expires, "c@x", 1, "udp:192.0.2.10:5062", None)


@pytest_twisted.inlineCallbacks
def test_concurrent_registrations_share_one_commit(store, clock):
    counting = CountingStore(store)
    location = LocationService(counting, clock, batch_window=0.01)
    yield location.load()
    counting.transactions = 0
    contacts = [f"sip:1001@192.0.2.{n}:5060" for n in range(10)]
    waits = [location.change("1001", {contact: binding(contact, clock)}) for contact in contacts[:5]]
    assert counting.transactions == 0
    clock.advance(0.01)
    # While the first five commit together, the next five gather for one more,
    # which starts a window after the first did.
    waits += [location.change("1001", {contact: binding(contact, clock)}) for contact in contacts[5:]]
    yield defer.gatherResults(waits[:5])
    assert counting.transactions == 1
    clock.advance(0.01)
    yield defer.gatherResults(waits)
    assert counting.transactions == 2
    assert (yield store.transaction(stored_contacts)) == sorted(contacts)
    assert [b.contact for b in location.current("1001")] == sorted(contacts)


@pytest_twisted.inlineCallbacks
def test_a_batch_larger_than_one_statement_is_written_whole(store, clock):
    location = LocationService(store, clock, batch_window=0)
    yield location.load()
    contacts = [f"sip:1001@192.0.2.{n // 250}.{n % 250}:5060" for n in range(2 * UPSERT_ROWS + 3)]
    yield location.change("1001", {contact: binding(contact, clock) for contact in contacts})
    assert (yield store.transaction(stored_contacts)) == sorted(contacts)
    # Written again (a refresh of them all), then some removed: updated, not duplicated.
    yield location.change("1001", {contact: binding(contact, clock, 900) for contact in contacts})
    yield location.change("1001", dict.fromkeys(contacts[:5]))
    assert (yield store.transaction(stored_contacts)) == sorted(contacts[5:])
    restarted = LocationService(store, clock)
    yield restarted.load()
    assert {b.expires_at for b in restarted.current("1001")} == {clock.seconds() + 900}


@pytest_twisted.inlineCallbacks
def test_a_failed_commit_is_reported_and_written_later(store, clock):
    counting = CountingStore(store)
    location = LocationService(counting, clock, batch_window=0)
    yield location.load()
    counting.fail_next = 1
    contact = "sip:1001@192.0.2.10:5062"
    with pytest.raises(OSError):
        yield location.change("1001", {contact: binding(contact, clock)})
    assert (yield store.transaction(stored_contacts)) == []
    clock.advance(RETRY_SECONDS)
    yield location.flushed()
    assert (yield store.transaction(stored_contacts)) == [contact]


@pytest_twisted.inlineCallbacks
def test_register_answers_500_path_when_the_database_fails(registrar, store):
    registrar._location._store = failing = CountingStore(store)
    phone = Phone(registrar)
    yield phone.send()
    failing.fail_next = 1
    with pytest.raises(OSError):
        # The dispatcher turns this into 500 with Retry-After.
        yield phone.send()


@pytest_twisted.inlineCallbacks
def test_accounts_are_read_together_and_a_disabled_one_lapses_at_refresh(store, clock):
    counting = CountingStore(store)
    accounts = AccountCache(counting, clock)
    assert (yield accounts.refresh()) == 2
    first, second = accounts.lookup("1001"), accounts.lookup("1001")
    assert (yield first)["MD5"] == (yield second)["MD5"] == sip_ha1("1001", REALM, "demo1001", "MD5")
    assert counting.transactions == 1

    def disable(connection):
        connection.execute(sip_accounts.update().values(enabled=False).where(sip_accounts.c.username == "1001"))

    yield store.transaction(disable)
    assert (yield accounts.lookup("1001")) is not None
    assert (yield accounts.refresh()) == 1
    assert (yield accounts.lookup("1001")) is None


@pytest_twisted.inlineCallbacks
def test_unknown_names_cost_one_query_each_and_are_remembered_briefly(store, clock):
    counting = CountingStore(store)
    accounts = AccountCache(counting, clock)
    both = [accounts.lookup("nobody"), accounts.lookup("nobody")]
    assert (yield defer.gatherResults(both)) == [None, None]
    assert (yield accounts.lookup("nobody")) is None
    assert counting.transactions == 1
    clock.advance(NEGATIVE_SECONDS)
    assert (yield accounts.lookup("nobody")) is None
    assert counting.transactions == 2
    # A name created since the last refresh is found on its own.
    assert (yield accounts.lookup("1002")) is not None
