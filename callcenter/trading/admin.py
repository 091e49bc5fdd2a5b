"""
What staff do to investors' accounts: open one, book cash in and out
(bank transfers entered by hand), reset the trading password, unlock after
too many wrong passwords, restrict phone trading to known numbers
(主叫限拨) or to an amount a day, and show an account.

Every function blocks and takes a connection inside a transaction
(C{Database.transaction}, or the store's thread pool for the HTTP API) and
an L{Origin} naming the staff member in C{agent_id}.  Each change appends
one audit row as its last statement.  A refused operation raises
L{AdminError} and the transaction rolls back with nothing written, its
audit row included: L{record_refusal} audits the refusal in a transaction
of its own.
"""

import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from callcenter.passwords import hash_password
from callcenter.store.schema import allowed_callers, branches, cash_journal, customers, fund_accounts
from callcenter.store.schema import shareholder_accounts
from callcenter.trading import audit
from callcenter.trading.money import format_cny

LANGUAGES = ("zh", "en")
# Account numbers made here are the branch code and a serial of this many
# digits: 0101000001, 0101000002, ...
ACCOUNT_SERIAL_DIGITS = 6
# Far above any real transfer; keeps sums far from the 64-bit limit, where
# SQLite would silently turn the balance into a float.
MAX_AMOUNT_FEN = 10**15


class AdminError(Exception):
    """
    A staff operation refused; the message is one line for a person.
    C{action} and C{account_no} say what was refused, for L{record_refusal};
    C{action} is None for input refused before any operation began.
    """

    def __init__(self, message, action=None, account_no=None):
        super().__init__(message)
        self.action = action
        self.account_no = account_no


@dataclass(frozen=True)
class HashedTradingPassword:
    """
    A trading password after argon2, made only by L{hash_trading_password}:
    the operations take this rather than the password so that the slow hash
    runs before the transaction, not while it holds SQLite's write lock,
    and so that a plain password cannot be stored by mistake.
    """

    value: str


def hash_trading_password(password):
    """
    Check a new trading password (six digits, as keyed in on a telephone)
    and hash it.  Slow on purpose: never call it on the reactor.

    @raise AdminError: not six digits (the message does not show it).
    """
    if not (isinstance(password, str) and re.fullmatch(r"[0-9]{6}", password)):
        raise AdminError("the trading password must be 6 digits")
    return HashedTradingPassword(hash_password(password))


@dataclass(frozen=True)
class AccountSummary:
    """An account as staff see it.  Never the password hash."""

    account_no: str
    branch_code: str
    name_zh: str
    name_en: str | None
    mobile: str | None
    language: str
    cash_available_fen: int
    cash_frozen_fen: int
    failed_logins: int
    locked_at: datetime | None
    phone_daily_limit_fen: int | None
    allowed_callers: tuple
    shareholder_accounts: dict


def _text(action, name, value, column, required=False):
    """Text for C{column}: empty is None, too long is refused (SQLite would not)."""
    if value is None or value == "":
        if required:
            raise AdminError(f"{name} is empty", action)
        return None
    if len(value) > column.type.length:
        raise AdminError(f"{name} is longer than {column.type.length} characters", action)
    return value


def _matching(action, name, value, pattern, description):
    if not (isinstance(value, str) and re.fullmatch(pattern, value)):
        raise AdminError(f"{name} {value!r} is not {description}", action)
    return value


def _account_no(action, account_no):
    return _matching(action, "account", account_no, r"[0-9]{1,20}", "an account number (1 to 20 digits)")


def _existing(connection, action, account_no, *columns):
    """The account's row (C{columns} of fund_accounts, locked on PostgreSQL)."""
    _account_no(action, account_no)
    row = connection.execute(
        sa.select(fund_accounts.c.account_no, *columns)
        .where(fund_accounts.c.account_no == account_no)
        .with_for_update()
    ).first()
    if row is None:
        raise AdminError(f"account {account_no} does not exist", action, account_no)
    return row


