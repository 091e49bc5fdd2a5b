"""
Name prompts made on first use (callcenter.ivr.spoken_names), with a
synthesiser test double: espeak-ng itself is exercised by the prompt pack's
tests.
"""

import math
import os

from twisted.internet import defer
from twisted.logger import formatEvent

from callcenter.ivr.prompts import SynthesisError, resolve
from callcenter.ivr.spoken_names import SpokenNames
from callcenter.media.wavfile import load_prompt
from outcomes import CapturedLog


class Synthesiser:
    """A tone for any text, counting what it was asked to say; fails or says nothing when told."""

    def __init__(self, fail=None, silent=False):
        self.said = []
        self.fail = fail
        self.silent = silent

    def __call__(self, text, language):
        self.said.append((text, language))
        if self.fail is not None:
            raise self.fail
        rate = 16000
        amplitude = 0 if self.silent else 8000
        return rate, [int(amplitude * math.sin(2 * math.pi * 440 * i / rate)) for i in range(rate)]


def results(d):
    outcome = []
    d.addBoth(outcome.append)
    return outcome


def at_once(function, *args):
    return defer.maybeDeferred(function, *args)


def test_a_name_is_made_once_and_played_from_the_pack(tmp_path):
    synthesiser = Synthesiser()
    names = SpokenNames(str(tmp_path), at_once, synthesiser)
    [name] = results(names.prompt("大盘综述", "zh"))
    assert name.startswith("zh/said-")
    frames = load_prompt(resolve(str(tmp_path), name), "PCMU")
    assert 40 <= len(frames) <= 50  # a second of tone, trimmed
    assert results(names.prompt("大盘综述", "zh")) == [name]
    assert synthesiser.said == [("大盘综述", "zh")]


def test_each_text_and_language_has_its_own_prompt(tmp_path):
    names = SpokenNames(str(tmp_path), at_once, Synthesiser())
    said = {results(names.prompt(text, language))[0] for text, language in [
        ("大盘综述", "zh"), ("大盘点评", "zh"), ("Market overview", "en"), ("大盘综述", "en"),
    ]}
    assert len(said) == 4


def test_callers_asking_at_once_share_one_synthesis(tmp_path):
    synthesiser = Synthesiser()
    pending = []

    def later(function, *args):
        d = defer.Deferred()
        pending.append((d, function, args))
        return d

    names = SpokenNames(str(tmp_path), later, synthesiser)
    first, second = results(names.prompt("个股推荐", "zh")), results(names.prompt("个股推荐", "zh"))
    assert first == second == [] and len(pending) == 1
    d, function, args = pending[0]
    d.callback(function(*args))
    assert first == second and first[0].startswith("zh/said-")
    assert synthesiser.said == [("个股推荐", "zh")]


def test_without_a_synthesiser_the_name_is_left_out_and_logged(tmp_path):
    synthesiser = Synthesiser(fail=SynthesisError("espeak-ng is not installed"))
    names = SpokenNames(str(tmp_path), at_once, synthesiser)
    with CapturedLog() as log:
        assert results(names.prompt("板块点评", "zh")) == [None]
    [event] = log.formats("cannot make a prompt")
    assert "espeak-ng is not installed" in formatEvent(event)
    # Tried again next time: the synthesiser may have been installed since.
    assert results(names.prompt("板块点评", "zh")) == [None]
    assert len(synthesiser.said) == 2
    assert not os.path.exists(tmp_path / "zh")


def test_an_unexpected_failure_is_logged_with_its_traceback_and_left_out(tmp_path):
    names = SpokenNames(str(tmp_path), at_once, Synthesiser(fail=RuntimeError("bug")))
    with CapturedLog() as log:
        assert results(names.prompt("板块点评", "zh")) == [None]
    [event] = log.formats("cannot make a prompt")
    assert event["log_failure"].check(RuntimeError)


def test_silence_and_empty_names_are_no_prompts(tmp_path):
    names = SpokenNames(str(tmp_path), at_once, Synthesiser(silent=True))
    with CapturedLog():
        assert results(names.prompt("板块点评", "zh")) == [None]
    assert results(names.prompt("  ", "zh")) == [None]
    assert results(names.prompt(None, "en")) == [None]


def test_names_are_said_as_stock_names_are(tmp_path):
    synthesiser = Synthesiser()
    names = SpokenNames(str(tmp_path), at_once, synthesiser)
    results(names.prompt("兴业银行研究所", "zh"))
    assert synthesiser.said == [("xing1业yin2 hang2研究所", "zh")]
