"""
The ESME protocol on a StringTransport and a Clock, the test playing the
SMSC with the codec: bind and its refusal, the window, response timeouts,
throttling and the command_status mapping, enquire_link both ways, a lost
link failing what is in flight as temporary, receipts and
mobile-originated messages, graceful unbind, and garbage.
"""

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection

from callcenter.notify.message import PermanentFailure, Receipt, TemporaryFailure
from callcenter.notify.smpp import pdu
from callcenter.notify.smpp.pdu import ShortMessage
from callcenter.notify.smpp.protocol import ESMEFactory, ESMEProtocol, LinkSettings
from outcomes import CapturedLog


class Handler:
    accepting_links = True

    def __init__(self):
        self.events = []
        self.receipts = []
        self.mobile = []
        self.receipt_result = None

    def link_bound(self, link):
        self.events.append("bound")

    def bind_refused(self, link, status):
        self.events.append(("refused", status))

    def link_lost(self, link, reason):
        self.events.append("lost")

    def link_ready(self, link):
        self.events.append("ready")

    def receipt(self, receipt):
        self.receipts.append(receipt)
        return self.receipt_result

    def mobile_originated(self, source_addr, text, sm):
        self.mobile.append((source_addr, text))


class Waiter:
    def __init__(self):
        self.results = {}

    def accepted(self, tag, message_id):
        assert tag not in self.results
        self.results[tag] = message_id

    def failed(self, tag, error):
        assert tag not in self.results
        self.results[tag] = error


class SMSC:
    """The far end: what the link wrote, and PDUs to feed it."""

    def __init__(self, **settings):
        settings.setdefault("system_id", "callcenter")
        settings.setdefault("password", "secret")
        self.settings = LinkSettings(**settings)
        self.clock = Clock()
        self.handler = Handler()
        self.link = ESMEProtocol(self.settings, self.clock, self.handler)
        self.transport = StringTransportWithDisconnection()
        self.transport.protocol = self.link
        self.link.makeConnection(self.transport)

    def written(self):
        """[(command_id, status, sequence, body)] written since the last call."""
        data = self.transport.value()
        self.transport.clear()
        pdus = []
        while data:
            length, command_id, status, sequence = pdu.HEADER.unpack_from(data)
            pdus.append((command_id, status, sequence, data[16:length]))
            data = data[length:]
        return pdus

    def feed(self, data):
        self.link.dataReceived(data)

    def bind(self, status=pdu.ESME_ROK):
        [(command_id, _, sequence, body)] = self.written()
        assert command_id == pdu.BIND_TRANSCEIVER
        self.feed(pdu.encode_message_id_response(pdu.BIND_TRANSCEIVER_RESP, status, sequence, "SMSC"))
        return pdu.decode_bind(body)

    def submit(self, waiter, tag, destination=b"8613800138000", short_message=b"hi"):
        assert self.link.can_submit()
        self.link.submit(1, 1, destination, 0, 0, short_message, waiter, tag)
        [(command_id, _, sequence, body)] = self.written()
        assert command_id == pdu.SUBMIT_SM
        return sequence, body

    def answer(self, sequence, status=pdu.ESME_ROK, message_id="M1"):
        body_id = message_id if status == pdu.ESME_ROK else ""
        self.feed(pdu.encode_message_id_response(pdu.SUBMIT_SM_RESP, status, sequence, body_id))

    @property
    def closed(self):
        return not self.transport.connected


@pytest.fixture
def smsc():
    smsc = SMSC()
    smsc.bind()
    return smsc


def test_binds_as_transceiver_with_the_account():
    smsc = SMSC(system_type="CC")
    assert smsc.bind() == pdu.Bind("callcenter", "secret", "CC", 0x34)
    assert smsc.handler.events == ["bound"]
    assert smsc.link.can_submit()


def test_cannot_submit_before_the_bind_is_answered():
    smsc = SMSC()
    assert not smsc.link.can_submit()


def test_refused_bind_is_logged_told_and_closed():
    smsc = SMSC()
    with CapturedLog() as log:
        smsc.bind(pdu.ESME_RINVPASWD)
    assert smsc.handler.events[0] == ("refused", pdu.ESME_RINVPASWD)
    assert smsc.closed
    assert not smsc.link.can_submit()
    [event] = log.formats("refused bind_transceiver")
    assert event["status"] == "ESME_RINVPASWD" and event["system_id"] == "callcenter"


