"""
NAS clients from the configuration (ClientList) and by source address
(RadiusClients): secrets from the environment, every problem reported at
once, the most specific prefix winning.
"""

import ipaddress

import pytest
from zope.interface.verify import verifyObject

from callcenter.config import Mismatch
from callcenter.radius.clients import ClientList, RadiusClient, RadiusClients
from callcenter.radius.interfaces import IRadiusClients

ENVIRON = {"RADIUS_SECRET_BRAS1": "s3cret-bras-1", "RADIUS_SECRET_SZ": "s3cret-sz"}


def parse(value, environ=ENVIRON):
    return ClientList(environ).parse(value)


def test_clients_with_defaults_and_overrides():
    one, shenzhen = parse([
        {"name": "bras-1", "address": "192.0.2.10", "secret_env": "RADIUS_SECRET_BRAS1"},
        {
            "name": "shenzhen",
            "address": "198.51.100.0/24",
            "secret_env": "RADIUS_SECRET_SZ",
            "require_message_authenticator": False,
            "rate": 500,
            "burst": 50,
            "coa_port": 1700,
        },
    ])
    assert one == RadiusClient("bras-1", ipaddress.ip_network("192.0.2.10/32"), b"s3cret-bras-1")
    assert one.require_message_authenticator is True and one.coa_port == 3799
    assert (shenzhen.network, shenzhen.secret) == (ipaddress.ip_network("198.51.100.0/24"), b"s3cret-sz")
    assert (shenzhen.require_message_authenticator, shenzhen.rate, shenzhen.burst, shenzhen.coa_port) == (
        False, 500.0, 50, 1700,
    )


def test_the_secret_is_never_in_a_repr():
    [client] = parse([{"name": "bras-1", "address": "192.0.2.10", "secret_env": "RADIUS_SECRET_BRAS1"}])
    assert "s3cret" not in repr(client)


def test_every_problem_is_reported_at_once():
    with pytest.raises(Mismatch) as caught:
        parse([
            {"name": "bras-1", "address": "192.0.2.300", "secret_env": "RADIUS_SECRET_BRAS1", "colour": "red"},
            {"name": "bras-2", "address": "192.0.2.11", "secret_env": "NOT_SET", "rate": 0, "burst": True},
            {"name": "bras-2", "address": "192.0.2.12", "secret_env": "RADIUS_SECRET_SZ", "coa_port": 70000},
            {"address": "192.0.2.13", "require_message_authenticator": "yes"},
            "not a table",
        ])
    message = str(caught.value)
    for expected in [
        "client bras-1: unknown key colour; address \"192.0.2.300\" is not an IP address or prefix",
        "client bras-2: environment variable NOT_SET is not set; rate must be 1-1000000 requests a second; "
        "burst must be an integer from 1 to 10000000",
        "client bras-2: name used twice; coa_port must be a port number",
        "client 4: missing name; missing secret_env; require_message_authenticator must be true or false",
        "client 5 is not a table",
    ]:
        assert expected in message


def test_an_address_given_twice_is_an_error():
    with pytest.raises(Mismatch, match="address 192.0.2.0/24 is also client a's"):
        parse([
            {"name": "a", "address": "192.0.2.0/24", "secret_env": "RADIUS_SECRET_SZ"},
            {"name": "b", "address": "192.0.2.7/24", "secret_env": "RADIUS_SECRET_SZ"},
        ])


def test_not_an_array():
    with pytest.raises(Mismatch):
        parse({"name": "a"})


def test_an_empty_secret_is_not_a_secret():
    with pytest.raises(Mismatch, match="RADIUS_SECRET_BRAS1 is not set"):
        parse([{"name": "a", "address": "192.0.2.1", "secret_env": "RADIUS_SECRET_BRAS1"}], {"RADIUS_SECRET_BRAS1": ""})


def test_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("CALLCENTER_TEST_RADIUS_SECRET", "from-the-environment")
    table = {"name": "a", "address": "192.0.2.1", "secret_env": "CALLCENTER_TEST_RADIUS_SECRET"}
    [client] = ClientList().parse([table])
    assert client.secret == b"from-the-environment"


def clients():
    return RadiusClients([
        RadiusClient("region", ipaddress.ip_network("10.0.0.0/8"), b"a"),
        RadiusClient("city", ipaddress.ip_network("10.20.0.0/16"), b"b"),
        RadiusClient("one", ipaddress.ip_network("10.20.30.40/32"), b"c"),
        RadiusClient("v6", ipaddress.ip_network("2001:db8::/32"), b"d"),
    ])


@pytest.mark.parametrize(
    "address, name",
    [
        ("10.1.2.3", "region"),
        ("10.20.1.1", "city"),
        ("10.20.30.40", "one"),
        ("::ffff:10.20.30.40", "one"),
        ("2001:db8::1", "v6"),
        ("192.0.2.1", None),
        ("not an address", None),
    ],
)
def test_the_longest_prefix_wins(address, name):
    found = clients().client_for(address)
    assert (found.name if found else None) == name


def test_answers_are_cached_and_the_cache_is_bounded():
    table = clients()
    table.CACHE_SIZE = 10
    for n in range(25):
        table.client_for(f"192.0.2.{n}")
    assert len(table._cache) <= 10
    assert table.client_for("10.20.30.40").name == "one"


def test_it_provides_the_interface():
    table = clients()
    assert verifyObject(IRadiusClients, table)
    assert [c.name for c in table.clients] == ["region", "city", "one", "v6"]
    assert table.by_name("city").secret == b"b" and table.by_name("nobody") is None
