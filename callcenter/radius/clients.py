"""
The NASes we answer: each by name, source address or prefix, shared
secret and limits.  The secret is never in the configuration file:
C{secret_env} names the environment variable holding it, as for SIP trunks.
"""

import ipaddress
import os
from dataclasses import dataclass, field

from zope.interface import implementer

from callcenter.config import Kind, Mismatch, show
from callcenter.radius.interfaces import IRadiusClients

DEFAULT_RATE = 2000.0
DEFAULT_BURST = 10000
DYNAMIC_AUTHORIZATION_PORT = 3799  # RFC 5176 §2.3


@dataclass(frozen=True)
class RadiusClient:
    """
    One NAS (or a prefix of them sharing a secret).  C{rate} requests a
    second per listener, bursts up to C{burst}; C{coa_port} is where its
    Disconnect- and CoA-Requests go (RFC 5176).
    """

    name: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    secret: bytes = field(repr=False)
    require_message_authenticator: bool = True
    rate: float = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    coa_port: int = DYNAMIC_AUTHORIZATION_PORT


class ClientList(Kind):
    """
    NAS clients: an array of tables, checked all at once (every problem
    reported, not just the first).
    """

    expected = (
        'an array of tables such as [{name = "bras-1", address = "192.0.2.0/24", '
        'secret_env = "RADIUS_SECRET_BRAS1"}] (optional: require_message_authenticator = true, '
        f"rate = {DEFAULT_RATE:g}, burst = {DEFAULT_BURST}, coa_port = {DYNAMIC_AUTHORIZATION_PORT})"
    )
    keys = {"name", "address", "secret_env", "require_message_authenticator", "rate", "burst", "coa_port"}
    required = {"name", "address", "secret_env"}

    def __init__(self, environ=None):
        # Tests pass their own environment; the server reads the process's.
        self._environ = environ

    def parse(self, value):
        if not isinstance(value, (list, tuple)):
            raise Mismatch()
        environ = os.environ if self._environ is None else self._environ
        clients, problems, names, networks = [], [], set(), {}
        for index, table in enumerate(value):
            label = f"client {index + 1}"
            if not isinstance(table, dict):
                problems.append(f"{label} is not a table")
                continue
            if isinstance(table.get("name"), str) and table["name"]:
                label = f"client {table['name']}"
            found = []
            unknown, missing = set(table) - self.keys, self.required - set(table)
            found += [f"unknown key {k}" for k in sorted(unknown)] + [f"missing {k}" for k in sorted(missing)]
            name = table.get("name")
            if "name" in table and (not isinstance(name, str) or not name.strip()):
                found.append(f"name {show(name)} is not a non-empty string")
            elif name in names:
                found.append("name used twice")
            if isinstance(name, str):
                names.add(name)
            network = None
            if "address" in table:
                try:
                    network = ipaddress.ip_network(table["address"], strict=False)
                except (TypeError, ValueError):
                    found.append(f"address {show(table['address'])} is not an IP address or prefix")
                else:
                    if network in networks:
                        found.append(f"address {network} is also client {networks[network]}'s")
                    else:
                        networks[network] = name
            secret = None
            if "secret_env" in table:
                variable = table["secret_env"]
                if not isinstance(variable, str) or not variable:
                    found.append(f"secret_env {show(variable)} is not a variable name")
                else:
                    secret = environ.get(variable)
                    if not secret:
                        found.append(f"environment variable {variable} is not set")
            require = table.get("require_message_authenticator", True)
            if not isinstance(require, bool):
                found.append("require_message_authenticator must be true or false")
            rate = table.get("rate", DEFAULT_RATE)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 1 <= rate <= 1_000_000:
                found.append("rate must be 1-1000000 requests a second")
            burst = table.get("burst", DEFAULT_BURST)
            if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= 10_000_000:
                found.append("burst must be an integer from 1 to 10000000")
            coa_port = table.get("coa_port", DYNAMIC_AUTHORIZATION_PORT)
            if isinstance(coa_port, bool) or not isinstance(coa_port, int) or not 1 <= coa_port <= 65535:
                found.append("coa_port must be a port number")
            if found:
                problems.append(f"{label}: " + "; ".join(found))
                continue
            clients.append(
                RadiusClient(
                    name, network, secret.encode("utf-8"), require, float(rate), burst, coa_port
                )
            )
        if problems:
            raise Mismatch("; ".join(problems))
        return tuple(clients)


def _plain_address(address):
    """An address as a dual-stack socket may report it, IPv4-mapped IPv6 made IPv4."""
    parsed = ipaddress.ip_address(address)
    if parsed.version == 6 and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


@implementer(IRadiusClients)
class RadiusClients:
    """
    Clients by source address, the most specific prefix winning (a NAS
    of its own inside a prefix shared by others).  Answers are cached per
    address: the lookup is on every packet's path.  The cache is bounded
    (spoofed sources fill it with misses) by starting over when full.
    """

    CACHE_SIZE = 65536

    def __init__(self, clients):
        self.clients = tuple(clients)
        self._by_name = {client.name: client for client in self.clients}
        # Most specific first: the first match is the longest prefix.
        self._ordered = sorted(self.clients, key=lambda c: c.network.prefixlen, reverse=True)
        self._cache = {}

    def client_for(self, address):
        try:
            return self._cache[address]
        except KeyError:
            pass
        try:
            parsed = _plain_address(address)
        except ValueError:
            return None
        found = None
        for client in self._ordered:
            if parsed.version == client.network.version and parsed in client.network:
                found = client
                break
        if len(self._cache) >= self.CACHE_SIZE:
            self._cache.clear()
        self._cache[address] = found
        return found

    def by_name(self, name):
        """The client called C{name}, or None."""
        return self._by_name.get(name)
