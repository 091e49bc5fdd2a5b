"""
Loading and validating ``callcenter.toml``.

The file has one table per subsystem plus ``[storage]``, ``[log]`` and
``[server]``.  Each table's accepted keys are the fields of a frozen dataclass
declared with L{setting}; everything is checked before anything starts, every
problem is collected, and each is reported as one line::

    etc/callcenter.toml: [storage] pool_size: expected an integer from 0 to 64, found "many"

A subsystem runs when its table is present, unless the table says
``enabled = false``.
"""

import dataclasses
import ipaddress
import json
import math
import os
import re
import socket
import tomllib
from dataclasses import dataclass
import typing
from typing import Any, Mapping

from twisted.python.failure import Failure

from callcenter.errors import ConfigError

REQUIRED = dataclasses.MISSING

CORE_TABLES = ("storage", "log", "server")


class Mismatch(Exception):
    """A value does not fit its kind; the message says why (may be empty)."""


def show(value):
    """Render a value the way it looks in TOML, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array" if value else "an empty array"
    if isinstance(value, HostPort):
        return show(str(value))
    if isinstance(value, tuple):
        # Only defaults are tuples (TOML gives lists): show them as written.
        return "[" + ", ".join(show(str(item)) for item in value) + "]"
    return str(value)


def _range_text(noun, minimum, maximum):
    if minimum is not None and maximum is not None:
        return f"{noun} from {minimum} to {maximum}"
    if minimum is not None:
        return f"{noun} of at least {minimum}"
    if maximum is not None:
        return f"{noun} of at most {maximum}"
    return noun


def _check_range(value, minimum, maximum):
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise Mismatch("out of range")


def _reason(exception):
    text = str(exception) or type(exception).__name__
    return " ".join(text.split())


class Kind:
    """What a setting may hold.  Subclasses set C{expected} and C{parse}."""

    expected = "a value"

    def parse(self, value):
        return value

    def probe(self, value, reactor):
        """
        Check that the running system can use C{value} (e.g. that a port is
        free).  Raise L{Mismatch} with the reason if not.  Most kinds have
        nothing to probe.
        """


class Text(Kind):
    def __init__(self, nonempty=True, max_length=None):
        self.nonempty = nonempty
        self.max_length = max_length
        self.expected = "a non-empty string" if nonempty else "a string"
        if max_length is not None:
            self.expected += f" of at most {max_length} characters"

    def parse(self, value):
        if not isinstance(value, str) or (self.nonempty and not value.strip()):
            raise Mismatch()
        if self.max_length is not None and len(value) > self.max_length:
            raise Mismatch("too long")
        return value


class Integer(Kind):
    def __init__(self, minimum=None, maximum=None):
        self.minimum, self.maximum = minimum, maximum
        self.expected = _range_text("an integer", minimum, maximum)

    def parse(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise Mismatch()
        _check_range(value, self.minimum, self.maximum)
        return value


class Number(Kind):
    def __init__(self, minimum=None, maximum=None):
        self.minimum, self.maximum = minimum, maximum
        self.expected = _range_text("a number", minimum, maximum)

    def parse(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Mismatch()
        if not math.isfinite(value):
            raise Mismatch()
        _check_range(value, self.minimum, self.maximum)
        return float(value)


class Flag(Kind):
    expected = "true or false"

    def parse(self, value):
        if not isinstance(value, bool):
            raise Mismatch()
        return value


class OneOf(Kind):
    def __init__(self, *choices):
        self.choices = choices
        self.expected = "one of " + ", ".join(show(c) for c in choices)

    def parse(self, value):
        if value not in self.choices:
            raise Mismatch()
        return value


class ServerEndpoint(Kind):
    """
    A Twisted server endpoint string (``tcp:8080:interface=127.0.0.1``,
    ``unix:/run/callcenter.sock``, ``ssl:443:privateKey=...``).
    """

    def __init__(self, example, optional=False):
        self.optional = optional
        self.expected = f"a Twisted server endpoint such as {show(example)}" + (
            ', or "" for none' if optional else ""
        )

    def parse(self, value):
        if not isinstance(value, str):
            raise Mismatch()
        if self.optional and value == "":
            return value
        from twisted.internet import reactor
        from twisted.internet.endpoints import serverFromString

        try:
            serverFromString(reactor, value)
        except Exception as e:
            raise Mismatch(_reason(e))
        return value

    def probe(self, value, reactor):
        from twisted.internet.endpoints import serverFromString
        from twisted.internet.protocol import Factory

        if not value:
            return
        outcome = []
        serverFromString(reactor, value).listen(Factory()).addBoth(outcome.append)
        if not outcome:
            # Not a synchronous endpoint: nothing to learn without a running reactor.
            return
        if isinstance(outcome[0], Failure):
            raise Mismatch(f"cannot listen: {_reason(outcome[0].value)}")
        outcome[0].stopListening()
        if not reactor.running:
            # A port closes on the reactor's next turn; check-config runs with
            # no reactor running, so take that turn now and free the port.
            reactor.iterate(0)


class HostPort(typing.NamedTuple):
    host: str
    port: int

    def __str__(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class DatagramAddress(Kind):
    """``host:port`` for a UDP listener; the host must be a literal IP."""

    def __init__(self, example):
        self.expected = f'"host:port" with an IP address, such as {show(example)}'

    def parse(self, value):
        if not isinstance(value, str) or ":" not in value:
            raise Mismatch()
        host, _, port = value.rpartition(":")
        host = host.strip("[]")
        try:
            ipaddress.ip_address(host)
            port = int(port)
        except ValueError:
            raise Mismatch()
        if not 0 <= port <= 65535:
            raise Mismatch("port out of range")
        return HostPort(host, port)

    def probe(self, value, reactor):
        host, port = value
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            try:
                s.bind((host, port))
            except OSError as e:
                raise Mismatch(f"cannot listen: {e.strerror or e}")


class IPAddress(Kind):
    expected = 'an IP address such as "192.0.2.10"'

    def parse(self, value):
        try:
            return str(ipaddress.ip_address(value))
        except (TypeError, ValueError):
            raise Mismatch()


class NetworkList(Kind):
    """An array of IP networks ("203.0.113.0/24", "2001:db8::/32", "192.0.2.7")."""

    expected = 'an array of IP networks such as ["203.0.113.0/24"]'

    def parse(self, value):
        if not isinstance(value, (list, tuple)):
            raise Mismatch()
        networks = []
        for item in value:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except (TypeError, ValueError):
                raise Mismatch(f"not a network: {show(item)}")
        return tuple(networks)


class Secret:
    """A secret read from the environment: its variable's name is shown, never its value."""

    __slots__ = ("variable", "value")

    def __init__(self, variable, value):
        self.variable = variable
        self.value = value

    def __repr__(self):
        return f"Secret(${self.variable})"

    def __eq__(self, other):
        return isinstance(other, Secret) and (self.variable, self.value) == (other.variable, other.value)

    def __hash__(self):
        return hash(self.variable)


