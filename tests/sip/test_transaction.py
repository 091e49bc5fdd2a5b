"""
The transaction layer's state machines on a fake clock: retransmission
schedules, timeouts, absorption of retransmissions, CANCEL and ACK handling
(RFC 3261 §17, RFC 6026).
"""

import pytest
from twisted.internet.task import Clock

from callcenter.sip.message import Request, make_response, parse_message
from callcenter.sip.transaction import (
    ClientOwner,
    ServerUser,
    Timers,
    TransactionLayer,
    new_branch,
)

PEER = ("127.0.0.1", 5070)


def request(method="INVITE", branch=None, cseq=1, to_tag=None, call_id="call-1@test"):
    message = Request(method, "sip:1001@127.0.0.1")
    message.headers.add("Via", f"SIP/2.0/UDP 127.0.0.1:5070;branch={branch or new_branch()}")
    message.headers.add("Max-Forwards", "70")
    message.headers.add("From", "<sip:2001@127.0.0.1>;tag=from-1")
    message.headers.add("To", "<sip:1001@127.0.0.1>" + (f";tag={to_tag}" if to_tag else ""))
    message.headers.add("Call-ID", call_id)
    message.headers.add("CSeq", f"{cseq} {method}")
    return message


def same_transaction(original, method=None):
    """A message of the same transaction (a retransmission, its ACK or CANCEL)."""
    branch = original.vias[0].branch
    return request(method or original.method, branch=branch, cseq=original.cseq[0])


class Wire:
    """Records what the layer sends: (message, destination, reliable)."""

    def __init__(self):
        self.sent = []

    def __call__(self, message, destination, reliable):
        if isinstance(message, bytes):
            # What a completed transaction keeps and sends again: its bytes.
            message = parse_message(message)
        self.sent.append(message)

    def take(self):
        sent, self.sent = self.sent, []
        return sent


class Recorder(ServerUser, ClientOwner):
    def __init__(self):
        self.events = []

    def request_received(self, transaction, request):
        self.events.append(("request", request.method))
        self.transaction = transaction

    def ack_received(self, request, source):
        self.events.append(("ack", request.cseq[0]))

    def cancel_received(self, invite_transaction, cancel):
        self.events.append(("cancel", invite_transaction.request.method))

    def stray_response(self, response, source):
        self.events.append(("stray", response.status))

    def response_received(self, transaction, response):
        self.events.append(("response", response.status))

    def transaction_timed_out(self, transaction):
        self.events.append(("timeout", transaction.request.method))


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def wire():
    return Wire()


@pytest.fixture
def user():
    return Recorder()


@pytest.fixture
def layer(clock, wire, user):
    return TransactionLayer(clock, wire, user, Timers())


def advance_to(clock, when):
    clock.advance(when - clock.seconds())


def send_times(clock, wire, until):
    """
    The times at which something was sent up to C{until}, running the clock
    from one timer to the next.
    """
    times = []
    while True:
        due = [call.getTime() for call in clock.getDelayedCalls()]
        if not due or min(due) > until:
            advance_to(clock, max(until, clock.seconds()))
            return times
        advance_to(clock, min(due))
        if wire.take():
            times.append(round(clock.seconds(), 3))


# Client INVITE (Figure 5)


def test_client_invite_over_udp_retransmits_on_timer_a_then_times_out_on_timer_b(layer, clock, wire, user):
    layer.send_request(request(), PEER, False, user)
    assert len(wire.take()) == 1
    # Timer A: T1, doubling (0.5, 1, 2, 4, 8, 16 s after each send) until Timer B at 64*T1.
    assert send_times(clock, wire, 32.0) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    advance_to(clock, 32.05)
    assert user.events == [("timeout", "INVITE")]
    assert len(layer) == 0


def test_client_invite_over_tcp_never_retransmits(layer, clock, wire, user):
    layer.send_request(request(), PEER, True, user)
    wire.take()
    assert send_times(clock, wire, 31.9) == []
    advance_to(clock, 32.05)
    assert user.events == [("timeout", "INVITE")]


def test_a_provisional_response_stops_retransmission_and_the_timeout(layer, clock, wire, user):
    invite = request()
    layer.send_request(invite, PEER, False, user)
    wire.take()
    layer.response_received(make_response(invite, 180), PEER)
    assert send_times(clock, wire, 100) == []
    assert user.events == [("response", 180)]


def test_a_failure_response_is_acked_with_the_invites_branch_and_the_ack_repeated(layer, clock, wire, user):
    invite = request()
    layer.send_request(invite, PEER, False, user)
    wire.take()
    busy = make_response(invite, 486, to_tag="callee-1")
    layer.response_received(busy, PEER)
    [ack] = wire.take()
    assert ack.method == "ACK"
    assert ack.vias[0].branch == invite.vias[0].branch  # §17.1.1.3: same transaction
    assert ack.cseq == (1, "ACK")
    assert ack.to_addr.tag == "callee-1"
    assert ack.uri == invite.uri
    # The 486 was retransmitted (our ACK was lost): ACK again, report once.
    layer.response_received(busy, PEER)
    assert [m.method for m in wire.take()] == ["ACK"]
    assert user.events == [("response", 486)]
    # Timer D (32 s on UDP) then the transaction is gone.
    clock.advance(31.9)
    assert len(layer) == 1
    clock.advance(0.2)
    assert len(layer) == 0


