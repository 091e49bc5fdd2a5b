"""
Internet accounts, tiers, sessions and usage (L{callcenter.radius.accounts}),
the CHAP seal, and migration 0006, on the backend chosen with --db.
"""

import base64
import datetime

import alembic.command
import pytest
import sqlalchemy as sa

from callcenter.passwords import hash_password, verify_password
from callcenter.radius import accounts as a
from callcenter.radius.chap import ChapSecretError, ChapSecrets, chap_response_matches, chap_secrets_from_environment
from callcenter.store.schema import internet_accounts, radius_sessions
from internet_helpers import NOON, PASSWORD, UTC, add_investor, add_tiers, open_internet

KEY = bytes(range(32))
INTERNET_TABLES = {"internet_tiers", "internet_accounts", "radius_sessions", "internet_usage", "radius_disconnects"}


@pytest.fixture
def tiered(database):
    add_tiers(database)
    return database


def test_tiers_are_added_listed_and_changed(tiered):
    assert tiered.transaction(a.add_tier, "basic", 20 * 3600, 300, 1) is False
    assert tiered.transaction(a.tiers) == [
        a.Tier("basic", 20 * 3600, 300, 1),
        a.Tier("family", 10 * 3600, None, 2),
        a.Tier("vip", None, 1800, 1),
    ]


@pytest.mark.parametrize(
    "name, seconds, idle, simultaneous, problem",
    [
        ("Basic", 1, None, 1, "lower-case"),
        ("basic", -1, None, 1, "negative"),
        ("basic", 1, 0, 1, "idle timeout"),
        ("basic", 1, None, 0, "at least 1"),
    ],
)
def test_tier_mistakes_are_named(database, name, seconds, idle, simultaneous, problem):
    with pytest.raises(a.InternetAccountError, match=problem):
        database.transaction(a.add_tier, name, seconds, idle, simultaneous)


def test_an_account_takes_the_investors_language_and_has_its_own_password(tiered):
    opened = open_internet(tiered, "david", "10010005", language="en")
    assert opened.language == "en"
    assert (opened.fund_account_no, opened.tier, opened.enabled, opened.chap) == ("10010005", "basic", True, False)
    assert opened.created_at.tzinfo is not None
    stored = tiered.transaction(lambda c: c.execute(sa.select(internet_accounts.c.password_hash)).scalar())
    assert PASSWORD not in stored and verify_password(stored, PASSWORD)


@pytest.mark.parametrize(
    "fund_account_no, username, tier, problem",
    [
        ("10019999", "wei", "basic", "no fund account '10019999'"),
        ("10010001", "zhang", "basic", "fund account 10010001 already has the internet account 'zhang'"),
        ("10010002", "zhang", "basic", "the internet user name 'zhang' is taken"),
        ("10010002", "wang fang", "basic", "an internet user name is"),
        ("10010002", "wang", "gold", "no tier 'gold'"),
    ],
)
def test_opening_mistakes_are_named(tiered, fund_account_no, username, tier, problem):
    open_internet(tiered, "zhang", "10010001")
    add_investor(tiered, "10010002")
    with pytest.raises(a.InternetAccountError, match=problem):
        tiered.transaction(a.open_account, fund_account_no, username, "hash", tier)


def test_enable_disable_tier_password_and_unlock(tiered):
    open_internet(tiered, "zhang", "10010001")
    assert tiered.transaction(a.set_enabled, "zhang", False).enabled is False
    assert tiered.transaction(a.set_tier, "zhang", "vip").tier == "vip"
    with pytest.raises(a.InternetAccountError, match="no tier 'gold'"):
        tiered.transaction(a.set_tier, "zhang", "gold")
    for _ in range(3):
        tiered.transaction(a.record_failure, "zhang", 3, NOON)
    locked = tiered.transaction(a.account, "zhang")
    assert (locked.failed_logins, locked.locked_at) == (3, NOON)
    changed = tiered.transaction(a.set_password, "zhang", hash_password("new-password"), "g1:sealed")
    assert (changed.failed_logins, changed.locked_at, changed.chap) == (0, None, True)
    tiered.transaction(a.record_failure, "zhang", 3, NOON)
    assert tiered.transaction(a.unlock, "zhang").failed_logins == 0
    with pytest.raises(a.InternetAccountError, match="no internet account 'nobody'"):
        tiered.transaction(a.set_enabled, "nobody", True)


def test_failures_lock_once_and_a_right_password_clears_them(tiered):
    open_internet(tiered, "zhang", "10010001")
    assert [tiered.transaction(a.record_failure, "zhang", 2, NOON) for _ in range(2)] == [False, True]
    tiered.transaction(a.record_failure, "zhang", 2, NOON + datetime.timedelta(hours=1))
    assert tiered.transaction(a.account, "zhang").locked_at == NOON
    tiered.transaction(a.unlock, "zhang")
    tiered.transaction(a.record_failure, "zhang", 5, NOON)
    tiered.transaction(a.clear_failures, "zhang")
    assert tiered.transaction(a.account, "zhang").failed_logins == 0


