"""
Why the trading back-end said no, in the words a broker's phone system
uses: each reason has a stable code (stored with rejected orders, returned
by the HTTP API, sent in events) and a sentence in Mandarin and in English
that the IVR speaks and agents' screens show.
"""

from dataclasses import dataclass

LANGUAGES = ("zh", "en")


@dataclass(frozen=True)
class Reason:
    code: str
    zh: str
    en: str

    def text(self, language):
        """The sentence in C{language} (C{"zh"} or C{"en"}, as customers.language holds)."""
        if language not in LANGUAGES:
            raise ValueError(f"language {language!r} is not one of {', '.join(LANGUAGES)}")
        return getattr(self, language)


REASONS = {}


def _define(code, zh, en):
    REASONS[code] = Reason(code, zh, en)


# The instrument and the order's terms.
_define(
    "unknown_instrument",
    "没有这只证券，请核对证券代码",
    "there is no security with that code",
)
_define(
    "instrument_not_supported",
    "本系统暂不支持该品种的交易",
    "this kind of security cannot be traded here",
)
_define(
    "bad_code",
    "证券代码有误，证券代码为六位数字",
    "that is not a valid six-digit security code",
)
_define(
    "bad_price",
    "委托价格无效",
    "the price is not valid",
)
_define(
    "price_not_on_tick",
    "委托价格最多两位小数，即精确到分",
    "a price can have at most two decimals",
)
_define(
    "price_above_limit",
    "委托价格超出今日涨停价",
    "the price is above today's upper limit",
)
_define(
    "price_below_limit",
    "委托价格低于今日跌停价",
    "the price is below today's lower limit",
)
_define(
    "bad_quantity",
    "委托数量无效",
    "the quantity is not valid",
)
_define(
    "lot_size",
    "买入数量必须是一百股的整数倍",
    "buy orders must be in multiples of 100 shares",
)
_define(
    "star_minimum_quantity",
    "科创板股票单笔申报数量不得少于二百股",
    "orders for STAR Market shares must be for at least 200 shares",
)
_define(
    "quantity_too_large",
    "委托数量超过单笔申报上限",
    "the quantity is more than one order may be for",
)
_define(
    "odd_lot_sell",
    "零股只能一次性全部卖出",
    "an odd lot can only be sold all at once, together with the rest of the holding",
)

# Time.
_define(
    "market_closed",
    "现在不是交易时间",
    "the market is closed now",
)
_define(
    "not_trading_day",
    "今天不是交易日",
    "today is not a trading day",
)
_define(
    "cancel_not_allowed",
    "当前时段不能撤单",
    "orders cannot be cancelled at this time",
)
_define(
    "market_orders_not_allowed_now",
    "当前时段不接受市价委托",
    "market orders are accepted only during continuous trading",
)

# Orders.
_define(
    "order_not_cancellable",
    "该委托已成交、已撤销或已被拒绝，不能撤单",
    "this order is already complete and cannot be cancelled",
)
_define(
    "order_not_found",
    "没有找到这笔委托",
    "there is no such order",
)
_define(
    "duplicate_order",
    "该委托已经受理，不会重复下单",
    "this order was already received and will not be placed twice",
)

# Money and shares.
_define(
    "insufficient_cash",
    "可用资金不足",
    "there is not enough available cash",
)
_define(
    "insufficient_position",
    "可卖股份不足",
    "there are not enough shares available to sell",
)

# The account and the caller.
_define(
    "account_not_found",
    "资金账号不存在",
    "there is no such account",
)
_define(
    "account_locked",
    "账户已被锁定，请联系您的营业部",
    "the account is locked; please contact your branch",
)
_define(
    "wrong_password",
    "交易密码错误",
    "the trading password is wrong",
)
_define(
    "bad_new_password",
    "新密码须为六位数字",
    "the new password must be six digits",
)
_define(
    "caller_not_allowed",
    "本电话号码未登记为委托电话",
    "this phone number is not registered for trading on this account",
)
_define(
    "phone_daily_limit",
    "今日电话委托金额已达上限",
    "you have reached today's limit for orders by phone",
)

# Price alerts.
_define(
    "alert_rule_not_found",
    "没有找到这条提醒",
    "there is no such price alert",
)
_define(
    "bad_alert_rule",
    "提醒条件无效",
    "the price alert is not valid",
)


def reason(code):
    """
    The L{Reason} of C{code}.

    @raise LookupError: no such code; a typo at a raise site fails loudly.
    """
    try:
        return REASONS[code]
    except KeyError:
        raise LookupError(f"{code!r} is not a reason code of callcenter.trading.reasons") from None


class TradingRefused(Exception):
    """
    A trading action was refused for C{reason} (a L{Reason}).

    C{values} are the particulars (the limit price, the quantity allowed)
    for the HTTP API and agents' screens.  They are not put into the
    sentences: the IVR says numbers with its own recorded prompts.
    """

    def __init__(self, code, /, **values):
        self.reason = reason(code)
        self.values = values
        super().__init__(code)

    def __str__(self):
        details = "".join(f", {name}={value!r}" for name, value in sorted(self.values.items()))
        return f"{self.reason.code}: {self.reason.en}{details}"
