"""
The instruments' names as prompts, for phone trading's read-back of a stock
code: C{zh/stock-name-<code>} says C{name_zh} and C{en/stock-name-<code>}
C{name_en} of the instrument master (C{etc/instruments.csv}).

Names are written for the eye; L{spoken} gives what the synthesiser is to
say, by these choices:

  - C{*ST} is said "星ST", as brokers and investors say it ("*" alone would
    be "asterisk", in English).
  - Latin letters in a Mandarin name are spelled, one by one: espeak-ng's
    C{cmn-latn-pinyin} voice says letters the Chinese way (T "ti", C "sei",
    L "ai-l"; ST "ai-s ti", as brokers say it), but reads a run of capitals
    that happens to be pinyin as a syllable ("BAN" as ban1), so every letter
    goes in on its own, in capitals.
  - Numbers of three digits or more are said digit by digit (360 "三六零",
    712 "seven one two"): in a name they are a brand, not a quantity.
  - Mandarin words and characters espeak-ng misreads go in as pinyin
    (L{callcenter.ivr.pronunciation}; 银行 "yin2 hang2", 兴业 "xing1").
  - In English, abbreviations of up to four capitals are spelled
    ("ICBC", "BYD", "CATL", which espeak-ng would otherwise read as words,
    "CATL" as "cattle"), but for the few said as words (L{SAID_AS_WORDS});
    longer ones are words ("COSCO", "CITIC").  L{EN_RESPELLINGS} holds what
    no rule gets right ("Sci.", "3PEAK").

Full-width letters, digits and asterisks (as Chinese spreadsheets write
them) count as the ordinary ones.
"""

import csv
import io
import re
import unicodedata

from callcenter.ivr.pronunciation import replaced_apart, spoken_mandarin
from callcenter.trading.instruments import english_name

__all__ = ["PREFIX", "StockNamesError", "is_stock_name", "prompt_names", "read_names", "spoken"]

PREFIX = "stock-name-"
COLUMNS = ("code", "name_zh", "name_en")
_CODE = re.compile(r"[0-9]{6}\Z")
_LETTERS = re.compile(r"[A-Za-z]+")

# All-capital names of up to four letters said as words: romanised Chinese.
SAID_AS_WORDS = frozenset({"NARI", "YUTO"})
EN_RESPELLINGS = {
    "Sci.": "Science",
    "Tech.": "Technology",
    "3PEAK": "three peak",
    "HGTECH": "H.G Tech",
    "OVCTEK": "O.V.C Tek",
}
_MANDARIN_DIGITS = "零一二三四五六七八九"


class StockNamesError(ValueError):
    """The instruments file cannot give the names; C{problems} are one line each."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def is_stock_name(slug):
    return slug.startswith(PREFIX)


def prompt_names(code):
    """The Mandarin and English prompt names of the stock C{code}."""
    return f"zh/{PREFIX}{code}", f"en/{PREFIX}{code}"


def read_names(path):
    """
    The prompts of the instruments file at C{path}: C{{prompt name: name}}.
    The file has the columns of C{etc/instruments.csv} (only C{code},
    C{name_zh} and C{name_en} are read), in UTF-8.

    @raise StockNamesError: naming every bad line (a code that is not 6
        digits or is on two lines, an empty name, a missing field).
    """
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise StockNamesError([f"{path}: no such file"]) from None
    except OSError as e:
        raise StockNamesError([f"{path}: {e.strerror}"]) from None
    try:
        # utf-8-sig: spreadsheets save Chinese CSV with a byte order mark.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise StockNamesError([f"{path} line {line}: not UTF-8 (GBK? save the file as UTF-8)"]) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    where = f"{path} line 1"
    names, lines, problems = {}, {}, []
    try:
        missing = [column for column in COLUMNS if column not in (reader.fieldnames or ())]
        if missing:
            raise StockNamesError(
                [f"{where}: no column {', '.join(missing)} (the header of etc/instruments.csv is needed)"]
            )
        for row in reader:
            where = f"{path} line {reader.line_num}"
            bad = _row_problems(where, row, len(reader.fieldnames), lines)
            if bad:
                problems.extend(bad)
                continue
            code = row["code"].strip()
            lines[code] = reader.line_num
            zh, en = prompt_names(code)
            names[zh] = row["name_zh"].strip()
            names[en] = english_name(row["name_zh"], row["name_en"])
    except csv.Error as e:
        problems.append(f"{where}: {e}")
    if problems:
        raise StockNamesError(problems)
    return names


def _row_problems(where, row, fields, lines):
    # DictReader puts surplus fields under None and fills missing ones with None.
    if None in row or None in row.values():
        return [f"{where}: expected the {fields} fields of the header"]
    problems = []
    code = row["code"].strip()
    if not _CODE.match(code):
        problems.append(f"{where}: code {code!r} is not 6 digits")
    elif code in lines:
        problems.append(f"{where}: code {code} is already on line {lines[code]}")
    for column in ("name_zh", "name_en"):
        if not row[column].strip():
            problems.append(f"{where}: {column} is empty")
    return problems


def spoken(text, language):
    """What the synthesiser says for the name C{text} in C{language}: see the module's docstring."""
    text = unicodedata.normalize("NFKC", text)
    if language == "zh":
        return _spoken_mandarin(text)
    return _spoken_english(text)


def _spoken_mandarin(text):
    text = text.replace("*", "星")
    text = re.sub(r"[0-9]{3,}", lambda match: "".join(_MANDARIN_DIGITS[int(d)] for d in match.group()), text)
    text = replaced_apart(_LETTERS, text, lambda match: " ".join(match.group().upper()))
    return spoken_mandarin(" ".join(text.split()), name=True)


def _spell(match):
    word = match.group()
    return word if word in SAID_AS_WORDS else ".".join(word)


def _spoken_english(text):
    # "*ST" is said "star S T".
    text = re.sub(r"\*ST\b", "star ST", text)
    words = [EN_RESPELLINGS.get(word, word) for word in text.split()]
    text = " ".join(words)
    # Dots between the letters: espeak-ng spells "C.A.T.L"; "C A T L" it
    # reads with the article "a".
    text = re.sub(r"\b[A-Z]{2,4}\b", _spell, text)
    text = re.sub(r"\b[0-9]{3,}\b", lambda match: " ".join(match.group()), text)
    return " ".join(text.split())
