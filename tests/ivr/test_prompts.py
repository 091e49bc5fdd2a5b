"""
The prompt packs: the catalogue, the build and its cache, studio recordings,
stock names, errors, and the resampler.

The build tests use a fake synthesiser, a tone as long as the text, for
speed: espeak-ng and the resampling of its 22,050 Hz output take about a
tenth of a second a prompt, and these tests build dozens.  The real
espeak-ng is exercised twice: building a Mandarin and an English prompt,
and a stock name it would misread as written ("*ST").
"""

import hashlib
import json
import math
import os
import re
import stat
import subprocess
import wave
from array import array

import pytest

from callcenter import cli
from callcenter.ivr import prompts, stock_names
from callcenter.trading.instruments import english_name
from callcenter.ivr.phrases import PHRASES
from callcenter.ivr.prompts import (
    Espeak,
    PromptNotFound,
    PromptPackError,
    SynthesisError,
    build_pack,
    catalogue,
    resolve,
)
from callcenter.ivr.telephone_audio import resample
from callcenter.media.wavfile import load_prompt

SMALL = {
    "zh/welcome": "您好，欢迎致电证券电话委托系统。",
    "en/welcome": "Welcome to the securities phone trading service.",
    "zh/goodbye": "感谢您的来电，再见。",
    "en/goodbye": "Thank you for calling. Goodbye.",
}


