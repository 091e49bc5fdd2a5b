"""
The ``callcenter ivr`` commands (categories, editors and their categories,
experts, unlocking), run in this process on the backend chosen with --db,
plus one run of the installed command.
"""

import datetime

import pytest
import sqlalchemy as sa
from twisted.internet import defer

from callcenter.ivr import bulletins as b
from callcenter.passwords import verify_password
from callcenter.store.schema import editors
from processes import callcenter, server_config
from test_bulletins_store import BlockingStore, result_of

PIN = "246810"
NOON = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture
def config(database, tmp_path, db_url):
    for code, name_zh, name_en in (("1", "大盘综述", "Market overview"), ("2", "个股推荐", "Stock picks"),
                                   ("3", "板块点评", "Sectors")):
        database.transaction(b.add_category, code, name_zh, name_en)
    return server_config(tmp_path / "c.toml", db_url)


def add_editor(cli, config, *options, editor_id="7001"):
    return cli("ivr", "editor", "add", "--config", config, editor_id, " 周编辑 ", "--pin-stdin", *options,
               stdin=PIN + "\n")


def allowed(database, editor_id="7001"):
    return database.transaction(b.editor_categories, editor_id)


def test_an_editor_is_added_with_every_category(cli, config, database):
    assert add_editor(cli, config) == (0, "editor 7001 (周编辑) added, may publish in categories 1, 2, 3\n", "")
    [row] = database.transaction(lambda c: c.execute(sa.select(editors)).all())
    assert row.name == "周编辑" and verify_password(row.pin_hash, PIN)
    assert allowed(database) == ["1", "2", "3"]


def test_an_editor_is_added_with_the_categories_given(cli, config, database):
    status, out, err = add_editor(cli, config, "--category", "3", "--category", "1")
    assert (status, out, err) == (0, "editor 7001 (周编辑) added, may publish in categories 1, 3\n", "")
    status, out, err = add_editor(cli, config, "--category", "2", editor_id="7002")
    assert out == "editor 7002 (周编辑) added, may publish in category 2\n"
    assert allowed(database) == ["1", "3"]


def test_an_editor_with_an_unknown_category_is_not_added(cli, config, database):
    assert add_editor(cli, config, "--category", "9") == (2, "", "callcenter: there is no bulletin category 9\n")
    assert database.transaction(lambda c: c.execute(sa.select(editors)).all()) == []


def test_categories_are_allowed_and_revoked(cli, config, database):
    add_editor(cli, config, "--category", "1")
    assert cli("ivr", "editor", "allow", "--config", config, "7001", "3", "2") == (
        0, "editor 7001 may publish in categories 1, 2, 3\n", "")
    assert cli("ivr", "editor", "revoke", "--config", config, "7001", "1", "3") == (
        0, "editor 7001 may publish in category 2\n", "")
    assert cli("ivr", "editor", "revoke", "--config", config, "7001", "2") == (
        0, "editor 7001 may publish in no category\n", "")
    assert allowed(database) == []


@pytest.mark.parametrize("action", ["allow", "revoke"])
def test_an_unknown_editor_or_category_is_one_line(cli, config, database, action):
    add_editor(cli, config, "--category", "1")
    assert cli("ivr", "editor", action, "--config", config, "7009", "1") == (
        2, "", "callcenter: there is no editor 7009\n")
    assert cli("ivr", "editor", action, "--config", config, "7001", "2", "8") == (
        2, "", "callcenter: there is no bulletin category 8\n")
    status, _, err = cli("ivr", "editor", action, "--config", config, "7001")
    assert status == 2 and "the following arguments are required: CODE" in err
    assert allowed(database) == ["1"]


def lock_out(database, kind, key):
    credentials = b.Credentials(BlockingStore(database), defer.maybeDeferred, lambda: NOON)
    outcomes = [result_of(credentials.check(kind, key, "0000")) for _ in range(b.MAX_PIN_ATTEMPTS)]
    assert outcomes[-1] is b.PinCheck.LOCKED
    assert result_of(credentials.check(kind, key, PIN)) is b.PinCheck.LOCKED
    return credentials


def test_editors_and_experts_are_unlocked(cli, config, database):
    add_editor(cli, config)
    assert cli("ivr", "expert", "add", "--config", config, "601", "王建国", "Wang Jianguo", "--pin-stdin",
               stdin=PIN + "\n")[0] == 0
    for kind, key, said in (("editor", "7001", "editor 7001"), ("expert", "601", "expert mailbox 601")):
        credentials = lock_out(database, kind, key)
        assert cli("ivr", kind, "unlock", "--config", config, key) == (
            0, f"{said}: wrong PINs cleared, unlocked\n", "")
        assert result_of(credentials.check(kind, key, PIN)) is b.PinCheck.OK


def test_unlocking_nobody_is_one_line(cli, config):
    assert cli("ivr", "editor", "unlock", "--config", config, "7009") == (
        2, "", "callcenter: there is no editor 7009\n")
    assert cli("ivr", "expert", "unlock", "--config", config, "609") == (
        2, "", "callcenter: there is no expert mailbox 609\n")


def test_the_installed_command_allows(config, database):
    database.transaction(b.add_editor, "7001", "周编辑", "h", ["2"])
    allowing = callcenter("ivr", "editor", "allow", "--config", config, "7001", "1")
    assert (allowing.returncode, allowing.stdout) == (0, "editor 7001 may publish in categories 1, 2\n")
    assert allowed(database) == ["1", "2"]
