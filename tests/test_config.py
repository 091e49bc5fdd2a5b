"""
Loading and validating the configuration file (L{callcenter.config}).
"""

import dataclasses
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import deferLater

from callcenter.config import (
    CallcenterConfig,
    DatagramAddress,
    Flag,
    HostPort,
    Integer,
    LogConfig,
    Mismatch,
    Number,
    OneOf,
    ServerConfig,
    ServerEndpoint,
    StorageConfig,
    Text,
    load_config,
    parse_config,
    probe_listeners,
    setting,
)
from callcenter.errors import ConfigError

ETC = Path(__file__).resolve().parent.parent / "etc"
PATH = "etc/test.toml"
ENDPOINT_EXAMPLE = "tcp:8080:interface=127.0.0.1"
ENDPOINT_EXPECTED = f'a Twisted server endpoint such as "{ENDPOINT_EXAMPLE}"'
DATAGRAM_EXPECTED = '"host:port" with an IP address, such as "127.0.0.1:5060"'


@dataclass(frozen=True)
class FakeConfig:
    name: str = setting(Text(), help="Required: no default.")
    count: int = setting(Integer(1, 10), 5, "An integer from 1 to 10.")
    ratio: float = setting(Number(0, 1), 0.5, "A number from 0 to 1.")
    verbose: bool = setting(Flag(), False, "A flag.")
    mode: str = setting(OneOf("fast", "slow"), "fast", "One of two words.")
    listen: str = setting(ServerEndpoint(ENDPOINT_EXAMPLE), "tcp:0:interface=127.0.0.1", "TCP.")
    media: tuple = setting(DatagramAddress("127.0.0.1:5060"), HostPort("127.0.0.1", 0), "UDP.")


class FakeSubsystem:
    description = "a subsystem for tests"
    config_schema = FakeConfig

    def __init__(self, name="fake"):
        self.name = name

    def makeService(self, config, context):
        raise AssertionError("never started by these tests")


FAKE = {"fake": FakeSubsystem()}


def problems_of(document, subsystems=FAKE, path=PATH):
    with pytest.raises(ConfigError) as caught:
        parse_config(path, document, subsystems)
    return caught.value.problems


def one_problem(document, subsystems=FAKE):
    problems = problems_of(document, subsystems)
    assert len(problems) == 1, problems
    return problems[0]


def fake_table(**values):
    return {"fake": {"name": "n", **values}}


# Defaults and enabling -----------------------------------------------------


def test_empty_document_gives_core_defaults_and_no_subsystems():
    config = parse_config(PATH, {}, FAKE)

    assert isinstance(config, CallcenterConfig)
    assert config.path == PATH
    assert config.storage == StorageConfig()
    assert config.log == LogConfig()
    assert config.server == ServerConfig()
    assert config.subsystems == {}


def test_core_default_values():
    config = parse_config(PATH, {}, {})

    assert config.storage.url == "sqlite:///var/callcenter.sqlite"
    assert config.storage.pool_size == 0
    assert config.storage.busy_timeout == 10.0
    assert (config.log.format, config.log.level, config.log.file) == ("text", "info", "-")
    assert config.server.node == ""  # the host name, see Context.node
    assert config.server.shutdown_timeout == 10.0


def test_core_values_given_override_defaults_and_others_stay_default():
    config = parse_config(
        PATH, {"storage": {"pool_size": 3}, "log": {"format": "json"}, "server": {"node": "n1"}}, {}
    )

    assert config.storage == StorageConfig(pool_size=3)
    assert config.log == LogConfig(format="json")
    assert config.server.node == "n1"
    assert config.server.shutdown_timeout == 10.0


def test_number_setting_given_an_integer_becomes_a_float():
    config = parse_config(PATH, {"storage": {"busy_timeout": 5}}, {})

    assert config.storage.busy_timeout == 5.0
    assert type(config.storage.busy_timeout) is float


def test_subsystem_table_present_enables_it_with_parsed_settings():
    config = parse_config(PATH, fake_table(count=7, media="127.0.0.1:5070"), FAKE)

    assert config.subsystems == {
        "fake": FakeConfig(name="n", count=7, media=("127.0.0.1", 5070))
    }


