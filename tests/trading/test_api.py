"""
The trading HTTP API in memory (treq's StubTreq through the web
subsystem's root resource), its sessions in the real store (SQLite, or
PostgreSQL with --db postgresql) and time on a Clock.
"""

import copy
import datetime
import hashlib
import json
from dataclasses import dataclass

import pytest
import pytest_twisted
import sqlalchemy as sa
import treq as real_treq
from treq.testing import StubTreq
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.logger import formatEvent
from twisted.web.resource import Resource
from zope.interface import implementer
from zope.interface.verify import verifyObject

from callcenter.context import Components
from callcenter.interfaces import IWebAPI
from callcenter.store.schema import api_sessions, branches, customers, fund_accounts
from callcenter.trading.accounts import Investor
from callcenter.trading.events import OrderFilled
from callcenter.trading.api import MAX_BODY_BYTES, TradingAPI
from callcenter.trading.instruments import Instrument, price_limits
from callcenter.trading.interfaces import ITradingService
from callcenter.trading.model import OPEN_STATES, Tick
from callcenter.trading.reasons import TradingRefused
from callcenter.web.service import WebRoot
from callcenter.web.site import CorrelatedSite
from outcomes import CapturedLog, results_of

BASE = "http://bank.example/api/v1"
START = 1_800_000_000.0
IDLE = 1800.0
PASSWORD = "135790"

SPD = Instrument("600000", "SSE", "浦发银行", "SPD Bank", "main", 1000)
CATL = Instrument("300750", "SZSE", "宁德时代", "CATL", "chinext", 20000)


# -- the trading side


@dataclass(frozen=True)
class Quote:
    """The fields of callcenter.trading.service.Quote."""

    instrument: Instrument
    tick: object
    limit_down_fen: int
    limit_up_fen: int


@implementer(ITradingService)
class StandInTradingService:
    """
    Stands in for L{callcenter.trading.service.TradingService} while the
    HTTP layer is tested: the same interface, the same refusals
    (L{TradingRefused} with the real reason codes) and rows with the same
    columns, kept in memory, plus switches a real service has not (a
    fault, a login that answers late) and a record of the origins it was
    given.  The tests at the end of this module run the API on the real
    service; the ones using this stand-in need only accounts 1001/1002
    (password 135790), instruments 600000 and 300750, and those switches.
    """

    MAX_ATTEMPTS = 5

    def __init__(self):
        self.accounts = {
            "1001": {"investor": Investor("1001", "张三", "Zhang San", "zh", "0101"), "failed": 0, "locked": False},
            "1002": {"investor": Investor("1002", "李四", None, "zh", "0101"), "failed": 0, "locked": False},
        }
        self.instruments = {SPD.code: SPD, CATL.code: CATL}
        self.ticks = {SPD.code: Tick("600000", "SSE", 1012, 1011, 1013, 4500, 3200, 1_234_500, START)}
        self.cash = {"1001": 100_000_000, "1002": 0}
        self.held = {"1001": {"600000": 1000}, "1002": {}}
        self.book = []
        self.rules = []
        self.origins = []
        self.broken = False
        self.pending_login = None
        self.day = "2026-12-01"

    def instrument(self, code):
        return self.instruments.get(code)

    def quote(self, code):
        instrument = self.instruments.get(code)
        if instrument is None:
            return None
        down, up = price_limits(instrument)
        return Quote(instrument, self.ticks.get(code), down, up)

    def login(self, fund_account_no, password, origin):
        self.origins.append(("login", origin))
        if self.pending_login is not None:
            return self.pending_login
        account = self.accounts.get(fund_account_no)
        if account is None:
            return defer.fail(TradingRefused("wrong_password"))
        if account["locked"]:
            return defer.fail(TradingRefused("account_locked"))
        if password != PASSWORD:
            account["failed"] += 1
            account["locked"] = account["failed"] >= self.MAX_ATTEMPTS
            return defer.fail(TradingRefused("account_locked" if account["locked"] else "wrong_password"))
        account["failed"] = 0
        return defer.succeed(account["investor"])

    def change_password(self, fund_account_no, old_password, new_password, origin):
        return defer.succeed(None)

    def place_order(self, fund_account_no, code, side, price_fen, quantity, origin, client_order_id=None,
                    order_type="limit"):
        self.origins.append(("place_order", origin))
        for order in self.book:
            if client_order_id and (order["fund_account_no"], order["client_order_id"]) == (fund_account_no,
                                                                                            client_order_id):
                return defer.succeed({**copy.deepcopy(order), "duplicate": True})
        instrument = self.instruments.get(code)
        if instrument is None:
            return defer.fail(TradingRefused("unknown_instrument"))
        down, up = price_limits(instrument)
        if order_type == "limit" and price_fen > up:
            return defer.fail(TradingRefused("price_above_limit", limit_fen=up))
        if side == "buy" and price_fen * quantity > self.cash[fund_account_no]:
            return defer.fail(TradingRefused("insufficient_cash"))
        now = datetime.datetime(2026, 12, 1, 10, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=8)))
        order = {
            "order_no": len(self.book) + 1, "client_order_id": client_order_id or f"auto-{len(self.book)}",
            "fund_account_no": fund_account_no, "code": code, "exchange": instrument.exchange, "side": side,
            "order_type": order_type, "price_fen": price_fen, "quantity": quantity, "filled_quantity": 0,
            "filled_amount_fen": 0, "fees_fen": 0, "frozen_fen": price_fen * quantity, "status": "new",
            "reject_code": None, "cancel_requested": False, "channel": origin.channel, "caller": origin.caller,
            "call_id": origin.call_id, "agent_id": origin.agent_id, "trading_day": self.day, "created_at": now,
            "updated_at": now,
        }
        self.book.append(order)
        return defer.succeed({**copy.deepcopy(order), "duplicate": False})

    def _order(self, fund_account_no, order_no):
        for order in self.book:
            if order["order_no"] == order_no and order["fund_account_no"] == fund_account_no:
                return order
        return None

    def order(self, fund_account_no, order_no):
        found = self._order(fund_account_no, order_no)
        return defer.succeed(copy.deepcopy(found))

    def cancel_order(self, fund_account_no, order_no, origin):
        self.origins.append(("cancel_order", origin))
        order = self._order(fund_account_no, order_no)
        if order is None:
            return defer.fail(TradingRefused("order_not_found"))
        if order["status"] not in OPEN_STATES:
            return defer.fail(TradingRefused("order_not_cancellable"))
        order["cancel_requested"] = True
        return defer.succeed(copy.deepcopy(order))

    def funds(self, fund_account_no):
        if self.broken:
            return defer.fail(RuntimeError("the counter system caught fire"))
        value = sum(quantity * 1012 for quantity in self.held[fund_account_no].values())
        cash = self.cash[fund_account_no]
        return defer.succeed({"available_fen": cash, "frozen_fen": 0, "market_value_fen": value,
                              "total_fen": cash + value})

    def positions(self, fund_account_no):
        return defer.succeed([
            {"fund_account_no": fund_account_no, "code": code, "exchange": "SSE", "quantity": quantity,
             "bought_today": 0, "frozen": 0, "cost_fen": 990 * quantity, "trading_day": self.day,
             "sellable": quantity, "last_fen": 1012, "market_value_fen": 1012 * quantity, "name_zh": "浦发银行",
             "name_en": "SPD Bank"}
            for code, quantity in self.held[fund_account_no].items()
        ])

    def orders_of(self, fund_account_no, trading_day=None):
        day = trading_day.isoformat() if trading_day else self.day
        return [copy.deepcopy(o) for o in reversed(self.book)
                if o["fund_account_no"] == fund_account_no and o["trading_day"] == day]

    def orders(self, fund_account_no, trading_day=None):
        return defer.succeed(self.orders_of(fund_account_no, trading_day))

    def fills(self, fund_account_no, trading_day=None):
        day = trading_day.isoformat() if trading_day else self.day
        return defer.succeed([
            {"fill_id": 1, "order_no": o["order_no"], "exec_id": "E1", "quantity": o["filled_quantity"],
             "price_fen": o["price_fen"], "amount_fen": o["filled_amount_fen"], "commission_fen": 500,
             "stamp_duty_fen": 0, "transfer_fee_fen": 1, "filled_at": o["updated_at"], "code": o["code"],
             "side": o["side"]}
            for o in self.orders_of(fund_account_no, datetime.date.fromisoformat(day)) if o["filled_quantity"]
        ])

    def alert_rules(self, fund_account_no):
        return defer.succeed([copy.deepcopy(r) for r in self.rules if r["fund_account_no"] == fund_account_no])

    def add_alert_rule(self, fund_account_no, code, kind, threshold, rearm, origin):
        instrument = self.instruments.get(code)
        if instrument is None:
            return defer.fail(TradingRefused("unknown_instrument"))
        if kind not in ("price_above", "price_below", "change_up", "change_down") or \
                rearm not in ("once", "daily", "recross"):
            return defer.fail(TradingRefused("bad_alert_rule"))
        rule_id = len(self.rules) + 1
        self.rules.append({
            "rule_id": rule_id, "fund_account_no": fund_account_no, "code": code, "exchange": instrument.exchange,
            "kind": kind, "threshold": threshold, "rearm": rearm, "active": True, "last_fired_at": None,
            "created_at": datetime.datetime(2026, 12, 1, 2, 0),
        })
        return defer.succeed(rule_id)

    def remove_alert_rule(self, fund_account_no, rule_id, origin):
        for rule in self.rules:
            if rule["rule_id"] == rule_id and rule["fund_account_no"] == fund_account_no:
                self.rules.remove(rule)
                return defer.succeed(None)
        return defer.fail(TradingRefused("alert_rule_not_found"))


