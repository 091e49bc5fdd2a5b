"""
Incoming calls through the real transaction layer and dispatcher, on a fake
clock, with a stand-in media engine: the SIP side of answering, ending,
cancelling, holding, DTMF and the applications' safety net.
"""

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from callcenter.sip.calls import Calls
from callcenter.sip.channel import CallEnded
from callcenter.sip.dispatch import RequestDispatcher
from callcenter.sip.message import Request, make_response
from callcenter.sip.sdp import SessionDescription
from callcenter.sip.transaction import Timers, TransactionLayer, new_branch
from callcenter.telephony.apps import APPLICATIONS

PHONE = ("192.0.2.10", 5062)

OFFER = (
    "v=0\r\no=phone 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
)


class FakeSession:
    """
    Stands in for a MediaSession (callcenter.media.session): records what
    the call layer asks of the media, lets the test fire media events.
    """

    def __init__(self, port):
        self.local_port = port
        self.remote = None
        self.held = None
        self.echoing = False
        self.closed = False
        self.plays = []
        self.dtmf_received = None
        self.inactive = None

    def set_remote(self, address, port, codec):
        self.remote = (address, port, codec.encoding)

    def hold(self, on):
        self.held = on

    def echo(self):
        self.echoing = True

    def play(self, frames):
        d = defer.Deferred()
        self.plays.append((frames, d))
        return d

    def stop_playing(self):
        for _, d in self.plays:
            if not d.called:
                d.callback(False)

    def close(self):
        self.closed = True
        self.stop_playing()


class FakeEngine:
    def __init__(self):
        self.sessions = []

    def open_session(self):
        session = FakeSession(30000 + 2 * len(self.sessions))
        self.sessions.append(session)
        return session


class Wire:
    def __init__(self):
        self.sent = []

    def __call__(self, message, destination, reliable):
        self.sent.append(message)

    def take(self):
        sent, self.sent = self.sent, []
        return sent


class Destination:
    reliable = False
    address = PHONE

    def local(self):
        return "UDP", "127.0.0.1", 5060

    def __repr__(self):
        return "udp:192.0.2.10:5062"


class Registrar:
    def register(self, transaction, request, source):
        raise AssertionError("no REGISTER in these tests")