class EnvironmentSecret(Kind):
    """
    The name of an environment variable holding a secret (a password, a
    shared key): secrets stay out of configuration files and the
    repository.  The variable must be set when the configuration is read.
    """

    expected = "the name of an environment variable holding the secret"

    def __init__(self, optional=False, environ=None, max_length=None):
        self.optional = optional
        self._environ = environ
        self._max_length = max_length
        if optional:
            self.expected += ', or "" for none'

    def parse(self, value):
        if not isinstance(value, str) or (not value and not self.optional):
            raise Mismatch()
        if not value:
            return None
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise Mismatch("not a variable name")
        environ = os.environ if self._environ is None else self._environ
        secret = environ.get(value)
        if not secret:
            raise Mismatch(f"environment variable {value} is not set")
        if self._max_length is not None and len(secret) > self._max_length:
            raise Mismatch(f"the secret in {value} is longer than the {self._max_length} characters the protocol allows")
        return Secret(value, secret)


class Section(Kind):
    """A table of its own settings (a dataclass of L{setting}s), e.g. [notify.sms]; every problem reported."""

    def __init__(self, schema):
        self.schema = schema
        names = ", ".join(f.name for f in dataclasses.fields(schema))
        self.expected = f"a table of {names}"

    def parse(self, value):
        if not isinstance(value, dict):
            raise Mismatch()
        problems = []
        parsed = _parse_table("", "", value, self.schema, problems)
        if problems:
            raise Mismatch("; ".join(line.split("] ", 1)[-1].replace('[""] accepts', "accepts") for line in problems))
        return parsed


