"""
Investors' subscriptions: which events reach them on which channel, at
which address, in which language, and when they are not to be disturbed.
"""

import datetime
import re
from functools import lru_cache
from typing import NamedTuple

import sqlalchemy as sa

from callcenter.store.schema import fund_accounts, notify_subscriptions

CHANNELS = ("sms", "pager", "email", "webhook")
# What an investor can subscribe to; complaints and bulletins come with their issues.
EVENTS = ("fill", "alert", "rejection")
LANGUAGES = ("zh", "en")

_ADDRESS = {
    # E.164 digits, '+' allowed; mainland mobiles are 11 digits from 1.
    "sms": re.compile(r"\+?[0-9]{5,15}"),
    # RFC 1861 pager ids are numeric in practice.
    "pager": re.compile(r"[0-9]{1,16}"),
    # Not RFC 5322 in full: what a broker's form accepts.
    "email": re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+"),
    "webhook": re.compile(r"[A-Za-z0-9._:-]{1,64}"),
}


class SubscriptionError(ValueError):
    """Bad subscription input; the text says what is wrong (for the CLI and the API)."""


class Subscription(NamedTuple):
    """One subscription (a tuple: a burst of alerts reads ten thousand at once)."""

    id: int
    fund_account_no: str
    channel: str
    address: str
    events: frozenset
    language: str
    quiet_from: int | None
    quiet_until: int | None
    enabled: bool

    def quiet_at(self, minute_of_day):
        """Whether C{minute_of_day} (China Standard Time) is inside the quiet hours."""
        if self.quiet_from is None or self.quiet_from == self.quiet_until:
            return False
        if self.quiet_from < self.quiet_until:
            return self.quiet_from <= minute_of_day < self.quiet_until
        return minute_of_day >= self.quiet_from or minute_of_day < self.quiet_until

    def as_dict(self):
        return {
            "id": self.id,
            "fund_account_no": self.fund_account_no,
            "channel": self.channel,
            "address": self.address,
            "events": sorted(self.events),
            "language": self.language,
            "quiet_hours": None
            if self.quiet_from is None
            else f"{_clock(self.quiet_from)}-{_clock(self.quiet_until)}",
            "enabled": self.enabled,
        }


def _clock(minutes):
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_quiet_hours(text):
    """'22:00-07:30' → (1320, 450); '' or None → (None, None)."""
    if not text:
        return None, None
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
    if not match:
        raise SubscriptionError(f"quiet hours {text!r}: expected HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise SubscriptionError(f"quiet hours {text!r}: not a time of day")
    return h1 * 60 + m1, h2 * 60 + m2


def validate(channel, address, events, language):
    """The normalised (address, events), or SubscriptionError naming every problem."""
    problems = []
    if channel not in CHANNELS:
        problems.append(f"channel {channel!r} is not one of {', '.join(CHANNELS)}")
    else:
        address = address.strip()
        if channel == "email":
            address = address.lower()
        if not _ADDRESS[channel].fullmatch(address):
            problems.append(f"{address!r} is not a valid {channel} address")
    events = frozenset(e.strip() for e in events if e.strip())
    unknown = sorted(events - set(EVENTS))
    if unknown or not events:
        problems.append(f"events must be some of {', '.join(EVENTS)} (got {', '.join(sorted(events)) or 'none'})")
    if language not in LANGUAGES:
        problems.append(f"language {language!r} is not one of {', '.join(LANGUAGES)}")
    if problems:
        raise SubscriptionError("; ".join(problems))
    return address, events


@lru_cache(maxsize=64)
def _events(text):
    return frozenset(text.split(","))


_COLUMNS = (
    notify_subscriptions.c.id, notify_subscriptions.c.fund_account_no, notify_subscriptions.c.channel,
    notify_subscriptions.c.address, notify_subscriptions.c.events, notify_subscriptions.c.language,
    notify_subscriptions.c.quiet_from, notify_subscriptions.c.quiet_until, notify_subscriptions.c.enabled,
)


def _row(row):
    id_, account, channel, address, events, language, quiet_from, quiet_until, enabled = row
    return Subscription(id_, account, channel, address, _events(events), language, quiet_from, quiet_until,
                        bool(enabled))


def subscribe(connection, fund_account_no, channel, address, events, language="zh", quiet_hours=None):
    """Add a subscription, or replace the events, language and quiet hours of the same (channel, address)."""
    address, events = validate(channel, address, events, language)
    quiet_from, quiet_until = parse_quiet_hours(quiet_hours)
    if connection.execute(
        sa.select(fund_accounts.c.account_no).where(fund_accounts.c.account_no == fund_account_no)
    ).first() is None:
        raise SubscriptionError(f"no fund account {fund_account_no}")
    values = {
        "events": ",".join(sorted(events)),
        "language": language,
        "quiet_from": quiet_from,
        "quiet_until": quiet_until,
        "enabled": True,
    }
    where = (
        (notify_subscriptions.c.fund_account_no == fund_account_no)
        & (notify_subscriptions.c.channel == channel)
        & (notify_subscriptions.c.address == address)
    )
    if connection.execute(notify_subscriptions.update().where(where).values(**values)).rowcount == 0:
        connection.execute(
            notify_subscriptions.insert().values(
                fund_account_no=fund_account_no, channel=channel, address=address, **values
            )
        )
    return _row(connection.execute(sa.select(*_COLUMNS).where(where)).one())


def unsubscribe(connection, fund_account_no, channel, address):
    """Remove one subscription.  @return: whether there was one."""
    if channel == "email":
        address = address.strip().lower()
    return bool(
        connection.execute(
            notify_subscriptions.delete().where(
                notify_subscriptions.c.fund_account_no == fund_account_no,
                notify_subscriptions.c.channel == channel,
                notify_subscriptions.c.address == address.strip(),
            )
        ).rowcount
    )


def subscriptions_of(connection, fund_account_no):
    rows = connection.execute(
        sa.select(*_COLUMNS)
        .where(notify_subscriptions.c.fund_account_no == fund_account_no)
        .order_by(notify_subscriptions.c.id)
    )
    return [_row(row) for row in rows]


def active_subscriptions(connection, fund_account_nos):
    """The enabled subscriptions of these accounts, by account."""
    found = {}
    accounts = sorted(set(fund_account_nos))
    for start in range(0, len(accounts), 500):
        rows = connection.execute(
            sa.select(*_COLUMNS).where(
                notify_subscriptions.c.fund_account_no.in_(accounts[start:start + 500]),
                notify_subscriptions.c.enabled.is_(True),
            )
        )
        for row in rows:
            found.setdefault(row.fund_account_no, []).append(_row(row))
    return found


def quiet_until(subscription, moment):
    """
    When a message that is not urgent may go: C{moment} itself, or the end
    of the quiet hours C{moment} falls in (China Standard Time).
    """
    china = moment.astimezone(_CST)
    minute = china.hour * 60 + china.minute
    if not subscription.quiet_at(minute):
        return moment
    end = china.replace(hour=subscription.quiet_until // 60, minute=subscription.quiet_until % 60, second=0, microsecond=0)
    if end <= china:
        end += datetime.timedelta(days=1)
    return end.astimezone(moment.tzinfo)


_CST = datetime.timezone(datetime.timedelta(hours=8), "CST")
