"""
Staff operations on investors' accounts, on the backend chosen with --db:
what each changes, the audit row it leaves, what it refuses, and that
concurrent withdrawals never overdraw.
"""

import threading
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from callcenter.passwords import verify_password
from callcenter.store.schema import allowed_callers, audit_log, branches, cash_journal, customers, fund_accounts
from callcenter.store.schema import shareholder_accounts
from callcenter.trading import admin, audit
from callcenter.trading.admin import AdminError
from callcenter.trading.model import Origin

STAFF = Origin("staff", agent_id="ops01", correlation_id="req-1")


@pytest.fixture(scope="module")
def password():
    """Hashed once: argon2 is slow on purpose."""
    return admin.hash_trading_password("135790")


@pytest.fixture
def branch(database):
    database.transaction(
        lambda connection: connection.execute(
            branches.insert(),
            [
                {"code": "0101", "name_zh": "浦东南路", "name_en": "Pudong South Road", "city": "上海"},
                {"code": "SZ01", "name_zh": "深南大道", "name_en": "Shennan Avenue", "city": "深圳"},
            ],
        )
    )
    return "0101"


def _open(database, password, n=1, **overrides):
    values = {
        "branch_code": "0101",
        "name_zh": "张伟",
        "name_en": "Zhang Wei",
        "mobile": "13800138001",
        "language": "zh",
        "password": password,
        "sse_account": f"A{n:09d}",
        "szse_account": f"{n:010d}",
    }
    values.update(overrides)
    return database.transaction(admin.open_account, STAFF, **values)


@pytest.fixture
def account(database, branch, password):
    return _open(database, password)


def _select(database, query):
    with database.engine.connect() as connection:
        return [row._asdict() for row in connection.execute(query)]


def _audit(database):
    return _select(database, sa.select(audit_log).order_by(audit_log.c.seq))


def _cash(database, account_no):
    [row] = _select(database, sa.select(fund_accounts).where(fund_accounts.c.account_no == account_no))
    return row["cash_available_fen"]


def test_open_account_numbers_accounts_by_branch_and_audits(database, branch, password):
    first = _open(database, password, 1)
    second = _open(database, password, 2, name_en="", mobile=None, language="en")
    assert (first, second) == ("0101000001", "0101000002")
    [row] = _select(database, sa.select(fund_accounts).where(fund_accounts.c.account_no == first))
    assert row["cash_available_fen"] == 0
    assert verify_password(row["password_hash"], "135790")
    [investor] = _select(database, sa.select(customers).where(customers.c.id == row["customer_id"]))
    assert (investor["branch_code"], investor["name_zh"], investor["name_en"]) == ("0101", "张伟", "Zhang Wei")
    held = _select(database, sa.select(shareholder_accounts).where(shareholder_accounts.c.fund_account_no == first))
    assert {(r["exchange"], r["account_no"]) for r in held} == {("SSE", "A000000001"), ("SZSE", "0000000001")}
    opened = _audit(database)[0]
    assert (opened["channel"], opened["agent_id"], opened["correlation_id"]) == ("staff", "ops01", "req-1")
    assert (opened["action"], opened["outcome"], opened["fund_account_no"]) == ("open_account", "ok", first)
    assert opened["detail"] == '{"branch_code":"0101","sse_account":"A000000001","szse_account":"0000000001"}'
    assert "张伟" not in opened["detail"]


def test_open_account_with_a_given_number(database, branch, password):
    assert _open(database, password, account_no="10019999") == "10019999"
    assert _open(database, password, 2) == "0101000001"


def test_concurrent_openings_take_different_numbers(database, branch, password):
    results, errors = [], []
    start = threading.Barrier(5)

    def worker(n):
        try:
            start.wait()
            results.append(_open(database, password, n))
        except Exception as e:  # reported below: an exception in a thread is otherwise lost
            errors.append(e)

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(1, 6)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert errors == []
    assert sorted(results) == [f"010100000{n}" for n in range(1, 6)]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"branch_code": "9999"}, "branch 9999 does not exist"),
        ({"branch_code": "SZ01"}, "branch SZ01 has no numeric code: give the account number"),
        ({"name_zh": ""}, "name_zh is empty"),
        ({"name_zh": "张" * 65}, "name_zh is longer than 64 characters"),
        ({"mobile": "1" * 33}, "mobile is longer than 32 characters"),
        ({"language": "fr"}, "language 'fr' is not one of zh, en"),
        ({"sse_account": "a000000001"}, "SSE account 'a000000001' is not a letter and 9 digits"),
        ({"szse_account": "000000001"}, "SZSE account '000000001' is not 10 digits"),
        ({"account_no": "1001-1"}, "account '1001-1' is not an account number (1 to 20 digits)"),
        ({"account_no": "0101000001"}, "account 0101000001 already exists"),
        ({"sse_account": "A000000001"}, "shareholder account A000000001 already belongs to account 0101000001"),
    ],
)
def test_open_account_refuses_bad_values_and_writes_nothing(database, account, password, overrides, message):
    overrides.setdefault("sse_account", "A000000099")
    with pytest.raises(AdminError) as refused:
        _open(database, password, 99, **overrides)
    assert str(refused.value) == message
    assert refused.value.action == "open_account"
    assert len(_select(database, sa.select(fund_accounts))) == 1
    assert len(_audit(database)) == 1


