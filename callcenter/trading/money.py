"""
Amounts of money as people write them (CNY, C{"12.34"}) and as the code
holds them (integer fen, 1 CNY = 100 fen).  Never a float: 4.35 CNY is
434.99999... fen in binary floating point.
"""

import re

_CNY = re.compile(r"([0-9]+)(?:\.([0-9]+))?")


class TooManyDecimals(ValueError):
    """The text is an amount, but finer than the fen (C{"12.345"})."""


def parse_cny(text):
    """
    C{"12.34"} to 1234, C{"5"} to 500, C{"0.5"} to 50.  Surrounding spaces
    are ignored; signs, thousands separators, exponents and full-width
    digits are not accepted.

    @raise TooManyDecimals: more than 2 decimals, even zeros (C{"1.230"}):
        a price typed that way was probably meant for another tick size.
    @raise ValueError: anything else that is not a non-negative amount.
    """
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not text such as 12.34")
    match = _CNY.fullmatch(text.strip())
    if match is None:
        if text.strip().startswith("-"):
            raise ValueError(f"{text!r} is negative: an amount of CNY is 0 or more")
        raise ValueError(f"{text!r} is not an amount in CNY such as 12.34")
    whole, decimals = match.group(1), match.group(2) or ""
    if len(decimals) > 2:
        raise TooManyDecimals(f"{text!r} has more than 2 decimals: the smallest unit is 0.01 CNY")
    return int(whole) * 100 + int(decimals.ljust(2, "0"))


def format_cny(fen):
    """1234 to C{"12.34"}, 5 to C{"0.05"}, -150 to C{"-1.50"}."""
    # bool is an int subclass; a float here is a bug upstream, not money.
    if not isinstance(fen, int) or isinstance(fen, bool):
        raise TypeError(f"{fen!r} is not an integer number of fen")
    sign = "-" if fen < 0 else ""
    yuan, rest = divmod(abs(fen), 100)
    return f"{sign}{yuan}.{rest:02d}"
