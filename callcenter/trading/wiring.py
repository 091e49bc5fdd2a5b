"""Assembling the trading subsystem from its configuration."""

from callcenter.interfaces import IWebAPI
from callcenter.trading.accounts import Logins
from callcenter.trading.api import TradingAPI
from callcenter.trading.calendar import TradingCalendar, load_holidays
from callcenter.trading.clock import SimulatedTradingDayClock, SystemTradingClock
from callcenter.trading.exchange import SimulatedExchange
from callcenter.trading.fees import FeeSchedule
from callcenter.trading.interfaces import IInvestorSessions, ITradingService
from callcenter.trading.marketdata import CsvReplayFeed, RandomWalkFeed
from callcenter.trading.service import TradingService
from callcenter.trading.sessions import InvestorSessions


def trading_service(config, context):
    # The config checked both files already.
    calendar = TradingCalendar(load_holidays(config.holidays))
    if config.clock == "simulated":
        trading_clock = SimulatedTradingDayClock(context.reactor, calendar)
    else:
        trading_clock = SystemTradingClock(context.reactor)

    def feed(instruments):
        if config.replay_file:
            return CsvReplayFeed(context.clock, config.replay_file, speed=config.replay_speed)
        return RandomWalkFeed(context.clock, instruments, seed=config.seed, interval=config.tick_interval)

    def gateway(instruments, market, phase_of):
        return SimulatedExchange(context.clock, market, instruments, phase_of)

    fees = FeeSchedule(
        commission_rate_ppm=config.commission_rate_ppm,
        commission_minimum_fen=config.commission_minimum_fen,
        stamp_duty_ppm=config.stamp_duty_ppm,
        transfer_fee_ppm=config.transfer_fee_ppm,
    )
    logins = Logins(context.store, context.reactor, trading_clock.now, max_attempts=config.login_attempts)
    service = TradingService(
        context.store, context.bus, context.reactor, context.clock, trading_clock, calendar, feed, gateway,
        fees, logins, after_hours=config.after_hours,
    )
    context.components.provide(ITradingService, service)
    sessions = InvestorSessions(context.store, context.clock, idle_timeout=config.session_idle)
    context.components.provide(IInvestorSessions, sessions)
    context.components.provide(IWebAPI, TradingAPI(service, context.store, context.clock, sessions=sessions))
    return service
