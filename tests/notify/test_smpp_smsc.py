"""
End to end against node-smpp (npm ``smpp``), an independent SMPP 3.4
implementation, as the SMSC (tests/notify/smsc/smsc.js), on 127.0.0.1: our
sender binds, submits, and takes the receipts it sends; the SMSC logs
every submit_sm it received as it read it, so the tests check the octets
that crossed the wire.  Then the faults: a wrong password, throttling, a
refused address, and the SMSC killed and restarted on its port.
"""

import time

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, reactor, task

from callcenter.notify.message import Accepted, OutgoingMessage, PermanentFailure, Receipt, TemporaryFailure
from callcenter.notify.smpp.sender import SMPPSender
from outcomes import CapturedLog
from smsc_peer import SMSCProcess

SYSTEM_ID, PASSWORD = "callcenter", "s3cret"
DEADLINE = 30  # bounds a hang only
HELD = "8613900000000"  # the SMSC never answers submits to it
REFUSED = "8613900000001"  # the SMSC answers ESME_RINVDSTADR


def fast_retries(attempt):
    """Reconnect soon: the restart test waits for it (real SMSCs get Twisted's default)."""
    return min(0.05 * 2 ** attempt, 0.5)


class Receipts:
    """The receipts the sender hands over, and a wait for a number of them."""

    def __init__(self):
        self.received = []
        self._waiters = []

    def __call__(self, receipt):
        self.received.append(receipt)
        for count, d in list(self._waiters):
            if len(self.received) >= count:
                self._waiters.remove((count, d))
                d.callback(self.received[:])

    def wait_for(self, count):
        if len(self.received) >= count:
            return defer.succeed(self.received[:])
        d = defer.Deferred()
        self._waiters.append((count, d))
        return d.addTimeout(DEADLINE, reactor)


@pytest.fixture
def started():
    """started(process, **sender options) -> a running SMPPSender to it; all stopped after the test."""
    senders, processes = [], []

    def start(smsc, password=PASSWORD, **options):
        processes.append(smsc)
        options.setdefault("retry_policy", fast_retries)
        sender = SMPPSender(reactor, endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", smsc.port), SYSTEM_ID,
                            password, source_addr="10690", **options)
        sender.receipts = Receipts()
        sender.set_receipt_handler(sender.receipts)
        sender.startService()
        senders.append(sender)
        return sender

    yield start
    for sender in senders:
        if sender.running:
            pytest_twisted.blockon(sender.stopService())
    for smsc in processes:
        smsc.stop()


@pytest.fixture
def smsc(tmp_path):
    process = SMSCProcess(SYSTEM_ID, PASSWORD, log_path=tmp_path / "submits.jsonl", hold=[HELD],
                          refuse=[REFUSED]).start()
    yield process
    process.stop()


def message(body, address="+8613800138000", message_id=1):
    return OutgoingMessage(message_id=message_id, channel="sms", address=address, body=body)


def send(sender, msg):
    return sender.send(msg).addTimeout(DEADLINE, reactor)


@pytest_twisted.inlineCallbacks
def test_chinese_message_in_two_segments_and_its_receipts(smsc, started):
    sender = started(smsc)
    text = "【成交回报】您委托买入的600519贵州茅台100股已于14:35:02全部成交，成交均价1688.00元，佣金5.00元。如非本人操作，请立即致电客服热线95555。"
    assert 70 < len(text) <= 134
    accepted = yield send(sender, message(text))
    assert isinstance(accepted, Accepted)
    submits = smsc.submits()
    assert [s["message_id"] for s in submits] == list(accepted.provider_ids)
    assert len(submits) == 2
    payload = b""
    references = set()
    for number, submit in enumerate(submits, 1):
        assert (submit["destination"], submit["dest_addr_ton"], submit["dest_addr_npi"]) == ("8613800138000", 1, 1)
        assert (submit["data_coding"], submit["esm_class"], submit["registered_delivery"]) == (8, 0x40, 1)
        octets = bytes.fromhex(submit["short_message"])
        # UDH: length 5, IEI 0 (concatenation, 8-bit reference), IE length 3, reference, 2 parts, part number.
        assert octets[:3] == b"\x05\x00\x03" and octets[4:6] == bytes([2, number])
        references.add(octets[3])
        payload += octets[6:]
    assert len(references) == 1
    assert payload.decode("utf-16-be") == text

    receipts = yield sender.receipts.wait_for(2)
    assert sorted(r.provider_id for r in receipts) == sorted(accepted.provider_ids)
    assert all(isinstance(r, Receipt) and r.delivered is True and r.state == "DELIVRD" for r in receipts)


