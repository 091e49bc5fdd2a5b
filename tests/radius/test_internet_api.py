"""
The internet accounts HTTP API (L{callcenter.radius.api}) and the staff
authentication it uses (L{callcenter.web.staff_auth}): real HTTP on
127.0.0.1 through the web subsystem's root and site, the real store
(SQLite, or PostgreSQL with --db postgresql) worked in the reactor's
threads, argon2 in threads, and the running L{AccessPolicy} whose caches
the API must make forget.  The server's time is a L{Clock} at L{NOON}, so
the month of use and the lockouts do not depend on when the tests run.

The disconnector is a stand-in (L{DisconnectorStandIn}) answering ack, nak
or timeout at once, or when the test says: tests/radius/test_disconnect_nas.py
covers the real L{Disconnector} against a UDP NAS stand-in, and
tests/radius/test_kick_process.py a kick through the real server.
"""

import datetime

import pytest
import pytest_twisted
import sqlalchemy as sa
import treq
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.web.client import HTTPConnectionPool, ResponseNeverReceived
from twisted.web.resource import Resource
from zope.interface import implementer
from zope.interface.verify import verifyObject

from callcenter import passwords
from callcenter.context import Components
from callcenter.interfaces import IWebAPI
from callcenter.radius import accounts
from callcenter.radius.api import InternetAPI
from callcenter.radius.directory import AccountDirectory
from callcenter.radius.disconnect import DynamicAuthorizationResult, NoRoute
from callcenter.radius.interfaces import IDisconnector
from callcenter.radius.model import AccessRequest
from callcenter.radius.policy import AccessPolicy
from callcenter.store.schema import agents, audit_log, internet_usage, radius_sessions
from callcenter.trading import audit
from callcenter.web.service import WebRoot
from callcenter.web.site import CorrelatedSite
from callcenter.web.staff_auth import StaffAuthenticator
from internet_helpers import NOON, PASSWORD, add_tiers, clock_at, open_internet

SUPERVISOR = ("9001", "demo9001")
ADMIN = ("9002", "demo9002")
AGENT = ("8001", "demo8001")
HOUR = 3600


@implementer(IDisconnector)
class DisconnectorStandIn:
    """
    Stands in for the radius subsystem's L{Disconnector}: answers each
    C{disconnect} with C{self.outcome} at once, or, with C{self.held}, when
    the test fires the Deferred it finds there.  No packet is sent and
    nothing is recorded (the real one records in radius_disconnects).
    """

    def __init__(self):
        self.outcome = DynamicAuthorizationResult("ack", 1)
        self.held = None
        self.asked = []

    def disconnect(self, session, reason):
        self.asked.append((session, reason))
        if isinstance(self.outcome, Exception):
            return defer.fail(self.outcome)
        if self.held is not None:
            d = defer.Deferred()
            self.held.append(d)
            return d
        return defer.succeed(self.outcome)


class Threads:
    """The reactor's threads, counting argon2 verifications."""

    def __init__(self):
        self.verifications = 0

    def __call__(self, function, *args):
        if function is passwords.verify_password:
            self.verifications += 1
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)


class Blocking:
    """The running store as the synchronous database internet_helpers expects (for setting up)."""

    def __init__(self, store):
        self.store = store

    def transaction(self, work, *args):
        return pytest_twisted.blockon(self.store.transaction(work, *args))


def _seed(connection):
    for (agent_id, password), role in ((AGENT, "agent"), (SUPERVISOR, "supervisor"), (ADMIN, "admin")):
        connection.execute(agents.insert().values(
            agent_id=agent_id, name=f"{role} {agent_id}", password_hash=passwords.hash_password(password), role=role,
        ))
    started = NOON - datetime.timedelta(hours=1)
    for client, session, username, stopped in (
        ("bras-1", "s-zhang", "zhang", None),
        ("bras-2", "s-li", "li", None),
        ("bras-1", "s-zhang-old", "zhang", started),
    ):
        connection.execute(radius_sessions.insert().values(
            client=client, acct_session_id=session, username=username, nas_ip="10.1.0.1", framed_ip="10.9.0.7",
            started_at=started, updated_at=started, stopped_at=stopped, session_time=1800,
        ))
    connection.execute(internet_usage.insert().values(
        username="zhang", month="2026-12", seconds=2 * HOUR, input_octets=5000, output_octets=70000,
    ))


