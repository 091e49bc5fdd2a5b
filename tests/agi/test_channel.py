"""
L{AGIChannel}: the IChannel operations as the AGI commands they send and
the answers that drive them.

Answers are in Asterisk's wire format as res/res_agi.c writes them (see
test_protocol.py's docstring for where each comes from); Asterisk itself
is not installed here.
"""

import re

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface.verify import verifyObject

from callcenter.agi.channel import AGIChannel
from callcenter.agi.commands import Recorded
from callcenter.agi.protocol import AGIHangup, FastAGIProtocol
from callcenter.interfaces import IChannel
from outcomes import CapturedLog, results_of


def header(uniqueid="1700000000.1", callerid="13800138001", dnid="9500"):
    return (
        "agi_network: yes\n"
        "agi_network_script: trading\n"
        "agi_request: agi://127.0.0.1:4573/trading\n"
        "agi_channel: PJSIP/trunk-00000001\n"
        "agi_language: zh\n"
        "agi_type: PJSIP\n"
        f"agi_uniqueid: {uniqueid}\n"
        "agi_version: 20.5.0\n"
        f"agi_callerid: {callerid}\n"
        "agi_calleridname: unknown\n"
        "agi_callingpres: 0\n"
        f"agi_dnid: {dnid}\n"
        "agi_context: from-trunk\n"
        "agi_extension: 9500\n"
        "agi_priority: 1\n"
        "agi_enhanced: 0.0\n"
        "\n"
    ).encode()


def make_channel(**kwargs):
    agi = FastAGIProtocol(Clock())
    agi.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000)))
    agi.dataReceived(header(**kwargs))
    return AGIChannel(agi)


@pytest.fixture
def channel():
    return make_channel()


class Asterisk:
    """Answers the channel's commands one by one, checking each line."""

    def __init__(self, channel):
        self.agi = channel.agi

    def expect(self, command, answer):
        sent = self.agi.transport.value().decode()
        assert sent == command + "\n", f"expected {command!r}, got {sent!r}"
        self.agi.transport.clear()
        self.agi.dataReceived(answer.encode() + b"\n")

    def idle(self):
        assert self.agi.transport.value() == b""


@pytest.fixture
def asterisk(channel):
    return Asterisk(channel)


def test_it_is_an_ichannel_with_the_calls_identity(channel):
    verifyObject(IChannel, channel)
    assert channel.call_id == "1700000000.1"
    assert re.fullmatch(r"[0-9a-f]{16}", channel.correlation_id)
    assert (channel.caller.number, channel.caller.display_name, channel.caller.asserted) == ("13800138001", None, False)
    assert channel.dialled == "9500"
    assert channel.codec is None
    assert channel.stats() == {}


def test_an_unknown_caller_and_dnid():
    channel = make_channel(callerid="unknown", dnid="unknown")
    assert channel.caller.number is None
    assert channel.dialled == "9500"  # agi_extension


def test_answer(channel, asterisk):
    answered = results_of(channel.answer())
    asterisk.expect("ANSWER", "200 result=0")
    assert answered == [None] and channel.state == "answered"


def test_answer_failing_is_a_hangup(channel, asterisk):
    answered = results_of(channel.answer())
    asterisk.expect("ANSWER", "200 result=-1")
    assert answered[0].check(AGIHangup)


# Prompts by name


def test_play_a_prompt_by_name(channel, asterisk):
    played = results_of(channel.play("welcome"))
    asterisk.expect('STREAM FILE welcome "0123456789*#"', "200 result=0 endpos=20480")
    assert played == [True]


def test_play_a_list_in_order_not_interruptible(channel, asterisk):
    played = results_of(channel.play(["your-balance-is", "digits/5", "yuan"], interruptible=False))
    asterisk.expect('STREAM FILE your-balance-is ""', "200 result=0 endpos=12000")
    asterisk.expect('STREAM FILE digits/5 ""', "200 result=0 endpos=3000")
    asterisk.expect('STREAM FILE yuan ""', "200 result=0 endpos=4000")
    assert played == [True]


@pytest.mark.parametrize("frames", [[b"\xff" * 160, b"\xff" * 160], b"\xff" * 160, [b"x", "name"]])
def test_frames_are_refused_with_a_clear_error(channel, frames):
    with pytest.raises(TypeError, match="by name"):
        channel.play(frames)


def test_a_key_stops_the_prompts_and_is_kept_for_collect_digits(channel, asterisk):
    played = results_of(channel.play(["menu-1", "menu-2"]))
    asterisk.expect('STREAM FILE menu-1 "0123456789*#"', "200 result=50 endpos=8000")
    assert played == [False]
    asterisk.idle()
    digits = results_of(channel.collect_digits(3, 5, 2))
    asterisk.expect("WAIT FOR DIGIT 2000", "200 result=51")
    asterisk.expect("WAIT FOR DIGIT 2000", "200 result=35")
    assert digits == ["23"]


