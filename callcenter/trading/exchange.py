"""
The simulated exchange: an L{ITradingGateway} that keeps an order book per
stock, matches our investors' orders with each other and with the market
that the quotes of an L{IMarketDataFeed} stand for, and reports to the
L{IExecutionListener} as an exchange would.
"""

import itertools
from collections import deque

from twisted.logger import Logger
from zope.interface import implementer

from callcenter.trading.book import Liquidity, OrderBook
from callcenter.trading.instruments import price_limits
from callcenter.trading.interfaces import ITradingGateway
from callcenter.trading.model import BUY, MARKET, SELL

# What the exchange does now, as C{phase_of} tells it.
CONTINUOUS = "continuous"  # orders match
AUCTION = "auction"  # limit orders are taken and rest; nothing matches
CLOSED = "closed"  # orders are refused


def _always_continuous():
    return CONTINUOUS


@implementer(ITradingGateway)
class SimulatedExchange:
    """
    @param clock: IReactorTime; reports go out on a later reactor turn.
    @param feed: the L{IMarketDataFeed} whose quotes are the market.  The
        exchange subscribes at once.
    @param instruments: mapping of code to L{Instrument}.
    @param phase_of: C{() -> str}, L{CONTINUOUS}, L{AUCTION} or L{CLOSED}.

    The market's quote is liquidity once: shares a tick offers and our
    orders take are gone until the next tick.

    Reports are never made from inside L{submit}, L{cancel} or
    L{close_day}, whose callers may be in the middle of changing their own
    state: the requests queue up and are carried out in order on a later
    reactor turn (one C{callLater(0)} for the queue, since the reactor does
    not promise to run same-time calls in the order they were made).
    """

    log = Logger()

    def __init__(self, clock, feed, instruments, phase_of=_always_continuous):
        self._clock = clock
        self._feed = feed
        self._instruments = instruments
        self._phase_of = phase_of
        self._listener = None
        self._books = {}
        self._book_of_order = {}
        self._orders_today = set()
        self._market_used = {}
        self._requests = deque()
        self._turn = None
        # Milliseconds at start-up make exec ids unique across restarts too.
        self._exec_prefix = f"SIM-{int(clock.seconds() * 1000)}-"
        self._exec_numbers = itertools.count(1)
        self._subscription = feed.subscribe(self._tick)

    def stop(self):
        """Stop taking quotes: the exchange is no longer used."""
        self._subscription.cancel()

    def set_listener(self, listener):
        self._listener = listener

    def submit(self, order):
        """
        Take an order.  An order number seen before today is ignored (a
        resubmission after a reconnect must not trade twice).
        """
        self._later(self._submitted, order)

    def cancel(self, order_no):
        """
        Cancel what is unfilled of an order.  Nothing is reported for an
        order that is unknown or already finished: its last report (filled,
        cancelled, rejected) stands.
        """
        self._later(self._cancelled, order_no)

    def close_day(self):
        """At the close: every order still resting is cancelled and reported, and the day is over."""
        self._later(self._closed)

    # -- the queue of requests

    def _later(self, action, *args):
        self._requests.append((action, args))
        if self._turn is None:
            self._turn = self._clock.callLater(0, self._run_requests)

    def _run_requests(self):
        self._turn = None
        while self._requests:
            action, args = self._requests.popleft()
            action(*args)

    # -- requests

    def _submitted(self, order):
        if order.order_no in self._orders_today:
            self.log.warn("order {order_no} submitted again: ignored", order_no=order.order_no)
            return
        self._orders_today.add(order.order_no)
        instrument = self._instruments.get(order.code)
        if instrument is None or instrument.exchange != order.exchange:
            return self._report("order_rejected", order.order_no, "unknown_instrument")
        phase = self._phase_of()
        if phase == CLOSED:
            return self._report("order_rejected", order.order_no, "market_closed")
        if order.order_type != MARKET:
            down, up = price_limits(instrument)
            if order.price_fen > up:
                return self._report("order_rejected", order.order_no, "price_above_limit")
            if order.price_fen < down:
                return self._report("order_rejected", order.order_no, "price_below_limit")
        self._report("order_accepted", order.order_no)
        key = (order.code, order.exchange)
        book = self._books.get(key)
        if book is None:
            book = self._books[key] = OrderBook(instrument.lot_size)
        if phase == AUCTION:
            if order.order_type == MARKET:
                # Nothing to trade with until continuous trading: a market order cannot wait.
                return self._report("order_cancelled", order.order_no, order.quantity)
            book.rest(order.order_no, order.side, order.price_fen, order.quantity)
            self._book_of_order[order.order_no] = book
            return
        tick = self._feed.quote(order.code, order.exchange)
        self._report_trades(book, book.uncross(self._reference(instrument, tick)))
        market = self._market_side(tick, BUY if order.side == SELL else SELL)
        result = book.add(order.order_no, order.side, order.price_fen, order.quantity,
                          market_order=order.order_type == MARKET, market=market)
        if result.market_used:
            self._use_market(tick, order.side, result.market_used)
        if result.resting:
            self._book_of_order[order.order_no] = book
        self._report_trades(book, result.trades)
        if result.cancelled:
            self._report("order_cancelled", order.order_no, result.cancelled)

    @staticmethod
    def _reference(instrument, tick):
        return tick.last_fen if tick is not None else instrument.prev_close_fen

    def _cancelled(self, order_no):
        book = self._book_of_order.pop(order_no, None)
        if book is None:
            return
        self._report("order_cancelled", order_no, book.cancel(order_no))

    def _closed(self):
        books, self._books = self._books, {}
        self._book_of_order.clear()
        self._orders_today.clear()
        self._market_used.clear()
        for (code, exchange), book in books.items():
            # The closing call auction: what crosses trades at one price, the rest is cancelled.
            tick = self._feed.quote(code, exchange)
            instrument = self._instruments.get(code)
            reference = tick.last_fen if tick is not None else instrument.prev_close_fen if instrument else None
            self._report_trades(book, book.uncross(reference))
            for order_no, remaining in book.cancel_all():
                self._report("order_cancelled", order_no, remaining)

    # -- the market

    def _tick(self, tick):
        book = self._books.get((tick.code, tick.exchange))
        if not book or self._phase_of() != CONTINUOUS:
            return
        self._report_trades(book, book.uncross(tick.last_fen))
        for side in (BUY, SELL):
            market = self._market_side(tick, SELL if side == BUY else BUY)
            if market is None:
                continue
            trades = book.match_market(side, market)
            if trades:
                self._use_market(tick, side, sum(trade.quantity for trade in trades))
                self._report_trades(book, trades)

    def _market_side(self, tick, market_side):
        """What is left of the quote's ask (C{market_side} SELL) or bid (BUY) for our orders, or None."""
        if tick is None:
            return None
        used_by_buys, used_by_sells = self._used(tick)
        if market_side == SELL:
            left = tick.ask_size - used_by_buys
            return Liquidity(tick.ask_fen, left) if left > 0 else None
        left = tick.bid_size - used_by_sells
        return Liquidity(tick.bid_fen, left) if left > 0 else None

    def _used(self, tick):
        used = self._market_used.get((tick.code, tick.exchange))
        if used is None or used[0] is not tick:
            return 0, 0
        return used[1], used[2]

    def _use_market(self, tick, our_side, quantity):
        used_by_buys, used_by_sells = self._used(tick)
        if our_side == BUY:
            used_by_buys += quantity
        else:
            used_by_sells += quantity
        self._market_used[(tick.code, tick.exchange)] = (tick, used_by_buys, used_by_sells)

    # -- reports

    def _report_trades(self, book, trades):
        for trade in trades:
            for order_no in (trade.buy_order_no, trade.sell_order_no):
                if order_no is None:
                    continue
                if not book.resting(order_no):
                    self._book_of_order.pop(order_no, None)
                exec_id = f"{self._exec_prefix}{next(self._exec_numbers)}"
                self._report("order_filled", order_no, exec_id, trade.quantity, trade.price_fen)

    def _report(self, method, *args):
        if self._listener is None:
            self.log.warn("no execution listener: {method}{args} dropped", method=method, args=args)
            return
        try:
            getattr(self._listener, method)(*args)
        except Exception:
            self.log.failure("execution listener failed on {method}{args}", method=method, args=args)