def test_subsystem_table_absent_is_not_in_subsystems():
    config = parse_config(PATH, {"log": {}}, FAKE)

    assert "fake" not in config.subsystems


def test_subsystem_enabled_true_enables_it_and_enabled_is_not_a_setting():
    config = parse_config(PATH, fake_table(enabled=True), FAKE)

    assert config.subsystems == {"fake": FakeConfig(name="n")}


def test_subsystem_enabled_false_is_not_enabled():
    config = parse_config(PATH, fake_table(enabled=False), FAKE)

    assert config.subsystems == {}


def test_subsystem_enabled_false_leaves_the_document_untouched():
    document = fake_table(enabled=False)

    parse_config(PATH, document, FAKE)

    assert document == {"fake": {"name": "n", "enabled": False}}


def test_subsystem_enabled_must_be_a_boolean():
    assert one_problem(fake_table(enabled="yes")) == (
        f'{PATH}: [fake] enabled: expected true or false, found "yes"'
    )


def test_only_tables_present_are_enabled_among_several_subsystems():
    plugins = {"alpha": FakeSubsystem("alpha"), "beta": FakeSubsystem("beta")}

    config = parse_config(PATH, {"beta": {"name": "b"}}, plugins)

    assert config.subsystems == {"beta": FakeConfig(name="b")}


def test_where_names_the_file_table_and_key():
    config = parse_config(PATH, {}, {})

    assert config.where("web", "listen") == f"{PATH}: [web] listen"
    assert config.where("web") == f"{PATH}: [web]"


# Unknown tables and keys ---------------------------------------------------


def test_unknown_table_lists_the_known_tables():
    assert one_problem({"telephony": {}}) == (
        f"{PATH}: [telephony]: unknown table; known tables: fake, log, server, storage"
    )


def test_unknown_key_lists_the_accepted_keys():
    assert one_problem(fake_table(colour="red")) == (
        f"{PATH}: [fake] colour: unknown key; [fake] accepts: "
        "count, enabled, listen, media, mode, name, ratio, verbose"
    )


def test_unknown_key_in_core_table_lists_its_accepted_keys():
    assert one_problem({"log": {"colour": "red"}}) == (
        f"{PATH}: [log] colour: unknown key; [log] accepts: file, format, level"
    )


def test_core_table_that_is_not_a_table():
    assert one_problem({"log": "json"}) == f'{PATH}: [log]: expected a table, found "json"'


def test_subsystem_table_that_is_not_a_table():
    assert one_problem({"fake": 3}) == f"{PATH}: [fake]: expected a table, found 3"


# Kinds: one line per wrong value -------------------------------------------


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("name", 5, "expected a non-empty string, found 5"),
        ("name", "", 'expected a non-empty string, found ""'),
        ("name", "   ", 'expected a non-empty string, found "   "'),
        ("name", ["a"], "expected a non-empty string, found an array"),
        ("count", "3", 'expected an integer from 1 to 10, found "3"'),
        ("count", 3.0, "expected an integer from 1 to 10, found 3.0"),
        ("count", True, "expected an integer from 1 to 10, found true"),
        ("count", False, "expected an integer from 1 to 10, found false"),
        ("count", 11, "expected an integer from 1 to 10, found 11 (out of range)"),
        ("count", 0, "expected an integer from 1 to 10, found 0 (out of range)"),
        ("ratio", "0.5", 'expected a number from 0 to 1, found "0.5"'),
        ("ratio", True, "expected a number from 0 to 1, found true"),
        ("ratio", 1.5, "expected a number from 0 to 1, found 1.5 (out of range)"),
        ("ratio", -1, "expected a number from 0 to 1, found -1 (out of range)"),
        ("ratio", float("nan"), "expected a number from 0 to 1, found nan"),
        ("ratio", float("inf"), "expected a number from 0 to 1, found inf"),
        ("ratio", float("-inf"), "expected a number from 0 to 1, found -inf"),
        ("verbose", "yes", 'expected true or false, found "yes"'),
        ("verbose", 1, "expected true or false, found 1"),
        ("mode", "medium", 'expected one of "fast", "slow", found "medium"'),
        ("mode", {}, 'expected one of "fast", "slow", found a table'),
        ("mode", [], 'expected one of "fast", "slow", found an empty array'),
        ("listen", 8080, f"expected {ENDPOINT_EXPECTED}, found 8080"),
        ("media", "localhost:5060", f'expected {DATAGRAM_EXPECTED}, found "localhost:5060"'),
        ("media", "nonsense", f'expected {DATAGRAM_EXPECTED}, found "nonsense"'),
        ("media", "127.0.0.1:", f'expected {DATAGRAM_EXPECTED}, found "127.0.0.1:"'),
        ("media", 5060, f"expected {DATAGRAM_EXPECTED}, found 5060"),
        (
            "media",
            "127.0.0.1:99999",
            f'expected {DATAGRAM_EXPECTED}, found "127.0.0.1:99999" (port out of range)',
        ),
    ],
)
def test_wrong_value_is_one_line_saying_expected_and_found(key, value, expected):
    assert one_problem(fake_table(**{key: value})) == f"{PATH}: [fake] {key}: {expected}"


