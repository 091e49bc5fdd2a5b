"""
Staff see and manage notifications over HTTP, under
C{/api/v1/notifications}: an investor's subscriptions (agents set them up
for callers), the messages sent and each one's history (queued, sent,
delivered, failed, dead), and a dead letter sent again (supervisors and
administrators).  Authenticated by L{callcenter.web.staff_auth}; changes
are audited with the agent id, the client's address and the correlation
id.  docs/api.md is its reference.
"""

import datetime
import re

from klein import Klein
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from callcenter.interfaces import IWebAPI
from callcenter.notify import records
from callcenter.notify.subscriptions import (
    CHANNELS, LANGUAGES, SubscriptionError, subscribe, subscriptions_of, unsubscribe,
)
from callcenter.store.schema import fund_accounts
from callcenter.trading import audit
from callcenter.trading.model import Origin
from callcenter.web.json_api import (
    ROW_ID, APIError, AtThePrefixToo, Field, choice, client_host, correlation_id, handle_errors_as_json, iso_time,
    json_response, query, read_json, text,
)

__all__ = ["InvestorNotificationsAPI", "NotificationsAPI"]

STAFF = ("agent", "supervisor", "admin")
MANAGERS = ("supervisor", "admin")
MAX_BODY_BYTES = 4 * 1024
_ACCOUNT = re.compile(r"[0-9]{1,20}")
_ACCOUNT_LENGTH = fund_accounts.c.account_no.type.length


def _events(name, value):
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise APIError(400, "invalid_field", "应为事件名称的数组", "must be an array of event names", field=name)
    return value


def _optional_text(max_length):
    check = text(max_length)

    def optional(name, value):
        return None if value is None else check(name, value)

    return optional


_SUBSCRIPTION_FIELDS = (
    Field("fund_account_no", text(_ACCOUNT_LENGTH, _ACCOUNT, "资金账号", "a fund account number")),
    Field("channel", choice(*CHANNELS)),
    Field("address", text(254)),
    Field("events", _events, required=False, default=["fill", "alert", "rejection"]),
    Field("language", choice(*LANGUAGES), required=False, default="zh"),
    Field("quiet_hours", _optional_text(11), required=False, default=None),
)
_UNSUBSCRIBE_FIELDS = _SUBSCRIPTION_FIELDS[:3]


def _message_json(row, history=None):
    shown = {
        "id": row["message_id"],
        "fund_account_no": row["fund_account_no"],
        "event": row["event"],
        "channel": row["channel"],
        "address": row["address"],
        "language": row["language"],
        "subject": row["subject"],
        "body": row["body"],
        "state": row["state"],
        "attempts": row["attempts"],
        "not_before": iso_time(row["not_before"]),
        "provider_ids": [p for p in row["provider_ids"].split(",") if p],
        "last_error": row["last_error"],
        "created_at": iso_time(row["created_at"]),
        "updated_at": iso_time(row["updated_at"]),
    }
    if history is not None:
        shown["history"] = [{"at": iso_time(h["at"]), "state": h["state"], "detail": h["detail"]} for h in history]
    return shown


def _account_param(value):
    if value is not None and (len(value) > _ACCOUNT_LENGTH or not _ACCOUNT.fullmatch(value)):
        raise APIError(400, "invalid_field", "应为资金账号", "must be a fund account number", field="account")
    return value


def _audited(store, clock, origin, action, fund_account_no, detail, work, *args):
    """C{work} in a transaction, audited in it when it changed something."""
    now = datetime.datetime.fromtimestamp(clock.seconds(), datetime.timezone.utc)

    def run(connection):
        result = work(connection, *args)
        if result:
            audit.append(connection, origin, action, "ok", fund_account_no, detail, now=now)
        return result

    return store.transaction(run)


@defer.inlineCallbacks
def _subscribed(store, clock, origin, account, wanted):
    """The subscription added or changed as C{wanted} says, audited; APIError 400 if it is not valid."""
    detail = {k: wanted[k] for k in ("channel", "address", "events", "language", "quiet_hours")}
    try:
        return (yield _audited(
            store, clock, origin, "notify_subscribe", account, detail, subscribe, account, wanted["channel"],
            wanted["address"], wanted["events"], wanted["language"], wanted["quiet_hours"],
        ))
    except SubscriptionError as e:
        raise APIError(400, "invalid_subscription", f"订阅无效：{e}", f"invalid subscription: {e}")


