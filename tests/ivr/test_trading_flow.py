"""
The phone trading flow (L{callcenter.ivr.flows.phone_trading}) over a
scripted channel and a fake trading service.
"""


import re

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import formatEvent
from twisted.python.failure import Failure

from callcenter.ivr.dialogue import AGENT, BACK, CallEnded, Dialogue, MemoryPrompter, run_flow
from callcenter.ivr.flows import phone_trading
from callcenter.ivr.flows.phone_trading import (
    GENERIC_REFUSAL,
    REFUSAL_PROMPTS,
    STATUS_PROMPTS,
    PhoneTrading,
    change_basis_points,
)
from callcenter.ivr.phrases import PHRASES
from callcenter.ivr.say import VOCABULARY, say_digits, say_money, say_percent, say_price, say_quantity
from callcenter.telephony.callerid import CallerID
from callcenter.trading import accounts
from callcenter.trading.instruments import Instrument, price_limits
from callcenter.trading.model import (
    ACCEPTED,
    BUY,
    CANCELLED,
    FILLED,
    FINAL_STATES,
    MARKET,
    NEW,
    OPEN_STATES,
    PARTIALLY_FILLED,
    REJECTED,
    SELL,
    Origin,
    Tick,
)
from callcenter.trading.reasons import REASONS, TradingRefused
from callcenter.trading.service import Quote
from flow_prompts import prompt_names
from outcomes import CapturedLog
from test_dialogue import HANGUP, ScriptedChannel, run

ACCOUNT = "31000123"
PASSWORD = "739251"
CALLER = "13912345678"
NEW_PASSWORD = "246810"
LOGIN = [f"{ACCOUNT}#", f"{PASSWORD}#"]
INSTRUMENTS = {
    "600000": Instrument("600000", "SSE", "浦发银行", "SPD Bank", "main", 1000),
    "600519": Instrument("600519", "SSE", "贵州茅台", "Kweichow Moutai", "main", 150000),
}


def tick(code, last_fen, bid_fen=None, ask_fen=None):
    bid_fen = last_fen - 1 if bid_fen is None else bid_fen
    ask_fen = last_fen + 1 if ask_fen is None else ask_fen
    return Tick(code, "SSE", last_fen, bid_fen, ask_fen, 1000, 1000, 50000, 0.0)


def an_order(order_no, code="600000", side=BUY, price_fen=1012, quantity=100, status=ACCEPTED, filled=0, **columns):
    """One row of today's orders, as ITradingService.orders gives it (the columns the flow reads)."""
    return dict(
        order_no=order_no, code=code, exchange="SSE", side=side, order_type="limit", price_fen=price_fen,
        quantity=quantity, filled_quantity=filled, status=status, cancel_requested=False, **columns,
    )


def a_fill(fill_id, order_no, code="600000", side=BUY, price_fen=1012, quantity=100):
    return dict(fill_id=fill_id, order_no=order_no, exec_id=f"e{fill_id}", code=code, side=side,
                price_fen=price_fen, quantity=quantity)


class FakeTrading:
    """
    A stand-in for ITradingService so that the flow's dialogue is tested
    alone; the real service is exercised end to end by the lead's tests.
    It has only what the flow uses, records every call (never a password)
    and refuses as told.
    """

    def __init__(self, login_refusal=None, order_refusal=None, fail_orders=0, password_refusals=()):
        self.login_refusal = login_refusal
        self.order_refusal = order_refusal
        self.password_refusals = list(password_refusals)  # one per change_password, then as the real one
        self.fail_orders = fail_orders
        self.password = PASSWORD
        self.logins = []
        self.password_changes = []
        self.placed = []
        self.cancels = []
        self.booked = {}
        self.ticks = {"600000": tick("600000", 1012)}
        self.holdings = [{"code": "600519", "quantity": 200, "sellable": 200}]
        self.todays_orders = []
        self.todays_fills = []

    def instrument(self, code):
        return INSTRUMENTS.get(code)

    def quote(self, code):
        instrument = INSTRUMENTS.get(code)
        if instrument is None:
            return None
        return Quote(instrument, self.ticks.get(code), *price_limits(instrument))

    def login(self, fund_account_no, password, origin):
        self.logins.append((fund_account_no, origin))
        if self.login_refusal is not None:
            return defer.fail(TradingRefused(self.login_refusal))
        if (fund_account_no, password) != (ACCOUNT, self.password):
            return defer.fail(TradingRefused("wrong_password"))
        return defer.succeed(object())

    def change_password(self, fund_account_no, old_password, new_password, origin):
        # As callcenter.trading.accounts checks: the new password's form, then the old one.
        self.password_changes.append((fund_account_no, origin))
        if self.password_refusals:
            return defer.fail(TradingRefused(self.password_refusals.pop(0)))
        if not (len(new_password) == 6 and new_password.isdigit()):
            return defer.fail(TradingRefused("bad_new_password"))
        if (fund_account_no, old_password) != (ACCOUNT, self.password):
            return defer.fail(TradingRefused("wrong_password"))
        self.password = new_password
        return defer.succeed(None)

    def place_order(self, fund_account_no, code, side, price_fen, quantity, origin, client_order_id=None):
        self.placed.append(dict(
            fund_account_no=fund_account_no, code=code, side=side, price_fen=price_fen,
            quantity=quantity, origin=origin, client_order_id=client_order_id,
        ))
        if self.order_refusal is not None:
            return defer.fail(TradingRefused(self.order_refusal))
        duplicate = client_order_id in self.booked
        order_no = self.booked.setdefault(client_order_id, 20240518 + len(self.booked))
        if self.fail_orders:
            self.fail_orders -= 1
            return defer.fail(ConnectionError("the store went away"))
        return defer.succeed({"order_no": order_no, "duplicate": duplicate})

    def cancel_order(self, fund_account_no, order_no, origin):
        self.cancels.append((fund_account_no, order_no))
        return defer.succeed({"order_no": order_no})

    def funds(self, fund_account_no):
        return defer.succeed(
            {"available_fen": 1234567, "frozen_fen": 0, "market_value_fen": 100000, "total_fen": 1334567}
        )

    def positions(self, fund_account_no):
        return defer.succeed(self.holdings)

    def orders(self, fund_account_no, trading_day=None):
        # Newest first, as the service gives them.
        return defer.succeed(sorted(self.todays_orders, key=lambda order: -order["order_no"]))

    def fills(self, fund_account_no, trading_day=None):
        return defer.succeed(sorted(self.todays_fills, key=lambda fill: fill["fill_id"]))


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def prompter():
    return MemoryPrompter()