def test_bound_only_below_reads_at_least():
    kind = Integer(1)
    assert kind.expected == "an integer of at least 1"
    with pytest.raises(Mismatch, match="out of range"):
        kind.parse(0)
    assert kind.parse(10**30) == 10**30


def test_bound_only_above_reads_at_most():
    kind = Number(maximum=2)
    assert kind.expected == "a number of at most 2"
    with pytest.raises(Mismatch, match="out of range"):
        kind.parse(2.5)
    assert kind.parse(-1e300) == -1e300


def test_unbounded_kinds_read_plainly():
    assert Integer().expected == "an integer"
    assert Number().expected == "a number"
    assert Text(nonempty=False).expected == "a string"


def test_possibly_empty_text_accepts_empty_string():
    assert Text(nonempty=False).parse("") == ""


@pytest.mark.parametrize(
    "key, value, parsed",
    [
        ("count", 1, 1),
        ("count", 10, 10),
        ("ratio", 0, 0.0),
        ("ratio", 1.0, 1.0),
        ("verbose", True, True),
        ("mode", "slow", "slow"),
        ("listen", "tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.1"),
        ("listen", "unix:/tmp/x.sock", "unix:/tmp/x.sock"),
        ("media", "127.0.0.1:5060", ("127.0.0.1", 5060)),
        ("media", "[::1]:5060", ("::1", 5060)),
        ("media", "0.0.0.0:0", ("0.0.0.0", 0)),
        ("media", "127.0.0.1:65535", ("127.0.0.1", 65535)),
    ],
)
def test_values_within_kind_are_accepted_and_parsed(key, value, parsed):
    config = parse_config(PATH, fake_table(**{key: value}), FAKE)

    assert getattr(config.subsystems["fake"], key) == parsed


@pytest.mark.parametrize("value, mentions", [("tcp:notaport", "notaport"), ("bogus:1", "bogus")])
def test_bad_server_endpoint_gives_the_reason_in_parentheses(value, mentions):
    line = one_problem(fake_table(listen=value))

    match = re.fullmatch(
        re.escape(f'{PATH}: [fake] listen: expected {ENDPOINT_EXPECTED}, found "{value}" (')
        + r"(.+)\)",
        line,
    )
    assert match, line
    assert mentions in match.group(1)


def test_required_setting_missing():
    assert one_problem({"fake": {}}) == f"{PATH}: [fake] name: required: a non-empty string"


@given(
    address=st.ip_addresses(v=4),
    port=st.integers(min_value=0, max_value=65535),
)
def test_datagram_address_parses_any_ipv4_literal_and_port(address, port):
    assert DatagramAddress("127.0.0.1:5060").parse(f"{address}:{port}") == (str(address), port)


@given(
    address=st.ip_addresses(v=6),
    port=st.integers(min_value=0, max_value=65535),
)
def test_datagram_address_parses_any_bracketed_ipv6_literal_and_port(address, port):
    assert DatagramAddress("127.0.0.1:5060").parse(f"[{address}]:{port}") == (str(address), port)