@defer.inlineCallbacks
def _unsubscribed(store, clock, origin, account, wanted):
    removed = yield _audited(
        store, clock, origin, "notify_unsubscribe", account, {"channel": wanted["channel"], "address": wanted["address"]},
        unsubscribe, account, wanted["channel"], wanted["address"],
    )
    if not removed:
        raise APIError(404, "subscription_not_found", "没有这个订阅", "no such subscription")


def _limit(value, most):
    if not value.isdigit() or not 1 <= int(value) <= most:
        raise APIError(400, "invalid_field", f"应为 1 到 {most}", f"must be from 1 to {most}", field="limit")
    return int(value)


@implementer(IWebAPI)
class NotificationsAPI:
    """
    @param outbox: the running L{callcenter.notify.outbox.Outbox}: a dead
        letter sent again goes straight to its channel's worker.
    """

    app = Klein()
    log = Logger()
    prefix = "api/v1/notifications"

    def __init__(self, store, clock, staff, outbox):
        self._store = store
        self._clock = clock
        self._staff = staff
        self._outbox = outbox
        self._resource = None

    def resource(self):
        if self._resource is None:
            self._resource = AtThePrefixToo(self.app.resource())
        return self._resource

    @defer.inlineCallbacks
    def _member(self, request, roles=STAFF):
        member = yield self._staff.authenticate(request, roles)
        return Origin("staff", caller=client_host(request), agent_id=member.agent_id,
                      correlation_id=correlation_id(request))

    handle_errors_as_json(app)

    # -- subscriptions

    @app.route("/subscriptions", methods=["GET"])
    @defer.inlineCallbacks
    def subscriptions(self, request):
        yield self._member(request)
        account = _account_param(query(request, ("account",)).get("account"))
        if account is None:
            raise APIError(400, "missing_field", "缺少资金账号", "account is required", field="account")
        found = yield self._store.transaction(subscriptions_of, account)
        return json_response(request, 200, {"subscriptions": [s.as_dict() for s in found]})

    @app.route("/subscriptions", methods=["PUT"])
    @defer.inlineCallbacks
    def subscribe(self, request):
        origin = yield self._member(request)
        query(request, ())
        wanted = read_json(request, _SUBSCRIPTION_FIELDS, MAX_BODY_BYTES)
        added = yield _subscribed(self._store, self._clock, origin, wanted["fund_account_no"], wanted)
        self.log.info("notifications: {account} subscribed to {channel} by staff {agent}",
                      account=added.fund_account_no, channel=added.channel, agent=origin.agent_id,
                      cid=origin.correlation_id)
        return json_response(request, 200, added.as_dict())

    @app.route("/subscriptions/remove", methods=["POST"])
    @defer.inlineCallbacks
    def unsubscribe(self, request):
        origin = yield self._member(request)
        query(request, ())
        wanted = read_json(request, _UNSUBSCRIBE_FIELDS, MAX_BODY_BYTES)
        yield _unsubscribed(self._store, self._clock, origin, wanted["fund_account_no"], wanted)
        return json_response(request, 200, {"removed": True})

    # -- messages

    @app.route("/messages", methods=["GET"])
    @defer.inlineCallbacks
    def messages(self, request):
        yield self._member(request)
        wanted = query(request, ("account", "state", "limit"))
        account = _account_param(wanted.get("account"))
        state = wanted.get("state")
        if state is not None and state not in records.STATES:
            raise APIError(400, "invalid_field", "未知状态", f"must be one of {', '.join(records.STATES)}", field="state")
        limit = _limit(wanted.get("limit", "50"), 500)
        rows = yield self._store.transaction(records.recent_messages, account, state, limit)
        return json_response(request, 200, {"messages": [_message_json(r) for r in rows]})

    @app.route(f"/messages/<{ROW_ID}:message_id>", methods=["GET"])
    @defer.inlineCallbacks
    def message(self, request, message_id):
        yield self._member(request)
        query(request, ())
        found = yield self._store.transaction(records.message_with_history, message_id)
        if found is None:
            raise APIError(404, "message_not_found", "没有这条消息", "no such message")
        return json_response(request, 200, _message_json(found, found["history"]))

    @app.route(f"/messages/<{ROW_ID}:message_id>/retry", methods=["POST"])
    @defer.inlineCallbacks
    def retry(self, request, message_id):
        origin = yield self._member(request, MANAGERS)
        query(request, ())
        requeued = yield self._outbox.requeue(message_id)
        if not requeued:
            raise APIError(409, "not_dead", "这条消息不是死信，不能重发", "the message is not a dead letter")
        yield _audited(self._store, self._clock, origin, "notify_retry", None, {"message_id": message_id},
                       lambda connection: True)
        found = yield self._store.transaction(records.message_with_history, message_id)
        return json_response(request, 200, _message_json(found, found["history"]))


