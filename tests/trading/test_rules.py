"""The A-share order rules (L{callcenter.trading.rules}), one table per rule."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter.trading.calendar import Phase
from callcenter.trading.instruments import Instrument, price_limits
from callcenter.trading.model import BUY, LIMIT, MARKET, SELL
from callcenter.trading.reasons import TradingRefused
from callcenter.trading.rules import (
    board_of,
    check_cancel,
    check_instrument,
    check_order,
    check_price,
    check_quantity,
    check_session,
    exchange_of,
    parse_price,
)

# Previous close 10.05 CNY on each board: 10% gives 11.055 and 9.045, both
# rounded half up.
MAIN = Instrument("600000", "SSE", "浦发银行", "SPD Bank", "main", 1005)
SZSE_MAIN = Instrument("000001", "SZSE", "平安银行", "Ping An Bank", "main", 1005)
ST = Instrument("600365", "SSE", "ST通葡", "Tonghua Grape Wine", "main", 1005, is_st=True)
CHINEXT = Instrument("300750", "SZSE", "宁德时代", "CATL", "chinext", 1005)
CHINEXT_ST = Instrument("300001", "SZSE", "ST特锐德", "made-up ST stock", "chinext", 1005, is_st=True)
STAR = Instrument("688981", "SSE", "中芯国际", "SMIC", "star", 1005, lot_size=200)
ETF = Instrument("510300", "SSE", "沪深300ETF", "CSI 300 ETF", "etf", 462)


def refused(call, *args, **kwargs):
    """The reason code C{call} is refused with, or None if it passes."""
    try:
        call(*args, **kwargs)
    except TradingRefused as refusal:
        return refusal.reason.code
    return None


# -- codes


@pytest.mark.parametrize(
    "code, exchange, board",
    [
        ("600000", "SSE", "main"),
        ("601318", "SSE", "main"),
        ("603259", "SSE", "main"),
        ("605499", "SSE", "main"),
        ("688981", "SSE", "star"),
        ("689009", "SSE", "star"),
        ("000001", "SZSE", "main"),
        ("001979", "SZSE", "main"),
        ("002594", "SZSE", "main"),
        ("003816", "SZSE", "main"),
        ("300750", "SZSE", "chinext"),
        ("301269", "SZSE", "chinext"),
    ],
)
def test_code_gives_exchange_and_board(code, exchange, board):
    assert exchange_of(code) == exchange
    assert board_of(code) == board


@pytest.mark.parametrize(
    "code",
    [
        "60000",  # five digits
        "6000000",
        "",
        "60000A",
        "６００００0",  # full-width digits
        " 600000",
        600000,  # a number, not the code as text
        None,
        "602000",  # no such SSE prefix
        "604000",
        "510300",  # ETFs and funds
        "159915",
        "900901",  # B shares
        "200002",
        "830799",  # Beijing Stock Exchange
        "004000",
        "302132",
    ],
)
def test_bad_codes(code):
    assert refused(board_of, code) == "bad_code"
    assert refused(exchange_of, code) == "bad_code"


@pytest.mark.parametrize(
    "instrument, code",
    [
        (MAIN, None),
        (SZSE_MAIN, None),
        (CHINEXT, None),
        (STAR, None),
        (ETF, "instrument_not_supported"),
        (Instrument("159915", "SZSE", "创业板ETF", "ChiNext ETF", "etf", 285), "instrument_not_supported"),
        (Instrument("600000", "SZSE", "浦发银行", "SPD Bank", "main", 1005), "bad_code"),
        (Instrument("600000", "SSE", "浦发银行", "SPD Bank", "star", 1005), "bad_code"),
        (Instrument("300750", "SZSE", "宁德时代", "CATL", "main", 1005), "bad_code"),
        (Instrument("12345", "SSE", "?", "?", "main", 1005), "bad_code"),
    ],
)
def test_check_instrument(instrument, code):
    assert refused(check_instrument, instrument) == code


# -- price limits


@pytest.mark.parametrize(
    "prev_close_fen, board, is_st, down_fen, up_fen",
    [
        (1005, "main", False, 905, 1106),  # 9.045 and 11.055 round half up
        (1000, "main", False, 900, 1100),
        (1005, "main", True, 955, 1055),  # ST: 5%, 9.5475 and 10.5525
        (435, "main", True, 413, 457),  # 4.1325 and 4.5675
        (1005, "chinext", False, 804, 1206),  # 20%
        (1005, "chinext", True, 804, 1206),  # ST on ChiNext is still 20%
        (1005, "star", False, 804, 1206),
        (1003, "star", False, 802, 1204),  # 8.024 and 12.036
        (145000, "main", False, 130500, 159500),
        (1, "main", False, 1, 1),  # 0.009 and 0.011: a 1-fen stock cannot move
        (5, "main", False, 5, 6),  # 0.045 -> 0.05 and 0.055 -> 0.06
    ],
)
def test_price_limits(prev_close_fen, board, is_st, down_fen, up_fen):
    code = {"main": "600000", "chinext": "300750", "star": "688981"}[board]
    exchange = "SZSE" if board == "chinext" else "SSE"
    instrument = Instrument(code, exchange, "x", "x", board, prev_close_fen, is_st)
    assert price_limits(instrument) == (down_fen, up_fen)


@pytest.mark.parametrize(
    "instrument, price_fen, code",
    [
        (MAIN, 1106, None),
        (MAIN, 1107, "price_above_limit"),
        (MAIN, 905, None),
        (MAIN, 904, "price_below_limit"),
        (MAIN, 1005, None),
        (ST, 1055, None),
        (ST, 1056, "price_above_limit"),
        (ST, 955, None),
        (ST, 954, "price_below_limit"),
        (CHINEXT, 1206, None),
        (CHINEXT, 1207, "price_above_limit"),
        (CHINEXT, 804, None),
        (CHINEXT, 803, "price_below_limit"),
        (CHINEXT_ST, 1206, None),
        (STAR, 1206, None),
        (STAR, 1207, "price_above_limit"),
        (STAR, 803, "price_below_limit"),
        (MAIN, 0, "bad_price"),
        (MAIN, -1005, "bad_price"),
        (MAIN, 10.05, "bad_price"),  # a float is never a price
        (MAIN, 1005.0, "bad_price"),
        (MAIN, True, "bad_price"),
        (MAIN, None, "bad_price"),
        (MAIN, "1005", "bad_price"),
    ],
)
def test_check_price(instrument, price_fen, code):
    assert refused(check_price, instrument, price_fen) == code


def test_price_refusals_carry_the_limit():
    with pytest.raises(TradingRefused) as raised:
        check_price(MAIN, 1107)
    assert raised.value.values == {"limit_fen": 1106}
    with pytest.raises(TradingRefused) as raised:
        check_price(MAIN, 904)
    assert raised.value.values == {"limit_fen": 905}


@given(
    st.integers(1, 10**7),
    st.sampled_from([("main", False, 10), ("main", True, 5), ("chinext", False, 20), ("chinext", True, 20),
                     ("star", False, 20), ("star", True, 20)]),
)
def test_limits_are_the_band_rounded_half_up_and_bound_the_prices(prev_close_fen, board_rule):
    board, is_st, percent = board_rule
    code = {"main": "600000", "chinext": "300750", "star": "688981"}[board]
    exchange = "SZSE" if board == "chinext" else "SSE"
    instrument = Instrument(code, exchange, "x", "x", board, prev_close_fen, is_st)
    down, up = price_limits(instrument)
    assert isinstance(down, int) and isinstance(up, int)
    assert 0 < down <= prev_close_fen <= up
    # Within half a fen of the exact band edge, a half going up: in hundredths of a fen.
    exact_up, exact_down = prev_close_fen * (100 + percent), prev_close_fen * (100 - percent)
    assert -50 < up * 100 - exact_up <= 50
    assert -50 < down * 100 - exact_down <= 50
    assert refused(check_price, instrument, up) is None
    assert refused(check_price, instrument, down) is None
    assert refused(check_price, instrument, up + 1) == "price_above_limit"
    assert refused(check_price, instrument, down - 1) in ("price_below_limit", "bad_price")


# -- quantities


@pytest.mark.parametrize(
    "instrument, side, quantity, sellable, code",
    [
        # Main board and ChiNext buys: round lots of 100.
        (MAIN, BUY, 100, None, None),
        (MAIN, BUY, 1_000_000, None, None),
        (MAIN, BUY, 99, None, "lot_size"),
        (MAIN, BUY, 150, None, "lot_size"),
        (MAIN, BUY, 1, None, "lot_size"),
        (CHINEXT, BUY, 300, None, None),
        (CHINEXT, BUY, 250, None, "lot_size"),
        (SZSE_MAIN, BUY, 101, None, "lot_size"),
        # Sells: round lots, or an odd lot that clears the holding.
        (MAIN, SELL, 100, 1000, None),
        (MAIN, SELL, 1000, 1000, None),
        (MAIN, SELL, 50, 50, None),
        (MAIN, SELL, 250, 250, None),
        (MAIN, SELL, 50, 250, "odd_lot_sell"),
        (MAIN, SELL, 150, 250, "odd_lot_sell"),
        (MAIN, SELL, 50, 49, "odd_lot_sell"),
        (MAIN, SELL, 50, None, "odd_lot_sell"),
        (MAIN, SELL, 200, None, None),
        (CHINEXT, SELL, 37, 37, None),
        (CHINEXT, SELL, 37, 137, "odd_lot_sell"),
        # STAR buys: 200 or more, then any number.
        (STAR, BUY, 200, None, None),
        (STAR, BUY, 201, None, None),
        (STAR, BUY, 999, None, None),
        (STAR, BUY, 199, None, "star_minimum_quantity"),
        (STAR, BUY, 100, None, "star_minimum_quantity"),
        (STAR, BUY, 1, None, "star_minimum_quantity"),
        # STAR sells under 200: only all that is held.
        (STAR, SELL, 201, 1000, None),
        (STAR, SELL, 150, 150, None),
        (STAR, SELL, 150, 350, "odd_lot_sell"),
        (STAR, SELL, 199, None, "odd_lot_sell"),
        # Not a number of shares.
        (MAIN, BUY, 0, None, "bad_quantity"),
        (MAIN, SELL, 0, 0, "bad_quantity"),
        (MAIN, BUY, -100, None, "bad_quantity"),
        (MAIN, BUY, 100.0, None, "bad_quantity"),
        (MAIN, BUY, True, None, "bad_quantity"),
        (MAIN, BUY, None, None, "bad_quantity"),
        (MAIN, BUY, "100", None, "bad_quantity"),
    ],
)
def test_check_quantity(instrument, side, quantity, sellable, code):
    assert refused(check_quantity, instrument, side, LIMIT, quantity, sellable) == code


@pytest.mark.parametrize(
    "instrument, order_type, largest",
    [
        (MAIN, LIMIT, 1_000_000),
        (MAIN, MARKET, 1_000_000),
        (SZSE_MAIN, LIMIT, 1_000_000),
        (CHINEXT, LIMIT, 300_000),
        (CHINEXT, MARKET, 150_000),
        (STAR, LIMIT, 100_000),
        (STAR, MARKET, 50_000),
    ],
)
def test_largest_order(instrument, order_type, largest):
    assert refused(check_quantity, instrument, BUY, order_type, largest) is None
    step = 1 if instrument.board == "star" else 100
    assert refused(check_quantity, instrument, BUY, order_type, largest + step) == "quantity_too_large"
    # Even to clear a holding.
    clearing = largest + 1
    assert refused(check_quantity, instrument, SELL, order_type, clearing, clearing) == "quantity_too_large"


# -- sessions


@pytest.mark.parametrize(
    "phase, limit_code, market_code",
    [
        (Phase.PRE_OPEN, "market_closed", "market_closed"),
        (Phase.OPENING_AUCTION, None, "market_orders_not_allowed_now"),
        (Phase.OPENING_AUCTION_LOCKED, None, "market_orders_not_allowed_now"),
        (Phase.PRE_CONTINUOUS, None, "market_orders_not_allowed_now"),
        (Phase.CONTINUOUS, None, None),
        (Phase.LUNCH_BREAK, "market_closed", "market_closed"),
        (Phase.CLOSING_AUCTION, None, "market_orders_not_allowed_now"),
        (Phase.CLOSED, "market_closed", "market_closed"),
    ],
)
def test_check_session(phase, limit_code, market_code):
    assert refused(check_session, phase, LIMIT) == limit_code
    assert refused(check_session, phase, MARKET) == market_code
    assert refused(check_order, MAIN, BUY, LIMIT, 1005, 100, phase) == limit_code
    assert refused(check_order, MAIN, BUY, MARKET, None, 100, phase) == market_code


@pytest.mark.parametrize(
    "phase, code",
    [
        (Phase.PRE_OPEN, None),
        (Phase.OPENING_AUCTION, None),
        (Phase.OPENING_AUCTION_LOCKED, "cancel_not_allowed"),
        (Phase.PRE_CONTINUOUS, None),
        (Phase.CONTINUOUS, None),
        (Phase.LUNCH_BREAK, None),
        (Phase.CLOSING_AUCTION, "cancel_not_allowed"),
        (Phase.CLOSED, None),
    ],
)
def test_check_cancel(phase, code):
    assert refused(check_cancel, phase) == code


# -- the whole order


@pytest.mark.parametrize(
    "instrument, side, order_type, price_fen, quantity, phase, sellable, code",
    [
        (MAIN, BUY, LIMIT, 1005, 100, Phase.CONTINUOUS, None, None),
        (MAIN, SELL, LIMIT, 1106, 250, Phase.CLOSING_AUCTION, 250, None),
        (STAR, BUY, LIMIT, 1206, 201, Phase.OPENING_AUCTION, None, None),
        # A market order's price is not looked at; its size is.
        (CHINEXT, BUY, MARKET, None, 150_000, Phase.CONTINUOUS, None, None),
        (CHINEXT, BUY, MARKET, 99999, 150_100, Phase.CONTINUOUS, None, "quantity_too_large"),
        (STAR, SELL, MARKET, 0, 150, Phase.CONTINUOUS, 150, None),
        # The first rule broken is the one reported: instrument, session, price, quantity.
        (ETF, BUY, LIMIT, 0, 1, Phase.CLOSED, None, "instrument_not_supported"),
        (MAIN, BUY, LIMIT, 0, 1, Phase.CLOSED, None, "market_closed"),
        (MAIN, BUY, LIMIT, 2000, 1, Phase.CONTINUOUS, None, "price_above_limit"),
        (MAIN, BUY, LIMIT, 1000, 1, Phase.CONTINUOUS, None, "lot_size"),
        (MAIN, SELL, LIMIT, 900, 50, Phase.CONTINUOUS, 50, "price_below_limit"),
    ],
)
def test_check_order(instrument, side, order_type, price_fen, quantity, phase, sellable, code):
    assert refused(check_order, instrument, side, order_type, price_fen, quantity, phase, sellable) == code


def test_check_order_takes_sellable_by_position():
    # As the ledger calls it.
    assert refused(check_order, MAIN, SELL, LIMIT, 1005, 50, Phase.CONTINUOUS, 50) is None


@pytest.mark.parametrize(
    "side, order_type, message",
    [("hold", LIMIT, "side 'hold' is not one of buy, sell"),
     (BUY, "stop", "order type 'stop' is not one of limit, market")],
)
def test_unknown_side_or_type_is_a_bug_not_a_refusal(side, order_type, message):
    with pytest.raises(ValueError) as raised:
        check_order(MAIN, side, order_type, 1005, 100, Phase.CONTINUOUS)
    assert str(raised.value) == message


# -- prices as typed


@pytest.mark.parametrize(
    "text, fen, code",
    [
        ("11.06", 1106, None),
        ("11", 1100, None),
        ("11.5", 1150, None),
        ("11.065", None, "price_not_on_tick"),
        ("3.001", None, "price_not_on_tick"),
        ("-11.06", None, "bad_price"),
        ("11*06", None, "bad_price"),
        ("", None, "bad_price"),
    ],
)
def test_parse_price(text, fen, code):
    assert refused(parse_price, text) == code
    if code is None:
        assert parse_price(text) == fen
