"""
The real ``twistd callcenter`` process with the radius subsystem and the
demo data, with FreeRADIUS's radclient as the NAS on 127.0.0.1: a demo
investor's internet account is accepted by PAP, its session is accounted
from Start to Stop across a SIGKILL of the server (nothing acknowledged is
lost), and a wrong password is rejected with the reason.
"""

import os
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from callcenter.demo import load_demo
from callcenter.store.database import Database
from processes import DEADLINE, TESTS, server_config, twistd

ETC = Path(TESTS).parent / "etc"
SECRET = "process-test-secret"
USER, PASSWORD = "zhangwei", "surf10001"  # etc/demo/internet_accounts.csv, tier basic (30 h)


def demo_radius_config(tmp_path, db_url, monkeypatch, client=(), **radius):
    """
    A server config with [radius] on ephemeral ports and one NAS client,
    127.0.0.1 (C{client}: more of its settings), over the demo data.
    """
    database = Database(db_url)
    database.open()
    load_demo(database, str(ETC))
    database.close()
    monkeypatch.setenv("TEST_RADIUS_SECRET", SECRET)  # the server process inherits it
    nas = {"name": "test-nas", "address": "127.0.0.1", "secret_env": "TEST_RADIUS_SECRET", **dict(client)}
    return server_config(
        tmp_path / "callcenter.toml",
        db_url,
        radius={"auth": "127.0.0.1:0", "accounting": "127.0.0.1:0", "clients": [nas], **radius},
    )


@pytest.fixture
def config(tmp_path, db_url, monkeypatch):
    return demo_radius_config(tmp_path, db_url, monkeypatch)


def start(config, servers):
    server = twistd(config)
    servers(server)
    auth = int(server.wait_for(r"RADIUS authentication listening on 127\.0\.0\.1:(\d+)").group(1))
    accounting = int(server.wait_for(r"RADIUS accounting listening on 127\.0\.0\.1:(\d+)").group(1))
    return server, auth, accounting


def radclient(tmp_path, port, command, attributes):
    path = tmp_path / "packet.txt"
    path.write_text(attributes + "\n")
    done = subprocess.run(
        ["radclient", "-x", "-r", "3", "-t", "2", "-f", str(path), f"127.0.0.1:{port}", command, SECRET],
        capture_output=True, text=True, timeout=DEADLINE,
    )
    return done.stdout + done.stderr, done.returncode


def accounting(status, **extra):
    attributes = {
        "Acct-Status-Type": status, "Acct-Session-Id": '"e2e-session-1"', "User-Name": f'"{USER}"',
        "NAS-IP-Address": "127.0.0.1", "Framed-IP-Address": "10.9.0.7", **extra,
    }
    return ", ".join(f"{name} = {value}" for name, value in attributes.items())


def sessions(db_url):
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(sa.text(
                "SELECT acct_session_id, username, stopped_at, session_time, input_octets, output_octets "
                "FROM radius_sessions"
            ))]
    finally:
        engine.dispose()


def test_an_investor_connects_and_the_session_survives_a_killed_server(config, servers, tmp_path, db_url):
    server, auth, acct = start(config, servers)
    output, status = radclient(tmp_path, auth, "auth", (
        f'User-Name = "{USER}", User-Password = "{PASSWORD}", NAS-IP-Address = 127.0.0.1, '
        "Message-Authenticator = 0x00"
    ))
    assert status == 0 and "Received Access-Accept" in output, output
    # Session-Timeout: the basic tier's 30 hours, none used yet this month.
    assert "Session-Timeout = 108000" in output, output

    output, status = radclient(tmp_path, acct, "acct", accounting("Start"))
    assert status == 0 and "Received Accounting-Response" in output, output
    server.kill()  # acknowledged, then the process dies at once

    server, auth, acct = start(config, servers)
    [session] = sessions(db_url)
    assert (session["acct_session_id"], session["username"], session["stopped_at"]) == ("e2e-session-1", USER, None)
    output, status = radclient(tmp_path, acct, "acct", accounting(
        "Stop", **{"Acct-Session-Time": 600, "Acct-Input-Octets": 5000, "Acct-Output-Octets": 70000,
                   "Acct-Terminate-Cause": "User-Request"}
    ))
    assert status == 0, output
    [session] = sessions(db_url)
    assert session["stopped_at"] is not None
    assert (session["session_time"], session["input_octets"], session["output_octets"]) == (600, 5000, 70000)
    # The 600 s used count against the quota at the next login.
    output, status = radclient(tmp_path, auth, "auth", (
        f'User-Name = "{USER}", User-Password = "{PASSWORD}", Message-Authenticator = 0x00'
    ))
    assert "Session-Timeout = 107400" in output, output
    assert server.terminate()


def test_a_wrong_password_is_rejected_with_the_reason(config, servers, tmp_path):
    server, auth, _ = start(config, servers)
    output, status = radclient(tmp_path, auth, "auth", (
        f'User-Name = "{USER}", User-Password = "Guess-9274", Message-Authenticator = 0x00'
    ))
    assert status == 1 and "Received Access-Reject" in output, output
    assert "Reply-Message" in output
    assert server.terminate()
    # Neither the password tried nor the real one is ever logged.
    assert "Guess-9274" not in server.output and PASSWORD not in server.output
