"""
An L{IChannel} over a FastAGI session: the applications drive a call that
Asterisk holds, with the same operations as a SIP call of our own.

What differs, because Asterisk has the media:

* L{AGIChannel.play} plays prompts by NAME: Asterisk sound files installed
  in its sounds directory (``/var/lib/asterisk/sounds/<language>/``, or an
  absolute path without the extension).  Pre-encoded frames, which the SIP
  channel plays, are refused with a TypeError.  A prompt stops when the
  caller presses a key (kept for the next L{collect_digits}: callers type
  ahead); L{stop_playing} skips the prompts not started yet, since a command
  sent while one plays would make Asterisk cut it short without answering.
* L{record} records what the caller says (C{rx}) with RECORD FILE, to a
  path on the Asterisk host; the channel is busy until the recording ends
  (key, silence or maximum time).
* L{transfer} dials with EXEC Dial; L{bridge} joins another call of the
  same Asterisk with EXEC Bridge (Dial would make a new call).
* C{codec} is None (Asterisk transcodes) and L{stats} is empty.
"""

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from callcenter.agi import commands
from callcenter.agi.protocol import AGIError, AGIFailure, AGIHangup
from callcenter.interfaces import IChannel
from callcenter.log import bind, new_correlation_id

# What may be dialled: a number as a caller keys it.  Anything else could
# smuggle dial-string syntax (",", "&", "/") into EXEC Dial.
_DIALLABLE = frozenset("0123456789*#+")

_ENDED_BY = {"hangup": "caller hung up", "connection lost": "connection lost"}


class _Playback:
    def __init__(self):
        self.stopped = False


class AGIRecording:
    """A RECORD FILE in progress; C{stop()} fires once it has ended."""

    def __init__(self, finished):
        self.result = None
        self._waiters = []
        self.done = False
        finished.addBoth(self._finished)

    def _finished(self, outcome):
        self.done = True
        self.result = outcome
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(outcome)

    def stop(self, trim_seconds=0.0):
        """
        Fire with the L{commands.Recorded} (or None if it failed) once the
        recording has ended.  RECORD FILE cannot be cut short from here: it
        ends on its key, silence limit or maximum time, or the hang-up; and
        Asterisk, which hears the key, keeps its tone out (C{trim_seconds}
        is for the IChannel recordings that cannot).
        """
        if self.done:
            return defer.succeed(self.result)
        waiter = defer.Deferred()
        self._waiters.append(waiter)
        return waiter


