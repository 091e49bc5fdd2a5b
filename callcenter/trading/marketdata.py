"""
Simulated market data: L{IMarketDataFeed}s that make up quotes with a seeded
random walk (L{RandomWalkFeed}) or replay them from a file (L{CsvReplayFeed}).
Both are services that tick only while running.
"""

import csv
import math
import random
from decimal import Decimal, InvalidOperation

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from callcenter.trading.instruments import price_limits
from callcenter.trading.interfaces import IMarketDataFeed
from callcenter.trading.model import Tick


class _Subscription:
    def __init__(self, handlers, key):
        self._handlers = handlers
        self._key = key

    def cancel(self):
        self._handlers.pop(self._key, None)


@implementer(IMarketDataFeed)
class _PublishingFeed(Service):
    """Keeps the latest tick of each instrument and hands each new one to the subscribers."""

    log = Logger()

    def __init__(self):
        self._latest = {}
        self._handlers = {}
        self._next_key = 0

    def subscribe(self, handler):
        self._next_key += 1
        self._handlers[self._next_key] = handler
        return _Subscription(self._handlers, self._next_key)

    def quote(self, code, exchange):
        return self._latest.get((code, exchange))

    def _publish(self, tick):
        self._latest[(tick.code, tick.exchange)] = tick
        for key, handler in list(self._handlers.items()):
            if key not in self._handlers:
                continue  # cancelled by an earlier handler of this tick
            try:
                handler(tick)
            except Exception:
                # One broken subscriber must not starve the others, nor stop the feed.
                self.log.failure("market data subscriber {handler!r} failed on a tick of {code}",
                                 handler=handler, code=tick.code)


class _Walk:
    __slots__ = ("instrument", "last_fen", "volume", "down_fen", "up_fen")

    def __init__(self, instrument):
        self.instrument = instrument
        self.last_fen = instrument.prev_close_fen
        self.volume = 0
        self.down_fen, self.up_fen = price_limits(instrument)