class Phone:
    """The calling side, building requests of one call."""

    def __init__(self, number, body=OFFER, call_id="call-1@phone"):
        self.number, self.body, self.call_id = number, body, call_id
        self.cseq = 1
        self.invite = None
        self.to_tag = None

    def _request(self, method, cseq, branch=None, to_tag=None, body=b"", content_type=None, extra=()):
        request = Request(method, f"sip:{self.number}@127.0.0.1")
        request.headers.add("Via", f"SIP/2.0/UDP 192.0.2.10:5062;branch={branch or new_branch()};rport")
        request.headers.add("Max-Forwards", "70")
        request.headers.add("From", '"Zhang Wei" <sip:13800138001@192.0.2.10>;tag=caller')
        request.headers.add("To", f"<sip:{self.number}@127.0.0.1>" + (f";tag={to_tag}" if to_tag else ""))
        request.headers.add("Call-ID", self.call_id)
        request.headers.add("CSeq", f"{cseq} {method}")
        request.headers.add("Contact", "<sip:13800138001@192.0.2.10:5062>")
        for name, value in extra:
            request.headers.add(name, value)
        if body:
            request.headers.add("Content-Type", content_type or "application/sdp")
            request.body = body if isinstance(body, bytes) else body.encode()
        return request

    def make_invite(self, extra=()):
        self.invite = self._request("INVITE", 1, body=self.body, extra=extra)
        return self.invite

    def ack(self):
        return self._request("ACK", 1, to_tag=self.to_tag)

    def cancel(self):
        return self._request("CANCEL", 1, branch=self.invite.vias[0].branch)

    def in_dialog(self, method, body=b"", content_type=None, cseq=None, extra=()):
        self.cseq = cseq if cseq is not None else self.cseq + 1
        return self._request(
            method, self.cseq, to_tag=self.to_tag, body=body, content_type=content_type, extra=extra
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
def applications():
    return dict(APPLICATIONS)


@pytest.fixture
def switch(clock, wire, engine, applications):
    layer = TransactionLayer(clock, wire, None, Timers())
    routes = {"9196": "echo", "9197": "tone", "9300": "wait", "9301": "broken", "9302": "digits"}

    def route(request, source, caller):
        application = applications.get(routes.get(request.sip_uri.user))
        if application is None:
            return make_response(request, 404, "Not Found", to_tag="nf")
        return application, caller

    calls = Calls(layer, clock, engine, "127.0.0.1", route, lambda d: d.local())
    trusted = {"203.0.113.1"}
    layer.user = RequestDispatcher(Registrar(), calls, lambda host: host in trusted)
    return layer, calls


def send(switch, request, source=None):
    layer, _ = switch
    destination = Destination()
    if source is not None:
        destination.address = source
    layer.request_received(request, destination, False)


def statuses(messages):
    return [getattr(m, "status", m.method if hasattr(m, "method") else None) for m in messages]


def answered_call(switch, wire, number="9196"):
    phone = Phone(number)
    send(switch, phone.make_invite())
    sent = wire.take()
    [ok] = [m for m in sent if getattr(m, "status", None) == 200]
    phone.to_tag = ok.to_addr.tag
    send(switch, phone.ack())
    return phone, ok


def test_a_call_to_an_unknown_number_is_not_found(switch, wire):
    send(switch, Phone("0000").make_invite())
    assert statuses(wire.take()) == [100, 404]


def test_the_echo_test_answers_with_an_sdp_answer_and_echoes_after_the_ack(switch, wire, engine):
    phone = Phone("9196")
    send(switch, phone.make_invite())
    sent = wire.take()
    assert statuses(sent) == [100, 200]
    ok = sent[1]
    answer = SessionDescription.parse(ok.body)
    [audio] = answer.media
    assert (audio.port, audio.formats) == (30000, ["0", "101"])
    assert ok.headers.get("Content-Type") == "application/sdp"
    assert ok.headers.get("Contact") == "<sip:callcenter@127.0.0.1:5060>"
    [session] = engine.sessions
    assert session.remote == ("192.0.2.10", 40000, "PCMU")
    assert not session.echoing  # not before the ACK
    phone.to_tag = ok.to_addr.tag
    send(switch, phone.ack())
    assert session.echoing


def test_the_caller_hangs_up(switch, wire, engine):
    layer, calls = switch
    phone, _ = answered_call(switch, wire)
    send(switch, phone.in_dialog("BYE"))
    assert statuses(wire.take()) == [200]
    assert engine.sessions[0].closed
    assert len(calls) == 0


def test_no_common_codec_is_488_and_the_media_port_is_released(switch, wire, engine):
    g729_only = OFFER.replace("RTP/AVP 0 8 101", "RTP/AVP 18").replace("a=rtpmap:101", "a=x-unused:101")
    send(switch, Phone("9196", body=g729_only).make_invite())
    sent = wire.take()
    assert statuses(sent) == [100, 488]
    assert sent[1].headers.get("Warning").startswith("305 callcenter")
    assert engine.sessions[0].closed


ANSWER = (
    "v=0\r\no=phone 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
)


def late_offer_call(switch, wire):
    """An INVITE without SDP: our offer comes in the 200."""
    phone = Phone("9196", body="")
    send(switch, phone.make_invite())
    sent = wire.take()
    assert statuses(sent) == [100, 200]
    phone.to_tag = sent[1].to_addr.tag
    return phone, SessionDescription.parse(sent[1].body)


def test_a_late_offer_is_answered_in_the_ack(switch, wire, engine):
    phone, offer = late_offer_call(switch, wire)
    [audio] = offer.media
    assert audio.formats == ["0", "8", "101"]  # PCMU, PCMA, telephone-event
    session = engine.sessions[0]
    assert session.remote is None  # nothing is sent before the answer
    ack = phone.ack()
    ack.headers.add("Content-Type", "application/sdp")
    ack.body = ANSWER.encode()
    send(switch, ack)
    assert session.remote == ("192.0.2.10", 40000, "PCMA")
    assert session.echoing


def test_an_ack_without_the_answer_to_a_late_offer_ends_the_call(switch, wire, engine):
    phone, _ = late_offer_call(switch, wire)
    send(switch, phone.ack())
    [bye] = wire.take()
    assert bye.method == "BYE"
    assert engine.sessions[0].closed


def test_cancel_before_the_answer(switch, wire, engine, applications):
    applications["wait"] = lambda channel: channel.ended
    phone = Phone("9300")
    send(switch, phone.make_invite())
    wire.take()
    send(switch, phone.cancel())
    sent = wire.take()
    assert sorted((m.status, m.cseq[1]) for m in sent) == [(200, "CANCEL"), (487, "INVITE")]
    assert engine.sessions[0].closed


def test_a_200_never_acked_is_ended_with_a_bye(switch, wire, engine, clock):
    phone = Phone("9196")
    send(switch, phone.make_invite())
    wire.take()
    clock.advance(32.1)
    byes = [m for m in wire.take() if getattr(m, "method", None) == "BYE"]
    assert len(byes) == 1
    assert engine.sessions[0].closed


def test_our_bye_is_addressed_within_the_dialog(switch, wire, engine, applications):
    finish = defer.Deferred()

    @defer.inlineCallbacks
    def answer_then_finish(channel):
        yield channel.answer()
        yield finish

    applications["wait"] = answer_then_finish
    phone, ok = answered_call(switch, wire, "9300")
    finish.callback(None)
    [bye] = wire.take()
    assert bye.method == "BYE"
    assert bye.uri == "sip:13800138001@192.0.2.10:5062"  # the caller's Contact
    assert bye.from_addr.tag == ok.to_addr.tag
    assert bye.to_addr.tag == "caller"
    assert bye.cseq == (1, "BYE")
    assert bye.call_id == phone.call_id
    assert engine.sessions[0].closed


def test_hold_and_resume_by_reinvite(switch, wire, engine):
    phone, _ = answered_call(switch, wire)
    session = engine.sessions[0]
    send(switch, phone.in_dialog("INVITE", body=OFFER + "a=sendonly\r\n"))
    sent = wire.take()
    ok = [m for m in sent if getattr(m, "status", None) == 200][0]
    answer = SessionDescription.parse(ok.body)
    assert answer.media[0].direction == "recvonly"
    assert session.held is True
    phone.to_tag = ok.to_addr.tag
    send(switch, phone.in_dialog("INVITE", body=OFFER.replace("o=phone 1 1", "o=phone 1 3")))
    ok = [m for m in wire.take() if getattr(m, "status", None) == 200][0]
    assert SessionDescription.parse(ok.body).media[0].direction in (None, "sendrecv")
    assert session.held is False


def test_dtmf_by_sip_info_and_rtp_is_collected_once_per_key(switch, wire, engine, applications, clock):
    collected = []

    @defer.inlineCallbacks
    def collect(channel):
        yield channel.answer()
        digits = yield channel.collect_digits(4, first_timeout=5, inter_digit_timeout=3)
        collected.append(digits)

    applications["digits"] = collect
    phone, _ = answered_call(switch, wire, "9302")
    session = engine.sessions[0]
    send(switch, phone.in_dialog("INFO", body="Signal=5\r\nDuration=160\r\n", content_type="application/dtmf-relay"))
    session.dtmf_received("5")  # the same key press arriving by RTP too
    clock.advance(0.5)
    session.dtmf_received("1")
    send(switch, phone.in_dialog("INFO", body="8", content_type="application/dtmf"))
    session.dtmf_received("#")
    assert collected == ["518"]


@pytest.mark.parametrize("interruptible", [True, False])
def test_a_key_stops_an_interruptible_prompt_and_is_kept(switch, wire, engine, applications, clock, interruptible):
    outcomes = []

    @defer.inlineCallbacks
    def menu(channel):
        yield channel.answer()
        outcomes.append((yield channel.play([b"frame"] * 50, interruptible=interruptible)))
        outcomes.append((yield channel.collect_digits(1, first_timeout=5, inter_digit_timeout=3)))

    applications["digits"] = menu
    answered_call(switch, wire, "9302")
    session = engine.sessions[0]
    session.dtmf_received("2")
    if interruptible:
        assert outcomes == [False, "2"]
    else:
        assert outcomes == []
        session.plays[-1][1].callback(True)  # played to the end
        assert outcomes == [True, "2"]


def test_keys_typed_ahead_skip_an_interruptible_prompt(switch, wire, engine, applications, clock):
    outcomes = []
    typed = defer.Deferred()

    @defer.inlineCallbacks
    def menu(channel):
        yield channel.answer()
        yield typed  # the caller types before the prompt starts
        outcomes.append((yield channel.play([b"frame"] * 50, interruptible=True)))
        outcomes.append(len(engine.sessions[0].plays))
        outcomes.append((yield channel.collect_digits(2, first_timeout=5, inter_digit_timeout=3)))

    applications["digits"] = menu
    answered_call(switch, wire, "9302")
    engine.sessions[0].dtmf_received("4")
    engine.sessions[0].dtmf_received("2")
    typed.callback(None)
    assert outcomes == [False, 0, "42"]


def test_a_key_after_an_interruptible_prompt_stops_nothing_else(switch, wire, engine, applications, clock):
    outcomes = []

    @defer.inlineCallbacks
    def prompts(channel):
        yield channel.answer()
        first = channel.play([b"frame"], interruptible=True)
        engine.sessions[0].plays[-1][1].callback(True)
        outcomes.append((yield first))
        outcomes.append((yield channel.play([b"frame"] * 50)))

    applications["digits"] = prompts
    answered_call(switch, wire, "9302")
    engine.sessions[0].dtmf_received("5")
    assert outcomes == [True]
    engine.sessions[0].plays[-1][1].callback(True)
    assert outcomes == [True, True]


def test_a_key_answering_a_menu_does_not_cut_the_prompt_it_starts(switch, wire, engine, applications, clock):
    """5 in a navigation menu replays the bulletin at once: that play is the answer, not the prompt to cut."""
    outcomes = []

    @defer.inlineCallbacks
    def menu(channel):
        yield channel.answer()
        first = channel.play([b"frame"], interruptible=True)
        engine.sessions[0].plays[-1][1].callback(True)
        yield first
        key = yield channel.collect_digits(1, first_timeout=5, inter_digit_timeout=3)
        outcomes.append(key)
        outcomes.append((yield channel.play([b"bulletin"] * 50, interruptible=True)))

    applications["digits"] = menu
    answered_call(switch, wire, "9302")
    engine.sessions[0].dtmf_received("5")
    assert outcomes == ["5"]
    engine.sessions[0].plays[-1][1].callback(True)
    assert outcomes == ["5", True]


def test_collecting_digits_times_out(switch, wire, engine, applications, clock):
    collected = []

    @defer.inlineCallbacks
    def collect(channel):
        yield channel.answer()
        collected.append((yield channel.collect_digits(6, first_timeout=5, inter_digit_timeout=3)))
        collected.append((yield channel.collect_digits(6, first_timeout=5, inter_digit_timeout=3)))

    applications["digits"] = collect
    answered_call(switch, wire, "9302")
    session = engine.sessions[0]
    clock.advance(5.1)  # nothing typed
    session.dtmf_received("9")
    clock.advance(2.9)
    session.dtmf_received("8")
    clock.advance(3.1)  # the caller stopped typing
    assert collected == ["", "98"]


def test_an_application_that_fails_still_ends_the_call(switch, wire, engine, applications):
    def broken(channel):
        raise RuntimeError("bug")

    applications["broken"] = broken
    send(switch, Phone("9301").make_invite())
    sent = wire.take()
    assert statuses(sent) == [100, 500]
    assert engine.sessions[0].closed


def test_a_call_without_rtp_is_hung_up(switch, wire, engine):
    answered_call(switch, wire)
    engine.sessions[0].inactive()
    assert [m.method for m in wire.take()] == ["BYE"]


def test_caller_id_comes_from_p_asserted_identity_only_from_trusted_sources(switch, wire, applications):
    seen = []

    def note(channel):
        seen.append(channel.caller)
        return channel.ended

    applications["wait"] = note
    identity = ("P-Asserted-Identity", "<sip:13900000000@carrier>")
    send(switch, Phone("9300", call_id="a").make_invite(extra=[identity]), source=("198.51.100.9", 5060))
    send(switch, Phone("9300", call_id="b").make_invite(extra=[identity]), source=("203.0.113.1", 5060))
    assert [(c.number, c.asserted) for c in seen] == [("13800138001", False), ("13900000000", True)]
    assert seen[0].display_name == "Zhang Wei"


def test_requests_for_an_unknown_dialog_get_481(switch, wire):
    phone = Phone("9196")
    phone.to_tag = "nonexistent"
    send(switch, phone.in_dialog("BYE"))
    assert statuses(wire.take()) == [481]


def test_an_out_of_order_request_in_a_call_gets_500(switch, wire):
    phone, _ = answered_call(switch, wire)
    send(switch, phone.in_dialog("INFO", body="1", content_type="application/dtmf", cseq=5))
    send(switch, phone.in_dialog("BYE", cseq=3))
    assert statuses(wire.take()) == [200, 500]


def test_hanging_up_before_the_ack_waits_for_it_to_send_the_bye(switch, wire, engine, applications):
    """RFC 3261 §15: no BYE on a dialog until our 2xx is ACKed."""

    def answer_and_hang_up(channel):
        # Hanging up fails the wait for the ACK with CallEnded: expected here.
        channel.answer().addErrback(lambda failure: failure.trap(CallEnded))
        channel.hangup()

    applications["wait"] = answer_and_hang_up
    phone = Phone("9300")
    send(switch, phone.make_invite())
    sent = wire.take()
    assert statuses(sent) == [100, 200]
    assert engine.sessions[0].closed
    phone.to_tag = sent[1].to_addr.tag
    send(switch, phone.ack())
    [bye] = wire.take()
    assert bye.method == "BYE"


def test_a_call_ended_while_waiting_for_the_ack_releases_the_application(switch, wire, engine, applications, clock):
    outcome = []

    @defer.inlineCallbacks
    def answer(channel):
        try:
            yield channel.answer()
        except Exception as e:
            outcome.append(type(e).__name__)

    applications["wait"] = answer
    send(switch, Phone("9300").make_invite())
    wire.take()
    engine.sessions[0].inactive()  # the media died before any ACK
    assert outcome == ["CallEnded"]
    clock.advance(32.1)  # the ACK never comes: the pending BYE goes out
    assert [m.method for m in wire.take() if hasattr(m, "method")] == ["BYE"]


def refer(phone, target="<sip:9197@127.0.0.1>"):
    return phone.in_dialog("REFER", extra=[("Refer-To", target), ("Referred-By", "<sip:13800138001@192.0.2.10>")])


def test_a_refer_outside_a_bridge_is_declined(switch, wire):
    phone, _ = answered_call(switch, wire)
    send(switch, refer(phone))
    assert statuses(wire.take()) == [603]


def test_a_refer_without_a_number_is_a_bad_request(switch, wire):
    phone, _ = answered_call(switch, wire)
    send(switch, refer(phone, "<sip:127.0.0.1>"))
    assert statuses(wire.take()) == [400]


def test_a_refer_in_a_bridge_is_accepted_and_its_progress_notified(switch, wire):
    phone, _ = answered_call(switch, wire)
    _, calls = switch
    [call] = calls._by_dialog.values()
    asked = []
    call.on_refer = lambda number, progress: asked.append((number, progress))
    send(switch, refer(phone))
    accepted, trying = wire.take()
    assert accepted.status == 202
    # RFC 3515 §2.4.4: the implicit subscription's first NOTIFY.
    assert trying.method == "NOTIFY"
    assert trying.headers.get("Event") == f"refer;id={phone.cseq}"
    assert trying.headers.get("Subscription-State") == "active;expires=60"
    assert trying.headers.get("Content-Type") == "message/sipfrag;version=2.0"
    assert trying.body == b"SIP/2.0 100 Trying\r\n"
    [(number, progress)] = asked
    assert number == "9197"
    progress.report(200, "OK")
    [done] = [m for m in wire.take() if getattr(m, "method", None) == "NOTIFY"]
    assert done.headers.get("Subscription-State") == "terminated;reason=noresource"
    assert done.body == b"SIP/2.0 200 OK\r\n"
    assert done.cseq[0] == trying.cseq[0] + 1
    progress.report(486, "Busy Here")  # after the final one: nothing more
    assert [m for m in wire.take() if getattr(m, "method", None) == "NOTIFY"] == []


def test_both_kinds_of_call_leg_are_channels():
    from zope.interface.verify import verifyClass

    from callcenter.interfaces import IChannel
    from callcenter.sip.calls import InboundCall
    from callcenter.sip.outbound import OutboundCall

    assert verifyClass(IChannel, InboundCall)
    assert verifyClass(IChannel, OutboundCall)


class PromptTailSession(FakeSession):
    """A media worker's session (callcenter.media.remote_session): its last prompt sounds C{tail()} more seconds."""

    in_worker = True
    lost = None

    def __init__(self, port, clock):
        super().__init__(port)
        self.clock = clock
        self.sounding_until = 0.0

    def tail(self):
        return max(0.0, self.sounding_until - self.clock.seconds())


def goodbye_from_a_worker(switch, wire, engine, applications, clock):
    """
    A call to 9300 whose application, once C{finish} fires, hangs up with
    its last prompt still sounding for 60 ms; (phone, session, finish).
    """
    engine.open_session = lambda: engine.sessions.append(PromptTailSession(30000, clock)) or engine.sessions[-1]
    finish = defer.Deferred()

    @defer.inlineCallbacks
    def goodbye_then_hang_up(channel):
        yield channel.answer()
        yield finish
        channel.hangup()

    applications["wait"] = goodbye_then_hang_up
    phone, _ = answered_call(switch, wire, "9300")
    session = engine.sessions[0]
    session.sounding_until = clock.seconds() + 0.06
    return phone, session, finish


def test_a_hang_up_right_after_a_prompt_from_a_worker_waits_for_its_last_frames(switch, wire, engine, applications, clock):
    """
    A worker reports a prompt done 60 ms early (so the next one follows
    without a gap): the BYE waits for those frames.
    """
    _, session, finish = goodbye_from_a_worker(switch, wire, engine, applications, clock)
    finish.callback(None)
    assert wire.take() == [] and not session.closed
    clock.advance(0.04)
    assert wire.take() == []
    clock.advance(0.02)
    [bye] = wire.take()
    assert bye.method == "BYE" and session.closed


def test_the_caller_hanging_up_while_the_last_frames_go_out_ends_the_call_once(switch, wire, engine, applications, clock):
    phone, session, finish = goodbye_from_a_worker(switch, wire, engine, applications, clock)
    finish.callback(None)
    send(switch, phone.in_dialog("BYE"))
    assert statuses(wire.take()) == [200]
    assert session.closed
    clock.advance(0.06)
    assert wire.take() == []
    _, calls = switch
    assert len(calls) == 0


def test_hanging_up_every_call_at_shutdown_fires_once_each_bye_has_gone(switch, wire, engine, applications, clock):
    """The service stops its listeners after this fires: a BYE waiting for a prompt's last frames still goes."""
    _, calls = switch
    goodbye_from_a_worker(switch, wire, engine, applications, clock)
    ended = calls.hangup_all("shutdown")
    assert wire.take() == [] and not ended.called
    clock.advance(0.06)
    assert statuses(wire.take()) == ["BYE"]
    assert ended.called and len(calls) == 0


def test_hanging_up_no_calls_fires_at_once(switch):
    _, calls = switch
    assert calls.hangup_all("shutdown").called