def test_unanswered_bind_times_out():
    smsc = SMSC(bind_timeout=10)
    smsc.clock.advance(9.9)
    assert not smsc.closed
    smsc.clock.advance(0.2)
    assert smsc.closed
    assert smsc.handler.events[0] == ("refused", None)


def test_submit_and_its_message_id(smsc):
    waiter = Waiter()
    sequence, body = smsc.submit(waiter, "tag", short_message="成交".encode("utf-16-be"))
    sm = pdu.decode_short_message(body)
    assert (sm.destination_addr, sm.dest_addr_ton, sm.dest_addr_npi, sm.registered_delivery) == (
        "8613800138000", 1, 1, 1)
    assert sm.short_message == "成交".encode("utf-16-be")
    smsc.answer(sequence, message_id="0A1B2C")
    assert waiter.results == {"tag": "0A1B2C"}
    assert smsc.handler.events[-1] == "ready"


def test_sequence_numbers_differ():
    smsc = SMSC()
    smsc.bind()
    sequences = {smsc.submit(Waiter(), n)[0] for n in range(5)}
    assert len(sequences) == 5 and 0 not in sequences


def test_window_full_until_an_answer():
    smsc = SMSC(window=3)
    smsc.bind()
    waiter = Waiter()
    sequences = [smsc.submit(waiter, n)[0] for n in range(3)]
    assert not smsc.link.can_submit()
    assert smsc.link.in_flight == 3
    smsc.answer(sequences[1], message_id="B")
    assert smsc.link.can_submit()
    assert waiter.results == {1: "B"}


def test_answers_out_of_order_go_to_their_own_segments(smsc):
    waiter = Waiter()
    first, _ = smsc.submit(waiter, "first")
    second, _ = smsc.submit(waiter, "second")
    smsc.answer(second, message_id="two")
    smsc.answer(first, message_id="one")
    assert waiter.results == {"first": "one", "second": "two"}


def test_unanswered_submit_fails_temporarily_after_the_response_timeout():
    smsc = SMSC(response_timeout=30, enquire_link_interval=600)
    smsc.bind()
    waiter = Waiter()
    early, _ = smsc.submit(waiter, "early")
    smsc.clock.advance(20)
    smsc.submit(waiter, "later")
    smsc.clock.advance(10)
    assert isinstance(waiter.results["early"], TemporaryFailure)
    assert "later" not in waiter.results
    assert smsc.link.in_flight == 1
    smsc.clock.advance(20)
    assert isinstance(waiter.results["later"], TemporaryFailure)
    assert not smsc.closed
    # A late answer is dropped, not given to anyone.
    with CapturedLog() as log:
        smsc.answer(early, message_id="late")
    assert log.formats("not in flight")
    assert isinstance(waiter.results["early"], TemporaryFailure)


def test_throttling_fails_temporarily_and_pauses_the_link():
    smsc = SMSC(throttle_pause=2.0)
    smsc.bind()
    waiter = Waiter()
    sequence, _ = smsc.submit(waiter, "t")
    smsc.handler.events.clear()
    smsc.answer(sequence, pdu.ESME_RTHROTTLED)
    error = waiter.results["t"]
    assert isinstance(error, TemporaryFailure) and error.retry_after == 2.0
    assert not smsc.link.can_submit()
    smsc.clock.advance(1.9)
    assert not smsc.link.can_submit()
    smsc.clock.advance(0.2)
    assert smsc.link.can_submit()
    assert smsc.handler.events[-1] == "ready"


@pytest.mark.parametrize("status, kind", [
    (pdu.ESME_RMSGQFUL, TemporaryFailure),
    (pdu.ESME_RSYSERR, TemporaryFailure),
    (pdu.ESME_RINVBNDSTS, TemporaryFailure),
    (pdu.ESME_RINVSRCADR, PermanentFailure),
    (pdu.ESME_RINVDSTADR, PermanentFailure),
    (pdu.ESME_RSUBMITFAIL, PermanentFailure),
    (pdu.ESME_RINVMSGLEN, PermanentFailure),
])
def test_command_status_mapping(smsc, status, kind):
    waiter = Waiter()
    sequence, _ = smsc.submit(waiter, "x")
    smsc.answer(sequence, status)
    assert type(waiter.results["x"]) is kind
    assert pdu.status_name(status) in str(waiter.results["x"])
    assert smsc.link.can_submit()  # only throttling pauses the link