@implementer(IChannel)
class AGIChannel:
    """
    The call of one FastAGI session.

    @param agi: the L{callcenter.agi.protocol.FastAGIProtocol}, with its
        request already in.
    @param dial_template: the Dial string for L{transfer}, with
        C{{number}} where the number goes; the default hands the number to
        a dialplan context the Asterisk administrator provides.
    @param dial_timeout: seconds L{transfer} lets the number ring.
    """

    log = Logger()

    def __init__(self, agi, dial_template="Local/{number}@callcenter-transfer", dial_timeout=60):
        request = agi.request
        self.agi = agi
        self.request = request
        self.call_id = request.unique_id
        self.correlation_id = new_correlation_id()
        self.caller = request.caller
        self.dialled = request.dnid or request.extension
        self.codec = None
        self.ended = defer.Deferred()
        self.state = "offered"
        self._dial_template = dial_template
        self._dial_timeout = dial_timeout
        self._typed = ""
        self._playback = None
        self.log = bind(self.log, cid=self.correlation_id)
        agi.ended.addCallback(self._session_ended)

    def __repr__(self):
        return f"<AGIChannel {self.request.channel} {self.call_id}>"

    def _session_ended(self, how):
        self._end(_ENDED_BY.get(how, how))
        return how

    def _end(self, reason):
        if self.state == "ended":
            return
        self.state = "ended"
        if self._playback is not None:
            self._playback.stopped = True
        self.log.info("call ended: {reason}", reason=reason)
        self.ended.callback(reason)

    # IChannel

    @defer.inlineCallbacks
    def answer(self):
        """ANSWER; fails with L{AGIHangup} if the call is gone or Asterisk cannot answer."""
        if self.state == "ended":
            raise AGIHangup("cannot answer a call that has ended")
        try:
            yield commands.answer(self.agi)
        except AGIFailure as failure:
            raise AGIHangup(f"Asterisk could not answer: {failure.result.line}")
        if self.state != "ended":
            self.state = "answered"
            self.log.info("answered {dialled} from {caller}", dialled=self.dialled, caller=self.caller.number)

    def play(self, prompts, interruptible=True):
        """
        Play Asterisk sound files by name, one after another.  Fires True
        when all played to the end; False when a key interrupted them (the
        key is kept for L{collect_digits}), they were stopped or replaced,
        one could not be played (the rest are skipped: Asterisk's -1 also
        means the caller is hanging up), or the call ended.

        @param prompts: a name ("welcome", "digits/1") or a list of names.
        @param interruptible: whether any key stops the prompts.
        @raise TypeError: C{prompts} are audio frames (bytes), which only
            the SIP channel plays.
        """
        names = self._prompt_names(prompts)
        if self._playback is not None:
            self._playback.stopped = True
        playback = self._playback = _Playback()
        return self._play(names, playback, commands.ALL_DIGITS if interruptible else "")

    @staticmethod
    def _prompt_names(prompts):
        if isinstance(prompts, str):
            return [prompts]
        if isinstance(prompts, (bytes, bytearray, memoryview)):
            prompts = [prompts]
        names = list(prompts)
        if not all(isinstance(name, str) for name in names):
            raise TypeError(
                "an AGI channel plays Asterisk sound files by name (installed in "
                "Asterisk's sounds directory), not audio frames"
            )
        return names

    @defer.inlineCallbacks
    def _play(self, names, playback, escape):
        try:
            for name in names:
                if playback.stopped or self.state == "ended":
                    return False
                try:
                    digit, _ = yield commands.stream_file(self.agi, name, escape)
                except AGIFailure:
                    # -1: a file Asterisk cannot find, or the caller hanging
                    # up (HANGUP follows): send nothing more either way.
                    self.log.warn("prompt {name} not played: missing, or the call is ending", name=name)
                    return False
                if digit is not None:
                    self._typed += digit
                    return False
            return not playback.stopped
        except AGIHangup:
            return False
        finally:
            if self._playback is playback:
                self._playback = None

    def stop_playing(self):
        """Play no further prompt (the one playing ends on its own or on a key)."""
        if self._playback is not None:
            self._playback.stopped = True

    def say_number(self, number, interruptible=True):
        """Say an integer with Asterisk's SAY NUMBER; like L{play}."""
        return self._say(commands.say_number, number, interruptible)

    def say_digits(self, digits, interruptible=True):
        """Say digits one by one with SAY DIGITS; like L{play}."""
        return self._say(commands.say_digits, digits, interruptible)

    @defer.inlineCallbacks
    def _say(self, command, value, interruptible):
        try:
            digit = yield command(self.agi, value, commands.ALL_DIGITS if interruptible else "")
        except (AGIFailure, AGIHangup):
            return False
        if digit is not None:
            self._typed += digit
            return False
        return True

    @defer.inlineCallbacks
    def collect_digits(self, maximum, first_timeout, inter_digit_timeout, terminators="#", prompt=None):
        """
        Collect keys until C{maximum}, a terminator (not included) or a
        timeout (seconds); keys pressed during earlier prompts count first.
        Fires with the digits (possibly ""), also when the call ends.

        Keys are read with WAIT FOR DIGIT, which lets the first and later
        timeouts and the terminators differ.  With a C{prompt} (a sound
        file) and the single timeout and "#" terminator that GET DATA
        supports, one GET DATA plays it and collects.
        """
        digits = ""
        typed, self._typed = self._typed, ""
        for digit in typed:
            if digit in terminators:
                return digits
            digits += digit
            if len(digits) >= maximum:
                return digits
        if self.state == "ended":
            return digits
        if prompt is not None:
            if not digits and terminators == "#" and first_timeout == inter_digit_timeout:
                try:
                    collected, _ = yield commands.get_data(
                        self.agi, prompt, _milliseconds(first_timeout), maximum
                    )
                except (AGIFailure, AGIHangup):
                    return ""
                return collected
            yield self.play(prompt)
            typed, self._typed = self._typed, ""
            for digit in typed:
                if digit in terminators:
                    return digits
                digits += digit
                if len(digits) >= maximum:
                    return digits
        timeout = first_timeout if not digits else inter_digit_timeout
        while len(digits) < maximum:
            try:
                digit = yield commands.wait_for_digit(self.agi, _milliseconds(timeout))
            except (AGIFailure, AGIHangup):
                break
            if digit is None or digit in terminators:
                break
            digits += digit
            timeout = inter_digit_timeout
        return digits

    def record(
        self, rx=None, tx=None, mixed=None, max_seconds=300, silence_seconds=None, beep=False, stop_digits="#"
    ):
        """
        Record what the caller says to C{rx}, a path on the Asterisk host
        whose extension names Asterisk's format ("/var/spool/asterisk/
        recordings/x.wav": Asterisk's 16-bit 8 kHz WAV).  Only C{rx}: RECORD
        FILE hears the caller alone; for both directions run MixMonitor
        with L{commands.exec_}.

        @return: an L{AGIRecording}.
        """
        if tx is not None or mixed is not None:
            raise ValueError(
                "an AGI channel records only what the caller says (rx); use MixMonitor for tx or mixed"
            )
        if rx is None:
            raise ValueError("give the path to record to (rx)")
        base, dot, extension = str(rx).rpartition(".")
        if not dot or "/" in extension or not base:
            raise ValueError(f"the recording path needs an extension naming its format: {rx!r}")
        finished = commands.record_file(
            self.agi, base, extension, stop_digits, int(max_seconds * 1000), beep, silence_seconds
        )

        def failed(failure):
            failure.trap(AGIError)
            self.log.warn("recording to {path} failed: {why}", path=rx, why=str(failure.value))
            return None

        return AGIRecording(finished.addErrback(failed))

    @defer.inlineCallbacks
    def bridge(self, other):
        """
        Join this call with C{other}, another AGI call on the same Asterisk,
        with the Bridge application (found by its unique id); fires with
        Asterisk's BRIDGERESULT once the bridge ends.
        """
        if not isinstance(other, AGIChannel):
            raise TypeError("an AGI channel can be bridged only with another call of the same Asterisk")
        yield self._exec("Bridge", other.call_id)
        return (yield self._variable("BRIDGERESULT"))

    @defer.inlineCallbacks
    def transfer(self, number):
        """
        Connect the caller to C{number} with EXEC Dial (the C{dial_template}
        given to the channel); fires with Asterisk's DIALSTATUS ("ANSWER",
        "BUSY", "NOANSWER", ...) once that call ends.
        """
        number = str(number)
        if not number or not set(number) <= _DIALLABLE:
            raise ValueError(f"{number!r} is not a number a call can be transferred to")
        self.log.info("transferring to {number}", number=number)
        yield self._exec("Dial", f"{self._dial_template.format(number=number)},{int(self._dial_timeout)}")
        return (yield self._variable("DIALSTATUS"))

    @defer.inlineCallbacks
    def _exec(self, application, options):
        try:
            yield commands.exec_(self.agi, application, options)
        except AGIHangup:
            pass

    @defer.inlineCallbacks
    def _variable(self, name):
        try:
            return (yield commands.get_variable(self.agi, name))
        except AGIHangup:
            return None

    def stats(self):
        """Asterisk keeps the media: there are no statistics here."""
        return {}

    @defer.inlineCallbacks
    def hangup(self, reason="normal"):
        """HANGUP; C{ended} fires with C{reason} at once.  Fires when Asterisk has done it."""
        if self.state == "ended":
            return
        self._end(reason)
        try:
            yield commands.hangup(self.agi)
        except AGIHangup:
            pass


def _milliseconds(seconds):
    return max(0, int(round(seconds * 1000)))
