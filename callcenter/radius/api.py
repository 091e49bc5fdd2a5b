"""
Staff manage investors' internet accounts over HTTP, under
C{/api/v1/internet}: read an account (its state, tier, use this month and
sessions online), enable or disable it, move it to another tier, list the
sessions online and kick one.  docs/api.md is its reference.

Supervisors and administrators only (L{MANAGERS}), authenticated by
L{callcenter.web.staff_auth}; an agent is told 403.  Every change is
audited as the C{callcenter internet} commands audit theirs (channel
"staff"), under the agent id, with the client's address and the request's
correlation id; then the running access policy forgets the account, so
that its next Access-Request is decided on the change (not on what the
policy cached).

A kick sends a Disconnect-Request (RFC 5176) through the radius
subsystem's L{IDisconnector} and answers with what the NAS said, which
takes at most the disconnector's retries (14 s by default).  It closes
nothing here: the session ends in the database when the NAS's
Accounting-Stop says so.
"""

import datetime

from klein import Klein
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from callcenter.interfaces import IWebAPI
from callcenter.radius import accounts
from callcenter.radius.disconnect import ACK, NAK, NoRoute
from callcenter.store.schema import internet_accounts, internet_tiers
from callcenter.trading import audit
from callcenter.trading.model import Origin
from callcenter.web.json_api import (
    ROW_ID, APIError, AtThePrefixToo, Field, bad_field, client_host, correlation_id, error_response,
    handle_errors_as_json, iso_time, json_response, query, read_json, text,
)

__all__ = ["MANAGERS", "InternetAPI"]

MANAGERS = ("supervisor", "admin")
MAX_BODY_BYTES = 4 * 1024
_TIER_FIELDS = (Field("tier", text(internet_tiers.c.name.type.length)),)
# Longer is no account (the column's length), answered without a look-up.
_USERNAME_LENGTH = internet_accounts.c.username.type.length


def _account_not_found():
    return APIError(404, "account_not_found", "没有这个上网账户", "no such internet account")


def _session_json(session):
    return {
        "id": session.id,
        "username": session.username,
        "client": session.client,
        "acct_session_id": session.acct_session_id,
        "nas_ip": session.nas_ip,
        "nas_port": session.nas_port,
        "framed_ip": session.framed_ip,
        "calling_station_id": session.calling_station_id,
        "started_at": iso_time(session.started_at),
        "updated_at": iso_time(session.updated_at),
        "stopped_at": iso_time(session.stopped_at),
        "session_time": session.session_time,
        "input_octets": session.input_octets,
        "output_octets": session.output_octets,
    }


# -- in the store's threads


def _overview(connection, username, month):
    """What a client sees of account C{username}: its JSON, or None if there is none."""
    found = accounts.account(connection, username)
    if found is None:
        return None
    tier = next(t for t in accounts.tiers(connection) if t.name == found.tier)
    used = accounts.usage(connection, username, month)
    remaining = None if tier.monthly_seconds is None else max(0, tier.monthly_seconds - used.seconds)
    return {
        "username": found.username,
        "fund_account_no": found.fund_account_no,
        "enabled": found.enabled,
        "locked": found.locked_at is not None,
        "locked_at": iso_time(found.locked_at),
        "failed_logins": found.failed_logins,
        "chap": found.chap,
        "language": found.language,
        "created_at": iso_time(found.created_at),
        "tier": {
            "name": tier.name,
            "monthly_seconds": tier.monthly_seconds,
            "idle_timeout": tier.idle_timeout,
            "simultaneous_use": tier.simultaneous_use,
        },
        "usage": {
            "month": used.month,
            "seconds": used.seconds,
            "remaining_seconds": remaining,
            "input_octets": used.input_octets,
            "output_octets": used.output_octets,
        },
        "sessions": [_session_json(s) for s in accounts.sessions_online(connection, username=username)],
    }


