"""Simulated market data: the seeded random walk and the CSV replay, both driven by a Clock."""

import csv
import os
from decimal import Decimal

import pytest
from twisted.internet.task import Clock
from twisted.logger import Logger
from zope.interface.verify import verifyObject

from callcenter.trading.instruments import Instrument, price_limits
from callcenter.trading.interfaces import IMarketDataFeed
from callcenter.trading.marketdata import CsvReplayFeed, RandomWalkFeed
from callcenter.trading.model import Tick

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = os.path.join(ROOT, "etc", "replay-sample.csv")

SPD_BANK = Instrument("600000", "SSE", "浦发银行", "SPD Bank", "main", 1350)
MOUTAI = Instrument("600519", "SSE", "贵州茅台", "Kweichow Moutai", "main", 145000)
MONTAGE = Instrument("688008", "SSE", "澜起科技", "Montage Technology", "star", 9050, lot_size=200)
BOE = Instrument("000725", "SZSE", "京东方A", "BOE Technology", "main", 418)
INSTRUMENTS = (SPD_BANK, MOUTAI, MONTAGE, BOE)


def recorded(feed):
    ticks = []
    feed.subscribe(ticks.append)
    return ticks


def walk(seed, steps=50, **options):
    clock = Clock()
    feed = RandomWalkFeed(clock, INSTRUMENTS, seed, interval=1.0, **options)
    ticks = recorded(feed)
    feed.startService()
    clock.pump([1.0] * steps)
    feed.stopService()
    return ticks


def test_is_a_market_data_feed():
    assert verifyObject(IMarketDataFeed, RandomWalkFeed(Clock(), INSTRUMENTS, 1))
    assert verifyObject(IMarketDataFeed, CsvReplayFeed(Clock(), SAMPLE))


def test_same_seed_same_prices_other_seed_other_prices():
    assert walk(2026) == walk(2026)
    assert [t.last_fen for t in walk(2026)] != [t.last_fen for t in walk(2027)]


def test_ticks_every_interval_while_running_only():
    clock = Clock()
    feed = RandomWalkFeed(clock, INSTRUMENTS, 1, interval=0.5)
    ticks = recorded(feed)
    assert feed.quote("600000", "SSE") is None
    feed.startService()
    assert len(ticks) == 4  # every instrument at start
    clock.advance(0.5)
    assert len(ticks) == 8
    assert {t.at for t in ticks[4:]} == {0.5}
    feed.stopService()
    clock.advance(10)
    assert len(ticks) == 8
    assert feed.quote("600000", "SSE") == ticks[4]


def test_prices_stay_inside_the_limits_on_whole_fen_with_lot_sizes():
    # Big steps, so the walk runs into the limits.
    ticks = walk(7, steps=400, step_bp=300)
    for t in ticks:
        instrument = next(i for i in INSTRUMENTS if i.code == t.code)
        down, up = price_limits(instrument)
        assert all(isinstance(p, int) for p in (t.last_fen, t.bid_fen, t.ask_fen))
        assert down <= t.bid_fen <= t.last_fen <= t.ask_fen <= up
        assert t.bid_size % instrument.lot_size == 0 and t.ask_size % instrument.lot_size == 0
        if t.last_fen == up:
            assert t.ask_size == 0  # nobody sells at limit-up
        if t.last_fen == down:
            assert t.bid_size == 0
    assert set(price_limits(SPD_BANK)) & {t.last_fen for t in ticks}


def test_volume_only_grows():
    ticks = [t for t in walk(3) if t.code == "600519"]
    volumes = [t.volume for t in ticks]
    assert volumes == sorted(volumes) and volumes[0] > 0


def test_a_random_subset_moves_each_interval():
    ticks = walk(5, steps=10, per_interval=2)
    assert len(ticks) == 4 + 10 * 2
    assert len({t.code for t in ticks[4:]}) > 2


def test_failing_subscriber_is_logged_and_the_others_still_hear():
    clock = Clock()
    feed = RandomWalkFeed(clock, INSTRUMENTS, 1)
    events = []
    feed.log = Logger(observer=events.append)

    def broken(tick):
        raise RuntimeError("subscriber bug")

    feed.subscribe(broken)
    ticks = recorded(feed)
    feed.startService()
    clock.advance(1)
    assert len(ticks) == 8
    assert len(events) == 8 and all("log_failure" in event for event in events)
    feed.stopService()


def test_cancelled_subscription_hears_nothing_more():
    clock = Clock()
    feed = RandomWalkFeed(clock, INSTRUMENTS, 1)
    ticks = []
    subscription = feed.subscribe(ticks.append)
    feed.startService()
    subscription.cancel()
    subscription.cancel()
    clock.advance(1)
    assert len(ticks) == 4
    feed.stopService()