class RandomWalkFeed(_PublishingFeed):
    """
    Quotes that wander: every C{interval} seconds some instruments' last
    price moves by a random whole number of fen, at most C{step_bp} basis
    points of the price (at least one fen), never past the day's price
    limits.  The bid and ask are a fen either side of the last price and
    their sizes whole lots; at limit-up nobody sells (ask size 0), at
    limit-down nobody buys (bid size 0).  The same C{seed} gives the same
    prices.

    @param instruments: the L{Instrument}s to quote (an iterable).
    @param per_interval: how many instruments, picked at random, move each
        interval (all of them if None).  Every instrument is quoted once at
        start, so quote() has an answer for each from then on.
    """

    def __init__(self, clock, instruments, seed, interval=1.0, per_interval=None, step_bp=5):
        super().__init__()
        self._clock = clock
        self._rng = random.Random(seed)
        self._walks = [_Walk(instrument) for instrument in instruments]
        self._interval = interval
        self._per_interval = len(self._walks) if per_interval is None else per_interval
        self._step_bp = step_bp
        self._opened = False
        self._loop = LoopingCall(self._step)
        self._loop.clock = clock

    def startService(self):
        super().startService()
        self._loop.start(self._interval, now=True)

    def stopService(self):
        if self._loop.running:
            self._loop.stop()
        return super().stopService()

    def _step(self):
        walks = self._walks
        if self._opened and self._per_interval < len(walks):
            walks = self._rng.sample(walks, self._per_interval)
        self._opened = True
        now = self._clock.seconds()
        for walk in walks:
            self._publish(self._move(walk, now))

    def _move(self, walk, now):
        rng = self._rng
        lot = walk.instrument.lot_size
        reach = max(1, walk.last_fen * self._step_bp // 10000)
        last = min(max(walk.last_fen + rng.randint(-reach, reach), walk.down_fen), walk.up_fen)
        walk.last_fen = last
        walk.volume += rng.randint(1, 20) * lot
        return Tick(
            code=walk.instrument.code,
            exchange=walk.instrument.exchange,
            last_fen=last,
            bid_fen=max(last - 1, walk.down_fen),
            ask_fen=min(last + 1, walk.up_fen),
            bid_size=0 if last == walk.down_fen else rng.randint(1, 50) * lot,
            ask_size=0 if last == walk.up_fen else rng.randint(1, 50) * lot,
            volume=walk.volume,
            at=now,
        )


REPLAY_COLUMNS = ("time", "code", "exchange", "last", "bid", "ask", "bid_size", "ask_size", "volume")


class CsvReplayFeed(_PublishingFeed):
    """
    Ticks played back from a CSV file, C{speed} times faster than recorded.

    The file has a header row and the columns of L{REPLAY_COLUMNS}:

      - C{time}: seconds (C{12.5}) or a time of day (C{09:30:05}); the
        first row plays at start and each later one at its distance from
        the first; rows are in time order;
      - C{code}, C{exchange}: as in C{etc/instruments.csv} (C{SSE}, C{SZSE});
      - C{last}, C{bid}, C{ask}: prices in CNY with at most two decimals;
      - C{bid_size}, C{ask_size}: shares; C{volume}: shares traded since the open.

    The whole file is read and checked when the feed is made: a bad line is
    a ValueError naming the file and line.  The replay plays once from the
    start each time the service starts.
    """

    def __init__(self, clock, path, speed=1.0):
        super().__init__()
        if speed <= 0:
            raise ValueError(f"replay speed must be positive, not {speed}")
        self._clock = clock
        self._speed = speed
        self._rows = load_replay(path)
        self._next = 0
        self._started_at = None
        self._call = None

    def startService(self):
        super().startService()
        self._next = 0
        self._started_at = self._clock.seconds()
        self._schedule()

    def stopService(self):
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        return super().stopService()

    def _schedule(self):
        if self._next == len(self._rows):
            self._call = None
            return
        offset = self._rows[self._next][0]
        # Scheduled from the start, not from the previous tick, so delays do not add up.
        due = self._started_at + offset / self._speed
        self._call = self._clock.callLater(max(0.0, due - self._clock.seconds()), self._play, offset)

    def _play(self, offset):
        now = self._clock.seconds()
        while self._next < len(self._rows) and self._rows[self._next][0] == offset:
            fields = self._rows[self._next][1]
            self._next += 1
            self._publish(Tick(*fields, at=now))
        self._schedule()


def load_replay(path):
    """[(seconds from the first row, Tick fields without C{at})] of a replay file."""
    rows = []
    with open(path, newline="", encoding="utf-8") as lines:
        reader = csv.reader(lines)
        header = next(reader, None)
        if header is None or tuple(column.strip() for column in header) != REPLAY_COLUMNS:
            raise ValueError(f"{path}, line 1: the header must be {','.join(REPLAY_COLUMNS)}")
        first = previous = None
        for row in reader:
            where = f"{path}, line {reader.line_num}"
            if not row:
                continue
            if len(row) != len(REPLAY_COLUMNS):
                raise ValueError(f"{where}: {len(row)} fields, expected {len(REPLAY_COLUMNS)}")
            try:
                at, code, exchange, last, bid, ask, bid_size, ask_size, volume = (field.strip() for field in row)
                seconds = _seconds(at)
                fields = (code, exchange, _fen(last), _fen(bid), _fen(ask),
                          _shares(bid_size), _shares(ask_size), _shares(volume))
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from None
            if not code or not exchange:
                raise ValueError(f"{where}: code and exchange are required")
            if previous is not None and seconds < previous:
                raise ValueError(f"{where}: time {at} is earlier than the line before")
            if first is None:
                first = seconds
            previous = seconds
            rows.append((seconds - first, fields))
    return rows


def _seconds(text):
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3 or not all(part.isdigit() for part in parts):
            raise ValueError(f"time {text!r} is not HH:MM:SS")
        hours, minutes, seconds = (int(part) for part in parts)
        if minutes > 59 or seconds > 59:
            raise ValueError(f"time {text!r} is not HH:MM:SS")
        return hours * 3600 + minutes * 60 + seconds
    value = float(text)
    if not 0 <= value < math.inf:
        raise ValueError(f"time {text!r} is not a number of seconds")
    return value


def _fen(text):
    """A price in CNY (C{"13.50"}) as integer fen, exactly."""
    try:
        fen = Decimal(text) * 100
    except InvalidOperation:
        raise ValueError(f"price {text!r} is not a number") from None
    if not fen.is_finite() or fen != fen.to_integral_value() or fen <= 0:
        raise ValueError(f"price {text!r} is not a positive amount in fen")
    return int(fen)


def _shares(text):
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a whole number of shares")
    return int(text)