class Server:
    def __init__(self, store, api, clock, policy, disconnector, threads, base, pool):
        self.store = store
        self.api = api
        self.clock = clock
        self.policy = policy
        self.disconnector = disconnector
        self.threads = threads
        self.base = base
        self.pool = pool

    def request(self, method, path, auth=SUPERVISOR, json=None, headers=None):
        """Fires with (status, parsed JSON body, response)."""
        d = treq.request(method, self.base + path, json=json, headers=headers, auth=auth, pool=self.pool)

        @defer.inlineCallbacks
        def read(response):
            return response.code, (yield response.json()), response

        return d.addCallback(read)

    def audit_rows(self):
        return self.store.transaction(
            lambda c: c.execute(sa.select(audit_log).order_by(audit_log.c.seq)).mappings().all()
        )

    def pap(self, username="wang", password=PASSWORD):
        return self.policy.authenticate(AccessRequest("bras-1", username, "pap", password=password.encode()))


class Operations(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"operations"


@pytest.fixture
def server(running_store):
    blocking = Blocking(running_store)
    add_tiers(blocking)
    open_internet(blocking, "zhang", "10010001")
    open_internet(blocking, "li", "10010002", tier="family")
    open_internet(blocking, "wang", "10010003")  # never online: the policy accepts it
    blocking.transaction(_seed)
    clock = clock_at(NOON)
    threads = Threads()
    # Account states cached for an hour: only forget() makes a change seen sooner.
    policy = AccessPolicy(running_store, clock, threads, AccountDirectory(running_store, clock, ttl=HOUR))
    disconnector = DisconnectorStandIn()
    api = InternetAPI(running_store, clock, StaffAuthenticator(running_store, clock, threads), policy, disconnector)
    components = Components()
    components.provide(IWebAPI, api)
    port = reactor.listenTCP(0, CorrelatedSite(WebRoot(components, Operations())), interface="127.0.0.1")
    pool = HTTPConnectionPool(reactor, persistent=False)
    yield Server(running_store, api, clock, policy, disconnector, threads,
                 f"http://127.0.0.1:{port.getHost().port}/api/v1/internet", pool)
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))
    pytest_twisted.blockon(pool.closeCachedConnections())


def assert_error(body, code, field=None):
    error = body["error"]
    assert error["code"] == code
    assert error["message_zh"] and error["message_en"]
    assert error["correlation_id"]
    if field is not None:
        assert error["field"] == field
    return error


ENDPOINTS = [
    ("GET", "/accounts/zhang", None),
    ("POST", "/accounts/zhang/enable", None),
    ("POST", "/accounts/zhang/disable", None),
    ("PUT", "/accounts/zhang/tier", {"tier": "vip"}),
    ("GET", "/sessions", None),
    ("POST", "/sessions/1/kick", None),
]


def test_the_api_provides_iwebapi():
    api = InternetAPI(None, None, None, None, None)
    assert verifyObject(IWebAPI, api)
    assert api.prefix == "api/v1/internet"
    assert verifyObject(IDisconnector, DisconnectorStandIn())


# -- who may


