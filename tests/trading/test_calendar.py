"""Trading days and the phases of a trading day (L{callcenter.trading.calendar})."""

import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter.trading.calendar import CHINA_STANDARD_TIME, Phase, TradingCalendar, load_holidays

ETC = Path(__file__).resolve().parent.parent.parent / "etc"
CST = CHINA_STANDARD_TIME
UTC = datetime.timezone.utc

TUESDAY = datetime.date(2026, 12, 1)
# National Day week 2026 (from the exchanges' notice) and a made-up holiday.
HOLIDAYS = {datetime.date(2026, 10, d) for d in (1, 2, 5, 6, 7)} | {datetime.date(2026, 12, 3)}
CALENDAR = TradingCalendar(HOLIDAYS)


def at(day, hour, minute, second=0, microsecond=0, tz=CST):
    return datetime.datetime.combine(day, datetime.time(hour, minute, second, microsecond), tz)


@pytest.mark.parametrize(
    "hour, minute, second, phase",
    [
        (0, 0, 0, Phase.PRE_OPEN),
        (9, 14, 59, Phase.PRE_OPEN),
        (9, 15, 0, Phase.OPENING_AUCTION),
        (9, 19, 59, Phase.OPENING_AUCTION),
        (9, 20, 0, Phase.OPENING_AUCTION_LOCKED),
        (9, 24, 59, Phase.OPENING_AUCTION_LOCKED),
        (9, 25, 0, Phase.PRE_CONTINUOUS),
        (9, 29, 59, Phase.PRE_CONTINUOUS),
        (9, 30, 0, Phase.CONTINUOUS),
        (11, 29, 59, Phase.CONTINUOUS),
        (11, 30, 0, Phase.LUNCH_BREAK),
        (12, 59, 59, Phase.LUNCH_BREAK),
        (13, 0, 0, Phase.CONTINUOUS),
        (14, 56, 59, Phase.CONTINUOUS),
        (14, 57, 0, Phase.CLOSING_AUCTION),
        (14, 59, 59, Phase.CLOSING_AUCTION),
        (15, 0, 0, Phase.CLOSED),
        (23, 59, 59, Phase.CLOSED),
    ],
)
def test_phase_at_each_boundary(hour, minute, second, phase):
    assert CALENDAR.phase(at(TUESDAY, hour, minute, second)) is phase


def test_the_last_microsecond_before_a_boundary():
    assert CALENDAR.phase(at(TUESDAY, 9, 14, 59, 999_999)) is Phase.PRE_OPEN
    assert CALENDAR.phase(at(TUESDAY, 14, 56, 59, 999_999)) is Phase.CONTINUOUS


@pytest.mark.parametrize(
    "phase, accepts_orders, allows_cancel, matches",
    [
        (Phase.PRE_OPEN, False, True, False),
        (Phase.OPENING_AUCTION, True, True, False),
        (Phase.OPENING_AUCTION_LOCKED, True, False, False),
        (Phase.PRE_CONTINUOUS, True, True, False),
        (Phase.CONTINUOUS, True, True, True),
        (Phase.LUNCH_BREAK, False, True, False),
        (Phase.CLOSING_AUCTION, True, False, False),
        (Phase.CLOSED, False, True, False),
    ],
)
def test_what_each_phase_allows(phase, accepts_orders, allows_cancel, matches):
    assert CALENDAR.accepts_orders(phase) is accepts_orders
    assert CALENDAR.allows_cancel(phase) is allows_cancel
    assert CALENDAR.matches(phase) is matches


@pytest.mark.parametrize(
    "day, trading",
    [
        (datetime.date(2026, 12, 1), True),  # Tuesday
        (datetime.date(2026, 12, 3), False),  # listed holiday, a Thursday
        (datetime.date(2026, 12, 4), True),  # Friday
        (datetime.date(2026, 12, 5), False),  # Saturday
        (datetime.date(2026, 12, 6), False),  # Sunday
        (datetime.date(2026, 9, 30), True),
        (datetime.date(2026, 10, 1), False),
        (datetime.date(2026, 10, 7), False),
        (datetime.date(2026, 10, 8), True),
        (datetime.date(2026, 10, 10), False),  # a make-up working Saturday: still no trading
    ],
)
def test_is_trading_day(day, trading):
    assert CALENDAR.is_trading_day(day) is trading