@pytest.mark.parametrize("text", ["12345", "1234567", "abcdef", "１２３４５６", "13579\n", ""])
def test_trading_passwords_are_six_digits_and_never_shown(text):
    with pytest.raises(AdminError) as refused:
        admin.hash_trading_password(text)
    assert str(refused.value) == "the trading password must be 6 digits"
    assert refused.value.action is None


def test_operations_take_only_hashed_passwords(database, account):
    with pytest.raises(TypeError):
        database.transaction(admin.reset_password, STAFF, account, "246802")


def test_operations_need_the_staff_members_id(database, account):
    with pytest.raises(ValueError):
        database.transaction(admin.unlock, Origin("staff"), account)


def test_deposit_and_withdraw_journal_and_audit(database, account):
    assert database.transaction(admin.deposit, STAFF, account, 100_050, "BANK-1") == 100_050
    assert database.transaction(admin.withdraw, STAFF, account, 50) == 100_000
    assert _cash(database, account) == 100_000
    journal = _select(database, sa.select(cash_journal).order_by(cash_journal.c.entry_id))
    assert [(r["kind"], r["amount_fen"], r["reference"]) for r in journal] == [
        ("deposit", 100_050, "BANK-1"),
        ("withdraw", 50, None),
    ]
    _, deposited, withdrawn = _audit(database)
    assert deposited["detail"] == (
        f'{{"amount_fen":100050,"cash_available_fen":100050,"entry_id":{journal[0]["entry_id"]},"reference":"BANK-1"}}'
    )
    assert (withdrawn["action"], withdrawn["fund_account_no"]) == ("withdraw", account)


def test_withdraw_only_what_is_available(database, account):
    database.transaction(admin.deposit, STAFF, account, 1_000)
    database.transaction(
        lambda connection: connection.execute(
            fund_accounts.update().where(fund_accounts.c.account_no == account).values(cash_frozen_fen=5_000)
        )
    )
    with pytest.raises(AdminError) as refused:
        database.transaction(admin.withdraw, STAFF, account, 1_001)
    assert str(refused.value) == f"account {account} has 10.00 CNY available, less than 10.01 CNY"
    assert (refused.value.action, refused.value.account_no) == ("withdraw", account)
    assert _cash(database, account) == 1_000
    assert len(_select(database, sa.select(cash_journal))) == 1


@pytest.mark.parametrize("operation", [admin.deposit, admin.withdraw])
def test_cash_operations_refuse_bad_amounts_and_unknown_accounts(database, account, operation):
    for amount, message in ((0, "the amount must be more than 0.00 CNY"), (-5, "the amount must be more than 0.00 CNY"),
                            (10**15 + 1, "the amount is more than 10000000000000.00 CNY")):
        with pytest.raises(AdminError, match=f"^{message}$".replace(".", r"\.")):
            database.transaction(operation, STAFF, account, amount)
    with pytest.raises(AdminError, match="^account 10019999 does not exist$"):
        database.transaction(operation, STAFF, "10019999", 100)
    with pytest.raises(TypeError):
        database.transaction(operation, STAFF, account, 1.5)
    with pytest.raises(AdminError, match="reference is longer than 64 characters"):
        database.transaction(operation, STAFF, account, 100, "R" * 65)
    assert len(_audit(database)) == 1


def test_concurrent_withdrawals_never_overdraw(database, account):
    database.transaction(admin.deposit, STAFF, account, 1_000)
    threads = 10
    start = threading.Barrier(threads)
    done, refused, errors = [], [], []

    def worker():
        try:
            start.wait()
            done.append(database.transaction(admin.withdraw, STAFF, account, 300))
        except AdminError:
            refused.append(1)
        except Exception as e:  # reported below: an exception in a thread is otherwise lost
            errors.append(e)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert errors == []
    assert (sorted(done), len(refused)) == ([100, 400, 700], 7)
    assert _cash(database, account) == 100
    withdrawals = _select(database, sa.select(cash_journal).where(cash_journal.c.kind == "withdraw"))
    assert len(withdrawals) == 3
    assert database.transaction(audit.verify).rows == 5


def _lock(database, account_no):
    database.transaction(
        lambda connection: connection.execute(
            fund_accounts.update()
            .where(fund_accounts.c.account_no == account_no)
            .values(failed_logins=5, locked_at=datetime(2026, 11, 30, 10, tzinfo=timezone.utc))
        )
    )