class FakeSynthesiser:
    """
    Speech as espeak-ng shapes it: 300 ms of silence, a 440 Hz tone of 50 ms
    a character, 300 ms of silence; at 8 kHz, so that nothing is resampled.
    """

    engine = "fake 1.0"
    rate = 8000

    def __init__(self):
        self.calls = []
        self.voices = {"zh": "fake-zh", "en": "fake-en"}
        self.fail_on = None

    def voice(self, language):
        return self.voices[language]

    def __call__(self, text, language):
        self.calls.append(f"{language}/{text}")
        if text == self.fail_on:
            raise SynthesisError("fake: no voice for that")
        silence = [0] * int(0.3 * self.rate)
        tone = [round(4000 * math.sin(2 * math.pi * 440 * i / self.rate)) for i in range(len(text) * self.rate // 20)]
        return self.rate, array("h", silence + tone + silence)


@pytest.fixture
def small(monkeypatch):
    """A catalogue of four prompts, without say.py's vocabulary."""
    monkeypatch.setattr(prompts, "PHRASES", dict(SMALL))
    monkeypatch.setattr(prompts, "_vocabulary", lambda: {})
    return prompts.PHRASES


@pytest.fixture
def fake():
    return FakeSynthesiser()


def build(directory, synthesiser, **options):
    return build_pack(str(directory), synthesise=synthesiser, workers=1, **options)


def manifest(directory):
    with open(os.path.join(directory, "manifest.json"), encoding="utf-8") as file:
        return {entry["name"]: entry for entry in json.load(file)["prompts"]}


def read_wav(path):
    with wave.open(str(path)) as file:
        assert (file.getframerate(), file.getnchannels(), file.getsampwidth()) == (8000, 1, 2)
        samples = array("h", file.readframes(file.getnframes()))
    return samples


def rms_dbfs(samples):
    return 20 * math.log10(math.sqrt(sum(x * x for x in samples) / len(samples)) / 32767)


def sha256(path):
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()


def write_pcm(path, samples, rate=8000):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(array("h", samples).tobytes())
    return str(path)


# The catalogue.


def test_every_phrase_exists_in_both_languages():
    slugs = {
        language: {name.split("/")[1] for name in PHRASES if name.startswith(f"{language}/")} for language in ("zh", "en")
    }
    assert slugs["zh"] == slugs["en"]
    assert len(slugs["zh"]) >= 80
    for name, text in PHRASES.items():
        assert re.fullmatch(r"(zh|en)/[a-z0-9][a-z0-9-]*", name), name
        assert text.strip() == text and text, name


def test_mandarin_phrases_spell_out_what_the_synthesiser_would_misread():
    for name, text in PHRASES.items():
        if name.startswith("zh/"):
            # Keys in words (井号键, 星号键), no Latin letters read as English.
            assert not re.search(r"[A-Za-z*#]", text), name


def test_the_catalogue_includes_the_vocabulary_of_numbers_and_dates():
    from callcenter.ivr.say import VOCABULARY

    texts = catalogue()
    assert set(PHRASES) | set(VOCABULARY) == set(texts)
    assert texts["zh/yao"] == "幺"
    assert set(catalogue(("en",))) == {name for name in texts if name.startswith("en/")}


def test_a_name_with_two_texts_is_an_error(monkeypatch):
    monkeypatch.setattr(prompts, "PHRASES", {"zh/dian": "点"})
    monkeypatch.setattr(prompts, "_vocabulary", lambda: {"zh/dian": "點"})
    with pytest.raises(PromptPackError, match="zh/dian"):
        catalogue()


# Building.


def test_a_build_makes_8khz_wav_files_and_lists_them(tmp_path, small, fake):
    report = build(tmp_path, fake)
    assert sorted(report.made) == sorted(SMALL)
    assert report.reused == report.studio == []
    assert report.languages == {"zh": 2, "en": 2}
    entries = manifest(tmp_path)
    assert set(entries) == set(SMALL)
    entry = entries["zh/welcome"]
    path = tmp_path / "zh" / "welcome.wav"
    samples = read_wav(path)
    assert entry == {
        "name": "zh/welcome",
        "language": "zh",
        "text": SMALL["zh/welcome"],
        "file": "zh/welcome.wav",
        "duration_ms": round(len(samples) / 8),
        "sha256": sha256(path),
        "source": "fake 1.0",
        "voice": "fake-zh",
        "processing": prompts.PROCESSING,
    }
    assert resolve(str(tmp_path), "zh/welcome") == str(path)
    frames = load_prompt(str(path), "PCMA")
    assert len(frames) == math.ceil(len(samples) / 160) and {len(f) for f in frames} == {160}


def test_silence_is_trimmed_to_50_ms_and_the_level_is_telephone_level(tmp_path, small, fake):
    build(tmp_path, fake, names=["zh/goodbye"])
    samples = read_wav(tmp_path / "zh" / "goodbye.wav")
    tone_seconds = len(SMALL["zh/goodbye"]) / 20
    # 300 ms of silence on either side becomes 50 ms, give or take the
    # 10 ms over which loudness is measured.
    assert abs(len(samples) / 8000 - (tone_seconds + 0.1)) <= 0.021
    loud = [i for i, x in enumerate(samples) if abs(x) > 100]
    assert 0.04 <= loud[0] / 8000 <= 0.06
    assert 0.04 <= (len(samples) - loud[-1]) / 8000 <= 0.06
    # A sine is only 3 dB above its RMS: the RMS target, -20 dBFS, applies.
    assert abs(rms_dbfs(samples[400:-400]) - (-20)) < 0.2
    assert samples[0] == samples[-1] == 0


def test_a_loud_peak_limits_the_level_to_minus_3_dbfs(tmp_path, small):
    class Clicky(FakeSynthesiser):
        def __call__(self, text, language):
            rate, samples = super().__call__(text, language)
            samples[len(samples) // 2] = 30000
            return rate, samples

    build(tmp_path, Clicky(), names=["en/goodbye"])
    samples = read_wav(tmp_path / "en" / "goodbye.wav")
    assert 20 * math.log10(max(map(abs, samples)) / 32767) == pytest.approx(-3, abs=0.01)


def test_an_unchanged_prompt_is_not_synthesised_again(tmp_path, small, fake):
    build(tmp_path, fake)
    before = {name: sha256(tmp_path / f"{name}.wav") for name in SMALL}
    fake.calls.clear()
    report = build(tmp_path, fake)
    assert fake.calls == []
    assert sorted(report.reused) == sorted(SMALL) and report.made == []
    assert {name: sha256(tmp_path / f"{name}.wav") for name in SMALL} == before


def test_a_changed_text_voice_or_engine_makes_the_prompt_again(tmp_path, small, fake):
    build(tmp_path, fake)
    small["zh/goodbye"] = "再见。"
    assert build(tmp_path, fake).made == ["zh/goodbye"]
    assert manifest(tmp_path)["zh/goodbye"]["text"] == "再见。"

    fake.voices["en"] = "fake-en-slower"
    assert sorted(build(tmp_path, fake).made) == ["en/goodbye", "en/welcome"]

    fake.engine = "fake 2.0"
    fake.calls.clear()
    assert sorted(build(tmp_path, fake).made) == sorted(SMALL)
    assert {entry["source"] for entry in manifest(tmp_path).values()} == {"fake 2.0"}


def test_force_makes_every_synthesised_prompt_again(tmp_path, small, fake):
    build(tmp_path, fake)
    fake.calls.clear()
    assert sorted(build(tmp_path, fake, force=True).made) == sorted(SMALL)
    assert len(fake.calls) == 4


def test_a_build_of_some_names_or_one_language_keeps_the_rest(tmp_path, small, fake):
    build(tmp_path, fake, languages=("en",))
    assert set(manifest(tmp_path)) == {"en/welcome", "en/goodbye"}
    report = build(tmp_path, fake, names=["goodbye"])
    assert sorted(report.made) == ["zh/goodbye"] and report.reused == ["en/goodbye"]
    assert set(manifest(tmp_path)) == {"en/welcome", "en/goodbye", "zh/goodbye"}


def test_a_prompt_taken_out_of_the_catalogue_is_removed(tmp_path, small, fake):
    build(tmp_path, fake)
    del small["en/goodbye"]
    report = build(tmp_path, fake)
    assert report.removed == ["en/goodbye"]
    assert not (tmp_path / "en" / "goodbye.wav").exists()
    assert "en/goodbye" not in manifest(tmp_path)


def test_worker_processes_make_the_same_files(tmp_path, small, fake):
    build(tmp_path / "one", fake)
    build_pack(str(tmp_path / "two"), synthesise=fake, workers=2)
    for name in SMALL:
        assert sha256(tmp_path / "one" / f"{name}.wav") == sha256(tmp_path / "two" / f"{name}.wav")


# Studio recordings.


def test_a_studio_recording_replaces_the_synthesised_prompt_and_is_kept(tmp_path, small, fake):
    build(tmp_path, fake)
    studio = write_pcm(tmp_path / "studio" / "zh" / "welcome.wav", [1000, -1000] * 8000)
    fake.calls.clear()
    report = build(tmp_path, fake)
    assert report.studio == ["zh/welcome"] and report.made == []
    assert sha256(tmp_path / "zh" / "welcome.wav") == sha256(studio)
    entry = manifest(tmp_path)["zh/welcome"]
    assert entry["source"] == "studio"
    assert entry["studio_file"] == "studio/zh/welcome.wav"
    assert entry["duration_ms"] == 2000
    assert entry["sha256"] == sha256(studio)

    # Kept through rebuilds, a new engine, --force, a change of text.
    fake.engine = "fake 2.0"
    small["zh/welcome"] = "您好。"
    report = build(tmp_path, fake, force=True)
    assert "zh/welcome" in report.studio and "zh/welcome" not in report.made
    assert report.studio_outdated == ["zh/welcome"]
    assert sha256(tmp_path / "zh" / "welcome.wav") == sha256(studio)
    assert "zh/您好。" not in fake.calls

    # Taken away: the synthesised prompt comes back.
    os.remove(studio)
    assert build(tmp_path, fake).made == ["zh/welcome"]
    assert manifest(tmp_path)["zh/welcome"]["source"] == "fake 2.0"


def test_a_new_studio_take_replaces_the_old_one(tmp_path, small, fake):
    write_pcm(tmp_path / "studio" / "en" / "goodbye.wav", [500, -500] * 4000)
    build(tmp_path, fake)
    second = write_pcm(tmp_path / "studio" / "en" / "goodbye.wav", [700, -700] * 6000)
    assert build(tmp_path, fake).studio == ["en/goodbye"]
    assert sha256(tmp_path / "en" / "goodbye.wav") == sha256(second)
    assert manifest(tmp_path)["en/goodbye"]["duration_ms"] == 1500


def test_a_g711_studio_recording_is_taken_as_it_is(tmp_path, small, fake):
    from callcenter.media.wavfile import WavRecorder

    os.makedirs(tmp_path / "studio" / "zh")
    recorder = WavRecorder(str(tmp_path / "studio" / "zh" / "goodbye.wav"), "PCMA")
    recorder.write(b"\x55\xd5" * 4000)
    recorder.close()
    build(tmp_path, fake)
    assert manifest(tmp_path)["zh/goodbye"]["duration_ms"] == 1000
    assert load_prompt(resolve(str(tmp_path), "zh/goodbye"), "PCMU")


def test_a_studio_recording_that_cannot_be_played_is_reported_and_the_rest_built(tmp_path, small, fake):
    write_pcm(tmp_path / "studio" / "zh" / "welcome.wav", [0] * 16000, rate=16000)
    with pytest.raises(PromptPackError) as caught:
        build(tmp_path, fake)
    assert caught.value.problems == [f"studio recording of zh/welcome: {tmp_path}/studio/zh/welcome.wav: "
                                     "16000 Hz, prompts must be 8000 Hz (we do not resample)"]
    assert sorted(caught.value.report.made) == ["en/goodbye", "en/welcome", "zh/goodbye"]
    assert set(manifest(tmp_path)) == {"en/goodbye", "en/welcome", "zh/goodbye"}


def test_a_studio_recording_of_no_prompt_is_a_warning(tmp_path, small, fake):
    write_pcm(tmp_path / "studio" / "en" / "welcom.wav", [0] * 800)
    report = build(tmp_path, fake)
    assert report.warnings == [f"{tmp_path}/studio/en/welcom.wav: no prompt en/welcom in the catalogue, not used"]


def test_a_file_edited_in_place_is_not_overwritten(tmp_path, small, fake):
    build(tmp_path, fake)
    edited = write_pcm(tmp_path / "en" / "welcome.wav", [300, -300] * 4000)
    small["en/welcome"] = "Welcome."
    with pytest.raises(PromptPackError) as caught:
        build(tmp_path, fake)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{edited}: changed since it was made")
    assert f"move it to {tmp_path}/studio/en/welcome.wav" in problem
    assert sha256(edited) != manifest(tmp_path)["en/welcome"]["sha256"]
    assert read_wav(edited)[:2] == array("h", [300, -300])
    # --force replaces it.
    assert build(tmp_path, fake, force=True).made.count("en/welcome") == 1
    assert sha256(edited) == manifest(tmp_path)["en/welcome"]["sha256"]


# Errors.


def test_a_synthesis_failure_names_the_prompt_and_keeps_what_was_made(tmp_path, small, fake):
    fake.fail_on = SMALL["zh/goodbye"]
    with pytest.raises(SynthesisError, match="^prompt zh/goodbye: fake: no voice for that$"):
        build(tmp_path, fake)
    assert set(manifest(tmp_path)) == {"zh/welcome", "en/welcome"}
    fake.fail_on = None
    fake.calls.clear()
    assert sorted(build(tmp_path, fake).made) == ["en/goodbye", "zh/goodbye"]


def test_silence_from_the_synthesiser_is_an_error(tmp_path, small):
    class Mute(FakeSynthesiser):
        def __call__(self, text, language):
            return 8000, array("h", [0] * 8000)

    with pytest.raises(PromptPackError, match="prompt zh/welcome: the synthesiser gave only silence"):
        build(tmp_path, Mute(), names=["zh/welcome"])


def test_unknown_names_and_languages_are_errors(tmp_path, small, fake):
    with pytest.raises(PromptPackError) as caught:
        build(tmp_path, fake, names=["zh/welcome", "hello", "fr/welcome"])
    assert caught.value.problems == [
        "prompt 'hello' is not in the catalogue of zh, en",
        "prompt 'fr/welcome' is not in the catalogue of zh, en",
    ]
    with pytest.raises(PromptPackError, match="language 'fr'"):
        build(tmp_path, fake, languages=("fr",))


def test_an_unreadable_manifest_is_an_error(tmp_path, small, fake):
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(PromptPackError, match="manifest.json: unreadable"):
        build(tmp_path, fake)


def test_resolve_names_a_missing_prompt(tmp_path, small, fake):
    with pytest.raises(PromptNotFound, match=r"^prompt zh/welcome: no file .*zh/welcome.wav \(build the pack"):
        resolve(str(tmp_path), "zh/welcome")
    with pytest.raises(PromptPackError, match="not LANG/SLUG"):
        resolve(str(tmp_path), "../etc/passwd")


def script(tmp_path, body):
    path = tmp_path / "espeak-ng"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_espeak_failures_name_the_prompt_and_say_what_espeak_said(tmp_path, small):
    failing = Espeak(script(
        tmp_path,
        'case "$1" in --version) echo "eSpeak NG text-to-speech: 1.51  Data at: /x";; '
        '*) echo "Error: voice not found" >&2; exit 1;; esac',
    ))
    with pytest.raises(SynthesisError) as caught:
        build(tmp_path / "pack", failing, names=["en/welcome"])
    assert str(caught.value) == (
        "prompt en/welcome: en 'Welcome to the securities phone trading service.': "
        f"{tmp_path}/espeak-ng exited with status 1: Error: voice not found"
    )

    slow = Espeak(script(tmp_path, "exec sleep 10"), timeout=0.2)
    with pytest.raises(SynthesisError, match=r"did not finish within 0.2 s"):
        slow("你好", "zh")

    missing = Espeak(str(tmp_path / "nowhere" / "espeak-ng"))
    with pytest.raises(SynthesisError, match="is not installed"):
        build(tmp_path / "pack", missing)


# Stock names.

INSTRUMENTS_HEADER = "code,exchange,name_zh,name_en,board,prev_close,is_st,lot_size"
INSTRUMENTS = {
    "600000": ("浦发银行", "SPD Bank"),
    "600190": ("*ST锦港", "Jinzhou Port"),
    "000100": ("TCL科技", "TCL Technology Group"),
}
STOCK_NAMES = {f"{language}/stock-name-{code}" for code in INSTRUMENTS for language in ("zh", "en")}


def write_instruments(path, instruments=INSTRUMENTS, extra_lines=()):
    lines = [INSTRUMENTS_HEADER]
    lines += [f"{code},SSE,{zh},{en},main,10.00,false,100" for code, (zh, en) in instruments.items()]
    path.write_text("\n".join([*lines, *extra_lines]) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def instruments(tmp_path):
    return write_instruments(tmp_path / "instruments.csv")


@pytest.mark.parametrize(
    ("written", "said"),
    [
        # Brokers say 星ST; letters spelled one by one, as capitals.
        ("*ST锦港", "星S T锦港"),
        ("ST科新", "S T科新"),
        ("TCL科技", "T C L科技"),
        ("万科A", "万科A"),
        # A run of capitals that is pinyin would otherwise be a syllable.
        ("BAN科技", "B A N科技"),
        # Full-width, as Chinese spreadsheets write them.
        ("＊ＳＴ金科", "星S T金科"),
        # Words and characters espeak-ng misreads, in pinyin.
        ("浦发银行", "浦发yin2 hang2"),
        ("重庆啤酒", "chong2 qing4啤酒"),
        ("东阿阿胶", "dong1 e1 e1 jiao1"),
        ("中兴通讯", "中xing1通讯"),
        ("金地集团", "金di4集团"),
        ("三六零", "三六零"),
        ("360安全", "三六零安全"),
        ("宁德时代", "宁德时代"),
        # Pinyin and letters kept apart where they would run together.
        ("ST兴业", "S T xing1业"),
        ("A1兴", "A 1 xing1"),
    ],
)
def test_mandarin_names_are_made_speakable(written, said):
    assert stock_names.spoken(written, "zh") == said


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("ICBC", "I.C.B.C"),
        ("SPD Bank", "S.P.D Bank"),
        ("CATL", "C.A.T.L"),
        ("JA Solar Technology", "J.A Solar Technology"),
        ("COSCO Shipping Holdings", "COSCO Shipping Holdings"),
        ("Shenzhen YUTO Packaging Technology", "Shenzhen YUTO Packaging Technology"),
        ("Kingfa Sci. & Tech.", "Kingfa Science & Technology"),
        ("360 Security Technology", "3 6 0 Security Technology"),
        ("37 Interactive", "37 Interactive"),
        ("3PEAK", "three peak"),
        ("People's Insurance Company (Group) of China", "People's Insurance Company (Group) of China"),
        ("*ST Jinzhou Port", "star S.T Jinzhou Port"),
    ],
)
def test_english_names_are_made_speakable(written, said):
    assert stock_names.spoken(written, "en") == said


@pytest.mark.parametrize(
    "name_zh, name_en, said",
    [
        ("*ST锦港", "Jinzhou Port", "*ST Jinzhou Port"),
        ("ST科新", "Kexin Development", "ST Kexin Development"),
        ("ＳＴ通葡", "Tonghua Grape Wine", "ST Tonghua Grape Wine"),
        ("包钢股份", "Inner Mongolia Baotou Steel Union", "Inner Mongolia Baotou Steel Union"),
        ("ST中嘉", "ST Zhongjia", "ST Zhongjia"),
    ],
)
def test_english_names_carry_the_risk_warning_of_the_chinese_ones(name_zh, name_en, said):
    """The master's English names leave out ST / *ST; an investor must hear it in English too."""
    assert english_name(name_zh, name_en) == said


def test_mandarin_phrases_have_misread_words_in_pinyin_but_not_name_readings():
    assert prompts.spoken("zh/invalid-input", "输入有误，请重新输入。") == "输入有误，请chong2 xin1输入。"
    assert prompts.spoken("zh/x", "请认真地听。") == "请认真地听。"
    assert prompts.spoken("en/x", "ICBC") == "ICBC"


def test_the_stock_names_are_built_from_the_instruments_file(tmp_path, small, fake, instruments):
    report = build(tmp_path / "pack", fake, instruments=instruments)
    assert set(report.made) == set(SMALL) | STOCK_NAMES
    assert report.languages == {"zh": 5, "en": 5}
    entries = manifest(tmp_path / "pack")
    assert entries["zh/stock-name-600000"]["text"] == "浦发银行"
    assert entries["zh/stock-name-600000"]["spoken"] == "浦发yin2 hang2"
    assert entries["en/stock-name-600000"]["spoken"] == "S.P.D Bank"
    # The risk warning the English master leaves out is said.
    assert entries["en/stock-name-600190"]["text"] == "*ST Jinzhou Port"
    assert entries["en/stock-name-600190"]["spoken"] == "star S.T Jinzhou Port"
    assert "zh/星S T锦港" in fake.calls and "zh/*ST锦港" not in fake.calls
    path = resolve(str(tmp_path / "pack"), "zh/stock-name-000100")
    assert path == str(tmp_path / "pack" / "zh" / "stock-name-000100.wav")
    assert load_prompt(path, "PCMU")


def test_stock_names_are_a_cache_too(tmp_path, small, fake, instruments, monkeypatch):
    pack = tmp_path / "pack"
    build(pack, fake, instruments=instruments)
    fake.calls.clear()
    assert build(pack, fake, instruments=instruments).made == []
    assert fake.calls == []

    renamed = dict(INSTRUMENTS, **{"600190": ("ST锦港", "Jinzhou Port")})
    write_instruments(tmp_path / "instruments.csv", renamed)
    # *ST to ST: both languages say the warning.
    assert sorted(build(pack, fake, instruments=instruments).made) == ["en/stock-name-600190", "zh/stock-name-600190"]
    assert sorted(fake.calls) == ["en/S.T Jinzhou Port", "zh/S T锦港"]

    # A change of how a name is said remakes it, the text being the same.
    monkeypatch.setitem(stock_names.EN_RESPELLINGS, "Port", "Harbour")
    assert build(pack, fake, instruments=instruments).made == ["en/stock-name-600190"]
    assert manifest(pack)["en/stock-name-600190"]["spoken"] == "S.T Jinzhou Harbour"


def test_an_instrument_taken_out_of_the_file_loses_its_names(tmp_path, small, fake, instruments):
    pack = tmp_path / "pack"
    build(pack, fake, instruments=instruments)
    write_instruments(tmp_path / "instruments.csv", {"600000": INSTRUMENTS["600000"]})
    report = build(pack, fake, instruments=instruments)
    assert sorted(report.removed) == sorted(STOCK_NAMES - {"zh/stock-name-600000", "en/stock-name-600000"})
    assert not (pack / "zh" / "stock-name-600190.wav").exists()
    assert {name for name in manifest(pack) if "stock-name" in name} == {"zh/stock-name-600000", "en/stock-name-600000"}


def test_a_build_without_instruments_leaves_the_stock_names_alone(tmp_path, small, fake, instruments):
    pack = tmp_path / "pack"
    build(pack, fake, instruments=instruments)
    write_pcm(pack / "studio" / "zh" / "stock-name-600000.wav", [1000, -1000] * 800)
    fake.calls.clear()
    report = build(pack, fake)
    assert report.removed == [] and report.warnings == [] and report.made == []
    assert sorted(report.reused) == sorted(SMALL)
    assert STOCK_NAMES <= set(manifest(pack))
    assert all((pack / f"{name}.wav").exists() for name in STOCK_NAMES)
    # Taken in at the next build with the file.
    assert build(pack, fake, instruments=instruments).studio == ["zh/stock-name-600000"]


def test_a_studio_recording_replaces_a_stock_name(tmp_path, small, fake, instruments):
    pack = tmp_path / "pack"
    studio = write_pcm(pack / "studio" / "zh" / "stock-name-600000.wav", [1000, -1000] * 4000)
    write_pcm(pack / "studio" / "zh" / "stock-name-999999.wav", [1000, -1000] * 4000)
    report = build(pack, fake, instruments=instruments)
    assert report.studio == ["zh/stock-name-600000"]
    assert "zh/浦发yin2 hang2" not in fake.calls
    assert sha256(resolve(str(pack), "zh/stock-name-600000")) == sha256(studio)
    assert report.warnings == [
        f"{pack}/studio/zh/stock-name-999999.wav: no prompt zh/stock-name-999999 in the catalogue, not used"
    ]


def test_one_stock_name_can_be_built(tmp_path, small, fake, instruments):
    report = build(tmp_path / "pack", fake, instruments=instruments, names=["stock-name-600000"])
    assert sorted(report.made) == ["en/stock-name-600000", "zh/stock-name-600000"]


def test_bad_lines_of_the_instruments_file_are_named_all_at_once(tmp_path, small, fake):
    path = write_instruments(
        tmp_path / "instruments.csv",
        extra_lines=[
            "60001,SSE,某某股份,Someone,main,10.00,false,100",
            "600002,SSE,,Nobody,main,10.00,false,100",
            "600003,SSE,某某,  ,main,10.00,false,100",
            "600000,SZSE,浦发银行,SPD Bank,main,13.50,false,100",
            "600004,SSE,白云机场",
        ],
    )
    with pytest.raises(PromptPackError) as caught:
        build(tmp_path / "pack", fake, instruments=path)
    assert caught.value.problems == [
        f"{path} line 5: code '60001' is not 6 digits",
        f"{path} line 6: name_zh is empty",
        f"{path} line 7: name_en is empty",
        f"{path} line 8: code 600000 is already on line 2",
        f"{path} line 9: expected the 8 fields of the header",
    ]
    assert not (tmp_path / "pack").exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("code,exchange,name\n600000,SSE,浦发银行\n", " line 1: no column name_zh, name_en"),
        ("code,name_zh,name_en\n600000,浦发银行,SPD Bank\n".encode("gbk"), " line 2: not UTF-8"),
        (None, ": no such file"),
    ],
)
def test_an_instruments_file_that_cannot_be_read_is_an_error(tmp_path, small, fake, content, problem):
    path = tmp_path / "instruments.csv"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(PromptPackError) as caught:
        build(tmp_path / "pack", fake, instruments=str(path))
    (message,) = caught.value.problems
    assert message.startswith(f"{path}{problem}")


