"""
What the IVR says for numbers, money, prices, stock codes, dates, times and
percentages: each C{say_*} function returns the names of the recorded
prompts to play one after the other, in Mandarin (C{"zh"}, the default) or
English (C{"en"}).

L{VOCABULARY} maps every prompt name these functions can return to the
text it is recorded from, so that the prompt generator makes one audio file
per name.  Names are ASCII, C{lang/slug}: C{zh/digit-2} is 二, C{zh/liang}
is 两, C{zh/yi4} is 亿.

Mandarin, as brokers' phone lines speak it:
  - 零 once for each run of zeros inside a number (10,020 一万零二十;
    100,010,000 一亿零一万), never for zeros at the end (一亿, not
    一亿零); the zeros at the end of a 万 or 亿 section are closed by the
    section's name (101,000 十万一千).
  - 十 alone, not 一十, when it is the first word (十五, 十万); 一十 inside
    (一百一十, 十万零一十五).
  - 两 for a 2 in front of 百 and 千, always (两百, 一千两百, 零两百,
    两百二十二: the colloquial reading brokers use, not the textbook 二百).
  - 两 for a count of something that is exactly 2: of 万 or 亿 (两万,
    两亿; but 二十二万 and 一百零二万, as one says 二十二股 and 一百零二股),
    of 元, 角 or 分 (两元, 十二元两角两分), of shares (两股), of hours
    (两点) -- except right after 零, where it is 二, as in 一百零二
    (一亿零二万, 十二元零二分).  A 2 in the tens or the units of a number
    is 二 (二十二, 一百零二).
  - So L{say_number} says 2 as 二 (the number) and L{say_quantity} as 两
    (an amount of shares).
  - Years digit by digit (二〇二六年, 〇 recorded as 零); the day is 日.
  - Clock times on the 24-hour clock with 点 (十四点三十分, 十四点零五分,
    十四点整); 点 and 分 are the same prompts as the decimal point and the
    fen of money, since they are the same syllables.
  - Prices with both decimals, digit by digit, as the screen shows them
    (12.30 十二点三零); percentages without trailing zeros (5.20% 百分之五点二).
  - Stock codes and phone numbers digit by digit, 1 as 幺 (yāo) unless
    asked otherwise, since 一 and 七 are easily confused on a phone line.

The prompts are recorded in their citation tones, so the tone changes of
一 (一万 yí wàn, 一千 yì qiān) are not heard, as in any IVR that joins
single-syllable prompts.

English: British style with "and" before the last part under a hundred
(one hundred and fifteen, one thousand and one); money in yuan and fen
(twelve yuan and thirty-four fen; neither word takes a plural); dates as
"December first, twenty twenty-six"; times on the 24-hour clock (fourteen
thirty, fourteen oh five, fourteen o'clock, and zero o'clock for midnight);
digits with "zero", never "oh", so that a code is unambiguous.

Every function raises C{ValueError} for what it cannot say: a language
other than C{"zh"} or C{"en"}, a value of the wrong type, negative money,
a number past L{LARGEST}.
"""

import datetime
from types import MappingProxyType

__all__ = [
    "LANGUAGES",
    "LARGEST",
    "UNITS",
    "VOCABULARY",
    "say_date",
    "say_digits",
    "say_money",
    "say_number",
    "say_percent",
    "say_price",
    "say_quantity",
    "say_time",
]

LANGUAGES = ("zh", "en")

# 9999亿9999万9999: the largest number with names for all its parts in both
# languages without going to 万亿/trillion, which no brokerage amount reaches.
LARGEST = 10**12 - 1

