"""
The notifications HTTP API (L{callcenter.notify.api}): real HTTP on
127.0.0.1 through the web subsystem's root and site, the real store in the
reactor's threads, staff authenticated with argon2 in threads.  The outbox
behind it is real; its one sender is a test double that accepts or
refuses at once (the channels' own tests talk to real peers).
"""


import pytest
import pytest_twisted
import sqlalchemy as sa
import treq
from twisted.internet import defer, reactor
from twisted.internet.threads import deferToThreadPool
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import Resource
from zope.interface import implementer

from callcenter import passwords
from callcenter.context import Components
from callcenter.interfaces import IWebAPI
from callcenter.notify.api import InvestorNotificationsAPI, NotificationsAPI
from callcenter.notify.interfaces import IMessageSender
from callcenter.notify.message import Accepted, PermanentFailure
from callcenter.notify.outbox import Outbox
from callcenter.notify.templates import Renderer
from callcenter.store.schema import agents, audit_log
from callcenter.web.service import WebRoot
from callcenter.web.site import CorrelatedSite
from callcenter.web.staff_auth import StaffAuthenticator
from callcenter.trading.events import OrderFilled
from callcenter.trading.interfaces import IInvestorSessions
from callcenter.trading.sessions import InvestorSessions
from investors import add_investor
from test_outbox import TEMPLATES

SUPERVISOR = ("9001", "demo9001")
AGENT = ("8001", "demo8001")


@implementer(IMessageSender)
class AnswerAtOnce:
    channel = "sms"
    window = 10

    def __init__(self):
        self.answer = PermanentFailure("ESME_RINVDSTADR")
        self.sent = []

    def send(self, message):
        self.sent.append(message)
        return defer.fail(self.answer) if isinstance(self.answer, Exception) else defer.succeed(self.answer)

    def set_receipt_handler(self, handler):
        pass


class Blocking:
    def __init__(self, store):
        self.store = store

    def transaction(self, work, *args):
        return pytest_twisted.blockon(self.store.transaction(work, *args))


def _agents(connection):
    for (agent_id, password), role in ((AGENT, "agent"), (SUPERVISOR, "supervisor")):
        connection.execute(agents.insert().values(
            agent_id=agent_id, name=f"{role} {agent_id}", password_hash=passwords.hash_password(password), role=role,
        ))


class Server:
    def __init__(self, store, outbox, sender, base, pool):
        self.store, self.outbox, self.sender, self.base, self.pool = store, outbox, sender, base, pool

    def request(self, method, path, auth=AGENT, json=None):
        d = treq.request(method, self.base + path, json=json, auth=auth, pool=self.pool)

        @defer.inlineCallbacks
        def read(response):
            return response.code, (yield response.json())

        return d.addCallback(read)


@pytest.fixture
def server(running_store):
    blocking = Blocking(running_store)
    add_investor(blocking, "10010001")
    blocking.transaction(_agents)

    def threads(function, *args):
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)

    sender = AnswerAtOnce()
    outbox = Outbox(running_store, reactor, Renderer(TEMPLATES, ("sms",)), [sender], sweep_seconds=0)
    pytest_twisted.blockon(outbox.start())
    api = NotificationsAPI(running_store, reactor, StaffAuthenticator(running_store, reactor, threads), outbox)
    components = Components()
    components.provide(IWebAPI, api)
    sessions = InvestorSessions(running_store, reactor)
    components.provide(IInvestorSessions, sessions)
    components.provide(IWebAPI, InvestorNotificationsAPI(running_store, reactor, components))
    port = reactor.listenTCP(0, CorrelatedSite(WebRoot(components, Resource())), interface="127.0.0.1")
    pool = HTTPConnectionPool(reactor, persistent=False)
    server = Server(running_store, outbox, sender, f"http://127.0.0.1:{port.getHost().port}/api/v1/notifications", pool)
    server.sessions = sessions
    server.root = f"http://127.0.0.1:{port.getHost().port}/api/v1"
    yield server
    pytest_twisted.blockon(outbox.stop())
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))
    pytest_twisted.blockon(pool.closeCachedConnections())


@pytest_twisted.inlineCallbacks
def test_an_agent_subscribes_a_caller_and_lists_it(server):
    status, body = yield server.request("PUT", "/subscriptions", json={
        "fund_account_no": "10010001", "channel": "sms", "address": "+8613800138000", "events": ["fill"],
        "quiet_hours": "22:00-07:00",
    })
    assert status == 200
    assert body == {"id": body["id"], "fund_account_no": "10010001", "channel": "sms", "address": "+8613800138000",
                    "events": ["fill"], "language": "zh", "quiet_hours": "22:00-07:00", "enabled": True}
    status, body = yield server.request("GET", "/subscriptions?account=10010001")
    assert status == 200 and [s["address"] for s in body["subscriptions"]] == ["+8613800138000"]
    rows = yield server.store.transaction(lambda c: c.execute(sa.select(audit_log.c.action, audit_log.c.agent_id)).all())
    assert [tuple(r) for r in rows] == [("notify_subscribe", "8001")]
    status, body = yield server.request("POST", "/subscriptions/remove", json={
        "fund_account_no": "10010001", "channel": "sms", "address": "+8613800138000"})
    assert status == 200
    status, body = yield server.request("POST", "/subscriptions/remove", json={
        "fund_account_no": "10010001", "channel": "sms", "address": "+8613800138000"})
    assert status == 404 and body["error"]["code"] == "subscription_not_found"


