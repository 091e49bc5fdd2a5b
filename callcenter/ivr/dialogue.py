"""
The IVR's reusable dialogue steps over an L{IChannel}: ask for digits, offer
a menu, ask for a confirmation, and run a whole flow so that it always ends
cleanly.

What is played goes through a prompter (L{IPrompter}), which turns prompt
names (C{"zh/digit-2"}, as L{callcenter.ivr.say} returns them) into what the
channel plays: G.711 frames from the prompt pack for a SIP call, the names
themselves for an Asterisk (FastAGI) call, which has the sound files.

Flows name their prompts without a language (C{"welcome"}); the dialogue
speaks one language and completes them (C{"zh/welcome"}), so one flow
serves callers in Mandarin and in English.

Keys, as brokers' phone systems use them:
  - C{#} ends an entry; C{*} goes back to the previous menu (L{BACK}),
    except when keying a price, where C{*} is the decimal point
    (C{12*34#} is 12.34);
  - C{0} in a menu asks for an agent (L{AGENT}); the flow decides what to do.

Every step raises L{CallEnded} as soon as it sees that the call has ended,
so a flow stops at once instead of talking to nobody.
"""

import enum

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import Interface, implementer

from callcenter.ivr.prompts import PromptNotFound, resolve
from callcenter.media.wavfile import load_prompt

__all__ = [
    "AGENT",
    "BACK",
    "INVALID",
    "TIMEOUT",
    "CallEnded",
    "Dialogue",
    "IPrompter",
    "MemoryPrompter",
    "Outcome",
    "PackPrompter",
    "TooManyRetries",
    "run_flow",
]

log = Logger()

_DIGITS = frozenset("0123456789")


class Outcome(enum.Enum):
    """What a step returns when the caller did not key an answer."""

    BACK = "back"
    TIMEOUT = "timeout"
    INVALID = "invalid"
    AGENT = "agent"


BACK = Outcome.BACK
TIMEOUT = Outcome.TIMEOUT
INVALID = Outcome.INVALID
AGENT = Outcome.AGENT


class CallEnded(Exception):
    """The call ended during a step; the flow should stop."""


class TooManyRetries(Exception):
    """
    The caller failed a step as many times as it allows.

    @ivar last: the last failure, L{TIMEOUT} or L{INVALID}.
    """

    def __init__(self, last):
        super().__init__(f"too many retries, the last one {last.value}")
        self.last = last


class IPrompter(Interface):
    """Plays prompts, by name, on a channel."""

    def has(name):
        """
        Whether there is a prompt C{name}: for what may be said or left
        out, such as a stock's name after its code.
        """

    def play(channel, names, interruptible=True):
        """
        Play the prompts C{names} one after the other on C{channel}.

        @param interruptible: whether a key may cut them short (where the
            channel supports it); keys pressed are kept for the next
            C{collect_digits} either way.
        @return: a Deferred firing with the channel's answer (True when
            played to the end).
        """


@implementer(IPrompter)
class PackPrompter:
    """
    Prompts from the pack at C{directory} (L{callcenter.ivr.prompts}).

    A channel with a codec (SIP) gets the prompts' frames in its encoding,
    joined into one play; a channel without one (AGI: Asterisk has the
    media) gets the names.  Frames are cached by
    L{callcenter.media.wavfile.load_prompt}, per file and keyed on its
    modification time, so a studio recording that replaces a prompt is
    heard at once; no second cache is kept here since it would hide that.

    A missing prompt raises L{callcenter.ivr.prompts.PromptNotFound} rather
    than being skipped: leaving out a word of a price or an amount would
    tell the caller a wrong number.
    """

    def __init__(self, directory):
        self.directory = directory

    def has(self, name):
        try:
            resolve(self.directory, name)
        except PromptNotFound:
            return False
        return True

    def play(self, channel, names, interruptible=True):
        names = _names(names)
        if channel.codec is None:
            return channel.play(names, interruptible=interruptible)
        encoding = channel.codec.encoding
        frames = []
        for name in names:
            frames.extend(load_prompt(resolve(self.directory, name), encoding))
        return channel.play(frames, interruptible=interruptible)