def call(clock, script):
    channel = ScriptedChannel(clock, script)
    channel.caller = CallerID(number=CALLER, display_name=None, asserted=True)
    return channel


def played(prompter):
    """Everything played, as one list of names."""
    return [name for names in prompter.played for name in names]


def contains(names, part):
    """Whether the list C{part} occurs in C{names}, in a row."""
    return any(names[i:i + len(part)] == part for i in range(len(names) - len(part) + 1))


def flow_run(clock, prompter, trading, script, **options):
    flow = PhoneTrading(trading, Dialogue(prompter), **options)
    channel = call(clock, script)
    return channel, run(clock, flow(channel))


def stock(code, language="zh"):
    """A stock as the flow names it when the pack has its name."""
    return [f"{language}/stock-code", *say_digits(code, language), f"{language}/stock-name-{code}"]


def readback(side, code, price_fen, quantity):
    return [
        "zh/confirm-buy" if side == BUY else "zh/confirm-sell",
        *stock(code),
        "zh/at-price", *say_price(price_fen),
        "zh/quantity", *say_quantity(quantity, "share"),
        "zh/confirm-or-reenter",
    ]


def test_buy_is_read_back_confirmed_placed_and_its_number_said(clock, prompter):
    trading = FakeTrading()
    with CapturedLog() as events:
        channel, result = flow_run(clock, prompter, trading, [*LOGIN, "1", "600000#", "12*34#", "100#", "1", "*"])
    assert result is BACK
    [order] = trading.placed
    assert order["fund_account_no"] == ACCOUNT
    assert (order["code"], order["side"], order["price_fen"], order["quantity"]) == ("600000", BUY, 1234, 100)
    assert order["origin"] == Origin(channel="phone", caller=CALLER, call_id="call-1", correlation_id="cid-1")
    assert order["client_order_id"] == "call-1-1"
    assert trading.logins == [(ACCOUNT, order["origin"])]
    names = played(prompter)
    assert names[0] == "zh/welcome"
    assert contains(names, ["zh/stock-code", *say_digits("600000")])
    assert contains(names, readback(BUY, "600000", 1234, 100))
    assert contains(names, ["zh/order-placed", *say_digits("20240518")])
    assert channel.heard_out == [readback(BUY, "600000", 1234, 100), ["zh/order-placed", *say_digits("20240518")]]
    # Back to the menu after the order.
    assert names.count("zh/trading-menu") == 2
    assert not any(PASSWORD in formatEvent(event) or PASSWORD in repr(event) for event in events)
    assert any("placed" in (event.get("log_format") or "") for event in events)


def test_sell_needs_no_round_lot(clock, prompter):
    trading = FakeTrading()
    flow_run(clock, prompter, trading, [*LOGIN, "2", "600519#", "1500#", "50#", "1", "*"])
    [order] = trading.placed
    assert (order["side"], order["price_fen"], order["quantity"]) == (SELL, 150000, 50)
    assert contains(played(prompter), readback(SELL, "600519", 150000, 50))


def test_wrong_password_three_times_ends_the_call(clock, prompter):
    trading = FakeTrading()
    with CapturedLog() as events:
        channel, result = flow_run(clock, prompter, trading, [f"{ACCOUNT}#", "111111#", "222222#", "333333#"])
    assert result is None
    assert len(trading.logins) == 3
    names = played(prompter)
    assert names.count("zh/wrong-password") == 2
    assert names[-1] == "zh/too-many-attempts"
    # The account is asked once: zh/wrong-password asks for the password again.
    assert names.count("zh/enter-account") == 1
    assert names.count("zh/enter-password") == 3
    assert "zh/trading-menu" not in names
    for secret in ("111111", "222222", "333333"):
        assert not any(secret in formatEvent(event) or secret in repr(event) for event in events)