def _changed(connection, username, action, change, origin, now, month):
    """
    C{change(connection, before)} made to account C{username} (it returns
    the audit detail beyond the user name) and audited; the account's JSON
    after it, or None if there is no such account.
    """
    before = accounts.account(connection, username)
    if before is None:
        return None
    detail = change(connection, before)
    audit.append(connection, origin, action, "ok", before.fund_account_no, {"username": username, **detail}, now=now)
    return _overview(connection, username, month)


def _enabled(enabled):
    def change(connection, before):
        accounts.set_enabled(connection, before.username, enabled)
        return {}

    return change


def _tier(tier):
    def change(connection, before):
        if not any(t.name == tier for t in accounts.tiers(connection)):
            raise bad_field("tier", "没有这个上网套餐", "no such tier", code="unknown_tier")
        accounts.set_tier(connection, before.username, tier)
        return {"tier": tier, "previous_tier": before.tier}

    return change


def _audit_kick(connection, session, result, origin, now):
    owner = accounts.account(connection, session.username) if session.username else None
    audit.append(connection, origin, "internet_kick", result.outcome, owner and owner.fund_account_no, {
        "username": session.username,
        "session_id": session.id,
        "acct_session_id": session.acct_session_id,
        "client": session.client,
        "attempts": result.attempts,
        "error_cause": result.error_cause,
    }, now=now)