@pytest.mark.parametrize("method, path, body", ENDPOINTS)
@pytest_twisted.inlineCallbacks
def test_every_endpoint_wants_a_supervisor_or_an_administrator(server, method, path, body):
    status, answer, response = yield server.request(method, path, auth=None, json=body)
    assert status == 401
    assert_error(answer, "credentials_required")
    assert response.headers.getRawHeaders("WWW-Authenticate") == ['Basic realm="callcenter staff", charset="UTF-8"']
    status, answer, _ = yield server.request(method, path, auth=(SUPERVISOR[0], "demo9002"), json=body)
    assert (status, answer["error"]["code"]) == (401, "wrong_credentials")
    status, answer, _ = yield server.request(method, path, auth=AGENT, json=body)
    assert status == 403
    assert assert_error(answer, "role_not_allowed")["message_en"] == "your role (agent) may not do this"
    # Nothing was done for them.
    assert (yield server.audit_rows()) == []
    assert server.disconnector.asked == []
    for manager in (SUPERVISOR, ADMIN):
        status, _, _ = yield server.request("GET", "/accounts/zhang", auth=manager)
        assert status == 200


@pytest.mark.parametrize("authorization", [
    "Bearer abc", "Basic", "Basic !!!", "Basic " + "OTAwMQ==",  # "9001", no colon
])
@pytest_twisted.inlineCallbacks
def test_credentials_that_are_not_basic_id_and_password_are_asked_for_again(server, authorization):
    status, answer, _ = yield server.request("GET", "/sessions", auth=None, headers={"Authorization": authorization})
    assert (status, answer["error"]["code"]) == (401, "credentials_required")


@pytest_twisted.inlineCallbacks
def test_an_unknown_agent_is_answered_like_a_wrong_password(server):
    unknown = yield server.request("GET", "/sessions", auth=("9999", "demo9999"))
    wrong = yield server.request("GET", "/sessions", auth=(SUPERVISOR[0], "nope"))
    assert unknown[0] == wrong[0] == 401
    assert unknown[1]["error"]["message_en"] == wrong[1]["error"]["message_en"] == "wrong agent id or password"


@pytest_twisted.inlineCallbacks
def test_a_verified_password_skips_argon2_until_it_expires_or_changes(server):
    for _ in range(3):
        assert (yield server.request("GET", "/sessions"))[0] == 200
    assert server.threads.verifications == 1
    # A wrong password is always argon2's to judge.
    assert (yield server.request("GET", "/sessions", auth=(SUPERVISOR[0], "demo9001x")))[0] == 401
    assert server.threads.verifications == 2
    server.clock.advance(301)
    assert (yield server.request("GET", "/sessions"))[0] == 200
    assert server.threads.verifications == 3
    # A new password (or a new role) counts at once: the row is read every time.
    new_hash = passwords.hash_password("changed-9001")
    yield server.store.transaction(
        lambda c: c.execute(agents.update().where(agents.c.agent_id == "9001").values(password_hash=new_hash))
    )
    assert (yield server.request("GET", "/sessions"))[0] == 401
    assert (yield server.request("GET", "/sessions", auth=("9001", "changed-9001")))[0] == 200
    yield server.store.transaction(
        lambda c: c.execute(agents.update().where(agents.c.agent_id == "9001").values(role="agent"))
    )
    assert (yield server.request("GET", "/sessions", auth=("9001", "changed-9001")))[0] == 403


@pytest_twisted.inlineCallbacks
def test_five_wrong_passwords_lock_the_agent_id_for_a_while(server):
    for _ in range(5):
        assert (yield server.request("GET", "/sessions", auth=(SUPERVISOR[0], "guess")))[0] == 401
    verifications = server.threads.verifications
    status, answer, response = yield server.request("GET", "/sessions")
    assert status == 429
    assert_error(answer, "too_many_attempts")
    assert response.headers.getRawHeaders("Retry-After") == ["900"]
    assert server.threads.verifications == verifications, "no password is checked while locked"
    # Another agent id from the same address is not locked.
    assert (yield server.request("GET", "/sessions", auth=ADMIN))[0] == 200
    server.clock.advance(900)
    assert (yield server.request("GET", "/sessions"))[0] == 200


