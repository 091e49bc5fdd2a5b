"""
The counter's books: cash, positions and orders, changed only inside one
database transaction per action, so that what is acknowledged is durable
and what fails leaves nothing half-done.

Every function here blocks and takes a SQLAlchemy connection inside a
transaction (the store's thread pool runs them).  Concurrent actions on one
account are safe on SQLite and PostgreSQL alike because every change of a
balance is a conditional UPDATE (C{... WHERE cash_available_fen >= :amount})
whose row count says whether it happened: two orders racing for the same
cash cannot both freeze it.
"""

import re
from dataclasses import dataclass

import sqlalchemy as sa

from callcenter.store.schema import allowed_callers, fills, fund_accounts, orders, positions
from callcenter.trading import audit
from callcenter.trading.model import (
    ACCEPTED,
    BUY,
    CANCELLED,
    FILLED,
    MARKET,
    NEW,
    OPEN_STATES,
    PARTIALLY_FILLED,
    REJECTED,
)
from callcenter.trading.reasons import TradingRefused
from callcenter.trading.rules import check_order


class LedgerError(Exception):
    """A report that cannot be applied (a gateway bug): logged, never half-applied."""


@dataclass(frozen=True)
class OrderRequest:
    fund_account_no: str
    client_order_id: str
    code: str
    side: str
    order_type: str
    price_fen: int
    quantity: int


@dataclass(frozen=True)
class Placed:
    """
    What L{place_order} did: C{order} is the row, C{duplicate} when it
    already existed; or C{refused}, the L{TradingRefused} to raise once
    the transaction (holding only its audit row) has committed.
    """

    order: dict | None
    duplicate: bool = False
    refused: TradingRefused | None = None

    def result(self):
        if self.refused is not None:
            raise self.refused
        return self


@dataclass(frozen=True)
class Applied:
    """An execution report applied: the order row after it, and what changed."""

    order: dict
    quantity: int = 0
    price_fen: int = 0
    released_fen: int = 0


# The statements on every order's path are built once: SQLAlchemy then
# reuses their compiled form instead of building and walking a new
# expression each time (profiled: that was most of an order's CPU).
# Parameters are named p_* so that they never mean a column in an UPDATE.
_ORDER = sa.select(orders).where(orders.c.order_no == sa.bindparam("p_order_no"))
_ORDER_FOR_UPDATE = _ORDER.with_for_update()
_ORDER_BY_CLIENT_ID = sa.select(orders).where(
    orders.c.fund_account_no == sa.bindparam("p_account"), orders.c.client_order_id == sa.bindparam("p_client_id")
)
_ACCOUNT_STATE = sa.select(fund_accounts.c.locked_at, fund_accounts.c.phone_daily_limit_fen).where(
    fund_accounts.c.account_no == sa.bindparam("p_account")
)
_FREEZE_CASH = (
    fund_accounts.update()
    .where(
        fund_accounts.c.account_no == sa.bindparam("p_account"),
        fund_accounts.c.cash_available_fen >= sa.bindparam("p_amount"),
    )
    .values(
        cash_available_fen=fund_accounts.c.cash_available_fen - sa.bindparam("p_amount"),
        cash_frozen_fen=fund_accounts.c.cash_frozen_fen + sa.bindparam("p_amount"),
    )
)
_POSITION = (
    positions.c.fund_account_no == sa.bindparam("p_account"),
    positions.c.code == sa.bindparam("p_code"),
    positions.c.exchange == sa.bindparam("p_exchange"),
)
_FREEZE_SHARES = (
    positions.update()
    .where(*_POSITION, positions.c.quantity - positions.c.bought_today - positions.c.frozen >= sa.bindparam("p_quantity"))
    .values(frozen=positions.c.frozen + sa.bindparam("p_quantity"))
)
_ROLL = (
    positions.update()
    .where(*_POSITION, positions.c.trading_day < sa.bindparam("p_day"))
    .values(bought_today=0, trading_day=sa.bindparam("p_day"))
)
_INSERT_ORDER = orders.insert()
_FILL_SEEN = sa.select(fills.c.fill_id).where(
    fills.c.order_no == sa.bindparam("p_order_no"), fills.c.exec_id == sa.bindparam("p_exec_id")
)
_INSERT_FILL = fills.insert()


