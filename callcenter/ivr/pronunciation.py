"""
What the synthesiser is given for a Mandarin text, where espeak-ng would
otherwise misread it.

espeak-ng 1.51's Mandarin dictionary gives a character with several
readings (多音字) its most common reading, and knows few of the words that
take another: it says 银行 "yin xing", 重新 "zhong xin", 重庆 "zhong qing".
The C{cmn-latn-pinyin} voice reads tone-numbered pinyin as Mandarin (that
is what the voice is for), so such words are given to it in pinyin, each
syllable a word of its own ("请chong2 xin1输入"), which changes neither the
rhythm nor the pauses.  The tables below were found by comparing
espeak-ng's reading (C{espeak-ng -v cmn-latn-pinyin -x}) of every Mandarin
phrase and every instrument name with a dictionary's, and keep only the
readings that are plainly wrong; tone sandhi and neutral tones are
espeak-ng's.  Pinyin also reads right with a later espeak-ng that would not
need it.
"""

import re

__all__ = ["NAME_CHARACTERS", "WORDS", "replaced_apart", "spoken_mandarin"]

# Words misread wherever they occur.
WORDS = {
    "银行": "yin2 hang2",
    "商行": "shang1 hang2",  # 渝农商行, 青农商行
    "行情": "hang2 qing2",
    "重新": "chong2 xin1",
    "重庆": "chong2 qing4",
    "厦门": "xia4 men2",
    "成都": "cheng2 du1",
    "东阿": "dong1 e1",
    "阿胶": "e1 jiao1",
    "片仔癀": "pian4 zai3 huang2",
}

# Characters whose reading in a company name is the one espeak-ng does not
# choose: 兴 of 兴业 and 中兴 is xing1, not xing4; 虹 of 长虹 hong2, not
# jiang4; 地 of 金地 and 地产 di4, not the particle de; 拓 of 拓普 tuo4, not
# ta4.  Elsewhere ("认真地") they may be read otherwise, so only names.
NAME_CHARACTERS = {"兴": "xing1", "虹": "hong2", "地": "di4", "拓": "tuo4"}


def _pattern(readings):
    # Longest first, so that a word wins over a character it contains.
    return re.compile("|".join(map(re.escape, sorted(readings, key=len, reverse=True))))


_WORDS = _pattern(WORDS)
_NAME = _pattern({**WORDS, **NAME_CHARACTERS})


def replaced_apart(pattern, text, replacement):
    """
    C{text} with each match of C{pattern} replaced by C{replacement(match)},
    with a space on either side where it would otherwise run into a Latin
    letter or a digit, its neighbours' replacements included ("S T" and
    "xing1" must not make "Txing1", nor "e1" and "e1" "e1e1"); next to
    characters and punctuation it needs none.
    """
    pieces, last = [], 0
    for match in pattern.finditer(text):
        pieces.append(text[last : match.start()])
        new = replacement(match)
        previous = "".join(pieces)[-1:]
        following = text[match.end() : match.end() + 1]
        if _LATIN.match(previous) and _LATIN.match(new[0]):
            new = " " + new
        if _LATIN.match(following) and _LATIN.match(new[-1]):
            new += " "
        pieces.append(new)
        last = match.end()
    pieces.append(text[last:])
    return "".join(pieces)


_LATIN = re.compile(r"[A-Za-z0-9]")


def spoken_mandarin(text, name=False):
    """
    C{text} with the words of L{WORDS} (and, for a C{name}, the characters of
    L{NAME_CHARACTERS}) in tone-numbered pinyin: what espeak-ng reads right.
    """
    readings = {**WORDS, **NAME_CHARACTERS} if name else WORDS
    return replaced_apart(_NAME if name else _WORDS, text, lambda match: readings[match.group()])