def test_2xx_retransmissions_reach_the_owner_until_timer_m(layer, clock, wire, user):
    invite = request()
    layer.send_request(invite, PEER, False, user)
    ok = make_response(invite, 200, to_tag="callee-1")
    layer.response_received(ok, PEER)
    layer.response_received(ok, PEER)
    assert user.events == [("response", 200), ("response", 200)]
    assert not [m for m in wire.take() if m.method == "ACK"]  # the TU ACKs a 2xx (§13.2.2.4)
    clock.advance(32.1)
    layer.response_received(ok, PEER)
    assert user.events[-1] == ("stray", 200)


# Client non-INVITE (Figure 6)


def test_client_non_invite_retransmits_doubling_up_to_t2_then_times_out(layer, clock, wire, user):
    layer.send_request(request("OPTIONS"), PEER, False, user)
    wire.take()
    # Timer E: 0.5, 1, 2, 4, 4, 4 ... after each send; Timer F at 32 s.
    assert send_times(clock, wire, 16.0) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
    advance_to(clock, 32.05)
    assert user.events == [("timeout", "OPTIONS")]


def test_client_non_invite_after_a_provisional_retransmits_every_t2(layer, clock, wire, user):
    options = request("OPTIONS")
    layer.send_request(options, PEER, False, user)
    wire.take()
    clock.advance(0.1)
    layer.response_received(make_response(options, 100), PEER)
    assert send_times(clock, wire, 13.0) == [0.5, 4.5, 8.5, 12.5]


def test_client_non_invite_final_response_then_timer_k(layer, clock, wire, user):
    options = request("OPTIONS")
    layer.send_request(options, PEER, False, user)
    ok = make_response(options, 200)
    layer.response_received(ok, PEER)
    layer.response_received(ok, PEER)  # absorbed in Completed
    assert user.events == [("response", 200)]
    clock.advance(4.9)
    assert len(layer) == 1
    clock.advance(0.2)
    assert len(layer) == 0


def test_a_response_matching_no_transaction_is_stray(layer, user):
    layer.response_received(make_response(request(), 200), PEER)
    assert user.events == [("stray", 200)]


def test_a_response_to_the_invite_does_not_match_the_cancel_sharing_its_branch(layer, user, wire):
    invite = request()
    layer.send_request(invite, PEER, False, user)
    cancel = same_transaction(invite, "CANCEL")
    layer.send_request(cancel, PEER, False, user)
    layer.response_received(make_response(cancel, 200), PEER)
    layer.response_received(make_response(invite, 487, to_tag="t"), PEER)
    assert user.events == [("response", 200), ("response", 487)]
    assert len(layer) == 2  # INVITE in Completed (Timer D), CANCEL in Completed (Timer K)


# Server non-INVITE (Figure 8)


def test_server_non_invite_answers_retransmissions_with_the_last_response(layer, clock, wire, user):
    register = request("REGISTER")
    layer.request_received(register, PEER, False)
    assert user.events == [("request", "REGISTER")]
    layer.request_received(same_transaction(register), PEER, False)
    assert wire.take() == []  # Trying: nothing to repeat yet
    user.transaction.respond(401)
    [challenge] = wire.take()
    layer.request_received(same_transaction(register), PEER, False)
    assert [m.status for m in wire.take()] == [401]
    assert user.events == [("request", "REGISTER")]  # the TU saw it once
    clock.advance(32.1)  # Timer J
    assert len(layer) == 0


def test_server_non_invite_over_tcp_ends_at_once(layer, wire, user):
    layer.request_received(request("OPTIONS"), PEER, True)
    user.transaction.respond(200)
    assert len(layer) == 0


def test_a_second_final_response_is_not_sent(layer, wire, user):
    layer.request_received(request("OPTIONS"), PEER, False)
    user.transaction.respond(200)
    user.transaction.respond(500)
    assert [m.status for m in wire.take()] == [200]


def test_every_final_response_gets_a_to_tag_however_it_was_built(layer, wire, user):
    # RFC 3261 §8.2.6.2: a TU that builds the response itself and forgets.
    options = request("OPTIONS")
    layer.request_received(options, PEER, False)
    user.transaction.respond(make_response(options, 200))
    [response] = wire.take()
    assert response.to_addr.tag
    tagged = request("OPTIONS", call_id="call-2@test")
    layer.request_received(tagged, PEER, False)
    user.transaction.respond(make_response(tagged, 405, to_tag="mine"))
    assert wire.take()[0].to_addr.tag == "mine"


