"""
The FastAGI protocol in memory: the agi_* block, answers and their parsing,
one command at a time, HANGUP, 510/511/520, and peers that are not Asterisk.

Where the transcripts' format comes from (Asterisk is not installed here,
so every byte Asterisk sends is written out below as Asterisk writes it):

* res/res_agi.c (asterisk/asterisk, and the Asterisk 20-era copy in
  InterLinked1/asterisk): ``launch_netscript`` sends ``agi_network: yes``
  and ``agi_network_script: <URL path>``; ``setup_env`` then sends
  agi_request, agi_channel, agi_language, agi_type, agi_uniqueid,
  agi_version, agi_callerid ("unknown" when absent), agi_calleridname,
  agi_callingpres, agi_callingani2, agi_callington, agi_callingtns,
  agi_dnid, agi_rdnis, agi_context, agi_extension, agi_priority,
  agi_enhanced, agi_accountcode, agi_threadid, agi_arg_<n>, in that order,
  each ``"%s: %s\\n"``, and an empty line.
* ``agi_handle_command``: ``510 Invalid or unknown command``; ``511 Command
  Not Permitted on a dead channel or intercept routine``; ``520 Invalid
  command syntax.  Proper usage not available.`` or ``520-Invalid command
  syntax.  Proper usage follows:``, the usage, ``520 End of proper usage.``
  (Asterisk 1.6 wrote the usage with ``"%s"``, no newline, so the end line
  can follow its last line directly).
* ``run_agi``: ``HANGUP\\n`` between commands once the channel hangs up
  (AGISIGHUP); dead-channel commands then get 511.
* The handlers' own ``200 result=...`` lines: handle_streamfile
  (``result=%d endpos=%ld``), handle_getdata (``result=%s (timeout)``,
  ``result=-1``, ``result=%s``), handle_getvariable (``result=1 (%s)``,
  ``result=0``), handle_recordfile (``(dtmf)``, ``(timeout)``, ``(hangup)``,
  ``(writefile)``, ``(randomerror)``), handle_speechrecognize (``result=1
  (speech) endpos=%ld results=%d score0=...``), GOSUB's ``100 result=0
  Trying...``; and the AGI command pages on docs.asterisk.org ("Example
  return code: 200 result=1 (testvariable)").
"""

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from callcenter.agi.protocol import (
    AGICommandError,
    AGIConnectionLost,
    AGIHangup,
    AGIRequest,
    FastAGIProtocol,
    parse_result,
)
from outcomes import CapturedLog, results_of

# AGI(agi://192.0.2.10:4573/flow?lang=zh,8001,"a b") on a PJSIP call.
HEADER = (
    b"agi_network: yes\n"
    b"agi_network_script: flow?lang=zh\n"
    b"agi_request: agi://192.0.2.10:4573/flow?lang=zh\n"
    b"agi_channel: SIP/1001-00000001\n"
    b"agi_language: zh\n"
    b"agi_type: SIP\n"
    b"agi_uniqueid: 1700000000.1\n"
    b"agi_version: 20.5.0\n"
    b"agi_callerid: 13800138001\n"
    b"agi_calleridname: \xe5\xbc\xa0\xe4\xb8\x89\n"
    b"agi_callingpres: 0\n"
    b"agi_callingani2: 0\n"
    b"agi_callington: 0\n"
    b"agi_callingtns: 0\n"
    b"agi_dnid: 9500\n"
    b"agi_rdnis: unknown\n"
    b"agi_context: from-trunk\n"
    b"agi_extension: 9500\n"
    b"agi_priority: 2\n"
    b"agi_enhanced: 0.0\n"
    b"agi_accountcode: \n"
    b"agi_threadid: 140245353027328\n"
    b"agi_arg_1: 8001\n"
    b"agi_arg_2: a b\n"
    b"\n"
)