def _order(connection, order_no, for_update=False):
    query = _ORDER_FOR_UPDATE if for_update and connection.dialect.name == "postgresql" else _ORDER
    row = connection.execute(query, {"p_order_no": order_no}).mappings().first()
    return dict(row) if row else None


def order_by_client_id(connection, fund_account_no, client_order_id):
    row = connection.execute(
        _ORDER_BY_CLIENT_ID, {"p_account": fund_account_no, "p_client_id": client_order_id}
    ).mappings().first()
    return dict(row) if row else None


def _roll_position(connection, fund_account_no, code, exchange, trading_day):
    """T+1: what was bought on an earlier trading day is sellable now."""
    connection.execute(
        _ROLL, {"p_account": fund_account_no, "p_code": code, "p_exchange": exchange, "p_day": trading_day.isoformat()}
    )


def sellable(connection, fund_account_no, instrument, trading_day):
    _roll_position(connection, fund_account_no, instrument.code, instrument.exchange, trading_day)
    row = connection.execute(
        sa.select(positions.c.quantity, positions.c.bought_today, positions.c.frozen).where(
            positions.c.fund_account_no == fund_account_no,
            positions.c.code == instrument.code,
            positions.c.exchange == instrument.exchange,
        )
    ).first()
    return 0 if row is None else row.quantity - row.bought_today - row.frozen


def national_number(number):
    """
    A calling number as compared for 主叫限拨: digits only, without China's
    country code, so that a carrier's C{+8613800138001} matches the
    C{13800138001} staff registered.
    """
    digits = re.sub(r"[^0-9+]", "", number or "")
    for prefix in ("+86", "0086"):
        if digits.startswith(prefix):
            return digits[len(prefix):]
    return digits.lstrip("+")


def caller_allowed(connection, fund_account_no, caller):
    """主叫限拨: True when the account has no list, or C{caller} is on it."""
    numbers = {
        national_number(number)
        for number in connection.scalars(
            sa.select(allowed_callers.c.number).where(allowed_callers.c.fund_account_no == fund_account_no)
        )
    }
    # An anonymous caller matches no list.
    return not numbers or (bool(caller) and national_number(caller) in numbers)


def _phone_amount_today(connection, fund_account_no, trading_day):
    total = connection.execute(
        sa.select(sa.func.coalesce(sa.func.sum(orders.c.price_fen * orders.c.quantity), 0)).where(
            orders.c.fund_account_no == fund_account_no,
            orders.c.trading_day == trading_day.isoformat(),
            orders.c.channel == "phone",
            orders.c.status != REJECTED,
        )
    ).scalar()
    return int(total)


def _audit_order(connection, origin, request, outcome, now, order_no=None, reason=None):
    detail = {
        "code": request.code,
        "side": request.side,
        "order_type": request.order_type,
        "price_fen": request.price_fen,
        "quantity": request.quantity,
        "client_order_id": request.client_order_id,
    }
    if order_no is not None:
        detail["order_no"] = order_no
    if reason is not None:
        detail["reason"] = reason
    audit.append(connection, origin, "place_order", outcome, request.fund_account_no, detail, now=now)