# Server INVITE (Figure 7)


def test_server_invite_says_trying_at_once_and_repeats_it_on_retransmission(layer, wire, user):
    invite = request()
    layer.request_received(invite, PEER, False)
    assert [m.status for m in wire.take()] == [100]
    user.transaction.respond(180, to_tag="us")
    assert [m.status for m in wire.take()] == [180]
    layer.request_received(same_transaction(invite), PEER, False)
    assert [m.status for m in wire.take()] == [180]
    assert user.events == [("request", "INVITE")]


def test_server_invite_failure_is_retransmitted_on_timer_g_until_acked(layer, clock, wire, user):
    invite = request()
    layer.request_received(invite, PEER, False)
    wire.take()
    user.transaction.respond(486, to_tag="us")
    wire.take()
    # Timer G: T1 doubling, capped at T2.
    assert send_times(clock, wire, 12.0) == [0.5, 1.5, 3.5, 7.5, 11.5]
    layer.request_received(same_transaction(invite, "ACK"), PEER, False)
    assert send_times(clock, wire, 20.0) == []
    assert user.events == [("request", "INVITE")]  # that ACK is the transaction's, not the TU's
    clock.advance(5.1)  # Timer I
    assert len(layer) == 0


def test_server_invite_failure_never_acked_times_out_on_timer_h(layer, clock, wire, user):
    layer.request_received(request(), PEER, False)
    user.transaction.respond(603, to_tag="us")
    clock.advance(31.9)
    assert ("timeout", "INVITE") not in user.events
    clock.advance(0.2)
    assert user.events[-1] == ("timeout", "INVITE")
    assert len(layer) == 0


def test_server_2xx_is_retransmitted_until_the_end_to_end_ack(layer, clock, wire, user):
    invite = request()
    layer.request_received(invite, PEER, False)
    wire.take()
    user.transaction.respond(200, to_tag="us")
    wire.take()
    assert send_times(clock, wire, 4.0) == [0.5, 1.5, 3.5]
    # The ACK for a 2xx has a branch of its own (§17.1.1.3 does not apply).
    ack = request("ACK", cseq=1, to_tag="us")
    layer.request_received(ack, PEER, False)
    assert user.events == [("request", "INVITE"), ("ack", 1)]
    assert send_times(clock, wire, 20.0) == []
    # RFC 6026: retransmitted INVITEs are still absorbed, not new calls.
    layer.request_received(same_transaction(invite), PEER, False)
    assert wire.take() == [] and user.events.count(("request", "INVITE")) == 1
    clock.advance(32.1)  # Timer L
    assert len(layer) == 0


def test_a_2xx_never_acked_is_reported_so_the_call_can_be_ended(layer, clock, user):
    layer.request_received(request(), PEER, False)
    user.transaction.respond(200, to_tag="us")
    clock.advance(32.1)
    assert user.events[-1] == ("timeout", "INVITE")


def test_cancel_of_a_pending_invite_is_answered_and_reported(layer, wire, user):
    invite = request()
    layer.request_received(invite, PEER, False)
    invite_transaction = user.transaction
    wire.take()
    layer.request_received(same_transaction(invite, "CANCEL"), PEER, False)
    [ok] = wire.take()
    assert (ok.status, ok.cseq) == (200, (1, "CANCEL"))
    assert user.events == [("request", "INVITE"), ("cancel", "INVITE")]
    invite_transaction.respond(487, to_tag="us")
    assert [m.status for m in wire.take()] == [487]


def test_cancel_matching_nothing_gets_481(layer, wire, user):
    layer.request_received(request("CANCEL"), PEER, False)
    assert [m.status for m in wire.take()] == [481]
    assert user.events == []


def test_cancel_after_the_final_response_gets_481(layer, wire, user):
    invite = request()
    layer.request_received(invite, PEER, False)
    user.transaction.respond(486, to_tag="us")
    wire.take()
    layer.request_received(same_transaction(invite, "CANCEL"), PEER, False)
    assert [m.status for m in wire.take()] == [481]


def test_requests_without_the_magic_cookie_are_matched_the_rfc_2543_way(layer, wire, user):
    old = request("OPTIONS", branch="1234")
    layer.request_received(old, PEER, False)
    user.transaction.respond(200)
    wire.take()
    layer.request_received(request("OPTIONS", branch="1234"), PEER, False)
    assert [m.status for m in wire.take()] == [200]
    assert user.events == [("request", "OPTIONS")]


def test_terminated_transactions_leave_nothing_behind(layer, clock, user):
    for i in range(200):
        layer.request_received(request("OPTIONS"), PEER, False)
        user.transaction.respond(200)
        layer.send_request(request("OPTIONS"), PEER, False, user)
    clock.advance(64.0)
    assert len(layer) == 0
    assert clock.getDelayedCalls() == []
