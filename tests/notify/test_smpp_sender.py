"""
The SMS sender on a Clock, its links made by an in-memory endpoint (each a
StringTransport the test answers as the SMSC): the IMessageSender
contract, waiting for the link, segments to Accepted, the queue behind
the window, backoff after refused binds, reconnecting, stopping
gracefully, receipts to the handler, and destination addresses.
"""

import pytest
from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from zope.interface.verify import verifyObject

from callcenter.notify.interfaces import IMessageSender
from callcenter.notify.message import Accepted, OutgoingMessage, PermanentFailure, Receipt, TemporaryFailure
from callcenter.notify.smpp import pdu
from callcenter.notify.smpp.pdu import ShortMessage
from callcenter.notify.smpp.sender import SMPPSender, destination
from callcenter.notify.smpp.text import split_udh
from outcomes import CapturedLog, results_of


class Connection:
    """One link as the SMSC sees it."""

    def __init__(self, protocol):
        self.protocol = protocol
        self.transport = StringTransportWithDisconnection()
        self.transport.protocol = protocol
        protocol.makeConnection(self.transport)

    def read(self):
        data = self.transport.value()
        self.transport.clear()
        pdus = []
        while data:
            length, command_id, status, sequence = pdu.HEADER.unpack_from(data)
            pdus.append((command_id, status, sequence, data[16:length]))
            data = data[length:]
        return pdus

    def bind(self, status=pdu.ESME_ROK):
        [(command_id, _, sequence, _)] = self.read()
        assert command_id == pdu.BIND_TRANSCEIVER
        self.protocol.dataReceived(pdu.encode_message_id_response(pdu.BIND_TRANSCEIVER_RESP, status, sequence))

    def submits(self):
        """[(sequence, ShortMessage)] of the submit_sm written since the last read."""
        found = []
        for command_id, _, sequence, body in self.read():
            assert command_id == pdu.SUBMIT_SM
            found.append((sequence, pdu.decode_short_message(body)))
        return found

    def answer(self, sequence, message_id="", status=pdu.ESME_ROK):
        self.protocol.dataReceived(pdu.encode_message_id_response(pdu.SUBMIT_SM_RESP, status, sequence, message_id))

    @property
    def open(self):
        return self.transport.connected


class Endpoint:
    """Connects at once, in memory; or refuses while C{refusing}."""

    def __init__(self):
        self.connections = []
        self.attempts = 0
        self.refusing = False

    def connect(self, factory):
        self.attempts += 1
        if self.refusing:
            return defer.fail(ConnectionRefusedError())
        protocol = factory.buildProtocol(None)
        if protocol is None:
            return defer.fail(ConnectionRefusedError("no protocol"))
        self.connections.append(Connection(protocol))
        return defer.succeed(protocol)

    @property
    def last(self):
        return self.connections[-1]


def message(body="Order 12345 filled", address="+8613800138000", message_id=1):
    return OutgoingMessage(message_id=message_id, channel="sms", address=address, body=body)


def make_sender(**options):
    clock = Clock()
    endpoint = Endpoint()
    options.setdefault("retry_policy", lambda attempt: float(attempt))
    sender = SMPPSender(clock, endpoint, "callcenter", "secret", source_addr="10690", **options)
    return sender, clock, endpoint


@pytest.fixture
def bound():
    sender, clock, endpoint = make_sender()
    sender.startService()
    endpoint.last.bind()
    return sender, clock, endpoint.last


def test_provides_the_interface():
    sender, _, _ = make_sender(window=50)
    assert verifyObject(IMessageSender, sender)
    assert (sender.channel, sender.window) == ("sms", 50)


def test_not_running_fails_temporarily():
    sender, _, _ = make_sender()
    [failure] = results_of(sender.send(message()))
    assert failure.check(TemporaryFailure)


def test_one_segment_accepted_with_its_message_id(bound):
    sender, _, link = bound
    result = results_of(sender.send(message("Filled 100 @ 12.34")))
    [(sequence, sm)] = link.submits()
    assert (sm.destination_addr, sm.dest_addr_ton, sm.dest_addr_npi) == ("8613800138000", 1, 1)
    assert (sm.source_addr, sm.esm_class, sm.data_coding, sm.registered_delivery) == ("10690", 0, 0, 1)
    assert sm.short_message == b"Filled 100 \x00 12.34"
    assert result == []
    link.answer(sequence, "A1")
    assert result == [Accepted(provider_ids=("A1",))]


def test_send_waits_for_the_link():
    sender, clock, endpoint = make_sender(link_timeout=30)
    sender.startService()
    result = results_of(sender.send(message()))
    clock.advance(5)  # the SMSC is slow to answer the bind
    assert result == []
    endpoint.last.bind()  # (checks that the bind is all that was written)
    [(sequence, _)] = endpoint.last.submits()
    endpoint.last.answer(sequence, "A1")
    assert result == [Accepted(("A1",))]