@pytest_twisted.inlineCallbacks
def test_bad_subscriptions_are_refused_with_the_reason(server):
    status, body = yield server.request("PUT", "/subscriptions", json={
        "fund_account_no": "10010001", "channel": "sms", "address": "hello", "events": ["fills"]})
    assert status == 400 and body["error"]["code"] == "invalid_subscription"
    assert "'hello' is not a valid sms address" in body["error"]["message_en"]
    assert "events must be some of" in body["error"]["message_en"]
    status, body = yield server.request("PUT", "/subscriptions", json={
        "fund_account_no": "10010001", "channel": "fax", "address": "1"})
    assert status == 400 and body["error"]["field"] == "channel"
    status, body = yield server.request("GET", "/subscriptions", auth=("8001", "wrong"))
    assert status == 401


@pytest_twisted.inlineCallbacks
def test_a_message_history_and_a_supervisor_retry_of_a_dead_letter(server):
    yield server.request("PUT", "/subscriptions", json={
        "fund_account_no": "10010001", "channel": "sms", "address": "+8613800138000", "events": ["fill"]})
    yield server.outbox.notify(OrderFilled(
        order_no=7, fund_account_no="10010001", code="600519", name_zh="贵州茅台", name_en="Kweichow Moutai",
        side="buy", quantity=100, price_fen=168800, filled_quantity=100, order_quantity=100, status="filled",
    ))
    yield server.outbox.idle()
    status, body = yield server.request("GET", "/messages?account=10010001&state=dead")
    assert status == 200
    (message,) = body["messages"]
    assert message["last_error"] == "ESME_RINVDSTADR" and message["body"].startswith("【成交回报】")
    status, body = yield server.request("GET", f"/messages/{message['id']}")
    assert [h["state"] for h in body["history"]] == ["queued", "dead"]
    status, body = yield server.request("POST", f"/messages/{message['id']}/retry")
    assert status == 403  # an agent may look, not resend
    server.sender.answer = Accepted(provider_ids=("m-1",))
    status, body = yield server.request("POST", f"/messages/{message['id']}/retry", auth=SUPERVISOR)
    assert status == 200
    yield server.outbox.idle()
    status, body = yield server.request("GET", f"/messages/{message['id']}")
    assert body["state"] == "sent" and body["provider_ids"] == ["m-1"]
    assert [h["state"] for h in body["history"]] == ["queued", "dead", "queued", "sent"]
    status, body = yield server.request("POST", f"/messages/{message['id']}/retry", auth=SUPERVISOR)
    assert status == 409 and body["error"]["code"] == "not_dead"
    status, body = yield server.request("GET", "/messages/99999")
    assert status == 404
    status, body = yield server.request("GET", "/messages?state=lost")
    assert status == 400 and body["error"]["field"] == "state"


@pytest_twisted.inlineCallbacks
def test_an_investor_manages_their_own_subscriptions_with_their_trading_session(server):
    token, _ = yield server.sessions.open("10010001")
    headers = {"Authorization": f"Bearer {token}"}

    @defer.inlineCallbacks
    def mine(method, path, json=None, headers=headers):
        response = yield treq.request(method, server.root + "/me/notifications" + path, json=json, headers=headers,
                                      pool=server.pool)
        return response.code, (yield response.json())

    status, body = yield mine("PUT", "/subscriptions", {"channel": "email", "address": "Me@Example.com",
                                                         "events": ["fill", "alert"], "language": "en"})
    assert status == 200 and body["fund_account_no"] == "10010001" and body["address"] == "me@example.com"
    status, body = yield mine("GET", "/subscriptions")
    assert [s["channel"] for s in body["subscriptions"]] == ["email"]
    # Only their own: another account's number in the body is an unknown field.
    status, body = yield mine("PUT", "/subscriptions", {"fund_account_no": "10010002", "channel": "sms",
                                                         "address": "+8613800138002"})
    assert status == 400 and body["error"]["code"] == "unknown_field"
    status, body = yield mine("GET", "/messages")
    assert status == 200 and body["messages"] == []
    status, body = yield mine("POST", "/subscriptions/remove", {"channel": "email", "address": "me@example.com"})
    assert status == 200
    status, body = yield mine("GET", "/subscriptions", headers={"Authorization": "Bearer not-a-token"})
    assert status == 401 and body["error"]["code"] == "session_expired"
    rows = yield server.store.transaction(lambda c: c.execute(sa.select(audit_log.c.action, audit_log.c.channel)).all())
    assert [tuple(r) for r in rows] == [("notify_subscribe", "web"), ("notify_unsubscribe", "web")]
