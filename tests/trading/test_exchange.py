"""The simulated exchange: acknowledgement, matching our orders and the market's quotes, limits, cancels, the close."""

from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from callcenter.trading.exchange import AUCTION, CLOSED, CONTINUOUS, SimulatedExchange
from callcenter.trading.instruments import Instrument
from callcenter.trading.interfaces import IMarketDataFeed, ITradingGateway
from callcenter.trading.model import BUY, LIMIT, MARKET, SELL, GatewayOrder, Tick

SPD_BANK = Instrument("600000", "SSE", "浦发银行", "SPD Bank", "main", 1350)  # limits 12.15 to 14.85
MONTAGE = Instrument("688008", "SSE", "澜起科技", "Montage Technology", "star", 9050, lot_size=200)
INSTRUMENTS = {i.code: i for i in (SPD_BANK, MONTAGE)}


@implementer(IMarketDataFeed)
class HandFedQuotes:
    """
    Stands in for market data.  The exchange under test IS the simulator,
    so there is no real counterpart to run against: the test sets each
    quote by hand and sends it to the subscribers.
    """

    def __init__(self):
        self.latest = {}
        self.handlers = []

    def subscribe(self, handler):
        self.handlers.append(handler)
        feed = self

        class Subscription:
            def cancel(self):
                feed.handlers.remove(handler)

        return Subscription()

    def quote(self, code, exchange):
        return self.latest.get((code, exchange))

    def send(self, last, bid, ask, bid_size, ask_size, code="600000"):
        tick = Tick(code, "SSE", last, bid, ask, bid_size, ask_size, 0, 0.0)
        self.latest[(code, "SSE")] = tick
        for handler in list(self.handlers):
            handler(tick)


class Reports:
    """An execution listener that writes down what it hears."""

    def __init__(self):
        self.heard = []
        self.exec_ids = []

    def order_accepted(self, order_no):
        self.heard.append(("accepted", order_no))

    def order_filled(self, order_no, exec_id, quantity, price_fen):
        self.heard.append(("filled", order_no, quantity, price_fen))
        self.exec_ids.append(exec_id)

    def order_cancelled(self, order_no, quantity):
        self.heard.append(("cancelled", order_no, quantity))

    def order_rejected(self, order_no, code):
        self.heard.append(("rejected", order_no, code))

    def take(self):
        heard, self.heard = self.heard, []
        return heard


def order(order_no, side, price_fen, quantity, order_type=LIMIT, code="600000"):
    return GatewayOrder(order_no, code, "SSE", side, order_type, price_fen, quantity)


def exchange_on(clock=None, feed=None, phase="continuous"):
    clock = clock or Clock()
    feed = feed or HandFedQuotes()
    phases = [phase]
    exchange = SimulatedExchange(clock, feed, INSTRUMENTS, phase_of=lambda: phases[0])
    reports = Reports()
    exchange.set_listener(reports)
    return exchange, clock, feed, reports, phases


def test_is_a_trading_gateway():
    exchange, *_ = exchange_on()
    assert verifyObject(ITradingGateway, exchange)


def test_accepts_on_a_later_turn_never_inside_submit():
    exchange, clock, _, reports, _ = exchange_on()
    exchange.submit(order(1, BUY, 1349, 500))
    assert reports.take() == []
    clock.advance(0)
    assert reports.take() == [("accepted", 1)]


def test_resting_buy_fills_against_ticks_at_the_ask_in_lots():
    exchange, clock, feed, reports, _ = exchange_on()
    exchange.submit(order(1, BUY, 1352, 1000))
    clock.advance(0)
    reports.take()
    feed.send(1352, 1352, 1353, 1000, 1000)  # ask above our limit: nothing
    feed.send(1350, 1350, 1351, 1000, 650)
    assert reports.take() == [("filled", 1, 600, 1351)]
    feed.send(1349, 1349, 1350, 1000, 5000)
    assert reports.take() == [("filled", 1, 400, 1350)]
    feed.send(1348, 1348, 1349, 1000, 5000)
    assert reports.take() == []


def test_resting_sell_fills_at_the_bid():
    exchange, clock, feed, reports, _ = exchange_on()
    exchange.submit(order(1, SELL, 1350, 300))
    clock.advance(0)
    reports.take()
    feed.send(1351, 1351, 1352, 200, 1000)
    assert reports.take() == [("filled", 1, 200, 1351)]


