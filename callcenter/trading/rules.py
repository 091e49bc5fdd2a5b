"""
The China A-share order rules, checked before an order is booked: what
the code says about the market, the session, the price band, the trading
unit and the size of one order.  Each check raises L{TradingRefused} with
the reason an investor is told.

From the Shanghai and Shenzhen stock exchanges' trading rules (SSE 2023,
SZSE 2023, and the STAR Market and ChiNext rules); the rules on cash and
holdings are the ledger's.
"""

from callcenter.trading.instruments import price_limits
from callcenter.trading.model import BUY, LIMIT, MARKET, SIDES
from callcenter.trading.money import TooManyDecimals, parse_cny
from callcenter.trading.reasons import TradingRefused

ORDER_TYPES = (LIMIT, MARKET)

# The first three digits of a share's code give its exchange and board.
CODE_PREFIXES = {
    "600": ("SSE", "main"),
    "601": ("SSE", "main"),
    "603": ("SSE", "main"),
    "605": ("SSE", "main"),
    "688": ("SSE", "star"),
    "689": ("SSE", "star"),  # depositary receipts of red-chip companies on the STAR Market
    "000": ("SZSE", "main"),
    "001": ("SZSE", "main"),
    "002": ("SZSE", "main"),  # the former SME board, merged into the main board in 2021
    "003": ("SZSE", "main"),
    "300": ("SZSE", "chinext"),
    "301": ("SZSE", "chinext"),
}

# The most shares one order may be for.
MAX_ORDER_QUANTITY = {
    ("main", LIMIT): 1_000_000,
    ("main", MARKET): 1_000_000,
    ("chinext", LIMIT): 300_000,
    ("chinext", MARKET): 150_000,
    ("star", LIMIT): 100_000,
    ("star", MARKET): 50_000,
}

# STAR Market orders are for 200 shares or more, in steps of 1 share; the
# other boards trade in round lots (the instrument's lot_size, 100 shares).
STAR_MINIMUM_QUANTITY = 200


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _listing(code):
    if not (isinstance(code, str) and len(code) == 6 and code.isascii() and code.isdigit()):
        raise TradingRefused("bad_code", code=code)
    listing = CODE_PREFIXES.get(code[:3])
    if listing is None:
        raise TradingRefused("bad_code", code=code)
    return listing


def exchange_of(code):
    """C{"SSE"} or C{"SZSE"}, from a share's code; L{TradingRefused} C{bad_code} if it is none."""
    return _listing(code)[0]


def board_of(code):
    """C{"main"}, C{"chinext"} or C{"star"}, from a share's code; L{TradingRefused} C{bad_code} if it is none."""
    return _listing(code)[1]


def check_instrument(instrument):
    """
    That we trade C{instrument}, and that its code agrees with its
    exchange and board (which the other checks go by).
    """
    if instrument.board == "etf":
        # ETF prices move in steps of 0.001 CNY; prices here are whole fen.
        raise TradingRefused("instrument_not_supported", code=instrument.code)
    exchange, board = _listing(instrument.code)
    if (exchange, board) != (instrument.exchange, instrument.board):
        raise TradingRefused("bad_code", code=instrument.code)


def check_session(phase, order_type=LIMIT):
    """
    That the exchange takes orders of C{order_type} in C{phase}.  Market
    orders need a counterparty at once, so only continuous trading has
    them (the call auctions take limit orders only).
    """
    if not phase.accepts_orders:
        raise TradingRefused("market_closed")
    if order_type == MARKET and not phase.matches:
        raise TradingRefused("market_orders_not_allowed_now")


def check_price(instrument, price_fen):
    """That a limit price is within today's band (L{price_limits}, the edges included)."""
    if not _is_count(price_fen):
        raise TradingRefused("bad_price", price_fen=price_fen)
    down_fen, up_fen = price_limits(instrument)
    if price_fen > up_fen:
        raise TradingRefused("price_above_limit", limit_fen=up_fen)
    if price_fen < down_fen:
        raise TradingRefused("price_below_limit", limit_fen=down_fen)


def check_quantity(instrument, side, order_type, quantity, sellable=None):
    """
    That C{quantity} is a size an order may have.  Buys are in whole
    trading units; a sell may also be the odd remainder of a holding, but
    only all of it in one order: C{sellable} is how many shares the seller
    may sell (None when unknown, which allows no odd lot).
    """
    if not _is_count(quantity):
        raise TradingRefused("bad_quantity", quantity=quantity)
    maximum = MAX_ORDER_QUANTITY[instrument.board, order_type]
    if quantity > maximum:
        raise TradingRefused("quantity_too_large", maximum=maximum)
    if instrument.board == "star":
        minimum, step, refusal = STAR_MINIMUM_QUANTITY, 1, "star_minimum_quantity"
    else:
        minimum = step = instrument.lot_size
        refusal = "lot_size"
    if quantity >= minimum and quantity % step == 0:
        return
    if side == BUY:
        raise TradingRefused(refusal, minimum=minimum, step=step)
    if quantity != sellable:
        raise TradingRefused("odd_lot_sell", sellable=sellable)


def check_order(instrument, side, order_type, price_fen, quantity, phase, sellable=None):
    """
    Every rule an order must meet before it is booked, in the order an
    investor would want to hear them: the security, the session, the
    price (limit orders only: a market order's price is the market's), the
    quantity.

    @param phase: the L{callcenter.trading.calendar.Phase} now.
    @param sellable: for a sell, the shares the seller may sell now.
    @raise TradingRefused: the first rule broken.
    @raise ValueError: C{side} or C{order_type} is not one we know (a bug
        in the caller, not the investor's mistake).
    """
    if side not in SIDES:
        raise ValueError(f"side {side!r} is not one of {', '.join(SIDES)}")
    if order_type not in ORDER_TYPES:
        raise ValueError(f"order type {order_type!r} is not one of {', '.join(ORDER_TYPES)}")
    check_instrument(instrument)
    check_session(phase, order_type)
    if order_type == LIMIT:
        check_price(instrument, price_fen)
    check_quantity(instrument, side, order_type, quantity, sellable)


def check_cancel(phase):
    """That cancels are taken in C{phase} (not 9:20-9:25 nor in the closing auction)."""
    if not phase.allows_cancel:
        raise TradingRefused("cancel_not_allowed")


def parse_price(text):
    """
    A price as an investor gives it (C{"12.34"}) in fen: C{price_not_on_tick}
    for more than 2 decimals, C{bad_price} for anything else not a price.
    """
    try:
        return parse_cny(text)
    except TooManyDecimals:
        raise TradingRefused("price_not_on_tick", text=text) from None
    except ValueError:
        raise TradingRefused("bad_price", text=text) from None