def _amount(action, account_no, amount_fen):
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int):
        raise TypeError(f"amounts are integer fen, not {type(amount_fen).__name__}")
    if amount_fen <= 0:
        raise AdminError("the amount must be more than 0.00 CNY", action, account_no)
    if amount_fen > MAX_AMOUNT_FEN:
        raise AdminError(f"the amount is more than {format_cny(MAX_AMOUNT_FEN)} CNY", action, account_no)
    return amount_fen


def _staff(origin):
    if not origin.agent_id:
        raise ValueError("staff operations need the staff member's id in origin.agent_id")


def _next_account_no(connection, action, branch_code):
    if not re.fullmatch(r"[0-9]+", branch_code):
        raise AdminError(f"branch {branch_code} has no numeric code: give the account number", action)
    pattern = branch_code + "_" * ACCOUNT_SERIAL_DIGITS
    highest = connection.scalar(
        sa.select(sa.func.max(fund_accounts.c.account_no)).where(fund_accounts.c.account_no.like(pattern))
    )
    serial = int(highest[len(branch_code):]) + 1 if highest else 1
    if serial >= 10**ACCOUNT_SERIAL_DIGITS:
        raise AdminError(f"branch {branch_code} has used all its account numbers", action)
    return f"{branch_code}{serial:0{ACCOUNT_SERIAL_DIGITS}d}"


def open_account(
    connection, origin, branch_code, name_zh, name_en, mobile, language, password,
    sse_account, szse_account, account_no=None,
):
    """
    Open a fund account, with no cash, for a new investor, and their
    shareholder accounts on both exchanges.

    @param password: a L{HashedTradingPassword}.
    @param account_no: None to take the branch's next number.
    @return: the fund account number.
    @raise AdminError: a value is invalid, the branch unknown, or a number taken.
    """
    action = "open_account"
    _staff(origin)
    if not isinstance(password, HashedTradingPassword):
        raise TypeError("open_account takes the password from hash_trading_password")
    if language not in LANGUAGES:
        raise AdminError(f"language {language!r} is not one of {', '.join(LANGUAGES)}", action)
    customer = {
        "branch_code": branch_code,
        "name_zh": _text(action, "name_zh", name_zh, customers.c.name_zh, required=True),
        "name_en": _text(action, "name_en", name_en, customers.c.name_en),
        "mobile": _text(action, "mobile", mobile, customers.c.mobile),
        "language": language,
    }
    _matching(action, "SSE account", sse_account, r"[A-Z][0-9]{9}", "a letter and 9 digits")
    _matching(action, "SZSE account", szse_account, r"[0-9]{10}", "10 digits")
    if account_no is not None:
        _account_no(action, account_no)
    # Locking the branch row makes two openings for one branch on
    # PostgreSQL take turns, so they cannot pick the same next number.
    # (SQLite has one writer at a time anyway; it ignores FOR UPDATE.)
    branch = connection.execute(
        sa.select(branches.c.code).where(branches.c.code == branch_code).with_for_update()
    ).first()
    if branch is None:
        raise AdminError(f"branch {branch_code} does not exist", action)
    if account_no is None:
        account_no = _next_account_no(connection, action, branch_code)
    elif connection.scalar(sa.select(fund_accounts.c.account_no).where(fund_accounts.c.account_no == account_no)):
        raise AdminError(f"account {account_no} already exists", action, account_no)
    taken = connection.execute(
        sa.select(shareholder_accounts.c.account_no, shareholder_accounts.c.fund_account_no).where(
            shareholder_accounts.c.account_no.in_([sse_account, szse_account])
        )
    ).first()
    if taken:
        raise AdminError(
            f"shareholder account {taken.account_no} already belongs to account {taken.fund_account_no}", action
        )
    customer_id = connection.execute(customers.insert().values(customer)).inserted_primary_key[0]
    connection.execute(
        fund_accounts.insert().values(account_no=account_no, customer_id=customer_id, password_hash=password.value)
    )
    connection.execute(
        shareholder_accounts.insert(),
        [
            {"account_no": sse_account, "fund_account_no": account_no, "exchange": "SSE"},
            {"account_no": szse_account, "fund_account_no": account_no, "exchange": "SZSE"},
        ],
    )
    # Names and mobile stay out: the log cannot be edited, personal data
    # must be correctable.  The account number leads to them.
    detail = {"branch_code": branch_code, "sse_account": sse_account, "szse_account": szse_account}
    audit.append(connection, origin, action, "ok", account_no, detail)
    return account_no