def test_a_stock_name_that_is_missing_says_how_to_build_it(tmp_path):
    with pytest.raises(PromptNotFound, match=r"callcenter prompts build --dir \S+ --instruments etc/instruments.csv\)$"):
        resolve(str(tmp_path), "zh/stock-name-600000")


def test_a_synthesis_failure_in_a_worker_names_the_prompt_and_keeps_what_came_before(tmp_path, small, fake):
    fake.fail_on = SMALL["zh/goodbye"]
    with pytest.raises(SynthesisError, match="^prompt zh/goodbye: fake: no voice for that$"):
        build_pack(str(tmp_path), synthesise=fake, workers=2)
    assert {"zh/welcome", "en/welcome"} <= set(manifest(tmp_path))
    assert "zh/goodbye" not in manifest(tmp_path)


# The command.


def test_the_command_says_what_it_made_reused_and_kept(tmp_path, small, fake, monkeypatch, capfd):
    monkeypatch.setattr(prompts, "espeak", fake)
    write_pcm(tmp_path / "studio" / "zh" / "goodbye.wav", [1000, -1000] * 800)
    assert cli.main(["prompts", "build", "--dir", str(tmp_path), "--lang", "zh"]) == 0
    out, err = capfd.readouterr()
    summary = rf"prompts in {tmp_path} \(zh 2\): 1 made, 0 reused, 1 kept as studio recordings; [0-9.]+ s\n"
    assert re.fullmatch(summary, out)
    assert err == ""
    cli.main(["prompts", "build", "--dir", str(tmp_path)])
    out, _ = capfd.readouterr()
    assert out.startswith(f"prompts in {tmp_path} (zh 2, en 2): 2 made, 1 reused, 1 kept as studio recordings;")


