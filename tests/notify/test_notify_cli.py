"""
``callcenter notify``: subscriptions and the outbox from a shell, run in
this process, on the backend chosen with --db.
"""

import datetime

import pytest
import sqlalchemy as sa

from callcenter.cli import main
from callcenter.notify import records
from callcenter.store.schema import audit_log, notify_messages
from investors import add_investor
from processes import server_config

UTC = datetime.timezone.utc


class Shell:
    def __init__(self, capfd, monkeypatch, config):
        self.capfd = capfd
        self.config = config
        monkeypatch.setattr("getpass.getuser", lambda: "ops01")

    def __call__(self, action, *argv):
        try:
            status = main(["notify", action, "--config", self.config, *argv])
        except SystemExit as e:
            status = e.code
        out, err = self.capfd.readouterr()
        return status, out, err


@pytest.fixture
def shell(capfd, monkeypatch, database, db_url, tmp_path):
    add_investor(database, "10010001")
    return Shell(capfd, monkeypatch, server_config(tmp_path / "c.toml", db_url))


def test_subscribe_list_change_and_unsubscribe_audited(shell, database):
    status, out, _ = shell("subscribe", "10010001", "sms", "+8613800138000", "--events", "fill,alert",
                           "--quiet", "22:00-07:00")
    assert status == 0
    assert "sms +8613800138000: alert, fill in zh, quiet hours 22:00-07:00" in out
    status, out, _ = shell("subscribe", "10010001", "email", "Zhang@Example.com", "--language", "en")
    assert status == 0 and "email zhang@example.com: alert, fill, rejection in en" in out
    status, out, _ = shell("subscribe", "10010001", "sms", "+8613800138000", "--events", "fill")
    status, out, _ = shell("subscriptions", "10010001")
    assert out.splitlines()[0].endswith("sms +8613800138000: fill in zh, quiet hours none")
    assert len(out.splitlines()) == 2
    status, out, _ = shell("unsubscribe", "10010001", "email", "zhang@example.com")
    assert status == 0
    status, out, _ = shell("unsubscribe", "10010001", "email", "zhang@example.com")
    assert status == 2 and "has no email subscription" in _
    actions = database.transaction(
        lambda c: c.execute(sa.select(audit_log.c.action, audit_log.c.agent_id).order_by(audit_log.c.seq)).all()
    )
    assert [tuple(a) for a in actions] == [
        ("notify_subscribe", "ops01"), ("notify_subscribe", "ops01"), ("notify_subscribe", "ops01"),
        ("notify_unsubscribe", "ops01"),
    ]


@pytest.mark.parametrize("argv, problem", [
    (("10010001", "sms", "12ab"), "'12ab' is not a valid sms address"),
    (("10010001", "email", "nobody", "--events", "fills"), "events must be some of fill, alert, rejection"),
    (("10010001", "sms", "+8613800138000", "--quiet", "25:00-07:00"), "not a time of day"),
    (("99999999", "sms", "+8613800138000"), "no fund account 99999999"),
])
def test_mistakes_are_one_line_and_change_nothing(shell, database, argv, problem):
    status, out, err = shell("subscribe", *argv)
    assert status == 2 and problem in err and len(err.strip().splitlines()) == 1
    assert database.transaction(lambda c: c.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar()) == 0


def _dead_letter(database):
    from callcenter.notify.records import Draft, Outcome

    now = datetime.datetime(2026, 12, 10, 2, 30, tzinfo=UTC)
    draft = Draft("fill:7:100:sms:+8613800138000", "10010001", "fill", "sms", "+8613800138000", "zh", "", "成交回报", now)
    (stored,) = database.transaction(records.store_drafts, [draft], now)
    message_id = stored.message.message_id
    database.transaction(records.record_outcomes, [Outcome(message_id, "sms", records.DEAD, 1, "no such number")], now)
    return message_id


def test_messages_show_and_retry_a_dead_letter(shell, database):
    message_id = _dead_letter(database)
    status, out, _ = shell("messages", "--state", "dead")
    assert status == 0 and f"#{message_id} " in out and ": dead, 1 attempt (no such number)" in out
    status, out, _ = shell("show", str(message_id))
    lines = out.splitlines()
    assert lines[-1] == "成交回报"
    assert [line.split()[2] for line in lines if line.startswith("  ")] == ["queued", "dead:"]
    status, out, _ = shell("retry", str(message_id))
    assert status == 0
    row = database.transaction(
        lambda c: c.execute(sa.select(notify_messages).where(notify_messages.c.message_id == message_id)).mappings().one()
    )
    assert (row["state"], row["attempts"]) == ("queued", 0)
    status, _, err = shell("retry", str(message_id))
    assert status == 2 and "is not a dead letter" in err
    status, _, err = shell("show", "999")
    assert status == 2 and "no message #999" in err
