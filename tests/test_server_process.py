"""
The real ``twistd callcenter`` process, end to end: start-up, /health,
third-party plugins, one-line errors, SIGTERM and SIGKILL.
"""

import socket

import pytest
import sqlalchemy as sa

from processes import callcenter, get_json, get_text, server_config, twistd, twistd_tac, write_config


def ledger_config(tmp_path, db_url, announce_every=25):
    return server_config(
        tmp_path / "callcenter.toml",
        db_url,
        ledger={"ack_file": str(tmp_path / "acks"), "announce_every": announce_every},
    )


def acknowledged(tmp_path):
    with open(tmp_path / "acks") as f:
        return [int(line) for line in f.read().split()]


def stored_rows(db_url):
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            return [row[0] for row in connection.exec_driver_sql("SELECT seq FROM test_ledger ORDER BY seq")]
    finally:
        engine.dispose()


def test_serves_health_for_every_subsystem_including_a_third_party_one(tmp_path, db_url, servers):
    server = twistd(ledger_config(tmp_path, db_url), cwd=tmp_path)
    servers(server)
    port = server.http_port()
    server.wait_for("ledger resumes at row 1")

    status, health = get_json(port, "/health")
    assert status == 200
    assert health["status"] == "ok"
    assert health["node"] == "test"
    assert {name: h["state"] for name, h in health["subsystems"].items()} == {
        "storage": "ok",
        "web": "ok",
        "ledger": "ok",
    }

    status, content_type, metrics = get_text(port, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert 'callcenter_subsystem_up{subsystem="ledger"} 1.0' in metrics
    assert 'callcenter_store_transactions_total{outcome="committed"}' in metrics
    assert server.terminate()


def test_sigterm_lets_inflight_writes_finish_and_a_restart_continues(tmp_path, db_url, servers):
    config = ledger_config(tmp_path, db_url)
    server = twistd(config, cwd=tmp_path)
    servers(server)
    server.wait_for("ledger committed row 50")

    assert server.terminate()
    last = int(server.wait_for(r"ledger stopped before row (\d+)").group(1)) - 1
    assert "database closed" in server.output
    acks = acknowledged(tmp_path)
    # Every write that began was allowed to commit and be acknowledged.
    assert acks == list(range(1, last + 1))
    assert stored_rows(db_url) == acks

    again = twistd(config, cwd=tmp_path)
    servers(again)
    again.wait_for(f"ledger resumes at row {last + 1}$")
    again.wait_for(r"ledger committed row \d+")
    assert again.terminate()
    acks = acknowledged(tmp_path)
    assert acks[last] == last + 1
    assert stored_rows(db_url) == acks == list(range(1, len(acks) + 1))


def test_sigkill_mid_write_leaves_a_database_that_opens_and_migrates(tmp_path, db_url, servers):
    config = ledger_config(tmp_path, db_url)
    server = twistd(config, cwd=tmp_path)
    servers(server)
    server.wait_for("ledger committed row 200")
    server.kill()

    upgraded = callcenter("db", "upgrade", "--config", config, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    acks = acknowledged(tmp_path)
    rows = stored_rows(db_url)
    assert len(acks) >= 200
    # Nothing acknowledged is lost; at most the one write in flight got in
    # without its acknowledgement.
    assert set(acks) <= set(rows)
    assert rows == list(range(1, len(rows) + 1))
    assert len(rows) - len(acks) <= 1
    if db_url.startswith("sqlite"):
        engine = sa.create_engine(db_url)
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        engine.dispose()

    again = twistd(config, cwd=tmp_path)
    servers(again)
    again.wait_for(f"ledger resumes at row {len(rows) + 1}$")
    status, health = get_json(again.http_port(), "/health")
    assert (status, health["status"]) == (200, "ok")
    assert again.terminate()


def assert_one_line_errors(output, expected):
    assert "Traceback" not in output
    assert "Usage" not in output and "--help" not in output
    errors = [line for line in output.splitlines() if line.startswith("callcenter: ")]
    assert errors == ["callcenter: " + line for line in expected]


def test_broken_config_gives_one_line_per_problem_and_status_2(tmp_path):
    config = write_config(
        tmp_path / "broken.toml",
        {
            "storage": {"url": "sqlite:///x.sqlite", "pool_size": "many"},
            "web": {"listen": "tcp:8080:interface=127.0.0.1", "port": 80},
            "telephony_typo": {"x": 1},
        },
    )
    server = twistd(config, cwd=tmp_path)
    assert server.finish() == 2
    assert_one_line_errors(
        server.output,
        [
            f"{config}: [telephony_typo]: unknown table; known tables: agi, ivr, ledger, log, notify, radius, server, storage, telephony, trading, web",
            f'{config}: [storage] pool_size: expected an integer from 0 to 64, found "many"',
            f"{config}: [web] port: unknown key; [web] accepts: enabled, listen",
        ],
    )


def test_port_in_use_gives_one_line_and_nonzero_status(tmp_path, db_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = server_config(
            tmp_path / "callcenter.toml", db_url, web={"listen": f"tcp:{port}:interface=127.0.0.1"}
        )
        server = twistd(config, cwd=tmp_path)
        assert server.finish() == 1
    output = server.output
    assert "Traceback" not in output
    [line] = [line for line in output.splitlines() if line.startswith("callcenter: ")]
    assert line.startswith(
        f"callcenter: {config}: [web] listen: cannot listen on tcp:{port}:interface=127.0.0.1: "
    )
    assert "Address already in use" in line


@pytest.mark.parametrize(
    "url, reason",
    [
        ("sqlite:///garbage.sqlite", "file is not a database"),
        ("sqlite:///occupied/x.sqlite", "cannot create directory"),
        ("postgresql://nobody@127.0.0.1:1/none", "cannot open database"),
    ],
)
def test_unusable_database_gives_one_line_and_nonzero_status(tmp_path, url, reason):
    (tmp_path / "garbage.sqlite").write_bytes(b"this is not SQLite\n" * 100)
    (tmp_path / "occupied").write_text("a file where a directory should be")
    config = server_config(tmp_path / "callcenter.toml", url)
    server = twistd(config, cwd=tmp_path)
    assert server.finish() == 1
    assert "Traceback" not in server.output
    [line] = [line for line in server.output.splitlines() if line.startswith("callcenter: ")]
    assert line.startswith(f"callcenter: {config}: [storage] url: ")
    assert reason in line


def test_tac_file_runs_the_same_server(tmp_path, db_url, servers):
    config = ledger_config(tmp_path, db_url)
    server = twistd_tac(config, cwd=tmp_path)
    servers(server)
    status, health = get_json(server.http_port(), "/health")
    assert (status, sorted(health["subsystems"])) == (200, ["ledger", "storage", "web"])
    assert server.terminate()


def test_tac_file_reports_a_broken_config_in_one_line(tmp_path):
    config = write_config(tmp_path / "broken.toml", {"web": {"listen": 8080}})
    server = twistd_tac(config, cwd=tmp_path)
    assert server.finish() == 2
    assert_one_line_errors(
        server.output,
        [
            f'{config}: [web] listen: expected a Twisted server endpoint such as '
            f'"tcp:8080:interface=127.0.0.1", found 8080'
        ],
    )


def test_json_logs_are_one_object_per_line(tmp_path, db_url, servers):
    import json

    config = server_config(tmp_path / "callcenter.toml", db_url, log={"format": "json"})
    server = twistd(config, cwd=tmp_path)
    servers(server)
    port = server.http_port()
    get_json(port, "/health")
    assert server.terminate()
    records = [json.loads(line) for line in server.output.splitlines()]
    listening = [r for r in records if r["message"].startswith("HTTP listening on")]
    assert listening and listening[0]["level"] == "info"
    assert all({"time", "level", "system", "message"} <= set(r) for r in records)


@pytest.mark.parametrize("reactor", ["asyncio", "poll"])
def test_runs_on_the_reactor_twistd_is_told_to_use(tmp_path, db_url, servers, reactor):
    """Nothing imports the reactor early, so twistd --reactor is obeyed."""
    config = server_config(tmp_path / "callcenter.toml", db_url)
    server = twistd(config, cwd=tmp_path, twistd_options=[f"--reactor={reactor}"])
    servers(server)
    status, health = get_json(server.http_port(), "/health")
    assert (status, health["status"]) == (200, "ok")
    assert server.terminate()
    assert {"asyncio": "AsyncioSelectorReactor", "poll": "PollReactor"}[reactor] in server.output
