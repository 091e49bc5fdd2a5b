"""
The books on a real database (SQLite, or PostgreSQL with --db postgresql):
cash and shares frozen, spent and released exactly; nothing created or lost
whatever order fills, cancels and duplicate reports arrive in; two orders
racing for the same cash never overdraw.
"""

import datetime
import itertools
import threading

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callcenter.store.schema import audit_log, branches, customers, fills, fund_accounts, orders, positions
from callcenter.trading import ledger
from callcenter.trading.calendar import Phase
from callcenter.trading.fees import FeeSchedule
from callcenter.trading.instruments import Instrument, price_limits
from callcenter.trading.model import BUY, LIMIT, OPEN_STATES, SELL, Origin
from callcenter.trading.reasons import TradingRefused

DAY = datetime.date(2026, 12, 1)
NEXT_DAY = datetime.date(2026, 12, 2)
NOW = datetime.datetime(2026, 12, 1, 2, 0, tzinfo=datetime.timezone.utc)
STOCK = Instrument("600000", "SSE", "浦发银行", "SPD Bank", "main", 1000)
FEES = FeeSchedule()
WEB = Origin("web", caller="127.0.0.1")
LIMIT_UP = price_limits(STOCK)[1]


def _open_account(connection, account_no, cash_fen):
    if connection.execute(sa.select(branches.c.code).where(branches.c.code == "0101")).first() is None:
        connection.execute(branches.insert().values(code="0101", name_zh="总部", name_en="HQ", city="Shenzhen"))
    customer = connection.execute(customers.insert().values(branch_code="0101", name_zh="测试")).inserted_primary_key[0]
    connection.execute(fund_accounts.insert().values(
        account_no=account_no, customer_id=customer, cash_available_fen=cash_fen, password_hash="x"))


def _place(database, account_no, side, price_fen, quantity, client_order_id=None, day=DAY, origin=WEB):
    request = ledger.OrderRequest(
        fund_account_no=account_no,
        client_order_id=client_order_id or f"{side}-{price_fen}-{quantity}-{threading.get_ident()}-{id(object())}",
        code=STOCK.code, side=side, order_type=LIMIT, price_fen=price_fen, quantity=quantity,
    )
    return database.transaction(
        ledger.place_order, request, STOCK, Phase.CONTINUOUS, day, FEES, origin, NOW, LIMIT_UP
    ).result()


def _fill(database, order_no, exec_id, quantity, price_fen, day=DAY):
    return database.transaction(ledger.apply_fill, order_no, exec_id, quantity, price_fen, FEES, day, NOW)


def _account(database, account_no):
    def read(connection):
        return connection.execute(
            sa.select(fund_accounts.c.cash_available_fen, fund_accounts.c.cash_frozen_fen)
            .where(fund_accounts.c.account_no == account_no)
        ).one()
    return database.transaction(read)


def _position(database, account_no):
    def read(connection):
        return connection.execute(sa.select(positions).where(positions.c.fund_account_no == account_no)).first()
    return database.transaction(read)


def test_a_buy_freezes_amount_and_fees_and_a_fill_spends_exactly(database):
    database.transaction(_open_account, "1", 1_000_000)
    placed = _place(database, "1", BUY, 1000, 300)
    order = placed.order
    # 3,000.00 CNY at 0.025% is 0.75 CNY commission: the 5 CNY minimum applies.
    expected_freeze = 300_000 + 500 + FEES.fees(BUY, 300_000).transfer_fee_fen
    assert order["frozen_fen"] == expected_freeze
    assert tuple(_account(database, "1")) == (1_000_000 - expected_freeze, expected_freeze)

    applied = _fill(database, order["order_no"], "E1", 100, 990)
    assert applied.order["status"] == "partially_filled"
    applied = _fill(database, order["order_no"], "E2", 200, 995)
    assert applied.order["status"] == "filled"
    amount = 100 * 990 + 200 * 995
    fees = FEES.fees(BUY, amount).total_fen
    assert applied.order["fees_fen"] == fees
    assert tuple(_account(database, "1")) == (1_000_000 - amount - fees, 0)
    held = _position(database, "1")
    assert (held.quantity, held.bought_today, held.cost_fen) == (300, 300, amount + fees)


def test_a_fill_reported_twice_is_booked_once(database):
    database.transaction(_open_account, "1", 1_000_000)
    order = _place(database, "1", BUY, 1000, 200).order
    assert _fill(database, order["order_no"], "E1", 100, 1000) is not None
    assert _fill(database, order["order_no"], "E1", 100, 1000) is None
    assert _position(database, "1").quantity == 100