def test_a_prompt_asterisk_cannot_play_is_logged_and_ends_the_playback(channel, asterisk):
    with CapturedLog() as logged:
        played = results_of(channel.play(["missing", "welcome"]))
        asterisk.expect('STREAM FILE missing "0123456789*#"', "200 result=-1 endpos=0")
    asterisk.idle()
    assert played == [False]
    assert logged.formats("prompt {name} not played")


def test_stop_playing_skips_the_prompts_not_started(channel, asterisk):
    played = results_of(channel.play(["a", "b", "c"]))
    channel.stop_playing()
    asterisk.expect('STREAM FILE a "0123456789*#"', "200 result=0 endpos=1")
    asterisk.idle()
    assert played == [False]


def test_a_new_play_replaces_the_old(channel, asterisk):
    first = results_of(channel.play(["a", "b"]))
    second = results_of(channel.play("c"))
    asterisk.expect('STREAM FILE a "0123456789*#"', "200 result=0 endpos=1")
    asterisk.expect('STREAM FILE c "0123456789*#"', "200 result=0 endpos=1")
    assert (first, second) == ([False], [True])


def test_hangup_during_play(channel, asterisk):
    played = results_of(channel.play(["a", "b"]))
    ended = results_of(channel.ended)
    asterisk.expect('STREAM FILE a "0123456789*#"', "200 result=-1 endpos=1200")
    channel.agi.dataReceived(b"HANGUP\n")
    assert played == [False]
    assert ended == ["caller hung up"]
    asterisk.idle()


def test_say_number_and_digits(channel, asterisk):
    said = results_of(channel.say_number(1500))
    asterisk.expect('SAY NUMBER 1500 "0123456789*#"', "200 result=0")
    assert said == [True]
    said = results_of(channel.say_digits("600519", interruptible=False))
    asterisk.expect('SAY DIGITS 600519 ""', "200 result=0")
    assert said == [True]
    said = results_of(channel.say_number(7))
    asterisk.expect('SAY NUMBER 7 "0123456789*#"', "200 result=49")
    assert said == [False]
    digits = results_of(channel.collect_digits(1, 5, 5))
    assert digits == ["1"]


# Collecting digits


def test_collect_digits_uses_the_first_then_the_inter_digit_timeout(channel, asterisk):
    digits = results_of(channel.collect_digits(6, 10, 3.5))
    asterisk.expect("WAIT FOR DIGIT 10000", "200 result=54")
    asterisk.expect("WAIT FOR DIGIT 3500", "200 result=48")
    asterisk.expect("WAIT FOR DIGIT 3500", "200 result=0")  # timeout
    assert digits == ["60"]


def test_collect_digits_stops_at_the_maximum(channel, asterisk):
    digits = results_of(channel.collect_digits(2, 5, 2))
    asterisk.expect("WAIT FOR DIGIT 5000", "200 result=49")
    asterisk.expect("WAIT FOR DIGIT 2000", "200 result=50")
    asterisk.idle()
    assert digits == ["12"]


def test_collect_digits_stops_at_a_terminator(channel, asterisk):
    digits = results_of(channel.collect_digits(10, 5, 2, terminators="*#"))
    asterisk.expect("WAIT FOR DIGIT 5000", "200 result=57")
    asterisk.expect("WAIT FOR DIGIT 2000", "200 result=42")
    assert digits == ["9"]


def test_collect_digits_when_nothing_is_pressed(channel, asterisk):
    digits = results_of(channel.collect_digits(4, 5, 2))
    asterisk.expect("WAIT FOR DIGIT 5000", "200 result=0")
    assert digits == [""]


def test_collect_digits_fires_with_what_it_has_when_the_call_ends(channel, asterisk):
    digits = results_of(channel.collect_digits(8, 5, 2))
    asterisk.expect("WAIT FOR DIGIT 5000", "200 result=56")
    asterisk.expect("WAIT FOR DIGIT 2000", "200 result=-1")
    channel.agi.dataReceived(b"HANGUP\n")
    assert digits == ["8"]
    assert results_of(channel.collect_digits(4, 5, 2)) == [""]
    asterisk.idle()


def test_collect_digits_with_a_prompt_uses_get_data_when_it_can(channel, asterisk):
    digits = results_of(channel.collect_digits(8, 5, 5, prompt="enter-account"))
    asterisk.expect("GET DATA enter-account 5000 8", "200 result=00123456 (timeout)")
    assert digits == ["00123456"]


