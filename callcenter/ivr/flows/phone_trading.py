"""
Phone trading (电话委托): log in with the fund account and trading password,
then buy, sell, cancel, query funds, holdings, today's orders and trades,
change the trading password and hear quotes, by key presses.  A caller who
only wants a price presses C{*} at the account prompt and hears quotes
without logging in.

Keys: at the account prompt, digits then C{#} log in and C{*} is quotes
(C{*} again comes back).  The trading menu: 1 buy, 2 sell, 3 cancel, 4
queries (1 funds, 2 positions, 3 today's orders, 4 today's trades), 5
change the password, 6 quotes, 0 an agent, C{*} back.

An order is placed only after the caller has heard it read back in full
(side, code and name, price, quantity) and pressed 1; its client order id
is the call id and the number of the ticket within the call, so that
confirming the same ticket again (after the back-end failed to answer)
never books it twice.  A new password is sent to the back-end only once it
has been keyed twice alike, so a hang-up before then changes nothing.

After a stock's code the flow says its name when the prompt pack has a
C{stock-name-<code>} prompt (made from the instrument list), and leaves it
out otherwise.

The flow is a callable for L{callcenter.ivr.dialogue.run_flow}: a hang-up at
any step raises L{CallEnded} out of it, which run_flow takes as the normal
end of a call.
"""

import hashlib

from twisted.internet import defer
from twisted.logger import Logger

from callcenter.ivr.dialogue import AGENT, BACK, INVALID, TIMEOUT, TooManyRetries
from callcenter.ivr.say import say_digits, say_money, say_percent, say_price, say_quantity
from callcenter.trading.model import (
    ACCEPTED,
    BUY,
    CANCELLED,
    FILLED,
    MARKET,
    NEW,
    OPEN_STATES,
    PARTIALLY_FILLED,
    REJECTED,
    SELL,
    Origin,
)
from callcenter.trading.money import TooManyDecimals, parse_cny
from callcenter.trading.reasons import TradingRefused

__all__ = ["GENERIC_REFUSAL", "REFUSAL_PROMPTS", "STATUS_PROMPTS", "PhoneTrading", "change_basis_points"]

