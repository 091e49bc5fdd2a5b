"""
What the IVR says (L{callcenter.ivr.say}).  Expected prompts are written as
the text they are recorded from (C{"十二元三角四分"}, C{"twelve yuan and
thirty-four fen"}) and turned back into prompt names through VOCABULARY,
whose texts are unique per language, so each table row is as exact as a
list of names and can be read at a glance.
"""

import datetime
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter.ivr.say import (
    LANGUAGES,
    LARGEST,
    UNITS,
    VOCABULARY,
    say_date,
    say_digits,
    say_money,
    say_number,
    say_percent,
    say_price,
    say_quantity,
    say_time,
)

_ZH_NAMES = {text: name for name, text in VOCABULARY.items() if name.startswith("zh/")}
_EN_NAMES = {text.lower(): name for name, text in VOCABULARY.items() if name.startswith("en/")}
# Longest first, so that 百分之 is one prompt and not 百 then 分.
_ZH_TEXTS = sorted(_ZH_NAMES, key=len, reverse=True)


def zh(text):
    """The prompt names that say C{text}; 〇 in years is the 零 prompt."""
    names = []
    text = text.replace("〇", "零")
    while text:
        match = next((known for known in _ZH_TEXTS if text.startswith(known)), None)
        assert match is not None, f"no prompt for {text!r}"
        names.append(_ZH_NAMES[match])
        text = text[len(match):]
    return names


def en(text):
    """The prompt names that say C{text}: words, with hyphens and commas as pauses."""
    return [_EN_NAMES[word] for word in re.split(r"[\s,-]+", text.lower()) if word]


def test_texts_are_unique_per_language():
    for lang in LANGUAGES:
        texts = [text.lower() for name, text in VOCABULARY.items() if name.startswith(lang + "/")]
        assert len(texts) == len(set(texts))


def test_names_are_ascii_lang_slug():
    for name, text in VOCABULARY.items():
        assert re.fullmatch(r"(zh|en)/[a-z0-9-]+", name), name
        assert text and text == text.strip()


def test_vocabulary_is_read_only():
    with pytest.raises(TypeError):
        VOCABULARY["zh/ling"] = "〇"


@pytest.mark.parametrize(
    "n, text",
    [
        (0, "零"),
        (1, "一"),
        (2, "二"),
        (10, "十"),
        (11, "十一"),
        (15, "十五"),
        (20, "二十"),
        (22, "二十二"),
        (99, "九十九"),
        (100, "一百"),
        (101, "一百零一"),
        (102, "一百零二"),
        (110, "一百一十"),
        (115, "一百一十五"),
        (200, "两百"),
        (202, "两百零二"),
        (222, "两百二十二"),
        (1000, "一千"),
        (1001, "一千零一"),
        (1005, "一千零五"),
        (1010, "一千零一十"),
        (1100, "一千一百"),
        (1200, "一千两百"),
        (2000, "两千"),
        (2002, "两千零二"),
        (2020, "两千零二十"),
        (10000, "一万"),
        (10001, "一万零一"),
        (10010, "一万零一十"),
        (10020, "一万零二十"),
        (10100, "一万零一百"),
        (10200, "一万零两百"),
        (11000, "一万一千"),
        (20000, "两万"),
        (22222, "两万两千两百二十二"),
        (100000, "十万"),
        (100015, "十万零一十五"),
        (101000, "十万一千"),
        (110000, "十一万"),
        (120000, "十二万"),
        (220000, "二十二万"),
        (1000000, "一百万"),
        (1020000, "一百零二万"),
        (10000000, "一千万"),
        (20000100, "两千万零一百"),
        (100000000, "一亿"),
        (100000001, "一亿零一"),
        (100010000, "一亿零一万"),
        (100020000, "一亿零二万"),
        (100100000, "一亿零一十万"),
        (101000000, "一亿零一百万"),
        (110000000, "一亿一千万"),
        (120000000, "一亿两千万"),
        (200000000, "两亿"),
        (200020002, "两亿零二万零二"),
        (1000000000, "十亿"),
        (1000100000, "十亿零一十万"),
        (2000000000, "二十亿"),
        (10000000000, "一百亿"),
        (100000000000, "一千亿"),
        (100000000010, "一千亿零一十"),
        (999999999999, "九千九百九十九亿九千九百九十九万九千九百九十九"),
        (-1, "负一"),
        (-15, "负十五"),
        (-200, "负两百"),
    ],
)
def test_number_zh(n, text):
    assert say_number(n) == zh(text)
    assert say_number(n, "zh") == zh(text)


