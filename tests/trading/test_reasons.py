"""Reason codes and what they say (L{callcenter.trading.reasons})."""

import re

import pytest

from callcenter.trading.reasons import REASONS, Reason, TradingRefused, reason

# The codes the other parts of the subsystem raise or report.
REQUIRED = [
    "unknown_instrument", "instrument_not_supported", "bad_code", "bad_price", "price_not_on_tick",
    "price_above_limit", "price_below_limit", "bad_quantity", "lot_size", "star_minimum_quantity",
    "quantity_too_large", "odd_lot_sell", "market_closed", "not_trading_day", "cancel_not_allowed",
    "order_not_cancellable", "order_not_found", "insufficient_cash", "insufficient_position",
    "account_not_found", "account_locked", "wrong_password", "bad_new_password", "caller_not_allowed",
    "phone_daily_limit", "duplicate_order", "market_orders_not_allowed_now", "alert_rule_not_found",
    "bad_alert_rule",
]
HAN = re.compile(r"[\u4e00-\u9fff]")


@pytest.mark.parametrize("code", REQUIRED)
def test_required_codes_exist(code):
    assert reason(code).code == code


@pytest.mark.parametrize("code", sorted(REASONS))
def test_every_code_speaks_both_languages(code):
    found = REASONS[code]
    assert found.code == code
    assert re.fullmatch(r"[a-z][a-z_]*", code)
    # Mandarin in Chinese characters; English in plain words, no Chinese.
    assert HAN.search(found.zh), found.zh
    assert found.en and found.en.isascii() and found.en == found.en.strip(), found.en
    assert found.text("zh") == found.zh
    assert found.text("en") == found.en


def test_sentences_are_distinct():
    assert len({r.zh for r in REASONS.values()}) == len(REASONS)
    assert len({r.en for r in REASONS.values()}) == len(REASONS)


def test_a_broker_says_it_so():
    assert reason("price_above_limit") == Reason(
        "price_above_limit", "委托价格超出今日涨停价", "the price is above today's upper limit"
    )


def test_unknown_code_fails_loudly():
    with pytest.raises(LookupError, match="'no_such_reason' is not a reason code"):
        reason("no_such_reason")
    with pytest.raises(LookupError):
        TradingRefused("no_such_reason")


def test_unknown_language():
    with pytest.raises(ValueError, match="language 'fr' is not one of zh, en"):
        reason("market_closed").text("fr")


def test_refusal_carries_reason_and_values():
    refusal = TradingRefused("price_above_limit", limit_fen=1106)
    assert refusal.reason is REASONS["price_above_limit"]
    assert refusal.values == {"limit_fen": 1106}
    assert str(refusal) == "price_above_limit: the price is above today's upper limit, limit_fen=1106"
    assert str(TradingRefused("market_closed")) == "market_closed: the market is closed now"
    assert refusal.args == ("price_above_limit",)


def test_a_value_may_be_called_code():
    refusal = TradingRefused("bad_code", code="60000")
    assert (refusal.reason.code, refusal.values) == ("bad_code", {"code": "60000"})
