"""
The FastAGI wire protocol, as Asterisk's res/res_agi.c speaks it.

Asterisk connects and sends the call's variables, one ``agi_name: value``
line each, ended by an empty line (``setup_env``; ``launch_netscript``
sends ``agi_network: yes`` and ``agi_network_script: <path after the host>``
first).  We then send one command a line; Asterisk runs it and answers
(``agi_handle_command``):

* ``200 result=<r>[ (<data>)][ endpos=<n>][ key=value ...]``: done; what
  C{r} and C{data} mean depends on the command;
* ``510 Invalid or unknown command``;
* ``511 Command Not Permitted on a dead channel or intercept routine``
  (before Asterisk 12: ``... on a dead channel``);
* ``520 Invalid command syntax.  Proper usage not available.``, or
  ``520-Invalid command syntax.  Proper usage follows:``, the usage text,
  and ``520 End of proper usage.`` (Asterisk before 11 sent the usage
  without a final newline, so the end line may be glued to its last line);
* ``100 result=0 Trying...``: not an answer yet (GOSUB).

When the caller hangs up, Asterisk sends ``HANGUP`` on a line of its own
between two commands (unless the dialplan set ``AGISIGHUP=no``) and from
then on answers 511 to every command that needs a live channel.  A command
of ours that crossed that ``HANGUP`` still gets its answer, so an answer is
always consumed by the command it belongs to.

Commands go strictly one at a time: a line sent while a command runs
interrupts STREAM FILE, GET DATA and the SAY commands, which then answer
nothing at all (``res == 1`` in their handlers), and the answers would no
longer match the commands.

Lines end with ``\\n``; a ``\\r`` before it is tolerated.  Text is UTF-8
(Asterisk passes bytes through; anything else is replaced, not fatal).
"""

import re
from collections import deque
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping
from urllib.parse import parse_qsl

from twisted.internet import defer
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver

from callcenter.telephony.callerid import CallerID

# Asterisk reads a command into a 2048-byte buffer (AGI_BUF_LEN), newline
# included; a longer line would be cut in two commands.
MAX_COMMAND_BYTES = 2046


class AGIError(Exception):
    """Something went wrong with an AGI command or session."""


class AGIHangup(AGIError):
    """The call has hung up (HANGUP, or 511 for a command that needs a live channel)."""


class AGIConnectionLost(AGIHangup):
    """The FastAGI connection closed; for a flow, the call is gone all the same."""


class AGICommandError(AGIError):
    """
    Asterisk refused a command: 510 (unknown command), 520 (bad syntax;
    C{usage} holds the proper usage Asterisk sent, if any) or another code.
    """

    def __init__(self, code, message, command=None, usage=None):
        super().__init__(f"{code} {message}" + (f" (command: {command})" if command else ""))
        self.code = code
        self.message = message
        self.command = command
        self.usage = usage


class AGIFailure(AGIError):
    """A command ran and reported failure (``result=-1`` and the like)."""

    def __init__(self, command, result):
        super().__init__(f"{command}: {result.line}")
        self.command = command
        self.result = result