def test_generic_nack_to_a_submit_fails_it(smsc):
    waiter = Waiter()
    sequence, _ = smsc.submit(waiter, "x")
    smsc.feed(pdu.header(pdu.GENERIC_NACK, pdu.ESME_RINVCMDLEN, sequence))
    assert isinstance(waiter.results["x"], PermanentFailure)
    assert smsc.link.in_flight == 0


def test_enquire_link_keeps_the_link():
    smsc = SMSC(enquire_link_interval=30, enquire_link_timeout=10)
    smsc.bind()
    for _ in range(3):
        smsc.clock.advance(30)
        [(command_id, _, sequence, _)] = smsc.written()
        assert command_id == pdu.ENQUIRE_LINK
        smsc.clock.advance(5)
        smsc.feed(pdu.header(pdu.ENQUIRE_LINK_RESP, 0, sequence))
    smsc.clock.advance(20)
    assert not smsc.closed


def test_unanswered_enquire_link_drops_the_link_and_fails_what_is_in_flight():
    smsc = SMSC(enquire_link_interval=30, enquire_link_timeout=10)
    smsc.bind()
    waiter = Waiter()
    smsc.submit(waiter, "x")
    smsc.clock.advance(30)
    assert smsc.written()[0][0] == pdu.ENQUIRE_LINK
    smsc.clock.advance(10)
    assert smsc.closed
    assert isinstance(waiter.results["x"], TemporaryFailure)
    assert smsc.handler.events[-1] == "lost"


def test_answers_the_smscs_enquire_link(smsc):
    smsc.feed(pdu.header(pdu.ENQUIRE_LINK, 0, 77))
    assert smsc.written() == [(pdu.ENQUIRE_LINK_RESP, 0, 77, b"")]


def test_answers_the_smscs_unbind_and_closes(smsc):
    waiter = Waiter()
    smsc.submit(waiter, "x")
    smsc.feed(pdu.header(pdu.UNBIND, 0, 78))
    assert smsc.written() == [(pdu.UNBIND_RESP, 0, 78, b"")]
    assert smsc.closed
    assert isinstance(waiter.results["x"], TemporaryFailure)


def test_lost_connection_fails_every_submit_in_flight_temporarily(smsc):
    waiter = Waiter()
    answered, _ = smsc.submit(waiter, 0)
    for tag in range(1, 4):
        smsc.submit(waiter, tag)
    smsc.answer(answered)
    smsc.transport.loseConnection()
    assert waiter.results[0] == "M1"
    assert all(isinstance(waiter.results[tag], TemporaryFailure) for tag in range(1, 4))
    assert smsc.handler.events[-1] == "lost"
    assert not smsc.link.can_submit()
    smsc.clock.advance(100)  # no timer left to fire on a closed link
    assert smsc.clock.getDelayedCalls() == []


def receipt_pdu(sequence, text=b"", tlvs=(), esm_class=pdu.ESM_DELIVERY_RECEIPT):
    sm = ShortMessage(destination_addr="10690", source_addr="8613800138000", esm_class=esm_class,
                      short_message=text, tlvs=tlvs)
    return pdu.encode_short_message(pdu.DELIVER_SM, sequence, sm)


RECEIPT_TEXT = b"id:7F3A sub:001 dlvrd:001 submit date:2412011530 done date:2412011531 stat:DELIVRD err:000 text:"


def test_receipt_from_tlvs(smsc):
    smsc.feed(receipt_pdu(9, RECEIPT_TEXT, ((pdu.RECEIPTED_MESSAGE_ID, b"7F3A\0"), (pdu.MESSAGE_STATE, b"\x05"))))
    # The TLVs win over the text: message_state 5 is UNDELIVERABLE.
    assert smsc.handler.receipts == [Receipt("7F3A", False, "UNDELIV", RECEIPT_TEXT.decode())]
    assert smsc.written() == [(pdu.DELIVER_SM_RESP, 0, 9, b"\0")]


def test_receipt_from_text_only(smsc):
    smsc.feed(receipt_pdu(10, RECEIPT_TEXT))
    [receipt] = smsc.handler.receipts
    assert (receipt.provider_id, receipt.delivered, receipt.state) == ("7F3A", True, "DELIVRD")


@pytest.mark.parametrize("state, delivered", [("EXPIRED", False), ("REJECTD", False), ("ENROUTE", None),
                                              ("ACCEPTD", None), ("DELETED", False)])
def test_receipt_states(smsc, state, delivered):
    smsc.feed(receipt_pdu(11, b"id:1 sub:001 dlvrd:000 submit date:2412011530 done date:2412011531 stat:"
                          + state.encode() + b" err:001 text:stat:DELIVRD"))
    assert smsc.handler.receipts[0].delivered is delivered
    assert smsc.handler.receipts[0].state == state


