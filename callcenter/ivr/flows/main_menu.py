"""
A main menu (主菜单) tying the flows together behind one dialled number:
a welcome, a choice of language when the number offers more than one, then
one key per flow.  A flow left with C{*} comes back here; C{0} anywhere
asks for an agent.

Which keys lead where, and in which languages, is configured per menu
(C{[ivr.menus.<name>]}), and each menu is a flow of its own name, so every
dialled number (a route C{"ivr:<name>"}, or C{agi://host/<name>}) can have
its own.
"""

from twisted.internet import defer

from callcenter.ivr.dialogue import AGENT, BACK, TIMEOUT, TooManyRetries
from callcenter.ivr.flows import LANGUAGE_KEYS
from callcenter.ivr.say import say_digits

__all__ = ["MainMenu"]


class MainMenu:
    """
    The menu C{options} (key to flow name) in C{languages} (the first is
    the default, kept when the caller presses nothing), over C{dialogue}.
    C{run(name, channel, dialogue)} runs a flow and fires with what it
    returns.

    Calling it with a channel fires with L{AGENT} when the caller asked for
    an agent, and None when the call is over.
    """

    def __init__(self, options, languages, dialogue, run, language_timeout=4):
        if not options or not set(options) <= set("123456789"):
            raise ValueError("a menu needs keys among 1-9")
        unknown = set(languages) - set(LANGUAGE_KEYS)
        if not languages or unknown:
            raise ValueError(f"languages must be among {sorted(LANGUAGE_KEYS)}")
        self.options = dict(sorted(options.items()))
        self.languages = tuple(languages)
        self.dialogue = dialogue.speaking(self.languages[0])
        self.run = run
        self.language_timeout = language_timeout

    @defer.inlineCallbacks
    def __call__(self, channel):
        dialogue = yield self.choose_language(channel)
        prompt = [
            name for key, flow in self.options.items()
            for name in (f"option-{flow}", *say_digits(key, dialogue.language, yao=False))
        ]
        prompt.append("press-0-agent")
        while True:
            try:
                key = yield dialogue.menu(channel, prompt, "".join(self.options), allow_star_back=False)
            except TooManyRetries:
                yield dialogue.play(channel, "too-many-attempts")
                return None
            if key is AGENT:
                yield dialogue.play(channel, "transfer-agent")
                return AGENT
            result = yield self.run(self.options[key], channel, dialogue)
            if result is not BACK:
                return result

    @defer.inlineCallbacks
    def choose_language(self, channel):
        """The dialogue in the caller's language: the offer's key, or the default."""
        yield self.dialogue.play(channel, "hotline-welcome")
        if len(self.languages) == 1:
            return self.dialogue
        offer = [f"{language}/language-offer" for language in self.languages]
        keys = {LANGUAGE_KEYS[language]: language for language in self.languages}
        answer = yield self.dialogue.collect(
            channel, offer, 1, first_timeout=self.language_timeout, terminators="", allow_star_back=False
        )
        if answer is TIMEOUT or answer not in keys:
            return self.dialogue
        return self.dialogue.speaking(keys[answer])