def _book(connection, origin, action, account_no, amount_fen, reference, after_fen):
    entry = connection.execute(
        cash_journal.insert().values(fund_account_no=account_no, kind=action, amount_fen=amount_fen,
                                     reference=reference)
    ).inserted_primary_key[0]
    detail = {"amount_fen": amount_fen, "reference": reference, "entry_id": entry, "cash_available_fen": after_fen}
    audit.append(connection, origin, action, "ok", account_no, detail)


def _available(connection, account_no):
    return connection.scalar(
        sa.select(fund_accounts.c.cash_available_fen).where(fund_accounts.c.account_no == account_no)
    )


def deposit(connection, origin, account_no, amount_fen, reference=None):
    """
    Credit cash to an account and journal it.

    @return: the cash available after.
    """
    action = "deposit"
    _staff(origin)
    _account_no(action, account_no)
    _amount(action, account_no, amount_fen)
    reference = _text(action, "reference", reference, cash_journal.c.reference)
    credited = connection.execute(
        fund_accounts.update()
        .where(fund_accounts.c.account_no == account_no)
        .values(cash_available_fen=fund_accounts.c.cash_available_fen + amount_fen)
    )
    if credited.rowcount != 1:
        raise AdminError(f"account {account_no} does not exist", action, account_no)
    after = _available(connection, account_no)
    _book(connection, origin, action, account_no, amount_fen, reference, after)
    return after


def withdraw(connection, origin, account_no, amount_fen, reference=None):
    """
    Debit available cash (never frozen cash) and journal it.

    @return: the cash available after.
    @raise AdminError: the account has less available.
    """
    action = "withdraw"
    _staff(origin)
    _account_no(action, account_no)
    _amount(action, account_no, amount_fen)
    reference = _text(action, "reference", reference, cash_journal.c.reference)
    # One conditional UPDATE, so that concurrent withdrawals (and buy
    # orders freezing cash) cannot together take more than there is: the
    # database re-checks the condition on the row as the last writer left it.
    debited = connection.execute(
        fund_accounts.update()
        .where(fund_accounts.c.account_no == account_no, fund_accounts.c.cash_available_fen >= amount_fen)
        .values(cash_available_fen=fund_accounts.c.cash_available_fen - amount_fen)
    )
    if debited.rowcount != 1:
        available = _available(connection, account_no)
        if available is None:
            raise AdminError(f"account {account_no} does not exist", action, account_no)
        raise AdminError(
            f"account {account_no} has {format_cny(available)} CNY available, less than {format_cny(amount_fen)} CNY",
            action, account_no,
        )
    after = _available(connection, account_no)
    _book(connection, origin, action, account_no, amount_fen, reference, after)
    return after


def _clear_lock(connection, origin, action, account_no, extra_values):
    _staff(origin)
    before = _existing(connection, action, account_no, fund_accounts.c.failed_logins, fund_accounts.c.locked_at)
    connection.execute(
        fund_accounts.update()
        .where(fund_accounts.c.account_no == account_no)
        .values(failed_logins=0, locked_at=None, **extra_values)
    )
    detail = {"was_locked": before.locked_at is not None, "failed_logins_before": before.failed_logins}
    audit.append(connection, origin, action, "ok", account_no, detail)


def reset_password(connection, origin, account_no, new_password):
    """
    Set a new trading password and clear the failed logins and the lock.

    @param new_password: a L{HashedTradingPassword}.
    """
    if not isinstance(new_password, HashedTradingPassword):
        raise TypeError("reset_password takes the password from hash_trading_password")
    _clear_lock(connection, origin, "reset_password", account_no, {"password_hash": new_password.value})


def unlock(connection, origin, account_no):
    """Clear the failed logins and the lock, keeping the password."""
    _clear_lock(connection, origin, "unlock", account_no, {})