def setting(kind, default=REQUIRED, help="", shown=None):
    """
    Declare one key of a config table as a dataclass field.

    @param kind: a L{Kind} saying what the key may hold.
    @param default: its value when the key is absent; required if omitted.
    @param help: one sentence for the configuration reference.
    @param shown: how the reference shows the default, when C{show} cannot
        tell (e.g. an empty table held as an empty tuple).
    """
    return dataclasses.field(default=default, metadata={"kind": kind, "help": help, "shown": shown})


@dataclass(frozen=True)
class StorageConfig:
    url: str = setting(
        Text(),
        "sqlite:///var/callcenter.sqlite",
        "Database URL: sqlite:///relative/path, sqlite:////absolute/path or "
        "postgresql://user@host:port/dbname (password from PGPASSWORD or "
        "~/.pgpass, never in this file).",
    )
    pool_size: int = setting(
        Integer(0, 64),
        0,
        "Threads running database work; 0 picks 1 for SQLite (one writer) and "
        "8 for PostgreSQL.",
    )
    busy_timeout: float = setting(
        Number(0.1, 600),
        10.0,
        "Seconds a statement waits for a lock before failing.",
    )


@dataclass(frozen=True)
class LogConfig:
    format: str = setting(
        OneOf("text", "json"), "text", "Text for people; json for one JSON object per line."
    )
    level: str = setting(
        OneOf("debug", "info", "warn", "error", "critical"), "info", "Least severe level logged."
    )
    file: str = setting(
        Text(),
        "-",
        "Where logs go: - is standard output, else a file (rotated at 10 MB, ten "
        "kept, mode 0640); twistd --logfile overrides.",
    )


@dataclass(frozen=True)
class ServerConfig:
    node: str = setting(
        Text(nonempty=False),
        "",
        "This node's name in health reports, logs and metrics; empty means the host name.",
    )
    shutdown_timeout: float = setting(
        Number(0, 3600),
        10.0,
        "Seconds SIGTERM gives subsystems to finish their work, then as long again "
        "for database transactions in flight, before closing regardless.",
    )


CORE_SCHEMAS = {"storage": StorageConfig, "log": LogConfig, "server": ServerConfig}


@dataclass(frozen=True)
class CallcenterConfig:
    """A validated configuration file."""

    path: str
    storage: StorageConfig
    log: LogConfig
    server: ServerConfig
    # Enabled subsystems only: name -> instance of its config_schema.
    subsystems: Mapping[str, Any]

    def where(self, table, key=None):
        """The prefix of an error line about C{table}/C{key} of this file."""
        return where(self.path, table, key)


def where(path, table, key=None):
    return f"{path}: [{_name(table)}]" + (f" {_name(key)}" if key else "")


