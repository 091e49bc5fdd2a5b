"""
The voice information service and expert mailbox flows
(L{callcenter.ivr.flows.information}) over a scripted channel and the real
store functions on the backend chosen with --db.

The store is L{BlockingStore}: IStore.transaction run at once on a
L{Database}, so that the flow, the channel's script and the store all move
with one L{Clock}.  PINs are checked with argon2 on the test's thread for
the same reason.  L{RecordingChannel} fakes recording: record() writes a
one-second 8 kHz WAV at once (as a real recording has a file from its
start) and its stop() fires at once; the file's content is not what is
tested, where it goes and whether it stays is.
"""

import datetime
import os
import wave

import pytest
import sqlalchemy as sa
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from callcenter.ivr import bulletins as b
from callcenter.ivr.dialogue import BACK, CallEnded, Dialogue, MemoryPrompter
from callcenter.ivr.flows.information import Bulletins, Experts
from callcenter.ivr.phrases import PHRASES
from callcenter.passwords import hash_password
from callcenter.sip.sdp import AudioFormat
from callcenter.store.schema import bulletins as bulletins_table
from callcenter.store.schema import commentaries
from flow_prompts import prompt_names
from test_bulletins_store import BlockingStore
from test_dialogue import HANGUP, ScriptedChannel, run

UTC = datetime.timezone.utc
NOON = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
HOUR = datetime.timedelta(hours=1)
EDITOR = ["9", "1001#", "2468#"]
EXPERT = ["9", "88#", "1357#"]


class FakeRecording:
    def __init__(self, path):
        self.path = path
        self.stopped = 0

    def stop(self, trim_seconds=0.0):
        self.stopped += 1
        self.trimmed = trim_seconds
        return defer.succeed(self)


class RecordingChannel(ScriptedChannel):
    """A ScriptedChannel whose record() writes a WAV of C{recorded_seconds} at once."""

    recorded_seconds = 1

    def __init__(self, clock, script=(), codec=None):
        super().__init__(clock, script, codec)
        self.recordings = []

    def record(self, rx=None, tx=None, mixed=None):
        write_wav(rx, self.recorded_seconds)
        recording = FakeRecording(rx)
        self.recordings.append(recording)
        return recording


