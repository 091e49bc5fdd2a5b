"""
Phone trading end to end from a real softphone: baresip dials the phone
trading number, logs in with fund account and trading password by RFC 4733
DTMF, buys 100 shares with the price keyed with * as the decimal point,
confirms with 1, and the order exists in the books with the calling number
in the audit trail.
"""

import os

import pytest

from call_checks import Heard, best_match, envelope, read_wav, rows, wait_until
from processes import get_json

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
PROMPTS = os.path.join(REPO, "var", "prompts")
TRADING_NUMBER = "9500"


@pytest.fixture
def trading_server(backend, start_server, prompt_pack):
    if backend != "sqlite":
        # Prompts in real time.  The same flow on PostgreSQL
        # is covered by tests/agi/test_agi_process.py; this test is about
        # the SIP and audio path, which does not depend on the database.
        pytest.skip("the SIP audio path runs once, on SQLite")
    return start_server(
        routes={TRADING_NUMBER: "ivr:trading"},
        extra_tables={
            "trading": {"clock": "simulated", "holidays": os.path.join(REPO, "etc", "holidays.txt")},
            "ivr": {"prompts": prompt_pack},
        },
    )


def price_keys(fen):
    """How a caller keys a price: * for the decimal point, # to finish."""
    return f"{fen // 100}*{fen % 100:02d}#"


def test_a_caller_buys_100_shares_by_dtmf_and_the_order_is_audited(trading_server, softphone, db_url):
    server = trading_server
    server.process.wait_for("trading ready")
    status, quote = get_json(server.http, "/api/v1/quotes/600000")
    assert status == 200, quote
    welcome = envelope(read_wav(os.path.join(PROMPTS, "zh", "welcome.wav")))
    phone = softphone()
    heard = Heard(phone, lambda frame: None)
    phone.command("uanew", "<sip:2001@127.0.0.1>;regint=0;audio_codecs=PCMU")
    phone.dial(f"sip:{TRADING_NUMBER}@127.0.0.1:{server.udp}")
    assert phone.wait_for_event("CALL_ESTABLISHED", "CALL_CLOSED")["type"] == "CALL_ESTABLISHED", phone.events
    # A key cuts a prompt short: let the welcome be heard out first (the
    # server sends a frame every 20 ms, silence or not).
    wait_until(lambda: len(heard.update()) > len(welcome) + 25, "the welcome prompt's length of audio")
    # Account and password, then 1 (buy), the code, the price at limit-up
    # (it meets any offer), 100 shares, and 1 to confirm.
    keys = "10010001#" "135790#" "1" "600000#" + price_keys(quote["limit_up_fen"]) + "100#" "1"
    phone.send_dtmf(keys)
    server.process.wait_for(r"phone order \d+ \(.*\) placed", timeout=120)
    phone.hangup()
    [order] = rows(db_url, "SELECT * FROM orders WHERE fund_account_no = '10010001'")
    assert (order["side"], order["quantity"], order["price_fen"], order["channel"], order["caller"]) == (
        "buy", 100, quote["limit_up_fen"], "phone", "2001")
    audited = rows(db_url, "SELECT action, outcome, caller FROM audit_log WHERE fund_account_no = '10010001'")
    assert ("login", "ok", "2001") in [(r["action"], r["outcome"], r["caller"]) for r in audited]
    assert ("place_order", "booked", "2001") in [(r["action"], r["outcome"], r["caller"]) for r in audited]
    # The password was never written anywhere in the log.
    assert "135790" not in server.process.output
    # What the caller heard starts with the welcome prompt: its loudness,
    # 20 ms by 20 ms, follows the prompt file's (about 0.99999 here, where
    # another prompt, "goodbye", scores about 0.4).
    assert phone.stop() == 0
    [received] = [path for path in phone.recordings() if path.endswith("-dec.wav")]
    heard = envelope(read_wav(received))
    assert len(heard) > len(welcome)
    assert best_match(heard, welcome) > 0.9
