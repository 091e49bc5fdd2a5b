"""Values passed between the trading subsystem's parts."""

from dataclasses import dataclass

BUY = "buy"
SELL = "sell"
SIDES = (BUY, SELL)

LIMIT = "limit"
MARKET = "market"

# Order states (the orders.status column).
NEW = "new"
ACCEPTED = "accepted"
PARTIALLY_FILLED = "partially_filled"
FILLED = "filled"
CANCELLED = "cancelled"
REJECTED = "rejected"
OPEN_STATES = (NEW, ACCEPTED, PARTIALLY_FILLED)
FINAL_STATES = (FILLED, CANCELLED, REJECTED)

# Where an action came from (orders.channel, audit_log.channel).
CHANNELS = ("phone", "web", "agent", "api", "staff")


@dataclass(frozen=True)
class Tick:
    """One quote.  Prices in fen; C{volume} is shares traded since the open."""

    code: str
    exchange: str
    last_fen: int
    bid_fen: int
    ask_fen: int
    bid_size: int
    ask_size: int
    volume: int
    at: float


@dataclass(frozen=True)
class GatewayOrder:
    order_no: int
    code: str
    exchange: str
    side: str
    order_type: str
    price_fen: int
    quantity: int


@dataclass(frozen=True)
class Origin:
    """
    Who asks for a trading action and through what: every order and audit
    row carries it.  C{caller} is the calling number for phone actions.
    """

    channel: str
    caller: str | None = None
    call_id: str | None = None
    agent_id: str | None = None
    correlation_id: str | None = None
