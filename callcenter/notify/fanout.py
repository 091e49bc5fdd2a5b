"""
From what happened to what to send: a trading event becomes one draft per
subscription of its investor that wants that kind of event, rendered in
the subscription's language, keyed so that the same event never makes two
messages for one recipient and channel, and held past quiet hours unless
it is urgent (price alerts, when the broker allows it).
"""

import hashlib
from dataclasses import dataclass

from callcenter.notify.records import Draft
from callcenter.notify.subscriptions import active_subscriptions, quiet_until
from callcenter.notify.templates import TemplateError
from callcenter.trading.calendar import china_time
from callcenter.trading.events import AlertFired, OrderFilled, OrderRejected
from callcenter.trading.instruments import english_name
from callcenter.trading.money import format_cny
from callcenter.trading.reasons import reason as trading_reason


@dataclass(frozen=True, slots=True)
class Happening:
    """
    One event as the notify subsystem sees it: its kind (a subscription's
    event name), whose it is, a key unique to it, the fields the templates
    use per language, and whether it may break quiet hours.
    """

    kind: str
    fund_account_no: str
    key: str
    fields: dict
    urgent: bool = False


_SIDES = {"zh": {"buy": "买入", "sell": "卖出"}, "en": {"buy": "Bought", "sell": "Sold"}}
_CONDITIONS = {
    "zh": {
        "price_above": "涨到{}元",
        "price_below": "跌到{}元",
        "change_up": "涨幅达{}%",
        "change_down": "跌幅达{}%",
    },
    "en": {
        "price_above": "at or above CNY {}",
        "price_below": "at or below CNY {}",
        "change_up": "up {}% or more",
        "change_down": "down {}% or more",
    },
}
_KIND_CODES = {"price_above": "GE", "price_below": "LE", "change_up": "UP", "change_down": "DN"}


def _percent(basis_points):
    return f"{basis_points / 100:.2f}"


def fill_happening(order_no, fund_account_no, code, name_zh, name_en, side, quantity, price_fen,
                   filled_quantity, order_quantity, status):
    """
    A fill.  Its key is the order and its filled quantity after the fill,
    which grows with every fill of an order: the same key whether it comes
    from the event or from the ledger after a restart.
    """
    return Happening(
        kind="fill",
        fund_account_no=fund_account_no,
        key=f"fill:{order_no}:{filled_quantity}",
        fields={
            "order_no": order_no,
            "code": code,
            "names": {"zh": name_zh or code, "en": english_name(name_zh or "", name_en or name_zh or code)},
            "side_value": side,
            "side_code": "B" if side == "buy" else "S",
            "quantity": quantity,
            "price": format_cny(price_fen),
            "filled_quantity": filled_quantity,
            "order_quantity": order_quantity,
            "status": status,
            "done": filled_quantity >= order_quantity,
        },
    )


def happening_of(event, alerts_are_urgent=True):
    """The L{Happening} of a trading event, or None for events nobody subscribes to."""
    if isinstance(event, OrderFilled):
        return fill_happening(
            event.order_no, event.fund_account_no, event.code, event.name_zh, event.name_en, event.side,
            event.quantity, event.price_fen, event.filled_quantity, event.order_quantity, event.status,
        )
    if isinstance(event, AlertFired):
        change = 0 if not event.prev_close_fen else (event.last_fen - event.prev_close_fen) * 10000 // event.prev_close_fen
        by_price = event.kind in ("price_above", "price_below")
        threshold = format_cny(event.threshold) if by_price else _percent(event.threshold)
        return Happening(
            kind="alert",
            fund_account_no=event.fund_account_no,
            # A recrossing rule fires again on the same day: the event's own id tells firings apart.
            key=f"alert:{event.rule_id}:{event.correlation_id}",
            fields={
                "code": event.code,
                "names": {"zh": event.name_zh or event.code,
                          "en": english_name(event.name_zh or "", event.name_en or event.name_zh or event.code)},
                "kind": event.kind,
                "kind_code": _KIND_CODES.get(event.kind, event.kind),
                "threshold_text": threshold,
                "conditions": {lang: texts.get(event.kind, "{}").format(threshold) for lang, texts in _CONDITIONS.items()},
                "last": format_cny(event.last_fen),
                "change": _percent(change),
            },
            urgent=alerts_are_urgent,
        )
    if isinstance(event, OrderRejected):
        try:
            why = trading_reason(event.reason)
            reasons = {"zh": why.zh, "en": why.en}
        except LookupError:
            reasons = {"zh": event.reason, "en": event.reason}
        return Happening(
            kind="rejection",
            fund_account_no=event.fund_account_no,
            key=f"rejection:{event.order_no}" if event.order_no is not None else f"rejection:{event.correlation_id}",
            fields={
                "order_no": event.order_no,
                "code": event.code,
                "names": {"zh": event.code, "en": event.code},
                "reason_code": event.reason,
                "reasons": reasons,
            },
        )
    return None


def _context(happening, language, when):
    fields = dict(happening.fields)
    fields["name"] = fields.pop("names")[language]
    if "side_value" in fields:
        fields["side"] = _SIDES[language].get(fields["side_value"], fields["side_value"])
    if "conditions" in fields:
        fields["condition"] = fields.pop("conditions")[language]
    if "reasons" in fields:
        fields["reason"] = fields.pop("reasons")[language]
    fields["time"] = when
    fields["fund_account_no"] = happening.fund_account_no
    return fields


def _key(happening, subscription):
    key = f"{happening.key}:{subscription.channel}:{subscription.address}"
    if len(key) <= 255:
        return key
    # A very long e-mail address: its digest keeps the key within the column.
    digest = hashlib.sha256(subscription.address.encode()).hexdigest()
    return f"{happening.key}:{subscription.channel}:{digest}"


def drafts_for(connection, happenings, renderer, now, log=None):
    """
    The drafts of these happenings for every matching subscription.  A
    template that fails for one message is logged and skips that message
    only.
    """
    subscriptions = active_subscriptions(connection, [h.fund_account_no for h in happenings])
    when = china_time(now).strftime("%m-%d %H:%M:%S")
    drafts = []
    for happening in happenings:
        for subscription in subscriptions.get(happening.fund_account_no, ()):
            if happening.kind not in subscription.events:
                continue
            context = _context(happening, subscription.language, when)
            try:
                subject, body = renderer.render(happening.kind, subscription.channel, subscription.language, context)
            except TemplateError as e:
                if log is not None:
                    log.error("no {channel} message for {key}: {why}", channel=subscription.channel, key=happening.key, why=str(e))
                continue
            drafts.append(
                Draft(
                    idempotency_key=_key(happening, subscription),
                    fund_account_no=happening.fund_account_no,
                    event=happening.kind,
                    channel=subscription.channel,
                    address=subscription.address,
                    language=subscription.language,
                    subject=subject,
                    body=body,
                    not_before=now if happening.urgent else quiet_until(subscription, now),
                )
            )
    return drafts