def test_the_command_reports_problems_with_status_2(tmp_path, small, fake, monkeypatch, capfd):
    monkeypatch.setattr(prompts, "espeak", fake)
    write_pcm(tmp_path / "studio" / "zh" / "goodbye.wav", [0] * 100, rate=11025)
    with pytest.raises(SystemExit) as caught:
        cli.main(["prompts", "build", "--dir", str(tmp_path)])
    assert caught.value.code == 2
    _, err = capfd.readouterr()
    assert err == (f"callcenter: studio recording of zh/goodbye: {tmp_path}/studio/zh/goodbye.wav: "
                   "11025 Hz, prompts must be 8000 Hz (we do not resample)\n")


def test_the_command_builds_the_stock_names_of_an_instruments_file(tmp_path, small, fake, monkeypatch, capfd):
    monkeypatch.setattr(prompts, "espeak", fake)
    path = write_instruments(tmp_path / "instruments.csv")
    assert cli.main(["prompts", "build", "--dir", str(tmp_path / "pack"), "--instruments", path]) == 0
    out, _ = capfd.readouterr()
    assert out.startswith(f"prompts in {tmp_path}/pack (zh 5, en 5): 10 made, 0 reused,")
    (tmp_path / "instruments.csv").write_text(INSTRUMENTS_HEADER + "\nA,SSE,某,Some,main,1.00,false,100\n")
    with pytest.raises(SystemExit) as caught:
        cli.main(["prompts", "build", "--dir", str(tmp_path / "pack"), "--instruments", path])
    assert caught.value.code == 2
    _, err = capfd.readouterr()
    assert err == f"callcenter: {path} line 2: code 'A' is not 6 digits\n"