# -- fixtures


class ImmediateStore:
    """The real database, worked on the test's thread: answers come without a reactor turn."""

    def __init__(self, database):
        self.database = database
        self.dialect = database.dialect
        self.transactions = 0

    def transaction(self, work, *args, **kwargs):
        self.transactions += 1
        return defer.maybeDeferred(self.database.transaction, work, *args, **kwargs)


def _accounts(connection):
    connection.execute(branches.insert().values(code="0101", name_zh="总部", name_en="HQ", city="Shenzhen"))
    for account_no in ("1001", "1002"):
        customer = connection.execute(
            customers.insert().values(branch_code="0101", name_zh="客户" + account_no)
        ).inserted_primary_key[0]
        connection.execute(fund_accounts.insert().values(account_no=account_no, customer_id=customer,
                                                         password_hash="not used by the stand-in"))


@pytest.fixture
def store(database):
    database.transaction(_accounts)
    return ImmediateStore(database)


@pytest.fixture
def clock():
    clock = Clock()
    clock.advance(START)
    return clock


@pytest.fixture
def trading():
    return StandInTradingService()


class Operations(Resource):
    """Stands in for the operations app (/health) behind the root."""

    isLeaf = True

    def render_GET(self, request):
        return b"operations:" + request.path


@pytest.fixture
def api(trading, store, clock):
    return TradingAPI(trading, store, clock, idle_timeout=IDLE)


@pytest.fixture
def components(api):
    components = Components()
    components.provide(IWebAPI, api)
    return components


@pytest.fixture
def http(components):
    return StubTreq(WebRoot(components, Operations()))


