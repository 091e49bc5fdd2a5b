"""
The account, instruments and audit commands of ``callcenter``, run in this
process (argon2 and start-up would make a child process per command slow),
plus one run of the installed command with a password piped in.
"""

import io
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from callcenter.cli import main
from callcenter.passwords import verify_password
from callcenter.store.schema import audit_log, branches, fund_accounts, instruments
from processes import BIN, DEADLINE, environment, server_config

PASSWORD = "135790"


@pytest.fixture
def config(database, tmp_path, db_url):
    database.transaction(
        lambda connection: connection.execute(
            branches.insert().values(code="0101", name_zh="浦东南路", name_en="Pudong South Road", city="上海")
        )
    )
    return server_config(tmp_path / "c.toml", db_url)


@pytest.fixture
def run(cli, monkeypatch):
    """Run the command as the user ops01; returns (exit status, stdout, stderr)."""
    monkeypatch.setattr("getpass.getuser", lambda: "ops01")
    return cli


def _open(run, config, *extra, stdin=PASSWORD + "\n"):
    return run(
        "account", "open", "--config", config, "--branch", "0101", "--name-zh", "张伟", "--name-en", "Zhang Wei",
        "--sse", "A000000001", "--szse", "0000000001", "--password-stdin", *extra, stdin=stdin,
    )


@pytest.fixture
def account(run, config):
    status, out, err = _open(run, config)
    assert (status, err) == (0, ""), err
    return "0101000001"


def _rows(database, table):
    with database.engine.connect() as connection:
        return [row._asdict() for row in connection.execute(sa.select(table))]


def test_open_reads_the_password_from_stdin_and_never_shows_it(run, config, database):
    status, out, err = _open(run, config)
    assert (status, out, err) == (0, "opened account 0101000001 at branch 0101\n", "")
    [row] = _rows(database, fund_accounts)
    assert verify_password(row["password_hash"], PASSWORD)
    [opened] = _rows(database, audit_log)
    assert (opened["action"], opened["channel"], opened["agent_id"]) == ("open_account", "staff", "ops01")
    assert PASSWORD not in str(_rows(database, audit_log))


def test_a_password_on_the_command_line_is_refused_and_not_repeated(run, config, database):
    for argv in (("--password", PASSWORD), ("--password-stdin", PASSWORD), (PASSWORD,)):
        status, out, err = _open(run, config, *argv, stdin="")
        assert status == 2
        assert PASSWORD not in out + err
        assert "unrecognized arguments: not shown" in err
    assert _rows(database, fund_accounts) == []


def test_without_a_terminal_the_password_must_come_on_stdin(run, config, database):
    status, out, err = run(
        "account", "open", "--config", config, "--branch", "0101", "--name-zh", "张伟",
        "--sse", "A000000001", "--szse", "0000000001",
    )
    assert status == 2
    assert err == (
        "callcenter: no terminal to ask for the trading password: give it on standard input with --password-stdin\n"
    )
    assert _rows(database, fund_accounts) == []


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_at_a_terminal_the_password_is_asked_twice_without_echo(run, config, database, monkeypatch):
    answers = iter([PASSWORD, PASSWORD, PASSWORD, "246802"])
    prompts = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or next(answers))
    monkeypatch.setattr(sys, "stdin", Terminal())
    argv = ("account", "open", "--config", config, "--branch", "0101", "--name-zh", "张伟",
            "--sse", "A000000001", "--szse", "0000000001")
    assert main(list(argv)) == 0
    assert prompts == ["new trading password (6 digits): ", "the same again: "]
    assert len(_rows(database, fund_accounts)) == 1

    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    monkeypatch.setattr(sys, "stdin", Terminal())
    with pytest.raises(SystemExit) as exited:
        main(["account", "reset-password", "--config", config, "0101000001"])
    assert exited.value.code == 2
    [row] = _rows(database, fund_accounts)
    assert verify_password(row["password_hash"], PASSWORD)


def test_a_bad_password_is_refused_without_showing_it(run, config, database):
    status, out, err = _open(run, config, stdin="12345x\n")
    assert (status, err) == (2, "callcenter: the trading password must be 6 digits\n")
    assert _rows(database, fund_accounts) == []


