"""
The trading service as the IVR and the web API use it, on a real database
with the simulated exchange and the random-walk market: orders booked,
sent, filled and cancelled with events on the bus; logins with lockout and
caller restriction; queued orders going out at the open; recovery of
acknowledged orders after a restart; alerts firing.

Timers run on a L{Clock}; the trading time is a L{FixedTradingClock}; the
database work runs in the reactor's threads, so tests wait on events.
"""

import datetime

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer, reactor
from twisted.internet.task import Clock

from callcenter.events import InProcessEventBus
from callcenter.passwords import hash_password
from callcenter.store.schema import audit_log, branches, customers, fund_accounts, instruments
from callcenter.store.schema import allowed_callers, positions
from callcenter.trading.accounts import Logins
from callcenter.trading.calendar import CHINA_STANDARD_TIME, TradingCalendar
from callcenter.trading.clock import FixedTradingClock
from callcenter.trading.events import AlertFired, OrderAccepted, OrderCancelled, OrderFilled
from callcenter.trading.exchange import SimulatedExchange
from callcenter.trading.fees import FeeSchedule
from callcenter.trading.marketdata import RandomWalkFeed
from callcenter.trading.model import BUY, SELL, Origin
from callcenter.trading.reasons import TradingRefused
from callcenter.trading.service import TradingService

PASSWORD = "135790"
ACCOUNT = "10010001"
# Tuesday 1 December 2026, 10:00 in Shanghai: continuous trading.
MORNING = datetime.datetime(2026, 12, 1, 10, 0, tzinfo=CHINA_STANDARD_TIME)
PHONE = Origin("phone", caller="13800138001", call_id="call-1")
WEB = Origin("web", caller="127.0.0.1")


def _seed(connection):
    connection.execute(branches.insert().values(code="0101", name_zh="总部", name_en="HQ", city="Shenzhen"))
    customer = connection.execute(
        customers.insert().values(branch_code="0101", name_zh="张伟", name_en="Zhang Wei")
    ).inserted_primary_key[0]
    connection.execute(fund_accounts.insert().values(
        account_no=ACCOUNT, customer_id=customer, cash_available_fen=10_000_000,
        password_hash=hash_password(PASSWORD)))
    connection.execute(instruments.insert(), [
        dict(code="600000", exchange="SSE", name_zh="浦发银行", name_en="SPD Bank", board="main",
             prev_close_fen=1000, is_st=False, lot_size=100),
        dict(code="300750", exchange="SZSE", name_zh="宁德时代", name_en="CATL", board="chinext",
             prev_close_fen=36000, is_st=False, lot_size=100),
    ])
    connection.execute(positions.insert().values(
        fund_account_no=ACCOUNT, code="600000", exchange="SSE", quantity=1000, cost_fen=1_000_000,
        trading_day="2026-11-30"))


@pytest.fixture
def store(running_store):
    running_store._database.transaction(_seed)
    return running_store


class Harness:
    def __init__(self, store, after_hours="reject"):
        self.store = store
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.trading_clock = FixedTradingClock(MORNING)
        self.bus = InProcessEventBus()
        self.events = []
        self._waiting = []
        self.bus.subscribe(object, self._event, "test")
        self.after_hours = after_hours
        self.service = None

    def _event(self, event):
        self.events.append(event)
        for waiting in list(self._waiting):
            kind, match, d = waiting
            if isinstance(event, kind) and match(event):
                self._waiting.remove(waiting)
                d.callback(event)

    def wait_for(self, kind, match=lambda event: True):
        for event in self.events:
            if isinstance(event, kind) and match(event):
                return defer.succeed(event)
        d = defer.Deferred()
        self._waiting.append((kind, match, d))
        return d

    def build(self):
        calendar = TradingCalendar(set())

        def feed(listed):
            return RandomWalkFeed(self.clock, listed, seed=7, interval=1.0)

        def gateway(listed, market, phase_of):
            return SimulatedExchange(self.clock, market, listed, phase_of)

        logins = Logins(self.store, reactor, self.trading_clock.now)
        self.service = TradingService(
            self.store, self.bus, reactor, self.clock, self.trading_clock, calendar, feed, gateway,
            FeeSchedule(), logins, after_hours=self.after_hours,
        )
        return self.service

    @defer.inlineCallbacks
    def start(self):
        service = self.build()
        service.startService()
        yield service.ready
        return service

    def turn(self, seconds=0):
        """Let the exchange act on what it was sent (it reports on a later turn)."""
        self.clock.advance(seconds)