def test_collect_digits_with_a_prompt_and_other_timeouts_plays_then_waits(channel, asterisk):
    digits = results_of(channel.collect_digits(4, 8, 3, terminators="#", prompt="enter-pin"))
    asterisk.expect('STREAM FILE enter-pin "0123456789*#"', "200 result=49 endpos=4000")
    asterisk.expect("WAIT FOR DIGIT 3000", "200 result=50")
    asterisk.expect("WAIT FOR DIGIT 3000", "200 result=35")
    assert digits == ["12"]


def test_get_data_hangup_gives_no_digits(channel, asterisk):
    digits = results_of(channel.collect_digits(8, 5, 5, prompt="enter-account"))
    asterisk.expect("GET DATA enter-account 5000 8", "200 result=-1")
    assert digits == [""]


# Recording, transfer, bridge, hang-up


def test_record_what_the_caller_says(channel, asterisk):
    recording = channel.record(rx="/var/spool/asterisk/recordings/order-1.wav", max_seconds=60, silence_seconds=3, beep=True)
    stopped = results_of(recording.stop())
    asterisk.expect('RECORD FILE /var/spool/asterisk/recordings/order-1 wav "#" 60000 BEEP s=3', "200 result=35 (dtmf) endpos=40000")
    assert stopped == [Recorded("dtmf", "#", 40000)]
    assert results_of(recording.stop()) == [Recorded("dtmf", "#", 40000)]


def test_a_recording_that_fails_is_logged_and_stops_with_none(channel, asterisk):
    with CapturedLog() as logged:
        recording = channel.record(rx="/nonexistent/x.wav")
        asterisk.expect('RECORD FILE /nonexistent/x wav "#" 300000', "200 result=-1 (writefile)")
    assert results_of(recording.stop()) == [None]
    assert logged.formats("recording to {path} failed")


@pytest.mark.parametrize(
    "kwargs", [{"tx": "/tmp/a.wav"}, {"mixed": "/tmp/a.wav"}, {}, {"rx": "/tmp/noextension"}, {"rx": "/tmp/v.1/x"}]
)
def test_record_refuses_what_record_file_cannot_do(channel, kwargs):
    with pytest.raises(ValueError):
        channel.record(**kwargs)


def test_transfer_dials_and_reports_the_dial_status(channel, asterisk):
    done = results_of(channel.transfer("8001"))
    asterisk.expect("EXEC Dial Local/8001@callcenter-transfer,60", "200 result=0")
    asterisk.expect("GET VARIABLE DIALSTATUS", "200 result=1 (ANSWER)")
    assert done == ["ANSWER"]


def test_transfer_with_a_dial_template():
    agi = make_channel().agi
    channel = AGIChannel(agi, dial_template="PJSIP/{number}@trunk", dial_timeout=25)
    asterisk = Asterisk(channel)
    done = results_of(channel.transfer("+8610123"))
    asterisk.expect("EXEC Dial PJSIP/+8610123@trunk,25", "200 result=0")
    asterisk.expect("GET VARIABLE DIALSTATUS", "200 result=1 (BUSY)")
    assert done == ["BUSY"]


@pytest.mark.parametrize("number", ["", "8001&PJSIP/evil", "8001,30,G(x)", "80 01", "sip:x"])
def test_transfer_refuses_what_is_not_a_number(channel, asterisk, number):
    done = results_of(channel.transfer(number))
    assert done[0].check(ValueError)
    asterisk.idle()


def test_bridge_with_another_agi_call_uses_bridge(channel, asterisk):
    other = make_channel(uniqueid="1700000000.9")
    done = results_of(channel.bridge(other))
    asterisk.expect("EXEC Bridge 1700000000.9", "200 result=0")
    asterisk.expect("GET VARIABLE BRIDGERESULT", "200 result=1 (SUCCESS)")
    assert done == ["SUCCESS"]


def test_bridge_with_something_else_is_refused(channel):
    assert results_of(channel.bridge(object()))[0].check(TypeError)


def test_hangup_ends_the_call_at_once(channel, asterisk):
    ended = results_of(channel.ended)
    done = results_of(channel.hangup())
    assert ended == ["normal"]
    asterisk.expect("HANGUP", "200 result=1")
    assert done == [None]
    channel.agi.dataReceived(b"HANGUP\n")  # Asterisk's, once the channel is down.
    assert ended == ["normal"]
    assert results_of(channel.hangup()) == [None]
    asterisk.idle()


def test_the_connection_closing_ends_the_call(channel):
    ended = results_of(channel.ended)
    channel.agi.connectionLost(None)
    assert ended == ["connection lost"]
    assert results_of(channel.play("x")) == [False]