@pytest.mark.parametrize(
    "n, text",
    [
        (0, "zero"),
        (1, "one"),
        (2, "two"),
        (7, "seven"),
        (10, "ten"),
        (11, "eleven"),
        (12, "twelve"),
        (13, "thirteen"),
        (15, "fifteen"),
        (19, "nineteen"),
        (20, "twenty"),
        (21, "twenty-one"),
        (40, "forty"),
        (45, "forty-five"),
        (80, "eighty"),
        (99, "ninety-nine"),
        (100, "one hundred"),
        (101, "one hundred and one"),
        (115, "one hundred and fifteen"),
        (120, "one hundred and twenty"),
        (999, "nine hundred and ninety-nine"),
        (1000, "one thousand"),
        (1001, "one thousand and one"),
        (1015, "one thousand and fifteen"),
        (1100, "one thousand one hundred"),
        (1115, "one thousand one hundred and fifteen"),
        (12345, "twelve thousand three hundred and forty-five"),
        (1000000, "one million"),
        (1000001, "one million and one"),
        (1001000, "one million one thousand"),
        (2500000015, "two billion five hundred million and fifteen"),
        (999999999999, "nine hundred and ninety-nine billion nine hundred and ninety-nine million "
                       "nine hundred and ninety-nine thousand nine hundred and ninety-nine"),
        (-15, "minus fifteen"),
    ],
)
def test_number_en(n, text):
    assert say_number(n, "en") == en(text)


def test_two_is_er_as_a_number_and_liang_as_an_amount():
    assert say_number(2) == ["zh/digit-2"]
    assert say_quantity(2) == ["zh/liang", "zh/gu"]
    assert say_money(200) == ["zh/liang", "zh/yuan"]


@pytest.mark.parametrize(
    "n, zh_text, en_text",
    [
        (0, "零股", "zero shares"),
        (1, "一股", "one share"),
        (2, "两股", "two shares"),
        (12, "十二股", "twelve shares"),
        (100, "一百股", "one hundred shares"),
        (102, "一百零二股", "one hundred and two shares"),
        (200, "两百股", "two hundred shares"),
        (2000, "两千股", "two thousand shares"),
        (20000, "两万股", "twenty thousand shares"),
        (1000000, "一百万股", "one million shares"),
    ],
)
def test_quantity(n, zh_text, en_text):
    assert say_quantity(n, "share") == zh(zh_text)
    assert say_quantity(n, "share", "en") == en(en_text)


def test_quantity_counts_shares_by_default():
    assert say_quantity(200) == say_quantity(200, "share", "zh")


@pytest.mark.parametrize(
    "fen, zh_text, en_text",
    [
        (0, "零元", "zero yuan"),
        (1, "一分", "one fen"),
        (2, "两分", "two fen"),
        (5, "五分", "five fen"),
        (10, "一角", "ten fen"),
        (20, "两角", "twenty fen"),
        (50, "五角", "fifty fen"),
        (55, "五角五分", "fifty-five fen"),
        (100, "一元", "one yuan"),
        (105, "一元零五分", "one yuan and five fen"),
        (200, "两元", "two yuan"),
        (1000, "十元", "ten yuan"),
        (1200, "十二元", "twelve yuan"),
        (1202, "十二元零二分", "twelve yuan and two fen"),
        (1205, "十二元零五分", "twelve yuan and five fen"),
        (1222, "十二元两角两分", "twelve yuan and twenty-two fen"),
        (1230, "十二元三角", "twelve yuan and thirty fen"),
        (1234, "十二元三角四分", "twelve yuan and thirty-four fen"),
        (20000, "两百元", "two hundred yuan"),
        (10200, "一百零二元", "one hundred and two yuan"),
        (100000010, "一百万元一角", "one million yuan and ten fen"),
        (2000000000, "两千万元", "twenty million yuan"),
        (LARGEST * 100 + 99, "九千九百九十九亿九千九百九十九万九千九百九十九元九角九分",
         "nine hundred and ninety-nine billion nine hundred and ninety-nine million "
         "nine hundred and ninety-nine thousand nine hundred and ninety-nine yuan "
         "and ninety-nine fen"),
    ],
)
def test_money(fen, zh_text, en_text):
    assert say_money(fen) == zh(zh_text)
    assert say_money(fen, "en") == en(en_text)