@implementer(IPrompter)
class MemoryPrompter:
    """
    Hands the names to the channel as they are and records them in
    C{played} (a list of lists of names): for tests, and for channels that
    play by name.  It has every prompt but those named in C{missing}.
    """

    def __init__(self, missing=()):
        self.played = []
        self.missing = set(missing)

    def has(self, name):
        return name not in self.missing

    def play(self, channel, names, interruptible=True):
        names = _names(names)
        self.played.append(names)
        return channel.play(names, interruptible=interruptible)


def _names(prompt):
    """A prompt given as one name, a list of names or None, as a list."""
    if prompt is None:
        return []
    if isinstance(prompt, str):
        return [prompt]
    return list(prompt)


def _check(channel):
    if channel.ended.called:
        raise CallEnded()


class Dialogue:
    """
    The steps, playing through C{prompter} in C{language}: a prompt name
    without a language (C{"welcome"}) is played as C{language}'s
    (C{"zh/welcome"}); one with a language is played as it is.

    Each step reads keys one at a time (C{collect_digits} with a maximum of
    one and no terminator): the channel drops the terminator, so that is
    the only way to know whether C{#} or C{*} ended an entry, and it lets
    C{*} take the caller back at once.  Keys pressed during a prompt are
    kept by the channel, so callers may type ahead.
    """

    def __init__(self, prompter, language="zh", invalid_prompt=None, timeout_prompt=None):
        self.prompter = prompter
        self.language = language
        self.invalid_prompt = _names(invalid_prompt or "invalid-input")
        self.timeout_prompt = _names(timeout_prompt or "no-input")

    def has(self, name):
        """Whether the prompt C{name} (completed with the language) exists."""
        [name] = self.names(name)
        return self.prompter.has(name)

    def speaking(self, language):
        """The same steps in C{language}."""
        if language == self.language:
            return self
        return Dialogue(self.prompter, language, self.invalid_prompt, self.timeout_prompt)

    def names(self, prompt):
        """C{prompt} (a name, names or None) as a list of names with their language."""
        prefix = f"{self.language}/"
        return [name if "/" in name else prefix + name for name in _names(prompt)]

    @defer.inlineCallbacks
    def play(self, channel, prompt, interruptible=True):
        """Play C{prompt} (a name or names); raise L{CallEnded} if the call ended."""
        _check(channel)
        names = self.names(prompt)
        if names:
            yield self.prompter.play(channel, names, interruptible=interruptible)
            _check(channel)

    @defer.inlineCallbacks
    def _key(self, channel, timeout):
        """The next key, or "" after C{timeout} seconds without one."""
        _check(channel)
        key = yield channel.collect_digits(1, timeout, timeout, terminators="")
        _check(channel)
        return key

    @defer.inlineCallbacks
    def collect(
        self,
        channel,
        prompt,
        maximum,
        first_timeout=5,
        inter_digit_timeout=3,
        terminators="#",
        allow_star_back=True,
        star_is_decimal=False,
    ):
        """
        Play C{prompt}, then take up to C{maximum} keys (a C{*} decimal
        point counts as one) until a terminator or a timeout.

        @return: a Deferred firing with the digits (a str, "" if a
            terminator came first; with C{star_is_decimal}, "." for C{*}),
            L{TIMEOUT} if no key came within C{first_timeout} seconds,
            L{BACK} when C{*} was pressed and C{allow_star_back}, or
            L{INVALID} for a key out of place (a second decimal point, one
            without a digit on both sides, C{*} when it means nothing, a
            letter key); an invalid entry is read to its end so that its
            remaining keys are not taken as the next answer.
        @raise CallEnded: the call has ended.
        """
        if star_is_decimal and "*" in terminators:
            raise ValueError("* cannot both end an entry and be its decimal point")
        yield self.play(channel, prompt)
        entry = ""
        invalid = False
        timeout = first_timeout
        while len(entry) < maximum:
            key = yield self._key(channel, timeout)
            if not key:
                if not entry and not invalid:
                    return TIMEOUT
                break
            timeout = inter_digit_timeout
            if key in terminators:
                break
            if key == "*" and star_is_decimal:
                if "." in entry or not entry:
                    invalid = True
                entry += "."
            elif key == "*" and allow_star_back:
                return BACK
            elif key in _DIGITS:
                entry += key
            else:
                invalid = True
                entry += key
        if invalid or entry.endswith("."):
            return INVALID
        return entry

    @defer.inlineCallbacks
    def _choose(self, channel, prompt, choices, retries, timeout, allow_star_back, answers, interruptible=True):
        """Offer one-key C{choices}; return C{answers[key]} or a sentinel."""
        choices = frozenset(choices)
        if "0" in choices:
            raise ValueError("0 is always 'to an agent' and cannot be a choice")
        if allow_star_back and "*" in choices:
            raise ValueError("* is 'back' here and cannot be a choice")
        if retries < 1:
            raise ValueError("retries must be at least 1")
        for attempt in range(1, retries + 1):
            yield self.play(channel, prompt, interruptible=interruptible)
            key = yield self._key(channel, timeout)
            if key == "0":
                return AGENT
            if key == "*" and allow_star_back:
                return BACK
            if key in choices:
                return answers(key)
            failure = TIMEOUT if not key else INVALID
            if attempt == retries:
                raise TooManyRetries(failure)
            yield self.play(channel, self.timeout_prompt if failure is TIMEOUT else self.invalid_prompt)

    def menu(
        self,
        channel,
        prompt,
        choices,
        retries=3,
        timeout=5,
        allow_star_back=True,
        invalid_prompt=None,
        timeout_prompt=None,
    ):
        """
        Play C{prompt} and take one key among C{choices} (keys, e.g.
        C{"123"}); after a wrong key or none within C{timeout} seconds, say
        so and ask again, C{retries} times in all.

        @return: a Deferred firing with the key, L{AGENT} for C{0} or
            L{BACK} for C{*} (when C{allow_star_back}).
        @raise TooManyRetries: the last try failed too (nothing is played
            for it: the flow says goodbye its own way).
        @raise CallEnded: the call has ended.
        """
        steps = self._with_prompts(invalid_prompt, timeout_prompt)
        return steps._choose(channel, prompt, choices, retries, timeout, allow_star_back, lambda key: key)

    def confirm(self, channel, prompt, retries=3, timeout=5, allow_star_back=True, interruptible=True):
        """
        Ask "1 to confirm, 2 to enter again" with C{prompt};
        C{interruptible=False} for a read-back the caller must hear in full
        (keys pressed meanwhile answer it once it ends).

        @return: a Deferred firing with True for 1, False for 2, L{AGENT}
            for 0 or L{BACK} for C{*}; other keys and silence retry as in
            L{menu}.
        """
        return self._choose(
            channel, prompt, "12", retries, timeout, allow_star_back, lambda key: key == "1", interruptible
        )

    def _with_prompts(self, invalid_prompt, timeout_prompt):
        if invalid_prompt is None and timeout_prompt is None:
            return self
        steps = Dialogue(self.prompter, self.language)
        steps.invalid_prompt = _names(invalid_prompt) if invalid_prompt is not None else self.invalid_prompt
        steps.timeout_prompt = _names(timeout_prompt) if timeout_prompt is not None else self.timeout_prompt
        return steps