def _name(key):
    """A table or key name as TOML writes it: quoted unless it is a bare key."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def load_config(path, subsystems):
    """
    Read and validate a configuration file.

    @param path: the TOML file.
    @param subsystems: the known subsystem plugins, name -> L{ISubsystem}.
    @raise ConfigError: listing every problem found.
    @rtype: L{CallcenterConfig}
    """
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror or e}"])
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: invalid TOML: {e}"])
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: invalid TOML: not UTF-8 ({e.reason})"])
    return parse_config(path, document, subsystems)


def parse_config(path, document, subsystems):
    problems = []
    known = sorted(set(CORE_TABLES) | set(subsystems))
    for table in sorted(set(document) - set(known)):
        problems.append(f"{where(path, table)}: unknown table; known tables: {', '.join(known)}")

    core = {}
    for table, schema in CORE_SCHEMAS.items():
        core[table] = _parse_table(path, table, document.get(table, {}), schema, problems)

    enabled = {}
    for name in sorted(subsystems):
        if name not in document:
            continue
        values = document[name]
        if isinstance(values, dict):
            values = dict(values)
            switch = values.pop("enabled", True)
            if not isinstance(switch, bool):
                problems.append(
                    f"{where(path, name, 'enabled')}: expected true or false, found {show(switch)}"
                )
            elif not switch:
                continue
        section = _parse_table(
            path, name, values, subsystems[name].config_schema, problems, also_accepted=("enabled",)
        )
        if section is not None:
            enabled[name] = section

    if problems:
        raise ConfigError(problems)
    return CallcenterConfig(path=path, subsystems=enabled, **core)


def _parse_table(path, table, values, schema, problems, also_accepted=()):
    if not isinstance(values, dict):
        problems.append(f"{where(path, table)}: expected a table, found {show(values)}")
        return None
    fields = {f.name: f for f in dataclasses.fields(schema)}
    parsed = {}
    before = len(problems)
    for key in sorted(set(values) - set(fields)):
        accepted = ", ".join(sorted([*fields, *also_accepted])) or "no keys"
        problems.append(f"{where(path, table, key)}: unknown key; {where(path, table)[len(path) + 2:]} accepts: {accepted}")
    for name, field in fields.items():
        kind = field.metadata["kind"]
        if name not in values:
            if field.default is REQUIRED and field.default_factory is REQUIRED:
                problems.append(f"{where(path, table, name)}: required: {kind.expected}")
            continue
        try:
            parsed[name] = kind.parse(values[name])
        except Mismatch as e:
            problems.append(_mismatch_line(where(path, table, name), kind, values[name], e))
    if len(problems) > before:
        return None
    return schema(**parsed)


def probe_listeners(config, reactor):
    """
    Try every listening address the configuration names, releasing each at
    once: what C{check-config} does so a taken port is found before start.

    @return: problem lines (empty when all is well).
    """
    problems = []
    sections = [("storage", config.storage), ("log", config.log), ("server", config.server)]
    sections += sorted(config.subsystems.items())
    for table, section in sections:
        for field in dataclasses.fields(section):
            value = getattr(section, field.name)
            try:
                field.metadata["kind"].probe(value, reactor)
            except Mismatch as e:
                problems.append(f"{config.where(table, field.name)}: {e} ({_raw(value)})")
    return problems


def _raw(value):
    if isinstance(value, tuple):
        host, port = value
        return f"{host}:{port}"
    return value


def _mismatch_line(prefix, kind, value, mismatch):
    reason = f" ({mismatch})" if str(mismatch) else ""
    return f"{prefix}: expected {kind.expected}, found {show(value)}{reason}"




def reference(subsystems):
    """
    The configuration reference, in reStructuredText, made from the schemas
    themselves (README.rst carries it; a test keeps the two in step).
    """
    tables = [(name, CORE_SCHEMAS[name], None) for name in CORE_TABLES]
    tables += [(name, plugin.config_schema, plugin.description) for name, plugin in sorted(subsystems.items())]
    out = []
    for table, schema, description in tables:
        title = f"``[{table}]``"
        out += [title, "~" * len(title), ""]
        if description:
            out += [f"{description[0].upper()}{description[1:]}.", ""]
        if table not in CORE_TABLES:
            out += ["``enabled``", "    true or false, default ``true``.  The subsystem runs when its table is present, unless this is false.", ""]
        for field in dataclasses.fields(schema):
            kind = field.metadata["kind"]
            if field.default is REQUIRED:
                default = "required"
            else:
                default = f"default ``{field.metadata.get('shown') or show(field.default)}``"
            out += [f"``{field.name}``", f"    {kind.expected}, {default}.  {field.metadata['help']}", ""]
    return "\n".join(out)