def place_order(connection, request, instrument, phase, trading_day, fee_schedule, origin, now, limit_up_fen):
    """
    Check and book an order: freeze the cash of a buy (amount at the
    order's price, or at limit-up for a market buy, plus estimated fees) or
    the shares of a sell, and store it as C{new}.  A retried request (same
    client order id) returns the order it made the first time.

    A rule, the cash or the holding saying no is returned as
    C{Placed.refused}, not raised: the refusal's audit row must commit, and
    nothing else has been written by then.
    """
    existing = order_by_client_id(connection, request.fund_account_no, request.client_order_id)
    if existing is not None:
        return Placed(existing, duplicate=True)
    try:
        account = connection.execute(_ACCOUNT_STATE, {"p_account": request.fund_account_no}).first()
        if account is None:
            raise TradingRefused("account_not_found")
        if account.locked_at is not None:
            raise TradingRefused("account_locked")
        held = None
        if request.side != BUY:
            held = sellable(connection, request.fund_account_no, instrument, trading_day)
        check_order(
            instrument, request.side, request.order_type, request.price_fen, request.quantity, phase, held
        )
        freeze_price = limit_up_fen if request.order_type == MARKET else request.price_fen
        if origin.channel == "phone":
            if not caller_allowed(connection, request.fund_account_no, origin.caller):
                raise TradingRefused("caller_not_allowed")
            limit = account.phone_daily_limit_fen
            if limit is not None:
                used = _phone_amount_today(connection, request.fund_account_no, trading_day)
                if used + freeze_price * request.quantity > limit:
                    raise TradingRefused("phone_daily_limit")
        frozen_fen = 0
        if request.side == BUY:
            frozen_fen = fee_schedule.buy_freeze_fen(freeze_price * request.quantity)
            frozen = connection.execute(_FREEZE_CASH, {"p_account": request.fund_account_no, "p_amount": frozen_fen})
            if frozen.rowcount != 1:
                raise TradingRefused("insufficient_cash")
        else:
            frozen = connection.execute(_FREEZE_SHARES, {
                "p_account": request.fund_account_no,
                "p_code": instrument.code,
                "p_exchange": instrument.exchange,
                "p_quantity": request.quantity,
            })
            if frozen.rowcount != 1:
                raise TradingRefused("insufficient_position")
    except TradingRefused as refusal:
        _audit_order(connection, origin, request, "rejected", now, reason=refusal.reason.code)
        return Placed(None, refused=refusal)
    inserted = connection.execute(
        _INSERT_ORDER,
        dict(
            client_order_id=request.client_order_id,
            fund_account_no=request.fund_account_no,
            code=instrument.code,
            exchange=instrument.exchange,
            side=request.side,
            order_type=request.order_type,
            price_fen=request.price_fen,
            quantity=request.quantity,
            frozen_fen=frozen_fen,
            status=NEW,
            channel=origin.channel,
            caller=origin.caller,
            call_id=origin.call_id,
            agent_id=origin.agent_id,
            trading_day=trading_day.isoformat(),
            created_at=now,
            updated_at=now,
        )
    )
    order_no = inserted.inserted_primary_key[0]
    _audit_order(connection, origin, request, "booked", now, order_no=order_no)
    return Placed(_order(connection, order_no), duplicate=False)


_ACCEPT = (
    orders.update()
    .where(orders.c.order_no == sa.bindparam("p_order_no"), orders.c.status == NEW)
    .values(status=ACCEPTED, updated_at=sa.bindparam("p_now"))
)
_RELEASE_CASH = (
    fund_accounts.update()
    .where(fund_accounts.c.account_no == sa.bindparam("p_account"))
    .values(
        cash_available_fen=fund_accounts.c.cash_available_fen + sa.bindparam("p_amount"),
        cash_frozen_fen=fund_accounts.c.cash_frozen_fen - sa.bindparam("p_amount"),
    )
)
_SPEND_FROZEN = (
    fund_accounts.update()
    .where(fund_accounts.c.account_no == sa.bindparam("p_account"))
    .values(cash_frozen_fen=fund_accounts.c.cash_frozen_fen - sa.bindparam("p_amount"))
)
_CREDIT = (
    fund_accounts.update()
    .where(fund_accounts.c.account_no == sa.bindparam("p_account"))
    .values(cash_available_fen=fund_accounts.c.cash_available_fen + sa.bindparam("p_amount"))
)
_UNFREEZE_SHARES = (
    positions.update().where(*_POSITION).values(frozen=positions.c.frozen - sa.bindparam("p_quantity"))
)
_GROW = (
    positions.update()
    .where(*_POSITION)
    .values(
        quantity=positions.c.quantity + sa.bindparam("p_quantity"),
        bought_today=positions.c.bought_today + sa.bindparam("p_quantity"),
        cost_fen=positions.c.cost_fen + sa.bindparam("p_amount"),
    )
)
_INSERT_POSITION = positions.insert()
_HELD = sa.select(positions.c.quantity, positions.c.cost_fen).where(*_POSITION)
_SHRINK = (
    positions.update()
    .where(*_POSITION)
    .values(
        quantity=positions.c.quantity - sa.bindparam("p_quantity"),
        frozen=positions.c.frozen - sa.bindparam("p_quantity"),
        cost_fen=positions.c.cost_fen - sa.bindparam("p_amount"),
    )
)
_ORDER_FILLED = (
    orders.update()
    .where(orders.c.order_no == sa.bindparam("p_order_no"))
    .values(
        filled_quantity=sa.bindparam("p_filled"),
        filled_amount_fen=sa.bindparam("p_filled_amount"),
        fees_fen=sa.bindparam("p_fees"),
        frozen_fen=sa.bindparam("p_frozen"),
        status=sa.bindparam("p_status"),
        updated_at=sa.bindparam("p_now"),
    )
)


