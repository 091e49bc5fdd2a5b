"""
The trading HTTP JSON API under C{/api/v1/}: investors log in with their
fund account and trading password, read their funds, positions, orders and
fills, place and cancel orders and keep price alerts.  docs/api.md is its
reference.

Money is integer fen (1 CNY = 100 fen) in every request and response: a
field holding money ends in C{_fen}, and a float is refused where money is
expected.  Times are ISO 8601 in China Standard Time (+08:00).

Sessions are bearer tokens (RFC 6750), kept by
L{callcenter.trading.sessions.InvestorSessions}.
"""

import datetime
import re

from klein import Klein
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from callcenter.interfaces import IWebAPI
from callcenter.trading.model import LIMIT, MARKET, SIDES, Origin
from callcenter.trading.reasons import TradingRefused, reason
from callcenter.trading.sessions import InvestorSessions
from callcenter.web.json_api import (
    CST, ROW_ID, APIError, Field, bad_field, choice, client_host, correlation_id, error_response,
    handle_errors_as_json, integer, iso_time, json_response, query, read_json, text,
)

MAX_BODY_BYTES = 64 * 1024

_SIX_DIGITS = re.compile(r"[0-9]{6}")
_CLIENT_ORDER_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MAX_PRICE_FEN = 10**10
_MAX_QUANTITY = 10**9

# The HTTP status of a refusal by its reason code; any other code is a
# trading rule saying no (422).
_REFUSAL_STATUS = {
    "wrong_password": 401,
    "account_locked": 403,
    "caller_not_allowed": 403,
    "account_not_found": 404,
    "order_not_found": 404,
    "alert_rule_not_found": 404,
    "order_not_cancellable": 409,
    "duplicate_order": 409,
}


_SESSION_FIELDS = (
    Field("fund_account_no", text(20)),
    Field("password", text(64)),
)

_ORDER_FIELDS = (
    Field("code", text(6, _SIX_DIGITS, "六位数字证券代码", "a six-digit security code")),
    Field("side", choice(*SIDES)),
    Field("quantity", integer(1, _MAX_QUANTITY, "（股）", " number of shares")),
    Field("price_fen", integer(1, _MAX_PRICE_FEN, "（单位：分）", " number of fen"), required=False),
    Field("order_type", choice(LIMIT, MARKET), required=False, default=LIMIT),
    Field("client_order_id", text(64, _CLIENT_ORDER_ID, "字母、数字或 . _ : -", "letters, digits or . _ : -"),
           required=False),
)

# Kinds and re-arm policies are the trading service's to check (it answers
# 422 bad_alert_rule): the API checks only the types.
_ALERT_FIELDS = (
    Field("code", text(6, _SIX_DIGITS, "六位数字证券代码", "a six-digit security code")),
    Field("kind", text(32)),
    Field("threshold", integer(1, _MAX_PRICE_FEN)),
    Field("rearm", text(16), required=False, default="once"),
)


def _trading_day(request):
    day = query(request, {"day"}).get("day")
    if day is None:
        return None
    try:
        if not _DAY.fullmatch(day):
            raise ValueError(day)
        return datetime.date.fromisoformat(day)
    except ValueError:
        raise bad_field("day", "应为日期 YYYY-MM-DD", "must be a date, YYYY-MM-DD")


# -- responses