def connect(clock=None, **options):
    agi = FastAGIProtocol(clock or Clock(), **options)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.20", 40000))
    agi.makeConnection(transport)
    return agi, transport


def ready(**options):
    """A session whose header is in; the transport's buffer is empty."""
    agi, transport = connect(**options)
    agi.dataReceived(HEADER)
    return agi, transport


def sent(transport):
    value = transport.value()
    transport.clear()
    return value


# The agi_* block


def test_the_header_becomes_a_request():
    agi, transport = connect()
    request = results_of(agi.request_ready)
    agi.dataReceived(HEADER)
    [request] = request
    assert request is agi.request
    assert request.script == "flow"
    assert dict(request.params) == {"lang": "zh"}
    assert request.args == ("8001", "a b")
    assert request.channel == "SIP/1001-00000001"
    assert request.unique_id == "1700000000.1"
    assert (request.extension, request.context, request.dnid) == ("9500", "from-trunk", "9500")
    assert request.get("accountcode") == ""
    assert request.get("rdnis") == "unknown"
    assert request.caller.number == "13800138001"
    assert request.caller.display_name == "张三"
    assert request.caller.asserted is False
    assert not request.presentation_restricted
    assert transport.value() == b""


def test_the_header_may_arrive_a_byte_at_a_time_and_with_crlf():
    agi, _ = connect()
    request = results_of(agi.request_ready)
    for byte in HEADER.replace(b"\n", b"\r\n"):
        agi.dataReceived(bytes([byte]))
    assert request[0].script == "flow"
    assert request[0].caller.number == "13800138001"


def test_args_come_in_numeric_order():
    request = AGIRequest.from_variables(
        {f"agi_arg_{n}": str(n) for n in (10, 2, 1, 11, 3, 4, 5, 6, 7, 8, 9)}
    )
    assert request.args == tuple(str(n) for n in range(1, 12))


@pytest.mark.parametrize(
    "callerid, name, pres, number, display, restricted",
    [
        ("unknown", "unknown", "0", None, None, False),
        ("", "", "0", None, None, False),
        ("anonymous", "Anonymous", "32", None, None, True),
        ("13800138001", "unknown", "35", "13800138001", None, True),
        ("+8613800138001", "Li Lei", "1", "+8613800138001", "Li Lei", False),
    ],
)
def test_unknown_and_anonymous_callers(callerid, name, pres, number, display, restricted):
    request = AGIRequest.from_variables(
        {"agi_callerid": callerid, "agi_calleridname": name, "agi_callingpres": pres}
    )
    assert (request.caller.number, request.caller.display_name) == (number, display)
    assert request.presentation_restricted is restricted


def test_without_agi_network_script_the_flow_comes_from_agi_request():
    request = AGIRequest.from_variables({"agi_request": "agi://10.0.0.1/balance?x=1"})
    assert (request.script, dict(request.params)) == ("balance", {"x": "1"})
    assert AGIRequest.from_variables({"agi_request": "agi://10.0.0.1"}).script == ""


def test_dnid_unknown_is_none():
    assert AGIRequest.from_variables({"agi_dnid": "unknown"}).dnid is None


def test_invalid_utf8_in_the_header_does_not_crash():
    agi, _ = connect()
    agi.dataReceived(b"agi_calleridname: \xff\xfe\n" + HEADER)
    assert agi.request.caller.display_name == "张三"  # The later value wins.
    assert agi.connected


# Peers that are not Asterisk


def test_a_peer_that_is_not_agi_is_dropped_with_a_log_line():
    agi, transport = connect()
    request = results_of(agi.request_ready)
    with CapturedLog() as logged:
        agi.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.disconnecting
    assert logged.formats("not an AGI header line")
    agi.connectionLost(None)
    assert isinstance(request[0], Failure) and request[0].check(AGIConnectionLost)