@pytest_twisted.inlineCallbacks
def test_a_right_password_clears_the_count(server):
    for _ in range(2):
        for _ in range(4):
            assert (yield server.request("GET", "/sessions", auth=(SUPERVISOR[0], "guess")))[0] == 401
        assert (yield server.request("GET", "/sessions"))[0] == 200


@pytest_twisted.inlineCallbacks
def test_twenty_wrong_passwords_from_one_address_block_it(server):
    for n in range(20):
        yield server.request("GET", "/sessions", auth=(f"7{n:03d}", "guess"))
    status, answer, _ = yield server.request("GET", "/sessions", auth=ADMIN)
    assert (status, answer["error"]["code"]) == (429, "too_many_attempts")
    server.clock.advance(900)
    assert (yield server.request("GET", "/sessions", auth=ADMIN))[0] == 200


# -- accounts


@pytest_twisted.inlineCallbacks
def test_an_account_with_its_state_tier_use_and_sessions(server):
    status, body, _ = yield server.request("GET", "/accounts/zhang")
    assert status == 200
    assert {k: body[k] for k in ("username", "fund_account_no", "enabled", "locked", "failed_logins", "chap")} == {
        "username": "zhang", "fund_account_no": "10010001", "enabled": True, "locked": False, "failed_logins": 0,
        "chap": False,
    }
    assert body["tier"] == {"name": "basic", "monthly_seconds": 30 * HOUR, "idle_timeout": 600, "simultaneous_use": 1}
    assert body["usage"] == {"month": "2026-12", "seconds": 2 * HOUR, "remaining_seconds": 28 * HOUR,
                             "input_octets": 5000, "output_octets": 70000}
    [session] = body["sessions"]
    assert (session["acct_session_id"], session["client"], session["stopped_at"]) == ("s-zhang", "bras-1", None)
    assert session["started_at"] == "2026-12-10T11:00:00+08:00"


@pytest.mark.parametrize("path", ["/accounts/nobody", "/accounts/" + "x" * 65, "/accounts/nobody/enable"])
@pytest_twisted.inlineCallbacks
def test_no_such_account(server, path):
    method = "GET" if path.count("/") == 2 else "POST"
    status, body, _ = yield server.request(method, path, headers={"Accept-Language": "en"})
    assert status == 404
    error = assert_error(body, "account_not_found")
    assert list(error)[1:3] == ["message_en", "message_zh"]
    assert (yield server.audit_rows()) == []


@pytest_twisted.inlineCallbacks
def test_disabling_is_audited_and_the_running_policy_rejects_at_once(server):
    assert (yield server.pap()).accepted
    status, body, response = yield server.request("POST", "/accounts/wang/disable")
    assert (status, body["enabled"], body["username"]) == (200, False, "wang")
    [row] = yield server.audit_rows()
    assert {k: row[k] for k in ("channel", "action", "outcome", "fund_account_no", "agent_id", "caller")} == {
        "channel": "staff", "action": "internet_disable", "outcome": "ok", "fund_account_no": "10010003",
        "agent_id": "9001", "caller": "127.0.0.1",
    }
    assert row["correlation_id"] == response.headers.getRawHeaders("X-Request-Id")[0]
    assert row["detail"] == '{"username":"wang"}'
    assert row["at"] == audit.format_at(NOON)
    # The policy had the account cached for an hour: the API made it forget.
    decision = yield server.pap()
    assert (decision.accepted, decision.reason) == (False, "disabled")

    status, body, _ = yield server.request("POST", "/accounts/wang/enable", auth=ADMIN)
    assert (status, body["enabled"]) == (200, True)
    assert [(r["action"], r["agent_id"]) for r in (yield server.audit_rows())] == [
        ("internet_disable", "9001"), ("internet_enable", "9002")
    ]
    assert (yield server.pap()).accepted


