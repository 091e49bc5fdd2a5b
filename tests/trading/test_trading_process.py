"""
The real ``twistd callcenter`` process with the trading subsystem, over
HTTP on a real socket: an investor logs in, sells, and the fill reaches the
books; an order acknowledged just before the process is killed (SIGKILL)
is still there after a restart and is carried out.
"""

from pathlib import Path

import pytest

from callcenter.demo import load_demo
from callcenter.store.database import Database
from processes import TESTS, server_config, twistd
from trading_client import call, login, until_final
ETC = Path(TESTS).parent / "etc"


@pytest.fixture
def config(tmp_path, db_url):
    database = Database(db_url)
    database.open()
    load_demo(database, str(ETC))
    database.close()
    return server_config(
        tmp_path / "callcenter.toml",
        db_url,
        trading={"clock": "simulated", "after_hours": "queue", "holidays": str(ETC / "holidays.txt")},
    )


def sell_at_limit_down(port, token):
    status, quote = call(port, "GET", "/quotes/600000")
    assert status == 200, quote
    # At limit-down a sell meets any bid: it fills against the market at once.
    return call(port, "POST", "/orders", {
        "code": "600000", "side": "sell", "price_fen": quote["limit_down_fen"], "quantity": 500,
        "client_order_id": "e2e-1",
    }, token=token)


def start(config, servers):
    """A server started and ready to trade: its process, HTTP port and a session token."""
    server = twistd(config)
    servers(server)
    port = server.http_port()
    server.wait_for("trading ready")
    return server, port, login(port)


def test_an_investor_sells_over_http_and_the_books_follow(config, servers):
    server, port, token = start(config, servers)
    status, order = sell_at_limit_down(port, token)
    assert status == 201, order
    done = until_final(port, token, order["order_no"])
    assert done["status"] == "filled" and done["filled_quantity"] == 500
    status, held = call(port, "GET", "/positions", token=token)
    assert {p["code"]: p["quantity"] for p in held["positions"]}["600000"] == 4500
    status, funds = call(port, "GET", "/funds", token=token)
    assert funds["available_fen"] == 50_000_000 + done["filled_amount_fen"] - done["fees_fen"]
    # The same request again (a client that lost the answer): the same order, nothing new.
    status, again = sell_at_limit_down(port, token)
    assert (status, again["order_no"]) == (200, order["order_no"])


def test_an_acknowledged_order_survives_sigkill(config, servers):
    server, port, token = start(config, servers)
    status, order = sell_at_limit_down(port, token)
    assert status == 201, order
    server.kill()

    restarted, port, token = start(config, servers)
    done = until_final(port, token, order["order_no"])
    assert done["status"] == "filled" and done["filled_quantity"] == 500
    status, held = call(port, "GET", "/positions", token=token)
    # Sold once, not twice.
    assert {p["code"]: p["quantity"] for p in held["positions"]}["600000"] == 4500