# The resampler.


def tone(frequency, rate, seconds=0.5, amplitude=10000):
    return [amplitude * math.sin(2 * math.pi * frequency * i / rate) for i in range(int(rate * seconds))]


@pytest.mark.parametrize("frequency", [300, 1000, 3400])
def test_the_resampler_passes_the_telephone_band(frequency):
    out = resample(tone(frequency, 22050), 22050)
    assert len(out) == 4000
    assert abs(rms_dbfs(out[200:-200]) - rms_dbfs(tone(frequency, 8000))) < 0.05


@pytest.mark.parametrize("frequency", [4400, 5000, 6000, 9000])
def test_the_resampler_stops_what_would_fold_back(frequency):
    out = resample(tone(frequency, 22050), 22050)
    assert rms_dbfs(out[200:-200]) - rms_dbfs(tone(1000, 8000)) < -60


def test_the_resampler_from_16khz():
    out = resample(tone(1000, 16000), 16000)
    assert len(out) == 4000
    assert abs(rms_dbfs(out[200:-200]) - rms_dbfs(tone(1000, 8000))) < 0.05


# The real synthesiser.


def test_espeak_ng_makes_mandarin_and_english_prompts(tmp_path):
    report = build_pack(str(tmp_path), names=["zh/welcome", "en/welcome"], workers=1)
    assert sorted(report.made) == ["en/welcome", "zh/welcome"]
    entries = manifest(tmp_path)
    for name in ("zh/welcome", "en/welcome"):
        entry = entries[name]
        assert re.fullmatch(r"espeak-ng \d+\.\d+\S*", entry["source"])
        path = resolve(str(tmp_path), name)
        samples = read_wav(path)
        seconds = len(samples) / 8000
        # 14 syllables, 8 words: two to five seconds at an IVR's pace.
        assert 2 < seconds < 5, (name, seconds)
        assert entry["duration_ms"] == round(seconds * 1000)
        assert -26 < rms_dbfs(samples) < -18, name
        assert max(map(abs, samples)) <= 23197
        frames = load_prompt(path, "PCMU")
        assert len(frames) == math.ceil(len(samples) / 160)
        assert {len(frame) for frame in frames} == {160}


