"""
Phone trading (电话委托): log in with the fund account and trading password,
then buy, sell, cancel and query funds and holdings by key presses.

An order is placed only after the caller has heard it read back in full
(side, code, price, quantity) and pressed 1; its client order id is the call
id and the number of the ticket within the call, so that confirming the same
ticket again (after the back-end failed to answer) never books it twice.

The flow is a callable for L{callcenter.ivr.dialogue.run_flow}: a hang-up at
any step raises L{CallEnded} out of it, which run_flow takes as the normal
end of a call.
"""

import hashlib

from twisted.internet import defer
from twisted.logger import Logger

from callcenter.ivr.dialogue import AGENT, BACK, INVALID, TIMEOUT, TooManyRetries
from callcenter.ivr.say import say_digits, say_money, say_price, say_quantity
from callcenter.trading.model import BUY, SELL, Origin
from callcenter.trading.money import TooManyDecimals, parse_cny
from callcenter.trading.reasons import TradingRefused

__all__ = ["GENERIC_REFUSAL", "REFUSAL_PROMPTS", "PhoneTrading"]

# What the caller hears when the back-end refuses, by reason code
# (callcenter.trading.reasons).  Only codes with a recorded sentence of
# their own are here; every other refusal is GENERIC_REFUSAL.
REFUSAL_PROMPTS = {
    "wrong_password": "wrong-password",
    "account_locked": "account-locked",
    "caller_not_allowed": "caller-not-allowed",
    "account_not_found": "account-not-found",
    "unknown_instrument": "stock-not-found",
    "bad_code": "stock-not-found",
    "price_above_limit": "price-outside-limits",
    "price_below_limit": "price-outside-limits",
    "price_not_on_tick": "price-too-precise",
    "lot_size": "quantity-not-lot",
    "insufficient_cash": "insufficient-funds",
    "insufficient_position": "insufficient-shares",
    "market_closed": "market-closed",
    "not_trading_day": "market-closed",
    "phone_daily_limit": "over-daily-limit",
    "order_not_cancellable": "order-not-cancellable",
    "order_not_found": "order-number-not-found",
}
GENERIC_REFUSAL = "order-rejected"

# The trading menu's keys, as zh/trading-menu announces them.  5 (change
# the password) is announced but not offered yet: it is taken as a wrong key.
_MENU = "1234"
_QUERY_MENU = "12"

_CODE_LENGTH = 6
_ACCOUNT_MAXIMUM = 20  # fund_accounts.account_no is a String(20)
_PASSWORD_MAXIMUM = 12
_PRICE_MAXIMUM = 9  # digits and the decimal point: up to 999999.99
_QUANTITY_MAXIMUM = 9
_ORDER_NO_MAXIMUM = 12
_CLIENT_ORDER_ID_MAXIMUM = 64  # orders.client_order_id is a String(64)
_ENTRY_RETRIES = 3
_LOT = 100


class _Done(Exception):
    """The flow is over; C{result} is what it returns."""

    def __init__(self, result=None):
        super().__init__(result)
        self.result = result


def refusal_prompt(code):
    """The prompt name the caller hears for the refusal reason C{code}."""
    return REFUSAL_PROMPTS.get(code, GENERIC_REFUSAL)


class PhoneTrading:
    """
    The phone trading flow over C{trading} (an
    L{callcenter.trading.interfaces.ITradingService}) with the steps of
    C{dialogue} (a L{callcenter.ivr.dialogue.Dialogue}).

    Calling it with a channel runs the flow and fires with L{AGENT} when
    the caller asked for an agent (the caller of the flow transfers the
    call), L{BACK} when the caller left the trading menu with C{*}, and None
    when the call is over (a goodbye was said; hanging up is run_flow's
    job).
    """

    log = Logger()

    def __init__(self, trading, dialogue, max_login_attempts=3):
        if max_login_attempts < 1:
            raise ValueError("max_login_attempts must be at least 1")
        self.trading = trading
        self.dialogue = dialogue
        self.max_login_attempts = max_login_attempts

    @defer.inlineCallbacks
    def __call__(self, channel):
        call = _Call(self, channel)
        try:
            yield self.dialogue.play(channel, "welcome")
            yield call.login()
            while True:
                yield call.trading_menu()
        except _Done as done:
            return done.result
        except TooManyRetries:
            yield self.dialogue.play(channel, "too-many-attempts")
            return None