def test_ticks_fill_in_price_time_priority_and_a_quote_is_used_once():
    exchange, clock, feed, reports, _ = exchange_on()
    exchange.submit(order(1, BUY, 1351, 300))
    exchange.submit(order(2, BUY, 1352, 300))
    exchange.submit(order(3, BUY, 1352, 300))
    clock.advance(0)
    reports.take()
    feed.send(1350, 1350, 1351, 1000, 500)
    assert reports.take() == [("filled", 2, 300, 1351), ("filled", 3, 200, 1351)]
    # The 500 shares offered are gone until the next quote.
    exchange.submit(order(4, BUY, 1351, 100))
    clock.advance(0)
    assert reports.take() == [("accepted", 4)]


def test_incoming_marketable_order_fills_at_once_against_the_latest_quote():
    exchange, clock, feed, reports, _ = exchange_on()
    feed.send(1350, 1349, 1351, 800, 1200)
    exchange.submit(order(1, BUY, 1355, 1000))
    exchange.submit(order(2, SELL, 1340, 500))
    clock.advance(0)
    assert reports.take() == [("accepted", 1), ("filled", 1, 1000, 1351), ("accepted", 2), ("filled", 2, 500, 1349)]


def test_our_own_orders_cross_at_the_resting_price():
    exchange, clock, _, reports, _ = exchange_on()
    exchange.submit(order(1, SELL, 1350, 300))
    exchange.submit(order(2, BUY, 1351, 500))
    clock.advance(0)
    assert reports.take() == [("accepted", 1), ("accepted", 2), ("filled", 2, 300, 1350), ("filled", 1, 300, 1350)]
    assert len(set(reports.exec_ids)) == 2
    exchange.cancel(2)
    clock.advance(0)
    assert reports.take() == [("cancelled", 2, 200)]


def test_prices_outside_the_daily_limits_are_rejected():
    exchange, clock, _, reports, _ = exchange_on()
    exchange.submit(order(1, BUY, 1486, 100))
    exchange.submit(order(2, SELL, 1214, 100))
    exchange.submit(order(3, BUY, 1485, 100))
    exchange.submit(order(4, BUY, 1215, 100))
    clock.advance(0)
    assert reports.take() == [
        ("rejected", 1, "price_above_limit"),
        ("rejected", 2, "price_below_limit"),
        ("accepted", 3),
        ("accepted", 4),
    ]


def test_unknown_instruments_are_rejected():
    exchange, clock, _, reports, _ = exchange_on()
    exchange.submit(order(1, BUY, 1000, 100, code="999999"))
    exchange.submit(GatewayOrder(2, "600000", "SZSE", BUY, LIMIT, 1350, 100))
    clock.advance(0)
    assert reports.take() == [("rejected", 1, "unknown_instrument"), ("rejected", 2, "unknown_instrument")]


def test_orders_are_refused_when_the_market_is_closed():
    exchange, clock, _, reports, _ = exchange_on(phase=CLOSED)
    exchange.submit(order(1, BUY, 1350, 100))
    clock.advance(0)
    assert reports.take() == [("rejected", 1, "market_closed")]


def test_market_order_takes_what_is_there_and_the_rest_is_cancelled():
    exchange, clock, feed, reports, _ = exchange_on()
    exchange.submit(order(1, SELL, 1352, 200))
    clock.advance(0)
    feed.send(1350, 1350, 1353, 1000, 300)
    reports.take()
    exchange.submit(order(2, BUY, 0, 1000, order_type=MARKET))
    clock.advance(0)
    assert reports.take() == [
        ("accepted", 2),
        ("filled", 2, 200, 1352),
        ("filled", 1, 200, 1352),
        ("filled", 2, 300, 1353),
        ("cancelled", 2, 500),
    ]


def test_auction_rests_orders_and_continuous_trading_uncrosses_them():
    exchange, clock, feed, reports, phases = exchange_on(phase=AUCTION)
    exchange.submit(order(1, BUY, 1352, 300))
    exchange.submit(order(2, SELL, 1350, 100))
    exchange.submit(order(3, BUY, 0, 100, order_type=MARKET))
    clock.advance(0)
    feed.send(1350, 1350, 1351, 1000, 1000)
    assert reports.take() == [("accepted", 1), ("accepted", 2), ("accepted", 3), ("cancelled", 3, 100)]
    phases[0] = CONTINUOUS
    feed.send(1350, 1350, 1351, 1000, 100)
    # One auction price for the crossing pair: 1350 and 1352 both trade 100
    # shares; 1350 is nearer the last trade.  Then the market fills the rest.
    assert reports.take() == [("filled", 1, 100, 1350), ("filled", 2, 100, 1350), ("filled", 1, 100, 1351)]


