"""
Phone trading end to end from a real softphone: baresip dials the phone
trading number, logs in with fund account and trading password by RFC 4733
DTMF, sells 100 shares with the price keyed with * as the decimal point,
confirms with 1, and the order exists in the books with the calling number
in the audit trail.
"""

import math
import os
import struct
import subprocess
import sys
import wave

import pytest
import sqlalchemy as sa

from processes import get_json

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
PROMPTS = os.path.join(REPO, "var", "prompts")
TRADING_NUMBER = "9500"


@pytest.fixture(scope="session")
def prompt_pack():
    """The prompt pack `make test` builds (a cache: instant when it is there)."""
    subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "callcenter"), "prompts", "build", "--dir", PROMPTS],
        check=True, capture_output=True, timeout=600,
    )
    return PROMPTS


@pytest.fixture
def trading_server(backend, start_server, prompt_pack):
    if backend != "sqlite":
        # About 70 s of prompts in real time.  The same flow on PostgreSQL
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


def rows(db_url, query):
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(sa.text(query))]
    finally:
        engine.dispose()


def price_keys(fen):
    """How a caller keys a price: * for the decimal point, # to finish."""
    return f"{fen // 100}*{fen % 100:02d}#"


def test_a_caller_sells_100_shares_by_dtmf_and_the_order_is_audited(trading_server, softphone, db_url):
    server = trading_server
    server.process.wait_for("trading ready")
    status, quote = get_json(server.http, "/api/v1/quotes/600000")
    assert status == 200, quote
    phone = softphone()
    phone.command("uanew", "<sip:2001@127.0.0.1>;regint=0;audio_codecs=PCMU")
    phone.dial(f"sip:{TRADING_NUMBER}@127.0.0.1:{server.udp}")
    assert phone.wait_for_event("CALL_ESTABLISHED", "CALL_CLOSED")["type"] == "CALL_ESTABLISHED", phone.events
    # Account and password, then 2 (sell), the code, the price at
    # limit-down (it meets any bid), 100 shares, and 1 to confirm.
    keys = "10010001#" "135790#" "2" "600000#" + price_keys(quote["limit_down_fen"]) + "100#" "1"
    phone.send_dtmf(keys)
    server.process.wait_for(r"phone order \d+ \(.*\) placed", timeout=120)
    phone.hangup()
    [order] = rows(db_url, "SELECT * FROM orders WHERE fund_account_no = '10010001'")
    assert (order["side"], order["quantity"], order["price_fen"], order["channel"], order["caller"]) == (
        "sell", 100, quote["limit_down_fen"], "phone", "2001")
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
    welcome = envelope(read_wav(os.path.join(PROMPTS, "zh", "welcome.wav")))
    assert len(heard) > len(welcome)
    assert best_match(heard, welcome) > 0.9


def read_wav(path):
    with wave.open(path) as f:
        assert (f.getframerate(), f.getnchannels(), f.getsampwidth()) == (8000, 1, 2)
        data = f.readframes(f.getnframes())
    return struct.unpack(f"<{len(data) // 2}h", data)


def envelope(samples, frame=160):
    """RMS per 20 ms frame."""
    return [
        math.sqrt(sum(s * s for s in samples[i:i + frame]) / frame) for i in range(0, len(samples) - frame + 1, frame)
    ]


def correlation(a, b):
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    covariance = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b))
    spread = math.sqrt(sum((x - mean_a) ** 2 for x in a) * sum((y - mean_b) ** 2 for y in b))
    return covariance / spread if spread else 0.0


def best_match(heard, prompt, within_frames=150):
    """The best correlation of the prompt's envelope with the heard one's, starting in the first 3 s."""
    return max(
        correlation(heard[offset:offset + len(prompt)], prompt)
        for offset in range(min(within_frames, len(heard) - len(prompt)))
    )