# Collecting every problem --------------------------------------------------

MANY_PROBLEMS = {
    "zzz": {},
    "beta": {"count": 0, "colour": "red", "mode": "x"},
    "alpha": {"enabled": "yes", "name": 1},
    "server": {"nod": "x"},
    "log": {"level": "loud"},
    "storage": {"pool_size": True, "busy_timeout": 0},
    "aaa": 1,
}

MANY_PROBLEM_LINES = [
    f"{PATH}: [aaa]: unknown table; known tables: alpha, beta, log, server, storage",
    f"{PATH}: [zzz]: unknown table; known tables: alpha, beta, log, server, storage",
    f"{PATH}: [storage] pool_size: expected an integer from 0 to 64, found true",
    f"{PATH}: [storage] busy_timeout: expected a number from 0.1 to 600, found 0 (out of range)",
    f'{PATH}: [log] level: expected one of "debug", "info", "warn", "error", "critical", '
    'found "loud"',
    f"{PATH}: [server] nod: unknown key; [server] accepts: node, shutdown_timeout",
    f'{PATH}: [alpha] enabled: expected true or false, found "yes"',
    f"{PATH}: [alpha] name: expected a non-empty string, found 1",
    f"{PATH}: [beta] colour: unknown key; [beta] accepts: "
    "count, enabled, listen, media, mode, name, ratio, verbose",
    f"{PATH}: [beta] name: required: a non-empty string",
    f"{PATH}: [beta] count: expected an integer from 1 to 10, found 0 (out of range)",
    f'{PATH}: [beta] mode: expected one of "fast", "slow", found "x"',
]

TWO_FAKES = {"beta": FakeSubsystem("beta"), "alpha": FakeSubsystem("alpha")}


def test_every_problem_is_collected_in_a_stable_order():
    assert problems_of(MANY_PROBLEMS, TWO_FAKES) == MANY_PROBLEM_LINES


def test_problem_order_does_not_depend_on_the_order_in_the_file():
    reordered = {
        table: dict(reversed(list(values.items()))) if isinstance(values, dict) else values
        for table, values in reversed(list(MANY_PROBLEMS.items()))
    }
    plugins = dict(reversed(list(TWO_FAKES.items())))

    assert problems_of(reordered, plugins) == MANY_PROBLEM_LINES


def test_config_error_message_is_the_problems_one_per_line():
    with pytest.raises(ConfigError) as caught:
        parse_config(PATH, MANY_PROBLEMS, TWO_FAKES)

    assert str(caught.value) == "\n".join(MANY_PROBLEM_LINES)


def test_every_problem_is_a_single_line():
    document = {
        **MANY_PROBLEMS,
        "beta": {"name": "multi\nline", "listen": "tcp:notaport", "media": "bad\nvalue", "mode": "a\nb"},
    }

    problems = problems_of(document, TWO_FAKES)

    assert type(problems) is list
    # 8 from the other tables, then [beta] listen, media and mode.
    assert len(problems) == 11, problems
    for line in problems:
        assert isinstance(line, str)
        assert "\n" not in line and "\r" not in line, line


def test_table_and_key_names_with_newlines_still_give_single_lines():
    # TOML allows any text in a quoted key: ["a\nb"] and "x\ny" = 1.
    problems = problems_of({"a\nb": {}, "log": {"x\ny": 1}})

    assert len(problems) == 2
    for line in problems:
        assert "\n" not in line, line


# Reading the file ----------------------------------------------------------


def test_load_config_reads_and_validates_a_file(tmp_path):
    path = tmp_path / "callcenter.toml"
    path.write_text('[log]\nformat = "json"\n\n[fake]\nname = "中文"\ncount = 2\n', encoding="utf-8")

    config = load_config(str(path), FAKE)

    assert config.path == str(path)
    assert config.log.format == "json"
    assert config.subsystems == {"fake": FakeConfig(name="中文", count=2)}