@pytest.mark.parametrize(
    "fen, zh_text, en_text",
    [
        (0, "零点零零", "zero point zero zero"),
        (1, "零点零一", "zero point zero one"),
        (50, "零点五零", "zero point five zero"),
        (200, "二点零零", "two point zero zero"),
        (1000, "十点零零", "ten point zero zero"),
        (1111, "十一点一一", "eleven point one one"),
        (1230, "十二点三零", "twelve point three zero"),
        (1234, "十二点三四", "twelve point three four"),
        (20022, "两百点二二", "two hundred point two two"),
        (145000, "一千四百五十点零零", "one thousand four hundred and fifty point zero zero"),
    ],
)
def test_price(fen, zh_text, en_text):
    assert say_price(fen) == zh(zh_text)
    assert say_price(fen, "en") == en(en_text)


def test_price_reads_one_as_yi_not_yao():
    assert "zh/yao" not in say_price(1111)


@pytest.mark.parametrize(
    "basis_points, zh_text, en_text",
    [
        (0, "百分之零", "zero percent"),
        (1, "百分之零点零一", "zero point zero one percent"),
        (10, "百分之零点一", "zero point one percent"),
        (200, "百分之二", "two percent"),
        (500, "百分之五", "five percent"),
        (520, "百分之五点二", "five point two percent"),
        (525, "百分之五点二五", "five point two five percent"),
        (1000, "百分之十", "ten percent"),
        (10000, "百分之一百", "one hundred percent"),
        (12345, "百分之一百二十三点四五", "one hundred and twenty-three point four five percent"),
        (-350, "负百分之三点五", "minus three point five percent"),
        (-1000, "负百分之十", "minus ten percent"),
    ],
)
def test_percent(basis_points, zh_text, en_text):
    assert say_percent(basis_points) == zh(zh_text)
    assert say_percent(basis_points, "en") == en(en_text)


@pytest.mark.parametrize(
    "text, yao, zh_text",
    [
        ("600519", True, "六零零五幺九"),
        ("600519", False, "六零零五一九"),
        ("000001", True, "零零零零零幺"),
        ("000001", False, "零零零零零一"),
        ("95511", True, "九五五幺幺"),
        ("13800138000", True, "幺三八零零幺三八零零零"),
        ("7", True, "七"),
        ("2", True, "二"),
    ],
)
def test_digits_zh(text, yao, zh_text):
    assert say_digits(text, "zh", yao=yao) == zh(zh_text)


def test_digits_say_one_as_yao_by_default():
    assert say_digits("1") == ["zh/yao"]


@pytest.mark.parametrize("yao", [True, False])
def test_digits_en(yao):
    assert say_digits("600519", "en", yao=yao) == en("six zero zero five one nine")
    assert say_digits("0123456789", "en", yao=yao) == en(
        "zero one two three four five six seven eight nine")


