"""
``callcenter internet kick``, run in this process against a stand-in for
the server's HTTP API (a stdlib HTTP server in a thread, answering what
each test says): what it sends, where it finds the server, and how it
reports each answer.  tests/radius/test_kick_process.py runs the real
command against the real server.
"""

import base64
import http.server
import io
import json
import socket
import sys
import threading

import pytest

from callcenter.cli import main
from processes import write_config


class APIStandIn(http.server.ThreadingHTTPServer):
    """Answers every request with C{self.answer} (status, JSON body or bytes) and keeps what it was sent."""

    def __init__(self, host="127.0.0.1"):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, 0), _Handler)
        self.answer = (200, {})
        self.received = []


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.server.received.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
        status, body = self.server.answer
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if isinstance(body, dict) else "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    server = APIStandIn()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def config(tmp_path, web="tcp:8080:interface=127.0.0.1", radius=True):
    tables = {"storage": {"url": f"sqlite:///{tmp_path}/unused.sqlite"}}
    if web is not None:
        tables["web"] = {"listen": web}
    if radius:
        tables["radius"] = {"auth": "127.0.0.1:0", "accounting": "127.0.0.1:0", "disconnect_timeout": 0.5}
    return write_config(tmp_path / "callcenter.toml", tables)


@pytest.fixture
def kick(capfd, monkeypatch, tmp_path):
    """C{kick(*argv, config=, stdin=)}: (exit status, stdout, stderr) of C{callcenter internet kick}."""

    def run(*argv, config_path=None, stdin="demo9001\n"):
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            status = main(["internet", "kick", "--config", config_path or config(tmp_path), *argv])
        except SystemExit as e:
            status = e.code
        out, err = capfd.readouterr()
        return status, out, err

    return run


def url(server):
    host, port = server.server_address[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


ACK = {
    "session": {"id": 12, "username": "zhangwei", "client": "bras-1", "acct_session_id": "s1"},
    "outcome": "ack", "attempts": 1, "error_cause": None, "error_name": None,
}


def error(code, message_en, **details):
    return {"error": {"code": code, "message_zh": "…", "message_en": message_en, "details": details,
                      "correlation_id": "abc"}}


def test_a_kick_the_nas_acknowledges(kick, api):
    api.answer = (200, ACK)
    assert kick("12", "--agent", "9001", "--password-stdin", "--url", url(api)) == (
        0,
        "session 12 of zhangwei at bras-1: disconnected (Disconnect-ACK after 1 attempt); "
        "it ends when the NAS sends its Accounting-Stop\n",
        "",
    )
    [(method, path, headers, body)] = api.received
    assert (method, path, body) == ("POST", "/api/v1/internet/sessions/12/kick", b"")
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"9001:demo9001").decode()
    assert headers["Accept-Language"] == "en"


@pytest.mark.parametrize("listen", ["tcp:{port}:interface=127.0.0.1", "tcp:{port}", "tcp:{port}:interface=0.0.0.0"])
def test_the_server_is_found_from_web_listen(kick, api, tmp_path, listen):
    api.answer = (200, ACK)
    status, _, err = kick("12", "--agent", "9001", "--password-stdin",
                          config_path=config(tmp_path, web=listen.format(port=api.server_address[1])))
    assert (status, err) == (0, "")
    assert len(api.received) == 1


def test_an_ipv6_loopback_listener_is_found_too(kick, tmp_path):
    server = APIStandIn("::1")
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        server.answer = (200, ACK)
        listen = f"tcp6:{server.server_address[1]}:interface=\\:\\:1"
        status, _, err = kick("12", "--agent", "9001", "--password-stdin", config_path=config(tmp_path, web=listen))
    finally:
        server.shutdown()
        server.server_close()
    assert (status, err) == (0, "")


@pytest.mark.parametrize("answer, message", [
    ((502, error("nas_refused", "the NAS refused to end the session (Session-Context-Not-Found)",
                 outcome="nak", attempts=1, error_cause=503, error_name="Session-Context-Not-Found")),
     "session 12: the NAS refused to end the session (Session-Context-Not-Found)"),
    ((504, error("nas_timeout", "no answer from the NAS after 3 requests", outcome="timeout", attempts=3)),
     "session 12: no answer from the NAS after 3 requests"),
])
def test_a_kick_the_nas_refuses_or_ignores_exits_1(kick, api, answer, message):
    api.answer = answer
    assert kick("12", "--agent", "9001", "--password-stdin", "--url", url(api)) == (1, "", f"callcenter: {message}\n")


@pytest.mark.parametrize("status, code, message", [
    (401, "wrong_credentials", "wrong agent id or password"),
    (403, "role_not_allowed", "your role (agent) may not do this"),
    (404, "session_not_found", "no such session"),
    (429, "too_many_attempts", "too many wrong passwords: try again in 15 min"),
])
def test_refusals_are_told_in_one_line(kick, api, status, code, message):
    api.answer = (status, error(code, message))
    assert kick("12", "--agent", "9001", "--password-stdin", "--url", url(api)) == (
        2, "", f"callcenter: {url(api)}: {status} {code}: {message}\n"
    )


def test_something_that_is_not_the_api(kick, api):
    api.answer = (404, b"<html>nothing here</html>")
    status, _, err = kick("12", "--agent", "9001", "--password-stdin", "--url", url(api) + "/")
    assert (status, err) == (2, f"callcenter: {url(api)}: HTTP 404, not an answer of the internet API\n")


def test_no_server(kick):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    status, _, err = kick("12", "--agent", "9001", "--password-stdin", "--url", f"http://127.0.0.1:{port}")
    assert status == 2 and err.startswith(f"callcenter: cannot reach the server at http://127.0.0.1:{port}: ")


@pytest.mark.parametrize("web, radius, problem", [
    ("tcp:0:interface=127.0.0.1", True, "[web] listen: cannot tell an HTTP address from 'tcp:0:interface=127.0.0.1': "
                                        "give --url"),
    ("unix:/run/callcenter.sock", True, "[web] listen: cannot tell an HTTP address from "
                                        "'unix:/run/callcenter.sock': give --url"),
    (None, True, "[web] is not enabled: internet kick goes through the server's HTTP API "
                 "(give --url to reach another server's)"),
    ("tcp:8080", False, "[radius] is not enabled: there are no sessions to kick"),
])
def test_where_the_server_cannot_be_told(kick, tmp_path, web, radius, problem):
    path = config(tmp_path, web=web, radius=radius)
    assert kick("12", "--agent", "9001", "--password-stdin", config_path=path) == (2, "", f"callcenter: {path}: "
                                                                                        f"{problem}\n")


def test_the_password_is_never_an_argument(kick, api):
    status, _, err = kick("12", "--agent", "9001", "--url", url(api), stdin="")
    assert (status, err) == (
        2, "callcenter: no terminal to ask for the password: give it on standard input with --password-stdin\n"
    )
    status, _, err = kick("12", "--agent", "9001", "--password", "demo9001", "--url", url(api))
    assert status == 2 and "demo9001" not in err
    assert api.received == []
