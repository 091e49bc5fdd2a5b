"""
The seams of the trading subsystem: what replaces the simulated exchange
with a real counter or FIX gateway, and the simulated market data with a
real feed, without the order service noticing.
"""

from zope.interface import Attribute, Interface


class IExecutionListener(Interface):
    """
    Told what the exchange did with orders.  The gateway may report an
    event twice (after a reconnect, say); the listener makes repeats
    harmless, using C{exec_id} for fills.
    """

    def order_accepted(order_no):
        """The exchange has the order."""

    def order_filled(order_no, exec_id, quantity, price_fen):
        """C{quantity} shares traded at C{price_fen}; C{exec_id} is unique per order."""

    def order_cancelled(order_no, quantity):
        """C{quantity} unfilled shares were taken off the book (all that remained)."""

    def order_rejected(order_no, code):
        """The exchange refused the order; C{code} is a reason code of L{callcenter.trading.reasons}."""


class ITradingGateway(Interface):
    """The way to an exchange: a simulated one, a counter system or FIX."""

    def set_listener(listener):
        """Report executions to C{listener} (an L{IExecutionListener})."""

    def submit(order):
        """
        Send a L{callcenter.trading.model.GatewayOrder}.  Returns at once;
        the outcome arrives at the listener.
        """

    def cancel(order_no):
        """Ask to cancel what is unfilled; the outcome arrives at the listener."""


class IMarketDataFeed(Interface):
    """Quotes: a simulator, a replay of a file, or a real feed."""

    def subscribe(handler):
        """
        Call C{handler(tick)} with each L{callcenter.trading.model.Tick}.

        @return: an object with C{cancel()}.
        """

    def quote(code, exchange):
        """The latest Tick of an instrument, or None before its first."""


class ITradingClock(Interface):
    """The time trading rules see: the real one in production, set by tests, simulated in the demo."""

    def now():
        """An aware datetime in China Standard Time (UTC+8)."""


class IPriceAlerts(Interface):
    """Per-investor price alert rules, evaluated on every tick."""

    rule_count = Attribute("How many rules are armed.")


class ITradingService(Interface):
    """
    What the IVR, the web API and agents' desktops use to trade for an
    investor.  Every action takes an L{callcenter.trading.model.Origin}
    (channel, caller number, call id, agent) for the audit trail.  Methods
    returning Deferreds fail with L{callcenter.trading.reasons.TradingRefused}
    when a rule says no; its reason has zh and en text to show or say.
    """

    def instrument(code):
        """The Instrument with this six-digit code, or None."""

    def quote(code):
        """A L{callcenter.trading.service.Quote}: instrument, latest tick, price band; None if unknown."""

    def login(fund_account_no, password, origin):
        """Fires with an L{callcenter.trading.accounts.Investor}; wrong passwords count toward the lockout."""

    def change_password(fund_account_no, old_password, new_password, origin):
        """Fires with None once the new password is stored."""

    def place_order(fund_account_no, code, side, price_fen, quantity, origin, client_order_id=None, order_type="limit"):
        """
        Fires with the order (a dict of its columns) once it is durably
        booked, its key C{duplicate} True when C{client_order_id} had
        already made it (a retry: nothing new was booked).
        """

    def cancel_order(fund_account_no, order_no, origin):
        """Fires with the order once the cancel is requested (the exchange confirms later)."""

    def order(fund_account_no, order_no):
        """Fires with one of the investor's orders, or None."""

    def funds(fund_account_no):
        """Fires with a dict: available_fen, frozen_fen, market_value_fen, total_fen."""

    def positions(fund_account_no):
        """Fires with a list of dicts, one per holding."""

    def orders(fund_account_no, trading_day=None):
        """Fires with today's (or that day's) orders, newest first."""

    def fills(fund_account_no, trading_day=None):
        """Fires with that day's executions."""

    def alert_rules(fund_account_no):
        """Fires with the investor's price alert rules."""

    def add_alert_rule(fund_account_no, code, kind, threshold, rearm, origin):
        """Fires with the new rule id."""

    def remove_alert_rule(fund_account_no, rule_id, origin):
        """Fires with None."""


class IInvestorSessions(Interface):
    """Investors' API sessions (bearer tokens), shared by every API an investor uses."""

    def authenticate(request):
        """
        @return: a Deferred firing with the fund account number of the
            request's live session, or failing with an
            L{callcenter.web.json_api.APIError} 401.
        """
