"""
The limit order book of one stock in the simulated exchange: price-time
priority, trades at the resting order's price.

Besides our investors' orders, which can trade with each other, the book
trades against the simulated market's displayed quantity (L{Liquidity}, from
a quote): a resting buy at or above the market's ask buys at the ask, a
resting sell at or below the bid sells at the bid, and an incoming order
takes the quote where it is the better price.  Against the market, partial
fills are whole board lots, as real ones are; between our own orders any
quantity trades, since both sides are ours.

Market orders follow the SSE/SZSE "best five levels, immediate or cancel"
type (最优五档即时成交剩余撤销): they trade at up to five price levels of the
other side and whatever is left is cancelled, never rested.
"""

from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass

from callcenter.trading.model import BUY, SELL

MARKET_ORDER_LEVELS = 5


@dataclass(frozen=True)
class Trade:
    """One execution; the side that was the simulated market, not one of our orders, is None."""

    buy_order_no: int | None
    sell_order_no: int | None
    quantity: int
    price_fen: int


@dataclass(frozen=True)
class Liquidity:
    """What the market shows on one side of a quote: C{size} shares at C{price_fen}."""

    price_fen: int
    size: int


@dataclass(frozen=True)
class AddResult:
    """
    What became of an incoming order: its C{trades}, the shares left
    C{resting} on the book, the shares of a market order C{cancelled} for
    want of liquidity, and the shares it took from the market's quote
    (C{market_used}).
    """

    trades: list
    resting: int
    cancelled: int
    market_used: int


class _Order:
    __slots__ = ("order_no", "side", "price_fen", "remaining", "sequence")

    def __init__(self, order_no, side, price_fen, remaining, sequence):
        self.order_no = order_no
        self.side = side
        self.price_fen = price_fen
        self.remaining = remaining
        self.sequence = sequence


class _Level:
    """The orders at one price, oldest first, and their live shares."""

    __slots__ = ("orders", "quantity")

    def __init__(self):
        self.orders = deque()
        self.quantity = 0


class _Side:
    """
    One side's price levels.  The sorted list of keys holds the best price
    last (key = price for bids, -price for asks), so taking the best level
    off is a pop() from the end; adding a new level is a bisect insert into
    a list of levels, which stays short (tens) for one stock.
    """

    def __init__(self, side):
        self._sign = 1 if side == BUY else -1
        self._keys = []
        self.levels = {}

    def best_price(self):
        return self._sign * self._keys[-1] if self._keys else None

    def level_for_adding(self, price_fen):
        level = self.levels.get(price_fen)
        if level is None:
            level = self.levels[price_fen] = _Level()
            insort(self._keys, self._sign * price_fen)
        return level

    def drop_level(self, price_fen):
        del self.levels[price_fen]
        key = self._sign * price_fen
        if self._keys[-1] == key:
            self._keys.pop()
        else:
            del self._keys[bisect_left(self._keys, key)]


def _reaches(side, limit_fen, price_fen):
    """Whether an order on C{side} with limit C{limit_fen} may trade at C{price_fen}."""
    return price_fen <= limit_fen if side == BUY else price_fen >= limit_fen


