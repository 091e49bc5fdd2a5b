"""
Typed AGI commands: each builds its command line and maps the ``200``
answer to what it means, as res_agi.c's handlers and Asterisk's AGI command
reference (docs.asterisk.org, "AGI Commands") define it.

Each function takes the session (anything with a L{send_command} like
L{callcenter.agi.protocol.FastAGIProtocol}) and returns a Deferred.  Where
the reference says a result means failure (usually ``-1``: "error or
hangup"), the Deferred fails with L{AGIFailure}; the protocol's own
failures (L{AGIHangup}, L{AGICommandError}) pass through.

Arguments are split the way res_agi.c's ``parse_args`` splits them: on
spaces and tabs, except inside double quotes, with a backslash escaping the
next character.  L{quote} therefore wraps a value in double quotes and
escapes backslashes and quotes; values without those characters go bare.
A line break cannot be sent at all (it would end the command).
"""

from dataclasses import dataclass

from callcenter.agi.protocol import AGIFailure

# Every key on a telephone keypad: escape digits that let any key interrupt.
ALL_DIGITS = "0123456789*#"


def quote(value):
    """One AGI argument holding C{value} exactly."""
    value = str(value)
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValueError(f"an AGI argument cannot hold a line break: {value!r}")
    if value and not any(c in value for c in ' \t"\\'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _digits_argument(digits):
    # The reference asks for double quotes around escape digits ("" for none).
    if any(c not in ALL_DIGITS + "ABCD" for c in digits):
        raise ValueError(f"escape digits are keypad keys, not {digits!r}")
    return f'"{digits}"'


def _digit(code):
    """A result that is the ASCII code of a key (0 for none)."""
    return chr(code) if code > 0 else None


def _command(agi, line, check=None):
    def checked(result):
        if check is not None and check(result):
            raise AGIFailure(line, result)
        return result

    return agi.send_command(line).addCallback(checked)


def _negative(result):
    number = result.number
    return number is None or number < 0


def answer(agi):
    """ANSWER.  Fires with None; fails if Asterisk could not answer (-1)."""
    return _command(agi, "ANSWER", _negative).addCallback(lambda _: None)


def stream_file(agi, name, escape_digits="", offset=None):
    """
    STREAM FILE: play the sound file C{name} (no extension: Asterisk picks
    the format) from its sounds directory.

    @return: a Deferred firing with (the key pressed or None, the sample
        position playback stopped at, or None).  -1 ("error or hangup",
        also a file Asterisk cannot find) fails with L{AGIFailure}.
    """
    line = f"STREAM FILE {quote(name)} {_digits_argument(escape_digits)}"
    if offset is not None:
        line += f" {int(offset)}"
    return _command(agi, line, _negative).addCallback(
        lambda result: (_digit(result.number), result.endpos)
    )


def get_data(agi, file, timeout_ms, max_digits=None):
    """
    GET DATA: play C{file}, then read keys until C{max_digits}, ``#`` (not
    included) or C{timeout_ms} without a key (Asterisk uses the same timeout
    before the first key and between keys; 0 means its default).

    @return: a Deferred firing with (the digits, possibly "", whether it
        ended by timeout).  Digits keep leading zeros.
    """
    line = f"GET DATA {quote(file)} {int(timeout_ms)}"
    if max_digits is not None:
        line += f" {int(max_digits)}"

    def failed(result):
        # -1: hangup, or the prompt could not be played.  Digits are never negative.
        return result.result.startswith("-")

    return _command(agi, line, failed).addCallback(
        lambda result: (result.result, result.data == "timeout")
    )


def wait_for_digit(agi, timeout_ms):
    """
    WAIT FOR DIGIT: the next key within C{timeout_ms} (-1: wait forever).

    @return: a Deferred firing with the key, or None on timeout.
    """
    return _command(agi, f"WAIT FOR DIGIT {int(timeout_ms)}", _negative).addCallback(
        lambda result: _digit(result.number)
    )


@dataclass(frozen=True)
class Recorded:
    """
    How RECORD FILE ended: C{reason} as Asterisk says it ("dtmf": C{digit}
    was pressed; "timeout": the maximum time or the silence limit; "hangup":
    the caller hung up, the file holds what was said until then).
    C{endpos} is the length recorded, in samples.
    """

    reason: str | None
    digit: str | None
    endpos: int | None


def record_file(agi, name, format, escape_digits="#", timeout_ms=-1, beep=False, silence_s=None):
    """
    RECORD FILE: record what the caller says to C{name}.C{format} (a path on
    the Asterisk host, without the extension; C{format} is an Asterisk
    format such as "wav" or "gsm") until a key of C{escape_digits}, after
    C{timeout_ms} (-1: no limit) or C{silence_s} seconds of silence.

    @return: a Deferred firing with a L{Recorded}; a recording that could
        not be made (the file cannot be written, ...) fails with L{AGIFailure}.
    """
    line = f"RECORD FILE {quote(name)} {quote(format)} {_digits_argument(escape_digits)} {int(timeout_ms)}"
    if beep:
        # res_agi.c takes an argument that is neither a number (an offset)
        # nor s=... as "play a beep first".
        line += " BEEP"
    if silence_s is not None:
        line += f" s={int(silence_s)}"

    def failed(result):
        return _negative(result) and result.data != "hangup"

    def recorded(result):
        digit = _digit(result.number) if result.number and result.number > 0 else None
        return Recorded(result.data, digit, result.endpos)

    return _command(agi, line, failed).addCallback(recorded)


def say_digits(agi, digits, escape_digits=""):
    """SAY DIGITS: say C{digits} one by one.  Fires with the key pressed or None."""
    digits = str(digits)
    if not digits.isdigit() or not digits.isascii():
        raise ValueError(f"SAY DIGITS says 0-9 only, not {digits!r}")
    line = f"SAY DIGITS {digits} {_digits_argument(escape_digits)}"
    return _command(agi, line, _negative).addCallback(lambda result: _digit(result.number))


def say_number(agi, number, escape_digits="", gender=None):
    """
    SAY NUMBER: say the integer C{number} in the channel's language (a
    32-bit value: res_agi.c reads it with %d).  C{gender} is Asterisk's
    ("f", "m", "c", "n") for languages that need it.  Fires with the key
    pressed or None.
    """
    if isinstance(number, bool) or not isinstance(number, int) or not -(2**31) <= number < 2**31:
        raise ValueError(f"SAY NUMBER says a 32-bit integer, not {number!r}")
    line = f"SAY NUMBER {number} {_digits_argument(escape_digits)}"
    if gender is not None:
        line += f" {quote(gender)}"
    return _command(agi, line, _negative).addCallback(lambda result: _digit(result.number))


def get_variable(agi, name):
    """
    GET VARIABLE: the channel variable's value, or None if it is not set.
    A dialplan function such as ``CALLERID(num)`` works too.
    """
    return agi.send_command(f"GET VARIABLE {quote(name)}").addCallback(
        lambda result: result.data if result.number == 1 else None
    )


def set_variable(agi, name, value):
    """SET VARIABLE: set a channel variable (the dialplan sees it after AGI returns)."""
    return agi.send_command(f"SET VARIABLE {quote(name)} {quote(value)}").addCallback(lambda _: None)


def exec_(agi, application, options=""):
    """
    EXEC: run a dialplan application (e.g. ``Dial`` with options
    ``PJSIP/1001,30``) and fire with what it returns (usually 0; -1 when it
    wants the call to end).  An application Asterisk does not have (-2)
    fails with L{AGIFailure}.
    """
    line = f"EXEC {quote(application)}"
    if options:
        line += f" {quote(options)}"

    def unknown(result):
        return result.number == -2

    return _command(agi, line, unknown).addCallback(lambda result: result.number)


def hangup(agi, channel=None):
    """
    HANGUP: end this call (or the channel named C{channel}).  Fires with
    True, or False when no channel has that name.
    """
    line = "HANGUP" if channel is None else f"HANGUP {quote(channel)}"
    return agi.send_command(line).addCallback(lambda result: result.number == 1)