def test_login_attempts_are_configurable(clock, prompter):
    trading = FakeTrading()
    flow_run(clock, prompter, trading, [f"{ACCOUNT}#", "111111#"], max_login_attempts=1)
    assert len(trading.logins) == 1
    assert played(prompter)[-1] == "zh/too-many-attempts"


def test_right_password_after_a_wrong_one(clock, prompter):
    trading = FakeTrading()
    _, result = flow_run(clock, prompter, trading, [f"{ACCOUNT}#", "111111#", f"{PASSWORD}#", "*"])
    assert result is BACK
    assert len(trading.logins) == 2


@pytest.mark.parametrize(
    "code, prompt", [("account_locked", "zh/account-locked"), ("caller_not_allowed", "zh/caller-not-allowed")]
)
def test_login_refusals_that_end_the_call(clock, prompter, code, prompt):
    trading = FakeTrading(login_refusal=code)
    channel, result = flow_run(clock, prompter, trading, [*LOGIN, *LOGIN])
    assert result is None
    assert len(trading.logins) == 1
    assert played(prompter)[-2:] == [prompt, "zh/goodbye"]
    [(_, origin)] = trading.logins
    assert origin.caller == CALLER


def test_order_refusal_is_said_then_back_to_the_menu(clock, prompter):
    trading = FakeTrading(order_refusal="price_above_limit")
    _, result = flow_run(clock, prompter, trading, [*LOGIN, "1", "600000#", "99*99#", "100#", "1", "*"])
    assert result is BACK
    assert len(trading.placed) == 1
    names = played(prompter)
    assert contains(names, ["zh/price-outside-limits", "zh/order-not-placed", "zh/trading-menu"])
    assert "zh/order-placed" not in names


def test_refusal_without_a_phrase_of_its_own(clock, prompter):
    trading = FakeTrading(order_refusal="star_minimum_quantity")
    flow_run(clock, prompter, trading, [*LOGIN, "1", "600000#", "10#", "100#", "1", "*"])
    assert contains(played(prompter), ["zh/" + GENERIC_REFUSAL, "zh/trading-menu"])


def test_two_at_the_read_back_goes_back_to_the_stock_code(clock, prompter):
    trading = FakeTrading()
    flow_run(
        clock, prompter, trading,
        [*LOGIN, "1", "600000#", "12*34#", "100#", "2", "600519#", "1800#", "200#", "1", "*"],
    )
    [order] = trading.placed
    assert (order["code"], order["price_fen"], order["quantity"]) == ("600519", 180000, 200)
    assert order["client_order_id"] == "call-1-2"
    names = played(prompter)
    assert names.count("zh/enter-stock-code") == 2
    assert contains(names, ["zh/confirm-or-reenter", "zh/enter-stock-code"])


def test_star_goes_back_one_step(clock, prompter):
    trading = FakeTrading()
    # * at the quantity: the price again; * at the read-back: the quantity again.
    flow_run(clock, prompter, trading, [*LOGIN, "1", "600000#", "12#", "*", "13#", "100#", "*", "200#", "1", "*"])
    [order] = trading.placed
    assert (order["price_fen"], order["quantity"]) == (1300, 200)


def test_star_at_the_stock_code_is_the_menu(clock, prompter):
    trading = FakeTrading()
    flow_run(clock, prompter, trading, [*LOGIN, "1", "*", "*"])
    assert trading.placed == []
    assert played(prompter).count("zh/trading-menu") == 2


def test_hang_up_during_the_read_back_places_nothing(clock, prompter):
    trading = FakeTrading()
    channel, result = flow_run(clock, prompter, trading, [*LOGIN, "1", "600000#", "12*34#", "100#", 0.1, HANGUP])
    assert isinstance(result, Failure) and result.check(CallEnded)
    assert trading.placed == []


def test_run_flow_ends_a_hung_up_call_quietly(clock, prompter):
    trading = FakeTrading()
    flow = PhoneTrading(trading, Dialogue(prompter))
    channel = call(clock, [*LOGIN, "1", "600000#", HANGUP])
    assert run(clock, run_flow(channel, flow, prompter)) is None
    assert trading.placed == []
    assert "zh/service-unavailable" not in played(prompter)


@pytest.mark.parametrize("price, prompt", [("12*345#", "zh/price-too-precise"), ("0#", "zh/invalid-input")])
def test_a_bad_price_is_asked_again(clock, prompter, price, prompt):
    trading = FakeTrading()
    flow_run(clock, prompter, trading, [*LOGIN, "1", "600000#", price, "12*3#", "100#", "1", "*"])
    [order] = trading.placed
    assert order["price_fen"] == 1230
    assert contains(played(prompter), [prompt, "zh/enter-price"])