def test_receipt_answered_once_recorded(smsc):
    recorded = defer.Deferred()
    smsc.handler.receipt_result = recorded
    smsc.feed(receipt_pdu(12, RECEIPT_TEXT))
    assert smsc.written() == []
    recorded.callback(None)
    assert smsc.written() == [(pdu.DELIVER_SM_RESP, 0, 12, b"\0")]


def test_receipt_not_recorded_is_asked_again(smsc):
    recorded = defer.Deferred()
    smsc.handler.receipt_result = recorded
    with CapturedLog():
        smsc.feed(receipt_pdu(13, RECEIPT_TEXT))
        recorded.errback(RuntimeError("database down"))
    assert smsc.written() == [(pdu.DELIVER_SM_RESP, pdu.ESME_RX_T_APPN, 13, b"\0")]


def test_unreadable_receipt_is_acknowledged_and_logged(smsc):
    with CapturedLog() as log:
        smsc.feed(receipt_pdu(14, b"garbage"))
    assert smsc.handler.receipts == []
    assert smsc.written() == [(pdu.DELIVER_SM_RESP, 0, 14, b"\0")]
    assert log.formats("{error}")


def test_mobile_originated_message_is_acknowledged(smsc):
    with CapturedLog() as log:
        smsc.feed(pdu.encode_short_message(pdu.DELIVER_SM, 15, ShortMessage(
            destination_addr="10690", source_addr="8613800138000", data_coding=8,
            short_message="退订".encode("utf-16-be"))))
    assert smsc.handler.mobile == [("8613800138000", "退订")]
    assert smsc.handler.receipts == []
    assert smsc.written() == [(pdu.DELIVER_SM_RESP, 0, 15, b"\0")]
    assert log.formats("SMS from")


def test_pdus_split_anywhere_are_read(smsc):
    waiter = Waiter()
    sequence, _ = smsc.submit(waiter, "x")
    data = pdu.encode_message_id_response(pdu.SUBMIT_SM_RESP, 0, sequence, "ABC") + receipt_pdu(20, RECEIPT_TEXT)
    for octet in range(len(data)):
        smsc.feed(data[octet:octet + 1])
    assert waiter.results == {"x": "ABC"}
    assert smsc.handler.receipts[0].provider_id == "7F3A"


@pytest.mark.parametrize("length", [0, 8, 15, pdu.MAX_COMMAND_LENGTH + 1, 0xFFFFFFFF])
def test_command_length_out_of_range_loses_the_framing(smsc, length):
    waiter = Waiter()
    smsc.submit(waiter, "x")
    with CapturedLog() as log:
        smsc.feed(pdu.HEADER.pack(length, pdu.DELIVER_SM, 0, 5) + b"\0" * 40)
    assert smsc.written() == [(pdu.GENERIC_NACK, pdu.ESME_RINVCMDLEN, 5, b"")]
    assert smsc.closed
    assert isinstance(waiter.results["x"], TemporaryFailure)
    assert log.formats("command_length")


def test_unknown_request_is_nacked_and_the_link_kept(smsc):
    smsc.feed(pdu.header(0x00000077, 0, 31) + pdu.header(pdu.ENQUIRE_LINK, 0, 32))
    assert smsc.written() == [(pdu.GENERIC_NACK, pdu.ESME_RINVCMDID, 31, b""), (pdu.ENQUIRE_LINK_RESP, 0, 32, b"")]
    assert not smsc.closed


def test_deliver_sm_that_does_not_parse_is_nacked_and_the_link_kept(smsc):
    with CapturedLog():
        smsc.feed(pdu.header(pdu.DELIVER_SM, 0, 33, b"\0\0\0no-nul-here"))
    assert smsc.written() == [(pdu.GENERIC_NACK, pdu.ESME_RINVCMDLEN, 33, b"")]
    assert not smsc.closed


def test_bad_input_is_logged_a_few_times_not_flooded(smsc):
    with CapturedLog() as log:
        for sequence in range(100):
            smsc.feed(pdu.header(pdu.DELIVER_SM, 0, sequence, b"bad"))
    assert 1 <= len(log.formats("does not parse")) <= 5
    smsc.clock.advance(11)
    with CapturedLog() as log:
        smsc.feed(pdu.header(pdu.DELIVER_SM, 0, 101, b"bad"))
    [event] = log.formats("does not parse")
    assert event["suppressed"] > 0