def test_a_header_never_finished_is_dropped_after_the_timeout():
    clock = Clock()
    agi, transport = connect(clock, header_timeout=5)
    agi.dataReceived(b"agi_network: yes\n")
    clock.advance(4.9)
    assert not transport.disconnecting
    with CapturedLog() as logged:
        clock.advance(0.2)
    assert transport.disconnecting
    assert logged.formats("no complete AGI header within {timeout} s")


def test_a_finished_header_cancels_the_timeout():
    clock = Clock()
    agi, transport = connect(clock, header_timeout=5)
    agi.dataReceived(HEADER)
    assert clock.getDelayedCalls() == []
    clock.advance(60)
    assert not transport.disconnecting


def test_an_oversized_line_is_dropped():
    agi, transport = connect()
    with CapturedLog() as logged:
        agi.dataReceived(b"agi_network: " + b"y" * (FastAGIProtocol.MAX_LENGTH + 10))
    assert transport.disconnecting
    assert logged.formats("a line of more than {limit} bytes")


def test_a_flood_of_header_lines_is_dropped():
    agi, transport = connect(max_header_bytes=4096)
    with CapturedLog() as logged:
        agi.dataReceived(b"agi_junk: xxxxxxxxxxxxxxxxxxxxxxxx\n" * 1000)
    assert transport.disconnecting
    assert logged.formats("an AGI header of more than {limit} bytes")
    assert agi.request is None


def test_an_empty_header_is_dropped():
    agi, transport = connect()
    agi.dataReceived(b"\n")
    assert transport.disconnecting


def test_lines_answering_nothing_are_ignored_then_dropped():
    agi, transport = ready(max_stray_lines=3)
    with CapturedLog() as logged:
        agi.dataReceived(b"junk\n200 result=0\n")
        assert not transport.disconnecting
        assert len(logged.formats("line answering no command ignored")) == 2
        agi.dataReceived(b"junk\njunk\n")
    assert transport.disconnecting


# Commands and answers


@pytest.mark.parametrize(
    "line, code, result, data, endpos, number",
    [
        ("200 result=-1", 200, "-1", None, None, -1),
        ("200 result=0", 200, "0", None, None, 0),
        ("200 result=0 endpos=8000", 200, "0", None, 8000, 0),
        ("200 result=-1 endpos=0", 200, "-1", None, 0, -1),
        ("200 result=49 (timeout) endpos=31680", 200, "49", "timeout", 31680, 49),
        ("200 result=35 (dtmf) endpos=16000", 200, "35", "dtmf", 16000, 35),
        ("200 result=-1 (hangup) endpos=4000", 200, "-1", "hangup", 4000, -1),
        ("200 result=-1 (writefile)", 200, "-1", "writefile", None, -1),
        ("200 result=1234 (timeout)", 200, "1234", "timeout", None, 1234),
        ("200 result=0123", 200, "0123", None, None, 123),
        ("200 result= (timeout)", 200, "", "timeout", None, None),
        ("200 result=", 200, "", None, None, None),
        ("200 result=*12 (timeout)", 200, "*12", "timeout", None, None),
        ("200 result=1 (testvariable)", 200, "1", "testvariable", None, 1),
        ("200 result=1 (Zhang San (VIP) 8001)", 200, "1", "Zhang San (VIP) 8001", None, 1),
        ("200 result=1 (SIP/1001-00000001)", 200, "1", "SIP/1001-00000001", None, 1),
        ("200 result=1 (hangup) endpos=0", 200, "1", "hangup", 0, 1),
        ("100 result=0 Trying...", 100, "0", None, None, 0),
    ],
)
def test_answer_lines_parse(line, code, result, data, endpos, number):
    parsed = parse_result(line)
    assert (parsed.code, parsed.result, parsed.data, parsed.endpos, parsed.number) == (
        code,
        result,
        data,
        endpos,
        number,
    )
    assert parsed.line == line


