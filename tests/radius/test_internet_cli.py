"""
``callcenter internet``: investors' internet accounts from a shell, run in
this process (argon2 at its test cost), on the backend chosen with --db.
"""

import io
import sys
import time

import pytest
import sqlalchemy as sa

from callcenter.cli import main
from callcenter.passwords import verify_password
from callcenter.radius.accounts import month_of
from callcenter.radius.chap import ChapSecrets
from callcenter.store.schema import audit_log, internet_accounts, internet_usage, radius_sessions
from internet_helpers import NOON, PASSWORD, add_investor, add_tiers
from processes import server_config

KEY = bytes(range(32))


class Shell:
    """Runs C{callcenter ...} as the operator ops01: C{(status, stdout, stderr)}."""

    def __init__(self, capfd, monkeypatch, config):
        self.capfd = capfd
        self.monkeypatch = monkeypatch
        self.config = config
        monkeypatch.setattr("getpass.getuser", lambda: "ops01")
        monkeypatch.delenv("CALLCENTER_RADIUS_CHAP_KEY", raising=False)

    def __call__(self, action, *argv, stdin=""):
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            status = main(["internet", action, "--config", self.config, *argv])
        except SystemExit as e:
            status = e.code
        out, err = self.capfd.readouterr()
        return status, out, err


@pytest.fixture
def shell(capfd, monkeypatch, database, db_url, tmp_path):
    add_tiers(database)
    add_investor(database, "10010001")
    add_investor(database, "10010005", language="en")
    return Shell(capfd, monkeypatch, server_config(tmp_path / "c.toml", db_url))


def _row(database, username="zhang"):
    query = sa.select(internet_accounts).where(internet_accounts.c.username == username)
    return database.transaction(lambda c: c.execute(query).mappings().first())


def _opened(shell, *argv, username="zhang", fund_account="10010001"):
    return shell("open", fund_account, username, "--password-stdin", *argv, stdin=PASSWORD + "\n")


def test_open_hashes_the_password_takes_the_investors_language_and_is_audited(shell, database):
    assert _opened(shell) == (
        0, "internet account zhang opened for fund account 10010001: tier basic, PAP, language zh\n", ""
    )
    row = _row(database)
    assert verify_password(row["password_hash"], PASSWORD) and row["chap_secret"] is None
    status, out, _ = _opened(shell, "--tier", "vip", username="david", fund_account="10010005")
    assert out.endswith("tier vip, PAP, language en\n")
    audited = database.transaction(lambda c: c.execute(sa.select(audit_log)).mappings().all())
    assert [(r["action"], r["fund_account_no"], r["agent_id"], r["channel"]) for r in audited] == [
        ("internet_open", "10010001", "ops01", "staff"), ("internet_open", "10010005", "ops01", "staff")
    ]
    assert PASSWORD not in str(audited)


def test_chap_needs_the_key_from_the_environment(shell, database):
    status, out, err = _opened(shell, "--chap")
    assert (status, out) == (2, "")
    assert err == (
        "callcenter: CHAP needs the key in $CALLCENTER_RADIUS_CHAP_KEY (32 random bytes: openssl rand -hex 32)\n"
    )
    assert _row(database) is None
    shell.monkeypatch.setenv("CALLCENTER_RADIUS_CHAP_KEY", KEY.hex())
    assert _opened(shell, "--chap")[1].endswith("tier basic, PAP, CHAP and MS-CHAP, language zh\n")
    assert ChapSecrets(KEY).open("zhang", _row(database)["chap_secret"]) == PASSWORD.encode()


def test_a_password_on_the_command_line_is_refused_and_not_repeated(shell, database):
    for argv in (("--password", PASSWORD), ("--password-stdin", PASSWORD)):
        status, out, err = shell("open", "10010001", "zhang", *argv)
        assert status == 2 and PASSWORD not in out + err
        assert "unrecognized arguments: not shown" in err
    status, out, err = shell("open", "10010001", "zhang", "--password-stdin", stdin="short\n")
    assert (status, err) == (2, "callcenter: an internet password is 6 to 64 characters\n")
    status, out, err = shell("open", "10010001", "zhang")
    assert "give it on standard input with --password-stdin" in err
    assert _row(database) is None


def test_mistakes_are_one_line(shell):
    _opened(shell)
    assert _opened(shell, username="other")[2] == (
        "callcenter: fund account 10010001 already has the internet account 'zhang'\n"
    )
    assert shell("tier", "zhang", "gold")[2] == (
        "callcenter: no tier 'gold': add it with 'callcenter internet tier-add'\n"
    )
    for action in ("enable", "show"):
        assert shell(action, "nobody")[1:] == ("", "callcenter: no internet account 'nobody'\n")


