"""
Text to short_message octets: the GSM 03.38 alphabet and its extension
table, UCS2 for the rest (Chinese, emoji as surrogate pairs), concatenated
segments with their UDH, cuts that never split an escape or a surrogate
pair, and the cap on segments.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter.notify.smpp.text import (
    GSM_BASIC,
    GSM_EXTENSION,
    decode_gsm,
    decode_text,
    encode_gsm,
    is_gsm,
    segment_text,
    split_udh,
    with_udh,
)

GSM, UCS2 = 0, 8
CHINESE = "成交回报您委托的贵州茅台买入一百股已全部成交均价每股元佣金印花税过户费合计请留意账户资金变动如有疑问请致电客服热线"


def chinese(count):
    return (CHINESE * (count // len(CHINESE) + 1))[:count]


def test_gsm_codes():
    assert encode_gsm("@£$¥_ Aa") == bytes([0x00, 0x01, 0x02, 0x03, 0x11, 0x20, 0x41, 0x61])
    # The extension table: escape 0x1B, then the code (TS 23.038 §6.2.1.1).
    assert encode_gsm("€[]{}") == bytes([0x1B, 0x65, 0x1B, 0x3C, 0x1B, 0x3E, 0x1B, 0x28, 0x1B, 0x29])


def test_whole_alphabet_round_trips():
    text = "".join(ch for ch in GSM_BASIC if ch != "\x1b") + "".join(GSM_EXTENSION)
    assert decode_gsm(encode_gsm(text)) == text


@pytest.mark.parametrize("text", ["`", "ç", "\x1b", "\t", "成", "😀", "…"])
def test_characters_outside_the_alphabet(text):
    assert not is_gsm("price " + text)
    with pytest.raises(ValueError):
        encode_gsm(text)


def test_ascii_fill_is_one_gsm_segment():
    data_coding, segments, truncated = segment_text("Order 12345 filled: 100 @ 12.34")
    assert (data_coding, truncated) == (GSM, False)
    assert segments == [encode_gsm("Order 12345 filled: 100 @ 12.34")]


def test_extension_characters_count_two_septets():
    assert segment_text("a" * 158 + "€")[1] == [b"a" * 158 + b"\x1b\x65"]  # 160 septets: one SMS
    assert len(segment_text("a" * 159 + "€")[1]) == 2  # 161


def test_long_gsm_text_is_cut_in_153_septets():
    data_coding, segments, _ = segment_text("x" * 400)
    assert data_coding == GSM
    assert [len(s) for s in segments] == [153, 153, 94]


def test_an_escape_is_never_separated_from_its_code():
    # The 153rd septet would be the escape of "{": the cut moves before it.
    _, segments, _ = segment_text("a" * 152 + "{" + "b" * 20)
    assert segments[0] == b"a" * 152
    assert segments[1].startswith(b"\x1b\x28")
    assert decode_gsm(b"".join(segments)) == "a" * 152 + "{" + "b" * 20


def test_seventy_chinese_characters_are_one_ucs2_sms():
    data_coding, segments, _ = segment_text(chinese(70))
    assert data_coding == UCS2
    assert segments == [chinese(70).encode("utf-16-be")]


def test_seventy_one_chinese_characters_are_two_segments():
    data_coding, segments, _ = segment_text(chinese(71))
    assert data_coding == UCS2
    assert [len(s) // 2 for s in segments] == [67, 4]
    assert b"".join(segments).decode("utf-16-be") == chinese(71)


def test_two_hundred_chinese_characters_are_three_segments():
    _, segments, truncated = segment_text(chinese(200))
    assert [len(s) // 2 for s in segments] == [67, 67, 66]
    assert not truncated
    assert b"".join(segments).decode("utf-16-be") == chinese(200)


def test_one_gsm_outsider_makes_the_whole_text_ucs2():
    data_coding, segments, _ = segment_text("Filled 成交")
    assert data_coding == UCS2
    assert segments[0] == "Filled 成交".encode("utf-16-be")


def test_emoji_at_a_segment_boundary_is_not_split():
    # Units 67 and 68 would be the surrogate pair: the first segment stops at 66.
    text = chinese(66) + "😀" + chinese(10)
    _, segments, _ = segment_text(text)
    assert [len(s) // 2 for s in segments] == [66, 12]
    assert segments[1][:4] == "😀".encode("utf-16-be")
    for segment in segments:
        segment.decode("utf-16-be")  # each segment alone is valid UTF-16
    assert b"".join(segments).decode("utf-16-be") == text


def test_emoji_is_a_surrogate_pair():
    assert segment_text("👍")[1] == [b"\xd8\x3d\xdc\x4d"]


def test_udh_per_segment():
    short_messages = with_udh([b"one", b"two", b"six"], 0x1A7)
    assert short_messages == [
        bytes([5, 0, 3, 0xA7, 3, 1]) + b"one",
        bytes([5, 0, 3, 0xA7, 3, 2]) + b"two",
        bytes([5, 0, 3, 0xA7, 3, 3]) + b"six",
    ]
    assert split_udh(short_messages[1]) == (bytes([5, 0, 3, 0xA7, 3, 2]), b"two")


def test_too_long_gsm_text_is_cut_with_dots():
    data_coding, segments, truncated = segment_text("word " * 400, max_segments=3)
    assert (data_coding, truncated, len(segments)) == (GSM, True, 3)
    text = decode_gsm(b"".join(segments))
    assert text.endswith("...")
    assert ("word " * 400).startswith(text[:-3])
    assert len(text) == 3 * 153  # the cut keeps as much as fits


def test_too_long_chinese_text_is_cut_with_an_ellipsis():
    data_coding, segments, truncated = segment_text(chinese(1000), max_segments=2)
    assert (data_coding, truncated, len(segments)) == (UCS2, True, 2)
    text = b"".join(segments).decode("utf-16-be")
    assert text == chinese(133) + "…"


def test_one_segment_cap_means_no_udh_room_needed():
    _, segments, truncated = segment_text(chinese(100), max_segments=1)
    assert truncated
    assert segments == [(chinese(69) + "…").encode("utf-16-be")]


@given(st.text(alphabet=st.sampled_from(list(CHINESE) + ["😀", "a", "€", "{", " ", "é"]), max_size=400))
def test_segments_reassemble_to_the_text(text):
    data_coding, segments, truncated = segment_text(text, max_segments=10)
    assert not truncated
    whole = b"".join(segments)
    if data_coding == GSM:
        assert all(len(s) <= (160 if len(segments) == 1 else 153) for s in segments)
        assert decode_gsm(whole) == text
    else:
        assert all(len(s) <= (140 if len(segments) == 1 else 134) for s in segments)
        assert whole.decode("utf-16-be") == text
        for segment in segments:
            segment.decode("utf-16-be")


def test_decode_received_text():
    assert decode_text(8, "退订".encode("utf-16-be")) == "退订"
    assert decode_text(0, encode_gsm("STOP @")) == "STOP @"
    assert decode_text(0, bytes([5, 0, 3, 1, 2, 1]) + b"STOP", udhi=True) == "STOP"
    assert decode_text(8, b"\xd8") == "\ufffd"  # never fails on odd octets
