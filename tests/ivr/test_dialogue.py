"""
The IVR's dialogue steps and L{run_flow}, over a scripted channel.

L{ScriptedChannel} is a test double of L{IChannel}: it plays instantly and
presses keys from a script on a L{Clock}, so that timeouts are exact and no
test waits.  The real channels' own collection and playing are tested with
them (tests/sip, tests/agi).
"""

import wave

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from zope.interface.verify import verifyObject

from callcenter.ivr.dialogue import (
    AGENT,
    BACK,
    INVALID,
    TIMEOUT,
    CallEnded,
    Dialogue,
    IPrompter,
    MemoryPrompter,
    PackPrompter,
    TooManyRetries,
    run_flow,
)
from callcenter.ivr.prompts import PromptNotFound
from callcenter.media.wavfile import load_prompt
from callcenter.sip.sdp import AudioFormat
from outcomes import CapturedLog, results_of

HANGUP = "hangup"
KEY_GAP = 0.5


class ScriptedChannel:
    """
    A test double of IChannel driving key presses from a script: each str
    in C{script} is keys pressed C{KEY_GAP} seconds apart, each number a
    pause in seconds, and L{HANGUP} the caller hanging up; times run from
    t=0 on C{clock}.  Keys pressed when nobody collects are kept, as the
    real channels keep them.  Plays fire True at once and are recorded in
    C{played}; C{codec} is None, as on an AGI channel, unless given.
    """

    call_id = "call-1"
    correlation_id = "cid-1"
    caller = None
    dialled = "95500"

    def __init__(self, clock, script=(), codec=None):
        self.clock = clock
        self.codec = codec
        self.ended = defer.Deferred()
        self.played = []
        self.heard_out = []  # the plays no key may cut short
        self.hangups = []
        self._typed = ""
        self._waiter = None
        at = 0.0
        for item in script:
            if item == HANGUP:
                clock.callLater(at, self._end, "caller hung up")
            elif isinstance(item, str):
                for key in item:
                    at += KEY_GAP
                    clock.callLater(at, self._press, key)
            else:
                at += item

    def _press(self, key):
        if self.ended.called:
            return
        self._typed += key
        self._feed()

    def _feed(self):
        waiter = self._waiter
        if waiter is None or not self._typed:
            return
        digits, timer, maximum, inter = waiter
        while self._typed and len(digits) < maximum:
            key, self._typed = self._typed[0], self._typed[1:]
            if key in self._terminators:
                return self._finish()
            digits += key
        self._waiter = (digits, timer, maximum, inter)
        if len(digits) >= maximum:
            return self._finish()
        timer.reset(inter)

    def _finish(self):
        digits, timer, _, _ = self._waiter
        self._waiter = None
        if timer.active():
            timer.cancel()
        self._result.callback(digits)

    def _end(self, reason):
        if self.ended.called:
            return
        self.ended.callback(reason)
        if self._waiter is not None:
            self._finish()

    def answer(self):
        return defer.succeed(None)

    def play(self, prompts, interruptible=True):
        self.played.append(prompts)
        if not interruptible:
            self.heard_out.append(prompts)
        return defer.succeed(not self.ended.called)

    def stop_playing(self):
        pass

    def collect_digits(self, maximum, first_timeout, inter_digit_timeout, terminators="#"):
        assert self._waiter is None, "two collections at once"
        self._result = defer.Deferred()
        self._terminators = terminators
        timer = self.clock.callLater(first_timeout, self._finish)
        self._waiter = ("", timer, maximum, inter_digit_timeout)
        if self.ended.called:
            self._finish()
        else:
            self._feed()
        return self._result

    def hangup(self, reason="normal"):
        self.hangups.append(reason)
        self._end(reason)
        return defer.succeed(None)


def run(clock, d):
    """Advance C{clock} from one timer to the next until C{d} fires."""
    outcome = results_of(d)
    while not outcome:
        calls = clock.getDelayedCalls()
        assert calls, "the step waits for something that never comes"
        clock.advance(min(call.getTime() for call in calls) - clock.seconds())
    return outcome[0]


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def prompter():
    return MemoryPrompter()


@pytest.fixture
def steps(prompter):
    return Dialogue(prompter)


def failure_of(outcome, exception):
    assert isinstance(outcome, Failure), outcome
    assert outcome.check(exception), outcome
    return outcome.value


# collect


def test_collect_digits_ended_with_hash(clock, steps, prompter):
    channel = ScriptedChannel(clock, ["600519#"])
    result = run(clock, steps.collect(channel, "zh/enter-code", 6))
    assert result == "600519"
    assert prompter.played == [["zh/enter-code"]]


def test_collect_stops_at_maximum_and_leaves_the_rest(clock, steps):
    channel = ScriptedChannel(clock, ["1234"])
    assert run(clock, steps.collect(channel, None, 3)) == "123"
    assert run(clock, steps.collect(channel, None, 3, first_timeout=1)) == "4"