def test_a_retried_request_makes_no_second_order(database):
    database.transaction(_open_account, "1", 1_000_000)
    first = _place(database, "1", BUY, 1000, 100, client_order_id="web-42")
    again = _place(database, "1", BUY, 1000, 100, client_order_id="web-42")
    assert again.duplicate and again.order["order_no"] == first.order["order_no"]
    assert _account(database, "1").cash_frozen_fen == first.order["frozen_fen"]


def test_shares_bought_today_are_sellable_only_the_next_trading_day(database):
    database.transaction(_open_account, "1", 1_000_000)
    order = _place(database, "1", BUY, 1000, 100).order
    _fill(database, order["order_no"], "E1", 100, 1000)
    with pytest.raises(TradingRefused) as refused:
        _place(database, "1", SELL, 1000, 100)
    assert refused.value.reason.code == "insufficient_position"
    sell = _place(database, "1", SELL, 1000, 100, day=NEXT_DAY).order
    assert _position(database, "1").frozen == 100
    applied = _fill(database, sell["order_no"], "S1", 100, 1010, day=NEXT_DAY)
    amount = 100 * 1010
    assert applied.order["fees_fen"] == FEES.fees(SELL, amount).total_fen
    held = _position(database, "1")
    assert (held.quantity, held.frozen, held.cost_fen) == (0, 0, 0)


def test_a_cancel_releases_what_is_unfilled(database):
    database.transaction(_open_account, "1", 1_000_000)
    order = _place(database, "1", BUY, 1000, 500).order
    _fill(database, order["order_no"], "E1", 200, 1000)
    applied = database.transaction(ledger.apply_cancel, order["order_no"], NOW)
    assert applied.order["status"] == "cancelled"
    spent = 200_000 + FEES.fees(BUY, 200_000).total_fen
    assert tuple(_account(database, "1")) == (1_000_000 - spent, 0)
    # A second cancel report changes nothing.
    assert database.transaction(ledger.apply_cancel, order["order_no"], NOW) is None


def test_refusals_write_nothing_but_the_audit_row(database):
    database.transaction(_open_account, "1", 100_000)
    with pytest.raises(TradingRefused) as refused:
        _place(database, "1", BUY, 1000, 1000)
    assert refused.value.reason.code == "insufficient_cash"
    with pytest.raises(TradingRefused) as refused:
        _place(database, "1", BUY, LIMIT_UP + 1, 100)
    assert refused.value.reason.code == "price_above_limit"
    assert tuple(_account(database, "1")) == (100_000, 0)

    def count(connection, table):
        return connection.execute(sa.select(sa.func.count()).select_from(table)).scalar()
    assert database.transaction(count, orders) == 0
    assert database.transaction(count, audit_log) == 2


def test_phone_orders_respect_the_callers_list_and_the_daily_limit(database):
    from callcenter.store.schema import allowed_callers

    def restrict(connection):
        connection.execute(allowed_callers.insert().values(fund_account_no="1", number="13800138001"))
        connection.execute(fund_accounts.update().values(phone_daily_limit_fen=250_000))

    database.transaction(_open_account, "1", 1_000_000)
    database.transaction(restrict)
    with pytest.raises(TradingRefused) as refused:
        _place(database, "1", BUY, 1000, 100, origin=Origin("phone", caller="13900000000"))
    assert refused.value.reason.code == "caller_not_allowed"
    # The carrier may present the number with the country code.
    phone = Origin("phone", caller="+86 138-0013-8001")
    _place(database, "1", BUY, 1000, 200, origin=phone)
    with pytest.raises(TradingRefused) as refused:
        _place(database, "1", BUY, 1000, 100, origin=phone)
    assert refused.value.reason.code == "phone_daily_limit"
    # The limit is on the phone: the web is not counted nor limited.
    _place(database, "1", BUY, 1000, 100)


def test_two_orders_racing_for_the_same_cash_never_overdraw(database):
    """Each order needs more than half the cash: exactly one of each pair may win."""
    rounds = 8
    for n in range(rounds):
        database.transaction(_open_account, f"R{n}", 150_000)
    outcomes = []

    def race(account_no, barrier):
        barrier.wait()
        try:
            _place(database, account_no, BUY, 1000, 100)
            outcomes.append((account_no, "placed"))
        except TradingRefused as refusal:
            outcomes.append((account_no, refusal.reason.code))

    for n in range(rounds):
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=race, args=(f"R{n}", barrier)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        available, frozen = _account(database, f"R{n}")
        assert available >= 0 and available + frozen == 150_000
    for n in range(rounds):
        results = sorted(outcome for account, outcome in outcomes if account == f"R{n}")
        assert results == ["insufficient_cash", "placed"]