def espeak_phonemes(text):
    completed = subprocess.run(
        ["espeak-ng", "-v", Espeak.VOICES["zh"], "-q", "-x", "--stdin"], input=text.encode(), capture_output=True,
        check=True,
    )
    return completed.stdout.decode()


def test_espeak_ng_says_a_star_st_name_in_mandarin(tmp_path, instruments):
    # Unchanged, "*" is said in English ("asterisk"), and 行 of 银行 "xing".
    assert "(en)" in espeak_phonemes("*ST锦港")
    said = stock_names.spoken("*ST锦港", "zh")
    assert "(en)" not in espeak_phonemes(said)
    assert "X'a35N" in espeak_phonemes(stock_names.spoken("浦发银行", "zh"))

    report = build_pack(str(tmp_path / "pack"), names=["zh/stock-name-600190"], workers=1, instruments=instruments)
    assert report.made == ["zh/stock-name-600190"]
    entry = manifest(tmp_path / "pack")["zh/stock-name-600190"]
    assert entry["spoken"] == said
    samples = read_wav(resolve(str(tmp_path / "pack"), "zh/stock-name-600190"))
    # Six syllables (xing S T jin gang, S being two): one to two and a half seconds.
    assert 1 < len(samples) / 8000 < 2.5
    assert -26 < rms_dbfs(samples) < -18