def test_collect_ends_on_inter_digit_timeout(clock, steps):
    channel = ScriptedChannel(clock, ["12", 10, "3"])
    d = steps.collect(channel, None, 6, inter_digit_timeout=3)
    assert run(clock, d) == "12"
    assert clock.seconds() == pytest.approx(1.0 + 3)


def test_collect_times_out_without_a_key(clock, steps):
    channel = ScriptedChannel(clock, [])
    assert run(clock, steps.collect(channel, "zh/enter-code", 6, first_timeout=5)) is TIMEOUT
    assert clock.seconds() == pytest.approx(5)


def test_hash_alone_is_an_empty_entry(clock, steps):
    channel = ScriptedChannel(clock, ["#"])
    assert run(clock, steps.collect(channel, None, 6)) == ""


def test_star_goes_back_at_once(clock, steps):
    channel = ScriptedChannel(clock, ["12*"])
    assert run(clock, steps.collect(channel, None, 6)) is BACK
    assert clock.seconds() == pytest.approx(1.5)


def test_star_is_invalid_when_it_means_nothing(clock, steps):
    channel = ScriptedChannel(clock, ["12*3#"])
    assert run(clock, steps.collect(channel, None, 6, allow_star_back=False)) is INVALID


def test_star_is_the_decimal_point_of_a_price(clock, steps):
    channel = ScriptedChannel(clock, ["12*34#"])
    assert run(clock, steps.collect(channel, "zh/enter-price", 8, star_is_decimal=True)) == "12.34"


@pytest.mark.parametrize("keys", ["1*2*3#", "*5#", "12*#", "1**2#"])
def test_misplaced_decimal_points_are_invalid(clock, steps, keys):
    channel = ScriptedChannel(clock, [keys, "9#"])
    assert run(clock, steps.collect(channel, None, 8, star_is_decimal=True)) is INVALID
    # The whole bad entry was read: the next one starts afresh.
    assert run(clock, steps.collect(channel, None, 8)) == "9"


def test_letter_keys_are_invalid(clock, steps):
    channel = ScriptedChannel(clock, ["1A#"])
    assert run(clock, steps.collect(channel, None, 8)) is INVALID


# menu


def test_menu_returns_the_key(clock, steps, prompter):
    channel = ScriptedChannel(clock, ["2"])
    assert run(clock, steps.menu(channel, "zh/main-menu", "123")) == "2"
    assert prompter.played == [["zh/main-menu"]]


def test_menu_says_invalid_and_asks_again(clock, steps, prompter):
    channel = ScriptedChannel(clock, ["7", 1, "3"])
    assert run(clock, steps.menu(channel, "zh/main-menu", "123")) == "3"
    assert prompter.played == [["zh/main-menu"], ["zh/invalid-input"], ["zh/main-menu"]]


def test_menu_says_no_input_after_a_timeout(clock, steps, prompter):
    channel = ScriptedChannel(clock, [6, "1"])
    assert run(clock, steps.menu(channel, "zh/main-menu", "123", timeout=5)) == "1"
    assert prompter.played == [["zh/main-menu"], ["zh/no-input"], ["zh/main-menu"]]


def test_menu_gives_up_after_its_retries(clock, steps, prompter):
    channel = ScriptedChannel(clock, ["8", "9", 10])
    d = steps.menu(channel, "zh/main-menu", "123", retries=3, timeout=5, invalid_prompt="en/invalid-input")
    error = failure_of(run(clock, d), TooManyRetries)
    assert error.last is TIMEOUT
    # Nothing said for the last failure: the flow says goodbye.
    assert prompter.played == [
        ["zh/main-menu"], ["en/invalid-input"],
        ["zh/main-menu"], ["en/invalid-input"],
        ["zh/main-menu"],
    ]


def test_zero_asks_for_an_agent(clock, steps):
    channel = ScriptedChannel(clock, ["0"])
    assert run(clock, steps.menu(channel, "zh/main-menu", "123")) is AGENT


def test_star_in_a_menu_goes_back(clock, steps):
    channel = ScriptedChannel(clock, ["*"])
    assert run(clock, steps.menu(channel, "zh/main-menu", "123")) is BACK


def test_zero_cannot_be_a_choice(clock, steps):
    channel = ScriptedChannel(clock, [])
    failure_of(run(clock, steps.menu(channel, "zh/main-menu", "012")), ValueError)


# confirm


@pytest.mark.parametrize("key, answer", [("1", True), ("2", False), ("0", AGENT), ("*", BACK)])
def test_confirm(clock, steps, key, answer):
    channel = ScriptedChannel(clock, [key])
    assert run(clock, steps.confirm(channel, "zh/confirm-order")) is answer