def test_enable_disable_tier_unlock(shell, database):
    _opened(shell)
    assert shell("disable", "zhang")[1].startswith("internet account zhang: disabled")
    assert _row(database)["enabled"] is False
    assert shell("enable", "zhang")[1] == "internet account zhang: enabled\n"
    assert shell("tier", "zhang", "family")[1] == "internet account zhang: tier family\n"
    database.transaction(lambda c: c.execute(internet_accounts.update().values(failed_logins=5, locked_at=NOON)))
    assert shell("unlock", "zhang")[1] == "internet account zhang: failed logins cleared, unlocked\n"
    assert (_row(database)["tier"], _row(database)["locked_at"]) == ("family", None)


def test_passwd_keeps_chap_as_it_was_unless_told(shell, database):
    shell.monkeypatch.setenv("CALLCENTER_RADIUS_CHAP_KEY", KEY.hex())
    _opened(shell, "--chap")
    status, out, err = shell("passwd", "zhang", "--password-stdin", stdin="another-one\n")
    assert out == "internet account zhang: password set (PAP, CHAP and MS-CHAP), failed logins cleared, unlocked\n", err
    assert ChapSecrets(KEY).open("zhang", _row(database)["chap_secret"]) == b"another-one"
    assert verify_password(_row(database)["password_hash"], "another-one")
    assert shell("passwd", "zhang", "--no-chap", "--password-stdin", stdin="third-one\n")[1].endswith(
        "(PAP only), failed logins cleared, unlocked\n"
    )
    assert _row(database)["chap_secret"] is None


def test_tiers_added_changed_and_listed(shell):
    assert shell("tier-add", "student", "--hours", "12.5", "--idle", "300")[1] == (
        "tier student added: 12.5 h a month, idle timeout 300 s, 1 session at a time\n"
    )
    assert shell("tier-add", "vip", "--hours", "unlimited", "--simultaneous", "3")[1] == (
        "tier vip changed: unlimited, no idle timeout, 3 sessions at a time\n"
    )
    assert shell("tiers")[1] == (
        "basic: 30 h a month, idle timeout 600 s, 1 session at a time\n"
        "family: 10 h a month, no idle timeout, 2 sessions at a time\n"
        "student: 12.5 h a month, idle timeout 300 s, 1 session at a time\n"
        "vip: unlimited, no idle timeout, 3 sessions at a time\n"
    )
    assert shell("tier-add", "x", "--hours", "many")[2] == (
        "callcenter: --hours: expected hours a month from 0 to 744, or unlimited, not 'many'\n"
    )
    assert shell("tier-add", "Bad", "--hours", "1")[0] == 2


def test_online_and_show(shell, database):
    _opened(shell)
    _opened(shell, username="david", fund_account="10010005")

    def sessions(connection):
        for username, session_id in (("zhang", "s1"), ("david", "s2")):
            connection.execute(radius_sessions.insert().values(
                client="bras-1", acct_session_id=session_id, username=username, nas_ip="10.0.0.1",
                framed_ip="100.64.0.7", started_at=NOON, updated_at=NOON, session_time=5400, input_octets=1000,
                output_octets=2000,
            ))
        month = month_of(time.time())
        connection.execute(internet_usage.insert().values(username="zhang", month=month, seconds=5400,
                                                          input_octets=1000, output_octets=2000))

    database.transaction(sessions)
    status, out, err = shell("online")
    line = ("#1 zhang at bras-1 (10.0.0.1): session s1, address 100.64.0.7, since 2026-12-10 12:00:00, 1 h 30 min, "
            "1000 octets in, 2000 out")  # #1: the id internet kick takes
    assert out.splitlines() == [line, line.replace("#1 zhang", "#2 david").replace("s1", "s2"),
                                "2 sessions online (times in Beijing time)"]
    assert shell("online", "--user", "zhang")[1].splitlines()[-1] == "1 session online (times in Beijing time)"
    assert shell("online", "--client", "bras-9")[1] == "0 sessions online (times in Beijing time)\n"
    status, out, err = shell("show", "zhang")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[:3] == [
        "internet account zhang of fund account 10010001",
        "  enabled; tier basic: 30 h a month, idle timeout 600 s, 1 session at a time",
        "  PAP only; messages in zh; logins: 0 failed, not locked",
    ]
    assert lines[3].endswith(": 1 h 30 min used, 28 h 30 min left; 1000 octets in, 2000 out")
    assert lines[4:] == ["  online: 1", f"    {line}"]