def test_load_config_reports_validation_problems_with_the_path(tmp_path):
    path = tmp_path / "callcenter.toml"
    path.write_text("[log]\nlevel = 3\n")

    with pytest.raises(ConfigError) as caught:
        load_config(str(path), FAKE)

    assert caught.value.problems == [
        f'{path}: [log] level: expected one of "debug", "info", "warn", "error", "critical", '
        "found 3"
    ]


def test_load_config_missing_file(tmp_path):
    path = tmp_path / "absent.toml"

    with pytest.raises(ConfigError) as caught:
        load_config(str(path), FAKE)

    assert caught.value.problems == [f"{path}: cannot read: No such file or directory"]


def test_load_config_directory_is_unreadable(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(str(tmp_path), FAKE)

    assert caught.value.problems == [f"{tmp_path}: cannot read: Is a directory"]


@pytest.mark.parametrize(
    "text", ["[log\n", "format = \n", "[log]\nformat = 'a'\nformat = 'b'\n", "a = 1\n[a]\n"]
)
def test_load_config_invalid_toml_is_one_line(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text)

    with pytest.raises(ConfigError) as caught:
        load_config(str(path), FAKE)

    [line] = caught.value.problems
    assert line.startswith(f"{path}: invalid TOML: ")
    assert len(line) > len(f"{path}: invalid TOML: ")
    assert "\n" not in line


def test_load_config_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[server]\nnode = "caf\xe9"\n')

    with pytest.raises(ConfigError) as caught:
        load_config(str(path), FAKE)

    [line] = caught.value.problems
    assert line.startswith(f"{path}: invalid TOML: not UTF-8 (")
    assert line.endswith(")")
    assert "\n" not in line


# Probing listeners ---------------------------------------------------------


def _free_tcp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def reactor():
    from twisted.internet import reactor

    return reactor


@pytest.fixture
def taken_tcp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture
def taken_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def test_probe_reports_a_taken_tcp_port(reactor, taken_tcp_port):
    listen = f"tcp:{taken_tcp_port}:interface=127.0.0.1"
    config = parse_config(PATH, fake_table(listen=listen), FAKE)

    [line] = probe_listeners(config, reactor)

    assert line.startswith(f"{PATH}: [fake] listen: cannot listen: ")
    assert line.endswith(f" ({listen})")
    assert str(taken_tcp_port) in line
    assert "\n" not in line


def test_probe_returns_no_problems_when_every_listener_is_free(reactor):
    config = parse_config(
        PATH, fake_table(listen="tcp:0:interface=127.0.0.1", media="127.0.0.1:0"), FAKE
    )

    assert probe_listeners(config, reactor) == []


def test_probe_of_core_tables_only_has_nothing_to_report(reactor):
    assert probe_listeners(parse_config(PATH, {}, FAKE), reactor) == []


def test_probe_releases_a_free_tcp_port_before_returning(tmp_path):
    """
    As check-config runs it: no reactor running, so the probe must close the
    port itself (Twisted closes a port on the reactor's next turn).
    """
    port = _free_tcp_port()
    script = f"""
import socket
from twisted.internet import reactor
from callcenter.config import ServerEndpoint
ServerEndpoint("x").probe("tcp:{port}:interface=127.0.0.1", reactor)
with socket.socket() as s:
    s.bind(("127.0.0.1", {port}))
    s.listen()
print("free")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.stdout == "free\n", result.stderr


@pytest_twisted.inlineCallbacks
def test_probe_on_a_running_reactor_releases_the_port_on_its_next_turn(reactor):
    port = _free_tcp_port()
    config = parse_config(PATH, fake_table(listen=f"tcp:{port}:interface=127.0.0.1"), FAKE)
    assert probe_listeners(config, reactor) == []
    yield deferLater(reactor, 0, lambda: None)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))
        s.listen()


def test_probe_releases_a_free_udp_port_before_returning(reactor):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = parse_config(PATH, fake_table(media=f"127.0.0.1:{port}"), FAKE)

    assert probe_listeners(config, reactor) == []

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))


def test_probe_reports_a_taken_udp_port(reactor, taken_udp_port):
    config = parse_config(PATH, fake_table(media=f"127.0.0.1:{taken_udp_port}"), FAKE)

    [line] = probe_listeners(config, reactor)

    assert line.startswith(f"{PATH}: [fake] media: cannot listen: ")
    assert line.endswith(f" (127.0.0.1:{taken_udp_port})")
    assert "\n" not in line


def test_probe_reports_every_taken_listener_of_every_subsystem(
    reactor, taken_tcp_port, taken_udp_port
):
    listen = f"tcp:{taken_tcp_port}:interface=127.0.0.1"
    document = {
        "beta": {"name": "b", "media": f"127.0.0.1:{taken_udp_port}"},
        "alpha": {"name": "a", "listen": listen},
    }
    config = parse_config(PATH, document, TWO_FAKES)

    problems = probe_listeners(config, reactor)

    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{PATH}: [alpha] listen: cannot listen: ")
    assert problems[1].startswith(f"{PATH}: [beta] media: cannot listen: ")


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_probe_reports_a_taken_ipv6_udp_port(reactor):
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback")
        port = s.getsockname()[1]
        config = parse_config(PATH, fake_table(media=f"[::1]:{port}"), FAKE)

        [line] = probe_listeners(config, reactor)

    assert line.startswith(f"{PATH}: [fake] media: cannot listen: ")
    assert line.endswith(f" (::1:{port})")


# The shipped file ----------------------------------------------------------


@pytest.fixture(scope="module")
def plugins():
    from callcenter.subsystems import discover

    return discover()


@pytest.fixture
def demo_nas_secret(monkeypatch):
    # make run sets it; the file names only the variable.
    monkeypatch.setenv("CALLCENTER_RADIUS_DEMO_SECRET", "demo-nas-secret")


def test_shipped_config_loads_cleanly(plugins, demo_nas_secret):
    config = load_config(str(ETC / "callcenter.toml"), plugins)

    assert "web" in config.subsystems
    assert config.server.node == "demo"
    assert config.storage.url == "sqlite:///var/callcenter.sqlite"


def test_shipped_config_web_listens_on_loopback_only(plugins, demo_nas_secret):
    config = load_config(str(ETC / "callcenter.toml"), plugins)

    listen = config.subsystems["web"].listen
    assert listen.startswith("tcp:")
    assert "interface=127.0.0.1" in listen.split(":")


def test_every_plugin_listener_defaults_to_loopback(plugins):
    assert plugins, "no subsystem plugins found"
    for name, plugin in plugins.items():
        for field in dataclasses.fields(plugin.config_schema):
            kind = field.metadata["kind"]
            if isinstance(kind, ServerEndpoint):
                # An optional listener may be off by default; off is safe too.
                off = kind.optional and field.default == ""
                assert off or "interface=127.0.0.1" in field.default.split(":"), (name, field.name)
            elif isinstance(kind, DatagramAddress):
                assert field.default[0] == "127.0.0.1", (name, field.name)


def test_notify_secrets_come_from_the_environment_within_the_protocols_limits(tmp_path, monkeypatch):
    """SMPP 3.4 allows an 8-character password: a longer one is a configuration error, not a crash at bind."""
    from callcenter.subsystems import discover

    path = tmp_path / "c.toml"
    path.write_text(
        '[notify]\n[notify.sms]\nsmsc = "127.0.0.1:2775"\nsystem_id = "broker"\npassword_env = "TEST_SMPP_SECRET"\n'
    )
    monkeypatch.delenv("TEST_SMPP_SECRET", raising=False)
    with pytest.raises(ConfigError) as unset:
        load_config(str(path), discover())
    assert "environment variable TEST_SMPP_SECRET is not set" in str(unset.value)
    monkeypatch.setenv("TEST_SMPP_SECRET", "much-too-long")
    with pytest.raises(ConfigError) as long:
        load_config(str(path), discover())
    assert "longer than the 8 characters" in str(long.value)
    monkeypatch.setenv("TEST_SMPP_SECRET", "s3cret")
    config = load_config(str(path), discover())
    sms = config.subsystems["notify"].sms
    assert sms.password_env.value == "s3cret" and "s3cret" not in repr(sms)