VOCABULARY = MappingProxyType({
    # Mandarin.
    "zh/digit-1": "一",
    "zh/digit-2": "二",
    "zh/digit-3": "三",
    "zh/digit-4": "四",
    "zh/digit-5": "五",
    "zh/digit-6": "六",
    "zh/digit-7": "七",
    "zh/digit-8": "八",
    "zh/digit-9": "九",
    "zh/ling": "零",  # the digit 0, the 零 inside numbers, and the 〇 of years
    "zh/liang": "两",
    "zh/yao": "幺",  # 1 in codes and phone numbers
    "zh/shi": "十",
    "zh/bai": "百",
    "zh/qian": "千",
    "zh/wan": "万",
    "zh/yi4": "亿",
    "zh/fu": "负",
    "zh/dian": "点",  # decimal point and o'clock
    "zh/yuan": "元",
    "zh/jiao": "角",
    "zh/fen": "分",  # 0.01 元 and minute
    "zh/gu": "股",
    "zh/baifenzhi": "百分之",
    "zh/nian": "年",
    "zh/yue": "月",
    "zh/ri": "日",
    "zh/zheng": "整",  # 十四点整
    # English.
    "en/zero": "zero",
    "en/one": "one",
    "en/two": "two",
    "en/three": "three",
    "en/four": "four",
    "en/five": "five",
    "en/six": "six",
    "en/seven": "seven",
    "en/eight": "eight",
    "en/nine": "nine",
    "en/ten": "ten",
    "en/eleven": "eleven",
    "en/twelve": "twelve",
    "en/thirteen": "thirteen",
    "en/fourteen": "fourteen",
    "en/fifteen": "fifteen",
    "en/sixteen": "sixteen",
    "en/seventeen": "seventeen",
    "en/eighteen": "eighteen",
    "en/nineteen": "nineteen",
    "en/twenty": "twenty",
    "en/thirty": "thirty",
    "en/forty": "forty",
    "en/fifty": "fifty",
    "en/sixty": "sixty",
    "en/seventy": "seventy",
    "en/eighty": "eighty",
    "en/ninety": "ninety",
    "en/hundred": "hundred",
    "en/thousand": "thousand",
    "en/million": "million",
    "en/billion": "billion",
    "en/and": "and",
    "en/minus": "minus",
    "en/point": "point",
    "en/oh": "oh",  # nineteen oh five, fourteen oh five
    "en/oclock": "o'clock",
    "en/yuan": "yuan",
    "en/fen": "fen",
    "en/share": "share",
    "en/shares": "shares",
    "en/percent": "percent",
    "en/january": "January",
    "en/february": "February",
    "en/march": "March",
    "en/april": "April",
    "en/may": "May",
    "en/june": "June",
    "en/july": "July",
    "en/august": "August",
    "en/september": "September",
    "en/october": "October",
    "en/november": "November",
    "en/december": "December",
    "en/first": "first",
    "en/second": "second",
    "en/third": "third",
    "en/fourth": "fourth",
    "en/fifth": "fifth",
    "en/sixth": "sixth",
    "en/seventh": "seventh",
    "en/eighth": "eighth",
    "en/ninth": "ninth",
    "en/tenth": "tenth",
    "en/eleventh": "eleventh",
    "en/twelfth": "twelfth",
    "en/thirteenth": "thirteenth",
    "en/fourteenth": "fourteenth",
    "en/fifteenth": "fifteenth",
    "en/sixteenth": "sixteenth",
    "en/seventeenth": "seventeenth",
    "en/eighteenth": "eighteenth",
    "en/nineteenth": "nineteenth",
    "en/twentieth": "twentieth",
    "en/thirtieth": "thirtieth",
})

# What one counts, singular and plural; a new unit is one more row (and its
# prompts in VOCABULARY).
UNITS = MappingProxyType({
    "share": {"zh": ("zh/gu", "zh/gu"), "en": ("en/share", "en/shares")},
})

_EN_UNDER_TWENTY = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_EN_ORDINAL_UNDER_TWENTY = (
    "_ first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
    "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth"
).split()
_EN_ORDINAL_TENS = {20: "twentieth", 30: "thirtieth"}
_EN_MONTHS = (
    "_ january february march april may june july august september october november december"
).split()
_EN_SCALES = ((10**9, "en/billion"), (10**6, "en/million"), (10**3, "en/thousand"))

# Mandarin counts in sections of four digits, named from the top.
_ZH_SECTIONS = ((10**8, "zh/yi4"), (10**4, "zh/wan"), (1, None))
_ZH_PLACES = ((1000, "zh/qian"), (100, "zh/bai"), (10, "zh/shi"), (1, None))


def _check_language(lang):
    if lang not in LANGUAGES:
        raise ValueError(f"{lang!r} is not a language the IVR speaks: one of {', '.join(LANGUAGES)}")


def _check_integer(value, what):
    # bool is an int subclass; a float here is a bug upstream.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer {what}")


def _check_range(value, what, lowest, highest):
    if not lowest <= value <= highest:
        raise ValueError(f"{value!r} is out of range for {what}: {lowest} to {highest}")


def _zh_digit(digit, one="zh/digit-1"):
    if digit == 0:
        return "zh/ling"
    if digit == 1:
        return one
    return f"zh/digit-{digit}"


def _zh_cardinal(n):
    """The words for 0 <= n <= LARGEST, 2 said 二 where it stands alone."""
    if n == 0:
        return ["zh/ling"]
    words = []
    zeros_skipped = False
    for section_scale, section_name in _ZH_SECTIONS:
        section = n // section_scale % 10000
        if section == 0:
            zeros_skipped = bool(words)
            continue
        for place, place_name in _ZH_PLACES:
            digit = section // place % 10
            if digit == 0:
                zeros_skipped = bool(words)
                continue
            after_zero = zeros_skipped
            if zeros_skipped:
                words.append("zh/ling")
                zeros_skipped = False
            if digit == 1 and place == 10 and not words:
                pass  # 十五, 十万: no 一 before a leading 十
            elif digit == 2 and (place >= 100 or (section == 2 and section_name and not after_zero)):
                words.append("zh/liang")  # 两百, 两千, 两万, 两亿; but 一亿零二万
            else:
                words.append(_zh_digit(digit))
            if place_name:
                words.append(place_name)
        if section_name:
            words.append(section_name)
            # The section's name ends its trailing zeros: 十万一千, not 十万零一千.
            zeros_skipped = False
    return words