# What the caller hears when the back-end refuses, by reason code
# (callcenter.trading.reasons).  Only codes with a recorded sentence of
# their own are here; every other refusal is GENERIC_REFUSAL.
REFUSAL_PROMPTS = {
    "wrong_password": "wrong-password",
    "account_locked": "account-locked",
    "caller_not_allowed": "caller-not-allowed",
    "account_not_found": "account-not-found",
    "bad_new_password": "new-password-six-digits",
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

# An order's state as the caller hears it, by orders.status; an open order
# whose cancel was asked for is "status-cancel-requested" whatever its state.
STATUS_PROMPTS = {
    NEW: "status-pending",
    ACCEPTED: "status-pending",
    PARTIALLY_FILLED: "status-partly-filled",
    FILLED: "status-filled",
    CANCELLED: "status-cancelled",
    REJECTED: "status-rejected",
}

# The trading menu's keys, as zh/trading-menu announces them: 1 buy, 2
# sell, 3 cancel, 4 queries, 5 change the password, 6 quotes.
_MENU = "123456"
# 1 funds, 2 positions, 3 today's orders, 4 today's trades (zh/query-menu).
_QUERY_MENU = "1234"

_CODE_LENGTH = 6
_ACCOUNT_MAXIMUM = 20  # fund_accounts.account_no is a String(20)
_PASSWORD_MAXIMUM = 12
# What the back-end takes as a new password (callcenter.trading.accounts
# PASSWORD_DIGITS; its refusal is bad_new_password): checked here too so
# that the caller hears it before keying the password a second time.
_NEW_PASSWORD_DIGITS = 6
_PRICE_MAXIMUM = 9  # digits and the decimal point: up to 999999.99
_QUANTITY_MAXIMUM = 9
_ORDER_NO_MAXIMUM = 12
_CLIENT_ORDER_ID_MAXIMUM = 64  # orders.client_order_id is a String(64)
_ENTRY_RETRIES = 3
_LOT = 100
# Lists (orders, trades, positions) are read this many at a time, then
# "1 for more": more than five orders in a row is more than a caller keeps
# in mind, and * lets them stop once they have heard the one they wanted.
_PAGE = 5


class _Done(Exception):
    """The flow is over; C{result} is what it returns."""

    def __init__(self, result=None):
        super().__init__(result)
        self.result = result


def refusal_prompt(code):
    """The prompt name the caller hears for the refusal reason C{code}."""
    return REFUSAL_PROMPTS.get(code, GENERIC_REFUSAL)


def change_basis_points(change_fen, previous_close_fen):
    """
    C{change_fen} as a part of the previous close, in basis points rounded
    half away from zero, as quote screens show it (to 0.01%); 0 without a
    previous close.
    """
    if previous_close_fen <= 0:
        return 0
    points = (abs(change_fen) * 20000 + previous_close_fen) // (2 * previous_close_fen)
    return points if change_fen >= 0 else -points


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

    @param max_login_attempts: wrong passwords in a row, at the login or
        when changing the password, that end the call (the back-end's own
        lockout counts them across calls).
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

    def play(self, prompt, interruptible=True):
        return self.dialogue.play(self.channel, prompt, interruptible=interruptible)

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
    def stock_code(self, prompt):
        """
        A six-digit stock code keyed after C{prompt}, or L{BACK}; a code of
        another length is said to be wrong and asked again.

        Up to seven keys are taken so that the C{#} the prompt asks for
        after the sixth digit ends this entry instead of being left for
        the next one (where it would be an empty, wrong entry).
        """
        while True:
            code = yield self.entry(prompt, _CODE_LENGTH + 1)
            if code is BACK or len(code) == _CODE_LENGTH:
                return code
            yield self.play(self.dialogue.invalid_prompt)

    def stock(self, code):
        """The prompts that name a stock: its code digit by digit, then its name if the pack has it."""
        prompts = ["stock-code", *say_digits(code, self.language)]
        name = f"stock-name-{code}"
        if self.dialogue.has(name):
            prompts.append(name)
        return prompts

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
        # Quotes are * at the account prompt rather than a menu before it:
        # a caller who trades (most of them) keys the account at once, as
        # before, and an account number is digits only, so * cannot be
        # part of one; * again from the quotes comes back here.
        account = None
        attempt = 0
        while True:
            if account is None:
                account = yield self.entry(["enter-account", "star-for-quotes"], _ACCOUNT_MAXIMUM)
                if account is BACK:
                    account = None
                    yield self.quotes()
                    continue
            attempt += 1
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
        elif key == "5":
            yield self.change_password()
        elif key == "6":
            yield self.quotes()

    # -- quotes

    @defer.inlineCallbacks
    def quotes(self):
        """Quotes of one stock code after another, until C{*}."""
        while True:
            code = yield self.stock_code("enter-quote-code")
            if code is BACK:
                return
            quote = yield defer.maybeDeferred(self.trading.quote, code)
            if quote is None:
                yield self.play("stock-not-found")
                continue
            close = quote.instrument.prev_close_fen
            tick = quote.tick
            if tick is None:
                # No trade yet today, or no feed: the previous close is still worth hearing.
                yield self.play([*self.stock(code), "no-quote", "previous-close", *say_price(close, self.language)])
                continue
            change = tick.last_fen - close
            yield self.play([
                *self.stock(code),
                "last-price", *say_price(tick.last_fen, self.language),
                "up" if change > 0 else "down" if change < 0 else "unchanged",
                *(say_price(abs(change), self.language) if change else []),
                *(["change", *say_percent(change_basis_points(change, close), self.language)] if change else []),
                # 0 is no bid (or no offer): at the price limit one side of the book is empty.
                *(["bid-price", *say_price(tick.bid_fen, self.language)] if tick.bid_fen > 0 else []),
                *(["ask-price", *say_price(tick.ask_fen, self.language)] if tick.ask_fen > 0 else []),
            ])

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
                code = yield self.stock_code("enter-stock-code")
                if code is BACK:
                    return
                instrument = yield defer.maybeDeferred(self.trading.instrument, code)
                if instrument is None:
                    yield self.play("stock-not-found")
                    continue
                yield self.play(self.stock(code))
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
                # Heard in full before a 1 can place it, however early the 1 came.
                answer = yield self.dialogue.confirm(self.channel, [
                    "confirm-buy" if side == BUY else "confirm-sell",
                    *self.stock(code),
                    "at-price", *say_price(price_fen, self.language),
                    "quantity", *say_quantity(quantity, "share", self.language),
                    "confirm-or-reenter",
                ], interruptible=False)
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
                # Heard to the end: a key pressed early must not cut off the order number.
                yield self.play(
                    ["order-placed", *say_digits(str(order["order_no"]), self.language)], interruptible=False
                )
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

    # -- changing the password

    @defer.inlineCallbacks
    def change_password(self):
        """
        The current password, then the new one twice, then the back-end;
        C{*} at any of them goes back to the menu.  A wrong current
        password counts toward the account's lockout as the back-end
        decides; L{PhoneTrading.max_login_attempts} tries refused (a wrong
        current password, a new one the back-end does not take) end the
        call.  No password is logged, not even its length.
        """
        for attempt in range(1, self.flow.max_login_attempts + 1):
            old = new = None
            try:
                old = yield self.entry("enter-old-password", _PASSWORD_MAXIMUM)
                if old is BACK:
                    return
                new = yield self.new_password()
                if new is BACK:
                    return
                yield self.trading.change_password(self.account, old, new, self.origin)
            except TradingRefused as refused:
                code = refused.reason.code
                self.log.info(
                    "phone password change for {account} refused ({code}) on call {cid}",
                    account=self.account, code=code, cid=self.origin.correlation_id,
                )
                if code in ("account_locked", "caller_not_allowed"):
                    yield self.end([refusal_prompt(code), "goodbye"])
                if code not in ("wrong_password", "bad_new_password"):
                    # The other refusals' sentences are worded for orders and logins.
                    yield self.play("password-not-changed")
                    return
                if attempt == self.flow.max_login_attempts:
                    yield self.end("too-many-attempts")
                # Both prompts ask again; from the current password, as the back-end needs both.
                yield self.play(refusal_prompt(code))
                continue
            finally:
                del old, new
            self.log.info(
                "phone password changed for {account} on call {cid}",
                account=self.account, cid=self.origin.correlation_id,
            )
            yield self.play("password-changed")
            return

    @defer.inlineCallbacks
    def new_password(self):
        """
        The new password, keyed twice alike, or L{BACK}.

        @raise TooManyRetries: L{_ENTRY_RETRIES} tries were not six digits
            or did not match.
        """
        for attempt in range(1, _ENTRY_RETRIES + 1):
            first = second = None
            try:
                first = yield self.entry("enter-new-password", _PASSWORD_MAXIMUM)
                if first is BACK:
                    return BACK
                if len(first) != _NEW_PASSWORD_DIGITS:
                    yield self.play("new-password-six-digits")
                    continue
                second = yield self.entry("reenter-new-password", _PASSWORD_MAXIMUM)
                if second is BACK:
                    return BACK
                if first == second:
                    return first
                yield self.play("passwords-differ")
            finally:
                del first, second
        raise TooManyRetries(INVALID)

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
                yield self.funds()
            elif key == "2":
                yield self.positions()
            elif key == "3":
                yield self.orders()
            else:
                yield self.fills()
        except TradingRefused as refused:
            self.log.info(
                "phone query refused ({code}) on call {cid}", code=refused.reason.code, cid=self.origin.correlation_id
            )
            yield self.play(refusal_prompt(refused.reason.code))

    @defer.inlineCallbacks
    def more(self, said, total):
        """
        Whether to go on after the C{said}th of C{total} items: after each
        page of L{_PAGE}, only if the caller presses 1 (C{*} stops).
        """
        if said % _PAGE or said >= total:
            return True
        key = yield self.dialogue.menu(self.channel, "more-or-back", "1")
        if key is AGENT:
            yield self.to_agent()
        return key is not BACK

    @defer.inlineCallbacks
    def funds(self):
        funds = yield self.trading.funds(self.account)
        frozen = funds["frozen_fen"]
        yield self.play([
            "funds-available", *say_money(funds["available_fen"], self.language),
            *(["funds-frozen", *say_money(frozen, self.language)] if frozen else []),
            "total-assets", *say_money(funds["total_fen"], self.language),
        ])

    @defer.inlineCallbacks
    def positions(self):
        holdings = yield self.trading.positions(self.account)
        if not holdings:
            yield self.play("no-positions")
            return
        yield self.play("positions-intro")
        for said, holding in enumerate(holdings, 1):
            # What can be sold is said only when it is not the whole holding (bought today, or frozen).
            sellable = holding.get("sellable", holding["quantity"])
            yield self.play([
                *self.stock(holding["code"]),
                "holding", *say_quantity(holding["quantity"], "share", self.language),
                *(["available-to-sell", *say_quantity(sellable, "share", self.language)]
                  if sellable != holding["quantity"] else []),
            ])
            if not (yield self.more(said, len(holdings))):
                return
        yield self.play("end-of-list")

    @defer.inlineCallbacks
    def orders(self):
        """Today's orders, newest first (as the back-end gives them)."""
        orders = yield self.trading.orders(self.account)
        if not orders:
            yield self.play("no-orders-today")
            return
        yield self.play("orders-intro")
        for said, order in enumerate(orders, 1):
            side, market, filled = order["side"], order["order_type"] == MARKET, order["filled_quantity"]
            yield self.play([
                "order-number", *say_digits(str(order["order_no"]), self.language),
                "buy" if side == BUY else "sell",
                *self.stock(order["code"]),
                *(["market-price"] if market else ["at-price", *say_price(order["price_fen"], self.language)]),
                "quantity", *say_quantity(order["quantity"], "share", self.language),
                self.status(order),
                *(["fill-quantity", *say_quantity(filled, "share", self.language)]
                  if 0 < filled < order["quantity"] else []),
            ])
            if not (yield self.more(said, len(orders))):
                return
        yield self.play("end-of-list")

    @staticmethod
    def status(order):
        if order["status"] in OPEN_STATES and order.get("cancel_requested"):
            return "status-cancel-requested"
        return STATUS_PROMPTS[order["status"]]

    @defer.inlineCallbacks
    def fills(self):
        """Today's trades, newest first like the orders (the back-end gives them oldest first)."""
        fills = yield self.trading.fills(self.account)
        if not fills:
            yield self.play("no-trades-today")
            return
        yield self.play("fills-intro")
        for said, fill in enumerate(reversed(fills), 1):
            side = fill["side"]
            yield self.play([
                "buy" if side == BUY else "sell",
                *self.stock(fill["code"]),
                "fill-price", *say_price(fill["price_fen"], self.language),
                "fill-quantity", *say_quantity(fill["quantity"], "share", self.language),
            ])
            if not (yield self.more(said, len(fills))):
                return
        yield self.play("end-of-list")
