"""What the internet account tests share: tiers and investors with internet accounts."""

from callcenter.passwords import hash_password
from callcenter.radius import accounts
from investors import NOON, UTC, CountingStore, add_investor, clock_at, fired  # noqa: F401  (re-exported)
PASSWORD = "surf-2026"


def add_tiers(database):
    database.transaction(accounts.add_tier, "basic", 30 * 3600, 600, 1)
    database.transaction(accounts.add_tier, "family", 10 * 3600, None, 2)
    database.transaction(accounts.add_tier, "vip", None, 1800, 1)


def open_internet(database, username, fund_account_no, tier="basic", password=PASSWORD, chap_secret=None,
                  language="zh"):
    """An investor with an internet account; returns the account."""
    add_investor(database, fund_account_no, language)
    return database.transaction(
        accounts.open_account, fund_account_no, username, hash_password(password), tier, chap_secret
    )