def mark_accepted(connection, order_no, now):
    """The order row once accepted, or None if it had moved on (a fill may come first)."""
    accepted = connection.execute(_ACCEPT, {"p_order_no": order_no, "p_now": now})
    return _order(connection, order_no) if accepted.rowcount == 1 else None


def _where_held(order):
    return {"p_account": order["fund_account_no"], "p_code": order["code"], "p_exchange": order["exchange"]}


def _release(connection, order, now):
    """Give back what an order still holds: the frozen cash of a buy, the frozen shares of a sell."""
    remaining = order["quantity"] - order["filled_quantity"]
    released = 0
    if order["side"] == BUY:
        released = order["frozen_fen"]
        if released:
            connection.execute(_RELEASE_CASH, {"p_account": order["fund_account_no"], "p_amount": released})
    elif remaining:
        connection.execute(_UNFREEZE_SHARES, {**_where_held(order), "p_quantity": remaining})
    return released


def apply_fill(connection, order_no, exec_id, quantity, price_fen, fee_schedule, trading_day, now):
    """
    Book one execution: fees charged so that an order's fees are those of
    its whole filled amount (the commission minimum applies once per
    order), cash and shares moved, the order's state advanced.

    @return: L{Applied}, or None when this exec id was booked already.
    @raise LedgerError: the order is unknown, final, or overfilled.
    """
    if connection.execute(_FILL_SEEN, {"p_order_no": order_no, "p_exec_id": exec_id}).first():
        return None
    order = _order(connection, order_no, for_update=True)
    if order is None:
        raise LedgerError(f"fill {exec_id} for unknown order {order_no}")
    if order["status"] not in OPEN_STATES:
        raise LedgerError(f"fill {exec_id} for order {order_no}, which is {order['status']}")
    if quantity <= 0 or order["filled_quantity"] + quantity > order["quantity"]:
        raise LedgerError(f"fill {exec_id} of {quantity} overfills order {order_no}")
    side = order["side"]
    amount = quantity * price_fen
    before = fee_schedule.fees(side, order["filled_amount_fen"])
    after = fee_schedule.fees(side, order["filled_amount_fen"] + amount)
    commission = after.commission_fen - before.commission_fen
    stamp_duty = after.stamp_duty_fen - before.stamp_duty_fen
    transfer_fee = after.transfer_fee_fen - before.transfer_fee_fen
    fee_total = commission + stamp_duty + transfer_fee
    account = order["fund_account_no"]
    held = _where_held(order)
    frozen_fen = order["frozen_fen"]
    if side == BUY:
        spent = amount + fee_total
        if spent > frozen_fen:
            raise LedgerError(f"fill {exec_id} costs {spent} fen, order {order_no} froze only {frozen_fen}")
        frozen_fen -= spent
        connection.execute(_SPEND_FROZEN, {"p_account": account, "p_amount": spent})
        _roll_position(connection, account, order["code"], order["exchange"], trading_day)
        grown = connection.execute(_GROW, {**held, "p_quantity": quantity, "p_amount": spent})
        if grown.rowcount == 0:
            connection.execute(_INSERT_POSITION, dict(
                fund_account_no=account,
                code=order["code"],
                exchange=order["exchange"],
                quantity=quantity,
                bought_today=quantity,
                cost_fen=spent,
                trading_day=trading_day.isoformat(),
            ))
    else:
        holding = connection.execute(_HELD, held).first()
        # The cost of what remains keeps its average: the sold part takes its share.
        cost_sold = holding.cost_fen * quantity // holding.quantity
        connection.execute(_SHRINK, {**held, "p_quantity": quantity, "p_amount": cost_sold})
        connection.execute(_CREDIT, {"p_account": account, "p_amount": amount - fee_total})
    connection.execute(_INSERT_FILL, dict(
        order_no=order_no,
        exec_id=exec_id,
        quantity=quantity,
        price_fen=price_fen,
        amount_fen=amount,
        commission_fen=commission,
        stamp_duty_fen=stamp_duty,
        transfer_fee_fen=transfer_fee,
        filled_at=now,
    ))
    filled = order["filled_quantity"] + quantity
    status = FILLED if filled == order["quantity"] else PARTIALLY_FILLED
    order.update(
        filled_quantity=filled,
        filled_amount_fen=order["filled_amount_fen"] + amount,
        fees_fen=order["fees_fen"] + fee_total,
        frozen_fen=frozen_fen,
        status=status,
        updated_at=now,
    )
    released = 0
    if status == FILLED:
        released = _release(connection, order, now)
        order["frozen_fen"] = 0
    connection.execute(_ORDER_FILLED, {
        "p_order_no": order_no,
        "p_filled": filled,
        "p_filled_amount": order["filled_amount_fen"],
        "p_fees": order["fees_fen"],
        "p_frozen": order["frozen_fen"],
        "p_status": status,
        "p_now": now,
    })
    return Applied(order, quantity, price_fen, released)