def test_confirm_retries_other_keys(clock, steps, prompter):
    channel = ScriptedChannel(clock, ["5", "#", "1"])
    assert run(clock, steps.confirm(channel, "zh/confirm-order")) is True
    assert prompter.played.count(["zh/invalid-input"]) == 2


# the call ending


def test_hang_up_while_keying_ends_the_step(clock, steps):
    channel = ScriptedChannel(clock, ["12", HANGUP])
    failure_of(run(clock, steps.collect(channel, None, 6)), CallEnded)
    assert clock.seconds() == pytest.approx(1.0)


def test_hang_up_during_a_menu_ends_it(clock, steps):
    channel = ScriptedChannel(clock, [2, HANGUP])
    failure_of(run(clock, steps.menu(channel, "zh/main-menu", "123")), CallEnded)


def test_no_step_starts_on_an_ended_call(clock, steps, prompter):
    channel = ScriptedChannel(clock, [])
    channel.hangup()
    failure_of(run(clock, steps.confirm(channel, "zh/confirm-order")), CallEnded)
    assert prompter.played == []


# run_flow


def test_run_flow_on_an_error_says_unavailable_and_hangs_up(clock, prompter):
    channel = ScriptedChannel(clock, [])

    def flow(channel):
        raise RuntimeError("the trading gateway is down")

    with CapturedLog() as events:
        assert run(clock, run_flow(channel, flow, prompter)) is None
    assert prompter.played == [["zh/service-unavailable"]]
    assert channel.hangups == ["normal"]
    [failed] = events.formats("IVR flow")
    assert failed["log_failure"].check(RuntimeError)


def test_run_flow_after_a_hang_up_just_returns(clock, prompter):
    channel = ScriptedChannel(clock, [1, HANGUP])
    steps = Dialogue(prompter)

    async def flow(channel):
        await steps.menu(channel, "zh/main-menu", "123")
        raise AssertionError("the flow went on")

    with CapturedLog() as events:
        assert run(clock, run_flow(channel, flow, prompter)) is None
    assert events.formats("failed") == []
    assert prompter.played == [["zh/main-menu"]]
    assert channel.hangups == []


def test_run_flow_hangs_up_a_flow_that_returns(clock, prompter):
    channel = ScriptedChannel(clock, ["1"])
    steps = Dialogue(prompter)
    chosen = []

    @defer.inlineCallbacks
    def flow(channel):
        chosen.append((yield steps.menu(channel, "zh/main-menu", "123")))

    run(clock, run_flow(channel, flow, prompter))
    assert chosen == ["1"]
    assert channel.hangups == ["normal"]


def test_run_flow_hangs_up_even_when_the_prompt_is_missing(clock, tmp_path):
    channel = ScriptedChannel(clock, [], codec=AudioFormat(0, "PCMU", None))

    def flow(channel):
        raise RuntimeError("boom")

    with CapturedLog() as events:
        run(clock, run_flow(channel, flow, PackPrompter(str(tmp_path))))
    assert channel.hangups == ["normal"]
    assert events.formats("service-unavailable")[0]["log_failure"].check(PromptNotFound)


# prompters


def write_wav(path, samples):
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"".join(int(s).to_bytes(2, "little", signed=True) for s in samples))


@pytest.fixture
def pack(tmp_path):
    write_wav(tmp_path / "zh" / "welcome.wav", [1000] * 400)
    write_wav(tmp_path / "zh" / "digit-2.wav", [-2000] * 200)
    return tmp_path


@pytest.mark.parametrize("encoding", ["PCMU", "PCMA"])
def test_pack_prompter_plays_frames_in_the_calls_codec(clock, pack, encoding):
    channel = ScriptedChannel(clock, [], codec=AudioFormat(0, encoding, None))
    PackPrompter(str(pack)).play(channel, ["zh/welcome", "zh/digit-2"])
    [frames] = channel.played
    assert frames == (
        load_prompt(str(pack / "zh" / "welcome.wav"), encoding)
        + load_prompt(str(pack / "zh" / "digit-2.wav"), encoding)
    )
    assert len(frames) == 3 + 2


def test_pack_prompter_gives_names_to_a_channel_without_codec(clock, pack):
    channel = ScriptedChannel(clock, [])
    PackPrompter(str(pack)).play(channel, "zh/welcome")
    assert channel.played == [["zh/welcome"]]


def test_pack_prompter_refuses_a_missing_prompt(clock, pack):
    channel = ScriptedChannel(clock, [], codec=AudioFormat(0, "PCMU", None))
    with pytest.raises(PromptNotFound):
        PackPrompter(str(pack)).play(channel, ["zh/welcome", "zh/no-such-prompt"])
    assert channel.played == []


def test_prompters_provide_the_interface(tmp_path):
    verifyObject(IPrompter, MemoryPrompter())
    verifyObject(IPrompter, PackPrompter(str(tmp_path)))