def _en_under_thousand(n):
    hundreds, rest = divmod(n, 100)
    words = []
    if hundreds:
        words += [f"en/{_EN_UNDER_TWENTY[hundreds]}", "en/hundred"]
        if rest:
            words.append("en/and")
    if rest:
        words += _en_under_hundred(rest)
    return words


def _en_under_hundred(n):
    if n < 20:
        return [f"en/{_EN_UNDER_TWENTY[n]}"]
    tens, ones = divmod(n, 10)
    words = [f"en/{_EN_TENS[tens]}"]
    if ones:
        words.append(f"en/{_EN_UNDER_TWENTY[ones]}")
    return words


def _en_cardinal(n):
    """The words for 0 <= n <= LARGEST."""
    if n == 0:
        return ["en/zero"]
    words = []
    for scale, scale_name in _EN_SCALES:
        count, n = divmod(n, scale)
        if count:
            words += _en_under_thousand(count) + [scale_name]
    if n:
        if words and n < 100:
            words.append("en/and")  # one thousand and one
        words += _en_under_thousand(n)
    return words


def _cardinal(n, lang):
    return _zh_cardinal(n) if lang == "zh" else _en_cardinal(n)


def _digit_words(text, lang, yao=False):
    if lang == "zh":
        return [_zh_digit(int(digit), one="zh/yao" if yao else "zh/digit-1") for digit in text]
    return [f"en/{_EN_UNDER_TWENTY[int(digit)]}" for digit in text]


def _decimal(whole, decimals, lang):
    """C{whole} point each digit of the text C{decimals} (if any)."""
    words = _cardinal(whole, lang)
    if decimals:
        words.append("zh/dian" if lang == "zh" else "en/point")
        words += _digit_words(decimals, lang)
    return words


def say_number(n, lang="zh"):
    """
    An integer from -L{LARGEST} to L{LARGEST}, as a number: 2 is 二, 200
    两百, 20,000 两万, -15 负十五; C{"en"} one hundred and fifteen, minus
    fifteen.
    """
    _check_language(lang)
    _check_integer(n, "to say")
    _check_range(n, "a number", -LARGEST, LARGEST)
    words = _cardinal(abs(n), lang)
    if n < 0:
        words.insert(0, "zh/fu" if lang == "zh" else "en/minus")
    return words


def say_quantity(n, unit="share", lang="zh"):
    """
    C{n} of C{unit} (one of L{UNITS}), 0 to L{LARGEST}: 200 股 两百股,
    2 股 两股 (not 二股); C{"en"} one share, two hundred shares.
    """
    _check_language(lang)
    _check_integer(n, "quantity")
    _check_range(n, "a quantity", 0, LARGEST)
    names = UNITS.get(unit)
    if names is None:
        raise ValueError(f"{unit!r} is not a unit the IVR can say: one of {', '.join(UNITS)}")
    singular, plural = names[lang]
    return _count(n, lang) + [singular if n == 1 else plural]


def _count(n, lang):
    # 两 for an amount of exactly 2: 两股, 两元, 两点.
    if lang == "zh" and n == 2:
        return ["zh/liang"]
    return _cardinal(n, lang)


def say_money(fen, lang="zh"):
    """
    An amount of CNY in integer fen, 0 or more: 1234 十二元三角四分, 1205
    十二元零五分, 1200 十二元, 5 五分, 200 两元, 0 零元; C{"en"} twelve yuan
    and thirty-four fen, five fen, zero yuan.
    """
    _check_language(lang)
    _check_integer(fen, "number of fen")
    _check_range(fen, "an amount of fen", 0, LARGEST * 100 + 99)
    yuan, rest = divmod(fen, 100)
    jiao, fen = divmod(rest, 10)
    if lang == "en":
        words = []
        if yuan or not rest:
            words += _count(yuan, lang) + ["en/yuan"]
        if rest:
            if yuan:
                words.append("en/and")
            words += _count(rest, lang) + ["en/fen"]
        return words
    words = []
    if yuan or not rest:
        words += _count(yuan, lang) + ["zh/yuan"]
    if jiao:
        words += _count(jiao, lang) + ["zh/jiao"]
    if fen:
        if yuan and not jiao:
            # 十二元零五分; and 零二分 after 零, as in 一百零二.
            words += ["zh/ling", _zh_digit(fen)]
        else:
            words += _count(fen, lang)
        words.append("zh/fen")
    return words