# -- nothing created or lost: a property over random sequences of actions

actions = st.lists(
    st.one_of(
        st.tuples(st.just("buy"), st.integers(900, 1100), st.integers(1, 8)),
        st.tuples(st.just("sell"), st.integers(900, 1100), st.integers(1, 300)),
        st.tuples(st.just("fill"), st.integers(0, 20), st.integers(1, 400), st.integers(-50, 50)),
        st.tuples(st.just("refill"), st.integers(0, 20)),
        st.tuples(st.just("cancel"), st.integers(0, 20)),
        st.tuples(st.just("reject"), st.integers(0, 20)),
        st.tuples(st.just("next_day")),
    ),
    max_size=25,
)


def _reconcile(connection, account_no, initial_fen):
    account = connection.execute(
        sa.select(fund_accounts.c.cash_available_fen, fund_accounts.c.cash_frozen_fen)
        .where(fund_accounts.c.account_no == account_no)
    ).one()
    rows = connection.execute(
        sa.select(orders).where(orders.c.fund_account_no == account_no)
    ).mappings().all()
    booked = connection.execute(
        sa.select(fills, orders.c.side).select_from(fills.join(orders)).where(orders.c.fund_account_no == account_no)
    ).mappings().all()
    spent = sum(f["amount_fen"] + f["commission_fen"] + f["stamp_duty_fen"] + f["transfer_fee_fen"]
                for f in booked if f["side"] == BUY)
    earned = sum(f["amount_fen"] - f["commission_fen"] - f["stamp_duty_fen"] - f["transfer_fee_fen"]
                 for f in booked if f["side"] == SELL)
    assert account.cash_available_fen >= 0
    assert account.cash_available_fen + account.cash_frozen_fen == initial_fen - spent + earned
    assert account.cash_frozen_fen == sum(o["frozen_fen"] for o in rows if o["status"] in OPEN_STATES)
    for order in rows:
        assert order["fees_fen"] == FEES.fees(order["side"], order["filled_amount_fen"]).total_fen
        assert order["filled_quantity"] == sum(f["quantity"] for f in booked if f["order_no"] == order["order_no"])
        if order["status"] not in OPEN_STATES:
            assert order["frozen_fen"] == 0
    held = connection.execute(sa.select(positions).where(positions.c.fund_account_no == account_no)).first()
    bought = sum(f["quantity"] for f in booked if f["side"] == BUY)
    sold = sum(f["quantity"] for f in booked if f["side"] == SELL)
    quantity = held.quantity if held else 0
    assert quantity == bought - sold
    selling = sum(o["quantity"] - o["filled_quantity"] for o in rows if o["side"] == SELL and o["status"] in OPEN_STATES)
    assert (held.frozen if held else 0) == selling


_accounts = itertools.count()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=actions)
def test_cash_and_shares_always_reconcile_with_fills_and_fees(database, steps):
    account_no = f"P{next(_accounts)}"
    initial = 5_000_000
    database.transaction(_open_account, account_no, initial)
    day = [DAY]
    placed = []
    exec_ids = []
    for step in steps:
        kind = step[0]
        try:
            if kind in ("buy", "sell"):
                _, price, lots = step
                quantity = lots * 100 if kind == "buy" else lots
                placed.append(_place(database, account_no, kind, price, quantity, day=day[0]).order)
            elif kind == "fill" and placed:
                _, index, quantity, offset = step
                order = placed[index % len(placed)]
                price = order["price_fen"] - abs(offset) if order["side"] == BUY else order["price_fen"] + abs(offset)
                exec_id = f"X{len(exec_ids)}"
                exec_ids.append((order["order_no"], exec_id, quantity, price))
                _fill(database, order["order_no"], exec_id, quantity, price, day=day[0])
            elif kind == "refill" and exec_ids:
                order_no, exec_id, quantity, price = exec_ids[step[1] % len(exec_ids)]
                _fill(database, order_no, exec_id, quantity, price, day=day[0])
            elif kind == "cancel" and placed:
                database.transaction(ledger.apply_cancel, placed[step[1] % len(placed)]["order_no"], NOW)
            elif kind == "reject" and placed:
                database.transaction(ledger.apply_reject, placed[step[1] % len(placed)]["order_no"], "market_closed", NOW)
            elif kind == "next_day":
                day[0] = day[0] + datetime.timedelta(days=1)
        except (TradingRefused, ledger.LedgerError):
            pass
        database.transaction(_reconcile, account_no, initial)
