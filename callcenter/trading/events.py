"""What the trading subsystem tells the others (notifications, agents' screens, the IVR)."""

from callcenter.events import Event, event


@event("trading.order_accepted")
class OrderAccepted(Event):
    order_no: int
    fund_account_no: str
    code: str
    side: str
    price_fen: int
    quantity: int
    channel: str


@event("trading.order_filled")
class OrderFilled(Event):
    """成交回报: one execution."""

    order_no: int
    fund_account_no: str
    code: str
    name_zh: str
    name_en: str
    side: str
    quantity: int
    price_fen: int
    filled_quantity: int
    order_quantity: int
    status: str


@event("trading.order_cancelled")
class OrderCancelled(Event):
    order_no: int
    fund_account_no: str
    code: str
    cancelled_quantity: int


@event("trading.order_rejected")
class OrderRejected(Event):
    order_no: int | None
    fund_account_no: str
    code: str
    reason: str


@event("trading.alert_fired")
class AlertFired(Event):
    """行情报警: a rule's condition became true."""

    rule_id: int
    fund_account_no: str
    code: str
    name_zh: str
    name_en: str
    kind: str
    threshold: int
    last_fen: int
    prev_close_fen: int