@pytest.fixture
def harness(store):
    h = Harness(store)
    yield h
    if h.service is not None and h.service.running:
        pytest_twisted.blockon(h.service.stopService())


def _rows(store, table, *where):
    return store._database.transaction(lambda c: [dict(r) for r in c.execute(sa.select(table).where(*where)).mappings()])


@pytest_twisted.ensureDeferred
async def test_a_marketable_buy_is_accepted_and_filled_and_the_books_follow(harness):
    service = await harness.start()
    quote = service.quote("600000")
    price = quote.tick.ask_fen
    order = await service.place_order(ACCOUNT, "600000", BUY, price, 200, WEB)
    assert order["status"] == "new" and order["frozen_fen"] > 0
    harness.turn()
    accepted = await harness.wait_for(OrderAccepted, lambda e: e.order_no == order["order_no"])
    assert accepted.quantity == 200
    filled = await harness.wait_for(OrderFilled, lambda e: e.order_no == order["order_no"] and e.status == "filled")
    assert filled.name_zh == "浦发银行"
    funds = await service.funds(ACCOUNT)
    [done] = await service.orders(ACCOUNT)
    assert done["status"] == "filled" and done["filled_quantity"] == 200
    assert funds["frozen_fen"] == 0
    assert funds["available_fen"] == 10_000_000 - done["filled_amount_fen"] - done["fees_fen"]
    held = {p["code"]: p for p in await service.positions(ACCOUNT)}
    # Bought today: not sellable until tomorrow; the old 1,000 are.
    assert held["600000"]["quantity"] == 1200 and held["600000"]["sellable"] == 1000


@pytest_twisted.ensureDeferred
async def test_a_resting_order_is_cancelled_and_its_cash_released(harness):
    service = await harness.start()
    low = service.quote("600000").limit_down_fen
    order = await service.place_order(ACCOUNT, "600000", BUY, low, 100, WEB)
    harness.turn()
    await harness.wait_for(OrderAccepted)
    await service.cancel_order(ACCOUNT, order["order_no"], WEB)
    harness.turn()
    cancelled = await harness.wait_for(OrderCancelled)
    assert cancelled.cancelled_quantity == 100
    funds = await service.funds(ACCOUNT)
    assert (funds["available_fen"], funds["frozen_fen"]) == (10_000_000, 0)
    with pytest.raises(TradingRefused) as refused:
        await service.cancel_order(ACCOUNT, order["order_no"], WEB)
    assert refused.value.reason.code == "order_not_cancellable"


@pytest_twisted.ensureDeferred
async def test_rule_refusals_carry_a_reason_and_are_audited(harness):
    service = await harness.start()
    quote = service.quote("600000")
    with pytest.raises(TradingRefused) as refused:
        await service.place_order(ACCOUNT, "600000", BUY, quote.limit_up_fen + 1, 100, PHONE)
    assert refused.value.reason.code == "price_above_limit"
    assert refused.value.reason.zh and refused.value.reason.en
    with pytest.raises(TradingRefused) as refused:
        await service.place_order(ACCOUNT, "999999", BUY, 1000, 100, PHONE)
    assert refused.value.reason.code == "unknown_instrument"
    rows = _rows(harness.store, audit_log, audit_log.c.action == "place_order")
    assert [(r["outcome"], r["caller"], r["call_id"]) for r in rows] == [
        ("rejected", "13800138001", "call-1"), ("rejected", "13800138001", "call-1")]


