"""
Typed AGI commands: the exact line each sends (quoting as res_agi.c's
parse_args splits arguments: spaces separate, double quotes group, a
backslash escapes) and how each maps Asterisk's answer.

The answers are written as res/res_agi.c's handlers print them
(handle_answer, handle_streamfile, handle_getdata, handle_waitfordigit,
handle_recordfile, handle_saydigits, handle_saynumber, handle_getvariable,
handle_setvariable, handle_exec, handle_hangup) and as the AGI command
reference on docs.asterisk.org describes the results (STREAM FILE: "0 if
playback completes without a digit being pressed, or the ASCII numerical
value of the digit if one was pressed, or -1 on error or if the channel
was disconnected"; EXEC: "-2 on failure to find application"; GET
VARIABLE: "200 result=1 (testvariable)", 0 if not set).  Asterisk is not
installed here.
"""

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from callcenter.agi import commands
from callcenter.agi.protocol import AGICommandError, AGIFailure, AGIHangup, FastAGIProtocol
from outcomes import results_of

HEADER = (
    b"agi_network: yes\n"
    b"agi_network_script: flow\n"
    b"agi_request: agi://127.0.0.1/flow\n"
    b"agi_channel: PJSIP/trunk-00000002\n"
    b"agi_uniqueid: 1700000000.2\n"
    b"agi_callerid: 13800138001\n"
    b"agi_calleridname: unknown\n"
    b"agi_dnid: 9500\n"
    b"agi_context: from-trunk\n"
    b"agi_extension: 9500\n"
    b"agi_priority: 1\n"
    b"\n"
)


@pytest.fixture
def agi():
    session = FastAGIProtocol(Clock())
    session.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000)))
    session.dataReceived(HEADER)
    return session


def run(agi, call, answer):
    """Run C{call}, answer it with the line C{answer}; return (line sent, outcome)."""
    outcome = results_of(call())
    line = agi.transport.value()
    agi.transport.clear()
    agi.dataReceived(answer + b"\n")
    [value] = outcome
    return line, value


def test_quote_leaves_plain_values_bare_and_quotes_the_rest():
    assert commands.quote("welcome") == "welcome"
    assert commands.quote("digits/1") == "digits/1"
    assert commands.quote("") == '""'
    assert commands.quote("two words") == '"two words"'
    assert commands.quote('say "hi"') == '"say \\"hi\\""'
    assert commands.quote("C:\\tmp") == '"C:\\\\tmp"'
    assert commands.quote("中文") == "中文"
    with pytest.raises(ValueError):
        commands.quote("a\nb")


def test_answer(agi):
    assert run(agi, lambda: commands.answer(agi), b"200 result=0") == (b"ANSWER\n", None)
    line, failure = run(agi, lambda: commands.answer(agi), b"200 result=-1")
    assert failure.check(AGIFailure)


@pytest.mark.parametrize(
    "answer, expected",
    [
        (b"200 result=0 endpos=8000", (None, 8000)),
        (b"200 result=49 endpos=3120", ("1", 3120)),
        (b"200 result=35 endpos=160", ("#", 160)),
        (b"200 result=42 endpos=160", ("*", 160)),
    ],
)
def test_stream_file(agi, answer, expected):
    line, value = run(agi, lambda: commands.stream_file(agi, "welcome", "0123456789#*"), answer)
    assert line == b'STREAM FILE welcome "0123456789#*"\n'
    assert value == expected


def test_stream_file_without_escape_digits_and_with_an_offset(agi):
    line, value = run(agi, lambda: commands.stream_file(agi, "custom/中文 提示", "", 8000), b"200 result=0 endpos=16000")
    assert line == 'STREAM FILE "custom/中文 提示" "" 8000\n'.encode()
    assert value == (None, 16000)


def test_stream_file_failure(agi):
    # A file Asterisk cannot open: handle_streamfile's "200 result=-1 endpos=%ld".
    _, failure = run(agi, lambda: commands.stream_file(agi, "missing"), b"200 result=-1 endpos=0")
    assert failure.check(AGIFailure)
    assert failure.value.result.endpos == 0


def test_escape_digits_are_keypad_keys(agi):
    with pytest.raises(ValueError):
        commands.stream_file(agi, "welcome", '1" HANGUP "')


@pytest.mark.parametrize(
    "answer, expected",
    [
        (b"200 result=1234 (timeout)", ("1234", True)),
        (b"200 result=0123", ("0123", False)),
        (b"200 result= (timeout)", ("", True)),
        (b"200 result=", ("", False)),  # only # pressed
        (b"200 result=*9", ("*9", False)),
    ],
)
def test_get_data(agi, answer, expected):
    line, value = run(agi, lambda: commands.get_data(agi, "enter-account", 5000, 8), answer)
    assert line == b"GET DATA enter-account 5000 8\n"
    assert value == expected


def test_get_data_failure_and_default_length(agi):
    line, failure = run(agi, lambda: commands.get_data(agi, "enter-pin", 3000), b"200 result=-1")
    assert line == b"GET DATA enter-pin 3000\n"
    assert failure.check(AGIFailure)