def say_price(fen, lang="zh"):
    """
    A share price in integer fen, 0 or more, with both decimals read digit
    by digit as the screen shows them: 1234 十二点三四, 1230 十二点三零, 50
    零点五零, 200 二点零零; C{"en"} twelve point three four.
    """
    _check_language(lang)
    _check_integer(fen, "price in fen")
    _check_range(fen, "a price in fen", 0, LARGEST * 100 + 99)
    yuan, rest = divmod(fen, 100)
    return _decimal(yuan, f"{rest:02d}", lang)


def say_percent(basis_points, lang="zh"):
    """
    A percentage in basis points (1/100 of a percent), negative for a fall,
    without trailing zeros: 520 百分之五点二, -350 负百分之三点五, 1
    百分之零点零一, 500 百分之五; C{"en"} five point two percent.
    """
    _check_language(lang)
    _check_integer(basis_points, "number of basis points")
    _check_range(basis_points, "basis points", -(LARGEST * 100 + 99), LARGEST * 100 + 99)
    whole, rest = divmod(abs(basis_points), 100)
    words = _decimal(whole, f"{rest:02d}".rstrip("0"), lang)
    if lang == "zh":
        words.insert(0, "zh/baifenzhi")
    else:
        words.append("en/percent")
    if basis_points < 0:
        words.insert(0, "zh/fu" if lang == "zh" else "en/minus")
    return words


def say_digits(text, lang="zh", yao=True):
    """
    A string of ASCII digits one by one, as stock codes and phone numbers
    are read: C{"600519"} 六零零五一九 with C{yao=False}, and with the
    default C{yao=True} 1 is 幺 (C{"000001"} 零零零零零幺).  C{yao} has no
    effect in English (six zero zero five one nine).
    """
    _check_language(lang)
    if not (isinstance(text, str) and text.isascii() and text.isdigit()):
        raise ValueError(f"{text!r} is not a string of digits such as '600519'")
    return _digit_words(text, lang, yao=yao)


def say_date(date, lang="zh"):
    """
    A C{datetime.date}: 2026-12-01 二〇二六年十二月一日; C{"en"} December
    first, twenty twenty-six (two thousand and five, nineteen oh five).
    """
    _check_language(lang)
    if not isinstance(date, datetime.date):
        raise ValueError(f"{date!r} is not a date")
    if lang == "zh":
        return (
            _digit_words(str(date.year), lang) + ["zh/nian"]
            + _zh_cardinal(date.month) + ["zh/yue"]
            + _zh_cardinal(date.day) + ["zh/ri"]
        )
    return [f"en/{_EN_MONTHS[date.month]}"] + _en_ordinal(date.day) + _en_year(date.year)


def _en_ordinal(day):
    tens, ones = divmod(day, 10)
    if day < 20:
        return [f"en/{_EN_ORDINAL_UNDER_TWENTY[day]}"]
    if not ones:
        return [f"en/{_EN_ORDINAL_TENS[day]}"]
    return [f"en/{_EN_TENS[tens]}", f"en/{_EN_ORDINAL_UNDER_TWENTY[ones]}"]


def _en_year(year):
    century, rest = divmod(year, 100)
    if year < 1000 or year % 1000 < 10:
        return _en_cardinal(year)  # nine hundred and five, two thousand and five
    if rest == 0:
        return _en_under_hundred(century) + ["en/hundred"]  # nineteen hundred
    if rest < 10:
        return _en_under_hundred(century) + ["en/oh", f"en/{_EN_UNDER_TWENTY[rest]}"]
    return _en_under_hundred(century) + _en_under_hundred(rest)


def say_time(time, lang="zh"):
    """
    A C{datetime.time} on the 24-hour clock, to the minute (seconds are not
    said): 14:30 十四点三十分, 14:05 十四点零五分, 14:00 十四点整, 2:10
    两点十分; C{"en"} fourteen thirty, fourteen oh five, fourteen o'clock.
    """
    _check_language(lang)
    if not isinstance(time, datetime.time):
        raise ValueError(f"{time!r} is not a time of day")
    hour, minute = time.hour, time.minute
    if lang == "zh":
        words = _count(hour, lang) + ["zh/dian"]
        if minute == 0:
            return words + ["zh/zheng"]
        if minute < 10:
            words.append("zh/ling")
        return words + _zh_cardinal(minute) + ["zh/fen"]
    words = _en_cardinal(hour)
    if minute == 0:
        return words + ["en/oclock"]
    if minute < 10:
        words.append("en/oh")
    return words + _en_under_hundred(minute)