@pytest_twisted.ensureDeferred
async def test_an_acknowledged_order_survives_a_restart(harness):
    """The process dies after the order was booked but before the exchange took it."""
    service = await harness.start()
    ask = service.quote("600000").tick.ask_fen
    order = await service.place_order(ACCOUNT, "600000", BUY, ask, 100, WEB)
    # No turn: the exchange never acted.  A new service over the same database:
    await service.stopService()
    again = await harness.start()
    assert again is not service
    harness.turn()
    filled = await harness.wait_for(OrderFilled, lambda e: e.order_no == order["order_no"])
    assert filled.filled_quantity == 100


@pytest_twisted.ensureDeferred
async def test_orders_out_of_hours_are_queued_and_sent_at_the_open(store):
    h = Harness(store, after_hours="queue")
    h.trading_clock.set(MORNING.replace(hour=20))
    service = await h.start()
    try:
        ask = service.quote("600000").tick.ask_fen
        order = await service.place_order(ACCOUNT, "600000", BUY, ask, 100, WEB)
        assert order["status"] == "new" and order["trading_day"] == "2026-12-02"
        h.turn(5)
        assert not [e for e in h.events if isinstance(e, OrderAccepted)]
        h.trading_clock.set(datetime.datetime(2026, 12, 2, 9, 31, tzinfo=CHINA_STANDARD_TIME))
        h.turn(1)  # the phase watcher sees the session open and sends it
        await service.flush()
        h.turn()
        await h.wait_for(OrderAccepted, lambda e: e.order_no == order["order_no"])
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_market_orders_are_refused_out_of_hours_even_when_queueing(store):
    h = Harness(store, after_hours="queue")
    h.trading_clock.set(MORNING.replace(hour=20))
    service = await h.start()
    try:
        with pytest.raises(TradingRefused) as refused:
            await service.place_order(ACCOUNT, "600000", BUY, 0, 100, WEB, order_type="market")
        assert refused.value.reason.code in ("market_closed", "market_orders_not_allowed_now")
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_orders_left_at_the_close_are_cancelled(harness):
    service = await harness.start()
    low = service.quote("600000").limit_down_fen
    order = await service.place_order(ACCOUNT, "600000", BUY, low, 100, WEB)
    harness.turn()
    await harness.wait_for(OrderAccepted)
    harness.trading_clock.set(MORNING.replace(hour=14, minute=58))
    harness.turn(1)
    harness.trading_clock.set(MORNING.replace(hour=15, minute=1))
    harness.turn(1)
    harness.turn()
    cancelled = await harness.wait_for(OrderCancelled, lambda e: e.order_no == order["order_no"])
    assert cancelled.cancelled_quantity == 100


@pytest_twisted.ensureDeferred
async def test_selling_what_is_held_pays_stamp_duty(harness):
    service = await harness.start()
    bid = service.quote("600000").tick.bid_fen
    order = await service.place_order(ACCOUNT, "600000", SELL, bid, 300, WEB)
    harness.turn()
    filled = await harness.wait_for(OrderFilled, lambda e: e.order_no == order["order_no"] and e.status == "filled")
    [done] = await service.orders(ACCOUNT)
    fees = FeeSchedule().fees(SELL, done["filled_amount_fen"])
    assert fees.stamp_duty_fen > 0 and done["fees_fen"] == fees.total_fen
    funds = await service.funds(ACCOUNT)
    assert funds["available_fen"] == 10_000_000 + done["filled_amount_fen"] - done["fees_fen"]
    assert filled.quantity <= 300