def _json_value(value):
    if isinstance(value, datetime.datetime):
        return iso_time(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def _shaped(row, names):
    """What of C{row} a client sees: the listed columns that it has (the rest is internal)."""
    return {name: _json_value(row[name]) for name in names if name in row}


_ORDER_COLUMNS = (
    "order_no", "client_order_id", "trading_day", "code", "exchange", "side", "order_type", "price_fen",
    "quantity", "filled_quantity", "filled_amount_fen", "fees_fen", "frozen_fen", "status", "reject_code",
    "cancel_requested", "channel", "created_at", "updated_at",
)
_FILL_COLUMNS = (
    "fill_id", "order_no", "exec_id", "code", "side", "quantity", "price_fen", "amount_fen", "commission_fen",
    "stamp_duty_fen", "transfer_fee_fen", "filled_at",
)
_POSITION_COLUMNS = (
    "code", "exchange", "name_zh", "name_en", "quantity", "sellable", "frozen", "bought_today", "cost_fen",
    "last_fen", "market_value_fen",
)
_FUNDS_COLUMNS = ("available_fen", "frozen_fen", "market_value_fen", "total_fen")
_ALERT_COLUMNS = ("rule_id", "code", "exchange", "kind", "threshold", "rearm", "active", "last_fired_at", "created_at")


@implementer(IWebAPI)
class TradingAPI:
    """
    The trading API as a Klein app, served by the web subsystem under
    C{prefix} once provided as an L{IWebAPI}.

    @param trading: an L{ITradingService}.
    @param store: the L{IStore} holding the sessions.
    @param clock: IReactorTime; sessions expire by its C{seconds()}.
    @param idle_timeout: seconds a session lasts without use.
    @param refresh_interval: a session's expiry is moved on at most this often.
    @param purge_interval: expired sessions are deleted at a login at most this often.
    """

    app = Klein()
    log = Logger()
    prefix = "api/v1"

    def __init__(self, trading, store, clock, idle_timeout=1800.0, refresh_interval=60.0, purge_interval=600.0,
                 sessions=None):
        self._trading = trading
        self._store = store
        self._clock = clock
        self.sessions = sessions or InvestorSessions(store, clock, idle_timeout, refresh_interval, purge_interval)
        self.idle_timeout = self.sessions.idle_timeout
        self._resource = None

    def resource(self):
        if self._resource is None:
            self._resource = self.app.resource()
        return self._resource

    # -- helpers

    def _origin(self, request):
        return Origin(channel="web", caller=client_host(request), correlation_id=correlation_id(request))

    def _authenticate(self, request):
        """The fund account of the request's session; L{APIError} 401 without a live one."""
        return self.sessions.authenticate(request)

    # -- errors: every one is a JSON body

    @app.handle_errors(TradingRefused)
    def _refused(self, request, failure):
        refusal = failure.value
        why = refusal.reason
        return error_response(request, _REFUSAL_STATUS.get(why.code, 422), why.code, why.zh, why.en,
                              details={name: _json_value(value) for name, value in refusal.values.items()})

    handle_errors_as_json(app)

    # -- sessions

    @app.route("/sessions", methods=["POST"])
    @defer.inlineCallbacks
    def log_in(self, request):
        body = read_json(request, _SESSION_FIELDS, MAX_BODY_BYTES)
        origin = self._origin(request)
        try:
            investor = yield self._trading.login(body["fund_account_no"], body["password"], origin)
        except TradingRefused as refusal:
            self.log.info("API login refused for {fund_account_no} from {client}: {reason}",
                          fund_account_no=body["fund_account_no"], client=origin.caller, reason=refusal.reason.code,
                          cid=origin.correlation_id)
            raise
        token, expires_at = yield self.sessions.open(investor.fund_account_no)
        self.log.info("API session opened for {fund_account_no} from {client}",
                      fund_account_no=investor.fund_account_no, client=origin.caller, cid=origin.correlation_id)
        return json_response(request, 201, {
            "token": token,
            "token_type": "Bearer",
            "expires_at": iso_time(datetime.datetime.fromtimestamp(expires_at, CST)),
            "idle_timeout_seconds": int(self.idle_timeout),
            "investor": {
                "fund_account_no": investor.fund_account_no,
                "name_zh": investor.name_zh,
                "name_en": investor.name_en,
                "language": investor.language,
                "branch_code": investor.branch_code,
            },
        })

    @app.route("/sessions/current", methods=["DELETE"])
    @defer.inlineCallbacks
    def log_out(self, request):
        account = yield self._authenticate(request)
        yield self.sessions.close(request)
        self.log.info("API session closed for {fund_account_no}", fund_account_no=account,
                      cid=correlation_id(request))
        request.setResponseCode(204)
        return b""

    # -- market data (public)

    @app.route("/quotes/<code>", methods=["GET"])
    @defer.inlineCallbacks
    def quote(self, request, code):
        if not _SIX_DIGITS.fullmatch(code):
            raise bad_field("code", "应为六位数字证券代码", "must be a six-digit security code")
        quote = yield defer.maybeDeferred(self._trading.quote, code)
        if quote is None:
            unknown = reason("unknown_instrument")
            raise APIError(404, unknown.code, unknown.zh, unknown.en)
        instrument, tick = quote.instrument, quote.tick
        return json_response(request, 200, {
            "code": instrument.code,
            "exchange": instrument.exchange,
            "name_zh": instrument.name_zh,
            "name_en": instrument.name_en,
            "board": instrument.board,
            "is_st": instrument.is_st,
            "lot_size": instrument.lot_size,
            "prev_close_fen": instrument.prev_close_fen,
            "limit_up_fen": quote.limit_up_fen,
            "limit_down_fen": quote.limit_down_fen,
            "tick": None if tick is None else {
                "last_fen": tick.last_fen,
                "bid_fen": tick.bid_fen,
                "bid_size": tick.bid_size,
                "ask_fen": tick.ask_fen,
                "ask_size": tick.ask_size,
                "volume": tick.volume,
                "at": iso_time(datetime.datetime.fromtimestamp(tick.at, CST)),
            },
        })

    # -- the investor's books

    @app.route("/funds", methods=["GET"])
    @defer.inlineCallbacks
    def funds(self, request):
        account = yield self._authenticate(request)
        funds = yield self._trading.funds(account)
        return json_response(request, 200, {"fund_account_no": account, "currency": "CNY", **_shaped(funds, _FUNDS_COLUMNS)})

    @app.route("/positions", methods=["GET"])
    @defer.inlineCallbacks
    def positions(self, request):
        account = yield self._authenticate(request)
        rows = yield self._trading.positions(account)
        return json_response(request, 200, {"positions": [_shaped(row, _POSITION_COLUMNS) for row in rows]})

    @app.route("/orders", methods=["GET"])
    @defer.inlineCallbacks
    def orders(self, request):
        account = yield self._authenticate(request)
        day = _trading_day(request)
        rows = yield self._trading.orders(account, day)
        return json_response(request, 200, {"orders": [_shaped(row, _ORDER_COLUMNS) for row in rows]})

    @app.route(f"/orders/<{ROW_ID}:order_no>", methods=["GET"])
    @defer.inlineCallbacks
    def order(self, request, order_no):
        account = yield self._authenticate(request)
        row = yield self._trading.order(account, order_no)
        if row is None:
            raise TradingRefused("order_not_found")
        return json_response(request, 200, _shaped(row, _ORDER_COLUMNS))

    @app.route("/fills", methods=["GET"])
    @defer.inlineCallbacks
    def fills(self, request):
        account = yield self._authenticate(request)
        day = _trading_day(request)
        rows = yield self._trading.fills(account, day)
        return json_response(request, 200, {"fills": [_shaped(row, _FILL_COLUMNS) for row in rows]})

    # -- orders

    @app.route("/orders", methods=["POST"])
    @defer.inlineCallbacks
    def place_order(self, request):
        account = yield self._authenticate(request)
        wanted = read_json(request, _ORDER_FIELDS, MAX_BODY_BYTES)
        if wanted["price_fen"] is None:
            if wanted["order_type"] == LIMIT:
                raise bad_field("price_fen", "限价委托必须给出价格（单位：分）", "is required for a limit order (in fen)",
                                code="missing_field")
            wanted["price_fen"] = 0  # a market order has no price of its own
        order = yield self._trading.place_order(
            account, wanted["code"], wanted["side"], wanted["price_fen"], wanted["quantity"], self._origin(request),
            client_order_id=wanted["client_order_id"], order_type=wanted["order_type"],
        )
        if order["duplicate"]:
            # A retry (the client lost our answer) gets the order it made: 200, not 201.
            return json_response(request, 200, _shaped(_same_order(order, wanted), _ORDER_COLUMNS))
        request.setHeader("Location", f"/{self.prefix}/orders/{order['order_no']}")
        return json_response(request, 201, _shaped(order, _ORDER_COLUMNS))

    @app.route(f"/orders/<{ROW_ID}:order_no>", methods=["DELETE"])
    @defer.inlineCallbacks
    def cancel_order(self, request, order_no):
        account = yield self._authenticate(request)
        order = yield self._trading.cancel_order(account, order_no, self._origin(request))
        # Accepted, not done: the exchange confirms the cancel later.
        return json_response(request, 202, _shaped(order, _ORDER_COLUMNS))

    # -- price alerts

    @app.route("/alerts", methods=["GET"])
    @defer.inlineCallbacks
    def alerts(self, request):
        account = yield self._authenticate(request)
        rules = yield self._trading.alert_rules(account)
        return json_response(request, 200, {"alerts": [_shaped(rule, _ALERT_COLUMNS) for rule in rules]})

    @app.route("/alerts", methods=["POST"])
    @defer.inlineCallbacks
    def add_alert(self, request):
        account = yield self._authenticate(request)
        wanted = read_json(request, _ALERT_FIELDS, MAX_BODY_BYTES)
        rule_id = yield self._trading.add_alert_rule(
            account, wanted["code"], wanted["kind"], wanted["threshold"], wanted["rearm"], self._origin(request)
        )
        rules = yield self._trading.alert_rules(account)
        stored = [rule for rule in rules if rule["rule_id"] == rule_id]
        body = _shaped(stored[0], _ALERT_COLUMNS) if stored else {"rule_id": rule_id, **wanted}
        return json_response(request, 201, body)

    @app.route(f"/alerts/<{ROW_ID}:rule_id>", methods=["DELETE"])
    @defer.inlineCallbacks
    def remove_alert(self, request, rule_id):
        account = yield self._authenticate(request)
        yield self._trading.remove_alert_rule(account, rule_id, self._origin(request))
        request.setResponseCode(204)
        return b""


def _same_order(order, wanted):
    """C{order} if it is what C{wanted} asks for; a client order id reused for another order is a 409."""
    asked = (wanted["code"], wanted["side"], wanted["order_type"], wanted["quantity"])
    made = (order["code"], order["side"], order["order_type"], order["quantity"])
    if asked != made or (wanted["order_type"] == LIMIT and wanted["price_fen"] != order["price_fen"]):
        raise APIError(409, "duplicate_client_order_id",
                       f"委托编号 {wanted['client_order_id']} 已用于另一笔委托（委托号 {order['order_no']}）",
                       f"client_order_id {wanted['client_order_id']} was used for another order "
                       f"(order_no {order['order_no']})")
    return order