def test_an_odd_lot_buy_is_asked_again(clock, prompter):
    trading = FakeTrading()
    flow_run(clock, prompter, trading, [*LOGIN, "1", "600000#", "12#", "150#", "300#", "1", "*"])
    [order] = trading.placed
    assert order["quantity"] == 300
    assert contains(played(prompter), ["zh/quantity-not-lot", "zh/enter-quantity"])


def test_an_unknown_or_short_stock_code_is_asked_again(clock, prompter):
    trading = FakeTrading()
    flow_run(clock, prompter, trading, [*LOGIN, "1", "123456#", "6000#", "600000#", "12#", "100#", "1", "*"])
    [order] = trading.placed
    assert order["code"] == "600000"
    names = played(prompter)
    assert contains(names, ["zh/stock-not-found", "zh/enter-stock-code"])
    assert contains(names, ["zh/invalid-input", "zh/enter-stock-code"])


def test_a_failed_order_confirmed_again_is_not_booked_twice(clock, prompter):
    trading = FakeTrading(fail_orders=1)
    flow_run(clock, prompter, trading, [*LOGIN, "1", "600000#", "12#", "100#", "1", "1", "*"])
    assert [order["client_order_id"] for order in trading.placed] == ["call-1-1", "call-1-1"]
    assert len(trading.booked) == 1
    assert contains(played(prompter), ["zh/order-placed", *say_digits("20240518")])


def test_a_long_call_id_makes_a_client_order_id_that_fits(clock, prompter):
    trading = FakeTrading()
    flow = PhoneTrading(trading, Dialogue(prompter))
    channel = call(clock, [*LOGIN, "1", "600000#", "12#", "100#", "1", "*"])
    channel.call_id = "a84b4c76e66710@pc33.atlanta.example.com" * 3
    run(clock, flow(channel))
    [order] = trading.placed
    assert len(order["client_order_id"]) <= 64
    assert order["client_order_id"].endswith("-1")


def test_funds_query_says_the_available_cash(clock, prompter):
    trading = FakeTrading()
    flow_run(clock, prompter, trading, [*LOGIN, "4", "1", "*"])
    assert contains(played(prompter), ["zh/funds-available", *say_money(1234567), "zh/total-assets"])


def test_positions_query(clock, prompter):
    trading = FakeTrading()
    flow_run(clock, prompter, trading, [*LOGIN, "4", "2", "*"])
    assert contains(
        played(prompter),
        ["zh/positions-intro", *stock("600519"), "zh/holding", *say_quantity(200, "share"), "zh/end-of-list"],
    )


def test_cancel_reads_back_the_order_number(clock, prompter):
    trading = FakeTrading()
    flow_run(clock, prompter, trading, [*LOGIN, "3", "20240518#", "1", "*"])
    assert trading.cancels == [(ACCOUNT, 20240518)]
    names = played(prompter)
    assert contains(names, ["zh/order-number", *say_digits("20240518"), "zh/confirm-or-reenter"])
    assert "zh/cancel-submitted" in names


def test_zero_asks_for_an_agent(clock, prompter):
    trading = FakeTrading()
    _, result = flow_run(clock, prompter, trading, [*LOGIN, "0"])
    assert result is AGENT
    assert played(prompter)[-1] == "zh/transfer-agent"


def test_silence_at_the_menu_ends_the_call(clock, prompter):
    trading = FakeTrading()
    _, result = flow_run(clock, prompter, trading, [*LOGIN])
    assert result is None
    assert played(prompter)[-1] == "zh/too-many-attempts"


def test_a_code_ended_with_hash_leaves_nothing_for_the_next_entry(clock, prompter):
    # The # the prompt asks for after the sixth digit used to be taken as an empty price.
    trading = FakeTrading()
    flow_run(clock, prompter, trading, [*LOGIN, "1", "600000#", "12#", "100#", "1", "*"])
    assert trading.placed[0]["price_fen"] == 1200
    assert "zh/invalid-input" not in played(prompter)


def test_the_stock_name_is_said_after_its_code_and_in_the_read_back(clock, prompter):
    trading = FakeTrading()
    flow_run(clock, prompter, trading, [*LOGIN, "1", "600000#", "12#", "100#", "1", "*"])
    names = played(prompter)
    assert contains(names, [*stock("600000"), "zh/enter-price"])
    assert contains(names, ["zh/confirm-buy", *stock("600000"), "zh/at-price"])


def test_a_stock_without_a_name_prompt_is_said_by_its_code_alone(clock):
    prompter = MemoryPrompter(missing={"zh/stock-name-600000"})
    trading = FakeTrading()
    flow_run(clock, prompter, trading, [*LOGIN, "1", "600000#", "12#", "100#", "1", "*"])
    names = played(prompter)
    assert "zh/stock-name-600000" not in names
    assert contains(names, ["zh/stock-code", *say_digits("600000"), "zh/enter-price"])
    assert len(trading.placed) == 1


# Quotes

