"""The [telephony] settings that are more than a scalar: routes and carrier trunks."""

import pytest

from callcenter.config import Mismatch
from callcenter.plugins.telephony import RouteTable, TrunkList

TRUNK = {
    "name": "carrier",
    "registrar": "sip.carrier.example:5080",
    "username": "0755123456",
    "password_env": "TEST_CARRIER_PASSWORD",
    "prefix": "0",
    "strip": 1,
}


def test_a_trunk_takes_its_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("TEST_CARRIER_PASSWORD", "s3cret")
    [trunk] = TrunkList().parse([TRUNK])
    assert (trunk.registrar, trunk.port, trunk.domain) == ("sip.carrier.example", 5080, "sip.carrier.example")
    assert (trunk.username, trunk.password, trunk.prefix, trunk.strip, trunk.expires) == (
        "0755123456", "s3cret", "0", 1, 3600,
    )


def test_a_trunk_without_its_password_set_is_a_config_error(monkeypatch):
    monkeypatch.delenv("TEST_CARRIER_PASSWORD", raising=False)
    with pytest.raises(Mismatch, match="environment variable TEST_CARRIER_PASSWORD is not set"):
        TrunkList().parse([TRUNK])


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"password": "in the file"}, "unknown key password"),
        ({"prefix": "9x"}, "is not dialable digits"),
        ({"strip": 2}, "strip must be 0 to the prefix's length"),
        ({"expires": 10}, "expires must be 60-86400 seconds"),
    ],
)
def test_trunk_mistakes_are_named(monkeypatch, change, problem):
    monkeypatch.setenv("TEST_CARRIER_PASSWORD", "s3cret")
    with pytest.raises(Mismatch, match=problem):
        TrunkList().parse([{**TRUNK, **change}])


def test_a_registrar_without_a_port_uses_5060(monkeypatch):
    monkeypatch.setenv("TEST_CARRIER_PASSWORD", "s3cret")
    [trunk] = TrunkList().parse([{**TRUNK, "registrar": "198.51.100.7"}])
    assert (trunk.registrar, trunk.port) == ("198.51.100.7", 5060)


def test_routes_know_the_conference_target():
    assert RouteTable().parse({"9300": "conference", "9196": "echo"}) == (("9196", "echo"), ("9300", "conference"))
    with pytest.raises(Mismatch, match="unknown target"):
        RouteTable().parse({"9301": "party"})


def test_routes_reach_ivr_flows_by_name():
    assert RouteTable().parse({"9500": "ivr:trading"}) == (("9500", "ivr:trading"),)
    for target in ("ivr:", "ivr:Trading", "ivr:../x", "ivr trading"):
        with pytest.raises(Mismatch, match="unknown target"):
            RouteTable().parse({"9500": target})


class _Channel:
    """Just what ivr_application touches of an IChannel."""

    def __init__(self):
        from twisted.logger import Logger

        self.log = Logger()
        self.hung_up = []

    def hangup(self, reason="normal"):
        self.hung_up.append(reason)


def test_an_ivr_route_without_the_ivr_subsystem_refuses_the_call_as_unavailable():
    from callcenter.context import Components
    from callcenter.telephony.apps import ivr_application

    channel = _Channel()
    assert ivr_application("trading", Components())(channel) is None
    assert channel.hung_up == ["unavailable"]


def test_an_ivr_route_runs_the_flow_the_ivr_offers_when_the_call_comes():
    from zope.interface import implementer

    from callcenter.context import Components
    from callcenter.interfaces import IFlows
    from callcenter.telephony.apps import ivr_application

    ran = []

    @implementer(IFlows)
    class Flows:
        def get(self, name):
            return {"trading": ran.append}.get(name)

        def names(self):
            return ["trading"]

    components = Components()
    application = ivr_application("trading", components)
    components.provide(IFlows, Flows())  # offered after the route was built
    channel = _Channel()
    application(channel)
    assert ran == [channel] and channel.hung_up == []
    unknown = _Channel()
    ivr_application("quotes", components)(unknown)
    assert unknown.hung_up == ["unavailable"]