@implementer(IWebAPI)
class InternetAPI:
    """
    The internet accounts API as a Klein app, served by the web subsystem
    under C{prefix} once provided as an L{IWebAPI}.

    @param store: the L{callcenter.interfaces.IStore}.
    @param clock: L{twisted.internet.interfaces.IReactorTime}: the month
        whose use is shown, and the audit's times.
    @param staff: the L{callcenter.web.staff_auth.StaffAuthenticator}.
    @param policy: what must forget an account once it has changed
        (C{forget(username)}): the running L{AccessPolicy}, which forgets
        its L{AccountDirectory} entry too.
    @param disconnector: the L{IDisconnector} that kicks.
    """

    app = Klein()
    log = Logger()
    prefix = "api/v1/internet"

    def __init__(self, store, clock, staff, policy, disconnector):
        self._store = store
        self._clock = clock
        self._staff = staff
        self._policy = policy
        self._disconnector = disconnector
        self._resource = None

    def resource(self):
        if self._resource is None:
            self._resource = AtThePrefixToo(self.app.resource())
        return self._resource

    # -- helpers

    def _now(self):
        return datetime.datetime.fromtimestamp(self._clock.seconds(), datetime.timezone.utc)

    def _month(self):
        return accounts.month_of(self._clock.seconds())

    @defer.inlineCallbacks
    def _manager(self, request):
        """The origin of the request's change, once its staff member may make it."""
        member = yield self._staff.authenticate(request, MANAGERS)
        return Origin("staff", caller=client_host(request), agent_id=member.agent_id,
                      correlation_id=correlation_id(request))

    @defer.inlineCallbacks
    def _change(self, request, origin, username, action, change):
        if len(username) > _USERNAME_LENGTH:
            raise _account_not_found()
        shown = yield self._store.transaction(_changed, username, action, change, origin, self._now(), self._month())
        if shown is None:
            raise _account_not_found()
        self._policy.forget(username)
        self.log.info("internet account {username}: {action} by staff {agent} from {client}", username=username,
                      action=action, agent=origin.agent_id, client=origin.caller, cid=origin.correlation_id)
        return json_response(request, 200, shown)

    # -- errors: every one is a JSON body

    @app.handle_errors(NoRoute)
    def _no_route(self, request, failure):
        self.log.warn("kick refused: {why}", why=str(failure.value), cid=correlation_id(request))
        return error_response(request, 409, "nas_unreachable",
                              "无法向该会话的接入设备（NAS）发送断线请求：设备未配置，或其地址不在配置的网段内",
                              "cannot send the Disconnect-Request: the session's NAS is not configured, or its "
                              "address is not in the configured prefix")

    @app.handle_errors(defer.CancelledError)
    def _stopping(self, request, failure):
        request.setHeader("Retry-After", "30")
        return error_response(request, 503, "service_stopping", "服务正在停止，请稍后再试",
                              "the server is stopping: try again later")

    handle_errors_as_json(app)

    # -- accounts

    @app.route("/accounts/<username>", methods=["GET"])
    @defer.inlineCallbacks
    def account(self, request, username):
        yield self._manager(request)
        query(request, ())
        shown = None
        if len(username) <= _USERNAME_LENGTH:
            shown = yield self._store.transaction(_overview, username, self._month())
        if shown is None:
            raise _account_not_found()
        return json_response(request, 200, shown)

    @app.route("/accounts/<username>/<any(enable, disable):switch>", methods=["POST"])
    @defer.inlineCallbacks
    def enable_or_disable(self, request, username, switch):
        origin = yield self._manager(request)
        query(request, ())
        return (yield self._change(request, origin, username, f"internet_{switch}", _enabled(switch == "enable")))

    @app.route("/accounts/<username>/tier", methods=["PUT"])
    @defer.inlineCallbacks
    def tier(self, request, username):
        origin = yield self._manager(request)
        query(request, ())
        wanted = read_json(request, _TIER_FIELDS, MAX_BODY_BYTES)
        return (yield self._change(request, origin, username, "internet_tier", _tier(wanted["tier"])))

    # -- sessions

    @app.route("/sessions", methods=["GET"])
    @defer.inlineCallbacks
    def sessions(self, request):
        yield self._manager(request)
        wanted = query(request, ("user", "client"))
        online = yield self._store.transaction(accounts.sessions_online, wanted.get("user"), wanted.get("client"))
        return json_response(request, 200, {"sessions": [_session_json(s) for s in online]})

    @app.route(f"/sessions/<{ROW_ID}:session_id>/kick", methods=["POST"])
    @defer.inlineCallbacks
    def kick(self, request, session_id):
        origin = yield self._manager(request)
        query(request, ())
        session = yield self._store.transaction(accounts.session, session_id)
        if session is None:
            raise APIError(404, "session_not_found", "没有这个会话", "no such session")
        if session.stopped_at is not None:
            raise APIError(409, "session_not_online", "该会话已结束", "the session has already ended")
        result = yield self._outliving_the_request(self._kick(session, origin))
        body = {
            "session": _session_json(session),
            "outcome": result.outcome,
            "attempts": result.attempts,
            "error_cause": result.error_cause,
            "error_name": result.error_name,
        }
        if result.outcome == ACK:
            return json_response(request, 200, body)
        details = {name: body[name] for name in ("outcome", "attempts", "error_cause", "error_name")}
        if result.outcome == NAK:
            cause = "" if result.error_cause is None else result.error_name or str(result.error_cause)
            return error_response(request, 502, "nas_refused", "接入设备拒绝断开该会话" + (cause and f"（{cause}）"),
                                  "the NAS refused to end the session" + (cause and f" ({cause})"), details=details)
        return error_response(request, 504, "nas_timeout", f"接入设备在 {result.attempts} 次请求后仍未应答",
                              f"no answer from the NAS after {result.attempts} requests", details=details)

    @defer.inlineCallbacks
    def _kick(self, session, origin):
        result = yield self._disconnector.disconnect(session, "staff")
        yield self._store.transaction(_audit_kick, session, result, origin, self._now())
        self.log.info("session {id} of {username} kicked by staff {agent} from {client}: {outcome}", id=session.id,
                      username=session.username, agent=origin.agent_id, client=origin.caller,
                      outcome=result.outcome, cid=origin.correlation_id)
        return result

    def _outliving_the_request(self, work):
        """
        What C{work} gives, C{work} going on if the request is cancelled
        (the client went away): a Disconnect-Request sent is audited with
        what the NAS said, whoever is still listening.
        """
        answer = defer.Deferred()

        def arrived(result):
            if not answer.called:
                (answer.errback if isinstance(result, Failure) else answer.callback)(result)
            elif isinstance(result, Failure):
                self.log.failure("a kick whose client went away failed", result)

        work.addBoth(arrived)
        return answer