def test_star_at_the_account_prompt_gives_quotes_without_logging_in(clock, prompter):
    trading = FakeTrading()
    _, result = flow_run(clock, prompter, trading, ["*", "600000#", "*", *LOGIN, "*"])
    assert result is BACK
    names = played(prompter)
    assert names[:3] == ["zh/welcome", "zh/enter-account", "zh/star-for-quotes"]
    # 10.12 on a previous close of 10.00: up 0.12, 1.2%; best bid 10.11, best offer 10.13.
    assert contains(names, [
        "zh/enter-quote-code", *stock("600000"),
        "zh/last-price", *say_price(1012), "zh/up", *say_price(12), "zh/change", *say_percent(120),
        "zh/bid-price", *say_price(1011), "zh/ask-price", *say_price(1013),
        "zh/enter-quote-code", "zh/enter-account",
    ])
    # The quotes did not use up a login attempt, nor log in.
    assert len(trading.logins) == 1


@pytest.mark.parametrize("last_fen, movement", [
    (950, ["zh/down", *say_price(50), "zh/change", *say_percent(-500)]),
    (1000, ["zh/unchanged"]),
])
def test_a_fall_or_no_change(clock, prompter, last_fen, movement):
    trading = FakeTrading()
    trading.ticks["600000"] = tick("600000", last_fen)
    flow_run(clock, prompter, trading, ["*", "600000#", "*", HANGUP])
    names = played(prompter)
    assert contains(names, ["zh/last-price", *say_price(last_fen), *movement, "zh/bid-price"])
    assert names.count("zh/change") == movement.count("zh/change")


def test_an_empty_side_of_the_book_is_not_said(clock, prompter):
    trading = FakeTrading()
    trading.ticks["600000"] = tick("600000", 1100, ask_fen=0)  # at the upper limit: nobody sells
    flow_run(clock, prompter, trading, ["*", "600000#", "*", HANGUP])
    names = played(prompter)
    assert contains(names, ["zh/bid-price", *say_price(1099), "zh/enter-quote-code"])
    assert "zh/ask-price" not in names


def test_no_quote_yet_says_so_and_the_previous_close(clock, prompter):
    trading = FakeTrading()
    flow_run(clock, prompter, trading, ["*", "600519#", "*", HANGUP])
    assert contains(played(prompter), [*stock("600519"), "zh/no-quote", "zh/previous-close", *say_price(150000)])
    assert "zh/last-price" not in played(prompter)


def test_an_unknown_or_short_code_for_a_quote_is_asked_again(clock, prompter):
    trading = FakeTrading()
    flow_run(clock, prompter, trading, ["*", "123456#", "6000#", "600000#", "*", HANGUP])
    names = played(prompter)
    assert contains(names, ["zh/stock-not-found", "zh/enter-quote-code"])
    assert contains(names, ["zh/invalid-input", "zh/enter-quote-code"])
    assert "zh/last-price" in names


def test_quotes_from_the_trading_menu_come_back_to_it(clock, prompter):
    trading = FakeTrading()
    _, result = flow_run(clock, prompter, trading, [*LOGIN, "6", "600000#", "*", "*"])
    assert result is BACK
    names = played(prompter)
    assert contains(names, ["zh/trading-menu", "zh/press-0-agent", "zh/enter-quote-code"])
    assert "zh/last-price" in names
    assert names.count("zh/trading-menu") == 2


def test_hang_up_during_the_quotes(clock, prompter):
    trading = FakeTrading()
    channel, result = flow_run(clock, prompter, trading, ["*", "6000", HANGUP])
    assert isinstance(result, Failure) and result.check(CallEnded)
    assert trading.logins == []


def test_quotes_in_english(clock, prompter):
    trading = FakeTrading()
    trading.ticks["600000"] = tick("600000", 950)
    flow = PhoneTrading(trading, Dialogue(prompter, "en"))
    channel = call(clock, ["*", "600000#", "*", *LOGIN, "*"])
    assert run(clock, flow(channel)) is BACK
    names = played(prompter)
    assert names[:3] == ["en/welcome", "en/enter-account", "en/star-for-quotes"]
    assert contains(names, [
        *stock("600000", "en"), "en/last-price", *say_price(950, "en"),
        "en/down", *say_price(50, "en"), "en/change", *say_percent(-500, "en"),
    ])
    assert all(name.startswith("en/") and known(name) for name in names)


@pytest.mark.parametrize("change, close, points", [
    (12, 1000, 120), (-50, 1000, -500), (0, 1000, 0), (1, 3, 3333),
    (1, 16, 625), (1, 32, 313), (-1, 32, -313), (5, 0, 0),
])
def test_change_basis_points_round_half_away_from_zero(change, close, points):
    assert change_basis_points(change, close) == points


# Today's orders and trades, positions, funds

