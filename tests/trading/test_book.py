"""The order book: price-time priority, partial fills, cancels, market orders (best five levels, IOC), quotes."""

import pytest

from callcenter.trading.book import Liquidity, OrderBook, Trade
from callcenter.trading.model import BUY, SELL


def test_orders_that_do_not_cross_rest():
    book = OrderBook()
    assert book.add(1, BUY, 1349, 500).trades == []
    assert book.add(2, SELL, 1351, 300).trades == []
    assert (book.best_bid, book.best_ask) == (1349, 1351)
    assert (book.resting(1), book.resting(2), len(book)) == (500, 300, 2)


def test_best_price_first_then_oldest_first():
    book = OrderBook()
    book.add(1, SELL, 1352, 100)
    book.add(2, SELL, 1351, 100)
    book.add(3, SELL, 1351, 100)
    book.add(4, SELL, 1350, 100)
    result = book.add(5, BUY, 1351, 300)
    assert result.trades == [Trade(5, 4, 100, 1350), Trade(5, 2, 100, 1351), Trade(5, 3, 100, 1351)]
    assert result.resting == 0
    assert book.best_ask == 1352


def test_trades_at_the_resting_orders_price():
    book = OrderBook()
    book.add(1, BUY, 1355, 200)
    result = book.add(2, SELL, 1340, 200)
    assert result.trades == [Trade(1, 2, 200, 1355)]


def test_partial_fill_leaves_the_rest_of_the_resting_order_first_in_line():
    book = OrderBook()
    book.add(1, SELL, 1350, 500)
    book.add(2, SELL, 1350, 500)
    assert book.add(3, BUY, 1350, 200).trades == [Trade(3, 1, 200, 1350)]
    assert book.resting(1) == 300
    assert book.add(4, BUY, 1350, 400).trades == [Trade(4, 1, 300, 1350), Trade(4, 2, 100, 1350)]


def test_incoming_remainder_rests_at_its_limit():
    book = OrderBook()
    book.add(1, SELL, 1350, 100)
    result = book.add(2, BUY, 1351, 300)
    assert result.trades == [Trade(2, 1, 100, 1350)]
    assert result.resting == 200
    assert (book.best_bid, book.best_ask) == (1351, None)


def test_cancel_returns_the_unfilled_quantity():
    book = OrderBook()
    book.add(1, SELL, 1350, 500)
    book.add(2, BUY, 1350, 200)
    assert book.cancel(1) == 300
    assert book.cancel(1) is None
    assert book.cancel(99) is None
    assert book.best_ask is None
    assert len(book) == 0


def test_cancelled_order_loses_its_place_and_is_never_matched():
    book = OrderBook()
    book.add(1, SELL, 1350, 100)
    book.add(2, SELL, 1350, 100)
    book.add(3, SELL, 1350, 100)
    book.cancel(2)
    assert book.add(4, BUY, 1350, 300).trades == [Trade(4, 1, 100, 1350), Trade(4, 3, 100, 1350)]
    assert book.best_ask is None


def test_level_goes_when_its_last_order_is_cancelled():
    book = OrderBook()
    book.add(1, BUY, 1349, 100)
    book.add(2, BUY, 1348, 100)
    book.cancel(1)
    assert book.best_bid == 1348
    book.add(3, SELL, 1348, 100)
    assert book.best_bid is None


def test_same_order_number_twice_is_an_error():
    book = OrderBook()
    book.add(1, BUY, 1349, 100)
    with pytest.raises(ValueError):
        book.add(1, BUY, 1349, 100)


def test_market_order_takes_at_most_five_levels_and_cancels_the_rest():
    book = OrderBook()
    for order_no, price in enumerate((1350, 1351, 1352, 1353, 1354, 1355), start=1):
        book.add(order_no, SELL, price, 100)
    result = book.add(10, BUY, 0, 800, market_order=True)
    assert [trade.price_fen for trade in result.trades] == [1350, 1351, 1352, 1353, 1354]
    assert (result.resting, result.cancelled) == (0, 300)
    assert book.best_ask == 1355
    assert book.resting(10) == 0


def test_market_order_with_nothing_to_meet_is_all_cancelled():
    result = OrderBook().add(1, SELL, 0, 500, market_order=True)
    assert (result.trades, result.cancelled) == ([], 500)


def test_incoming_order_takes_the_market_quote_in_lots():
    book = OrderBook()
    result = book.add(1, BUY, 1352, 1000, market=Liquidity(1351, 650))
    assert result.trades == [Trade(1, None, 600, 1351)]
    assert result.market_used == 600
    assert book.resting(1) == 400


