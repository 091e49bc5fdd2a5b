"""
The time the trading rules see (L{ITradingClock}): the real one, one that
tests set, and one for demos that is always in continuous trading.
"""

import datetime

from zope.interface import implementer

from callcenter.trading.calendar import CHINA_STANDARD_TIME, china_time
from callcenter.trading.interfaces import ITradingClock

_MORNING_OPEN = datetime.time(9, 30)
_MORNING_MINUTES = 120  # 9:30-11:30
_AFTERNOON_OPEN = datetime.time(13, 0)
# 9:30-11:30 and 13:00-14:57: the closing call auction starts at 14:57.
CONTINUOUS_MINUTES = 237


@implementer(ITradingClock)
class SystemTradingClock:
    """The real time, read from C{reactor.seconds()} (IReactorTime)."""

    def __init__(self, reactor):
        self._reactor = reactor

    def now(self):
        return datetime.datetime.fromtimestamp(self._reactor.seconds(), CHINA_STANDARD_TIME)


@implementer(ITradingClock)
class FixedTradingClock:
    """A time that stands still until a test sets or advances it."""

    def __init__(self, moment):
        self.set(moment)

    def set(self, moment):
        self._now = china_time(moment)

    def advance(self, seconds):
        self._now += datetime.timedelta(seconds=seconds)

    def now(self):
        return self._now


@implementer(ITradingClock)
class SimulatedTradingDayClock:
    """
    A continuous trading session at any hour, so that a newcomer can place
    an order at 3 a.m. on a Sunday.

    The mapping, from the real time in China Standard Time:
      - the date is the real date if that is a trading day, else the next
        trading day (so a holiday weekend shows the coming trading day);
      - the time of day is the real time since midnight, modulo
        C{session_minutes}, counted from 9:30 through the continuous
        session: the first 120 minutes are 9:30-11:30, the rest from
        13:00 on, lunch skipped.  With the default of 237 minutes (the
        whole continuous session), real 00:00 shows 9:30, real 02:00 shows
        13:00, real 03:57 shows 9:30 again.

    So the time moves forward at real speed and wraps around to 9:30 every
    C{session_minutes}; it is never in an auction, a break or after the
    close, and at real midnight the day moves on, so orders left open
    expire as they would overnight.
    """

    def __init__(self, reactor, calendar, session_minutes=CONTINUOUS_MINUTES):
        if not 1 <= session_minutes <= CONTINUOUS_MINUTES:
            raise ValueError(f"session_minutes must be 1 to {CONTINUOUS_MINUTES}, not {session_minutes!r}")
        self._reactor = reactor
        self._calendar = calendar
        self._session = datetime.timedelta(minutes=session_minutes)

    def now(self):
        real = datetime.datetime.fromtimestamp(self._reactor.seconds(), CHINA_STANDARD_TIME)
        day = real.date()
        if not self._calendar.is_trading_day(day):
            day = self._calendar.next_trading_day(day)
        since_midnight = real - real.replace(hour=0, minute=0, second=0, microsecond=0)
        into_session = since_midnight % self._session
        morning = datetime.timedelta(minutes=_MORNING_MINUTES)
        if into_session < morning:
            start, offset = _MORNING_OPEN, into_session
        else:
            start, offset = _AFTERNOON_OPEN, into_session - morning
        return datetime.datetime.combine(day, start, CHINA_STANDARD_TIME) + offset