def test_todays_orders_newest_first_with_their_state(clock, prompter):
    trading = FakeTrading()
    trading.todays_orders = [
        an_order(11, status=NEW),
        an_order(12, code="600519", side=SELL, price_fen=150000, quantity=300, status=PARTIALLY_FILLED, filled=100),
        an_order(13, status=FILLED, filled=100),
    ]
    _, result = flow_run(clock, prompter, trading, [*LOGIN, "4", "3", "*"])
    assert result is BACK
    names = played(prompter)
    assert contains(names, [
        "zh/orders-intro",
        "zh/order-number", *say_digits("13"), "zh/buy", *stock("600000"), "zh/at-price", *say_price(1012),
        "zh/quantity", *say_quantity(100, "share"), "zh/status-filled",
        "zh/order-number", *say_digits("12"), "zh/sell", *stock("600519"), "zh/at-price", *say_price(150000),
        "zh/quantity", *say_quantity(300, "share"), "zh/status-partly-filled",
        "zh/fill-quantity", *say_quantity(100, "share"),
        "zh/order-number", *say_digits("11"), "zh/buy", *stock("600000"), "zh/at-price", *say_price(1012),
        "zh/quantity", *say_quantity(100, "share"), "zh/status-pending",
        "zh/end-of-list", "zh/trading-menu",
    ])
    assert "zh/more-or-back" not in names


def test_more_than_a_page_of_orders_asks_before_going_on(clock, prompter):
    trading = FakeTrading()
    trading.todays_orders = [an_order(number) for number in range(1, 8)]
    flow_run(clock, prompter, trading, [*LOGIN, "4", "3", "1", "*"])
    names = played(prompter)
    # The newest five, then the question, then the last two.
    heard = [
        "more" if name == "zh/more-or-back" else names[i + 1]
        for i, name in enumerate(names) if name in ("zh/order-number", "zh/more-or-back")
    ]
    assert heard == [*(say_digits(str(n))[0] for n in (7, 6, 5, 4, 3)), "more", *say_digits("2"), *say_digits("1")]
    assert contains(names, ["zh/status-pending", "zh/more-or-back", "zh/order-number"])
    assert contains(names, ["zh/status-pending", "zh/end-of-list", "zh/trading-menu"])


def test_star_after_a_page_stops_the_list(clock, prompter):
    trading = FakeTrading()
    trading.todays_orders = [an_order(number) for number in range(1, 8)]
    _, result = flow_run(clock, prompter, trading, [*LOGIN, "4", "3", "*", "*"])
    assert result is BACK
    names = played(prompter)
    assert names.count("zh/order-number") == 5
    assert "zh/end-of-list" not in names
    assert contains(names, ["zh/more-or-back", "zh/trading-menu"])


def test_an_order_being_cancelled_a_cancelled_part_filled_one_and_a_market_one(clock, prompter):
    trading = FakeTrading()
    trading.todays_orders = [
        dict(an_order(21), cancel_requested=True),
        an_order(22, quantity=500, status=CANCELLED, filled=200),
        dict(an_order(23, status=REJECTED), order_type=MARKET),
    ]
    flow_run(clock, prompter, trading, [*LOGIN, "4", "3", "*"])
    names = played(prompter)
    assert contains(names, [*say_quantity(100, "share"), "zh/status-cancel-requested"])
    assert contains(names, ["zh/status-cancelled", "zh/fill-quantity", *say_quantity(200, "share")])
    assert contains(names, [*stock("600000"), "zh/market-price", "zh/quantity"])
    assert contains(names, ["zh/status-rejected", "zh/order-number"])


def test_todays_trades_newest_first(clock, prompter):
    trading = FakeTrading()
    trading.todays_fills = [
        a_fill(1, 11, quantity=100),
        a_fill(2, 12, code="600519", side=SELL, price_fen=150100, quantity=200),
    ]
    flow_run(clock, prompter, trading, [*LOGIN, "4", "4", "*"])
    assert contains(played(prompter), [
        "zh/fills-intro",
        "zh/sell", *stock("600519"), "zh/fill-price", *say_price(150100),
        "zh/fill-quantity", *say_quantity(200, "share"),
        "zh/buy", *stock("600000"), "zh/fill-price", *say_price(1012),
        "zh/fill-quantity", *say_quantity(100, "share"),
        "zh/end-of-list",
    ])


@pytest.mark.parametrize("key, prompt", [("2", "zh/no-positions"), ("3", "zh/no-orders-today"),
                                         ("4", "zh/no-trades-today")])
def test_empty_lists(clock, prompter, key, prompt):
    trading = FakeTrading()
    trading.holdings = []
    _, result = flow_run(clock, prompter, trading, [*LOGIN, "4", key, "*"])
    assert result is BACK
    names = played(prompter)
    assert contains(names, ["zh/query-menu", prompt, "zh/trading-menu"])
    assert "zh/end-of-list" not in names


def test_a_holding_partly_sellable_says_what_can_be_sold(clock, prompter):
    trading = FakeTrading()
    trading.holdings = [{"code": "600000", "quantity": 500, "sellable": 300}]
    flow_run(clock, prompter, trading, [*LOGIN, "4", "2", "*"])
    assert contains(played(prompter), [
        *stock("600000"), "zh/holding", *say_quantity(500, "share"),
        "zh/available-to-sell", *say_quantity(300, "share"), "zh/end-of-list",
    ])


def test_funds_frozen_for_open_orders_are_said(clock, prompter):
    trading = FakeTrading()
    trading.funds = lambda account: defer.succeed(
        {"available_fen": 500000, "frozen_fen": 101200, "market_value_fen": 0, "total_fen": 601200}
    )
    flow_run(clock, prompter, trading, [*LOGIN, "4", "1", "*"])
    assert contains(played(prompter), [
        "zh/funds-available", *say_money(500000), "zh/funds-frozen", *say_money(101200),
        "zh/total-assets", *say_money(601200),
    ])