@dataclass(frozen=True)
class AGIResult:
    """
    A ``200`` answer.  C{result} is the text after ``result=`` as sent:
    GET DATA's digits keep their leading zeros and may be empty; use
    L{number} for the integer most commands return.
    """

    code: int
    result: str
    data: str | None = None
    endpos: int | None = None
    # Further key=value pairs: SPEECH RECOGNIZE's digit=, results=, score0= ...
    extra: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Free text that is not key=value (GOSUB's "Gosub complete").
    text: str | None = None
    line: str = ""

    @property
    def number(self):
        """C{result} as an int, or None when it is not one."""
        try:
            return int(self.result)
        except ValueError:
            return None


_STATUS = re.compile(r"(\d{3})([ -])")
_PAIR = r'[A-Za-z_][A-Za-z0-9_]*=(?:"[^"]*"|\S*)'
_TAIL = re.compile(rf"(?:\s+{_PAIR})*\s*\Z")
_TOKEN = re.compile(r'\s*(?:(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>"[^"]*"|\S*)|(?P<word>\S+))')


def _split_data(rest):
    """
    C{rest} starts with "(": return (data, what follows the closing ")").
    Data may hold spaces and parentheses (GET VARIABLE's value), so the
    closing one is the last ")" after which only key=value pairs follow.
    """
    closes = [i for i, c in enumerate(rest) if c == ")"]
    for i in reversed(closes):
        if _TAIL.match(rest, i + 1):
            return rest[1:i], rest[i + 1:]
    for i in reversed(closes):
        if i + 1 == len(rest) or rest[i + 1].isspace():
            return rest[1:i], rest[i + 1:]
    return rest[1:], ""


def parse_result(line):
    """
    Parse one answer line (``200 result=49 (timeout) endpos=8000``).

    @raise ValueError: not an answer line.
    """
    status = _STATUS.match(line)
    if status is None:
        raise ValueError(f"not an AGI answer: {line!r}")
    code = int(status.group(1))
    rest = line[status.end():]
    if not rest.startswith("result="):
        return AGIResult(code, "", text=rest.strip() or None, line=line)
    rest = rest[len("result="):]
    value = re.match(r"\S*", rest)
    result, rest = value.group(), rest[value.end():]
    data = None
    stripped = rest.lstrip()
    if stripped.startswith("("):
        data, rest = _split_data(stripped)
    extra, words = {}, []
    for token in _TOKEN.finditer(rest):
        if token.group("key"):
            extra[token.group("key")] = token.group("value").strip('"')
        elif token.group("word"):
            words.append(token.group("word"))
    endpos = extra.pop("endpos", None)
    try:
        endpos = int(endpos) if endpos is not None else None
    except ValueError:
        extra["endpos"] = endpos
        endpos = None
    return AGIResult(
        code, result, data, endpos, MappingProxyType(extra), " ".join(words) or None, line
    )


def _known(value):
    """Asterisk sends "unknown" (or nothing) for a value it does not have."""
    if value is None or value == "" or value.lower() == "unknown":
        return None
    return value


@dataclass(frozen=True)
class AGIRequest:
    """
    What Asterisk said about the call before the first command.

    C{script} is the flow to run: ``agi_network_script`` (the URL path after
    the host, e.g. ``flow`` for ``agi://host:4573/flow``) without a query
    string, whose ``name=value`` pairs are in C{params}.  C{args} are the
    AGI() application's further arguments (``agi_arg_1`` ...).
    """

    variables: Mapping[str, str]
    script: str
    params: Mapping[str, str]
    args: tuple

    @classmethod
    def from_variables(cls, variables):
        variables = dict(variables)
        location = variables.get("agi_network_script")
        if location is None:
            # Asterisk sends it only for a URL with a path; agi_request has the URL.
            _, sep, rest = variables.get("agi_request", "").partition("://")
            location = rest.partition("/")[2] if sep else ""
        script, _, query = location.partition("?")
        numbered = []
        for name, value in variables.items():
            if name.startswith("agi_arg_") and name[len("agi_arg_"):].isdigit():
                numbered.append((int(name[len("agi_arg_"):]), value))
        return cls(
            MappingProxyType(variables),
            script,
            MappingProxyType(dict(parse_qsl(query, keep_blank_values=True))),
            tuple(value for _, value in sorted(numbered)),
        )

    def get(self, name, default=None):
        """A variable by its name without the ``agi_`` prefix (``request.get("context")``)."""
        return self.variables.get("agi_" + name, default)

    @property
    def channel(self):
        return self.get("channel")

    @property
    def unique_id(self):
        return self.get("uniqueid")

    @property
    def extension(self):
        return self.get("extension")

    @property
    def context(self):
        return self.get("context")

    @property
    def dnid(self):
        return _known(self.get("dnid"))

    @property
    def language(self):
        return self.get("language")

    @property
    def presentation_restricted(self):
        """
        Whether the caller asked to withhold the number (AST_PRES_RESTRICTED,
        0x20, in ``agi_callingpres``): Asterisk still passes it to us.
        """
        try:
            return int(self.get("callingpres", "0")) & 0x60 == 0x20
        except ValueError:
            return False

    @property
    def caller(self):
        """
        The caller, from ``agi_callerid`` and ``agi_calleridname``.  Asterisk
        sends "unknown" when it has none; a withheld SIP caller arrives as
        "anonymous".  Never asserted: Asterisk, not a trusted carrier header
        we checked, is the source (Asterisk's own trust rules applied).
        """
        number = _known(self.get("callerid"))
        if number is not None and number.lower() == "anonymous":
            number = None
        name = _known(self.get("calleridname"))
        if name is not None and name.lower() == "anonymous":
            name = None
        return CallerID(number, name, asserted=False)


_HEADER_NAME = re.compile(r"agi_[A-Za-z0-9_]+\Z")


class _Command:
    __slots__ = ("line", "deferred", "abandoned")

    def __init__(self, line):
        self.line = line
        self.deferred = None
        self.abandoned = False


class FastAGIProtocol(LineReceiver):
    """
    One FastAGI session: reads the ``agi_*`` block, then runs commands.

    C{request_ready} fires with the L{AGIRequest} once the block is in (it
    fails with L{AGIConnectionLost} if the connection goes first);
    C{ended} fires once with "hangup" (HANGUP or 511) or "connection lost";
    C{closed} fires when the connection is gone.

    A peer that sends something that is not an AGI header, a line longer
    than C{MAX_LENGTH}, a header that is too big or not finished within
    C{header_timeout} seconds, or too many lines answering nothing, is
    dropped with a log line.
    """

    delimiter = b"\n"
    MAX_LENGTH = 16 * 1024
    log = Logger()

    def __init__(self, clock, header_timeout=10.0, max_header_bytes=64 * 1024, max_stray_lines=32):
        self.clock = clock
        self.header_timeout = header_timeout
        self.max_header_bytes = max_header_bytes
        self.max_stray_lines = max_stray_lines
        self.request = None
        self.request_ready = defer.Deferred()
        self.ended = defer.Deferred()
        self.closed = defer.Deferred()
        self.hungup = False
        self.connected = False
        self.peer = "?"
        self._variables = {}
        self._header_bytes = 0
        self._header_timer = None
        self._queue = deque()
        self._inflight = None
        self._usage = None
        self._stray = 0

    # Connection

    def connectionMade(self):
        self.connected = True
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}".rstrip(":")
        self._header_timer = self.clock.callLater(self.header_timeout, self._header_timed_out)

    def connectionLost(self, reason=None):
        self.connected = False
        self._cancel_header_timer()
        lost = AGIConnectionLost("the FastAGI connection closed")
        if not self.request_ready.called:
            self.request_ready.errback(lost)
        command, self._inflight = self._inflight, None
        if command is not None and not command.abandoned:
            command.deferred.errback(
                AGIConnectionLost(f"the FastAGI connection closed during {command.line}")
            )
        self._fail_queued(lost)
        if not self.ended.called:
            self.ended.callback("connection lost")
        self.closed.callback(None)

    def drop(self, why, **fields):
        """Close the connection because of C{why}, a log format string."""
        self.log.warn("FastAGI peer {peer}: " + why + "; dropping it", peer=self.peer, **fields)
        self.transport.loseConnection()

    def _header_timed_out(self):
        self._header_timer = None
        self.drop("no complete AGI header within {timeout} s", timeout=self.header_timeout)

    def _cancel_header_timer(self):
        if self._header_timer is not None and self._header_timer.active():
            self._header_timer.cancel()
        self._header_timer = None

    def lineLengthExceeded(self, line):
        self.drop("a line of more than {limit} bytes", limit=self.MAX_LENGTH)

    def lineReceived(self, line):
        if line.endswith(b"\r"):
            line = line[:-1]
        text = line.decode("utf-8", "replace")
        if self.request is None:
            self._header_bytes += len(line) + 1
            self._header_line(text)
        else:
            self._answer_line(text)

    # The agi_* block

    def _header_line(self, text):
        if self._header_bytes > self.max_header_bytes:
            self.drop("an AGI header of more than {limit} bytes", limit=self.max_header_bytes)
            return
        if text == "":
            if not self._variables:
                self.drop("an empty AGI header")
                return
            self._cancel_header_timer()
            self.request = AGIRequest.from_variables(self._variables)
            self.log.debug(
                "FastAGI request {script} from {peer}: {channel}",
                script=self.request.script,
                peer=self.peer,
                channel=self.request.channel,
            )
            self.request_ready.callback(self.request)
            return
        name, colon, value = text.partition(":")
        if not colon or not _HEADER_NAME.match(name):
            self.drop("not an AGI header line: {line!r}", line=text[:80])
            return
        self._variables[name] = value[1:] if value.startswith(" ") else value

    # Commands and answers

    def send_command(self, line):
        """
        Send one command (e.g. ``STREAM FILE welcome "0123456789*#"``).

        @return: a Deferred firing with an L{AGIResult} for a 200 answer, or
            failing with L{AGIHangup} (HANGUP came, or 511),
            L{AGIConnectionLost} or L{AGICommandError} (510, 520, ...).
        @raise ValueError: the line holds a line break or is too long.
        """
        if "\n" in line or "\r" in line or "\0" in line:
            raise ValueError(f"an AGI command is one line: {line!r}")
        if len(line.encode("utf-8")) > MAX_COMMAND_BYTES:
            raise ValueError(f"an AGI command of more than {MAX_COMMAND_BYTES} bytes: {line[:40]!r}...")
        if not self.connected:
            return defer.fail(AGIConnectionLost(f"the FastAGI connection is closed ({line})"))
        if self.hungup:
            return defer.fail(AGIHangup(f"the call has hung up ({line})"))
        command = _Command(line)
        command.deferred = defer.Deferred(lambda d: self._cancel(command))
        if self._inflight is None and not self._queue:
            self._write(command)
        else:
            self._queue.append(command)
        return command.deferred

    def _cancel(self, command):
        # A queued command is simply not sent; one Asterisk is running
        # cannot be stopped, so its answer will be consumed and dropped.
        if command in self._queue:
            self._queue.remove(command)
        else:
            command.abandoned = True

    def _write(self, command):
        self._inflight = command
        self.log.debug("AGI >> {line}", line=command.line)
        self.transport.write(command.line.encode("utf-8") + b"\n")

    def _send_next(self):
        if self._inflight is None and self._queue and self.connected:
            self._write(self._queue.popleft())

    def _fail_queued(self, error):
        queued, self._queue = self._queue, deque()
        for command in queued:
            command.deferred.errback(type(error)(f"{error} ({command.line})"))

    def _answer_line(self, text):
        if self._usage is not None:
            self._usage_line(text)
            return
        if text == "HANGUP":
            self._hangup("HANGUP")
            return
        status = _STATUS.match(text)
        if status is None or self._inflight is None:
            self._stray_line(text)
            return
        code = int(status.group(1))
        if code == 520 and status.group(2) == "-":
            self._usage = []
            return
        if code == 100:
            self.log.debug("AGI << {line} (still running)", line=text)
            return
        self.log.debug("AGI << {line}", line=text)
        if code == 200:
            try:
                outcome = parse_result(text)
            except ValueError:  # pragma: no cover - _STATUS matched
                outcome = AGICommandError(code, text[4:], self._inflight.line)
        elif code == 511:
            self._hangup("511")
            outcome = AGIHangup(f"{text} ({self._inflight.line})")
        else:
            outcome = AGICommandError(code, text[4:], self._inflight.line)
        self._complete(outcome)

    def _usage_line(self, text):
        end = "520 End of proper usage."
        if text.startswith("520 ") or text.endswith(end):
            if text.endswith(end) and not text.startswith("520 "):
                self._usage.append(text[: -len(end)])
            usage, self._usage = "\n".join(self._usage), None
            command = self._inflight
            self._complete(
                AGICommandError(
                    520, "Invalid command syntax.  Proper usage follows:", command.line, usage
                )
            )
            return
        self._usage.append(text)
        if len(self._usage) > 1000:
            self.drop("a 520 usage text of more than 1000 lines")

    def _complete(self, outcome):
        command, self._inflight = self._inflight, None
        self._send_next()
        if command.abandoned:
            self.log.debug("answer to abandoned command {line} dropped", line=command.line)
        elif isinstance(outcome, Exception):
            command.deferred.errback(outcome)
        else:
            command.deferred.callback(outcome)

    def _stray_line(self, text):
        self._stray += 1
        self.log.warn(
            "FastAGI peer {peer}: line answering no command ignored: {line!r}",
            peer=self.peer,
            line=text[:80],
        )
        if self._stray > self.max_stray_lines:
            self.drop("more than {limit} lines answering no command", limit=self.max_stray_lines)

    def _hangup(self, how):
        """
        The call is over: fail what waits, refuse what comes.  The command
        in flight (if any) is failed now; its answer, which Asterisk still
        sends, is consumed when it comes.
        """
        if self.hungup:
            return
        self.hungup = True
        self.log.debug("FastAGI {how}: the call has hung up", how=how)
        command = self._inflight
        if command is not None and not command.abandoned and how == "HANGUP":
            command.abandoned = True
            command.deferred.errback(AGIHangup(f"the call hung up during {command.line}"))
        self._fail_queued(AGIHangup("the call has hung up"))
        self.ended.callback("hangup")