def test_send_fails_temporarily_when_the_link_stays_down():
    sender, clock, endpoint = make_sender(link_timeout=30)
    endpoint.refusing = True
    sender.startService()
    result = results_of(sender.send(message()))
    clock.advance(29)
    assert result == []
    clock.advance(1)
    [failure] = result
    assert failure.check(TemporaryFailure)
    assert "not bound within 30" in str(failure.value)


def test_chinese_message_in_two_segments_accepted_in_segment_order(bound):
    sender, _, link = bound
    text = "【成交回报】" + "您委托买入的贵州茅台100股已于14:35:02全部成交，成交均价1688.00元。" * 2
    result = results_of(sender.send(message(text)))
    submits = link.submits()
    assert len(submits) == 2
    udhs = []
    payload = b""
    for number, (_, sm) in enumerate(submits, 1):
        assert (sm.esm_class, sm.data_coding) == (0x40, 8)
        udh, part = split_udh(sm.short_message)
        udhs.append(udh)
        assert udh[:3] == b"\x05\x00\x03" and udh[4:] == bytes([2, number])
        payload += part
    assert udhs[0][3] == udhs[1][3]  # one reference for the message
    assert payload.decode("utf-16-be") == text
    link.answer(submits[1][0], "second")
    assert result == []
    link.answer(submits[0][0], "first")
    assert result == [Accepted(("first", "second"))]


def test_each_long_message_has_its_own_reference(bound):
    sender, _, link = bound
    sender.send(message("a" * 200))
    sender.send(message("b" * 200))
    references = {split_udh(sm.short_message)[0][3] for _, sm in link.submits()}
    assert len(references) == 2


def test_a_refused_segment_fails_the_message(bound):
    sender, _, link = bound
    result = results_of(sender.send(message("x" * 300)))
    (first, _), (second, _) = link.submits()
    link.answer(first, status=pdu.ESME_RINVDSTADR)
    [failure] = result
    assert failure.check(PermanentFailure)
    link.answer(second, "late")  # no second outcome
    assert len(result) == 1


def test_sends_beyond_the_window_queue_in_the_sender():
    sender, clock, endpoint = make_sender(window=2)
    sender.startService()
    link = endpoint.last
    link.bind()
    results = [results_of(sender.send(message(f"m{n}", message_id=n))) for n in range(5)]
    first = link.submits()
    assert len(first) == 2
    for sequence, _ in first:
        link.answer(sequence, f"id{sequence}")
    second = link.submits()
    assert len(second) == 2
    for sequence, _ in second:
        link.answer(sequence, f"id{sequence}")
    [(sequence, sm)] = link.submits()
    assert sm.short_message == b"m4"
    link.answer(sequence, "last")
    assert all(isinstance(r[0], Accepted) for r in results)


def test_queued_too_long_behind_a_full_window_fails_temporarily():
    sender, clock, endpoint = make_sender(window=1, link_timeout=10, response_timeout=60)
    sender.startService()
    endpoint.last.bind()
    sender.send(message("first"))
    waiting = results_of(sender.send(message("second")))
    clock.advance(10)
    [failure] = waiting
    assert failure.check(TemporaryFailure) and "window" in str(failure.value)


def test_throttling_holds_the_queue_then_resumes():
    sender, clock, endpoint = make_sender(window=1, throttle_pause=1.0)
    sender.startService()
    link = endpoint.last
    link.bind()
    first = results_of(sender.send(message("one")))
    second = results_of(sender.send(message("two")))
    [(sequence, _)] = link.submits()
    link.answer(sequence, status=pdu.ESME_RTHROTTLED)
    [failure] = first
    assert failure.check(TemporaryFailure) and failure.value.retry_after == 1.0
    assert link.submits() == []  # paused
    clock.advance(1.0)
    [(sequence, sm)] = link.submits()
    assert sm.short_message == b"two"
    link.answer(sequence, "B")
    assert second == [Accepted(("B",))]


def test_bad_addresses_fail_permanently(bound):
    sender, _, link = bound
    for address in ("", "+", "abc", "138-0013-800x", "1" * 21):
        [failure] = results_of(sender.send(message(address=address)))
        assert failure.check(PermanentFailure)
    assert link.submits() == []


@pytest.mark.parametrize("address, expected", [
    ("+8613800138000", (1, 1, b"8613800138000")),
    ("008613800138000", (1, 1, b"8613800138000")),
    ("8613800138000", (1, 1, b"8613800138000")),
    ("13800138000", (0, 1, b"13800138000")),
    ("138-0013-8000", (0, 1, b"13800138000")),
    ("+852 9123 4567", (1, 1, b"85291234567")),
    ("95555", (0, 1, b"95555")),
])
def test_destination_addresses(address, expected):
    assert destination(address) == expected