# -- replay


def replay_file(tmp_path, *rows, header="time,code,exchange,last,bid,ask,bid_size,ask_size,volume"):
    path = tmp_path / "ticks.csv"
    path.write_text("\n".join((header,) + rows) + "\n", encoding="utf-8")
    return str(path)


def test_replay_plays_at_the_recorded_pace_times_the_speed(tmp_path):
    path = replay_file(
        tmp_path,
        "09:30:00,600000,SSE,13.50,13.49,13.51,1000,2000,100",
        "09:30:00,600519,SSE,1450.00,1449.90,1450.10,100,200,300",
        "09:30:03,600000,SSE,13.52,13.51,13.53,1000,2000,5000",
        "09:30:09,600000,SSE,13.48,13.47,13.49,1000,2000,9000",
    )
    clock = Clock()
    clock.advance(1000)
    feed = CsvReplayFeed(clock, path, speed=3.0)
    ticks = recorded(feed)
    feed.startService()
    clock.advance(0)
    assert ticks == [
        Tick("600000", "SSE", 1350, 1349, 1351, 1000, 2000, 100, 1000.0),
        Tick("600519", "SSE", 145000, 144990, 145010, 100, 200, 300, 1000.0),
    ]
    clock.advance(0.9)
    assert len(ticks) == 2
    clock.advance(0.1)
    assert [t.last_fen for t in ticks] == [1350, 145000, 1352]
    clock.advance(2)
    assert [t.last_fen for t in ticks] == [1350, 145000, 1352, 1348]
    assert feed.quote("600000", "SSE").last_fen == 1348
    clock.advance(100)
    assert len(ticks) == 4


def test_replay_times_in_seconds_and_stopping(tmp_path):
    path = replay_file(
        tmp_path,
        "0,600000,SSE,13.50,13.49,13.51,1000,2000,100",
        "2.5,600000,SSE,13.51,13.50,13.52,1000,2000,200",
        "5,600000,SSE,13.52,13.51,13.53,1000,2000,300",
    )
    clock = Clock()
    feed = CsvReplayFeed(clock, path)
    ticks = recorded(feed)
    feed.startService()
    clock.advance(0)
    clock.advance(2.5)
    assert [t.volume for t in ticks] == [100, 200]
    feed.stopService()
    clock.advance(10)
    assert len(ticks) == 2


@pytest.mark.parametrize(
    "row, complaint",
    [
        ("09:30:00,600000,SSE,13.50,13.49,13.51,1000,2000", "fields"),
        ("09:30:00,600000,SSE,13.505,13.49,13.51,1000,2000,100", "fen"),
        ("09:30:00,600000,SSE,abc,13.49,13.51,1000,2000,100", "not a number"),
        ("09:30:00,600000,SSE,13.50,13.49,13.51,-5,2000,100", "shares"),
        ("9:3,600000,SSE,13.50,13.49,13.51,1000,2000,100", "HH:MM:SS"),
        ("09:29:00,600000,SSE,13.50,13.49,13.51,1000,2000,100", "earlier"),
        ("09:31:00,,SSE,13.50,13.49,13.51,1000,2000,100", "required"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, row, complaint):
    path = replay_file(tmp_path, "09:30:00,600000,SSE,13.50,13.49,13.51,1000,2000,100", row)
    with pytest.raises(ValueError, match=complaint) as raised:
        CsvReplayFeed(Clock(), path)
    assert str(raised.value).startswith(f"{path}, line 3:")


def test_bad_header_is_refused(tmp_path):
    path = replay_file(tmp_path, "09:30:00,600000,SSE,13.50,13.49,13.51,1000,2000,100", header="time,code,price")
    with pytest.raises(ValueError, match="line 1"):
        CsvReplayFeed(Clock(), path)


def test_the_sample_file_replays_real_instruments_inside_their_limits():
    with open(os.path.join(ROOT, "etc", "instruments.csv"), newline="", encoding="utf-8") as lines:
        known = {(row["code"], row["exchange"]): row for row in csv.DictReader(lines)}
    clock = Clock()
    feed = CsvReplayFeed(clock, SAMPLE)
    ticks = recorded(feed)
    feed.startService()
    clock.advance(3600)
    assert len(ticks) >= 24 and len({t.code for t in ticks}) >= 2
    for t in ticks:
        row = known[(t.code, t.exchange)]
        instrument = Instrument(t.code, t.exchange, row["name_zh"], row["name_en"], row["board"],
                                int(Decimal(row["prev_close"]) * 100))
        down, up = price_limits(instrument)
        assert down <= t.bid_fen <= t.last_fen <= t.ask_fen <= up