def test_months_are_counted_in_china_standard_time():
    assert a.month_of(datetime.datetime(2026, 11, 30, 16, 0, tzinfo=UTC)) == "2026-12"
    assert a.month_of(datetime.datetime(2026, 11, 30, 15, 59, 59, tzinfo=UTC)) == "2026-11"
    assert a.month_of(NOON.timestamp()) == "2026-12"


def _session(connection, client, session_id, username, stopped=False):
    connection.execute(
        radius_sessions.insert().values(
            client=client, acct_session_id=session_id, username=username, started_at=NOON, updated_at=NOON,
            stopped_at=NOON if stopped else None, input_octets=2**40,
        )
    )


def test_sessions_online_by_user_and_by_client_and_disconnects_recorded(tiered):
    def sessions(connection):
        _session(connection, "bras-1", "a", "zhang")
        _session(connection, "bras-1", "b", "wang")
        _session(connection, "bras-2", "c", "zhang")
        _session(connection, "bras-2", "d", "zhang", stopped=True)

    tiered.transaction(sessions)
    online = tiered.transaction(a.sessions_online)
    assert [s.acct_session_id for s in online] == ["a", "b", "c"]
    assert online[0].input_octets == 2**40 and online[0].started_at == NOON
    assert [s.acct_session_id for s in tiered.transaction(a.sessions_online, username="zhang")] == ["a", "c"]
    assert [s.acct_session_id for s in tiered.transaction(a.sessions_online, client="bras-2")] == ["c"]
    assert tiered.transaction(a.sessions_online, username="zhang", client="bras-2")[0].id == online[2].id

    record = tiered.transaction(
        a.record_disconnect, online[0].id, "quota_exhausted", "nak", NOON.timestamp(), NOON, 3, 503
    )
    row = tiered.transaction(lambda c: c.execute(sa.text("SELECT * FROM radius_disconnects")).mappings().one())
    assert (row["id"], row["outcome"], row["attempts"], row["error_cause"]) == (record, "nak", 3, 503)
    with pytest.raises(ValueError, match="outcome 'maybe'"):
        tiered.transaction(a.record_disconnect, online[0].id, "staff", "maybe", NOON)


def test_usage_of_a_month_without_any_is_zero(database):
    assert database.transaction(a.usage, "zhang", "2026-12") == a.Usage("2026-12", 0, 0, 0)


@pytest.mark.parametrize("password", ["short", "x" * 65, "tab\there"])
def test_passwords_that_cannot_be_internet_passwords(password):
    with pytest.raises(a.InternetAccountError):
        a.check_password(password)


def test_chap_secrets_open_only_for_their_account_and_key():
    secrets = ChapSecrets(KEY)
    sealed = secrets.seal("zhang", PASSWORD)
    assert sealed.startswith("g1:") and PASSWORD not in sealed
    assert len(sealed) <= internet_accounts.c.chap_secret.type.length
    assert secrets.open("zhang", sealed) == PASSWORD.encode()
    assert secrets.seal("zhang", PASSWORD) != sealed  # a nonce each time
    for opener, username in ((secrets, "wang"), (ChapSecrets(bytes(32)), "zhang")):
        with pytest.raises(ChapSecretError):
            opener.open(username, sealed)
    with pytest.raises(ChapSecretError):
        secrets.open("zhang", sealed[:-4] + "AAAA")


def test_chap_longest_password_fits_its_column():
    sealed = ChapSecrets(KEY).seal("u" * 64, "p" * 64)
    assert len(sealed) <= internet_accounts.c.chap_secret.type.length


def test_the_chap_key_comes_from_the_environment_as_hex_or_base64():
    assert chap_secrets_from_environment(environ={}) is None
    for text in (KEY.hex(), base64.b64encode(KEY).decode()):
        secrets = chap_secrets_from_environment("KEY", {"KEY": text})
        assert secrets.open("u", ChapSecrets(KEY).seal("u", "pw")) == b"pw"
    with pytest.raises(ChapSecretError, match=r"^\$KEY: a CHAP key is 32 bytes"):
        chap_secrets_from_environment("KEY", {"KEY": "too short"})


def test_chap_response_is_rfc_1994():
    # MD5(ident || secret || challenge), computed independently.
    import hashlib

    challenge = bytes(range(16))
    response = hashlib.md5(b"\x07" + b"secret" + challenge).digest()
    assert chap_response_matches(b"secret", 7, challenge, response)
    assert not chap_response_matches(b"secret", 8, challenge, response)
    assert not chap_response_matches(b"secret", 7, challenge, None)


def test_migration_0006_upgrades_a_database_at_0005_and_downgrades(database):
    with database.engine.begin() as connection:
        alembic.command.downgrade(database._alembic_config(connection), "0005")
    assert not INTERNET_TABLES & set(sa.inspect(database.engine).get_table_names())
    add_investor(database, "10010001")
    database.upgrade()
    assert database.current_revision() == database.head()
    assert INTERNET_TABLES <= set(sa.inspect(database.engine).get_table_names())
    add_tiers(database)
    assert database.transaction(a.open_account, "10010001", "zhang", "hash", "basic").language == "zh"
    with pytest.raises(sa.exc.IntegrityError):
        database.transaction(
            lambda c: c.execute(sa.text("UPDATE internet_tiers SET simultaneous_use = 0 WHERE name = 'basic'"))
        )