@pytest_twisted.inlineCallbacks
def test_a_change_behind_the_policys_back_waits_for_its_cache(server):
    """What the forget() above is for: the same change made in the database alone is not seen yet."""
    assert (yield server.pap()).accepted
    yield server.store.transaction(accounts.set_enabled, "wang", False)
    assert (yield server.pap()).accepted
    server.clock.advance(HOUR)
    assert not (yield server.pap()).accepted


@pytest_twisted.inlineCallbacks
def test_a_new_tier_is_audited_and_decides_the_next_login(server):
    assert (yield server.pap()).session_timeout == 30 * HOUR
    status, body, _ = yield server.request("PUT", "/accounts/wang/tier", json={"tier": "vip"})
    assert status == 200
    assert body["tier"]["name"] == "vip" and body["usage"]["remaining_seconds"] is None
    [row] = yield server.audit_rows()
    assert row["action"] == "internet_tier"
    assert row["detail"] == '{"previous_tier":"basic","tier":"vip","username":"wang"}'
    decision = yield server.pap()
    assert decision.accepted and decision.session_timeout is None and decision.idle_timeout == 1800


@pytest.mark.parametrize("body, code, field", [
    ({"tier": "gold"}, "unknown_tier", "tier"),
    ({"tier": 3}, "invalid_field", "tier"),
    ({}, "missing_field", "tier"),
    ({"tier": "vip", "enabled": False}, "unknown_field", "enabled"),
])
@pytest_twisted.inlineCallbacks
def test_a_tier_refused(server, body, code, field):
    status, answer, _ = yield server.request("PUT", "/accounts/zhang/tier", json=body)
    assert status == 400
    assert_error(answer, code, field)
    assert (yield server.audit_rows()) == []
    stored = yield server.store.transaction(accounts.account, "zhang")
    assert stored.tier == "basic"