def test_open_reports_a_refusal_in_one_line_and_audits_it(run, config, database):
    status, out, err = run(
        "account", "open", "--config", config, "--branch", "9999", "--name-zh", "张伟",
        "--sse", "A000000001", "--szse", "0000000001", "--password-stdin", stdin=PASSWORD,
    )
    assert (status, out, err) == (2, "", "callcenter: branch 9999 does not exist\n")
    [refusal] = _rows(database, audit_log)
    assert (refusal["action"], refusal["outcome"]) == ("open_account", "refused")


def test_deposit_and_withdraw_take_exact_cny(run, config, account, database):
    status, out, err = run("account", "deposit", "--config", config, account, "1000.50", "--reference", "BANK-1")
    assert (status, out) == (0, f"account {account}: deposited 1000.50 CNY, 1000.50 CNY available\n"), err
    status, out, err = run("account", "withdraw", "--config", config, account, "0.5")
    assert (status, out) == (0, f"account {account}: withdrew 0.50 CNY, 1000.00 CNY available\n"), err
    [row] = _rows(database, fund_accounts)
    assert row["cash_available_fen"] == 100_000


@pytest.mark.parametrize(
    "amount, problem",
    [
        ("1.234", "has more than 2 decimals"),
        ("-1", "is negative"),
        ("abc", "is not an amount in CNY"),
        ("1e3", "is not an amount in CNY"),
        ("１00", "is not an amount in CNY"),
        ("0.1.2", "is not an amount in CNY"),
    ],
)
def test_amounts_that_are_not_cny_are_refused(run, config, account, database, amount, problem):
    status, out, err = run("account", "deposit", "--config", config, account, amount)
    assert status == 2
    assert err.startswith(f"callcenter: {amount!r} {problem}")
    assert len(err.splitlines()) == 1
    [row] = _rows(database, fund_accounts)
    assert row["cash_available_fen"] == 0


def test_an_overdraft_is_refused_and_the_refusal_audited(run, config, account, database):
    status, out, err = run("account", "withdraw", "--config", config, account, "0.01")
    assert (status, out) == (2, "")
    assert err == f"callcenter: account {account} has 0.00 CNY available, less than 0.01 CNY\n"
    refusal = _rows(database, audit_log)[-1]
    assert (refusal["action"], refusal["outcome"], refusal["agent_id"]) == ("withdraw", "refused", "ops01")


def test_an_unknown_account(run, config, account):
    for action in ("unlock", "show"):
        status, out, err = run("account", action, "--config", config, "10019999")
        assert (status, err) == (2, "callcenter: account 10019999 does not exist\n")


def test_callers_limit_unlock_reset_and_show(run, config, account, database):
    status, out, _ = run("account", "callers", "--config", config, account, "138 0013 8001", "+8613800138001")
    assert out == f"account {account}: phone trading allowed only from +8613800138001, 13800138001\n"
    status, out, _ = run("account", "limit", "--config", config, account, "50000")
    assert out == f"account {account}: phone orders have a daily limit of 50000.00 CNY\n"
    status, out, _ = run("account", "unlock", "--config", config, account)
    assert out == f"account {account}: failed logins cleared, unlocked\n"
    status, out, _ = run("account", "reset-password", "--config", config, account, "--password-stdin",
                         stdin="246802\n")
    assert out == f"account {account}: trading password reset, failed logins cleared, unlocked\n"
    [row] = _rows(database, fund_accounts)
    assert verify_password(row["password_hash"], "246802")
    status, out, err = run("account", "show", "--config", config, account)
    assert (status, err) == (0, "")
    assert out == (
        f"account {account} at branch 0101\n"
        "  investor: 张伟 / Zhang Wei, mobile none, language zh\n"
        "  cash: 0.00 CNY available, 0.00 CNY frozen\n"
        "  shareholder accounts: SSE A000000001, SZSE 0000000001\n"
        "  logins: 0 failed, not locked\n"
        "  phone trading: daily limit 50000.00 CNY; callers +8613800138001, 13800138001\n"
    )
    run("account", "callers", "--config", config, account)
    status, out, _ = run("account", "limit", "--config", config, account, "none")
    assert out == f"account {account}: phone orders have no daily limit\n"
    assert "phone trading: daily limit none; callers any" in run("account", "show", "--config", config, account)[1]
    actions = [row["action"] for row in _rows(database, audit_log)]
    assert actions == ["open_account", "set_allowed_callers", "set_phone_daily_limit", "unlock", "reset_password",
                       "set_allowed_callers", "set_phone_daily_limit"]