@pytest.mark.parametrize(
    "date, zh_text, en_text",
    [
        (datetime.date(2026, 12, 1), "二〇二六年十二月一日", "December first, twenty twenty-six"),
        (datetime.date(2026, 2, 2), "二〇二六年二月二日", "February second, twenty twenty-six"),
        (datetime.date(2025, 10, 10), "二〇二五年十月十日", "October tenth, twenty twenty-five"),
        (datetime.date(2024, 11, 22), "二〇二四年十一月二十二日",
         "November twenty-second, twenty twenty-four"),
        (datetime.date(2023, 3, 20), "二〇二三年三月二十日", "March twentieth, twenty twenty-three"),
        (datetime.date(2021, 5, 31), "二〇二一年五月三十一日", "May thirty-first, twenty twenty-one"),
        (datetime.date(2010, 1, 30), "二〇一〇年一月三十日", "January thirtieth, twenty ten"),
        (datetime.date(2000, 7, 13), "二〇〇〇年七月十三日", "July thirteenth, two thousand"),
        (datetime.date(2005, 8, 12), "二〇〇五年八月十二日", "August twelfth, two thousand and five"),
        (datetime.date(1999, 9, 9), "一九九九年九月九日", "September ninth, nineteen ninety-nine"),
        (datetime.date(1905, 4, 3), "一九〇五年四月三日", "April third, nineteen oh five"),
        (datetime.date(1900, 6, 21), "一九〇〇年六月二十一日", "June twenty-first, nineteen hundred"),
        (datetime.date(2100, 6, 1), "二一〇〇年六月一日", "June first, twenty-one hundred"),
    ],
)
def test_date(date, zh_text, en_text):
    assert say_date(date) == zh(zh_text)
    assert say_date(date, "en") == en(en_text)


def test_date_reads_the_year_with_yi_not_yao():
    assert say_date(datetime.date(2011, 1, 1))[:4] == ["zh/digit-2", "zh/ling", "zh/digit-1", "zh/digit-1"]


def test_date_of_a_datetime_is_its_day():
    assert say_date(datetime.datetime(2026, 12, 1, 14, 30)) == say_date(datetime.date(2026, 12, 1))


@pytest.mark.parametrize(
    "time, zh_text, en_text",
    [
        (datetime.time(0, 0), "零点整", "zero o'clock"),
        (datetime.time(2, 0), "两点整", "two o'clock"),
        (datetime.time(2, 10), "两点十分", "two ten"),
        (datetime.time(9, 2), "九点零二分", "nine oh two"),
        (datetime.time(9, 15), "九点十五分", "nine fifteen"),
        (datetime.time(9, 30), "九点三十分", "nine thirty"),
        (datetime.time(11, 30), "十一点三十分", "eleven thirty"),
        (datetime.time(12, 0), "十二点整", "twelve o'clock"),
        (datetime.time(14, 0), "十四点整", "fourteen o'clock"),
        (datetime.time(14, 5), "十四点零五分", "fourteen oh five"),
        (datetime.time(14, 30), "十四点三十分", "fourteen thirty"),
        (datetime.time(14, 30, 59), "十四点三十分", "fourteen thirty"),
        (datetime.time(15, 0), "十五点整", "fifteen o'clock"),
        (datetime.time(20, 22), "二十点二十二分", "twenty twenty-two"),
        (datetime.time(22, 0), "二十二点整", "twenty-two o'clock"),
        (datetime.time(23, 59), "二十三点五十九分", "twenty-three fifty-nine"),
    ],
)
def test_time(time, zh_text, en_text):
    assert say_time(time) == zh(zh_text)
    assert say_time(time, "en") == en(en_text)


# What each function refuses, and the language check common to all.
_REFUSALS = [
    (say_number, (LARGEST + 1,)),
    (say_number, (-LARGEST - 1,)),
    (say_number, (1.0,)),
    (say_number, (True,)),
    (say_number, ("12",)),
    (say_number, (None,)),
    (say_quantity, (-1,)),
    (say_quantity, (LARGEST + 1,)),
    (say_quantity, (1.5,)),
    (say_quantity, (100, "lot")),
    (say_quantity, (100, "股")),
    (say_money, (-1,)),
    (say_money, (LARGEST * 100 + 100,)),
    (say_money, (12.34,)),
    (say_money, (False,)),
    (say_money, ("1234",)),
    (say_price, (-1,)),
    (say_price, (LARGEST * 100 + 100,)),
    (say_price, (12.34,)),
    (say_percent, (5.2,)),
    (say_percent, (LARGEST * 100 + 100,)),
    (say_percent, (-LARGEST * 100 - 100,)),
    (say_digits, ("",)),
    (say_digits, ("60051a",)),
    (say_digits, ("600 519",)),
    (say_digits, ("-1",)),
    (say_digits, ("１２",)),  # full-width digits
    (say_digits, ("٣",)),  # an Arabic-Indic digit: str.isdigit() alone takes it
    (say_digits, (600519,)),
    (say_digits, (None,)),
    (say_date, ("2026-12-01",)),
    (say_date, (datetime.time(14, 30),)),
    (say_time, ("14:30",)),
    (say_time, (datetime.datetime(2026, 12, 1, 14, 30),)),
]