_OWN_SUBSCRIPTION_FIELDS = _SUBSCRIPTION_FIELDS[1:]
_OWN_UNSUBSCRIBE_FIELDS = _UNSUBSCRIBE_FIELDS[1:]


def _trading_unavailable():
    return APIError(503, "trading_unavailable", "交易服务未启用，无法登录", "the trading subsystem is not enabled: no logins")


@implementer(IWebAPI)
class InvestorNotificationsAPI:
    """
    Investors choose their own notifications under
    C{/api/v1/me/notifications}, logged in as for the trading API (a bearer
    token from C{POST /api/v1/sessions}): their subscriptions and the
    messages sent to them.  Changes are audited (channel "web").

    @param components: where the trading subsystem's
        L{callcenter.trading.interfaces.IInvestorSessions} is found, at
        each request (the subsystems are built in any order).
    """

    app = Klein()
    log = Logger()
    prefix = "api/v1/me/notifications"

    def __init__(self, store, clock, components):
        self._store = store
        self._clock = clock
        self._components = components
        self._resource = None

    def resource(self):
        if self._resource is None:
            self._resource = AtThePrefixToo(self.app.resource())
        return self._resource

    def _investor(self, request):
        from callcenter.trading.interfaces import IInvestorSessions

        sessions = self._components.lookup(IInvestorSessions)
        if sessions is None:
            raise _trading_unavailable()
        return sessions.authenticate(request)

    def _origin(self, request):
        return Origin("web", caller=client_host(request), correlation_id=correlation_id(request))

    handle_errors_as_json(app)

    @app.route("/subscriptions", methods=["GET"])
    @defer.inlineCallbacks
    def subscriptions(self, request):
        account = yield self._investor(request)
        query(request, ())
        found = yield self._store.transaction(subscriptions_of, account)
        return json_response(request, 200, {"subscriptions": [s.as_dict() for s in found]})

    @app.route("/subscriptions", methods=["PUT"])
    @defer.inlineCallbacks
    def subscribe(self, request):
        account = yield self._investor(request)
        query(request, ())
        wanted = read_json(request, _OWN_SUBSCRIPTION_FIELDS, MAX_BODY_BYTES)
        added = yield _subscribed(self._store, self._clock, self._origin(request), account, wanted)
        return json_response(request, 200, added.as_dict())

    @app.route("/subscriptions/remove", methods=["POST"])
    @defer.inlineCallbacks
    def unsubscribe(self, request):
        account = yield self._investor(request)
        query(request, ())
        wanted = read_json(request, _OWN_UNSUBSCRIBE_FIELDS, MAX_BODY_BYTES)
        yield _unsubscribed(self._store, self._clock, self._origin(request), account, wanted)
        return json_response(request, 200, {"removed": True})

    @app.route("/messages", methods=["GET"])
    @defer.inlineCallbacks
    def messages(self, request):
        account = yield self._investor(request)
        limit = _limit(query(request, ("limit",)).get("limit", "20"), 100)
        rows = yield self._store.transaction(records.recent_messages, account, None, limit)
        return json_response(request, 200, {"messages": [_message_json(r) for r in rows]})