def test_cancel_reports_what_remained_on_a_later_turn():
    exchange, clock, feed, reports, _ = exchange_on()
    exchange.submit(order(1, BUY, 1351, 1000))
    clock.advance(0)
    feed.send(1350, 1350, 1351, 1000, 300)
    reports.take()
    exchange.cancel(1)
    assert reports.take() == []
    clock.advance(0)
    assert reports.take() == [("cancelled", 1, 700)]


def test_cancelling_an_unknown_or_finished_order_reports_nothing():
    exchange, clock, feed, reports, _ = exchange_on()
    feed.send(1350, 1349, 1351, 1000, 1000)
    exchange.submit(order(1, BUY, 1351, 500))
    clock.advance(0)
    reports.take()
    exchange.cancel(1)
    exchange.cancel(42)
    clock.advance(0)
    assert reports.take() == []


def test_submit_then_cancel_are_carried_out_in_order():
    exchange, clock, _, reports, _ = exchange_on()
    exchange.submit(order(1, BUY, 1349, 500))
    exchange.cancel(1)
    clock.advance(0)
    assert reports.take() == [("accepted", 1), ("cancelled", 1, 500)]


def test_an_order_number_seen_before_is_ignored():
    exchange, clock, _, reports, _ = exchange_on()
    exchange.submit(order(1, BUY, 1349, 500))
    exchange.submit(order(1, BUY, 1349, 500))
    clock.advance(0)
    assert reports.take() == [("accepted", 1)]


def test_fills_against_the_market_come_in_the_instruments_lots():
    exchange, clock, feed, reports, _ = exchange_on()
    exchange.submit(order(1, BUY, 9100, 1000, code="688008"))
    clock.advance(0)
    reports.take()
    feed.send(9050, 9049, 9051, 1000, 700, code="688008")
    assert reports.take() == [("filled", 1, 600, 9051)]


def test_exec_ids_are_unique_within_and_across_runs():
    first, clock, feed, reports, _ = exchange_on()
    for n in range(1, 6):
        first.submit(order(n, BUY, 1351, 200))
    clock.advance(0)
    feed.send(1350, 1350, 1351, 1000, 300)
    feed.send(1350, 1350, 1351, 1000, 5000)
    clock.advance(60)
    second, _, _, later_reports, _ = exchange_on(clock=clock)
    second.submit(order(1, SELL, 1350, 100))
    second.submit(order(2, BUY, 1350, 100))
    clock.advance(0)
    assert len(reports.exec_ids) == 6
    assert not set(reports.exec_ids) & set(later_reports.exec_ids)
    assert len(set(reports.exec_ids + later_reports.exec_ids)) == 8


def test_close_day_cancels_every_resting_order():
    exchange, clock, _, reports, _ = exchange_on()
    exchange.submit(order(1, BUY, 1349, 500))
    exchange.submit(order(2, SELL, 1360, 300))
    exchange.submit(order(3, BUY, 9000, 200, code="688008"))
    clock.advance(0)
    reports.take()
    exchange.close_day()
    assert reports.take() == []
    clock.advance(0)
    assert sorted(reports.take()) == [("cancelled", 1, 500), ("cancelled", 2, 300), ("cancelled", 3, 200)]
    exchange.cancel(1)
    clock.advance(0)
    assert reports.take() == []


def test_the_closing_auction_trades_what_crosses_at_one_price_then_cancels_the_rest():
    exchange, clock, feed, reports, phases = exchange_on(phase=AUCTION)
    exchange.submit(order(1, BUY, 1352, 300))
    exchange.submit(order(2, SELL, 1349, 100))
    clock.advance(0)
    reports.take()
    exchange.close_day()
    clock.advance(0)
    price = reports.take()
    assert price[:2] == [("filled", 1, 100, price[0][3]), ("filled", 2, 100, price[0][3])]
    assert 1349 <= price[0][3] <= 1352
    assert price[2:] == [("cancelled", 1, 200)]


def test_a_failing_listener_does_not_stop_the_exchange():
    exchange, clock, feed, reports, _ = exchange_on()

    def broken(order_no):
        raise RuntimeError("listener bug")

    reports.order_accepted = broken
    exchange.submit(order(1, BUY, 1351, 100))
    clock.advance(0)
    feed.send(1350, 1350, 1351, 1000, 1000)
    assert reports.take() == [("filled", 1, 100, 1351)]


def test_stop_takes_no_more_quotes():
    exchange, clock, feed, reports, _ = exchange_on()
    exchange.submit(order(1, BUY, 1351, 100))
    clock.advance(0)
    reports.take()
    exchange.stop()
    feed.send(1350, 1350, 1351, 1000, 1000)
    assert reports.take() == []
