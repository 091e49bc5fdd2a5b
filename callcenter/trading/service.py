"""
The trading subsystem's service: the Python API other subsystems trade
through (L{ITradingService}), wired to the books (L{ledger}), the exchange
gateway, market data and price alerts.

An order is acknowledged only once it is durably booked; it is sent to the
exchange after.  If the process dies in between, start-up sends what is
still open again, so an acknowledged order is never lost.
"""

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from twisted.application.service import MultiService
from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from callcenter.health import FAILING, OK, Health
from callcenter.interfaces import IHealthCheck
from callcenter.store.batches import GroupCommitter
from callcenter.store.schema import fills, fund_accounts, instruments, orders, positions
from callcenter.trading import alert_book, ledger
from callcenter.trading.alerts import AlertIndex, AlertRule
from callcenter.trading.calendar import Phase
from callcenter.trading.money import format_cny
from callcenter.trading.events import AlertFired, OrderAccepted, OrderCancelled, OrderFilled, OrderRejected
from callcenter.trading.instruments import Instrument, price_limits
from callcenter.trading.interfaces import IExecutionListener, ITradingService
from callcenter.trading.model import LIMIT, MARKET, OPEN_STATES, SIDES, GatewayOrder
from callcenter.trading.reasons import TradingRefused
from callcenter.trading.rules import check_cancel

_log = Logger(namespace="callcenter.trading")

ALERT_KINDS = ("price_above", "price_below", "change_up", "change_down")
REARM_POLICIES = ("once", "daily", "recross")
REPORT_RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class Quote:
    instrument: Instrument
    tick: object  # the latest Tick, or None before the first
    limit_down_fen: int
    limit_up_fen: int


def _load_instruments(connection):
    return [Instrument(**row) for row in connection.execute(sa.select(instruments)).mappings()]


def _rule(row):
    return AlertRule(
        rule_id=row["rule_id"],
        fund_account_no=row["fund_account_no"],
        code=row["code"],
        exchange=row["exchange"],
        kind=row["kind"],
        threshold=row["threshold"],
        rearm=row["rearm"],
    )


def _apply_batch(connection, batch, fee_schedule, trading_day, now):
    """Apply queued execution reports in order, each in a savepoint; returns what to publish."""
    outcomes = []
    for apply, args in batch:
        if apply is ledger.apply_fill:
            args = (*args, fee_schedule, trading_day)
        savepoint = connection.begin_nested()
        try:
            result = apply(connection, *args, now)
        except ledger.LedgerError as e:
            savepoint.rollback()
            _log.error("execution report not applied: {why}", why=str(e))
            continue
        savepoint.commit()
        if result is not None:
            outcomes.append((_PUBLISHERS[apply], result))
    return outcomes


def _as_dicts(result):
    return [dict(row) for row in result.mappings()]


_PUBLISHERS = {
    ledger.mark_accepted: lambda service, order: service._accepted(order),
    ledger.apply_fill: lambda service, applied: service._filled(applied),
    ledger.apply_cancel: lambda service, applied: service._cancelled(applied),
    ledger.apply_reject: lambda service, applied: service._rejected(applied),
}


