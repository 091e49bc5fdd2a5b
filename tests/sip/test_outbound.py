"""
Outgoing calls (the UAC side, RFC 3261 §13.2) through the real transaction
layer, calls registry and dispatcher on a fake clock, against a scripted
far end: answering, refusing, challenging, cancelling, hanging up.
"""

import pytest
from twisted.internet.task import Clock

from callcenter.passwords import sip_ha1
from callcenter.sip.calls import Calls
from callcenter.sip.digest import digest_response, parse_auth_params
from callcenter.sip.dispatch import RequestDispatcher
from callcenter.sip.message import Request, make_response
from callcenter.sip.outbound import CallFailed, dial
from callcenter.sip.sdp import SessionDescription
from callcenter.sip.transaction import TransactionLayer, new_branch
from test_calls import Destination, FakeEngine, Registrar, Wire

TARGET = "sip:13900000000@198.51.100.7"

ANSWER = (
    "v=0\r\no=carrier 7 7 IN IP4 198.51.100.20\r\ns=-\r\nc=IN IP4 198.51.100.20\r\nt=0 0\r\n"
    "m=audio 50000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def wire():
    return Wire()


@pytest.fixture
def engine():
    return FakeEngine()


@pytest.fixture
def calls(clock, wire, engine):
    layer = TransactionLayer(clock, wire, None)
    calls = Calls(layer, clock, engine, "127.0.0.1", lambda number: None, lambda d: d.local())
    layer.user = RequestDispatcher(Registrar(), calls, lambda host: False)
    return calls


class Outcome:
    """What became of a call's C{answered} Deferred, and its progress reports."""

    def __init__(self, call):
        self.call = call
        self.result = None
        self.progress = []
        call.answered.addBoth(self._settled)

    def _settled(self, result):
        self.result = result


def place(calls, engine, **options):
    progress = []
    call = dial(
        calls,
        TARGET,
        Destination(),
        engine.open_session(),
        "sip:4008001234@callcenter.example",
        display_name="Hotline",
        progress=progress.append,
        **options,
    )
    outcome = Outcome(call)
    outcome.progress = progress
    return outcome


class FarEnd:
    """The carrier answering our INVITE."""

    def __init__(self, calls, invite, tag="carrier-1"):
        self.layer = calls.layer
        self.invite = invite
        self.tag = tag

    def respond(self, status, body=b"", extra=(), tag=None):
        response = make_response(self.invite, status, to_tag=None if status == 100 else (tag or self.tag))
        if 200 <= status < 300:
            response.headers.add("Contact", "<sip:gw@198.51.100.20:5080>")
            response.headers.add("Record-Route", "<sip:proxy1.carrier;lr>")
            response.headers.add("Record-Route", "<sip:proxy2.carrier;lr>")
        for name, value in extra:
            response.headers.add(name, value)
        if body:
            response.headers.add("Content-Type", "application/sdp")
            response.body = body.encode() if isinstance(body, str) else body
        self.layer.response_received(response, Destination())
        return response

    def request(self, method, cseq, body=b"", content_type=None):
        request = Request(method, "sip:callcenter@127.0.0.1:5060")
        request.headers.add("Via", f"SIP/2.0/UDP 198.51.100.20:5080;branch={new_branch()}")
        request.headers.add("Max-Forwards", "70")
        request.headers.add("From", f"<{TARGET}>;tag={self.tag}")
        request.headers.add("To", self.invite.headers.get("From"))
        request.headers.add("Call-ID", self.invite.call_id)
        request.headers.add("CSeq", f"{cseq} {method}")
        if body:
            request.headers.add("Content-Type", content_type or "application/sdp")
            request.body = body.encode()
        self.layer.request_received(request, Destination(), False)


def sent_requests(wire, method=None):
    return [m for m in wire.take() if hasattr(m, "method") and method in (None, m.method)]


def invite_of(wire):
    [invite] = sent_requests(wire, "INVITE")
    return invite


def answered(calls, engine, wire):
    outcome = place(calls, engine)
    far = FarEnd(calls, invite_of(wire))
    far.respond(180)
    far.respond(200, ANSWER)
    wire.take()
    return outcome, far


def test_the_invite_offers_our_codecs_and_passes_the_caller_id(calls, engine, wire):
    place(calls, engine, asserted_identity="<sip:13800138001@callcenter.example>")
    invite = invite_of(wire)
    assert invite.uri == TARGET
    sender = invite.from_addr
    assert (sender.display_name, str(sender.uri)) == ("Hotline", "sip:4008001234@callcenter.example")
    assert sender.tag
    assert invite.headers.get("To") == f"<{TARGET}>"
    assert invite.headers.get("P-Asserted-Identity") == "<sip:13800138001@callcenter.example>"
    assert invite.headers.get("Contact") == "<sip:callcenter@127.0.0.1:5060>"
    assert invite.cseq == (1, "INVITE")
    [audio] = SessionDescription.parse(invite.body).media
    assert (audio.port, audio.formats) == (30000, ["0", "8", "101"])
    assert len(calls) == 1


def test_ringing_then_answer_is_acked_within_the_dialog(calls, engine, wire):
    outcome = place(calls, engine)
    invite = invite_of(wire)
    far = FarEnd(calls, invite)
    far.respond(100)
    far.respond(180)
    assert [r.status for r in outcome.progress] == [180]
    assert outcome.call.state == "proceeding"
    assert outcome.result is None
    far.respond(200, ANSWER)
    [ack] = sent_requests(wire)
    assert ack.method == "ACK"
    assert ack.uri == "sip:gw@198.51.100.20:5080"  # the 2xx's Contact
    assert ack.headers.get_all("Route") == ["<sip:proxy2.carrier;lr>", "<sip:proxy1.carrier;lr>"]
    assert ack.cseq == (1, "ACK")
    assert ack.to_addr.tag == "carrier-1"
    assert ack.from_addr.tag == invite.from_addr.tag
    assert ack.vias[0].branch != invite.vias[0].branch  # end to end: a new transaction id
    assert outcome.result is outcome.call
    assert outcome.call.state == "confirmed"
    assert outcome.call.codec.encoding == "PCMA"
    assert engine.sessions[0].remote == ("198.51.100.20", 50000, "PCMA")


def test_each_retransmitted_200_is_acked_again_even_after_the_transaction_ended(calls, engine, wire, clock):
    outcome, far = answered(calls, engine, wire)
    far.respond(200, ANSWER)  # the INVITE transaction (Accepted) hands it up
    [ack] = sent_requests(wire)
    assert ack.method == "ACK"
    clock.advance(40)  # Timer M: the transaction is gone
    assert len(calls.layer) == 0
    far.respond(200, ANSWER)  # a stray response, routed by the dispatcher
    [again] = sent_requests(wire)
    assert (again.method, again.vias[0].branch) == ("ACK", ack.vias[0].branch)
    assert outcome.call.state == "confirmed"


def test_busy_fails_the_call_with_the_status(calls, engine, wire):
    outcome = place(calls, engine)
    far = FarEnd(calls, invite_of(wire))
    far.respond(486)
    assert isinstance(outcome.result.value, CallFailed)
    assert (outcome.result.value.status, outcome.result.value.reason) == (486, "Busy Here")
    assert [m.method for m in sent_requests(wire)] == ["ACK"]  # by the transaction (§17.1.1.3)
    assert engine.sessions[0].closed
    assert outcome.call.ended.result == "486 Busy Here"
    assert len(calls) == 0


def test_a_proxy_challenge_is_answered_once_with_the_credentials(calls, engine, wire):
    outcome = place(calls, engine, credentials=("trunk7", "s3cret"))
    first = invite_of(wire)
    FarEnd(calls, first).respond(
        407, extra=[("Proxy-Authenticate", 'Digest realm="carrier", nonce="abc", qop="auth", algorithm=MD5')]
    )
    second = invite_of(wire)
    assert second.call_id == first.call_id
    assert second.from_addr.tag == first.from_addr.tag
    assert second.cseq == (2, "INVITE")
    assert second.vias[0].branch != first.vias[0].branch
    scheme, params = parse_auth_params(second.headers.get("Proxy-Authorization"))
    assert (scheme, params["username"], params["uri"]) == ("Digest", "trunk7", TARGET)
    ha1 = sip_ha1("trunk7", "carrier", "s3cret")
    expected = digest_response("MD5", ha1, "abc", "INVITE", TARGET, "auth", params["nc"], params["cnonce"])
    assert params["response"] == expected
    FarEnd(calls, second).respond(200, ANSWER)
    [ack] = sent_requests(wire)
    assert ack.cseq == (2, "ACK")
    assert ack.headers.get("Proxy-Authorization") == second.headers.get("Proxy-Authorization")
    assert outcome.result is outcome.call


def test_a_second_challenge_fails_the_call(calls, engine, wire):
    outcome = place(calls, engine, credentials=("trunk7", "wrong"))
    challenge = [("Proxy-Authenticate", 'Digest realm="carrier", nonce="abc"')]
    FarEnd(calls, invite_of(wire)).respond(407, extra=challenge)
    FarEnd(calls, invite_of(wire)).respond(407, extra=challenge)
    assert outcome.result.value.status == 407
    assert sent_requests(wire, "INVITE") == []


def test_a_challenge_without_credentials_fails_the_call(calls, engine, wire):
    outcome = place(calls, engine)
    FarEnd(calls, invite_of(wire)).respond(401, extra=[("WWW-Authenticate", 'Digest realm="x", nonce="n"')])
    assert outcome.result.value.status == 401


def test_cancel_after_ringing(calls, engine, wire):
    outcome = place(calls, engine)
    invite = invite_of(wire)
    far = FarEnd(calls, invite)
    far.respond(180)
    outcome.call.cancel()
    [cancel] = sent_requests(wire)
    assert cancel.method == "CANCEL"
    assert cancel.vias[0].branch == invite.vias[0].branch
    assert cancel.cseq == (1, "CANCEL")
    assert (cancel.uri, cancel.call_id) == (invite.uri, invite.call_id)
    assert outcome.result is None  # until the INVITE's final response
    far.respond(487)
    assert outcome.result.value.status == 487
    assert [m.method for m in sent_requests(wire)] == ["ACK"]
    assert engine.sessions[0].closed


def test_cancel_before_any_provisional_response_waits_for_one(calls, engine, wire):
    """RFC 3261 §9.1: no CANCEL before a provisional response."""
    outcome = place(calls, engine)
    far = FarEnd(calls, invite_of(wire))
    outcome.call.hangup()
    assert sent_requests(wire) == []
    far.respond(180)
    assert [m.method for m in sent_requests(wire)] == ["CANCEL"]
    assert outcome.progress == []  # a call being cancelled reports no more progress
    far.respond(487)
    assert outcome.result.value.status == 487


def test_a_200_crossing_the_cancel_is_acked_and_ended(calls, engine, wire):
    outcome = place(calls, engine)
    far = FarEnd(calls, invite_of(wire))
    far.respond(180)
    outcome.call.cancel()
    wire.take()
    far.respond(200, ANSWER)
    assert [m.method for m in sent_requests(wire)] == ["ACK", "BYE"]
    assert outcome.result.value.status == 487
    assert engine.sessions[0].closed


def test_an_invite_unanswered_after_its_cancel_is_given_up(calls, engine, wire, clock):
    outcome = place(calls, engine)
    FarEnd(calls, invite_of(wire)).respond(180)
    outcome.call.cancel()
    clock.advance(32.1)
    assert outcome.result.value.status == 487
    assert engine.sessions[0].closed


def test_a_200_without_sdp_is_acked_then_ended(calls, engine, wire):
    outcome = place(calls, engine)
    FarEnd(calls, invite_of(wire)).respond(200)
    assert [m.method for m in sent_requests(wire)] == ["ACK", "BYE"]
    assert outcome.result.value.status == 488
    assert engine.sessions[0].closed


def test_no_answer_at_all_is_a_408(calls, engine, wire, clock):
    outcome = place(calls, engine)
    clock.advance(32.1)  # Timer B
    assert outcome.result.value.status == 408
    assert engine.sessions[0].closed
    assert len(calls) == 0


def test_the_far_end_hangs_up(calls, engine, wire):
    outcome, far = answered(calls, engine, wire)
    far.request("BYE", 1)
    [ok] = wire.take()
    assert (ok.status, ok.cseq) == (200, (1, "BYE"))
    assert outcome.call.ended.result == "callee hung up"
    assert engine.sessions[0].closed
    assert len(calls) == 0


def test_our_hangup_sends_bye_in_the_dialog(calls, engine, wire):
    outcome, far = answered(calls, engine, wire)
    outcome.call.hangup()
    [bye] = sent_requests(wire)
    assert bye.method == "BYE"
    assert bye.uri == "sip:gw@198.51.100.20:5080"
    assert bye.cseq == (2, "BYE")
    assert bye.to_addr.tag == "carrier-1"
    assert bye.headers.get_all("Route") == ["<sip:proxy2.carrier;lr>", "<sip:proxy1.carrier;lr>"]
    assert outcome.call.ended.result == "normal"
    assert len(calls) == 0


def test_hold_by_reinvite_and_dtmf_by_info_from_the_far_end(calls, engine, wire, clock):
    outcome, far = answered(calls, engine, wire)
    digits = outcome.call.collect_digits(2, first_timeout=5, inter_digit_timeout=3)
    far.request("INVITE", 1, body=ANSWER + "a=sendonly\r\n")
    [ok] = [m for m in wire.take() if m.status == 200]
    assert ok.status == 200
    assert SessionDescription.parse(ok.body).media[0].direction == "recvonly"
    assert engine.sessions[0].held is True
    far.request("INFO", 2, body="Signal=4\r\n", content_type="application/dtmf-relay")
    far.request("INFO", 3, body="2", content_type="application/dtmf")
    assert digits.result == "42"


def test_a_second_200_from_a_fork_is_acked_and_ended_and_the_call_stays(calls, engine, wire):
    outcome, far = answered(calls, engine, wire)
    far.respond(200, ANSWER, tag="carrier-2")
    ack, bye = sent_requests(wire)
    assert (ack.method, ack.to_addr.tag) == ("ACK", "carrier-2")
    assert (bye.method, bye.to_addr.tag) == ("BYE", "carrier-2")
    assert outcome.call.state == "confirmed"


def test_answer_fires_when_the_far_end_answers(calls, engine, wire):
    outcome = place(calls, engine)
    waited = []
    outcome.call.answer().addCallback(waited.append)
    FarEnd(calls, invite_of(wire)).respond(200, ANSWER)
    assert waited == [None]


def test_early_media_in_a_183_is_played_while_it_rings(calls, engine, wire):
    outcome = place(calls, engine)
    far = FarEnd(calls, invite_of(wire))
    far.respond(183, ANSWER)
    assert [r.status for r in outcome.progress] == [183]
    assert engine.sessions[0].remote == ("198.51.100.20", 50000, "PCMA")
    assert outcome.call.codec.encoding == "PCMA"
    assert outcome.result is None


class WorkerEngine(FakeEngine):
    """Sessions as a media worker's (callcenter.media.remote_session): they can be lost."""

    def open_session(self):
        session = super().open_session()
        session.in_worker = True
        session.lost = None
        session.tail = lambda: 0.0  # no prompt still sounding
        return session


def test_a_leg_whose_media_worker_died_is_hung_up_at_once(calls, wire):
    """Not left to the RTP inactivity timeout: the far end gets its BYE as soon as the media is gone."""
    engine = WorkerEngine()
    outcome, far = answered(calls, engine, wire)
    engine.sessions[0].lost("media worker 1 died")
    [bye] = sent_requests(wire)
    assert bye.method == "BYE" and bye.to_addr.tag == "carrier-1"
    assert outcome.call.ended.result == "media lost"
    assert len(calls) == 0


def test_a_call_still_ringing_when_its_media_worker_dies_is_cancelled(calls, wire):
    engine = WorkerEngine()
    place(calls, engine)
    far = FarEnd(calls, invite_of(wire))
    far.respond(180)
    engine.sessions[0].lost("media worker 0 died")
    [cancel] = sent_requests(wire)
    assert cancel.method == "CANCEL"
