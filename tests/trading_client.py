"""The trading HTTP API as the process tests use it: plain urllib against a real server."""

import json
import time
import urllib.error
import urllib.request

from processes import DEADLINE

ACCOUNT, PASSWORD = "10010001", "135790"


def call(port, method, path, body=None, token=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1{path}", method=method)
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def login(port, account=ACCOUNT, password=PASSWORD):
    status, body = call(port, "POST", "/sessions", {"fund_account_no": account, "password": password})
    assert status == 201, body
    return body["token"]


def until_final(port, token, order_no):
    """The order once the exchange has finished with it (a real process: we can only ask)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        status, order = call(port, "GET", f"/orders/{order_no}", token=token)
        assert status == 200, order
        if order["status"] in ("filled", "cancelled", "rejected"):
            return order
        time.sleep(0.05)
    raise AssertionError(f"order {order_no} still {order['status']} after {DEADLINE}s")
