"""
The instrument master as the rules see it: what a stock is, and its price
band for the day.
"""

import re
import unicodedata
from dataclasses import dataclass

# Daily price limit in percent of the previous close, by board; ST stocks
# on the main board have a narrower band (see price_limit_percent).
BOARD_LIMIT_PERCENT = {"main": 10, "chinext": 20, "star": 20}
ST_MAIN_LIMIT_PERCENT = 5


@dataclass(frozen=True)
class Instrument:
    code: str
    exchange: str
    name_zh: str
    name_en: str
    board: str
    prev_close_fen: int
    is_st: bool = False
    lot_size: int = 100


def price_limit_percent(instrument):
    if instrument.board == "main" and instrument.is_st:
        return ST_MAIN_LIMIT_PERCENT
    return BOARD_LIMIT_PERCENT[instrument.board]


def price_limits(instrument):
    """
    Today's (limit-down, limit-up) in fen: the previous close times
    (1 ∓ limit), rounded half up to the 0.01 CNY tick as the exchanges do.
    """
    percent = price_limit_percent(instrument)
    close = instrument.prev_close_fen
    down = (close * (100 - percent) + 50) // 100
    up = (close * (100 + percent) + 50) // 100
    return down, up


_RISK_MARKER = re.compile(r"\*?ST")


def english_name(name_zh, name_en):
    """
    The English name as said: the exchange's risk warning of the Chinese
    name (ST, *ST: special treatment, delisting risk) put in front, since
    the master's English names leave it out and an investor must hear it.
    """
    name_en = name_en.strip()
    marker = _RISK_MARKER.match(unicodedata.normalize("NFKC", name_zh.strip()))
    if marker is None or name_en.upper().startswith(marker.group().lstrip("*")):
        return name_en
    return f"{marker.group()} {name_en}"