class OrderBook:
    """
    Resting orders of one stock.  C{lot_size} is the instrument's board lot,
    the unit of fills against the market.

    Cancelling is O(1) apart from the level bookkeeping: the cancelled order
    is marked dead (remaining 0) and the level's live quantity goes down,
    rather than being searched for and removed from the middle of its
    level's queue.  Dead orders are dropped when matching reaches them, or
    all at once with their level when its last live share goes.
    """

    def __init__(self, lot_size=100):
        self.lot_size = lot_size
        self._sides = {BUY: _Side(BUY), SELL: _Side(SELL)}
        self._orders = {}
        self._sequence = 0

    def __len__(self):
        """How many orders rest."""
        return len(self._orders)

    @property
    def best_bid(self):
        return self._sides[BUY].best_price()

    @property
    def best_ask(self):
        return self._sides[SELL].best_price()

    def resting(self, order_no):
        """The shares of an order still on the book (0 when it is not)."""
        order = self._orders.get(order_no)
        return order.remaining if order is not None else 0

    def add(self, order_no, side, price_fen, quantity, market_order=False, market=None):
        """
        Match an incoming order, then rest what is left of a limit order
        (a market order's rest is cancelled).

        @param market: the L{Liquidity} the market shows on the other side
            (the ask for a buy), or None.  At an equal price the market's
            quantity trades first: it was at the exchange before our resting orders.
        @return: an L{AddResult}.
        """
        if order_no in self._orders:
            raise ValueError(f"order {order_no} is already on the book")
        opposite = self._sides[SELL if side == BUY else BUY]
        trades = []
        remaining = quantity
        market_left = market.size if market is not None else 0
        market_used = 0
        levels_left = MARKET_ORDER_LEVELS
        last_price = None
        while remaining:
            if market_left and self._lots(remaining, market_left) == 0:
                market_left = 0  # less than a lot shown: only the book can fill the rest
            book_price = opposite.best_price()
            use_market = market_left > 0 and (
                book_price is None or _reaches(side, book_price, market.price_fen)
            )
            price = market.price_fen if use_market else book_price
            if price is None or not (market_order or _reaches(side, price_fen, price)):
                break
            if market_order and price != last_price:
                if levels_left == 0:
                    break
                levels_left -= 1
            last_price = price
            if use_market:
                take = self._lots(remaining, market_left)
                market_left -= take
                market_used += take
                remaining -= take
                trades.append(_trade(side, order_no, None, take, price))
            else:
                remaining = self._take_level(opposite, price, side, order_no, remaining, trades)
        if market_order:
            return AddResult(trades, 0, remaining, market_used)
        if remaining:
            self.rest(order_no, side, price_fen, remaining)
        return AddResult(trades, remaining, 0, market_used)

    def rest(self, order_no, side, price_fen, quantity):
        """Put an order on the book without matching it (during a call auction)."""
        if order_no in self._orders:
            raise ValueError(f"order {order_no} is already on the book")
        self._sequence += 1
        order = _Order(order_no, side, price_fen, quantity, self._sequence)
        level = self._sides[side].level_for_adding(price_fen)
        level.orders.append(order)
        level.quantity += quantity
        self._orders[order_no] = order

    def cancel(self, order_no):
        """Take an order off the book; returns its unfilled shares, or None if it is not on the book."""
        order = self._orders.pop(order_no, None)
        if order is None:
            return None
        remaining, order.remaining = order.remaining, 0
        book_side = self._sides[order.side]
        level = book_side.levels[order.price_fen]
        level.quantity -= remaining
        if level.quantity == 0:
            book_side.drop_level(order.price_fen)
        return remaining

    def cancel_all(self):
        """Empty the book; returns (order_no, unfilled shares) of each order, oldest first."""
        cancelled = [(order.order_no, order.remaining) for order in self._orders.values()]
        self._orders.clear()
        self._sides = {BUY: _Side(BUY), SELL: _Side(SELL)}
        return cancelled

    def match_market(self, side, market):
        """
        Fill resting orders of C{side} that reach the market's quote on the
        other side (resting buys against its ask, sells against its bid), at
        the quote's price, best price first and oldest first, up to its
        size in whole lots.  The first order in priority that cannot take a
        lot blocks those behind it, as time priority demands.

        @return: the L{Trade}s.
        """
        book_side = self._sides[side]
        trades = []
        left = market.size
        while left:
            price = book_side.best_price()
            if price is None or not _reaches(side, price, market.price_fen):
                break
            level = book_side.levels[price]
            orders = level.orders
            while left and orders:
                order = orders[0]
                if order.remaining == 0:
                    orders.popleft()  # cancelled earlier
                    continue
                take = self._lots(order.remaining, left)
                if take == 0:
                    return trades
                left -= take
                self._fill(level, order, take)
                trades.append(_trade(side, order.order_no, None, take, market.price_fen))
            if level.quantity == 0:
                book_side.drop_level(price)
        return trades

    def auction_price(self, reference_fen=None):
        """
        The call auction's one price for every trade, as the exchanges set
        it: the price that trades the most shares; among those, the one
        leaving the smallest surplus on one side; among those, the one
        nearest C{reference_fen} (the previous close or last trade).  None
        when nothing crosses.
        """
        bids, asks = self._sides[BUY], self._sides[SELL]
        bid_price, ask_price = bids.best_price(), asks.best_price()
        if bid_price is None or ask_price is None or bid_price < ask_price:
            return None
        candidates = sorted(
            price for price in {*bids.levels, *asks.levels} if ask_price <= price <= bid_price
        )
        best_key, best_price = None, None
        for price in candidates:
            demand = sum(level.quantity for p, level in bids.levels.items() if p >= price)
            supply = sum(level.quantity for p, level in asks.levels.items() if p <= price)
            nearness = abs(price - reference_fen) if reference_fen is not None else 0
            key = (-min(demand, supply), abs(demand - supply), nearness)
            if best_key is None or key < best_key:
                best_key, best_price = key, price
        return best_price

    def uncross(self, reference_fen=None):
        """
        Trade our own orders that cross after a call auction, during which
        they rested without matching: all at the L{auction_price}, best bid
        against best ask in price-time priority.

        @return: the L{Trade}s.
        """
        price = self.auction_price(reference_fen)
        bids, asks = self._sides[BUY], self._sides[SELL]
        trades = []
        while price is not None:
            bid_price, ask_price = bids.best_price(), asks.best_price()
            if bid_price is None or ask_price is None or bid_price < price or ask_price > price:
                return trades
            bid_level, ask_level = bids.levels[bid_price], asks.levels[ask_price]
            buy, sell = _head(bid_level), _head(ask_level)
            take = min(buy.remaining, sell.remaining)
            self._fill(bid_level, buy, take)
            self._fill(ask_level, sell, take)
            trades.append(Trade(buy.order_no, sell.order_no, take, price))
            if bid_level.quantity == 0:
                bids.drop_level(bid_price)
            if ask_level.quantity == 0:
                asks.drop_level(ask_price)
        return trades

    def _take_level(self, book_side, price, side, order_no, remaining, trades):
        level = book_side.levels[price]
        orders = level.orders
        while remaining and orders:
            resting = orders[0]
            if resting.remaining == 0:
                orders.popleft()  # cancelled earlier
                continue
            take = min(remaining, resting.remaining)
            remaining -= take
            self._fill(level, resting, take)
            trades.append(_trade(side, order_no, resting.order_no, take, price))
        if level.quantity == 0:
            book_side.drop_level(price)
        return remaining

    def _fill(self, level, order, quantity):
        order.remaining -= quantity
        level.quantity -= quantity
        if order.remaining == 0:
            level.orders.popleft()
            del self._orders[order.order_no]

    def _lots(self, wanted, available):
        """
        How much of C{wanted} the market's C{available} shares fill: all of
        it if they suffice (an odd-lot remainder of a sell can only go in
        one piece), else the whole lots of what is available.
        """
        if wanted <= available:
            return wanted
        return available - available % self.lot_size


def _head(level):
    """The oldest live order of a level (dead ones before it are dropped)."""
    orders = level.orders
    while orders[0].remaining == 0:
        orders.popleft()
    return orders[0]


def _trade(side, order_no, other_order_no, quantity, price_fen):
    if side == BUY:
        return Trade(order_no, other_order_no, quantity, price_fen)
    return Trade(other_order_no, order_no, quantity, price_fen)