def test_a_refused_query_is_said(clock, prompter):
    trading = FakeTrading()
    trading.orders = lambda account: defer.fail(TradingRefused("account_not_found"))
    _, result = flow_run(clock, prompter, trading, [*LOGIN, "4", "3", "*"])
    assert result is BACK
    assert contains(played(prompter), ["zh/account-not-found", "zh/trading-menu"])


def test_hang_up_while_a_list_is_read(clock, prompter):
    trading = FakeTrading()
    trading.todays_orders = [an_order(number) for number in range(1, 8)]
    _, result = flow_run(clock, prompter, trading, [*LOGIN, "4", "3", 1, HANGUP])
    assert isinstance(result, Failure) and result.check(CallEnded)
    assert played(prompter).count("zh/order-number") == 5


def test_todays_orders_in_english(clock, prompter):
    trading = FakeTrading()
    trading.todays_orders = [an_order(31, status=PARTIALLY_FILLED, filled=100, quantity=200)]
    flow = PhoneTrading(trading, Dialogue(prompter, "en"))
    assert run(clock, flow(call(clock, [*LOGIN, "4", "3", "*"]))) is BACK
    names = played(prompter)
    assert contains(names, [
        "en/order-number", *say_digits("31", "en"), "en/buy", *stock("600000", "en"),
        "en/at-price", *say_price(1012, "en"), "en/quantity", *say_quantity(200, "share", "en"),
        "en/status-partly-filled", "en/fill-quantity", *say_quantity(100, "share", "en"), "en/end-of-list",
    ])
    assert all(name.startswith("en/") and known(name) for name in names)


def test_every_order_state_has_a_phrase():
    assert set(STATUS_PROMPTS) == {*OPEN_STATES, *FINAL_STATES}
    for name in [*STATUS_PROMPTS.values(), "status-cancel-requested"]:
        assert known(f"zh/{name}") and known(f"en/{name}")


# Changing the password

CHANGE = ["5", f"{PASSWORD}#", f"{NEW_PASSWORD}#", f"{NEW_PASSWORD}#"]


def test_change_password(clock, prompter):
    trading = FakeTrading()
    with CapturedLog() as events:
        _, result = flow_run(clock, prompter, trading, [*LOGIN, *CHANGE, "*"])
    assert result is BACK
    assert trading.password == NEW_PASSWORD
    assert [account for account, _ in trading.password_changes] == [ACCOUNT]
    assert contains(played(prompter), [
        "zh/enter-old-password", "zh/enter-new-password", "zh/reenter-new-password",
        "zh/password-changed", "zh/trading-menu",
    ])
    assert events.formats("password changed")
    for secret in (PASSWORD, NEW_PASSWORD):
        assert not any(secret in formatEvent(event) or secret in repr(event) for event in events)


def test_new_passwords_that_differ_are_asked_again(clock, prompter):
    trading = FakeTrading()
    flow_run(clock, prompter, trading, [
        *LOGIN, "5", f"{PASSWORD}#", f"{NEW_PASSWORD}#", "135790#", f"{NEW_PASSWORD}#", f"{NEW_PASSWORD}#", "*",
    ])
    assert trading.password == NEW_PASSWORD
    assert len(trading.password_changes) == 1
    assert contains(played(prompter), ["zh/reenter-new-password", "zh/passwords-differ", "zh/enter-new-password"])


def test_a_new_password_not_of_six_digits_is_asked_again_at_once(clock, prompter):
    trading = FakeTrading()
    flow_run(clock, prompter, trading, [
        *LOGIN, "5", f"{PASSWORD}#", "12345#", f"{NEW_PASSWORD}#", f"{NEW_PASSWORD}#", "*",
    ])
    assert trading.password == NEW_PASSWORD
    names = played(prompter)
    assert contains(names, ["zh/enter-new-password", "zh/new-password-six-digits", "zh/enter-new-password"])
    assert names.count("zh/reenter-new-password") == 1


def test_differing_new_passwords_three_times_end_the_call(clock, prompter):
    trading = FakeTrading()
    _, result = flow_run(clock, prompter, trading, [
        *LOGIN, "5", f"{PASSWORD}#", *[f"{NEW_PASSWORD}#", "135790#"] * 3,
    ])
    assert result is None
    assert trading.password_changes == []
    assert played(prompter)[-1] == "zh/too-many-attempts"


def test_a_wrong_current_password_is_said_and_asked_again(clock, prompter):
    trading = FakeTrading()
    flow_run(clock, prompter, trading, [
        *LOGIN, "5", "111111#", f"{NEW_PASSWORD}#", f"{NEW_PASSWORD}#", *CHANGE[1:], "*",
    ])
    assert trading.password == NEW_PASSWORD
    assert len(trading.password_changes) == 2
    assert contains(played(prompter), ["zh/wrong-password", "zh/enter-old-password"])