def test_weekends_are_never_trading_days_even_unlisted():
    assert not TradingCalendar().is_trading_day(datetime.date(2026, 12, 5))
    assert TradingCalendar().is_trading_day(datetime.date(2026, 12, 3))


@pytest.mark.parametrize(
    "moment, phase",
    [
        (at(datetime.date(2026, 12, 5), 10, 0), Phase.CLOSED),  # Saturday in session hours
        (at(datetime.date(2026, 12, 3), 10, 0), Phase.CLOSED),  # holiday
        (at(datetime.date(2026, 10, 1), 9, 15), Phase.CLOSED),
    ],
)
def test_no_session_on_days_without_trading(moment, phase):
    assert CALENDAR.phase(moment) is phase


@pytest.mark.parametrize(
    "moment, phase",
    [
        # 01:30 UTC is 09:30 in Beijing.
        (datetime.datetime(2026, 12, 1, 1, 30, tzinfo=UTC), Phase.CONTINUOUS),
        (datetime.datetime(2026, 12, 1, 1, 29, 59, tzinfo=UTC), Phase.PRE_CONTINUOUS),
        # 16:00 UTC on Monday is Tuesday 00:00 in Beijing.
        (datetime.datetime(2026, 11, 30, 16, 0, tzinfo=UTC), Phase.PRE_OPEN),
        # 09:30 in New York (EST) is 22:30 in Beijing.
        (datetime.datetime(2026, 12, 1, 9, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))),
         Phase.CLOSED),
    ],
)
def test_phase_is_read_in_china_standard_time(moment, phase):
    assert CALENDAR.phase(moment) is phase


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="has no time zone"):
        CALENDAR.phase(datetime.datetime(2026, 12, 1, 10, 0))
    with pytest.raises(ValueError, match="has no time zone"):
        CALENDAR.trading_day(datetime.datetime(2026, 12, 1, 10, 0))


@pytest.mark.parametrize(
    "moment, day",
    [
        (at(TUESDAY, 0, 0), TUESDAY),
        (at(TUESDAY, 8, 0), TUESDAY),
        (at(TUESDAY, 14, 59, 59), TUESDAY),
        # From the close, orders are for the next trading day (预埋单).
        (at(TUESDAY, 15, 0), datetime.date(2026, 12, 2)),
        (at(TUESDAY, 22, 0), datetime.date(2026, 12, 2)),
        # Wednesday evening: Thursday is a holiday.
        (at(datetime.date(2026, 12, 2), 20, 0), datetime.date(2026, 12, 4)),
        (at(datetime.date(2026, 12, 3), 10, 0), datetime.date(2026, 12, 4)),
        # Friday evening, Saturday and Sunday belong to Monday.
        (at(datetime.date(2026, 12, 4), 15, 30), datetime.date(2026, 12, 7)),
        (at(datetime.date(2026, 12, 5), 3, 0), datetime.date(2026, 12, 7)),
        (at(datetime.date(2026, 12, 6), 23, 59, 59), datetime.date(2026, 12, 7)),
        (at(datetime.date(2026, 12, 7), 0, 0), datetime.date(2026, 12, 7)),
        # The eve of National Day: the market reopens on 8 October.
        (at(datetime.date(2026, 9, 30), 15, 0), datetime.date(2026, 10, 8)),
        # 20:00 UTC on Tuesday is 04:00 Wednesday in Beijing.
        (datetime.datetime(2026, 12, 1, 20, 0, tzinfo=UTC), datetime.date(2026, 12, 2)),
    ],
)
def test_trading_day(moment, day):
    assert CALENDAR.trading_day(moment) == day