@pytest_twisted.inlineCallbacks
def test_a_tier_must_be_json(server):
    d = treq.put(server.base + "/accounts/zhang/tier", data=b"tier=vip", auth=SUPERVISOR, pool=server.pool,
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    response = yield d
    assert response.code == 415
    assert_error((yield response.json()), "unsupported_media_type")


# -- sessions


@pytest_twisted.inlineCallbacks
def test_the_sessions_online_by_user_or_client(server):
    status, body, _ = yield server.request("GET", "/sessions")
    assert status == 200
    assert [s["acct_session_id"] for s in body["sessions"]] == ["s-zhang", "s-li"]
    for query, expected in (("?user=li", ["s-li"]), ("?client=bras-1", ["s-zhang"]), ("?user=li&client=bras-1", [])):
        _, body, _ = yield server.request("GET", "/sessions" + query)
        assert [s["acct_session_id"] for s in body["sessions"]] == expected
    status, body, _ = yield server.request("GET", "/sessions?username=li")
    assert status == 400
    assert_error(body, "unknown_field", "username")


def session_id(server, acct_session_id):
    return server.store.transaction(
        lambda c: c.execute(sa.select(radius_sessions.c.id).where(
            radius_sessions.c.acct_session_id == acct_session_id)).scalar()
    )


@pytest_twisted.inlineCallbacks
def test_a_kick_answered_ack_is_audited_and_closes_nothing_here(server):
    kicked = yield session_id(server, "s-zhang")
    status, body, response = yield server.request("POST", f"/sessions/{kicked}/kick")
    assert status == 200
    assert (body["outcome"], body["attempts"], body["error_cause"]) == ("ack", 1, None)
    assert body["session"]["id"] == kicked and body["session"]["username"] == "zhang"
    [(session, reason)] = server.disconnector.asked
    assert (session.id, session.acct_session_id, session.client, reason) == (kicked, "s-zhang", "bras-1", "staff")
    [row] = yield server.audit_rows()
    assert {k: row[k] for k in ("channel", "action", "outcome", "fund_account_no", "agent_id")} == {
        "channel": "staff", "action": "internet_kick", "outcome": "ack", "fund_account_no": "10010001",
        "agent_id": "9001",
    }
    assert row["correlation_id"] == response.headers.getRawHeaders("X-Request-Id")[0]
    assert row["detail"] == (f'{{"acct_session_id":"s-zhang","attempts":1,"client":"bras-1","error_cause":null,'
                             f'"session_id":{kicked},"username":"zhang"}}')
    # The NAS's Accounting-Stop ends the session, not the kick.
    still = yield server.store.transaction(accounts.session, kicked)
    assert still.stopped_at is None


@pytest.mark.parametrize("outcome, status, code", [
    (DynamicAuthorizationResult("nak", 1, 503, "Session-Context-Not-Found"), 502, "nas_refused"),
    (DynamicAuthorizationResult("timeout", 3), 504, "nas_timeout"),
])
@pytest_twisted.inlineCallbacks
def test_a_kick_the_nas_refuses_or_ignores(server, outcome, status, code):
    server.disconnector.outcome = outcome
    kicked = yield session_id(server, "s-li")
    answered, body, _ = yield server.request("POST", f"/sessions/{kicked}/kick")
    assert answered == status
    error = assert_error(body, code)
    assert error["details"] == {"outcome": outcome.outcome, "attempts": outcome.attempts,
                                "error_cause": outcome.error_cause, "error_name": outcome.error_name}
    if outcome.outcome == "nak":
        assert error["message_en"] == "the NAS refused to end the session (Session-Context-Not-Found)"
    [row] = yield server.audit_rows()
    assert (row["action"], row["outcome"], row["fund_account_no"]) == ("internet_kick", outcome.outcome, "10010002")


@pytest_twisted.inlineCallbacks
def test_kicks_that_cannot_be_sent(server):
    status, body, _ = yield server.request("POST", "/sessions/999999/kick")
    assert (status, assert_error(body, "session_not_found")["code"]) == (404, "session_not_found")
    ended = yield session_id(server, "s-zhang-old")
    status, body, _ = yield server.request("POST", f"/sessions/{ended}/kick")
    assert (status, assert_error(body, "session_not_online")["code"]) == (409, "session_not_online")
    status, body, _ = yield server.request("POST", "/sessions/abc/kick")
    assert (status, body["error"]["code"]) == (404, "not_found")
    server.disconnector.outcome = NoRoute("session 1: NAS client 'bras-1' is not configured")
    status, body, _ = yield server.request("POST", f"/sessions/{(yield session_id(server, 's-zhang'))}/kick")
    assert (status, assert_error(body, "nas_unreachable")["code"]) == (409, "nas_unreachable")
    status, body, response = yield server.request("GET", f"/sessions/{ended}/kick")
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")
    assert (yield server.audit_rows()) == []


@pytest_twisted.inlineCallbacks
def test_a_kick_whose_client_leaves_is_still_audited(server):
    server.disconnector.held = []
    kicked = yield session_id(server, "s-zhang")
    request = server.request("POST", f"/sessions/{kicked}/kick")
    while not server.disconnector.held:
        yield deferred_later(0.01)
    request.cancel()  # the client gives up and closes its connection
    request.addErrback(lambda failure: failure.trap(defer.CancelledError, ResponseNeverReceived))
    yield deferred_later(0.05)
    server.disconnector.held[0].callback(DynamicAuthorizationResult("ack", 2))
    for _ in range(200):
        rows = yield server.audit_rows()
        if rows:
            break
        yield deferred_later(0.01)
    assert [(r["action"], r["outcome"]) for r in rows] == [("internet_kick", "ack")]


def deferred_later(seconds):
    return deferLater(reactor, seconds, lambda: None)


@pytest_twisted.inlineCallbacks
def test_no_such_action(server):
    status, body, _ = yield server.request("POST", "/accounts/zhang/delete")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body, response = yield server.request("GET", "/accounts/zhang/enable")
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")
    assert response.headers.getRawHeaders("Allow") == ["POST"]
