"""
Staff kick a session through the real ``twistd callcenter`` process (radius
and web subsystems, the demo data): radclient starts the session as the
NAS would (Accounting-Start), the demo supervisor kicks it over HTTP, and
the Disconnect-Request reaches a NAS stand-in written here (pyrad on a UDP
socket, at the port the client's coa_port names) that answers
Disconnect-ACK.  The API answers "ack", radius_disconnects and the audit
log say so, and the session stays online until the NAS's Accounting-Stop.
Then the same with the ``callcenter internet kick`` command.
"""

import base64
import json
import socket
import subprocess
import threading
import urllib.error
import urllib.request

import pytest
import sqlalchemy as sa
from pyrad import packet as radius
from pyrad.packet import CoAPacket

from callcenter.radius.dictionary import load_dictionary
from processes import BIN, DEADLINE, environment, twistd
from test_radius_process import SECRET, USER, accounting, demo_radius_config, radclient

SUPERVISOR = "9001:demo9001"  # etc/demo/agents.csv


class NASStandIn:
    """
    A NAS's RFC 5176 side on 127.0.0.1: checks each request as a NAS must
    (Request Authenticator, Message-Authenticator) and acknowledges it.
    """

    def __init__(self):
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.received = []
        self.dictionary = load_dictionary()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                data, address = self.socket.recvfrom(4096)
            except OSError:
                return  # closed
            request = CoAPacket(secret=SECRET.encode(), dict=self.dictionary, packet=data)
            if not (request.VerifyCoARequest() and request.message_authenticator
                    and request.verify_message_authenticator()):
                continue
            self.received.append(request)
            reply = request.CreateReply()
            reply.add_message_authenticator()
            self.socket.sendto(reply.ReplyPacket(), address)

    def close(self):
        self.socket.close()


@pytest.fixture
def nas():
    nas = NASStandIn()
    yield nas
    nas.close()


@pytest.fixture
def config(tmp_path, db_url, monkeypatch, nas):
    return demo_radius_config(tmp_path, db_url, monkeypatch, client={"coa_port": nas.port}, disconnect_timeout=1.0)


def call(port, method, path):
    """(status, JSON body) of an API request as the demo supervisor."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/internet{path}", method=method, data=b"" if method == "POST" else None,
        headers={"Authorization": "Basic " + base64.b64encode(SUPERVISOR.encode()).decode()},
    )
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def rows(db_url, sql):
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(sa.text(sql))]
    finally:
        engine.dispose()


def test_staff_kick_a_session_and_the_nas_acknowledges(config, servers, tmp_path, db_url, nas):
    server = twistd(config)
    servers(server)
    acct = int(server.wait_for(r"RADIUS accounting listening on 127\.0\.0\.1:(\d+)").group(1))
    http = server.http_port()

    output, status = radclient(tmp_path, acct, "acct", accounting("Start"))
    assert status == 0 and "Received Accounting-Response" in output, output
    status, body = call(http, "GET", f"/sessions?user={USER}")
    assert status == 200, body
    [session] = body["sessions"]
    assert (session["acct_session_id"], session["client"]) == ("e2e-session-1", "test-nas")

    status, body = call(http, "POST", f"/sessions/{session['id']}/kick")
    assert (status, body["outcome"], body["attempts"]) == (200, "ack", 1), body
    [request] = nas.received
    assert request.code == radius.DisconnectRequest
    assert request["User-Name"] == [USER] and request["Acct-Session-Id"] == ["e2e-session-1"]
    [disconnect] = rows(db_url, "SELECT session_id, reason, outcome, attempts FROM radius_disconnects")
    assert disconnect == {"session_id": session["id"], "reason": "staff", "outcome": "ack", "attempts": 1}
    [audited] = rows(db_url, "SELECT channel, action, outcome, agent_id, fund_account_no FROM audit_log "
                             "WHERE action = 'internet_kick'")
    assert audited == {"channel": "staff", "action": "internet_kick", "outcome": "ack", "agent_id": "9001",
                       "fund_account_no": "10010001"}

    # Online until the NAS says it has ended the session.
    assert [s["id"] for s in call(http, "GET", "/sessions")[1]["sessions"]] == [session["id"]]
    output, status = radclient(tmp_path, acct, "acct", accounting(
        "Stop", **{"Acct-Session-Time": 60, "Acct-Terminate-Cause": "Admin-Reset"}
    ))
    assert status == 0, output
    assert call(http, "GET", "/sessions")[1]["sessions"] == []

    # The command does the same through the same API.
    output, status = radclient(tmp_path, acct, "acct", accounting("Start", **{"Acct-Session-Id": '"e2e-session-2"'}))
    assert status == 0, output
    [second] = call(http, "GET", "/sessions")[1]["sessions"]
    done = subprocess.run(
        [f"{BIN}/callcenter", "internet", "kick", "--config", config, str(second["id"]), "--agent", "9001",
         "--password-stdin", "--url", f"http://127.0.0.1:{http}"],
        input="demo9001\n", capture_output=True, text=True, env=environment(), timeout=DEADLINE,
    )
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout.startswith(f"session {second['id']} of {USER} at test-nas: disconnected (Disconnect-ACK")
    assert [r["Acct-Session-Id"] for r in nas.received] == [["e2e-session-1"], ["e2e-session-2"]]
    assert server.terminate()
    assert "demo9001" not in server.output