@defer.inlineCallbacks
def run_flow(channel, flow, prompter, unavailable_prompt="zh/service-unavailable"):
    """
    Run C{flow(channel)} (returning a Deferred, a coroutine or nothing) and
    make sure the call ends with it: when the flow fails unexpectedly, log
    the failure and play C{unavailable_prompt}; then, whatever happened,
    hang up if the call is still up.  L{CallEnded} is the normal way for a
    flow to stop when the caller hangs up and is not logged.

    @return: a Deferred that fires with None and never fails.
    """
    try:
        yield defer.maybeDeferred(flow, channel)
    except CallEnded:
        pass
    except Exception:
        log.failure(
            "IVR flow {flow} failed on call {cid}",
            flow=getattr(flow, "__qualname__", flow),
            cid=getattr(channel, "correlation_id", None),
        )
        if not channel.ended.called:
            try:
                yield prompter.play(channel, _names(unavailable_prompt), interruptible=False)
            except Exception:
                log.failure(
                    "could not play the service-unavailable prompt on call {cid}",
                    cid=getattr(channel, "correlation_id", None),
                )
    if not channel.ended.called:
        try:
            yield channel.hangup()
        except Exception:
            log.failure("could not hang up call {cid}", cid=getattr(channel, "correlation_id", None))