def normalise_caller(number):
    """
    A calling number as stored for 主叫限拨: digits, with a leading + kept;
    the spaces, dashes, dots and brackets people write are dropped.
    """
    action = "set_allowed_callers"
    compact = re.sub(r"[\s\-.()]", "", number)
    if not re.fullmatch(r"\+?[0-9]+", compact):
        raise AdminError(f"caller {number!r} is not a telephone number", action)
    return _text(action, f"caller {number!r}", compact, allowed_callers.c.number)


def _callers(connection, account_no):
    return tuple(
        connection.scalars(
            sa.select(allowed_callers.c.number)
            .where(allowed_callers.c.fund_account_no == account_no)
            .order_by(allowed_callers.c.number)
        )
    )


def set_allowed_callers(connection, origin, account_no, numbers):
    """
    Allow phone trading on the account only from C{numbers}; an empty list
    lifts the restriction.

    @return: the numbers stored, normalised and sorted.
    """
    action = "set_allowed_callers"
    _staff(origin)
    normalised = tuple(sorted({normalise_caller(number) for number in numbers}))
    _existing(connection, action, account_no)
    before = _callers(connection, account_no)
    connection.execute(allowed_callers.delete().where(allowed_callers.c.fund_account_no == account_no))
    if normalised:
        connection.execute(
            allowed_callers.insert(), [{"fund_account_no": account_no, "number": n} for n in normalised]
        )
    audit.append(connection, origin, action, "ok", account_no, {"numbers": list(normalised), "before": list(before)})
    return normalised


def set_phone_daily_limit(connection, origin, account_no, amount_fen):
    """
    Cap what phone orders may amount to in a trading day; None removes the
    cap, 0 stops phone orders.
    """
    action = "set_phone_daily_limit"
    _staff(origin)
    if amount_fen is not None:
        if isinstance(amount_fen, bool) or not isinstance(amount_fen, int):
            raise TypeError(f"amounts are integer fen, not {type(amount_fen).__name__}")
        if not 0 <= amount_fen <= MAX_AMOUNT_FEN:
            raise AdminError(f"the limit must be from 0.00 to {format_cny(MAX_AMOUNT_FEN)} CNY", action, account_no)
    before = _existing(connection, action, account_no, fund_accounts.c.phone_daily_limit_fen)
    connection.execute(
        fund_accounts.update()
        .where(fund_accounts.c.account_no == account_no)
        .values(phone_daily_limit_fen=amount_fen)
    )
    detail = {"limit_fen": amount_fen, "before_fen": before.phone_daily_limit_fen}
    audit.append(connection, origin, action, "ok", account_no, detail)


def account_summary(connection, account_no):
    """
    The account for display.  Reading is not audited.

    @raise AdminError: no such account.
    """
    action = "show_account"
    _account_no(action, account_no)
    row = connection.execute(
        sa.select(
            fund_accounts.c.account_no,
            customers.c.branch_code,
            customers.c.name_zh,
            customers.c.name_en,
            customers.c.mobile,
            customers.c.language,
            fund_accounts.c.cash_available_fen,
            fund_accounts.c.cash_frozen_fen,
            fund_accounts.c.failed_logins,
            fund_accounts.c.locked_at,
            fund_accounts.c.phone_daily_limit_fen,
        )
        .select_from(fund_accounts.join(customers))
        .where(fund_accounts.c.account_no == account_no)
    ).first()
    if row is None:
        raise AdminError(f"account {account_no} does not exist", action, account_no)
    held = connection.execute(
        sa.select(shareholder_accounts.c.exchange, shareholder_accounts.c.account_no).where(
            shareholder_accounts.c.fund_account_no == account_no
        )
    )
    return AccountSummary(
        **row._asdict(),
        allowed_callers=_callers(connection, account_no),
        shareholder_accounts={exchange: number for exchange, number in held},
    )


def record_refusal(connection, origin, error):
    """
    Audit a refused operation (an L{AdminError}), in a transaction other
    than the one that rolled back.
    """
    audit.append(connection, origin, error.action, "refused", error.account_no, {"reason": str(error)})
