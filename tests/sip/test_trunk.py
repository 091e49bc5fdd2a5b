"""
Registering with a carrier (RFC 3261 §10.2 as a client) on a fake clock:
digest answers, refresh timing, backoff with jitter (RFC 5626 §4.5), 423
Interval Too Brief, unregistering on stop, and dialling out.
"""

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from callcenter.passwords import sip_ha1
from callcenter.sip.calls import Calls
from callcenter.sip.digest import digest_response, parse_auth_params
from callcenter.sip.message import make_response
from callcenter.sip.transaction import TransactionLayer
from callcenter.sip.trunk import Trunk, TrunkUnavailable, backoff_delay, refresh_delay
from test_calls import Destination, FakeEngine, Wire

CHALLENGE = ("WWW-Authenticate", 'Digest realm="carrier.example", nonce="n1", qop="auth", algorithm=MD5')


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def wire():
    return Wire()


@pytest.fixture
def calls(clock, wire):
    layer = TransactionLayer(clock, wire, None)
    return Calls(layer, clock, FakeEngine(), "127.0.0.1", lambda number: None, lambda d: d.local())


def make_trunk(calls, destination_for=None, **options):
    settings = dict(
        registrar_host="192.0.2.50",
        username="4008001234",
        password="s3cret",
        domain="carrier.example",
        expires=600,
        uniform=lambda low, high: high,
    )
    settings.update(options)
    return Trunk(calls, destination_for or (lambda transport, host, port: Destination()), **settings)


class Registrar:
    """The carrier's registrar, answering the REGISTERs on the wire."""

    def __init__(self, calls, wire):
        self.layer = calls.layer
        self.wire = wire

    def request(self):
        [request] = [m for m in self.wire.take() if getattr(m, "method", None) == "REGISTER"]
        self.last = request
        return request

    def respond(self, status, extra=()):
        response = make_response(self.last, status, to_tag="reg")
        for name, value in extra:
            response.headers.add(name, value)
        self.layer.response_received(response, Destination())


def test_refresh_comes_at_half_the_expiry_or_a_margin_before_it():
    assert refresh_delay(3600, 30) == 1800
    assert refresh_delay(50, 30) == 20
    assert refresh_delay(20, 30) == 10


def test_backoff_doubles_up_to_the_cap_with_jitter_between_half_and_all():
    def bounds(failures):
        return (
            backoff_delay(failures, 30, 1800, lambda low, high: low),
            backoff_delay(failures, 30, 1800, lambda low, high: high),
        )

    assert [bounds(n) for n in (1, 2, 3, 6, 7, 20)] == [
        (30, 60), (60, 120), (120, 240), (900, 1800), (900, 1800), (900, 1800),
    ]


def test_register_answers_the_challenge_and_is_registered(calls, wire, clock):
    trunk = make_trunk(calls)
    trunk.startService()
    registrar = Registrar(calls, wire)
    first = registrar.request()
    assert first.uri == "sip:carrier.example"
    assert first.headers.get("To") == "<sip:4008001234@carrier.example>"
    assert first.headers.get("Contact") == "<sip:4008001234@127.0.0.1:5060>"
    assert first.headers.get("Expires") == "600"
    assert "Authorization" not in first.headers
    registrar.respond(401, [CHALLENGE])
    second = registrar.request()
    assert second.call_id == first.call_id
    assert second.cseq == (first.cseq[0] + 1, "REGISTER")
    _, params = parse_auth_params(second.headers.get("Authorization"))
    ha1 = sip_ha1("4008001234", "carrier.example", "s3cret")
    assert params["response"] == digest_response(
        "MD5", ha1, "n1", "REGISTER", "sip:carrier.example", "auth", params["nc"], params["cnonce"]
    )
    registrar.respond(200, [("Contact", "<sip:4008001234@127.0.0.1:5060>;expires=300")])
    assert trunk.state == "registered"
    assert trunk.status()["registered_until"] == "1970-01-01T00:05:00+00:00"
    assert trunk.check_health().state == "ok"


def test_the_granted_expiry_sets_the_refresh(calls, wire, clock):
    trunk = make_trunk(calls)
    trunk.startService()
    registrar = Registrar(calls, wire)
    registrar.request()
    registrar.respond(200, [("Contact", "<sip:4008001234@127.0.0.1:5060;alias=x>;expires=120")])
    first = registrar.last
    clock.advance(59)  # refresh at min(120/2, 120-30) = 60 s
    assert [m for m in wire.take() if getattr(m, "method", None) == "REGISTER"] == []
    clock.advance(1)
    refresh = registrar.request()
    assert refresh.call_id == first.call_id
    assert refresh.cseq[0] == first.cseq[0] + 1
    registrar.respond(200, [("Expires", "3600")])  # no Contact echoed: the Expires header
    clock.advance(1799)
    assert [m for m in wire.take() if getattr(m, "method", None) == "REGISTER"] == []
    clock.advance(2)
    registrar.request()


def test_refreshes_reuse_the_last_challenge(calls, wire, clock):
    trunk = make_trunk(calls)
    trunk.startService()
    registrar = Registrar(calls, wire)
    registrar.request()
    registrar.respond(401, [CHALLENGE])
    registrar.request()
    registrar.respond(200, [("Expires", "600")])
    clock.advance(300)
    refresh = registrar.request()
    _, params = parse_auth_params(refresh.headers.get("Authorization"))
    assert (params["nonce"], params["nc"]) == ("n1", "00000002")


