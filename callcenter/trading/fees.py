"""
What an investor pays on top of the traded amount: the broker's commission
(with a minimum per order), the stamp duty on sells, and the transfer fee
(过户费) of China Securities Depository and Clearing on both sides.

The defaults are the rates in force since 28 August 2023 (stamp duty
halved to 0.05%) and since 29 April 2022 (transfer fee 0.001% on both
exchanges); a broker sets its own commission.  Rates are integer parts
per million so that every amount stays integer fen.
"""

from dataclasses import dataclass

from callcenter.trading.model import BUY, SELL, SIDES

_MILLION = 1_000_000


def _ppm_of(amount_fen, ppm):
    """C{ppm} millionths of C{amount_fen}, rounded half up to the fen."""
    return (amount_fen * ppm + _MILLION // 2) // _MILLION


@dataclass(frozen=True)
class Fees:
    commission_fen: int
    stamp_duty_fen: int
    transfer_fee_fen: int

    @property
    def total_fen(self):
        return self.commission_fen + self.stamp_duty_fen + self.transfer_fee_fen


@dataclass(frozen=True)
class FeeSchedule:
    commission_rate_ppm: int = 250
    commission_minimum_fen: int = 500
    stamp_duty_ppm: int = 500
    transfer_fee_ppm: int = 10

    def __post_init__(self):
        for name, value in vars(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an integer of 0 or more, not {value!r}")

    def fees(self, side, amount_fen):
        """
        The fees of an order that has traded C{amount_fen} in all so far.

        The commission minimum applies once per order, so this is a
        function of the order's cumulative filled amount, not of one fill:
        a fill costs C{fees(side, after).total_fen - fees(side,
        before).total_fen}, which is never negative because fees never
        fall as the amount grows.  Nothing traded costs nothing (no
        minimum).
        """
        if side not in SIDES:
            raise ValueError(f"side {side!r} is not one of {', '.join(SIDES)}")
        if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or amount_fen < 0:
            raise ValueError(f"amount {amount_fen!r} is not an integer number of fen, 0 or more")
        if amount_fen == 0:
            return Fees(0, 0, 0)
        commission = max(self.commission_minimum_fen, _ppm_of(amount_fen, self.commission_rate_ppm))
        stamp_duty = _ppm_of(amount_fen, self.stamp_duty_ppm) if side == SELL else 0
        return Fees(commission, stamp_duty, _ppm_of(amount_fen, self.transfer_fee_ppm))

    def buy_freeze_fen(self, amount_fen):
        """
        The cash a buy of C{amount_fen} (price times quantity) holds back:
        the amount and its fees.  Fills at or below the order's price then
        never cost more than was frozen, since fees grow with the amount.
        """
        return amount_fen + self.fees(BUY, amount_fen).total_fen
