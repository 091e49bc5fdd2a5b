"""
When the Shanghai and Shenzhen stock exchanges trade: trading days (weekdays
that are not exchange holidays) and the phases of a trading day, in China
Standard Time.  Both exchanges keep the same hours for shares (SSE and SZSE
trading rules, chapter 3: call auction 9:15-9:25, continuous auction
9:30-11:30 and 13:00-14:57, closing call auction 14:57-15:00).
"""

import bisect
import datetime
import enum
import re

# China has not observed daylight saving time since 1991, so a fixed offset
# is exact and needs no time zone database.
CHINA_STANDARD_TIME = datetime.timezone(datetime.timedelta(hours=8), "CST")


class Phase(enum.Enum):
    """
    A part of the trading day, with what happens in it:

      - C{accepts_orders}: the exchange takes new orders now.  Outside
        these phases the order service refuses orders or, if so
        configured, queues them (预埋单) until the next phase that takes
        them.
      - C{allows_cancel}: cancels are taken now; for queued orders the
        broker cancels them itself.
      - C{matches}: orders trade against each other as they arrive.  In
        the call auctions orders are collected and uncrossed once, at 9:25
        and at 15:00.
    """

    # The label keeps phases with the same flags apart: an Enum makes
    # members with equal values aliases of one another.
    #                         accepts_orders  allows_cancel  matches
    PRE_OPEN = ("pre_open", False, True, False)
    OPENING_AUCTION = ("opening_auction", True, True, False)
    # From 9:20 the exchanges refuse cancels so that the opening price
    # cannot be moved by orders that were never meant to trade.
    OPENING_AUCTION_LOCKED = ("opening_auction_locked", True, False, False)
    # 9:25-9:30: the exchanges take orders and cancels but process them
    # only from 9:30.
    PRE_CONTINUOUS = ("pre_continuous", True, True, False)
    CONTINUOUS = ("continuous", True, True, True)
    LUNCH_BREAK = ("lunch_break", False, True, False)
    CLOSING_AUCTION = ("closing_auction", True, False, False)
    CLOSED = ("closed", False, True, False)

    def __init__(self, label, accepts_orders, allows_cancel, matches):
        self.label = label
        self.accepts_orders = accepts_orders
        self.allows_cancel = allows_cancel
        self.matches = matches


# The phases of a trading day, each from its start time to the next one's.
_SCHEDULE = (
    (datetime.time(0, 0), Phase.PRE_OPEN),
    (datetime.time(9, 15), Phase.OPENING_AUCTION),
    (datetime.time(9, 20), Phase.OPENING_AUCTION_LOCKED),
    (datetime.time(9, 25), Phase.PRE_CONTINUOUS),
    (datetime.time(9, 30), Phase.CONTINUOUS),
    (datetime.time(11, 30), Phase.LUNCH_BREAK),
    (datetime.time(13, 0), Phase.CONTINUOUS),
    (datetime.time(14, 57), Phase.CLOSING_AUCTION),
    (datetime.time(15, 0), Phase.CLOSED),
)
_STARTS = [start for start, _ in _SCHEDULE]
CLOSE = datetime.time(15, 0)

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def china_time(moment):
    """An aware datetime as China Standard Time."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} has no time zone: trading times must be aware datetimes")
    return moment.astimezone(CHINA_STANDARD_TIME)


class TradingCalendar:
    """
    @param holidays: the dates the exchanges are closed on besides
        weekends (L{load_holidays}).
    """

    def __init__(self, holidays=()):
        self.holidays = frozenset(holidays)

    def is_trading_day(self, day):
        return day.weekday() < 5 and day not in self.holidays

    def next_trading_day(self, day):
        """The first trading day after C{day}."""
        day += datetime.timedelta(days=1)
        while not self.is_trading_day(day):
            day += datetime.timedelta(days=1)
        return day

    def phase(self, moment):
        """The L{Phase} at C{moment}, an aware datetime in any time zone."""
        local = china_time(moment)
        if not self.is_trading_day(local.date()):
            return Phase.CLOSED
        return _SCHEDULE[bisect.bisect_right(_STARTS, local.time()) - 1][1]

    def trading_day(self, moment):
        """
        The trading day an order placed at C{moment} belongs to: the day
        itself until the 15:00 close of a trading day, else the next
        trading day (that of an order queued overnight, 预埋单).
        """
        local = china_time(moment)
        day = local.date()
        if self.is_trading_day(day) and local.time() < CLOSE:
            return day
        return self.next_trading_day(day)

    # What a phase allows, asked of the calendar by the order service.
    @staticmethod
    def accepts_orders(phase):
        return phase.accepts_orders

    @staticmethod
    def allows_cancel(phase):
        return phase.allows_cancel

    @staticmethod
    def matches(phase):
        return phase.matches


def load_holidays(path):
    """
    The dates listed in the file at C{path}: one ISO date (C{2026-10-01})
    per line; blank lines and everything after a C{#} are ignored.

    @raise ValueError: a line that is not one date, or a date listed
        twice, naming the file and line.
    @raise OSError: the file cannot be read.
    """
    holidays = {}
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            where = f"{path} line {number}"
            # fromisoformat alone would also take 20261001 and 2026-W40-4.
            if not _ISO_DATE.fullmatch(text):
                raise ValueError(f"{where}: {text!r} is not a date such as 2026-10-01")
            try:
                day = datetime.date.fromisoformat(text)
            except ValueError:
                raise ValueError(f"{where}: {text} is not a date of the calendar") from None
            if day in holidays:
                raise ValueError(f"{where}: {text} is already on line {holidays[day]}")
            holidays[day] = number
    return frozenset(holidays)
