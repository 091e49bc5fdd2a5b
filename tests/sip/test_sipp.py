"""
The telephony subsystem in the real server process, against SIPp (Debian
sip-tester), an independent SIP implementation, over real sockets.
"""

import os
import subprocess

import pytest
import sqlalchemy as sa

from postgres import free_port
from processes import DEADLINE, callcenter, get_json, server_config, twistd

SCENARIOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios")
ETC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "etc")


class Server:
    def __init__(self, process):
        self.process = process
        self.udp = int(process.wait_for(r"SIP/UDP listening on 127\.0\.0\.1:(\d+)").group(1))
        self.tcp = int(process.wait_for(r"SIP/TCP listening on 127\.0\.0\.1:(\d+)").group(1))
        self.http = process.http_port()


@pytest.fixture
def server(tmp_path, db_url):
    config = server_config(
        tmp_path / "callcenter.toml",
        db_url,
        telephony={"udp": "127.0.0.1:0", "tcp": "tcp:0:interface=127.0.0.1"},
    )
    loaded = callcenter("demo", "load", "--config", config, "--data", ETC)
    assert loaded.returncode == 0, loaded.stderr
    process = twistd(config, cwd=tmp_path)
    try:
        yield Server(process)
    finally:
        process.stop_if_running()


def sipp(tmp_path, port, scenario, *options, transport="u1", final=None):
    """Run one SIPp call of C{scenario}; returns its exit status (0: all went as scripted)."""
    path = os.path.join(SCENARIOS, scenario)
    if final is not None:
        with open(path) as f:
            text = f.read().replace("FINAL", str(final))
        path = tmp_path / f"{final}-{scenario}"
        path.write_text(text)
    command = [
        "sipp", f"127.0.0.1:{port}", "-sf", str(path), "-m", "1",
        "-i", "127.0.0.1", "-bind_local", "-ci", "127.0.0.1", "-nostdin",
        "-p", str(free_port()), "-t", transport,
        "-timeout", "20", "-timeout_error", "-trace_err",
        *options,
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=DEADLINE)
    return result.returncode


def bindings(db_url):
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT aor, contact, user_agent FROM sip_bindings").all()
    engine.dispose()
    return [tuple(row) for row in rows]


def test_sipp_registers_over_udp_with_digest_and_the_binding_is_stored(tmp_path, server, db_url):
    status = sipp(tmp_path, server.udp, "register.xml", "-s", "1001", "-au", "1001", "-ap", "demo1001", final=200)
    assert status == 0
    [(aor, contact, agent)] = bindings(db_url)
    assert (aor, agent) == ("1001", "SIPp")
    assert contact.startswith("sip:1001@127.0.0.1:")


def test_sipp_registers_over_tcp(tmp_path, server, db_url):
    status = sipp(
        tmp_path, server.tcp, "register.xml", "-s", "1002", "-au", "1002", "-ap", "demo1002",
        transport="t1", final=200,
    )
    assert status == 0
    assert [b[0] for b in bindings(db_url)] == ["1002"]


def test_a_wrong_password_is_refused_and_a_scanner_gets_blocked(tmp_path, server, db_url):
    for _ in range(5):
        status = sipp(tmp_path, server.udp, "register.xml", "-s", "1001", "-au", "1001", "-ap", "guess", final=403)
        assert status == 0
    status, health = get_json(server.http, "/health")
    assert health["subsystems"]["telephony"]["blocked_sources"] == 1
    assert bindings(db_url) == []
    server.process.wait_for(r"blocking udp:127\.0\.0\.1:\d+: repeated authentication failures")


def test_options_ping_is_answered(tmp_path, server):
    assert sipp(tmp_path, server.udp, "options.xml") == 0
