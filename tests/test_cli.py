"""The callcenter command, run as an operator runs it."""

import os
import socket

import sqlalchemy as sa

from processes import callcenter, server_config, twistd, write_config
from callcenter.store.database import normalise_url

MIGRATIONS = os.path.join(os.path.dirname(__file__), "..", "callcenter", "store", "migrations", "versions")


def test_check_config_accepts_a_good_file_and_changes_nothing(tmp_path):
    config = server_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/var/db.sqlite")
    result = callcenter("check-config", config)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"{config}: ok (database sqlite:///{tmp_path}/var/db.sqlite: schema will be created "
        "at start; subsystems: web)\n"
    )
    assert not (tmp_path / "var").exists()


def test_check_config_without_probes_accepts_ports_in_use(tmp_path, db_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = server_config(tmp_path / "c.toml", db_url, web={"listen": f"tcp:{port}:interface=127.0.0.1"})
        result = callcenter("check-config", "--no-probe", config)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{config}: ok (ports and database not probed; subsystems: web)\n"


def test_check_config_reports_every_problem_one_line_each_with_status_2(tmp_path):
    config = write_config(
        tmp_path / "c.toml",
        {
            "log": {"format": "xml", "colour": True},
            "web": {"listen": "tcp:http"},
        },
    )
    result = callcenter("check-config", config)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"callcenter: {config}: [log] colour: unknown key; [log] accepts: file, format, level",
        f'callcenter: {config}: [log] format: expected one of "text", "json", found "xml"',
        f'callcenter: {config}: [web] listen: expected a Twisted server endpoint such as '
        f'"tcp:8080:interface=127.0.0.1", found "tcp:http" (invalid literal for int() with base 10: \'http\')',
    ]


def test_check_config_finds_a_port_in_use(tmp_path, db_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = server_config(tmp_path / "c.toml", db_url, web={"listen": f"tcp:{port}:interface=127.0.0.1"})
        result = callcenter("check-config", config)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"callcenter: {config}: [web] listen: cannot listen: ")
    assert "Address already in use" in line


def test_check_config_finds_an_unreadable_database(tmp_path):
    (tmp_path / "bad.sqlite").write_bytes(b"garbage" * 500)
    config = server_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/bad.sqlite")
    result = callcenter("check-config", config)
    assert result.returncode == 2
    assert result.stderr == (
        f"callcenter: {config}: [storage] url: cannot open database "
        f"sqlite:///{tmp_path}/bad.sqlite: file is not a database\n"
    )


def test_check_config_of_a_missing_file(tmp_path):
    result = callcenter("check-config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert result.stderr == f"callcenter: {tmp_path}/nope.toml: cannot read: No such file or directory\n"


def test_db_upgrade_then_current(tmp_path, db_url):
    config = server_config(tmp_path / "c.toml", db_url)
    upgraded = callcenter("db", "upgrade", "--config", config)
    assert upgraded.returncode == 0, upgraded.stderr
    head = sorted(name for name in os.listdir(MIGRATIONS) if name.endswith(".py"))[-1].split("_")[0]
    assert upgraded.stdout.endswith(f"at schema revision {head}\n")
    current = callcenter("db", "current", "--config", config)
    assert current.stdout.endswith(f": revision {head}, code head {head}\n")


def test_a_database_from_a_newer_version_is_refused_by_check_config_and_twistd(tmp_path, db_url):
    config = server_config(tmp_path / "c.toml", db_url)
    assert callcenter("db", "upgrade", "--config", config).returncode == 0
    engine = sa.create_engine(normalise_url(db_url))
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()

    checked = callcenter("check-config", config)
    assert checked.returncode == 2
    assert "is at schema revision 9999, unknown to this version" in checked.stderr

    server = twistd(config, cwd=tmp_path)
    assert server.finish() == 1
    assert "Traceback" not in server.output
    assert "unknown to this version" in server.output


def test_demo_load_is_idempotent(tmp_path, db_url):
    config = server_config(tmp_path / "c.toml", db_url)
    first = callcenter("demo", "load", "--config", config, cwd=".")
    assert first.returncode == 0, first.stderr
    assert "fund_accounts 5" in first.stdout
    second = callcenter("demo", "load", "--config", config, cwd=".")
    assert second.returncode == 0, second.stderr
    assert "fund_accounts 0" in second.stdout


def test_demo_load_reports_bad_data_in_one_line(tmp_path, db_url):
    (tmp_path / "demo").mkdir()
    (tmp_path / "instruments.csv").write_text("code,exchange\n600000,SSE\n")
    config = server_config(tmp_path / "c.toml", db_url)
    result = callcenter("demo", "load", "--config", config, "--data", str(tmp_path))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr
