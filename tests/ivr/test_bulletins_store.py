"""
The voice information service's and expert mailboxes' data
(L{callcenter.ivr.bulletins}) on the backend chosen with --db.
"""

import datetime

import pytest
import sqlalchemy as sa
from twisted.internet import defer

from callcenter.ivr import bulletins as b
from callcenter.passwords import hash_password
from callcenter.store.schema import editors

UTC = datetime.timezone.utc
CST = datetime.timezone(datetime.timedelta(hours=8))
NOON = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
HOUR = datetime.timedelta(hours=1)


class BlockingStore:
    """IStore.transaction over a L{Database}, run at once: the functions are what is tested here."""

    def __init__(self, database):
        self.database = database

    def transaction(self, work, *args, **kwargs):
        return defer.maybeDeferred(self.database.transaction, work, *args, **kwargs)


def result_of(d):
    results = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Exception) or hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


@pytest.fixture
def category(database):
    database.transaction(b.add_category, "1", "个股点评", "Share commentary")
    return "1"


def test_categories_in_menu_order_and_renamed_in_place(database):
    database.transaction(b.add_category, "2", "大盘分析", "Market analysis")
    database.transaction(b.add_category, "1", "公司公告", "Company news")
    database.transaction(b.add_category, "2", "大盘走势", "Market trend")
    assert database.transaction(b.categories) == [
        b.Category("1", "公司公告", "Company news"),
        b.Category("2", "大盘走势", "Market trend"),
    ]


@pytest.mark.parametrize("code", ["0", "9", "12", "a", ""])
def test_a_category_is_one_key_from_1_to_8(database, code):
    with pytest.raises(ValueError):
        database.transaction(b.add_category, code, "x", "x")


def test_current_bulletins_are_published_not_expired_and_newest_first(database, category):
    add = lambda path, publish_at, expire_at=None: database.transaction(  # noqa: E731
        b.add_bulletin, category, path, 1000, publish_at, expire_at=expire_at
    )
    add("old.wav", NOON - 3 * HOUR)
    add("expired.wav", NOON - 2 * HOUR, NOON - HOUR)
    add("newer.wav", NOON - HOUR, NOON + HOUR)
    add("future.wav", NOON + HOUR)
    # Given in another zone: the same instant.
    add("cst.wav", (NOON - 30 * datetime.timedelta(minutes=1)).astimezone(CST))
    current = database.transaction(b.current_bulletins, category, NOON)
    assert [x.audio_path for x in current] == ["cst.wav", "newer.wav", "old.wav"]
    assert current[1].expire_at == NOON + HOUR
    assert current[1].publish_at.tzinfo is not None
    later = database.transaction(b.current_bulletins, category, NOON + HOUR)
    assert [x.audio_path for x in later] == ["future.wav", "cst.wav", "old.wav"]
    assert database.transaction(b.current_bulletins, "2", NOON) == []


def test_a_bulletin_cannot_expire_before_it_is_published(database, category):
    with pytest.raises(ValueError):
        database.transaction(b.add_bulletin, category, "x.wav", 1, NOON, expire_at=NOON)


def test_naive_times_are_refused(database, category):
    with pytest.raises(ValueError, match="aware"):
        database.transaction(b.add_bulletin, category, "x.wav", 1, NOON.replace(tzinfo=None))


@pytest.fixture
def credentials(database):
    database.transaction(b.add_editor, "1001", "Editor", hash_password("2468"))
    database.transaction(b.add_expert, "88", "王专家", "Expert Wang", hash_password("1357"))
    return b.Credentials(BlockingStore(database), defer.maybeDeferred, lambda: NOON)


def failed_attempts(database, editor_id):
    return database.transaction(
        lambda c: c.execute(
            sa.select(editors.c.failed_attempts, editors.c.locked_at).where(editors.c.editor_id == editor_id)
        ).one()
    )


def test_a_right_pin_clears_the_wrong_ones_before_it(database, credentials):
    assert result_of(credentials.check("editor", "1001", "1111")) is b.PinCheck.WRONG
    assert failed_attempts(database, "1001").failed_attempts == 1
    assert result_of(credentials.check("editor", "1001", "2468")) is b.PinCheck.OK
    assert failed_attempts(database, "1001").failed_attempts == 0
    assert result_of(credentials.check("expert", "88", "1357")) is b.PinCheck.OK


def test_five_wrong_pins_lock_even_against_the_right_one(database, credentials):
    outcomes = [result_of(credentials.check("editor", "1001", "0000")) for _ in range(5)]
    assert outcomes == [b.PinCheck.WRONG] * 4 + [b.PinCheck.LOCKED]
    assert failed_attempts(database, "1001").locked_at is not None
    assert result_of(credentials.check("editor", "1001", "2468")) is b.PinCheck.LOCKED
    assert database.transaction(b.unlock, "editor", "1001")
    assert result_of(credentials.check("editor", "1001", "2468")) is b.PinCheck.OK


def test_an_unknown_id_is_a_wrong_pin(credentials):
    assert result_of(credentials.check("editor", "9999", "2468")) is b.PinCheck.WRONG
    assert result_of(credentials.check("expert", "1001", "2468")) is b.PinCheck.WRONG


def test_ids_are_digits(database):
    with pytest.raises(ValueError):
        database.transaction(b.add_editor, "ab", "x", "h")
    with pytest.raises(ValueError):
        database.transaction(b.add_expert, "123456789", "x", "x", "h")


@pytest.fixture
def three_categories(database):
    for code, name in (("3", "Sectors"), ("1", "News"), ("2", "Market")):
        database.transaction(b.add_category, code, name, name)


def test_an_editor_is_added_with_every_category_or_those_given(database, three_categories):
    assert database.transaction(b.add_editor, "1001", "Editor", "h") == ["1", "2", "3"]
    assert database.transaction(b.add_editor, "1002", "Editor", "h", ["3", "1"]) == ["1", "3"]
    assert database.transaction(b.add_editor, "1003", "Editor", "h", []) == []
    assert database.transaction(b.editor_categories, "1002") == ["1", "3"]
    assert database.transaction(b.editor_categories, "9999") == []
    # A category added later is nobody's until allowed.
    database.transaction(b.add_category, "4", "New", "New")
    assert database.transaction(b.editor_categories, "1001") == ["1", "2", "3"]


def test_categories_are_allowed_and_revoked_in_menu_order(database, three_categories):
    database.transaction(b.add_editor, "1001", "Editor", "h", ["2"])
    assert database.transaction(b.allow_categories, "1001", ["3", "1", "2", "3"]) == ["1", "2", "3"]
    assert database.transaction(b.revoke_categories, "1001", ["2", "2"]) == ["1", "3"]
    # Revoking what was not allowed changes nothing.
    assert database.transaction(b.revoke_categories, "1001", ["2"]) == ["1", "3"]
    assert database.transaction(b.revoke_categories, "1001", ["1", "3"]) == []


@pytest.mark.parametrize("change", ["allow_categories", "revoke_categories"])
def test_an_unknown_editor_or_category_changes_nothing(database, three_categories, change):
    database.transaction(b.add_editor, "1001", "Editor", "h", ["1", "2"])
    with pytest.raises(ValueError, match="there is no editor 9999"):
        database.transaction(getattr(b, change), "9999", ["1"])
    with pytest.raises(ValueError, match="there is no bulletin category 7, 9"):
        database.transaction(getattr(b, change), "1001", ["3", "9", "7", "1"])
    assert database.transaction(b.editor_categories, "1001") == ["1", "2"]
    with pytest.raises(ValueError, match="there is no bulletin category 5"):
        database.transaction(b.add_editor, "1002", "Editor", "h", ["5"])
    assert database.transaction(b.unlock, "editor", "1002") is False


def test_drafts_are_invisible_to_investors_and_published_newest_first(database):
    database.transaction(b.add_expert, "88", "王专家", "Expert Wang", "h")
    database.transaction(b.add_expert, "89", "李专家", "Expert Li", "h")
    first = database.transaction(b.add_commentary, "88", "c/1.wav", 5000)
    second = database.transaction(b.add_commentary, "88", "c/2.wav", 6000)
    draft = database.transaction(b.add_commentary, "88", "c/3.wav", 7000)
    assert database.transaction(b.published_commentaries, "88") == []
    assert database.transaction(b.publish_commentary, first, "88", NOON)
    assert database.transaction(b.publish_commentary, second, "88", NOON + HOUR)
    # Not twice, and not another expert's.
    assert not database.transaction(b.publish_commentary, first, "88", NOON + 2 * HOUR)
    assert not database.transaction(b.publish_commentary, draft, "89", NOON)
    heard = database.transaction(b.published_commentaries, "88")
    assert [c.audio_path for c in heard] == ["c/2.wav", "c/1.wav"]
    assert heard[0].published_at == NOON + HOUR
    assert database.transaction(b.published_commentaries, "89") == []
    assert [c.status for c in database.transaction(b.expert_commentaries, "88")] == ["draft", "published", "published"]


def test_a_deleted_commentary_is_heard_by_no_one(database):
    database.transaction(b.add_expert, "88", "王专家", "Expert Wang", "h")
    published = database.transaction(b.add_commentary, "88", "c/1.wav", 5000)
    database.transaction(b.publish_commentary, published, "88", NOON)
    assert database.transaction(b.delete_commentary, published, "89") is None
    assert database.transaction(b.delete_commentary, published, "88") == "c/1.wav"
    assert database.transaction(b.delete_commentary, published, "88") is None
    assert database.transaction(b.published_commentaries, "88") == []
    assert database.transaction(b.expert_commentaries, "88") == []
    assert database.transaction(b.expert, "88") == b.Expert("88", "王专家", "Expert Wang")
    assert database.transaction(b.expert, "77") is None


def test_new_recordings_have_generated_names_under_the_directory(tmp_path):
    relative, absolute = b.new_recording(str(tmp_path), "bulletins", NOON)
    assert relative.startswith("bulletins/20261207/") and relative.endswith(".wav")
    assert absolute == str(tmp_path / relative)
    assert (tmp_path / relative).parent.is_dir()
    assert b.new_recording(str(tmp_path), "bulletins", NOON)[0] != relative