@pytest.mark.parametrize("say, args", _REFUSALS)
def test_refuses(say, args):
    with pytest.raises(ValueError):
        say(*args)


_GOOD_CALLS = [
    (say_number, (15,)),
    (say_quantity, (200, "share")),
    (say_money, (1234,)),
    (say_price, (1234,)),
    (say_percent, (520,)),
    (say_digits, ("600519",)),
    (say_date, (datetime.date(2026, 12, 1),)),
    (say_time, (datetime.time(14, 30),)),
]


@pytest.mark.parametrize("say, args", _GOOD_CALLS)
@pytest.mark.parametrize("lang", ["fr", "ZH", "zh-CN", "", None, 1])
def test_refuses_other_languages(say, args, lang):
    with pytest.raises(ValueError):
        say(*args, lang=lang)


@pytest.mark.parametrize("say, args", _GOOD_CALLS)
def test_mandarin_is_the_default(say, args):
    assert say(*args) == say(*args, lang="zh")
    assert all(name.startswith("zh/") for name in say(*args))
    assert all(name.startswith("en/") for name in say(*args, lang="en"))


# Every prompt any function can produce is in VOCABULARY: over the whole
# range by property, and each entry of VOCABULARY is produced by some call.

def _all_recorded(names, lang):
    assert names
    for name in names:
        assert name in VOCABULARY, name
        assert name.startswith(lang + "/"), name


languages = st.sampled_from(LANGUAGES)
numbers = st.integers(min_value=-LARGEST, max_value=LARGEST)
fen = st.integers(min_value=0, max_value=10**10)


@given(numbers, languages)
def test_numbers_are_recorded(n, lang):
    _all_recorded(say_number(n, lang), lang)


@given(st.integers(min_value=0, max_value=LARGEST), st.sampled_from(sorted(UNITS)), languages)
def test_quantities_are_recorded(n, unit, lang):
    _all_recorded(say_quantity(n, unit, lang), lang)


@given(fen, languages)
def test_money_and_prices_are_recorded(amount, lang):
    _all_recorded(say_money(amount, lang), lang)
    _all_recorded(say_price(amount, lang), lang)


@given(st.integers(min_value=-(10**10), max_value=10**10), languages)
def test_percentages_are_recorded(basis_points, lang):
    _all_recorded(say_percent(basis_points, lang), lang)


@given(st.text(alphabet="0123456789", min_size=1, max_size=20), languages, st.booleans())
def test_digits_are_recorded(text, lang, yao):
    _all_recorded(say_digits(text, lang, yao=yao), lang)


@given(st.dates(), languages)
def test_dates_are_recorded(date, lang):
    _all_recorded(say_date(date, lang), lang)


@given(st.times(), languages)
def test_times_are_recorded(time, lang):
    _all_recorded(say_time(time, lang), lang)


def test_every_prompt_is_used():
    used = set()
    for lang in LANGUAGES:
        for n in range(-1, 1200):
            used.update(say_number(n, lang))
            used.update(say_percent(n, lang))
            if n >= 0:
                used.update(say_money(n, lang))
        for n in (10**4, 10**6, 10**8, 10**9):
            used.update(say_number(n, lang))
        for n in (1, 2):
            used.update(say_quantity(n, "share", lang))
        used.update(say_digits("1", lang))
        for month in range(1, 13):
            used.update(say_date(datetime.date(1905, month, 1), lang))
        for day in range(1, 32):
            used.update(say_date(datetime.date(2026, 1, day), lang))
        for minute in (0, 5):
            used.update(say_time(datetime.time(14, minute), lang))
    assert used == set(VOCABULARY)