class _Call:
    """One caller's session: the origin, the account once logged in, the ticket counter."""

    def __init__(self, flow, channel):
        self.flow = flow
        self.log = flow.log
        self.trading = flow.trading
        self.dialogue = flow.dialogue
        self.language = flow.dialogue.language
        self.channel = channel
        # Taken before anything else: every trading action carries it.
        self.origin = Origin(
            channel="phone",
            caller=channel.caller.number if channel.caller is not None else None,
            call_id=channel.call_id,
            correlation_id=channel.correlation_id,
        )
        self.account = None
        self.tickets = 0

    def play(self, prompt):
        return self.dialogue.play(self.channel, prompt)

    @defer.inlineCallbacks
    def entry(self, prompt, maximum, **options):
        """
        Digits keyed after C{prompt}, or L{BACK}; a timeout or a wrong key
        is said and asked again, L{_ENTRY_RETRIES} times in all.

        @raise TooManyRetries: the last try failed too.
        """
        for attempt in range(1, _ENTRY_RETRIES + 1):
            answer = yield self.dialogue.collect(self.channel, prompt, maximum, **options)
            if answer == "":
                answer = INVALID  # # alone: no step here takes an empty entry
            if answer is not TIMEOUT and answer is not INVALID:
                return answer
            if attempt == _ENTRY_RETRIES:
                raise TooManyRetries(answer)
            yield self.play(self.dialogue.timeout_prompt if answer is TIMEOUT else self.dialogue.invalid_prompt)

    @defer.inlineCallbacks
    def end(self, prompts, result=None):
        yield self.play(prompts)
        raise _Done(result)

    @defer.inlineCallbacks
    def to_agent(self):
        yield self.play("transfer-agent")
        raise _Done(AGENT)

    # -- login

    @defer.inlineCallbacks
    def login(self):
        account = None
        for attempt in range(1, self.flow.max_login_attempts + 1):
            if account is None:
                account = yield self.entry("enter-account", _ACCOUNT_MAXIMUM, allow_star_back=False)
            password = yield self.entry("enter-password", _PASSWORD_MAXIMUM, allow_star_back=False)
            try:
                yield self.trading.login(account, password, self.origin)
            except TradingRefused as refused:
                code = refused.reason.code
                # The password is never logged, not even its length.
                self.log.info(
                    "phone login to {account} refused ({code}) on call {cid}",
                    account=account, code=code, cid=self.origin.correlation_id,
                )
                if code in ("account_locked", "caller_not_allowed"):
                    yield self.end([refusal_prompt(code), "goodbye"])
                if attempt == self.flow.max_login_attempts:
                    yield self.end("too-many-attempts")
                if code == "wrong_password":
                    # zh/wrong-password asks for the password again, not the account.
                    yield self.play("wrong-password")
                else:
                    yield self.play(refusal_prompt(code))
                    account = None
                continue
            finally:
                del password
            self.account = account
            self.log.info(
                "phone login to {account} on call {cid}", account=account, cid=self.origin.correlation_id
            )
            return

    # -- the trading menu

    @defer.inlineCallbacks
    def trading_menu(self):
        key = yield self.dialogue.menu(self.channel, ["trading-menu", "press-0-agent"], _MENU)
        if key is AGENT:
            yield self.to_agent()
        if key is BACK:
            raise _Done(BACK)
        if key == "1":
            yield self.order(BUY)
        elif key == "2":
            yield self.order(SELL)
        elif key == "3":
            yield self.cancel()
        elif key == "4":
            yield self.query()

    # -- buy and sell

    def client_order_id(self):
        """A new ticket's id: the call id and the ticket's number in the call."""
        self.tickets += 1
        client_order_id = f"{self.origin.call_id}-{self.tickets}"
        if len(client_order_id) > _CLIENT_ORDER_ID_MAXIMUM:
            # A SIP Call-ID may be longer than the column: keep it unique and repeatable.
            digest = hashlib.sha256(self.origin.call_id.encode("utf-8")).hexdigest()[:40]
            client_order_id = f"call-{digest}-{self.tickets}"
        return client_order_id

    @defer.inlineCallbacks
    def order(self, side):
        """
        Take one order's terms, read them back and place it on 1.  C{*}
        goes back one step (from the stock code, to the menu); 2 at the
        read-back starts again from the stock code.
        """
        step = "code"
        failures = 0
        while True:
            if step == "code":
                code = yield self.entry("enter-stock-code", _CODE_LENGTH)
                if code is BACK:
                    return
                if len(code) != _CODE_LENGTH:
                    yield self.play(self.dialogue.invalid_prompt)
                    continue
                instrument = yield defer.maybeDeferred(self.trading.instrument, code)
                if instrument is None:
                    yield self.play("stock-not-found")
                    continue
                yield self.play(["stock-code", *say_digits(code, self.language)])
                step = "price"
            elif step == "price":
                # With * as the decimal point there is no going back from here but by hanging up or 2 later.
                text = yield self.entry("enter-price", _PRICE_MAXIMUM, star_is_decimal=True)
                try:
                    price_fen = parse_cny(text)
                except TooManyDecimals:
                    yield self.play("price-too-precise")
                    continue
                if price_fen == 0:
                    yield self.play(self.dialogue.invalid_prompt)
                    continue
                step = "quantity"
            elif step == "quantity":
                answer = yield self.entry("enter-quantity", _QUANTITY_MAXIMUM)
                if answer is BACK:
                    step = "price"
                    continue
                quantity = int(answer)
                if quantity == 0:
                    yield self.play(self.dialogue.invalid_prompt)
                    continue
                if side == BUY and quantity % _LOT:
                    yield self.play("quantity-not-lot")
                    continue
                client_order_id = self.client_order_id()
                step = "confirm"
            else:
                readback = [
                    "confirm-buy" if side == BUY else "confirm-sell",
                    "stock-code", *say_digits(code, self.language),
                    "at-price", *say_price(price_fen, self.language),
                    "quantity", *say_quantity(quantity, "share", self.language),
                    "confirm-or-reenter",
                ]
                answer = yield self.dialogue.confirm(self.channel, readback)
                if answer is AGENT:
                    yield self.to_agent()
                if answer is BACK:
                    step = "quantity"
                    continue
                if answer is False:
                    step = "code"
                    continue
                try:
                    order = yield self.trading.place_order(
                        self.account, code, side, price_fen, quantity, self.origin,
                        client_order_id=client_order_id,
                    )
                except TradingRefused as refused:
                    yield self.refused("order", refused)
                    return
                except Exception:
                    # Booked or not, nobody knows: the same ticket confirmed
                    # again has the same client order id and cannot be booked twice.
                    failures += 1
                    self.log.failure(
                        "phone order {client_order_id} failed on call {cid}",
                        client_order_id=client_order_id, cid=self.origin.correlation_id,
                    )
                    if failures > 1:
                        raise
                    continue
                self.log.info(
                    "phone order {order_no} ({client_order_id}) placed on call {cid}",
                    order_no=order["order_no"], client_order_id=client_order_id, cid=self.origin.correlation_id,
                )
                yield self.play(["order-placed", *say_digits(str(order["order_no"]), self.language)])
                return

    @defer.inlineCallbacks
    def refused(self, action, refused):
        code = refused.reason.code
        self.log.info(
            "phone {action} refused ({code}) on call {cid}", action=action, code=code, cid=self.origin.correlation_id
        )
        prompt = refusal_prompt(code)
        yield self.play([prompt] if prompt == GENERIC_REFUSAL else [prompt, "order-not-placed"])

    # -- cancel

    @defer.inlineCallbacks
    def cancel(self):
        while True:
            order_no = yield self.entry("enter-order-number", _ORDER_NO_MAXIMUM)
            if order_no is BACK:
                return
            answer = yield self.dialogue.confirm(
                self.channel, ["order-number", *say_digits(order_no, self.language), "confirm-or-reenter"]
            )
            if answer is AGENT:
                yield self.to_agent()
            if answer is BACK:
                return
            if answer is False:
                continue
            try:
                yield self.trading.cancel_order(self.account, int(order_no), self.origin)
            except TradingRefused as refused:
                code = refused.reason.code
                self.log.info("phone cancel refused ({code}) on call {cid}", code=code, cid=self.origin.correlation_id)
                yield self.play(refusal_prompt(code))
                return
            yield self.play("cancel-submitted")
            return

    # -- queries

    @defer.inlineCallbacks
    def query(self):
        key = yield self.dialogue.menu(self.channel, "query-menu", _QUERY_MENU)
        if key is AGENT:
            yield self.to_agent()
        if key is BACK:
            return
        try:
            if key == "1":
                funds = yield self.trading.funds(self.account)
                yield self.play([
                    "funds-available", *say_money(funds["available_fen"], self.language),
                    "total-assets", *say_money(funds["total_fen"], self.language),
                ])
            else:
                holdings = yield self.trading.positions(self.account)
                if not holdings:
                    yield self.play("no-positions")
                    return
                prompts = ["positions-intro"]
                for holding in holdings:
                    prompts += ["stock-code", *say_digits(holding["code"], self.language)]
                    prompts += ["holding", *say_quantity(holding["quantity"], "share", self.language)]
                yield self.play([*prompts, "end-of-list"])
        except TradingRefused as refused:
            self.log.info(
                "phone query refused ({code}) on call {cid}", code=refused.reason.code, cid=self.origin.correlation_id
            )
            yield self.play(refusal_prompt(refused.reason.code))
