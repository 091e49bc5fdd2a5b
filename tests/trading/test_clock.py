"""The trading clocks (L{callcenter.trading.clock}), on a fake reactor clock."""

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from callcenter.trading.calendar import CHINA_STANDARD_TIME, Phase, TradingCalendar
from callcenter.trading.clock import FixedTradingClock, SimulatedTradingDayClock, SystemTradingClock
from callcenter.trading.interfaces import ITradingClock

CST = CHINA_STANDARD_TIME
UTC = datetime.timezone.utc
HOLIDAY = datetime.date(2026, 12, 3)  # a Thursday, made a holiday here
CALENDAR = TradingCalendar({HOLIDAY})


def cst(*fields):
    return datetime.datetime(*fields, tzinfo=CST)


def reactor_at(moment):
    reactor = Clock()
    reactor.advance(moment.timestamp())
    return reactor


def test_each_clock_provides_the_interface():
    reactor = reactor_at(cst(2026, 12, 1, 10, 0))
    for clock in (SystemTradingClock(reactor), FixedTradingClock(cst(2026, 12, 1, 10, 0)),
                  SimulatedTradingDayClock(reactor, CALENDAR)):
        assert verifyObject(ITradingClock, clock)
        assert clock.now().utcoffset() == datetime.timedelta(hours=8)


def test_system_clock_is_the_reactor_time_in_china():
    reactor = reactor_at(datetime.datetime(2026, 12, 1, 1, 30, tzinfo=UTC))
    clock = SystemTradingClock(reactor)
    assert clock.now() == cst(2026, 12, 1, 9, 30)
    assert clock.now().tzinfo is CST
    reactor.advance(90.5)
    assert clock.now() == cst(2026, 12, 1, 9, 31, 30, 500_000)


def test_fixed_clock_is_set_and_advanced():
    clock = FixedTradingClock(datetime.datetime(2026, 12, 1, 6, 56, 59, tzinfo=UTC))
    assert clock.now() == cst(2026, 12, 1, 14, 56, 59)
    assert clock.now().tzinfo is CST
    assert CALENDAR.phase(clock.now()) is Phase.CONTINUOUS
    clock.advance(1)
    assert CALENDAR.phase(clock.now()) is Phase.CLOSING_AUCTION
    clock.set(cst(2026, 12, 5, 3, 0))
    assert clock.now() == cst(2026, 12, 5, 3, 0)
    with pytest.raises(ValueError, match="has no time zone"):
        clock.set(datetime.datetime(2026, 12, 1, 10, 0))


@pytest.mark.parametrize(
    "real, simulated",
    [
        # A trading day: real midnight is the 9:30 open.
        (cst(2026, 12, 1, 0, 0), cst(2026, 12, 1, 9, 30)),
        (cst(2026, 12, 1, 1, 59, 59), cst(2026, 12, 1, 11, 29, 59)),
        # Lunch is skipped.
        (cst(2026, 12, 1, 2, 0), cst(2026, 12, 1, 13, 0)),
        (cst(2026, 12, 1, 3, 56, 59), cst(2026, 12, 1, 14, 56, 59)),
        # After 237 minutes it starts again at 9:30.
        (cst(2026, 12, 1, 3, 57), cst(2026, 12, 1, 9, 30)),
        # 15:30 is 930 minutes since midnight: 930 - 3 * 237 = 219, 99 minutes into the afternoon.
        (cst(2026, 12, 1, 15, 30), cst(2026, 12, 1, 14, 39)),
        # 86,399 s mod 14,220 s = 1,079 s past 9:30.
        (cst(2026, 12, 1, 23, 59, 59), cst(2026, 12, 1, 9, 47, 59)),
        # 3 a.m. on a Sunday: Monday, 180 minutes into the session.
        (cst(2026, 12, 6, 3, 0), cst(2026, 12, 7, 14, 0)),
        # A holiday shows the next trading day.
        (cst(2026, 12, 3, 10, 0), cst(2026, 12, 4, 13, 6)),
        # The real time is read in China whatever zone the machine is in: this is Tuesday 08:00
        # there, 480 - 2 * 237 = 6 minutes into the session.
        (datetime.datetime(2026, 12, 1, 0, 0, tzinfo=UTC), cst(2026, 12, 1, 9, 36)),
    ],
)
def test_simulated_day_mapping(real, simulated):
    assert SimulatedTradingDayClock(reactor_at(real), CALENDAR).now() == simulated


def test_simulated_session_can_be_shorter():
    clock = SimulatedTradingDayClock(reactor_at(cst(2026, 12, 1, 1, 10)), CALENDAR, session_minutes=60)
    assert clock.now() == cst(2026, 12, 1, 9, 40)


def test_simulated_time_moves_with_real_time():
    reactor = reactor_at(cst(2026, 12, 5, 3, 0, 0))
    clock = SimulatedTradingDayClock(reactor, CALENDAR)
    before = clock.now()
    reactor.advance(42.25)
    assert clock.now() - before == datetime.timedelta(seconds=42.25)


@pytest.mark.parametrize("minutes", [0, -1, 238])
def test_simulated_session_must_fit_the_continuous_session(minutes):
    with pytest.raises(ValueError, match="session_minutes must be 1 to 237"):
        SimulatedTradingDayClock(Clock(), CALENDAR, session_minutes=minutes)


@given(
    st.datetimes(min_value=datetime.datetime(2026, 1, 1), max_value=datetime.datetime(2027, 12, 31),
                 timezones=st.just(CST)),
    st.integers(1, 237),
)
def test_simulated_time_is_always_continuous_trading(real, minutes):
    simulated = SimulatedTradingDayClock(reactor_at(real), CALENDAR, session_minutes=minutes).now()
    assert CALENDAR.phase(simulated) is Phase.CONTINUOUS
    # The day is the one an order placed now in earnest would belong to.
    assert simulated.date() == CALENDAR.trading_day(real.replace(hour=0, minute=0, second=0, microsecond=0))