# The spoken words mean the number they were made from: an independent
# reading back of each language, over the whole range.

_ZH_DIGIT_VALUES = {"zh/ling": 0, "zh/liang": 2, **{f"zh/digit-{d}": d for d in range(1, 10)}}
_ZH_PLACE_VALUES = {"zh/shi": 10, "zh/bai": 100, "zh/qian": 1000}
_ZH_SECTION_VALUES = {"zh/wan": 10**4, "zh/yi4": 10**8}


def _read_zh(names):
    sign = 1
    if names[0] == "zh/fu":
        sign, names = -1, names[1:]
    total = section = 0
    digit = None
    for name in names:
        if name in _ZH_DIGIT_VALUES:
            digit = _ZH_DIGIT_VALUES[name]
        elif name in _ZH_PLACE_VALUES:
            section += (1 if digit is None else digit) * _ZH_PLACE_VALUES[name]
            digit = None
        else:
            total += (section + (digit or 0)) * _ZH_SECTION_VALUES[name]
            section, digit = 0, None
    return sign * (total + section + (digit or 0))


_EN_VALUES = {
    **{f"en/{word}": value for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen".split())},
    **{f"en/{word}": 10 * value for value, word in enumerate(
        "twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)},
}
_EN_SCALE_VALUES = {"en/thousand": 10**3, "en/million": 10**6, "en/billion": 10**9}


def _read_en(names):
    sign = 1
    if names[0] == "en/minus":
        sign, names = -1, names[1:]
    total = current = 0
    for name in names:
        if name in _EN_VALUES:
            current += _EN_VALUES[name]
        elif name == "en/hundred":
            current *= 100
        elif name in _EN_SCALE_VALUES:
            total += current * _EN_SCALE_VALUES[name]
            current = 0
        else:
            assert name == "en/and"
    return sign * (total + current)


@given(numbers)
def test_zh_reads_back(n):
    assert _read_zh(say_number(n)) == n


@given(numbers)
def test_en_reads_back(n):
    assert _read_en(say_number(n, "en")) == n


@given(st.integers(min_value=1, max_value=LARGEST))
def test_zh_number_shape(n):
    """The Mandarin rules, checked on every number: where 零, 十 and 两 may be."""
    words = say_number(n)
    text = "".join(VOCABULARY[name] for name in words)
    assert "零零" not in text
    assert not text.endswith("零")
    assert not text.startswith("一十")
    assert "零" not in text or str(n).strip("0").count("0")
    for before, after in zip(words, words[1:] + [None]):
        if before == "zh/liang":
            # 两百 两千 always; 两万 两亿 only for a count of exactly 2.
            assert after in ("zh/bai", "zh/qian", "zh/wan", "zh/yi4"), text
        if before == "zh/digit-2":
            assert after not in ("zh/bai", "zh/qian"), text


@given(st.integers(min_value=1, max_value=LARGEST))
def test_quantity_differs_from_number_only_for_two(n):
    number = say_number(n)
    if n == 2:
        assert say_quantity(n) == ["zh/liang", "zh/gu"]
    else:
        assert say_quantity(n) == number + ["zh/gu"]


@given(fen)
def test_money_reads_back(amount):
    words = say_money(amount)
    # Read each part back from its prompts: the part before 元, 角, 分.
    parts = {"zh/yuan": 0, "zh/jiao": 0, "zh/fen": 0}
    part = []
    for name in words:
        if name in parts:
            parts[name] = _read_zh(part) if part else 0
            part = []
        else:
            part.append(name)
    assert part == []
    assert parts["zh/yuan"] * 100 + parts["zh/jiao"] * 10 + parts["zh/fen"] == amount


@given(fen)
def test_price_reads_back(amount):
    words = say_price(amount)
    point = words.index("zh/dian")
    whole, decimals = words[:point], words[point + 1:]
    assert len(decimals) == 2
    assert _read_zh(whole) * 100 + _read_zh(decimals[:1]) * 10 + _read_zh(decimals[1:]) == amount