@pytest_twisted.ensureDeferred
async def test_five_wrong_passwords_lock_the_account(harness):
    service = await harness.start()
    for attempt in range(4):
        with pytest.raises(TradingRefused) as refused:
            await service.login(ACCOUNT, "000000", PHONE)
        assert refused.value.reason.code == "wrong_password"
    with pytest.raises(TradingRefused) as refused:
        await service.login(ACCOUNT, "000000", PHONE)
    assert refused.value.reason.code == "account_locked"
    with pytest.raises(TradingRefused) as refused:
        await service.login(ACCOUNT, PASSWORD, PHONE)
    assert refused.value.reason.code == "account_locked"
    outcomes = [r["outcome"] for r in _rows(harness.store, audit_log, audit_log.c.action == "login")]
    assert outcomes == ["wrong_password"] * 4 + ["locked", "account_locked"]


@pytest_twisted.ensureDeferred
async def test_login_names_the_investor_and_unknown_accounts_look_like_wrong_passwords(harness):
    service = await harness.start()
    investor = await service.login(ACCOUNT, PASSWORD, PHONE)
    assert (investor.fund_account_no, investor.name_zh) == (ACCOUNT, "张伟")
    with pytest.raises(TradingRefused) as refused:
        await service.login("99999999", PASSWORD, PHONE)
    assert refused.value.reason.code == "wrong_password"


@pytest_twisted.ensureDeferred
async def test_a_restricted_account_trades_by_phone_only_from_its_numbers(harness):
    harness.store._database.transaction(
        lambda c: c.execute(allowed_callers.insert().values(fund_account_no=ACCOUNT, number="13800138001")))
    service = await harness.start()
    with pytest.raises(TradingRefused) as refused:
        await service.login(ACCOUNT, PASSWORD, Origin("phone", caller="02112345678"))
    assert refused.value.reason.code == "caller_not_allowed"
    await service.login(ACCOUNT, PASSWORD, PHONE)
    # The web is not a phone: the list does not apply there.
    await service.login(ACCOUNT, PASSWORD, WEB)


@pytest_twisted.ensureDeferred
async def test_changing_the_password_needs_the_old_one(harness):
    service = await harness.start()
    with pytest.raises(TradingRefused):
        await service.change_password(ACCOUNT, "111111", "246810", PHONE)
    await service.change_password(ACCOUNT, PASSWORD, "246810", PHONE)
    await service.login(ACCOUNT, "246810", PHONE)


@pytest_twisted.ensureDeferred
async def test_an_alert_fires_once_and_is_switched_off(harness):
    service = await harness.start()
    floor = service.quote("600000").limit_down_fen
    rule_id = await service.add_alert_rule(ACCOUNT, "600000", "price_above", floor, "once", WEB)
    harness.turn(1)  # the next tick: the price is always at or above limit-down
    fired = await harness.wait_for(AlertFired, lambda e: e.rule_id == rule_id)
    assert fired.name_zh == "浦发银行" and fired.last_fen >= floor
    for _ in range(10):
        harness.turn(1)
    assert [e.rule_id for e in harness.events if isinstance(e, AlertFired)] == [rule_id]
    await service.flush()
    [rule] = await service.alert_rules(ACCOUNT)
    assert rule["rule_id"] == rule_id and not rule["active"] and rule["last_fired_at"] is not None


@pytest_twisted.ensureDeferred
async def test_a_daily_alert_fires_again_the_next_trading_day(harness):
    service = await harness.start()
    floor = service.quote("600000").limit_down_fen
    rule_id = await service.add_alert_rule(ACCOUNT, "600000", "price_above", floor, "daily", WEB)
    for _ in range(3):
        harness.turn(1)
    assert [e.rule_id for e in harness.events if isinstance(e, AlertFired)] == [rule_id]
    harness.trading_clock.set(datetime.datetime(2026, 12, 2, 9, 31, tzinfo=CHINA_STANDARD_TIME))
    for _ in range(3):
        harness.turn(1)
    assert [e.rule_id for e in harness.events if isinstance(e, AlertFired)] == [rule_id, rule_id]