@pytest.mark.parametrize(
    "day, following",
    [
        (datetime.date(2026, 12, 1), datetime.date(2026, 12, 2)),
        (datetime.date(2026, 12, 2), datetime.date(2026, 12, 4)),
        (datetime.date(2026, 12, 4), datetime.date(2026, 12, 7)),
        (datetime.date(2026, 12, 5), datetime.date(2026, 12, 7)),
        (datetime.date(2026, 9, 30), datetime.date(2026, 10, 8)),
        (datetime.date(2026, 10, 3), datetime.date(2026, 10, 8)),
    ],
)
def test_next_trading_day(day, following):
    assert CALENDAR.next_trading_day(day) == following


@given(st.datetimes(min_value=datetime.datetime(2026, 1, 1), max_value=datetime.datetime(2027, 12, 31),
                    timezones=st.just(CST)))
def test_the_trading_day_is_a_trading_day_not_before_now(moment):
    day = CALENDAR.trading_day(moment)
    assert CALENDAR.is_trading_day(day)
    assert day >= moment.date()
    # It is the first trading day still to come: none lies in between.
    between = moment.date() + datetime.timedelta(days=1)
    while between < day:
        assert not CALENDAR.is_trading_day(between)
        between += datetime.timedelta(days=1)
    if CALENDAR.phase(moment) is not Phase.CLOSED:
        assert day == moment.date()


# -- the holiday file


def test_holiday_file_of_the_repository():
    holidays = load_holidays(ETC / "holidays.txt")
    calendar = TradingCalendar(holidays)
    assert all(day.weekday() < 5 for day in holidays)
    # From the exchanges' notice for 2026.
    closed = ["2026-01-01", "2026-01-02", "2026-02-16", "2026-02-20", "2026-02-23", "2026-04-06",
              "2026-05-01", "2026-05-05", "2026-06-19", "2026-09-25", "2026-10-01", "2026-10-07"]
    opened = ["2026-01-05", "2026-02-13", "2026-02-24", "2026-04-07", "2026-05-06", "2026-06-22",
              "2026-09-28", "2026-10-08", "2026-12-31"]
    for day in closed:
        assert not calendar.is_trading_day(datetime.date.fromisoformat(day)), day
    for day in opened:
        assert calendar.is_trading_day(datetime.date.fromisoformat(day)), day
    assert calendar.next_trading_day(datetime.date(2026, 2, 13)) == datetime.date(2026, 2, 24)
    assert {day.year for day in holidays} == {2026, 2027}


def test_load_holidays(tmp_path):
    path = tmp_path / "holidays.txt"
    path.write_text(
        "\ufeff# 2026\n"
        "\n"
        "2026-10-01   # 国庆节\n"
        "  2026-10-02\n"
        "2026-10-03# a Saturday: harmless\n",
        encoding="utf-8",
    )
    assert load_holidays(path) == {datetime.date(2026, 10, d) for d in (1, 2, 3)}


@pytest.mark.parametrize(
    "line, message",
    [
        ("2026-13-01", "2026-13-01 is not a date of the calendar"),
        ("2026-02-30", "2026-02-30 is not a date of the calendar"),
        ("20261001", "'20261001' is not a date such as 2026-10-01"),
        ("2026-W40-4", "'2026-W40-4' is not a date such as 2026-10-01"),
        ("2026/10/01", "'2026/10/01' is not a date such as 2026-10-01"),
        ("2026-10-01 2026-10-02", "'2026-10-01 2026-10-02' is not a date such as 2026-10-01"),
        ("国庆节", "'国庆节' is not a date such as 2026-10-01"),
        ("2026-01-01", "2026-01-01 is already on line 2"),
    ],
)
def test_bad_holiday_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "holidays.txt"
    path.write_text(f"# holidays\n2026-01-01\n{line}\n", encoding="utf-8")
    with pytest.raises(ValueError) as raised:
        load_holidays(path)
    assert str(raised.value) == f"{path} line 3: {message}"


def test_missing_holiday_file(tmp_path):
    with pytest.raises(OSError):
        load_holidays(tmp_path / "absent.txt")