def test_speech_results_and_digit_are_extra_pairs():
    speech = parse_result(
        '200 result=1 (speech) endpos=0 results=2 score0=870 text0="buy 600519 (now)" grammar0=trade '
        'score1=400 text1="by" grammar1=trade'
    )
    assert (speech.data, speech.endpos) == ("speech", 0)
    assert dict(speech.extra) == {
        "results": "2",
        "score0": "870",
        "text0": "buy 600519 (now)",
        "grammar0": "trade",
        "score1": "400",
        "text1": "by",
        "grammar1": "trade",
    }
    digit = parse_result("200 result=1 (digit) digit=* endpos=998877")
    assert (digit.data, digit.extra["digit"], digit.endpos) == ("digit", "*", 998877)
    gosub = parse_result("200 result=0 Gosub complete")
    assert gosub.text == "Gosub complete"


def test_not_an_answer_line_is_a_value_error():
    with pytest.raises(ValueError):
        parse_result("HANGUP")


def test_a_command_is_one_line_and_its_answer_fires_its_deferred():
    agi, transport = ready()
    result = results_of(agi.send_command('STREAM FILE welcome "0123456789#*"'))
    assert sent(transport) == b'STREAM FILE welcome "0123456789#*"\n'
    assert result == []
    agi.dataReceived(b"200 result=0 endpos=8000\n")
    assert (result[0].result, result[0].endpos) == ("0", 8000)


def test_commands_go_one_at_a_time_in_order():
    agi, transport = ready()
    first = results_of(agi.send_command("ANSWER"))
    second = results_of(agi.send_command("GET VARIABLE LANGUAGE"))
    third = results_of(agi.send_command("WAIT FOR DIGIT 5000"))
    assert sent(transport) == b"ANSWER\n"
    agi.dataReceived(b"200 result=0\n")
    assert first[0].result == "0" and second == []
    assert sent(transport) == b"GET VARIABLE LANGUAGE\n"
    agi.dataReceived(b"200 result=1 (zh)\n200 result=")  # The next answer is half in.
    assert second[0].data == "zh" and third == []
    assert sent(transport) == b"WAIT FOR DIGIT 5000\n"
    agi.dataReceived(b"49\n")
    assert third[0].number == 49
    assert sent(transport) == b""


def test_a_command_sent_from_an_answers_callback_waits_its_turn():
    agi, transport = ready()
    order = []

    def then_noop(result):
        order.append("answered")
        agi.send_command("NOOP").addCallback(lambda _: order.append("noop"))

    agi.send_command("ANSWER").addCallback(then_noop)
    agi.send_command("VERBOSE hello 1").addCallback(lambda _: order.append("verbose"))
    agi.dataReceived(b"200 result=0\n")
    assert sent(transport) == b"ANSWER\nVERBOSE hello 1\n"
    agi.dataReceived(b"200 result=1\n200 result=0\n")
    assert order == ["answered", "verbose", "noop"]
    assert sent(transport) == b"NOOP\n"


def test_a_provisional_100_is_not_the_answer():
    agi, _ = ready()
    result = results_of(agi.send_command("GOSUB sub s 1"))
    agi.dataReceived(b"100 result=0 Trying...\n")
    assert result == []
    agi.dataReceived(b"200 result=0 Gosub complete\n")
    assert result[0].text == "Gosub complete"


@pytest.mark.parametrize("line", ["STREAM FILE a\nHANGUP", "X\r", "X\0"])
def test_a_command_with_a_line_break_is_refused(line):
    agi, transport = ready()
    with pytest.raises(ValueError):
        agi.send_command(line)
    assert transport.value() == b""


def test_a_command_too_long_for_asterisks_buffer_is_refused():
    agi, _ = ready()
    with pytest.raises(ValueError):
        agi.send_command("VERBOSE " + "x" * 2100)