def write_wav(path, seconds=1):
    with wave.open(path, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(8000)
        file.writeframes(b"\x10\x00" * 8000 * seconds)


@pytest.fixture
def clock():
    clock = Clock()
    clock.advance(NOON.timestamp())
    return clock


@pytest.fixture
def audio_dir(tmp_path):
    return str(tmp_path / "recordings")


@pytest.fixture
def store(database):
    database.transaction(b.add_category, "1", "公司公告", "Company news")
    database.transaction(b.add_category, "2", "大盘分析", "Market analysis")
    database.transaction(b.add_editor, "1001", "Editor", hash_password("2468"))
    database.transaction(b.add_expert, "88", "王专家", "Expert Wang", hash_password("1357"))
    return BlockingStore(database)


@pytest.fixture
def prompter():
    return MemoryPrompter()


def flow_of(kind, store, prompter, audio_dir, clock):
    credentials = b.Credentials(store, defer.maybeDeferred, lambda: NOON)
    return kind(store, Dialogue(prompter), audio_dir, clock, credentials)


def call(kind, store, prompter, audio_dir, clock, script, codec=None):
    channel = RecordingChannel(clock, script, codec)
    result = run(clock, flow_of(kind, store, prompter, audio_dir, clock)(channel))
    return channel, result


def heard(prompter):
    return [name for names in prompter.played for name in names]


def played_audio(channel):
    """The recordings played, as the AGI-style names the flow gives a channel without a codec."""
    return [os.path.basename(p[0]) for p in channel.played if len(p) == 1 and os.path.isabs(p[0])]


def rows(store, table):
    return store.database.transaction(lambda c: c.execute(sa.select(table).order_by(table.c.id)).all())


def files(audio_dir):
    return sorted(
        os.path.relpath(os.path.join(where, name), audio_dir)
        for where, _, names in os.walk(audio_dir) for name in names
    )


@pytest.mark.parametrize("language", ["zh", "en"])
def test_every_prompt_the_flows_play_exists(language):
    from callcenter.ivr.flows import information

    names = {f"{language}/{name}" for name in prompt_names(information)}
    assert len(names) > 30
    assert names <= set(PHRASES), names - set(PHRASES)


def publish(store, audio_dir, name, publish_at, expire_at=None, category="1"):
    path = os.path.join(audio_dir, "bulletins", f"{name}.wav")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_wav(path)
    store.database.transaction(
        b.add_bulletin, category, f"bulletins/{name}.wav", 1000, publish_at, expire_at=expire_at
    )


def test_listening_newest_first_with_repeat_next_previous_and_back(store, prompter, audio_dir, clock):
    publish(store, audio_dir, "old", NOON - 2 * HOUR)
    publish(store, audio_dir, "new", NOON - HOUR)
    publish(store, audio_dir, "expired", NOON - 3 * HOUR, NOON - HOUR)
    publish(store, audio_dir, "tomorrow", NOON + 24 * HOUR)
    channel, result = call(Bulletins, store, prompter, audio_dir, clock, ["1", "5", "6", "6", "4", "1", "*", "*"])
    assert result is BACK
    assert played_audio(channel) == ["new", "new", "old", "new", "new"]
    said = heard(prompter)
    assert said[0] == "zh/choose-category"
    assert said.count("zh/end-of-bulletin") == 5
    assert said.count("zh/no-more-bulletins") == 1
    assert said[-1] == "zh/choose-category"


def test_a_category_without_bulletins_says_so(store, prompter, audio_dir, clock):
    channel, result = call(Bulletins, store, prompter, audio_dir, clock, ["2", "*"])
    assert result is BACK
    assert heard(prompter) == ["zh/choose-category", "zh/no-bulletins", "zh/choose-category"]
    assert played_audio(channel) == []


def test_a_sip_call_hears_the_recording_as_frames_of_its_codec(store, prompter, audio_dir, clock):
    publish(store, audio_dir, "new", NOON - HOUR)
    channel, _ = call(Bulletins, store, prompter, audio_dir, clock, ["1", "*", "*"],
                      codec=AudioFormat(0, "PCMU", 8000))
    frames = [p for p in channel.played if p and isinstance(p[0], bytes)]
    assert len(frames) == 1 and len(frames[0]) == 50 and all(len(f) == 160 for f in frames[0])


def test_an_unknown_category_key_is_invalid(store, prompter, audio_dir, clock):
    _, result = call(Bulletins, store, prompter, audio_dir, clock, ["3", "*"])
    assert result is BACK
    assert "zh/invalid-input" in heard(prompter)


def test_an_editor_records_hears_and_publishes_a_bulletin(store, prompter, audio_dir, clock):
    script = EDITOR + ["2", 3, "#", "1", "2", "*"]
    channel, result = call(Bulletins, store, prompter, audio_dir, clock, script)
    assert result is BACK
    [row] = rows(store, bulletins_table)
    assert (row.category, row.recorded_by, row.duration_ms, row.expire_at) == ("2", "1001", 1000, None)
    assert row.audio_path.startswith("bulletins/20261207/")
    assert files(audio_dir) == [row.audio_path]
    assert channel.recordings[0].stopped
    assert channel.recordings[0].trimmed == 0.25  # the # that ended it is left out
    # Heard back once, again on 1, then published on 2.
    assert played_audio(channel) == [os.path.splitext(os.path.basename(row.audio_path))[0]] * 2
    said = heard(prompter)
    assert said.index("zh/record-after-tone") < said.index("zh/review-recording") < said.index("zh/bulletin-published")
    # Callers hear it at once.
    assert [x.id for x in store.database.transaction(b.current_bulletins, "2", NOON + HOUR)] == [row.id]


def test_an_editor_chooses_among_the_categories_allowed_only(store, prompter, audio_dir, clock):
    store.database.transaction(b.revoke_categories, "1001", ["1"])
    flow = flow_of(Bulletins, store, prompter, audio_dir, clock)
    flow.names = FakeNames()
    channel = RecordingChannel(clock, EDITOR + ["1", "2", 3, "#", "2", "*"])
    assert run(clock, flow(channel)) is BACK
    said = heard(prompter)
    menu = said.index("zh/enter-pin") + 1
    # Named and offered: category 2 only; its 1 is a wrong key.
    assert said[menu:menu + 5] == ["zh/said-4", "zh/press", "zh/digit-2", "zh/back-star", "zh/invalid-input"]
    # The callers' menu names both, the editor's only theirs.
    assert flow.names.asked[:3] == [("公司公告", "zh"), ("大盘分析", "zh"), ("大盘分析", "zh")]
    [row] = rows(store, bulletins_table)
    assert (row.category, row.recorded_by) == ("2", "1001")


def test_an_editor_allowed_no_category_is_told_so_and_records_nothing(store, prompter, audio_dir, clock):
    store.database.transaction(b.revoke_categories, "1001", ["1", "2"])
    channel, result = call(Bulletins, store, prompter, audio_dir, clock, EDITOR + ["*"])
    assert result is BACK
    said = heard(prompter)
    assert said[said.index("zh/enter-pin") + 1:] == ["zh/no-category-to-record", "zh/choose-category"]
    assert channel.recordings == [] and files(audio_dir) == []


def test_an_editor_may_record_again_or_cancel_leaving_no_file(store, prompter, audio_dir, clock):
    script = EDITOR + ["1", 2, "#", "3", 2, "#", "*", "*"]
    channel, result = call(Bulletins, store, prompter, audio_dir, clock, script)
    assert result is BACK
    assert len(channel.recordings) == 2
    assert rows(store, bulletins_table) == []
    assert files(audio_dir) == []
    assert "zh/recording-deleted" in heard(prompter)


def test_a_hang_up_while_recording_publishes_nothing_and_deletes_the_file(store, prompter, audio_dir, clock):
    channel, result = call(Bulletins, store, prompter, audio_dir, clock, EDITOR + ["1", 2, HANGUP])
    assert isinstance(result, Failure) and result.check(CallEnded)
    assert len(channel.recordings) == 1 and channel.recordings[0].stopped
    assert rows(store, bulletins_table) == []
    assert files(audio_dir) == []


def test_a_hang_up_while_reviewing_publishes_nothing_and_deletes_the_file(store, prompter, audio_dir, clock):
    channel, result = call(Bulletins, store, prompter, audio_dir, clock, EDITOR + ["1", 2, "#", 2, HANGUP])
    assert result.check(CallEnded)
    assert rows(store, bulletins_table) == []
    assert files(audio_dir) == []


def test_an_editor_with_a_wrong_pin_tries_again_and_is_ended_after_three(store, prompter, audio_dir, clock):
    channel, result = call(
        Bulletins, store, prompter, audio_dir, clock, ["9", "1001#", "1111#", "1001#", "2222#", "1001#", "3333#"]
    )
    assert result is None
    said = heard(prompter)
    assert said.count("zh/wrong-password") == 2
    assert said[-1] == "zh/too-many-attempts"
    assert channel.recordings == []


def test_five_wrong_pins_lock_the_editor_out_across_calls(store, prompter, audio_dir, clock):
    wrong = ["1001#", "0000#"]
    call(Bulletins, store, prompter, audio_dir, clock, ["9"] + wrong * 3)
    prompter.played.clear()
    _, result = call(Bulletins, store, prompter, audio_dir, clock, ["9"] + wrong * 2)
    assert result is None
    assert heard(prompter)[-2:] == ["zh/pin-locked", "zh/goodbye"]
    # The right PIN does not open a locked id.
    prompter.played.clear()
    channel, _ = call(Bulletins, store, prompter, audio_dir, clock, EDITOR)
    assert heard(prompter)[-2:] == ["zh/pin-locked", "zh/goodbye"]
    assert channel.recordings == []


def test_an_expert_commentary_is_a_draft_nobody_hears_until_published(store, prompter, audio_dir, clock):
    # Recorded and kept as a draft (2 at "publish now?").
    record = EXPERT + ["1", 2, "#", "2", "2", "*", "*"]
    _, result = call(Experts, store, prompter, audio_dir, clock, record)
    assert result is BACK
    [draft] = rows(store, commentaries)
    assert draft.status == "draft" and draft.published_at is None
    assert files(audio_dir) == [draft.audio_path]
    assert "zh/commentary-saved" in heard(prompter)

    prompter.played.clear()
    listener, _ = call(Experts, store, prompter, audio_dir, clock, ["1", "88#", "*", "*"])
    assert "zh/mailbox-empty" in heard(prompter)
    assert played_audio(listener) == []

    # The expert goes through the commentaries and publishes the draft.
    prompter.played.clear()
    expert, _ = call(Experts, store, prompter, audio_dir, clock, EXPERT + ["2", "1", "*", "*"])
    assert "zh/commentary-draft" in heard(prompter)
    assert "zh/commentary-published" in heard(prompter)
    [published] = rows(store, commentaries)
    assert published.status == "published"

    prompter.played.clear()
    listener, _ = call(Experts, store, prompter, audio_dir, clock, ["1", "88#", "5", "*", "*"])
    name = os.path.splitext(os.path.basename(draft.audio_path))[0]
    assert played_audio(listener) == [name, name]


def test_an_expert_publishes_at_once_and_investors_hear_the_newest_first(store, prompter, audio_dir, clock):
    for _ in range(2):
        call(Experts, store, prompter, audio_dir, clock, EXPERT + ["1", 2, "#", "2", "1", "*", "*"])
        clock.advance(60)
    first, second = rows(store, commentaries)
    assert first.status == second.status == "published"
    listener, _ = call(Experts, store, prompter, audio_dir, clock, ["1", "88#", "6", "6", "*", "*"])
    names = [os.path.splitext(os.path.basename(r.audio_path))[0] for r in (second, first)]
    assert played_audio(listener) == names
    assert "zh/no-more-commentaries" in heard(prompter)


def test_an_expert_deletes_a_commentary_and_its_file(store, prompter, audio_dir, clock):
    call(Experts, store, prompter, audio_dir, clock, EXPERT + ["1", 2, "#", "2", "1", "*", "*"])
    assert len(files(audio_dir)) == 1
    call(Experts, store, prompter, audio_dir, clock, EXPERT + ["2", "2", "*", "*"])
    [row] = rows(store, commentaries)
    assert row.status == "deleted"
    assert files(audio_dir) == []


def test_a_hang_up_while_an_expert_records_leaves_nothing(store, prompter, audio_dir, clock):
    _, result = call(Experts, store, prompter, audio_dir, clock, EXPERT + ["1", 1, HANGUP])
    assert result.check(CallEnded)
    assert rows(store, commentaries) == []
    assert files(audio_dir) == []


def test_an_unknown_mailbox_is_asked_again(store, prompter, audio_dir, clock):
    _, result = call(Experts, store, prompter, audio_dir, clock, ["1", "77#", "88#", "*", "*"])
    assert result is BACK
    said = heard(prompter)
    assert said.count("zh/mailbox-not-found") == 1
    assert "zh/mailbox-empty" in said


def test_an_empty_recording_is_recorded_again_and_three_end_the_call(store, prompter, audio_dir, clock,
                                                                     monkeypatch):
    monkeypatch.setattr(RecordingChannel, "recorded_seconds", 0)
    channel, result = call(Bulletins, store, prompter, audio_dir, clock, EDITOR + ["1", "#", "#", "#"])
    assert result is None
    assert len(channel.recordings) == 3
    said = heard(prompter)
    assert said.count("zh/recording-too-short") == 2 and said[-1] == "zh/too-many-attempts"
    assert rows(store, bulletins_table) == [] and files(audio_dir) == []


class FakeNames:
    """Stands in for SpokenNames: a name prompt per text, or none for the texts in C{unsayable}."""

    def __init__(self, unsayable=()):
        self.unsayable = set(unsayable)
        self.asked = []

    def prompt(self, text, language):
        self.asked.append((text, language))
        return defer.succeed(None if text in self.unsayable else f"{language}/said-{len(text)}")


def test_the_category_menu_says_each_category_by_name(store, prompter, audio_dir, clock):
    names = FakeNames()
    flow = flow_of(Bulletins, store, prompter, audio_dir, clock)
    flow.names = names
    run(clock, flow(RecordingChannel(clock, ["*"])))
    assert heard(prompter) == [
        "zh/said-4", "zh/press", "zh/digit-1", "zh/said-4", "zh/press", "zh/digit-2", "zh/editors-press-9",
    ]
    assert names.asked == [("公司公告", "zh"), ("大盘分析", "zh")]


def test_english_callers_hear_the_english_names(store, prompter, audio_dir, clock):
    names = FakeNames()
    flow = Bulletins(store, Dialogue(prompter, "en"), audio_dir, clock, None, names=names)
    run(clock, flow(RecordingChannel(clock, ["*"])))
    assert heard(prompter)[:3] == ["en/said-12", "en/press", "en/one"]
    assert names.asked == [("Company news", "en"), ("Market analysis", "en")]


def test_a_name_that_cannot_be_said_falls_back_to_the_generic_menu(store, prompter, audio_dir, clock):
    flow = flow_of(Bulletins, store, prompter, audio_dir, clock)
    flow.names = FakeNames(unsayable={"大盘分析"})
    run(clock, flow(RecordingChannel(clock, ["*"])))
    assert heard(prompter) == ["zh/choose-category"]


def test_an_investor_hears_the_experts_name_before_the_commentaries(store, prompter, audio_dir, clock):
    flow = flow_of(Experts, store, prompter, audio_dir, clock)
    flow.names = FakeNames()
    run(clock, flow(RecordingChannel(clock, ["1", "88#", "*", "*"])))
    said = heard(prompter)
    assert said[said.index("zh/enter-mailbox") + 1:][:2] == ["zh/said-3", "zh/mailbox-empty"]


def test_the_recording_starts_after_a_beep_no_key_cuts_short(store, prompter, audio_dir, clock):
    channel, _ = call(Bulletins, store, prompter, audio_dir, clock, EDITOR + ["2", 3, "#", "2", "*"])
    assert ["beep"] in channel.heard_out  # Asterisk's sound of that name, on an AGI channel
    sip, _ = call(Bulletins, store, prompter, audio_dir, clock, EDITOR + ["2", 3, "#", "2", "*"],
                  codec=AudioFormat(0, "PCMU", 8000))
    [beep] = [frames for frames in sip.heard_out if frames and isinstance(frames[0], bytes)]
    assert len(beep) == 15 and all(len(frame) == 160 for frame in beep)  # 300 ms of 20 ms frames