def test_instruments_load(run, config, database, tmp_path):
    csv = tmp_path / "instruments.csv"
    csv.write_text("code,exchange,name_zh,name_en,board,prev_close,is_st,lot_size\n"
                   "600000,SSE,浦发银行,SPD Bank,main,13.50,false,100\n", encoding="utf-8")
    assert run("instruments", "load", "--config", config, str(csv))[1] == (
        f"instruments from {csv}: 1 inserted, 0 updated\n"
    )
    csv.write_text(csv.read_text(encoding="utf-8").replace("13.50", "13.60"), encoding="utf-8")
    assert run("instruments", "load", "--config", config, str(csv))[1] == (
        f"instruments from {csv}: 0 inserted, 1 updated\n"
    )
    [row] = _rows(database, instruments)
    assert row["prev_close_fen"] == 1360
    assert [row["detail"] for row in _rows(database, audit_log)] == [
        '{"inserted":1,"updated":0}',
        '{"inserted":0,"updated":1}',
    ]
    csv.write_text("code,exchange\n600000,SSE\n")
    status, out, err = run("instruments", "load", "--config", config, str(csv))
    assert status == 2
    assert len(err.splitlines()) == 1


def _tamper(db_url, sql):
    from callcenter.store.database import normalise_url

    engine = sa.create_engine(normalise_url(db_url))
    with engine.begin() as connection:
        connection.exec_driver_sql(sql)
    engine.dispose()


def test_audit_head_and_verify(run, config, account, db_url):
    for amount in ("1", "2", "3"):
        run("account", "deposit", "--config", config, account, amount)
    status, head, err = run("audit", "head", "--config", config)
    assert (status, err) == (0, "")
    assert head.startswith("4:") and len(head) == len("4:") + 64 + 1
    status, out, err = run("audit", "verify", "--config", config)
    assert (status, out) == (0, f"audit log intact: 4 rows, head {head.strip()}\n")
    status, out, err = run("audit", "verify", "--config", config, "--anchor", head.strip())
    assert (status, out) == (0, f"audit log intact: 4 rows, head {head.strip()}, and matches the anchor at row 4\n")

    _tamper(db_url, "UPDATE audit_log SET detail = replace(detail, '300', '30000') WHERE seq = 4")
    status, out, err = run("audit", "verify", "--config", config)
    assert (status, out, err) == (1, "", "callcenter: audit log: row 4 was changed\n")

    _tamper(db_url, "DELETE FROM audit_log WHERE seq = 4")
    assert run("audit", "verify", "--config", config)[0] == 0
    status, out, err = run("audit", "verify", "--config", config, "--anchor", head.strip())
    assert (status, err) == (1, "callcenter: audit log: the log ends at row 3, before the anchor at row 4: "
                                "rows after 3 were deleted\n")

    status, out, err = run("audit", "verify", "--config", config, "--anchor", "4:abc")
    assert status == 2
    assert "is not SEQ:HASH" in err


def test_commands_need_a_database_with_its_schema(run, tmp_path):
    config = server_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/none.sqlite")
    status, out, err = run("audit", "verify", "--config", config)
    assert status == 2
    assert err == (
        f"callcenter: {config}: [storage] url: database sqlite:///{tmp_path}/none.sqlite has no callcenter "
        "schema yet: run 'callcenter db upgrade'\n"
    )
    assert not os.path.exists(tmp_path / "none.sqlite")


def test_the_installed_command_reads_a_piped_password(config, database):
    result = subprocess.run(
        [os.path.join(BIN, "callcenter"), "account", "open", "--config", config, "--branch", "0101",
         "--name-zh", "张伟", "--sse", "A000000001", "--szse", "0000000001", "--password-stdin"],
        input=PASSWORD + "\n", capture_output=True, text=True, env=environment(), timeout=DEADLINE,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "opened account 0101000001 at branch 0101\n", "")
    [row] = _rows(database, fund_accounts)
    assert verify_password(row["password_hash"], PASSWORD)
