"""
The phone trading flow (L{callcenter.ivr.flows.phone_trading}) over a
scripted channel and a fake trading service.
"""


import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import formatEvent
from twisted.python.failure import Failure

from callcenter.ivr.dialogue import AGENT, BACK, CallEnded, Dialogue, MemoryPrompter, run_flow
from callcenter.ivr.flows import phone_trading
from callcenter.ivr.flows.phone_trading import GENERIC_REFUSAL, REFUSAL_PROMPTS, PhoneTrading
from callcenter.ivr.phrases import PHRASES
from callcenter.ivr.say import VOCABULARY, say_digits, say_money, say_price, say_quantity
from callcenter.telephony.callerid import CallerID
from callcenter.trading.model import BUY, SELL, Origin
from callcenter.trading.reasons import REASONS, TradingRefused
from flow_prompts import prompt_names
from outcomes import CapturedLog
from test_dialogue import HANGUP, ScriptedChannel, run

ACCOUNT = "31000123"
PASSWORD = "739251"
CALLER = "13912345678"
LOGIN = [f"{ACCOUNT}#", f"{PASSWORD}#"]


class FakeTrading:
    """
    A stand-in for ITradingService so that the flow's dialogue is tested
    alone; the real service is exercised end to end by the lead's tests.
    It has only what the flow uses, records every call (never a password)
    and refuses as told.
    """

    def __init__(self, login_refusal=None, order_refusal=None, fail_orders=0):
        self.login_refusal = login_refusal
        self.order_refusal = order_refusal
        self.fail_orders = fail_orders
        self.logins = []
        self.orders = []
        self.cancels = []
        self.booked = {}

    def instrument(self, code):
        return {"600000": "浦发银行", "600519": "贵州茅台"}.get(code)

    def login(self, fund_account_no, password, origin):
        self.logins.append((fund_account_no, origin))
        if self.login_refusal is not None:
            return defer.fail(TradingRefused(self.login_refusal))
        if (fund_account_no, password) != (ACCOUNT, PASSWORD):
            return defer.fail(TradingRefused("wrong_password"))
        return defer.succeed(object())

    def place_order(self, fund_account_no, code, side, price_fen, quantity, origin, client_order_id=None):
        self.orders.append(dict(
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
        return defer.succeed([{"code": "600519", "quantity": 200}])


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


def readback(side, code, price_fen, quantity):
    return [
        "zh/confirm-buy" if side == BUY else "zh/confirm-sell",
        "zh/stock-code", *say_digits(code),
        "zh/at-price", *say_price(price_fen),
        "zh/quantity", *say_quantity(quantity, "share"),
        "zh/confirm-or-reenter",
    ]


def test_buy_is_read_back_confirmed_placed_and_its_number_said(clock, prompter):
    trading = FakeTrading()
    with CapturedLog() as events:
        channel, result = flow_run(clock, prompter, trading, [*LOGIN, "1", "600000#", "12*34#", "100#", "1", "*"])
    assert result is BACK
    [order] = trading.orders
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
    # Back to the menu after the order.
    assert names.count("zh/trading-menu") == 2
    assert not any(PASSWORD in formatEvent(event) or PASSWORD in repr(event) for event in events)
    assert any("placed" in (event.get("log_format") or "") for event in events)


def test_sell_needs_no_round_lot(clock, prompter):
    trading = FakeTrading()
    flow_run(clock, prompter, trading, [*LOGIN, "2", "600519#", "1500#", "50#", "1", "*"])
    [order] = trading.orders
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
    assert len(trading.orders) == 1
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
    [order] = trading.orders
    assert (order["code"], order["price_fen"], order["quantity"]) == ("600519", 180000, 200)
    assert order["client_order_id"] == "call-1-2"
    names = played(prompter)
    assert names.count("zh/enter-stock-code") == 2
    assert contains(names, ["zh/confirm-or-reenter", "zh/enter-stock-code"])


def test_star_goes_back_one_step(clock, prompter):
    trading = FakeTrading()
    # * at the quantity: the price again; * at the read-back: the quantity again.
    flow_run(clock, prompter, trading, [*LOGIN, "1", "600000#", "12#", "*", "13#", "100#", "*", "200#", "1", "*"])
    [order] = trading.orders
    assert (order["price_fen"], order["quantity"]) == (1300, 200)


def test_star_at_the_stock_code_is_the_menu(clock, prompter):
    trading = FakeTrading()
    flow_run(clock, prompter, trading, [*LOGIN, "1", "*", "*"])
    assert trading.orders == []
    assert played(prompter).count("zh/trading-menu") == 2


def test_hang_up_during_the_read_back_places_nothing(clock, prompter):
    trading = FakeTrading()
    channel, result = flow_run(clock, prompter, trading, [*LOGIN, "1", "600000#", "12*34#", "100#", 0.1, HANGUP])
    assert isinstance(result, Failure) and result.check(CallEnded)
    assert trading.orders == []


def test_run_flow_ends_a_hung_up_call_quietly(clock, prompter):
    trading = FakeTrading()
    flow = PhoneTrading(trading, Dialogue(prompter))
    channel = call(clock, [*LOGIN, "1", "600000#", HANGUP])
    assert run(clock, run_flow(channel, flow, prompter)) is None
    assert trading.orders == []
    assert "zh/service-unavailable" not in played(prompter)


@pytest.mark.parametrize("price, prompt", [("12*345#", "zh/price-too-precise"), ("0#", "zh/invalid-input")])
def test_a_bad_price_is_asked_again(clock, prompter, price, prompt):
    trading = FakeTrading()
    flow_run(clock, prompter, trading, [*LOGIN, "1", "600000#", price, "12*3#", "100#", "1", "*"])
    [order] = trading.orders
    assert order["price_fen"] == 1230
    assert contains(played(prompter), [prompt, "zh/enter-price"])


def test_an_odd_lot_buy_is_asked_again(clock, prompter):
    trading = FakeTrading()
    flow_run(clock, prompter, trading, [*LOGIN, "1", "600000#", "12#", "150#", "300#", "1", "*"])
    [order] = trading.orders
    assert order["quantity"] == 300
    assert contains(played(prompter), ["zh/quantity-not-lot", "zh/enter-quantity"])


def test_an_unknown_or_short_stock_code_is_asked_again(clock, prompter):
    trading = FakeTrading()
    flow_run(clock, prompter, trading, [*LOGIN, "1", "123456#", "6000#", "600000#", "12#", "100#", "1", "*"])
    [order] = trading.orders
    assert order["code"] == "600000"
    names = played(prompter)
    assert contains(names, ["zh/stock-not-found", "zh/enter-stock-code"])
    assert contains(names, ["zh/invalid-input", "zh/enter-stock-code"])


def test_a_failed_order_confirmed_again_is_not_booked_twice(clock, prompter):
    trading = FakeTrading(fail_orders=1)
    flow_run(clock, prompter, trading, [*LOGIN, "1", "600000#", "12#", "100#", "1", "1", "*"])
    assert [order["client_order_id"] for order in trading.orders] == ["call-1-1", "call-1-1"]
    assert len(trading.booked) == 1
    assert contains(played(prompter), ["zh/order-placed", *say_digits("20240518")])


def test_a_long_call_id_makes_a_client_order_id_that_fits(clock, prompter):
    trading = FakeTrading()
    flow = PhoneTrading(trading, Dialogue(prompter))
    channel = call(clock, [*LOGIN, "1", "600000#", "12#", "100#", "1", "*"])
    channel.call_id = "a84b4c76e66710@pc33.atlanta.example.com" * 3
    run(clock, flow(channel))
    [order] = trading.orders
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
        ["zh/positions-intro", "zh/stock-code", *say_digits("600519"), "zh/holding", *say_quantity(200, "share")],
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


# The prompts

def known(name):
    return name in PHRASES or name in VOCABULARY


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
    trading = FakeTrading()
    for script in (
        [*LOGIN, "1", "600000#", "12*34#", "100#", "1", "4", "1", "4", "2", "3", "5#", "1", "0"],
        [f"{ACCOUNT}#", "1#", "2#", "3#"],
    ):
        flow_run(clock, prompter, trading, script)
    assert played(prompter)
    assert sorted({name for name in played(prompter) if not known(name)}) == []