def test_wrong_current_passwords_end_the_call(clock, prompter):
    trading = FakeTrading()
    wrong = ["111111#", f"{NEW_PASSWORD}#", f"{NEW_PASSWORD}#"]
    _, result = flow_run(clock, prompter, trading, [*LOGIN, "5", *wrong * 2], max_login_attempts=2)
    assert result is None
    assert trading.password == PASSWORD
    names = played(prompter)
    assert names.count("zh/wrong-password") == 1
    assert names[-1] == "zh/too-many-attempts"


@pytest.mark.parametrize("code", ["account_locked", "caller_not_allowed"])
def test_a_lockout_while_changing_the_password_ends_the_call(clock, prompter, code):
    trading = FakeTrading(password_refusals=[code])
    _, result = flow_run(clock, prompter, trading, [*LOGIN, *CHANGE, "*"])
    assert result is None
    assert played(prompter)[-2:] == [f"zh/{REFUSAL_PROMPTS[code]}", "zh/goodbye"]


def test_another_refusal_leaves_the_password_and_goes_back_to_the_menu(clock, prompter):
    trading = FakeTrading(password_refusals=["account_not_found"])
    _, result = flow_run(clock, prompter, trading, [*LOGIN, *CHANGE, "*"])
    assert result is BACK
    assert contains(played(prompter), ["zh/reenter-new-password", "zh/password-not-changed", "zh/trading-menu"])


def test_a_new_password_the_back_end_refuses_is_asked_again(clock, prompter):
    # A back-end with a stricter rule than six digits.
    trading = FakeTrading(password_refusals=["bad_new_password"])
    flow_run(clock, prompter, trading, [*LOGIN, *CHANGE, *CHANGE[1:], "*"])
    assert trading.password == NEW_PASSWORD
    assert len(trading.password_changes) == 2
    assert contains(played(prompter), ["zh/new-password-six-digits", "zh/enter-old-password"])


@pytest.mark.parametrize("script", [
    # Before keying the new password again, and while keying it.
    [*LOGIN, "5", f"{PASSWORD}#", f"{NEW_PASSWORD}#", HANGUP],
    [*LOGIN, "5", f"{PASSWORD}#", f"{NEW_PASSWORD}#", "2468", HANGUP],
])
def test_hang_up_before_the_new_password_is_confirmed_changes_nothing(clock, prompter, script):
    trading = FakeTrading()
    _, result = flow_run(clock, prompter, trading, script)
    assert isinstance(result, Failure) and result.check(CallEnded)
    assert trading.password_changes == []
    assert trading.password == PASSWORD


@pytest.mark.parametrize("keys", [["*"], [f"{PASSWORD}#", "*"], [f"{PASSWORD}#", f"{NEW_PASSWORD}#", "*"]])
def test_star_while_changing_the_password_goes_back_to_the_menu(clock, prompter, keys):
    trading = FakeTrading()
    _, result = flow_run(clock, prompter, trading, [*LOGIN, "5", *keys, "*"])
    assert result is BACK
    assert trading.password_changes == []
    assert played(prompter).count("zh/trading-menu") == 2


def test_the_flow_asks_for_the_new_password_the_back_end_takes():
    assert phone_trading._NEW_PASSWORD_DIGITS == accounts.PASSWORD_DIGITS


# The prompts

def known(name):
    # A stock's name is no phrase: the pack makes it from the instrument list.
    return name in PHRASES or name in VOCABULARY or re.fullmatch(r"(zh|en)/stock-name-\d{6}", name) is not None


@pytest.mark.parametrize("language", ["zh", "en"])
def test_every_prompt_the_flow_names_exists(language):
    """Every prompt the flow's module names, played in a test or not, in both languages."""
    names = {f"{language}/{name}" for name in prompt_names(phone_trading)}
    assert f"{language}/welcome" in names
    assert sorted(name for name in names if not known(name)) == []


def test_the_refusal_map_uses_real_codes_and_prompts():
    assert set(REFUSAL_PROMPTS) <= set(REASONS)
    assert all(
        known(f"{language}/{name}") for name in [*REFUSAL_PROMPTS.values(), GENERIC_REFUSAL] for language in ("zh", "en")
    )


def test_every_prompt_played_exists(clock, prompter):
    for script in (
        [*LOGIN, "1", "600000#", "12*34#", "100#", "1", "4", "1", "4", "2", "3", "5#", "1", "0"],
        [f"{ACCOUNT}#", "1#", "2#", "3#"],
        ["*", "600000#", "600519#", "123456#", "*", *LOGIN, "4", "3", "1", "4", "4", *CHANGE, "6", "*", "0"],
        [*LOGIN, "5", f"{PASSWORD}#", "1#", "111111#", "222222#", "*", "5", "0#", "1#", "1#", "0"],
    ):
        trading = FakeTrading()
        trading.todays_orders = [an_order(number, status=status) for number, status in enumerate(STATUS_PROMPTS)]
        trading.todays_fills = [a_fill(1, 1)]
        flow_run(clock, prompter, trading, script)
    assert played(prompter)
    assert sorted({name for name in played(prompter) if not known(name)}) == []