def call(http, method, path, body=None, token=None, headers=None, raw=None):
    """Send a request; fires with (status, parsed JSON body or None, response)."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    data = raw
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        sent.setdefault("Content-Type", "application/json")
    d = http.request(method, BASE + path, headers=sent, data=data)

    @defer.inlineCallbacks
    def read(response):
        content = yield response.content()
        parsed = json.loads(content.decode("utf-8")) if content else None
        return response.code, parsed, response

    return d.addCallback(read)


def log_in(http, account="1001", password=PASSWORD):
    return call(http, "POST", "/sessions", {"fund_account_no": account, "password": password})


@defer.inlineCallbacks
def token_of(http, account="1001"):
    status, body, _ = yield log_in(http, account)
    assert status == 201
    return body["token"]


def assert_error(body, code, field=None):
    error = body["error"]
    assert error["code"] == code
    assert error["message_zh"] and error["message_en"]
    assert error["correlation_id"]
    if field is not None:
        assert error["field"] == field
    return error


def stored_sessions(database):
    return database.transaction(lambda c: [dict(r) for r in c.execute(sa.select(api_sessions)).mappings()])


# -- mounting


def test_the_api_provides_iwebapi(api):
    assert verifyObject(IWebAPI, api)
    assert api.prefix == "api/v1"


@pytest_twisted.inlineCallbacks
def test_the_root_finds_an_api_provided_after_it_was_built(api):
    components = Components()
    http = StubTreq(WebRoot(components, Operations()))
    response = yield http.get(BASE + "/quotes/600000")
    assert (yield response.content()) == b"operations:/api/v1/quotes/600000"
    components.provide(IWebAPI, api)
    status, body, _ = yield call(http, "GET", "/quotes/600000")
    assert (status, body["name_en"]) == (200, "SPD Bank")
    response = yield http.get("http://bank.example/health")
    assert (yield response.content()) == b"operations:/health"


@pytest_twisted.inlineCallbacks
def test_an_api_cannot_take_over_health(api):
    @implementer(IWebAPI)
    class Greedy:
        prefix = "health"

        def resource(self):
            raise AssertionError("never asked")

    components = Components()
    components.provide(IWebAPI, Greedy())
    http = StubTreq(WebRoot(components, Operations()))
    response = yield http.get("http://bank.example/health")
    assert (yield response.content()) == b"operations:/health"


# -- sessions


@pytest_twisted.inlineCallbacks
def test_login_gives_a_token_of_which_only_the_hash_is_stored(http, trading, database):
    status, body, response = yield log_in(http)
    assert status == 201
    assert response.headers.getRawHeaders("Content-Type") == ["application/json; charset=utf-8"]
    assert response.headers.getRawHeaders("Cache-Control") == ["no-store"]
    token = body["token"]
    assert len(token) >= 43 and body["token_type"] == "Bearer"
    assert body["investor"] == {"fund_account_no": "1001", "name_zh": "张三", "name_en": "Zhang San",
                                "language": "zh", "branch_code": "0101"}
    assert body["idle_timeout_seconds"] == 1800
    expires = datetime.datetime.fromisoformat(body["expires_at"])
    assert expires.utcoffset() == datetime.timedelta(hours=8)
    assert expires.timestamp() == START + IDLE
    [row] = stored_sessions(database)
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert row["fund_account_no"] == "1001" and row["expires_at"] == START + IDLE
    assert token not in repr(row)
    [(action, origin)] = trading.origins
    assert (action, origin.channel, origin.caller) == ("login", "web", "127.0.0.1")
    assert origin.correlation_id


@pytest_twisted.inlineCallbacks
def test_a_wrong_password_is_401_and_the_lockout_403(http, database):
    for _ in range(StandInTradingService.MAX_ATTEMPTS - 1):
        status, body, _ = yield log_in(http, password="000000")
        assert status == 401
        error = assert_error(body, "wrong_password")
        assert error["message_zh"] == "交易密码错误"
    status, body, _ = yield log_in(http, password="000000")
    assert status == 403
    assert_error(body, "account_locked")
    status, body, _ = yield log_in(http)
    assert status == 403
    assert stored_sessions(database) == []


@pytest_twisted.inlineCallbacks
def test_an_unknown_account_is_said_as_a_wrong_password(http):
    status, body, _ = yield log_in(http, account="9999")
    assert status == 401
    assert_error(body, "wrong_password")


@pytest.mark.parametrize("body, code, field", [
    ({"fund_account_no": "1001"}, "missing_field", "password"),
    ({"fund_account_no": "1001", "password": PASSWORD, "remember_me": True}, "unknown_field", "remember_me"),
    ({"fund_account_no": 1001, "password": PASSWORD}, "invalid_field", "fund_account_no"),
    ({"fund_account_no": "1001", "password": ""}, "invalid_field", "password"),
    ({"fund_account_no": "1" * 21, "password": PASSWORD}, "invalid_field", "fund_account_no"),
])
@pytest_twisted.inlineCallbacks
def test_a_login_body_is_checked_field_by_field(http, body, code, field):
    status, answer, _ = yield call(http, "POST", "/sessions", body)
    assert status == 400
    error = assert_error(answer, code, field)
    assert field in error["message_en"] and field in error["message_zh"]


@pytest.mark.parametrize("raw, code", [
    (b"{not json", "invalid_json"),
    (b'["fund_account_no", "1001"]', "invalid_json"),
    (b'{"fund_account_no": "1001", "fund_account_no": "1002", "password": "1"}', "invalid_json"),
    (b'{"fund_account_no": NaN, "password": "1"}', "invalid_json"),
    ('{"fund_account_no": "张三"}'.encode("gbk"), "invalid_json"),
    (b"", "invalid_json"),
])
@pytest_twisted.inlineCallbacks
def test_a_body_that_is_not_a_json_object_is_400(http, raw, code):
    status, body, _ = yield call(http, "POST", "/sessions", raw=raw, headers={"Content-Type": "application/json"})
    assert status == 400
    assert_error(body, code)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "application/json; charset=gbk"])
@pytest_twisted.inlineCallbacks
def test_a_body_that_is_not_json_is_415(http, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    status, body, _ = yield call(http, "POST", "/sessions", raw=b'{"fund_account_no": "1001", "password": "1"}',
                                 headers=headers)
    assert status == 415
    assert_error(body, "unsupported_media_type")


@pytest_twisted.inlineCallbacks
def test_a_huge_body_is_413(http, trading):
    huge = {"fund_account_no": "1001", "password": "x" * MAX_BODY_BYTES}
    status, body, _ = yield call(http, "POST", "/sessions", huge)
    assert status == 413
    assert_error(body, "body_too_large")
    assert trading.origins == []


@pytest_twisted.inlineCallbacks
def test_an_answer_that_takes_time_does_not_hold_the_api(http, trading):
    trading.pending_login = defer.Deferred()
    pending = results_of(log_in(http))
    assert pending == []
    status, _, _ = yield call(http, "GET", "/quotes/600000")  # others are served meanwhile
    assert status == 200
    trading.pending_login.callback(trading.accounts["1001"]["investor"])
    http.flush()
    [(status, body, _)] = pending
    assert status == 201 and body["token"]


@pytest_twisted.inlineCallbacks
def test_a_token_is_required(http):
    status, body, response = yield call(http, "GET", "/funds")
    assert status == 401
    assert_error(body, "token_required")
    assert response.headers.getRawHeaders("WWW-Authenticate") == ['Bearer realm="callcenter"']
    for header in ("Basic MTAwMToxMzU3OTA=", "Bearer", "Bearer not a token", "Bearer " + "x" * 43):
        status, body, response = yield call(http, "GET", "/funds", headers={"Authorization": header})
        assert status == 401, header
        assert_error(body, "session_expired")
        assert 'error="invalid_token"' in response.headers.getRawHeaders("WWW-Authenticate")[0]


@pytest_twisted.inlineCallbacks
def test_headers_that_are_not_ascii_are_refused_not_crashed_on(http):
    token = yield token_of(http)
    for name, value in ((b"Authorization", "Bearer \u212a".encode("utf-8") + token.encode()[1:]),
                        (b"Authorization", b"Bearer \xff\xfe"),
                        (b"Accept-Language", b"\xff;q=\xfe")):
        status, body, _ = yield call(http, "GET", "/funds", headers={name: value, **(
            {} if name == b"Authorization" else {b"Authorization": f"Bearer {token}".encode()})})
        assert status in (200, 401), (name, value)
        assert body


@pytest_twisted.inlineCallbacks
def test_a_session_ends_after_idle_time_and_use_keeps_it(http, clock):
    token = yield token_of(http)
    clock.advance(IDLE - 1)
    status, _, _ = yield call(http, "GET", "/funds", token=token)
    assert status == 200
    clock.advance(IDLE - 1)  # counted from the last use
    status, _, _ = yield call(http, "GET", "/funds", token=token)
    assert status == 200
    clock.advance(IDLE)
    status, body, _ = yield call(http, "GET", "/funds", token=token)
    assert status == 401
    assert_error(body, "session_expired")


@pytest_twisted.inlineCallbacks
def test_expiry_moves_on_at_most_once_a_minute(http, clock, database):
    token = yield token_of(http)
    clock.advance(30)
    yield call(http, "GET", "/funds", token=token)
    [row] = stored_sessions(database)
    assert row["expires_at"] == START + IDLE
    clock.advance(31)
    yield call(http, "GET", "/funds", token=token)
    [row] = stored_sessions(database)
    assert row["expires_at"] == START + 61 + IDLE


@pytest_twisted.inlineCallbacks
def test_expired_sessions_are_purged_now_and_then(trading, store, clock, database):
    components = Components()
    components.provide(IWebAPI, TradingAPI(trading, store, clock, idle_timeout=IDLE, purge_interval=2 * IDLE))
    http = StubTreq(WebRoot(components, Operations()))
    old = yield token_of(http, "1002")
    clock.advance(IDLE + 1)
    yield token_of(http)  # less than purge_interval after the first login's purge
    assert sorted(r["fund_account_no"] for r in stored_sessions(database)) == ["1001", "1002"]
    clock.advance(IDLE - 1)
    yield token_of(http)
    assert sorted(r["fund_account_no"] for r in stored_sessions(database)) == ["1001", "1001"]
    status, _, _ = yield call(http, "GET", "/funds", token=old)
    assert status == 401


@pytest_twisted.inlineCallbacks
def test_logout_ends_the_session(http, database):
    token = yield token_of(http)
    other = yield token_of(http)
    status, body, _ = yield call(http, "DELETE", "/sessions/current", token=token)
    assert (status, body) == (204, None)
    status, _, _ = yield call(http, "GET", "/funds", token=token)
    assert status == 401
    status, _, _ = yield call(http, "GET", "/funds", token=other)
    assert status == 200
    status, _, _ = yield call(http, "DELETE", "/sessions/current", token=token)
    assert status == 401


@pytest_twisted.inlineCallbacks
def test_no_token_reaches_the_logs(http, trading):
    with CapturedLog() as logged:
        token = yield token_of(http)
        yield call(http, "GET", "/funds", token=token)
        yield call(http, "GET", "/funds", token=token[:-1] + "A")
        trading.broken = True
        yield call(http, "GET", "/funds", token=token)
        yield call(http, "DELETE", "/sessions/current", token=token)
        yield log_in(http, password="000000")
    assert logged.formats("API session opened")
    for event in logged:
        text = formatEvent(event) + repr(event)
        assert token not in text and token[:20] not in text
        assert "000000" not in text and PASSWORD not in text


# -- market data


@pytest_twisted.inlineCallbacks
def test_a_quote_needs_no_login(http):
    status, body, _ = yield call(http, "GET", "/quotes/600000")
    assert status == 200
    assert body == {
        "code": "600000", "exchange": "SSE", "name_zh": "浦发银行", "name_en": "SPD Bank", "board": "main",
        "is_st": False, "lot_size": 100, "prev_close_fen": 1000, "limit_up_fen": 1100, "limit_down_fen": 900,
        "tick": {"last_fen": 1012, "bid_fen": 1011, "bid_size": 4500, "ask_fen": 1013, "ask_size": 3200,
                 "volume": 1_234_500, "at": "2027-01-15T16:00:00+08:00"},
    }


@pytest_twisted.inlineCallbacks
def test_a_quote_before_the_first_tick_has_the_band_only(http):
    status, body, _ = yield call(http, "GET", "/quotes/300750")
    assert status == 200
    assert (body["limit_up_fen"], body["limit_down_fen"], body["tick"]) == (24000, 16000, None)


@pytest_twisted.inlineCallbacks
def test_an_unknown_or_malformed_code(http):
    status, body, _ = yield call(http, "GET", "/quotes/999999")
    assert status == 404
    assert_error(body, "unknown_instrument")
    status, body, _ = yield call(http, "GET", "/quotes/60000X")
    assert status == 400
    assert_error(body, "invalid_field", "code")


# -- the investor's books


@pytest_twisted.inlineCallbacks
def test_funds_and_positions_in_fen(http):
    token = yield token_of(http)
    status, body, _ = yield call(http, "GET", "/funds", token=token)
    assert status == 200
    assert body == {"fund_account_no": "1001", "currency": "CNY", "available_fen": 100_000_000, "frozen_fen": 0,
                    "market_value_fen": 1_012_000, "total_fen": 101_012_000}
    status, body, _ = yield call(http, "GET", "/positions", token=token)
    assert status == 200
    assert body == {"positions": [{
        "code": "600000", "exchange": "SSE", "name_zh": "浦发银行", "name_en": "SPD Bank", "quantity": 1000,
        "sellable": 1000, "frozen": 0, "bought_today": 0, "cost_fen": 990_000, "last_fen": 1012,
        "market_value_fen": 1_012_000,
    }]}


@pytest_twisted.inlineCallbacks
def test_one_investor_sees_only_their_own_books(http):
    token = yield token_of(http)
    yield call(http, "POST", "/orders", {"code": "600000", "side": "buy", "price_fen": 1000, "quantity": 100},
               token=token)
    other = yield token_of(http, "1002")
    status, body, _ = yield call(http, "GET", "/orders", token=other)
    assert (status, body) == (200, {"orders": []})
    status, body, _ = yield call(http, "GET", "/positions", token=other)
    assert body == {"positions": []}


@pytest_twisted.inlineCallbacks
def test_orders_of_a_day_and_one_order(http, trading):
    token = yield token_of(http)
    status, placed, response = yield call(
        http, "POST", "/orders", {"code": "600000", "side": "buy", "price_fen": 1005, "quantity": 200}, token=token)
    assert status == 201
    assert response.headers.getRawHeaders("Location") == [f"/api/v1/orders/{placed['order_no']}"]
    assert placed["status"] == "new" and placed["price_fen"] == 1005 and placed["quantity"] == 200
    assert placed["created_at"] == "2026-12-01T10:00:00+08:00"
    for internal in ("fund_account_no", "caller", "call_id", "agent_id"):
        assert internal not in placed
    status, body, _ = yield call(http, "GET", "/orders", token=token)
    assert body == {"orders": [placed]}
    status, body, _ = yield call(http, "GET", "/orders?day=2026-12-01", token=token)
    assert body == {"orders": [placed]}
    status, body, _ = yield call(http, "GET", "/orders?day=2026-11-30", token=token)
    assert body == {"orders": []}
    status, body, _ = yield call(http, "GET", f"/orders/{placed['order_no']}", token=token)
    assert (status, body) == (200, placed)


@pytest_twisted.inlineCallbacks
def test_fills(http, trading):
    token = yield token_of(http)
    _, placed, _ = yield call(http, "POST", "/orders", {"code": "600000", "side": "buy", "price_fen": 1005,
                                                         "quantity": 200}, token=token)
    trading.book[0].update(filled_quantity=200, filled_amount_fen=201_000, status="filled")
    status, body, _ = yield call(http, "GET", "/fills?day=2026-12-01", token=token)
    assert status == 200
    assert body == {"fills": [{
        "fill_id": 1, "order_no": placed["order_no"], "exec_id": "E1", "code": "600000", "side": "buy",
        "quantity": 200, "price_fen": 1005, "amount_fen": 201_000, "commission_fen": 500, "stamp_duty_fen": 0,
        "transfer_fee_fen": 1, "filled_at": "2026-12-01T10:00:00+08:00",
    }]}


@pytest.mark.parametrize("query, code, field", [
    ("day=2026-13-01", "invalid_field", "day"),
    ("day=20261201", "invalid_field", "day"),
    ("day=2026-12-01&day=2026-12-02", "invalid_field", "day"),
    ("date=2026-12-01", "unknown_field", "date"),
])
@pytest_twisted.inlineCallbacks
def test_a_bad_query_is_400(http, query, code, field):
    token = yield token_of(http)
    for path in ("/orders", "/fills"):
        status, body, _ = yield call(http, "GET", f"{path}?{query}", token=token)
        assert status == 400
        assert_error(body, code, field)


@pytest_twisted.inlineCallbacks
def test_an_order_that_is_not_ones_own_is_404(http):
    token = yield token_of(http)
    _, placed, _ = yield call(http, "POST", "/orders", {"code": "600000", "side": "buy", "price_fen": 1000,
                                                         "quantity": 100}, token=token)
    other = yield token_of(http, "1002")
    for path in (f"/orders/{placed['order_no']}", "/orders/77", "/orders/99999999999", "/orders/x"):
        status, body, _ = yield call(http, "GET", path, token=other)
        assert status == 404, path
        assert body["error"]["code"] in ("order_not_found", "not_found")


# -- placing and cancelling


@pytest_twisted.inlineCallbacks
def test_placing_an_order_carries_the_web_origin(http, trading):
    token = yield token_of(http)
    status, body, _ = yield call(http, "POST", "/orders", {"code": "600000", "side": "sell", "price_fen": 1010,
                                                            "quantity": 100, "client_order_id": "app-1"},
                                 token=token, headers={"Accept-Language": "en"})
    assert status == 201
    assert body["client_order_id"] == "app-1" and body["channel"] == "web"
    action, origin = trading.origins[-1]
    assert (action, origin.channel, origin.caller) == ("place_order", "web", "127.0.0.1")
    assert origin.correlation_id


@pytest_twisted.inlineCallbacks
def test_a_retried_order_is_placed_once(http, trading):
    token = yield token_of(http)
    order = {"code": "600000", "side": "buy", "price_fen": 1000, "quantity": 100, "client_order_id": "retry-7"}
    status, first, _ = yield call(http, "POST", "/orders", order, token=token)
    assert status == 201
    status, again, _ = yield call(http, "POST", "/orders", order, token=token)
    assert (status, again) == (200, first)
    assert len(trading.book) == 1
    status, body, _ = yield call(http, "POST", "/orders", {**order, "quantity": 200}, token=token)
    assert status == 409
    assert_error(body, "duplicate_client_order_id")
    assert len(trading.book) == 1


@pytest_twisted.inlineCallbacks
def test_a_market_order_needs_no_price_and_a_limit_order_does(http, trading):
    token = yield token_of(http)
    status, body, _ = yield call(http, "POST", "/orders", {"code": "600000", "side": "buy", "quantity": 100,
                                                            "order_type": "market"}, token=token)
    assert status == 201 and body["order_type"] == "market"
    status, body, _ = yield call(http, "POST", "/orders", {"code": "600000", "side": "buy", "quantity": 100},
                                 token=token)
    assert status == 400
    assert_error(body, "missing_field", "price_fen")


@pytest.mark.parametrize("change, code, field", [
    ({"price_fen": 10.05}, "invalid_field", "price_fen"),
    ({"price_fen": "1005"}, "invalid_field", "price_fen"),
    ({"price_fen": 0}, "invalid_field", "price_fen"),
    ({"quantity": True}, "invalid_field", "quantity"),
    ({"quantity": -100}, "invalid_field", "quantity"),
    ({"quantity": 10**30}, "invalid_field", "quantity"),
    ({"side": "short"}, "invalid_field", "side"),
    ({"order_type": "stop"}, "invalid_field", "order_type"),
    ({"code": "600000.SH"}, "invalid_field", "code"),
    ({"client_order_id": "has space"}, "invalid_field", "client_order_id"),
    ({"price": 1005}, "unknown_field", "price"),
    ({"code": None}, "invalid_field", "code"),
])
@pytest_twisted.inlineCallbacks
def test_an_order_body_is_checked(http, trading, change, code, field):
    token = yield token_of(http)
    order = {"code": "600000", "side": "buy", "price_fen": 1005, "quantity": 100, **change}
    status, body, _ = yield call(http, "POST", "/orders", order, token=token)
    assert status == 400
    assert_error(body, code, field)
    assert trading.book == []


@pytest_twisted.inlineCallbacks
def test_a_rule_that_refuses_is_422_with_its_particulars(http):
    token = yield token_of(http)
    status, body, _ = yield call(http, "POST", "/orders", {"code": "600000", "side": "buy", "price_fen": 1200,
                                                            "quantity": 100}, token=token)
    assert status == 422
    error = assert_error(body, "price_above_limit")
    assert error["message_zh"] == "委托价格超出今日涨停价"
    assert error["details"] == {"limit_fen": 1100}
    status, body, _ = yield call(http, "POST", "/orders", {"code": "999999", "side": "buy", "price_fen": 1000,
                                                            "quantity": 100}, token=token)
    assert status == 422
    assert_error(body, "unknown_instrument")


@pytest_twisted.inlineCallbacks
def test_cancel_is_202_and_final_orders_409(http, trading):
    token = yield token_of(http)
    _, placed, _ = yield call(http, "POST", "/orders", {"code": "600000", "side": "buy", "price_fen": 1000,
                                                         "quantity": 100}, token=token)
    status, body, _ = yield call(http, "DELETE", f"/orders/{placed['order_no']}", token=token)
    assert status == 202
    assert body["order_no"] == placed["order_no"] and body["cancel_requested"] is True
    assert trading.origins[-1][0] == "cancel_order" and trading.origins[-1][1].channel == "web"
    trading.book[0]["status"] = "cancelled"
    status, body, _ = yield call(http, "DELETE", f"/orders/{placed['order_no']}", token=token)
    assert status == 409
    assert_error(body, "order_not_cancellable")


@pytest_twisted.inlineCallbacks
def test_cancelling_someone_elses_order_is_404(http, trading):
    token = yield token_of(http)
    _, placed, _ = yield call(http, "POST", "/orders", {"code": "600000", "side": "buy", "price_fen": 1000,
                                                         "quantity": 100}, token=token)
    other = yield token_of(http, "1002")
    status, body, _ = yield call(http, "DELETE", f"/orders/{placed['order_no']}", token=other)
    assert status == 404
    assert_error(body, "order_not_found")
    assert trading.book[0]["cancel_requested"] is False


# -- price alerts


@pytest_twisted.inlineCallbacks
def test_alerts_are_added_listed_and_removed(http):
    token = yield token_of(http)
    status, rule, _ = yield call(http, "POST", "/alerts", {"code": "600000", "kind": "price_above",
                                                           "threshold": 1050}, token=token)
    assert status == 201
    assert rule == {"rule_id": 1, "code": "600000", "exchange": "SSE", "kind": "price_above", "threshold": 1050,
                    "rearm": "once", "active": True, "last_fired_at": None,
                    "created_at": "2026-12-01T02:00:00+08:00"}
    status, body, _ = yield call(http, "GET", "/alerts", token=token)
    assert (status, body) == (200, {"alerts": [rule]})
    other = yield token_of(http, "1002")
    status, body, _ = yield call(http, "DELETE", "/alerts/1", token=other)
    assert status == 404
    assert_error(body, "alert_rule_not_found")
    status, body, _ = yield call(http, "DELETE", "/alerts/1", token=token)
    assert (status, body) == (204, None)
    status, body, _ = yield call(http, "GET", "/alerts", token=token)
    assert body == {"alerts": []}


@pytest_twisted.inlineCallbacks
def test_a_bad_alert(http):
    token = yield token_of(http)
    status, body, _ = yield call(http, "POST", "/alerts", {"code": "600000", "kind": "moon", "threshold": 1},
                                 token=token)
    assert status == 422
    assert_error(body, "bad_alert_rule")
    status, body, _ = yield call(http, "POST", "/alerts", {"code": "600000", "kind": "price_above",
                                                           "threshold": 10.5}, token=token)
    assert status == 400
    assert_error(body, "invalid_field", "threshold")


# -- errors


@pytest_twisted.inlineCallbacks
def test_unknown_paths_and_methods(http):
    status, body, _ = yield call(http, "GET", "/nowhere")
    assert status == 404
    assert_error(body, "not_found")
    status, body, response = yield call(http, "PUT", "/orders")
    assert status == 405
    assert_error(body, "method_not_allowed")
    assert set(response.headers.getRawHeaders("Allow")[0].split(", ")) >= {"GET", "POST"}
    status, body, _ = yield call(http, "GET", "")
    assert status == 404


@pytest_twisted.inlineCallbacks
def test_accept_language_puts_its_message_first(http):
    for header, first in ((None, "message_zh"), ("en-US,en;q=0.9", "message_en"), ("zh-CN,en;q=0.5", "message_zh"),
                          ("zh;q=0.3, en;q=0.8", "message_en"), ("fr", "message_zh")):
        status, body, _ = yield call(http, "GET", "/funds", headers={"Accept-Language": header} if header else {})
        keys = list(body["error"])
        assert keys[:3] == ["code", first, ({"message_zh", "message_en"} - {first}).pop()], header


@pytest_twisted.inlineCallbacks
def test_a_fault_is_500_with_a_correlation_id_and_logged(http, trading):
    token = yield token_of(http)
    trading.broken = True
    with CapturedLog() as logged:
        status, body, response = yield call(http, "GET", "/funds", token=token)
    assert status == 500
    error = assert_error(body, "internal_error")
    assert "caught fire" not in json.dumps(body) and "Traceback" not in json.dumps(body)
    [failure] = [e for e in logged if e.get("log_failure") is not None]
    assert failure["cid"] == error["correlation_id"]
    assert failure["log_failure"].check(RuntimeError)


# -- on a real socket, behind the site the web subsystem runs


@pytest.fixture
def site_url(components):
    port = reactor.listenTCP(0, CorrelatedSite(WebRoot(components, Operations())), interface="127.0.0.1")
    yield f"http://127.0.0.1:{port.getHost().port}"
    pytest_twisted.blockon(port.stopListening())


@pytest_twisted.inlineCallbacks
def test_the_sites_correlation_id_reaches_the_trading_origin(site_url, trading):
    response = yield real_treq.post(site_url + "/api/v1/sessions", json={"fund_account_no": "1001",
                                                                         "password": "000000"},
                                    headers={"X-Request-Id": "portal-42"})
    body = yield response.json()
    assert response.code == 401
    assert body["error"]["correlation_id"] == "portal-42"
    [(_, origin)] = trading.origins
    assert origin.correlation_id == "portal-42"


@pytest_twisted.inlineCallbacks
def test_the_access_log_holds_no_token(site_url):
    with CapturedLog() as logged:
        response = yield real_treq.post(site_url + "/api/v1/sessions",
                                        json={"fund_account_no": "1001", "password": PASSWORD})
        token = (yield response.json())["token"]
        response = yield real_treq.get(site_url + "/api/v1/funds", headers={"Authorization": f"Bearer {token}"})
        assert response.code == 200
        yield response.content()
    access = [e for e in logged if e.get("log_namespace") == "callcenter.web.access"]
    assert [e["uri"] for e in access] == ["/api/v1/sessions", "/api/v1/funds"]
    for event in logged:
        assert token not in formatEvent(event) + repr(event)
        assert PASSWORD not in formatEvent(event) + repr(event)


# -- through the real trading service: its rows, refusals and logins (argon2
# in threads), the store in its thread pool as in production


MORNING = datetime.datetime(2026, 12, 1, 10, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=8)))


def _seed_for_service(connection):
    from callcenter.passwords import hash_password
    from callcenter.store.schema import instruments, positions

    connection.execute(branches.insert().values(code="0101", name_zh="总部", name_en="HQ", city="Shenzhen"))
    hashed = hash_password(PASSWORD)
    for account_no, name_zh, name_en, cash in (("1001", "张三", "Zhang San", 100_000_000), ("1002", "李四", None, 0)):
        customer = connection.execute(
            customers.insert().values(branch_code="0101", name_zh=name_zh, name_en=name_en)
        ).inserted_primary_key[0]
        connection.execute(fund_accounts.insert().values(account_no=account_no, customer_id=customer,
                                                         cash_available_fen=cash, password_hash=hashed))
    connection.execute(instruments.insert(), [
        dict(code=i.code, exchange=i.exchange, name_zh=i.name_zh, name_en=i.name_en, board=i.board,
             prev_close_fen=i.prev_close_fen, is_st=i.is_st, lot_size=i.lot_size) for i in (SPD, CATL)
    ])
    connection.execute(positions.insert().values(fund_account_no="1001", code="600000", exchange="SSE",
                                                 quantity=1000, cost_fen=990_000, trading_day="2026-11-30"))


class Delivering(Resource):
    """
    Hands each answer to the StubTreq client once the request finishes,
    however late: the real service answers from the store's threads, after
    StubTreq has stopped pumping.
    """

    def __init__(self, root):
        super().__init__()
        self.root = root
        self.client = None

    def getChildWithDefault(self, name, request):
        request.notifyFinish().addBoth(lambda _: reactor.callLater(0, self.client.flush))
        return self.root.getChildWithDefault(name, request)


class Service:
    def __init__(self, trading, http, bus, clock):
        self.trading = trading
        self.http = http
        self.bus = bus
        self.clock = clock

    def wait_for(self, kind, match):
        d = defer.Deferred()

        def seen(event):
            if match(event) and not d.called:
                subscription.cancel()
                d.callback(event)

        subscription = self.bus.subscribe(kind, seen, "test")
        return d


@pytest.fixture
def service(running_store):
    from callcenter.events import InProcessEventBus
    from callcenter.trading.accounts import Logins
    from callcenter.trading.calendar import TradingCalendar
    from callcenter.trading.clock import FixedTradingClock
    from callcenter.trading.exchange import SimulatedExchange
    from callcenter.trading.fees import FeeSchedule
    from callcenter.trading.marketdata import RandomWalkFeed
    from callcenter.trading.service import TradingService

    store = running_store
    store._database.transaction(_seed_for_service)
    clock = Clock()
    clock.advance(START)
    trading_clock = FixedTradingClock(MORNING)
    bus = InProcessEventBus()
    trading = TradingService(
        store, bus, reactor, clock, trading_clock, TradingCalendar(set()),
        lambda listed: RandomWalkFeed(clock, listed, seed=7, interval=1.0),
        lambda listed, market, phase_of: SimulatedExchange(clock, market, listed, phase_of),
        FeeSchedule(), Logins(store, reactor, trading_clock.now),
    )
    trading.startService()
    pytest_twisted.blockon(trading.ready)
    components = Components()
    components.provide(IWebAPI, TradingAPI(trading, store, clock, idle_timeout=IDLE))
    root = Delivering(WebRoot(components, Operations()))
    root.client = StubTreq(root)
    yield Service(trading, root.client, bus, clock)
    pytest_twisted.blockon(trading.stopService())


@pytest_twisted.inlineCallbacks
def test_service_login_and_the_books(service):
    http = service.http
    status, body, _ = yield log_in(http, password="000000")
    assert status == 401
    assert_error(body, "wrong_password")
    status, body, _ = yield log_in(http, account="9999")
    assert status == 401
    status, body, _ = yield log_in(http)
    assert status == 201
    assert body["investor"]["name_zh"] == "张三"
    token = body["token"]
    status, funds, _ = yield call(http, "GET", "/funds", token=token)
    assert status == 200
    assert funds["available_fen"] == 100_000_000 and funds["frozen_fen"] == 0
    assert funds["total_fen"] == funds["available_fen"] + funds["frozen_fen"] + funds["market_value_fen"]
    assert all(type(funds[k]) is int for k in ("available_fen", "frozen_fen", "market_value_fen", "total_fen"))
    status, body, _ = yield call(http, "GET", "/positions", token=token)
    [held] = body["positions"]
    assert (held["code"], held["name_zh"], held["quantity"], held["sellable"]) == ("600000", "浦发银行", 1000, 1000)
    assert held["market_value_fen"] == 1000 * held["last_fen"]
    status, quote, _ = yield call(http, "GET", "/quotes/600000")
    assert (quote["limit_up_fen"], quote["limit_down_fen"]) == (1100, 900)
    assert quote["tick"] is None or 900 <= quote["tick"]["last_fen"] <= 1100


@pytest_twisted.inlineCallbacks
def test_service_orders_placed_retried_refused_and_cancelled(service):
    http = service.http
    token = yield token_of(http)
    other = yield token_of(http, "1002")
    order = {"code": "600000", "side": "buy", "price_fen": 900, "quantity": 100, "client_order_id": "app-1"}
    status, placed, _ = yield call(http, "POST", "/orders", order, token=token)
    assert status == 201
    assert (placed["status"], placed["channel"], placed["price_fen"], placed["trading_day"]) == (
        "new", "web", 900, "2026-12-01")
    assert placed["frozen_fen"] > 90_000
    status, again, _ = yield call(http, "POST", "/orders", order, token=token)
    assert (status, again["order_no"]) == (200, placed["order_no"])
    status, body, _ = yield call(http, "POST", "/orders", {**order, "price_fen": 901}, token=token)
    assert status == 409
    status, body, _ = yield call(http, "POST", "/orders", {**order, "client_order_id": "app-2", "quantity": 150},
                                 token=token)
    assert status == 422
    assert assert_error(body, "lot_size")["details"] == {"minimum": 100, "step": 100}
    status, body, _ = yield call(http, "GET", "/orders", token=token)
    assert [o["order_no"] for o in body["orders"]] == [placed["order_no"]]
    status, body, _ = yield call(http, "GET", f"/orders/{placed['order_no']}", token=other)
    assert status == 404
    status, body, _ = yield call(http, "DELETE", f"/orders/{placed['order_no']}", token=other)
    assert status == 404
    assert_error(body, "order_not_found")
    status, body, _ = yield call(http, "DELETE", f"/orders/{placed['order_no']}", token=token)
    assert (status, body["cancel_requested"]) == (202, True)


@pytest_twisted.inlineCallbacks
def test_service_a_fill_shows_in_fills(service):
    http = service.http
    token = yield token_of(http)
    filled = service.wait_for(OrderFilled, lambda e: e.status == "filled")
    status, placed, _ = yield call(http, "POST", "/orders", {"code": "600000", "side": "buy", "price_fen": 1100,
                                                              "quantity": 100}, token=token)
    assert status == 201
    service.clock.advance(0)  # the simulated exchange acts on a later turn
    yield filled
    status, body, _ = yield call(http, "GET", "/fills", token=token)
    [fill] = body["fills"]
    assert (fill["order_no"], fill["quantity"], fill["side"]) == (placed["order_no"], 100, "buy")
    assert fill["amount_fen"] == 100 * fill["price_fen"]


@pytest_twisted.inlineCallbacks
def test_service_alerts(service):
    http = service.http
    token = yield token_of(http)
    status, rule, _ = yield call(http, "POST", "/alerts", {"code": "600000", "kind": "change_up",
                                                           "threshold": 500, "rearm": "daily"}, token=token)
    assert status == 201
    assert (rule["code"], rule["kind"], rule["threshold"], rule["rearm"], rule["active"]) == (
        "600000", "change_up", 500, "daily", True)
    status, body, _ = yield call(http, "GET", "/alerts", token=token)
    assert body == {"alerts": [rule]}
    status, body, _ = yield call(http, "POST", "/alerts", {"code": "600000", "kind": "moon", "threshold": 1},
                                 token=token)
    assert status == 422
    status, _, _ = yield call(http, "DELETE", f"/alerts/{rule['rule_id']}", token=token)
    assert status == 204
    status, body, _ = yield call(http, "DELETE", f"/alerts/{rule['rule_id']}", token=token)
    assert status == 404
    assert_error(body, "alert_rule_not_found")
