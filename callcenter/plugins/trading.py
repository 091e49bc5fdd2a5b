from dataclasses import dataclass

from twisted.plugin import IPlugin
from zope.interface import implementer

from callcenter.config import Integer, Kind, Mismatch, Number, OneOf, setting
from callcenter.interfaces import ISubsystem


class HolidayFile(Kind):
    expected = "a readable file of ISO dates, one per line"

    def parse(self, value):
        from callcenter.trading.calendar import load_holidays

        if not isinstance(value, str) or not value:
            raise Mismatch()
        try:
            load_holidays(value)
        except (OSError, ValueError) as e:
            raise Mismatch(str(e))
        return value


class ReplayFile(Kind):
    expected = 'a readable CSV file of ticks, or "" for none'

    def parse(self, value):
        from callcenter.trading.marketdata import load_replay

        if not isinstance(value, str):
            raise Mismatch()
        if value:
            try:
                load_replay(value)
            except (OSError, ValueError) as e:
                raise Mismatch(str(e))
        return value


@dataclass(frozen=True)
class TradingConfig:
    clock: str = setting(
        OneOf("system", "simulated"),
        "system",
        'The time trading rules follow: "system" is the real calendar and sessions; "simulated" '
        "keeps a trading day's continuous session running at any hour, for demos.",
    )
    after_hours: str = setting(
        OneOf("reject", "queue"),
        "reject",
        'Limit orders placed outside the sessions: "reject" them, or "queue" them for the next '
        "session (预埋单).",
    )
    holidays: str = setting(
        HolidayFile(),
        "etc/holidays.txt",
        "File listing the exchanges' holidays, one ISO date per line; update it each December.",
    )
    replay_file: str = setting(
        ReplayFile(),
        "",
        "CSV of ticks to replay as the market (see etc/replay-sample.csv); empty for a seeded random "
        "walk within each stock's price limits.",
    )
    replay_speed: float = setting(Number(0.01, 1000), 1.0, "How much faster than recorded the replay runs.")
    seed: int = setting(Integer(0), 2026, "Seed of the random walk: the same seed gives the same prices.")
    tick_interval: float = setting(Number(0.05, 60), 1.0, "Seconds between random-walk ticks.")
    commission_rate_ppm: int = setting(
        Integer(0, 3000), 250, "Commission in millionths of the traded amount (250 = 0.025%)."
    )
    commission_minimum_fen: int = setting(Integer(0, 10000), 500, "Smallest commission per order, in fen.")
    stamp_duty_ppm: int = setting(Integer(0, 10000), 500, "Stamp duty on sells, in millionths (500 = 0.05%).")
    transfer_fee_ppm: int = setting(Integer(0, 1000), 10, "Transfer fee, in millionths (10 = 0.001%).")
    login_attempts: int = setting(
        Integer(1, 20), 5, "Wrong trading passwords in a row that lock an account (staff unlock it)."
    )
    session_idle: float = setting(
        Number(60, 86400), 1800.0, "Seconds an HTTP API session lasts without use."
    )


@implementer(IPlugin, ISubsystem)
class TradingSubsystem:
    name = "trading"
    description = "Accounts, China A-share order rules, the simulated exchange, market data, price alerts"
    config_schema = TradingConfig

    def makeService(self, config, context):
        from callcenter.trading.wiring import trading_service

        return trading_service(config, context)


trading = TradingSubsystem()