def test_a_queued_command_can_be_cancelled():
    agi, transport = ready()
    agi.send_command("ANSWER")
    queued = agi.send_command("NOOP")
    later = results_of(agi.send_command("WAIT FOR DIGIT 1"))
    queued.cancel()
    queued.addErrback(lambda f: None)
    agi.dataReceived(b"200 result=0\n")
    assert sent(transport) == b"ANSWER\nWAIT FOR DIGIT 1\n"
    agi.dataReceived(b"200 result=0\n")
    assert later[0].number == 0


def test_the_answer_to_a_cancelled_running_command_is_dropped():
    agi, transport = ready()
    running = agi.send_command("WAIT FOR DIGIT -1")
    next_one = results_of(agi.send_command("NOOP"))
    running.cancel()
    running.addErrback(lambda f: None)
    agi.dataReceived(b"200 result=50\n")
    assert next_one == []
    agi.dataReceived(b"200 result=0\n")
    assert next_one[0].number == 0


# HANGUP, 511, 510, 520


def test_hangup_while_idle_ends_the_session_and_refuses_later_commands():
    agi, transport = ready()
    ended = results_of(agi.ended)
    agi.dataReceived(b"HANGUP\n")
    assert ended == ["hangup"] and agi.hungup
    later = results_of(agi.send_command("STREAM FILE bye \"\""))
    assert later[0].check(AGIHangup)
    assert transport.value() == b""


def test_hangup_mid_command_fails_it_and_the_queue_and_its_511_is_consumed():
    agi, transport = ready()
    running = results_of(agi.send_command('GET DATA enter-account 5000 8'))
    queued = results_of(agi.send_command("SAY NUMBER 42 \"\""))
    agi.dataReceived(b"HANGUP\n")
    assert running[0].check(AGIHangup) and queued[0].check(AGIHangup)
    # Asterisk still answers the command that crossed the HANGUP.
    with CapturedLog() as logged:
        agi.dataReceived(b"511 Command Not Permitted on a dead channel or intercept routine\n")
    assert not logged.formats("answering no command")
    assert sent(transport) == b"GET DATA enter-account 5000 8\n"


def test_hangup_after_the_answer_as_res_agi_sends_it():
    agi, _ = ready()
    played = results_of(agi.send_command('STREAM FILE welcome "0123456789*#"'))
    ended = results_of(agi.ended)
    agi.dataReceived(b"200 result=-1 endpos=3680\nHANGUP\n")
    assert played[0].number == -1 and played[0].endpos == 3680
    assert ended == ["hangup"]


def test_a_second_hangup_line_is_harmless():
    agi, _ = ready()
    agi.dataReceived(b"HANGUP\nHANGUP\n")
    assert agi.hungup and agi.connected


@pytest.mark.parametrize(
    "line",
    [
        b"511 Command Not Permitted on a dead channel or intercept routine\n",
        b"511 Command Not Permitted on a dead channel\n",  # Asterisk 1.6-11
    ],
)
def test_511_is_a_hangup(line):
    agi, transport = ready()
    ended = results_of(agi.ended)
    first = results_of(agi.send_command('STREAM FILE welcome ""'))
    second = results_of(agi.send_command("ANSWER"))
    agi.dataReceived(line)
    assert first[0].check(AGIHangup) and "511" in str(first[0].value)
    assert second[0].check(AGIHangup)
    assert ended == ["hangup"]
    assert sent(transport) == b'STREAM FILE welcome ""\n'


def test_510_fails_the_command_and_the_session_goes_on():
    agi, _ = ready()
    bad = results_of(agi.send_command("PLAY THING"))
    good = results_of(agi.send_command("ANSWER"))
    agi.dataReceived(b"510 Invalid or unknown command\n")
    assert bad[0].check(AGICommandError)
    assert (bad[0].value.code, bad[0].value.message, bad[0].value.command) == (
        510,
        "Invalid or unknown command",
        "PLAY THING",
    )
    agi.dataReceived(b"200 result=0\n")
    assert good[0].number == 0