def test_a_bug_in_a_handler_closes_the_link_not_the_process(smsc):
    def broken(link):
        raise RuntimeError("bug")

    smsc.handler.link_ready = broken
    waiter = Waiter()
    sequence, _ = smsc.submit(waiter, "x")
    other, _ = smsc.submit(waiter, "y")
    with CapturedLog() as log:
        smsc.answer(sequence)  # must not raise
    assert smsc.closed
    assert waiter.results["x"] == "M1"
    assert isinstance(waiter.results["y"], TemporaryFailure)
    assert log.formats("not handled")


def test_graceful_unbind_waits_for_what_is_in_flight(smsc):
    waiter = Waiter()
    sequence, _ = smsc.submit(waiter, "x")
    closed = []
    smsc.link.unbind(drain_timeout=5).addCallback(closed.append)
    assert not smsc.link.can_submit()
    assert smsc.written() == []
    smsc.answer(sequence, message_id="last")
    [(command_id, _, unbind_sequence, _)] = smsc.written()
    assert command_id == pdu.UNBIND
    smsc.feed(pdu.header(pdu.UNBIND_RESP, 0, unbind_sequence))
    assert smsc.closed and closed == [None]
    assert waiter.results == {"x": "last"}


def test_unbind_gives_up_waiting_after_the_drain_timeout():
    smsc = SMSC(unbind_timeout=3)
    smsc.bind()
    waiter = Waiter()
    smsc.submit(waiter, "x")
    closed = []
    smsc.link.unbind(drain_timeout=5).addCallback(closed.append)
    smsc.clock.advance(5)
    assert smsc.written()[0][0] == pdu.UNBIND
    smsc.clock.advance(3)  # nor is the unbind answered
    assert smsc.closed and closed == [None]
    assert isinstance(waiter.results["x"], TemporaryFailure)


def test_factory_builds_no_link_for_a_stopping_handler():
    handler = Handler()
    factory = ESMEFactory(LinkSettings("callcenter", "secret"), Clock(), handler)
    assert isinstance(factory.buildProtocol(None), ESMEProtocol)
    handler.accepting_links = False
    assert factory.buildProtocol(None) is None


@pytest.mark.parametrize("settings", [
    {"password": "longerthan8"},
    {"system_id": "x" * 16},
    {"window": 0},
    {"response_timeout": 0},
    {"source_addr": "x" * 21},
])
def test_settings_are_checked_up_front(settings):
    values = {"system_id": "callcenter", "password": "secret", **settings}
    with pytest.raises(ValueError):
        LinkSettings(**values)


def test_a_waiter_submitting_again_on_timeout_does_not_delay_the_next_timeout():
    smsc = SMSC(response_timeout=30, enquire_link_interval=600)
    smsc.bind()
    waiter = Waiter()

    class Resubmitting(Waiter):
        def failed(self, tag, error):
            super().failed(tag, error)
            smsc.link.submit(1, 1, b"1", 0, 0, b"again", waiter, "again")

    smsc.submit(Resubmitting(), "first")
    smsc.clock.advance(10)
    smsc.submit(waiter, "second")
    smsc.clock.advance(20)  # "first" times out; "again" goes, due at 60
    # One timer for all the response timeouts (and the enquire_link's): no stray second one.
    assert len(smsc.clock.getDelayedCalls()) == 2
    smsc.clock.advance(10)
    assert isinstance(waiter.results.get("second"), TemporaryFailure)  # at 40, not 60
    assert "again" not in waiter.results
    smsc.clock.advance(20)
    assert isinstance(waiter.results["again"], TemporaryFailure)
    assert smsc.link.in_flight == 0


class StuckTransport(StringTransportWithDisconnection):
    """A peer that stopped reading: closing never completes on its own."""

    aborted = False

    def loseConnection(self):
        self.disconnecting = True

    def abortConnection(self):
        self.aborted = True
        StringTransportWithDisconnection.loseConnection(self)


def test_closing_a_link_to_a_peer_that_stopped_reading_aborts_it():
    handler = Handler()
    clock = Clock()
    link = ESMEProtocol(LinkSettings("callcenter", "secret", unbind_timeout=5), clock, handler)
    transport = StuckTransport()
    transport.protocol = link
    link.makeConnection(transport)
    closed = []
    link.unbind().addCallback(closed.append)  # before the bind is answered: just close
    assert transport.disconnecting and closed == []
    clock.advance(5)
    assert transport.aborted and closed == [None]
    assert handler.events[-1] == "lost"