@pytest.mark.parametrize(
    "answer, expected",
    [(b"200 result=0", None), (b"200 result=55", "7"), (b"200 result=65", "A")],
)
def test_wait_for_digit(agi, answer, expected):
    line, value = run(agi, lambda: commands.wait_for_digit(agi, 4000), answer)
    assert (line, value) == (b"WAIT FOR DIGIT 4000\n", expected)


def test_wait_for_digit_failure(agi):
    _, failure = run(agi, lambda: commands.wait_for_digit(agi, -1), b"200 result=-1")
    assert failure.check(AGIFailure)


@pytest.mark.parametrize(
    "answer, expected",
    [
        (b"200 result=35 (dtmf) endpos=24000", commands.Recorded("dtmf", "#", 24000)),
        (b"200 result=0 (timeout) endpos=480000", commands.Recorded("timeout", None, 480000)),
        (b"200 result=-1 (hangup) endpos=12000", commands.Recorded("hangup", None, 12000)),
        (b"200 result=35 (randomerror) endpos=0", commands.Recorded("randomerror", "#", 0)),
    ],
)
def test_record_file(agi, answer, expected):
    line, value = run(
        agi,
        lambda: commands.record_file(
            agi, "/var/spool/asterisk/voicemail/8001 msg", "wav", "#", 60000, beep=True, silence_s=3
        ),
        answer,
    )
    assert line == b'RECORD FILE "/var/spool/asterisk/voicemail/8001 msg" wav "#" 60000 BEEP s=3\n'
    assert value == expected


@pytest.mark.parametrize("answer", [b"200 result=-1 (writefile)", b"200 result=-1 (waitfor) endpos=0"])
def test_record_file_failure(agi, answer):
    line, failure = run(agi, lambda: commands.record_file(agi, "/tmp/x", "gsm"), answer)
    assert line == b'RECORD FILE /tmp/x gsm "#" -1\n'
    assert failure.check(AGIFailure)


def test_say_digits(agi):
    line, value = run(agi, lambda: commands.say_digits(agi, "600519", "#"), b"200 result=0")
    assert (line, value) == (b'SAY DIGITS 600519 "#"\n', None)
    _, value = run(agi, lambda: commands.say_digits(agi, 12), b"200 result=35")
    assert value == "#"
    with pytest.raises(ValueError):
        commands.say_digits(agi, "12; HANGUP")


def test_say_number(agi):
    line, value = run(agi, lambda: commands.say_number(agi, 1234567), b"200 result=0")
    assert (line, value) == (b'SAY NUMBER 1234567 ""\n', None)
    line, value = run(agi, lambda: commands.say_number(agi, -5, "0123456789*#", "f"), b"200 result=50")
    assert (line, value) == (b'SAY NUMBER -5 "0123456789*#" f\n', "2")
    _, failure = run(agi, lambda: commands.say_number(agi, 1), b"200 result=-1")
    assert failure.check(AGIFailure)
    for bad in (2**31, 1.5, "12", True):
        with pytest.raises(ValueError):
            commands.say_number(agi, bad)


def test_get_variable(agi):
    line, value = run(agi, lambda: commands.get_variable(agi, "CALLERID(name)"), b"200 result=1 (Zhang San (VIP))")
    assert (line, value) == (b"GET VARIABLE CALLERID(name)\n", "Zhang San (VIP)")
    _, value = run(agi, lambda: commands.get_variable(agi, "UNSET"), b"200 result=0")
    assert value is None
    _, value = run(agi, lambda: commands.get_variable(agi, "EMPTY"), b"200 result=1 ()")
    assert value == ""


def test_set_variable_quotes_the_value(agi):
    line, value = run(agi, lambda: commands.set_variable(agi, "ORDER", 'buy "600519" x 100'), b"200 result=1")
    assert (line, value) == (b'SET VARIABLE ORDER "buy \\"600519\\" x 100"\n', None)


def test_exec(agi):
    line, value = run(agi, lambda: commands.exec_(agi, "Dial", "PJSIP/8001,30,tT"), b"200 result=0")
    assert (line, value) == (b"EXEC Dial PJSIP/8001,30,tT\n", 0)
    line, value = run(agi, lambda: commands.exec_(agi, "Playback", "hello world"), b"200 result=-1")
    assert (line, value) == (b'EXEC Playback "hello world"\n', -1)
    line, failure = run(agi, lambda: commands.exec_(agi, "NoSuchApp"), b"200 result=-2")
    assert line == b"EXEC NoSuchApp\n"
    assert failure.check(AGIFailure)


def test_hangup(agi):
    assert run(agi, lambda: commands.hangup(agi), b"200 result=1") == (b"HANGUP\n", True)
    assert run(agi, lambda: commands.hangup(agi, "SIP/gone-1"), b"200 result=-1") == (b"HANGUP SIP/gone-1\n", False)


def test_protocol_failures_pass_through(agi):
    _, failure = run(agi, lambda: commands.say_number(agi, 5), b"510 Invalid or unknown command")
    assert failure.check(AGICommandError)
    _, failure = run(agi, lambda: commands.stream_file(agi, "x"), b"511 Command Not Permitted on a dead channel or intercept routine")
    assert failure.check(AGIHangup)
