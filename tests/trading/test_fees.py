"""Commission, stamp duty and transfer fee (L{callcenter.trading.fees})."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter.trading.fees import Fees, FeeSchedule
from callcenter.trading.model import BUY, SELL

DEFAULT = FeeSchedule()


@pytest.mark.parametrize(
    "side, amount_fen, commission, stamp_duty, transfer_fee",
    [
        # Nothing traded, nothing charged: no minimum commission.
        (BUY, 0, 0, 0, 0),
        (SELL, 0, 0, 0, 0),
        # 1 fen: the minimum commission; duty and transfer fee round to 0.
        (BUY, 1, 500, 0, 0),
        (SELL, 1, 500, 0, 0),
        # 10,000 CNY: 0.025% is 2.50 CNY, under the 5 CNY minimum.
        (BUY, 1_000_000, 500, 0, 10),
        (SELL, 1_000_000, 500, 500, 10),
        # 20,000 CNY: 0.025% is exactly the minimum.
        (BUY, 2_000_000, 500, 0, 20),
        # 20,000.04 CNY: 500.01 fen rounds down to 500.
        (BUY, 2_000_004, 500, 0, 20),
        # 100,000 CNY: 25 CNY commission, 50 CNY duty, 1 CNY transfer fee.
        (BUY, 10_000_000, 2500, 0, 100),
        (SELL, 10_000_000, 2500, 5000, 100),
        # Halves round up: duty 0.05% of 999 fen is 0.4995 -> 0, of 1,000 fen 0.5 -> 1.
        (SELL, 999, 500, 0, 0),
        (SELL, 1_000, 500, 1, 0),
        # Transfer fee 0.001%: 49,999 fen -> 0.49999 -> 0, 50,000 fen -> 0.5 -> 1.
        (BUY, 49_999, 500, 0, 0),
        (BUY, 50_000, 500, 0, 1),
        # Commission 0.025% of 2,002,000 fen is 500.5 -> 501.
        (BUY, 2_002_000, 501, 0, 20),
        # Large: 10 million CNY.
        (SELL, 1_000_000_000, 250_000, 500_000, 10_000),
    ],
)
def test_default_schedule(side, amount_fen, commission, stamp_duty, transfer_fee):
    fees = DEFAULT.fees(side, amount_fen)
    assert fees == Fees(commission, stamp_duty, transfer_fee)
    assert fees.total_fen == commission + stamp_duty + transfer_fee


def test_defaults_are_the_rates_in_force():
    assert DEFAULT == FeeSchedule(
        commission_rate_ppm=250, commission_minimum_fen=500, stamp_duty_ppm=500, transfer_fee_ppm=10
    )


def test_a_broker_without_minimum_commission():
    schedule = FeeSchedule(commission_rate_ppm=100, commission_minimum_fen=0)
    assert schedule.fees(BUY, 1_000_000) == Fees(100, 0, 10)
    assert schedule.fees(BUY, 4_999) == Fees(0, 0, 0)


def test_buy_freeze_is_the_amount_and_its_fees():
    assert DEFAULT.buy_freeze_fen(300_000) == 300_000 + 500 + 3
    assert DEFAULT.buy_freeze_fen(10_000_000) == 10_000_000 + 2500 + 100
    assert DEFAULT.buy_freeze_fen(0) == 0


@pytest.mark.parametrize(
    "side, amount, message",
    [
        ("hold", 100, "side 'hold' is not one of buy, sell"),
        (BUY, -1, "amount -1 is not an integer number of fen, 0 or more"),
        (BUY, 12.5, "amount 12.5 is not an integer number of fen, 0 or more"),
        (SELL, True, "amount True is not an integer number of fen, 0 or more"),
    ],
)
def test_bad_arguments(side, amount, message):
    with pytest.raises(ValueError) as raised:
        DEFAULT.fees(side, amount)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    "field, value",
    [("commission_rate_ppm", -1), ("commission_minimum_fen", 5.0), ("stamp_duty_ppm", None),
     ("transfer_fee_ppm", True)],
)
def test_schedule_refuses_bad_rates(field, value):
    with pytest.raises(ValueError, match=field):
        FeeSchedule(**{field: value})


schedules = st.builds(
    FeeSchedule,
    commission_rate_ppm=st.integers(0, 3000),
    commission_minimum_fen=st.integers(0, 10_000),
    stamp_duty_ppm=st.integers(0, 10_000),
    transfer_fee_ppm=st.integers(0, 1000),
)
amounts = st.integers(0, 10**12)


@given(schedules, st.sampled_from([BUY, SELL]), amounts, amounts)
def test_fees_never_fall_as_the_amount_grows(schedule, side, a, b):
    # So charging each fill as fees(after) - fees(before) never refunds.
    low, high = sorted((a, b))
    before, after = schedule.fees(side, low), schedule.fees(side, high)
    assert before.commission_fen <= after.commission_fen
    assert before.stamp_duty_fen <= after.stamp_duty_fen
    assert before.transfer_fee_fen <= after.transfer_fee_fen


@given(schedules, st.lists(st.integers(1, 10**9), min_size=1, max_size=20))
def test_fills_charged_cumulatively_add_up_to_the_fees_of_the_whole(schedule, fills):
    charged, filled = 0, 0
    for amount in fills:
        charged += schedule.fees(SELL, filled + amount).total_fen - schedule.fees(SELL, filled).total_fen
        filled += amount
    assert charged == schedule.fees(SELL, filled).total_fen


@given(schedules, amounts, amounts)
def test_buy_freeze_covers_any_smaller_fill(schedule, frozen_amount, filled_amount):
    filled_amount = min(filled_amount, frozen_amount)
    spent = filled_amount + schedule.fees(BUY, filled_amount).total_fen
    assert spent <= schedule.buy_freeze_fen(frozen_amount)


@given(schedules, st.integers(1, 10**12))
def test_each_component_is_its_rate_rounded_half_up(schedule, amount):
    fees = schedule.fees(SELL, amount)
    for charged, ppm in ((fees.stamp_duty_fen, schedule.stamp_duty_ppm),
                         (fees.transfer_fee_fen, schedule.transfer_fee_ppm)):
        # |charged - exact| <= 1/2 fen, halves going up: 2*charged*10^6 - 2*amount*ppm in (-10^6, 10^6].
        difference = 2 * charged * 1_000_000 - 2 * amount * ppm
        assert -1_000_000 < difference <= 1_000_000
    assert fees.commission_fen >= schedule.commission_minimum_fen