def _finish(connection, order_no, status, now, reject_code=None):
    order = _order(connection, order_no, for_update=True)
    if order is None:
        raise LedgerError(f"{status} report for unknown order {order_no}")
    if order["status"] not in OPEN_STATES:
        return None
    released = _release(connection, order, now)
    values = {"status": status, "frozen_fen": 0, "updated_at": now}
    if reject_code is not None:
        values["reject_code"] = reject_code
    connection.execute(orders.update().where(orders.c.order_no == order_no).values(**values))
    return Applied(_order(connection, order_no), released_fen=released)


def apply_cancel(connection, order_no, now):
    """The unfilled rest is off the book: release it.  None if the order was already final."""
    return _finish(connection, order_no, CANCELLED, now)


def apply_reject(connection, order_no, code, now):
    return _finish(connection, order_no, REJECTED, now, reject_code=code)


def request_cancel(connection, fund_account_no, order_no, origin, now):
    """
    Record an investor's wish to cancel (the gateway decides, and reports).

    @return: the order, or the L{TradingRefused} (audited) when it is not
        this investor's or already final.
    """
    order = _order(connection, order_no, for_update=True)
    try:
        if order is None or order["fund_account_no"] != fund_account_no:
            raise TradingRefused("order_not_found")
        if order["status"] not in OPEN_STATES:
            raise TradingRefused("order_not_cancellable")
    except TradingRefused as refusal:
        refuse_cancel(connection, fund_account_no, order_no, origin, refusal.reason.code, now)
        return refusal
    connection.execute(
        orders.update().where(orders.c.order_no == order_no).values(cancel_requested=True, updated_at=now)
    )
    audit.append(connection, origin, "cancel_order", "requested", fund_account_no, {"order_no": order_no}, now=now)
    return _order(connection, order_no)


def open_orders(connection):
    """Orders the exchange may still hold (for recovery after a restart)."""
    rows = connection.execute(
        sa.select(orders).where(orders.c.status.in_(OPEN_STATES)).order_by(orders.c.order_no)
    ).mappings()
    return [dict(row) for row in rows]


def refuse_order(connection, request, origin, code, now):
    """Audit a refusal decided before the books were looked at."""
    _audit_order(connection, origin, request, "rejected", now, reason=code)


def refuse_cancel(connection, fund_account_no, order_no, origin, code, now):
    audit.append(connection, origin, "cancel_order", "rejected", fund_account_no,
                 {"order_no": order_no, "reason": code}, now=now)