@pytest_twisted.inlineCallbacks
def test_gsm_text_crosses_as_unpacked_septets(smsc, started):
    sender = started(smsc)
    accepted = yield send(sender, message("Fill: 100 @ 12.34 {A} €5", address="13800138000"))
    [submit] = smsc.submits()
    assert (submit["destination"], submit["dest_addr_ton"], submit["data_coding"], submit["esm_class"]) == (
        "13800138000", 0, 0, 0)
    assert bytes.fromhex(submit["short_message"]) == (
        b"Fill: 100 \x00 12.34 \x1b\x28A\x1b\x29 \x1b\x655")
    assert accepted.provider_ids == (submit["message_id"],)


@pytest_twisted.inlineCallbacks
def test_many_messages_through_the_window(smsc, started):
    sender = started(smsc, window=10)
    results = yield defer.gatherResults(
        [send(sender, message(f"alert {n}", message_id=n)) for n in range(200)], consumeErrors=True
    )
    assert all(isinstance(r, Accepted) for r in results)
    ids = [r.provider_ids[0] for r in results]
    assert len(set(ids)) == 200
    assert sorted(s["message_id"] for s in smsc.submits()) == sorted(ids)
    receipts = yield sender.receipts.wait_for(200)
    assert {r.provider_id for r in receipts} == set(ids)


@pytest_twisted.inlineCallbacks
def test_wrong_password_fails_sends_temporarily_and_keeps_trying(smsc, started):
    with CapturedLog() as log:
        sender = started(smsc, password="wrong", link_timeout=1.0)
        yield until(lambda: sender.status()["bind_refusals"] >= 2)  # refused, retried, refused
        with pytest.raises(TemporaryFailure, match="bind refused"):
            yield send(sender, message("hello"))
    assert log.formats("refused bind_transceiver")
    assert smsc.submits() == []
    assert smsc.process.poll() is None  # the SMSC is fine, so are we:
    good = started(smsc)
    accepted = yield send(good, message("hello"))
    assert isinstance(accepted, Accepted)


@pytest_twisted.inlineCallbacks
def test_refused_address_fails_permanently(smsc, started):
    sender = started(smsc)
    with pytest.raises(PermanentFailure, match="ESME_RINVDSTADR"):
        yield send(sender, message("hello", address="+" + REFUSED))
    accepted = yield send(sender, message("hello"))
    assert isinstance(accepted, Accepted)


@pytest_twisted.inlineCallbacks
def test_throttling_fails_temporarily_then_sending_resumes(tmp_path, started):
    smsc = SMSCProcess(SYSTEM_ID, PASSWORD, log_path=tmp_path / "submits.jsonl", throttle_every=3).start()
    sender = started(smsc, window=1, throttle_pause=0.2)
    outcomes = []
    for n in range(6):
        try:
            outcomes.append((yield send(sender, message(f"m{n}"))))
        except TemporaryFailure as e:
            outcomes.append(e)
    throttled = [o for o in outcomes if isinstance(o, TemporaryFailure)]
    assert [isinstance(o, Accepted) for o in outcomes] == [True, True, False, True, True, False]
    assert all(e.retry_after == 0.2 and "ESME_RTHROTTLED" in str(e) for e in throttled)


@pytest_twisted.inlineCallbacks
def test_smsc_killed_and_restarted_on_its_port(smsc, started):
    sender = started(smsc, link_timeout=DEADLINE)
    accepted = yield send(sender, message("before"))
    assert isinstance(accepted, Accepted)
    # A submit the SMSC never answers is in flight when it dies.
    in_flight = send(sender, message("lost", address="+" + HELD))
    yield until(lambda: len(smsc.submits()) == 2)
    smsc.kill()
    with pytest.raises(TemporaryFailure, match="link lost"):
        yield in_flight
    # Sent while the SMSC is down: waits for the link, not failed at once.
    waiting = send(sender, message("during"))
    yield task.deferLater(reactor, 0.2, lambda: None)
    assert not waiting.called
    smsc.start()  # the same port: a restarted SMSC
    accepted = yield waiting
    assert isinstance(accepted, Accepted)
    accepted = yield send(sender, message("after"))
    assert isinstance(accepted, Accepted)
    texts = [bytes.fromhex(s["short_message"]) for s in smsc.submits()]
    assert texts[-2:] == [b"during", b"after"]
    receipts = yield sender.receipts.wait_for(3)
    assert accepted.provider_ids[0] in {r.provider_id for r in receipts}


@pytest_twisted.inlineCallbacks
def test_stop_unbinds_gracefully(smsc, started):
    sender = started(smsc)
    yield send(sender, message("one"))
    with CapturedLog() as log:
        yield sender.stopService()
    [closed] = log.formats("SMPP link to {system_id} closed")
    assert "cleanly" in closed["reason"]
    with pytest.raises(TemporaryFailure):
        yield send(sender, message("two"))



@defer.inlineCallbacks
def until(predicate):
    """Wait (on the reactor) until C{predicate()} is true; fail after DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {DEADLINE} s")
        yield task.deferLater(reactor, 0.02, lambda: None)