def test_a_wrong_password_fails_and_retries_with_growing_backoff(calls, wire, clock):
    draws = []

    def uniform(low, high):
        draws.append((low, high))
        return high

    trunk = make_trunk(calls, password="wrong", uniform=uniform)
    trunk.startService()
    registrar = Registrar(calls, wire)
    delays = []
    for attempt in range(3):
        registrar.request()
        registrar.respond(401, [CHALLENGE])
        registrar.request()
        registrar.respond(401, [CHALLENGE])
        assert trunk.state == "failing"
        started = clock.seconds()
        while not any(getattr(m, "method", None) == "REGISTER" for m in wire.sent):
            clock.advance(1)
        delays.append(clock.seconds() - started)
    assert delays == [60, 120, 240]
    assert draws == [(0.5, 1.0)] * 3
    status = trunk.status()
    assert (status["state"], status["last_status"], status["failing_since"]) == (
        "failing", 401, "1970-01-01T00:00:00+00:00",
    )
    assert trunk.check_health().state == "failing"


def test_a_timeout_is_a_failure_and_success_resets_the_backoff(calls, wire, clock):
    trunk = make_trunk(calls, uniform=lambda low, high: low)
    trunk.startService()
    registrar = Registrar(calls, wire)
    registrar.request()
    clock.advance(32)  # Timer F
    assert (trunk.state, trunk.last_status) == ("failing", 408)
    wire.take()  # the retransmissions
    clock.advance(30)
    registrar.request()
    registrar.respond(200)
    assert (trunk.state, trunk.failures, trunk.failing_since) == ("registered", 0, None)


def test_interval_too_brief_asks_again_for_min_expires(calls, wire, clock):
    trunk = make_trunk(calls, expires=60)
    trunk.startService()
    registrar = Registrar(calls, wire)
    registrar.request()
    registrar.respond(423, [("Min-Expires", "1800")])
    again = registrar.request()
    assert again.headers.get("Expires") == "1800"
    registrar.respond(423, [("Min-Expires", "1800")])  # still too brief: give up for now
    assert (trunk.state, trunk.last_status) == ("failing", 423)


def test_stop_unregisters_and_waits_a_bounded_time(calls, wire, clock):
    trunk = make_trunk(calls)
    trunk.startService()
    registrar = Registrar(calls, wire)
    registrar.request()
    registrar.respond(200)
    stopped = trunk.stopService()
    goodbye = registrar.request()
    assert goodbye.headers.get("Expires") == "0"
    assert goodbye.headers.get("Contact") == "<sip:4008001234@127.0.0.1:5060>"
    assert not stopped.called
    registrar.respond(200)
    assert stopped.called
    assert trunk.state == "stopped"
    assert trunk.registered_until is None


def test_stop_does_not_wait_for_a_registrar_that_is_gone(calls, wire, clock):
    trunk = make_trunk(calls, stop_timeout=5)
    trunk.startService()
    registrar = Registrar(calls, wire)
    registrar.request()
    registrar.respond(200)
    stopped = trunk.stopService()
    clock.advance(5)
    assert stopped.called
    assert trunk.state == "stopped"


def test_stop_without_a_registration_sends_nothing(calls, wire, clock):
    trunk = make_trunk(calls)
    trunk.startService()
    wire.take()
    assert trunk.stopService() is None
    assert trunk.state == "stopped"


def test_an_unreachable_registrar_is_a_failure(calls, wire, clock):
    def unresolvable(transport, host, port):
        return defer.fail(OSError("no such host"))

    trunk = make_trunk(calls, destination_for=unresolvable)
    trunk.startService()
    assert trunk.state == "failing"
    assert "no such host" in trunk.last_reason
    with pytest.raises(TrunkUnavailable):
        trunk.dial("13900000000", calls._media.open_session())


def test_dial_goes_through_the_trunk_with_its_credentials(calls, wire, clock):
    trunk = make_trunk(calls)
    trunk.startService()
    registrar = Registrar(calls, wire)
    registrar.request()
    registrar.respond(200)
    call = trunk.dial("13900000000", calls._media.open_session(), caller_number="02161234567")
    [invite] = [m for m in wire.take() if getattr(m, "method", None) == "INVITE"]
    assert invite.uri == "sip:13900000000@carrier.example"
    assert str(invite.from_addr.uri) == "sip:02161234567@carrier.example"
    response = make_response(invite, 407, to_tag="x")
    response.headers.add("Proxy-Authenticate", 'Digest realm="carrier.example", nonce="n9"')
    calls.layer.response_received(response, Destination())
    [retry] = [m for m in wire.take() if getattr(m, "method", None) == "INVITE"]
    _, params = parse_auth_params(retry.headers.get("Proxy-Authorization"))
    assert params["username"] == "4008001234"
    assert call.state == "calling"


def test_the_password_is_never_logged(calls, wire, clock):
    from twisted.logger import globalLogPublisher

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        trunk = make_trunk(calls, password="wrong-pass-xyz")
        trunk.startService()
        registrar = Registrar(calls, wire)
        for _ in range(2):
            registrar.request()
            registrar.respond(401, [CHALLENGE])
        trunk.stopService()
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert events
    assert not any("wrong-pass-xyz" in repr(event) for event in events)