def test_refused_binds_back_off_and_sends_fail_temporarily():
    sender, clock, endpoint = make_sender(link_timeout=5)
    sender.startService()
    delays = []
    with CapturedLog() as log:
        for _ in range(3):
            endpoint.last.bind(pdu.ESME_RINVPASWD)
            [reconnect] = clock.getDelayedCalls()
            delays.append(reconnect.getTime() - clock.seconds())
            result = results_of(sender.send(message()))
            clock.advance(5)
            [failure] = result
            assert failure.check(TemporaryFailure)
            assert "bind refused" in str(failure.value)
            clock.advance(reconnect.getTime() - clock.seconds())
    assert delays == sorted(delays) and delays[0] < delays[-1]
    assert len(log.formats("refused bind_transceiver")) == 3
    assert sender.status()["bind_refusals"] == 3
    # The password is fixed at the SMSC: the next bind succeeds, sends go.
    endpoint.last.bind()
    assert sender.status()["bind_refusals"] == 0
    result = results_of(sender.send(message()))
    [(sequence, _)] = endpoint.last.submits()
    endpoint.last.answer(sequence, "ok")
    assert result == [Accepted(("ok",))]


def test_lost_link_fails_in_flight_and_reconnects():
    sender, clock, endpoint = make_sender()
    sender.startService()
    first = endpoint.last
    first.bind()
    in_flight = results_of(sender.send(message("one")))
    first.submits()
    first.transport.loseConnection()
    [failure] = in_flight
    assert failure.check(TemporaryFailure)
    waiting = results_of(sender.send(message("two")))
    clock.advance(1)  # the retry policy's first delay
    second = endpoint.last
    assert second is not first
    second.bind()
    [(sequence, sm)] = second.submits()
    assert sm.short_message == b"two"
    second.answer(sequence, "T")
    assert waiting == [Accepted(("T",))]


def test_stop_fails_the_queue_drains_in_flight_and_unbinds():
    sender, clock, endpoint = make_sender(window=1, drain_timeout=5)
    sender.startService()
    link = endpoint.last
    link.bind()
    in_flight = results_of(sender.send(message("one")))
    queued = results_of(sender.send(message("two")))
    [(sequence, _)] = link.submits()
    stopped = results_of(sender.stopService())
    [failure] = queued
    assert failure.check(TemporaryFailure)
    assert stopped == []
    link.answer(sequence, "drained")
    assert in_flight == [Accepted(("drained",))]
    [(command_id, _, unbind_sequence, _)] = link.read()
    assert command_id == pdu.UNBIND
    link.protocol.dataReceived(pdu.header(pdu.UNBIND_RESP, 0, unbind_sequence))
    assert stopped == [None]
    attempts = endpoint.attempts
    clock.advance(100)
    assert endpoint.attempts == attempts  # no reconnect after stopping
    [failure] = results_of(sender.send(message()))
    assert failure.check(TemporaryFailure)


def test_stop_while_the_link_is_down():
    sender, clock, endpoint = make_sender()
    endpoint.refusing = True
    sender.startService()
    waiting = results_of(sender.send(message()))
    assert results_of(sender.stopService()) == [None]
    [failure] = waiting
    assert failure.check(TemporaryFailure)


def test_receipts_go_to_the_handler(bound):
    sender, _, link = bound
    receipts = []
    sender.set_receipt_handler(receipts.append)
    sm = ShortMessage(destination_addr="10690", source_addr="8613800138000", esm_class=4,
                      short_message=b"id:A1 sub:001 dlvrd:001 submit date:2412011530 done date:2412011531 "
                                    b"stat:DELIVRD err:000 text:",
                      tlvs=((pdu.RECEIPTED_MESSAGE_ID, b"A1\0"), (pdu.MESSAGE_STATE, b"\x02")))
    link.protocol.dataReceived(pdu.encode_short_message(pdu.DELIVER_SM, 40, sm))
    assert [(r.provider_id, r.delivered, r.state) for r in receipts] == [("A1", True, "DELIVRD")]
    assert isinstance(receipts[0], Receipt)
    assert link.read() == [(pdu.DELIVER_SM_RESP, 0, 40, b"\0")]


def test_mobile_originated_messages_go_to_their_handler(bound):
    sender, _, link = bound
    received = []
    sender.set_mobile_originated_handler(lambda source, text: received.append((source, text)))
    sm = ShortMessage(destination_addr="10690", source_addr="13800138000", short_message=b"STOP")
    link.protocol.dataReceived(pdu.encode_short_message(pdu.DELIVER_SM, 41, sm))
    assert received == [("13800138000", "STOP")]
    assert link.read() == [(pdu.DELIVER_SM_RESP, 0, 41, b"\0")]


def test_status_for_health_checks(bound):
    sender, _, link = bound
    sender.send(message())
    assert sender.status() == {"bound": True, "queued": 0, "in_flight": 1, "bind_refusals": 0, "last_error": None}


def test_text_too_long_is_cut_and_logged(bound):
    sender, _, link = bound
    with CapturedLog() as log:
        sender.send(message("成" * 500))
    submits = link.submits()
    assert len(submits) == 6
    assert split_udh(submits[-1][1].short_message)[1].decode("utf-16-be").endswith("…")
    [event] = log.formats("cut to fit")
    assert event["length"] == 500 and event["count"] == 6