def test_reset_password_sets_it_and_unlocks(database, account):
    _lock(database, account)
    database.transaction(admin.reset_password, STAFF, account, admin.hash_trading_password("246802"))
    [row] = _select(database, sa.select(fund_accounts))
    assert verify_password(row["password_hash"], "246802")
    assert (row["failed_logins"], row["locked_at"]) == (0, None)
    reset = _audit(database)[-1]
    assert (reset["action"], reset["detail"]) == ("reset_password", '{"failed_logins_before":5,"was_locked":true}')
    assert "246802" not in str(_audit(database))


def test_unlock_keeps_the_password(database, account):
    _lock(database, account)
    database.transaction(admin.unlock, STAFF, account)
    [row] = _select(database, sa.select(fund_accounts))
    assert verify_password(row["password_hash"], "135790")
    assert (row["failed_logins"], row["locked_at"]) == (0, None)
    assert _audit(database)[-1]["action"] == "unlock"
    with pytest.raises(AdminError, match="^account 10019999 does not exist$"):
        database.transaction(admin.unlock, STAFF, "10019999")


def test_allowed_callers_are_normalised_replaced_and_lifted(database, account):
    numbers = ["138 0013-8001", "+86 (138) 0013.8001", "13800138001"]
    assert database.transaction(admin.set_allowed_callers, STAFF, account, numbers) == (
        "+8613800138001",
        "13800138001",
    )
    database.transaction(admin.set_allowed_callers, STAFF, account, ["02155550101"])
    stored = _select(database, sa.select(allowed_callers.c.number))
    assert stored == [{"number": "02155550101"}]
    assert database.transaction(admin.set_allowed_callers, STAFF, account, []) == ()
    assert _select(database, sa.select(allowed_callers)) == []
    details = [row["detail"] for row in _audit(database)[1:]]
    assert details == [
        '{"before":[],"numbers":["+8613800138001","13800138001"]}',
        '{"before":["+8613800138001","13800138001"],"numbers":["02155550101"]}',
        '{"before":["02155550101"],"numbers":[]}',
    ]


@pytest.mark.parametrize("number", ["1380013800a", "++86138", "138+001", "", "1" * 33])
def test_allowed_callers_refuse_what_is_not_a_number(database, account, number):
    with pytest.raises(AdminError, match="caller"):
        database.transaction(admin.set_allowed_callers, STAFF, account, ["13800138001", number])
    assert _select(database, sa.select(allowed_callers)) == []


def test_phone_daily_limit(database, account):
    database.transaction(admin.set_phone_daily_limit, STAFF, account, 500_000)
    assert database.transaction(admin.account_summary, account).phone_daily_limit_fen == 500_000
    database.transaction(admin.set_phone_daily_limit, STAFF, account, None)
    assert database.transaction(admin.account_summary, account).phone_daily_limit_fen is None
    with pytest.raises(AdminError, match="^the limit must be from 0.00 to"):
        database.transaction(admin.set_phone_daily_limit, STAFF, account, -1)
    assert [row["detail"] for row in _audit(database)[1:]] == [
        '{"before_fen":null,"limit_fen":500000}',
        '{"before_fen":500000,"limit_fen":null}',
    ]


def test_account_summary(database, account):
    database.transaction(admin.deposit, STAFF, account, 123_45)
    database.transaction(admin.set_allowed_callers, STAFF, account, ["13800138001"])
    summary = database.transaction(admin.account_summary, account)
    assert summary == admin.AccountSummary(
        account_no=account,
        branch_code="0101",
        name_zh="张伟",
        name_en="Zhang Wei",
        mobile="13800138001",
        language="zh",
        cash_available_fen=12_345,
        cash_frozen_fen=0,
        failed_logins=0,
        locked_at=None,
        phone_daily_limit_fen=None,
        allowed_callers=("13800138001",),
        shareholder_accounts={"SSE": "A000000001", "SZSE": "0000000001"},
    )
    assert not hasattr(summary, "password_hash")
    with pytest.raises(AdminError, match="^account 10019999 does not exist$"):
        database.transaction(admin.account_summary, "10019999")


def test_a_refusal_is_audited_on_its_own(database, account):
    with pytest.raises(AdminError) as refused:
        database.transaction(admin.withdraw, STAFF, account, 100)
    database.transaction(admin.record_refusal, STAFF, refused.value)
    row = _audit(database)[-1]
    assert (row["action"], row["outcome"], row["fund_account_no"], row["agent_id"]) == (
        "withdraw", "refused", account, "ops01"
    )
    assert row["detail"] == f'{{"reason":"account {account} has 0.00 CNY available, less than 1.00 CNY"}}'
    assert database.transaction(audit.verify).ok