def test_better_of_book_and_market_first_and_market_first_at_a_tie():
    book = OrderBook()
    book.add(1, SELL, 1350, 100)
    book.add(2, SELL, 1351, 100)
    book.add(3, SELL, 1352, 100)
    result = book.add(4, BUY, 1352, 600, market=Liquidity(1351, 200))
    assert result.trades == [
        Trade(4, 1, 100, 1350),
        Trade(4, None, 200, 1351),
        Trade(4, 2, 100, 1351),
        Trade(4, 3, 100, 1352),
    ]
    assert book.resting(4) == 100


def test_market_quote_beyond_the_limit_is_not_taken():
    book = OrderBook()
    result = book.add(1, SELL, 1352, 300, market=Liquidity(1351, 1000))
    assert result.trades == []
    assert book.resting(1) == 300


def test_partial_fills_against_the_market_are_whole_lots_and_an_odd_lot_goes_in_one_piece():
    book = OrderBook()
    assert book.add(1, SELL, 1350, 250, market=Liquidity(1350, 180)).trades == [Trade(None, 1, 100, 1350)]
    assert book.match_market(SELL, Liquidity(1350, 120)) == [Trade(None, 1, 100, 1350)]
    assert book.match_market(SELL, Liquidity(1350, 100)) == [Trade(None, 1, 50, 1350)]
    assert len(book) == 0


def test_resting_orders_fill_against_a_quote_at_its_price_best_first():
    book = OrderBook()
    book.add(1, BUY, 1350, 300)
    book.add(2, BUY, 1352, 200)
    book.add(3, BUY, 1349, 100)
    trades = book.match_market(BUY, Liquidity(1350, 400))
    assert trades == [Trade(2, None, 200, 1350), Trade(1, None, 200, 1350)]
    assert (book.resting(1), book.resting(3)) == (100, 100)


def test_quote_fills_resting_sells_at_the_bid():
    book = OrderBook()
    book.add(1, SELL, 1348, 500)
    book.add(2, SELL, 1351, 500)
    assert book.match_market(SELL, Liquidity(1349, 300)) == [Trade(None, 1, 300, 1349)]


def test_first_order_that_cannot_take_a_lot_blocks_those_behind_it():
    book = OrderBook(lot_size=200)  # STAR board
    book.add(1, BUY, 9050, 400)
    book.add(2, BUY, 9050, 200)
    assert book.match_market(BUY, Liquidity(9050, 300)) == [Trade(1, None, 200, 9050)]
    assert book.resting(2) == 200


def test_uncross_after_an_auction_trades_everything_at_one_price():
    book = OrderBook()
    book.rest(1, BUY, 1352, 300)
    book.rest(2, SELL, 1349, 100)
    book.rest(3, SELL, 1351, 500)
    # 1351 and 1352 both trade 300 shares with 300 left over; 1349 trades 100.
    # The reference (1350) is nearer 1351.
    assert book.auction_price(1350) == 1351
    assert book.uncross(1350) == [Trade(1, 2, 100, 1351), Trade(1, 3, 200, 1351)]
    assert (book.best_bid, book.best_ask) == (None, 1351)
    assert book.uncross(1350) == []


def test_the_auction_price_trades_the_most_shares():
    book = OrderBook()
    book.rest(1, BUY, 1005, 200)
    book.rest(2, SELL, 1000, 200)
    book.rest(3, BUY, 1003, 100)
    book.rest(4, SELL, 1003, 100)
    # 1000 trades 200, 1003 trades 300, 1005 trades 200.
    assert book.auction_price(1000) == 1003


@pytest.mark.parametrize("reference, price", [(1001, 1000), (1004, 1005), (1100, 1005)])
def test_between_equal_prices_the_nearest_to_the_reference_wins(reference, price):
    book = OrderBook()
    book.rest(1, BUY, 1005, 100)
    book.rest(2, SELL, 1000, 100)
    assert book.auction_price(reference) == price


def test_the_auction_price_leaves_the_smaller_surplus():
    book = OrderBook()
    book.rest(1, BUY, 1010, 500)
    book.rest(2, SELL, 1000, 300)
    book.rest(3, SELL, 1010, 300)
    # At 1000: demand 500, supply 300 -> 300.  At 1010: 500 vs 600 -> 500.
    assert book.auction_price(1000) == 1010
    assert sum(trade.quantity for trade in book.uncross(1000)) == 500


def test_cancel_all_empties_the_book_oldest_first():
    book = OrderBook()
    book.add(1, BUY, 1349, 300)
    book.add(2, SELL, 1351, 200)
    book.add(3, BUY, 1351, 100)
    assert book.cancel_all() == [(1, 300), (2, 100)]
    assert (len(book), book.best_bid, book.best_ask) == (0, None, None)
