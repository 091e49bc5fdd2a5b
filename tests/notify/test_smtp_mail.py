"""
The composed notification, read back by the stdlib's own parser
(C{email.policy.default}): what a mail reader will show must be what the
outbox rendered, in Chinese, and the bytes must be fit for any relay.
"""

import datetime
import email
import email.policy
import email.utils

import pytest

from callcenter.notify.message import OutgoingMessage
from callcenter.notify.smtp.mail import Attachment, InvalidAddress, MailComposer, normalize_address

NOW = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
SUBJECT = "成交回报：600519 贵州茅台 买入 100 股"
BODY = "尊敬的客户：\n您的委托 600519 贵州茅台 买入 100 股已成交，成交价 1,688.00 元。\n华安证券"


def message(**kwargs):
    fields = dict(message_id=7, channel="email", address="investor@example.com", body=BODY, subject=SUBJECT,
                  idempotency_key="fill:T1:investor-1:email")
    fields.update(kwargs)
    return OutgoingMessage(**fields)


def parse(data):
    return email.message_from_bytes(data, policy=email.policy.default)


def lines_of(data):
    assert b"\n" not in data.replace(b"\r\n", b""), "a bare LF"
    assert b"\r" not in data.replace(b"\r\n", b""), "a bare CR"
    return data.split(b"\r\n")


def test_chinese_subject_sender_and_body_read_back_intact():
    composer = MailComposer("notify@broker.example", "华安证券 客户服务")
    recipient, data = composer.compose(message(), NOW)
    assert recipient == "investor@example.com"
    assert data.isascii()  # 7-bit clean: no relay needs 8BITMIME for it
    parsed = parse(data)
    assert parsed["Subject"] == SUBJECT
    assert parsed["From"].addresses[0].display_name == "华安证券 客户服务"
    assert parsed["From"].addresses[0].addr_spec == "notify@broker.example"
    assert parsed["To"] == "investor@example.com"
    assert parsed["MIME-Version"] == "1.0"
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "utf-8"
    assert parsed.get_content().replace("\r\n", "\n").rstrip("\n") == BODY
    assert email.utils.parsedate_to_datetime(parsed["Date"]) == datetime.datetime.fromtimestamp(NOW, datetime.timezone.utc)
    assert parsed["Auto-Submitted"] == "auto-generated"
    # RFC 2047 §2: an encoded-word is at most 75 characters.
    assert all(len(word) <= 75 for line in lines_of(data) for word in line.split() if word.startswith(b"=?"))


def test_ascii_text_goes_as_it_is():
    _, data = MailComposer("a@b.example").compose(message(subject="Fill", body="Bought 100 at 12.34\n"), NOW)
    parsed = parse(data)
    assert parsed["Content-Transfer-Encoding"] == "7bit"
    assert b"\r\n\r\nBought 100 at 12.34\r\n" in data
    assert parsed["Subject"] == "Fill"


def test_message_id_is_stable_per_idempotency_key():
    composer = MailComposer("notify@broker.example")
    first = parse(composer.compose(message(), NOW)[1])["Message-ID"]
    again = parse(composer.compose(message(message_id=8), NOW + 3600)[1])["Message-ID"]
    other = parse(composer.compose(message(idempotency_key="fill:T2:investor-1:email"), NOW)[1])["Message-ID"]
    assert first == again != other
    assert first.startswith("<") and first.endswith("@broker.example>")
    assert MailComposer("n@b.example", message_id_domain="mail.broker.example").message_id(message()).endswith(
        "@mail.broker.example>"
    )


def test_no_line_over_998_octets():
    long_word = "x" * 3000
    for subject, body in [(long_word, long_word), ("成交" * 600, "成交" * 2000), ("a " * 1000, ("b" * 997 + "\n") * 3)]:
        _, data = MailComposer("a@b.example").compose(message(subject=subject, body=body), NOW)
        assert max(map(len, lines_of(data))) <= 998
        parsed = parse(data)
        assert parsed["Subject"].replace(" ", "") == subject.replace(" ", "")
        assert parsed.get_content().replace("\r\n", "\n").rstrip("\n") == body.rstrip("\n")


def test_header_injection_is_flattened():
    composer = MailComposer("a@b.example", "Broker\r\nBcc: spy@evil.example")
    _, data = composer.compose(message(subject="hi\r\nBcc: spy@evil.example"), NOW)
    parsed = parse(data)
    assert parsed["Bcc"] is None
    assert "spy@evil.example" in parsed["Subject"]


def test_display_name_with_specials_is_quoted():
    _, data = MailComposer("a@b.example", "Broker, Inc. (notices)").compose(message(), NOW)
    assert parse(data)["From"].addresses[0].display_name == "Broker, Inc. (notices)"


@pytest.mark.parametrize("address", [
    "no-at-sign", "a@", "@b.example", "a b@c.example", "a@b.example>\r\nRCPT TO:<x@y.example", "<a@b.example>",
    "a..b@c.example", "a@b..example", "a@-b.example", "x" * 65 + "@b.example", "a\x00@b.example",
])
def test_invalid_addresses(address):
    with pytest.raises(InvalidAddress):
        normalize_address(address)


def test_internationalised_addresses():
    assert normalize_address(" investor@例子.中国 ") == "investor@xn--fsqu00a.xn--fiqs8s"
    # A non-ASCII local part cannot be converted: it needs SMTPUTF8.
    assert normalize_address("张三@例子.中国") == "张三@例子.中国"
    recipient, data = MailComposer("a@b.example").compose(message(address="张三@例子.中国"), NOW)
    assert recipient == "张三@例子.中国"
    assert parse(data)["To"] == "张三@例子.中国"


def test_attachment_hook_makes_a_multipart_message():
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 40
    _, data = MailComposer("notify@broker.example", "华安证券").compose(
        message(subject="日对账单 2026-01-01"), NOW, [Attachment(pdf, "对账单 2026-01-01.pdf")]
    )
    assert max(map(len, lines_of(data))) <= 998
    assert data.isascii()
    parsed = parse(data)
    assert parsed.get_content_type() == "multipart/mixed"
    assert parsed["Subject"] == "日对账单 2026-01-01"
    assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip("\n") == BODY
    (attachment,) = parsed.iter_attachments()
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "对账单 2026-01-01.pdf"
    assert attachment.get_content() == pdf