USAGE_20 = (
    b"520-Invalid command syntax.  Proper usage follows:\n"
    b" -= Info about agi 'wait for digit' =- \n"
    b"\n"
    b"Waits up to 'timeout' milliseconds for channel to receive a DTMF digit. Returns\n"
    b"'-1' on channel failure, '0' if no digit is received in the timeout, or the\n"
    b"numerical value of the ascii of the digit if one is received.\n"
    b"520 End of proper usage.\n"
)
# Asterisk 1.6 wrote the usage with "%s": no newline before the end line.
USAGE_16 = (
    b"520-Invalid command syntax.  Proper usage follows:\n"
    b"Usage: WAIT FOR DIGIT <timeout>\n"
    b"        Waits up to 'timeout' milliseconds for channel to receive a DTMF digit.\n"
    b"520 End of proper usage.\n"
)
USAGE_16_GLUED = (
    b"520-Invalid command syntax.  Proper usage follows:\n"
    b"Stream the given file, and receive DTMF data.\n"
    b"Returns the digits received from the channel at the other end.520 End of proper usage.\n"
)


@pytest.mark.parametrize(
    "transcript, first, last",
    [
        (USAGE_20, " -= Info about agi 'wait for digit' =- ", "numerical value of the ascii of the digit if one is received."),
        (USAGE_16, "Usage: WAIT FOR DIGIT <timeout>", "        Waits up to 'timeout' milliseconds for channel to receive a DTMF digit."),
        (USAGE_16_GLUED, "Stream the given file, and receive DTMF data.", "Returns the digits received from the channel at the other end."),
    ],
)
def test_520_carries_the_usage_and_the_session_goes_on(transcript, first, last):
    agi, _ = ready()
    bad = results_of(agi.send_command("WAIT FOR DIGIT"))
    good = results_of(agi.send_command("ANSWER"))
    agi.dataReceived(transcript)
    error = bad[0].value
    assert isinstance(error, AGICommandError) and error.code == 520
    lines = error.usage.split("\n")
    assert (lines[0], lines[-1]) == (first, last)
    assert good == []
    agi.dataReceived(b"200 result=0\n")
    assert good[0].number == 0


def test_520_without_usage():
    agi, _ = ready()
    bad = results_of(agi.send_command("SPEECH CREATE"))
    agi.dataReceived(b"520 Invalid command syntax.  Proper usage not available.\n")
    assert bad[0].value.code == 520 and bad[0].value.usage is None


def test_other_codes_are_command_errors():
    agi, _ = ready()
    bad = results_of(agi.send_command("GOSUB x y 1"))
    agi.dataReceived(b"503 result=-2 Memory allocation failure\n")
    assert bad[0].value.code == 503


# The connection going away


def test_connection_lost_fails_everything_pending():
    agi, _ = ready()
    running = results_of(agi.send_command("EXEC Dial PJSIP/8001,30"))
    queued = results_of(agi.send_command("HANGUP"))
    ended, closed = results_of(agi.ended), results_of(agi.closed)
    agi.connectionLost(None)
    assert running[0].check(AGIConnectionLost) and queued[0].check(AGIConnectionLost)
    assert ended == ["connection lost"] and closed == [None]
    later = results_of(agi.send_command("NOOP"))
    assert later[0].check(AGIConnectionLost)


def test_connection_lost_after_hangup_keeps_the_hangup_as_the_reason():
    agi, _ = ready()
    ended = results_of(agi.ended)
    agi.dataReceived(b"HANGUP\n")
    agi.connectionLost(None)
    assert ended == ["hangup"]


def test_connection_lost_in_a_usage_block_fails_the_command():
    agi, _ = ready()
    bad = results_of(agi.send_command("WAIT FOR DIGIT"))
    agi.dataReceived(b"520-Invalid command syntax.  Proper usage follows:\nWaits up to\n")
    agi.connectionLost(None)
    assert bad[0].check(AGIConnectionLost)