@implementer(ITradingService, IExecutionListener, IHealthCheck)
class TradingService(MultiService):
    """
    @param trading_clock: ITradingClock (real, simulated for the demo, set by tests).
    @param calendar: the TradingCalendar.
    @param feed_factory: C{feed_factory(instruments) -> IMarketDataFeed};
        if the feed is a service it runs as our child.
    @param gateway_factory: C{gateway_factory(instruments, feed, phase_of) -> ITradingGateway}.
        Both are made at start, once the instrument master is loaded.
    @param fee_schedule: the FeeSchedule charged.
    @param after_hours: "reject" orders outside sessions, or "queue" them
        for the next session (预埋单).
    """

    def __init__(self, store, bus, reactor, clock, trading_clock, calendar, feed_factory, gateway_factory,
                 fee_schedule, logins, after_hours="reject", watch_interval=1.0):
        super().__init__()
        self._store = store
        self._bus = bus
        self._reactor = reactor
        self._clock = clock
        self.trading_clock = trading_clock
        self.calendar = calendar
        self._feed_factory = feed_factory
        self.feed = None
        self._gateway_factory = gateway_factory
        self.gateway = None
        self.fees = fee_schedule
        self.logins = logins
        self.after_hours = after_hours
        self._instruments = {}
        self._alerts = AlertIndex()
        # Orders are booked by group commit: many share one durable commit.
        self._orders = GroupCommitter(store)
        self._queued_reports = []
        self._applying = None
        self._submitted = set()
        self._last_phase = None
        self._day = None
        self._watch = task.LoopingCall(self._watch_phase)
        self._watch.clock = clock
        self._watch_interval = watch_interval
        self._subscriptions = []
        self._pending = set()
        self.ready = defer.Deferred()
        self._started = None

    # -- life cycle

    def startService(self):
        super().startService()
        self._started = self._start()
        self._started.addErrback(lambda f: _log.failure("trading did not start", f))

    @defer.inlineCallbacks
    def _start(self):
        loaded = yield self._store.transaction(_load_instruments)
        self._instruments = {i.code: i for i in loaded}
        if not self._instruments:
            _log.warn("no instruments: load them with 'callcenter instruments load etc/instruments.csv'")
        instruments = list(self._instruments.values())
        self.feed = self._feed_factory(instruments)
        self.gateway = self._gateway_factory(self._instruments, self.feed, self._gateway_phase)
        self.gateway.set_listener(self)
        rules = yield self._store.transaction(alert_book.load_active_rules)
        for row in rules:
            self._add_rule(row)
        self._subscriptions.append(self.feed.subscribe(self._tick))
        if hasattr(self.feed, "setServiceParent"):
            self.feed.setServiceParent(self)  # a running MultiService starts it at once
        yield self._recover()
        self._last_phase = self.phase()
        self._day = self.trading_day()
        self._watch.start(self._watch_interval, now=False)
        _log.info("trading ready: {instruments} instruments, {rules} alert rules, phase {phase}",
                  instruments=len(self._instruments), rules=len(rules), phase=self._last_phase.name)
        self.ready.callback(None)

    @defer.inlineCallbacks
    def stopService(self):
        if self._watch.running:
            self._watch.stop()
        for subscription in self._subscriptions:
            subscription.cancel()
        self._subscriptions.clear()
        if self._started is not None:
            yield self._started
        if self.gateway is not None:
            self.gateway.stop()
        yield super().stopService()
        # Let execution reports and writes in flight reach the books.
        yield self.flush()

    def check_health(self):
        if self.gateway is None:
            return Health(FAILING, {"reason": "not started (see the log)"})
        return Health(OK, {
            "instruments": len(self._instruments),
            "alert_rules": self._alerts.rule_count,
            "phase": self.phase().label,
            "trading_day": self.trading_day().isoformat(),
        })

    def _background(self, d, what):
        """Track work nobody waits for, so that stopping (and L{flush}) can."""
        self._pending.add(d)
        d.addErrback(lambda f: _log.failure(what, f))
        d.addBoth(lambda _: self._pending.discard(d))
        return d

    def flush(self):
        """Fires once the execution reports and writes in flight now are done."""
        waiting = [*self._pending, self._orders.idle()]
        if self._applying is not None:
            waiting.append(self._applying)
        return defer.DeferredList(waiting)

    # -- time

    def now(self):
        return self.trading_clock.now()

    def phase(self):
        return self.calendar.phase(self.now())

    def trading_day(self):
        return self.calendar.trading_day(self.now())

    def _gateway_phase(self):
        phase = self.phase()
        if self.calendar.matches(phase):
            return "continuous"
        if self.calendar.accepts_orders(phase):
            return "auction"
        return "closed"

    # -- market data

    def instrument(self, code):
        return self._instruments.get(code)

    def quote(self, code):
        instrument = self._instruments.get(code)
        if instrument is None:
            return None
        down, up = price_limits(instrument)
        tick = self.feed.quote(code, instrument.exchange) if self.feed is not None else None
        return Quote(instrument, tick, down, up)

    def _tick(self, tick):
        fired = self._alerts.on_tick(tick)
        if fired:
            self._fired(fired, tick)

    def _fired(self, rules, tick):
        instrument = self._instruments.get(tick.code)
        now = self.now()
        _log.info("{count} price alerts fired on {code} at {price}", count=len(rules), code=tick.code,
                  price=format_cny(tick.last_fen))
        for rule in rules:
            self._bus.publish(AlertFired(
                rule_id=rule.rule_id,
                fund_account_no=rule.fund_account_no,
                code=rule.code,
                name_zh=instrument.name_zh if instrument else "",
                name_en=instrument.name_en if instrument else "",
                kind=rule.kind,
                threshold=rule.threshold,
                last_fen=tick.last_fen,
                prev_close_fen=instrument.prev_close_fen if instrument else 0,
            ))
        once = [rule.rule_id for rule in rules if rule.rearm == "once"]
        self._background(
            self._store.transaction(alert_book.record_fired, [rule.rule_id for rule in rules], once, now),
            "recording fired alerts",
        )

    def _add_rule(self, row):
        instrument = self._instruments.get(row["code"])
        if instrument is None:
            _log.warn("alert rule {rule} names unknown instrument {code}", rule=row["rule_id"], code=row["code"])
            return
        self._alerts.add(_rule(row), instrument.prev_close_fen)

    # -- logging in

    def login(self, fund_account_no, password, origin):
        return self.logins.login(fund_account_no, password, origin)

    def change_password(self, fund_account_no, old_password, new_password, origin):
        return self.logins.change_password(fund_account_no, old_password, new_password, origin)

    # -- orders

    def _session_phase(self, order_type):
        """The phase the rules see; queued orders are checked as if the session were open."""
        phase = self.phase()
        if self.calendar.accepts_orders(phase) or self.after_hours != "queue" or order_type == MARKET:
            return phase
        return Phase.CONTINUOUS

    @defer.inlineCallbacks
    def place_order(self, fund_account_no, code, side, price_fen, quantity, origin,
                    client_order_id=None, order_type=LIMIT):
        instrument = self._instruments.get(code)
        if side not in SIDES or order_type not in (LIMIT, MARKET):
            raise ValueError(f"side {side!r} / order type {order_type!r}")
        request = ledger.OrderRequest(
            fund_account_no=fund_account_no,
            client_order_id=client_order_id or uuid.uuid4().hex,
            code=code,
            side=side,
            order_type=order_type,
            price_fen=price_fen,
            quantity=quantity,
        )
        if instrument is None:
            yield self._store.transaction(ledger.refuse_order, request, origin, "unknown_instrument", self.now())
            raise TradingRefused("unknown_instrument")
        _, limit_up = price_limits(instrument)
        placed = yield self._orders.submit(
            ledger.place_order, request, instrument, self._session_phase(order_type), self.trading_day(),
            self.fees, origin, self.now(), limit_up,
        )
        if placed.refused is not None:
            refusal = placed.refused
            self._bus.publish(OrderRejected(
                order_no=None, fund_account_no=fund_account_no, code=code, reason=refusal.reason.code,
                correlation_id=origin.correlation_id or request.client_order_id,
            ))
            raise refusal
        order = dict(placed.order, duplicate=placed.duplicate)
        if not placed.duplicate:
            self._submit_if_open(order)
        return order

    def _submit_if_open(self, order):
        if order["order_no"] in self._submitted or order["status"] not in OPEN_STATES:
            return
        if not self.calendar.accepts_orders(self.phase()):
            return  # queued: sent when the session opens
        if order["trading_day"] != self.trading_day().isoformat():
            return
        self._submitted.add(order["order_no"])
        self.gateway.submit(GatewayOrder(
            order_no=order["order_no"],
            code=order["code"],
            exchange=order["exchange"],
            side=order["side"],
            order_type=order["order_type"],
            price_fen=order["price_fen"],
            quantity=order["quantity"] - order["filled_quantity"],
        ))

    @defer.inlineCallbacks
    def cancel_order(self, fund_account_no, order_no, origin):
        try:
            check_cancel(self.phase())
        except TradingRefused as refusal:
            yield self._store.transaction(
                ledger.refuse_cancel, fund_account_no, order_no, origin, refusal.reason.code, self.now()
            )
            raise
        order = yield self._orders.submit(ledger.request_cancel, fund_account_no, order_no, origin, self.now())
        if isinstance(order, TradingRefused):
            raise order
        if order_no in self._submitted:
            self.gateway.cancel(order_no)
        else:
            # Never reached the exchange (queued): cancel it here.
            self._report(ledger.apply_cancel, order_no)
        return order

    # -- execution reports: group-committed, in arrival order

    def _report(self, apply, *args):
        """
        Queue a report for the books.  One writer applies everything queued
        in one transaction (one fsync however many fills arrived), each
        report in its own savepoint, so a bad report is logged and skipped
        without undoing the others; events go out once it has committed.
        """
        self._queued_reports.append((apply, args))
        if self._applying is None:
            self._applying = self._apply_reports()
        return self._applying

    @defer.inlineCallbacks
    def _apply_reports(self):
        try:
            while self._queued_reports:
                batch, self._queued_reports = self._queued_reports, []
                try:
                    outcomes = yield self._store.transaction(
                        _apply_batch, batch, self.fees, self.trading_day(), self.now()
                    )
                except Exception:
                    # Nothing of the batch was applied (the database is
                    # unreachable, say): keep it first in line and retry.
                    _log.failure("execution reports not applied ({n}); retrying", n=len(batch))
                    self._queued_reports[:0] = batch
                    yield task.deferLater(self._clock, REPORT_RETRY_SECONDS, lambda: None)
                    continue
                for publish, result in outcomes:
                    publish(self, result)
        finally:
            self._applying = None

    def order_accepted(self, order_no):
        self._report(ledger.mark_accepted, order_no)

    def order_filled(self, order_no, exec_id, quantity, price_fen):
        self._report(ledger.apply_fill, order_no, exec_id, quantity, price_fen)

    def order_cancelled(self, order_no, quantity):
        self._report(ledger.apply_cancel, order_no)

    def order_rejected(self, order_no, code):
        self._report(ledger.apply_reject, order_no, code)

    def _accepted(self, order):
        self._bus.publish(OrderAccepted(
            order_no=order["order_no"], fund_account_no=order["fund_account_no"], code=order["code"],
            side=order["side"], price_fen=order["price_fen"], quantity=order["quantity"],
            channel=order["channel"],
        ))

    def _filled(self, applied):
        order = applied.order
        instrument = self._instruments.get(order["code"])
        if order["status"] not in OPEN_STATES:
            self._submitted.discard(order["order_no"])
        self._bus.publish(OrderFilled(
            order_no=order["order_no"], fund_account_no=order["fund_account_no"], code=order["code"],
            name_zh=instrument.name_zh if instrument else "", name_en=instrument.name_en if instrument else "",
            side=order["side"], quantity=applied.quantity, price_fen=applied.price_fen,
            filled_quantity=order["filled_quantity"], order_quantity=order["quantity"], status=order["status"],
        ))

    def _cancelled(self, applied):
        order = applied.order
        self._submitted.discard(order["order_no"])
        self._bus.publish(OrderCancelled(
            order_no=order["order_no"], fund_account_no=order["fund_account_no"], code=order["code"],
            cancelled_quantity=order["quantity"] - order["filled_quantity"],
        ))

    def _rejected(self, applied):
        order = applied.order
        self._submitted.discard(order["order_no"])
        self._bus.publish(OrderRejected(
            order_no=order["order_no"], fund_account_no=order["fund_account_no"], code=order["code"],
            reason=order["reject_code"],
        ))

    # -- sessions: queued orders go out at the open; the close ends the day

    def _watch_phase(self):
        day = self.trading_day()
        if day != self._day:
            self._day = day
            # Daily alert rules fire again.  Previous closes stay as loaded:
            # the instrument master is updated by the end-of-day load
            # (callcenter instruments load), read at the next start.
            self._alerts.new_day({})
        phase = self.phase()
        previous, self._last_phase = self._last_phase, phase
        if phase == previous:
            return
        _log.info("trading phase {phase}", phase=phase.name)
        if self.calendar.accepts_orders(phase) and not self.calendar.accepts_orders(previous):
            self._background(self._send_queued(), "sending queued orders")
        if phase == Phase.CLOSED and previous == Phase.CLOSING_AUCTION:
            self.gateway.close_day()

    @defer.inlineCallbacks
    def _send_queued(self):
        for order in (yield self._store.transaction(ledger.open_orders)):
            self._submit_if_open(order)

    @defer.inlineCallbacks
    def _recover(self):
        """
        After a restart: orders of earlier days expire (their cash and
        shares are released); today's open orders go to the exchange again
        for what is unfilled.
        """
        today = self.trading_day().isoformat()
        for order in (yield self._store.transaction(ledger.open_orders)):
            if order["trading_day"] < today:
                yield self._report(ledger.apply_cancel, order["order_no"])
            else:
                self._submit_if_open(order)

    # -- queries

    def funds(self, fund_account_no):
        def work(connection):
            account = connection.execute(
                sa.select(fund_accounts.c.cash_available_fen, fund_accounts.c.cash_frozen_fen).where(
                    fund_accounts.c.account_no == fund_account_no
                )
            ).first()
            if account is None:
                raise TradingRefused("account_not_found")
            held = connection.execute(
                sa.select(positions.c.code, positions.c.quantity).where(
                    positions.c.fund_account_no == fund_account_no, positions.c.quantity > 0
                )
            ).all()
            return account, held

        def value(result):
            account, held = result
            market_value = sum(quantity * self._mark(code) for code, quantity in held)
            return {
                "available_fen": account.cash_available_fen,
                "frozen_fen": account.cash_frozen_fen,
                "market_value_fen": market_value,
                "total_fen": account.cash_available_fen + account.cash_frozen_fen + market_value,
            }

        return self._store.transaction(work).addCallback(value)

    def _mark(self, code):
        """The price a holding is valued at: the last trade, else the previous close."""
        instrument = self._instruments.get(code)
        if instrument is None:
            return 0
        tick = self.feed.quote(code, instrument.exchange) if self.feed is not None else None
        return tick.last_fen if tick is not None else instrument.prev_close_fen

    def positions(self, fund_account_no):
        today = self.trading_day().isoformat()

        def work(connection):
            return _as_dicts(connection.execute(
                sa.select(positions)
                .where(positions.c.fund_account_no == fund_account_no, positions.c.quantity > 0)
                .order_by(positions.c.code)
            ))

        def shaped(rows):
            for row in rows:
                bought_today = row["bought_today"] if row["trading_day"] >= today else 0
                row["sellable"] = row["quantity"] - bought_today - row["frozen"]
                row["last_fen"] = self._mark(row["code"])
                row["market_value_fen"] = row["quantity"] * row["last_fen"]
                instrument = self._instruments.get(row["code"])
                row["name_zh"] = instrument.name_zh if instrument else ""
                row["name_en"] = instrument.name_en if instrument else ""
            return rows

        return self._store.transaction(work).addCallback(shaped)

    def orders(self, fund_account_no, trading_day=None):
        day = (trading_day or self.trading_day()).isoformat()
        return self._store.transaction(lambda c: _as_dicts(c.execute(
            sa.select(orders)
            .where(orders.c.fund_account_no == fund_account_no, orders.c.trading_day == day)
            .order_by(orders.c.order_no.desc())
        )))

    def order(self, fund_account_no, order_no):
        def work(connection):
            row = connection.execute(
                sa.select(orders).where(orders.c.order_no == order_no, orders.c.fund_account_no == fund_account_no)
            ).mappings().first()
            return dict(row) if row else None

        return self._store.transaction(work)

    def fills(self, fund_account_no, trading_day=None):
        day = (trading_day or self.trading_day()).isoformat()
        return self._store.transaction(lambda c: _as_dicts(c.execute(
            sa.select(fills, orders.c.code, orders.c.side)
            .select_from(fills.join(orders))
            .where(orders.c.fund_account_no == fund_account_no, orders.c.trading_day == day)
            .order_by(fills.c.fill_id)
        )))

    # -- price alerts

    def alert_rules(self, fund_account_no):
        return self._store.transaction(alert_book.rules_of, fund_account_no)

    @defer.inlineCallbacks
    def add_alert_rule(self, fund_account_no, code, kind, threshold, rearm, origin):
        instrument = self._instruments.get(code)
        if instrument is None:
            raise TradingRefused("unknown_instrument")
        if kind not in ALERT_KINDS or rearm not in REARM_POLICIES or not isinstance(threshold, int) \
                or threshold <= 0:
            raise TradingRefused("bad_alert_rule")
        row = yield self._store.transaction(
            alert_book.add_alert_rule, fund_account_no, instrument, kind, threshold, rearm, origin, self.now()
        )
        self._add_rule(row)
        return row["rule_id"]

    @defer.inlineCallbacks
    def remove_alert_rule(self, fund_account_no, rule_id, origin):
        yield self._store.transaction(alert_book.remove_alert_rule, fund_account_no, rule_id, origin, self.now())
        self._alerts.remove(rule_id)
