"""
Prompts for names that live in the database and change while the server
runs: bulletin categories and experts.  The prompt pack is made at install
time from fixed texts; these are made on first use, with the pack's
synthesiser, in a thread, and kept as files beside the pack's.

A prompt is named after its text's hash (C{zh/said-<hash>}), so renaming a
category makes a new prompt and callers never hear the old name; a studio
recording of a name replaces it under the same file name.  When the
synthesiser is missing or fails the name is left out (None) and the flow
says its generic sentence instead: a name helps a caller, but no one must
hear silence or lose the call for want of one.
"""

import hashlib
import os

from twisted.internet import defer
from twisted.logger import Logger

from callcenter.ivr.prompts import SynthesisError, espeak, resolve, write_atomically
from callcenter.ivr.stock_names import spoken
from callcenter.ivr.telephone_audio import telephone_audio, wav_bytes

__all__ = ["SpokenNames"]

_log = Logger()


def prompt_name(text, language):
    """The prompt name of C{text} said in C{language}."""
    digest = hashlib.sha256(f"{language}\0{text}".encode("utf-8")).hexdigest()[:20]
    return f"{language}/said-{digest}"


class SpokenNames:
    """
    Name prompts in the pack at C{directory}, made by C{synthesise} (as
    for L{callcenter.ivr.prompts.build_pack}) through C{in_thread(function,
    *args)}, which returns a Deferred: synthesis runs a process and takes
    tens of milliseconds.
    """

    def __init__(self, directory, in_thread, synthesise=espeak):
        self.directory = directory
        self._in_thread = in_thread
        self._synthesise = synthesise
        self._making = {}

    def prompt(self, text, language):
        """
        A Deferred firing with the name of the prompt saying C{text} in
        C{language}, or None when there is none and it cannot be made.
        """
        text = (text or "").strip()
        if not text:
            return defer.succeed(None)
        name = prompt_name(text, language)
        if self._exists(name):
            return defer.succeed(name)
        waiter = defer.Deferred()
        waiters = self._making.get(name)
        if waiters is not None:
            # One synthesis however many callers ask at once.
            waiters.append(waiter)
            return waiter
        self._making[name] = [waiter]
        making = self._in_thread(self._make, name, text, language)
        making.addCallbacks(lambda _: name, self._not_made, errbackArgs=(text, language))
        making.addCallback(self._tell, name)
        return waiter

    def _exists(self, name):
        try:
            resolve(self.directory, name)
        except LookupError:
            return False
        return True

    def _make(self, name, text, language):
        # Said as stock names are: letters spelled, misread characters given in pinyin.
        rate, samples = self._synthesise(spoken(text, language), language)
        audio = telephone_audio(rate, samples)
        if not audio:
            raise SynthesisError(f"the synthesiser gave only silence for {text!r}")
        language, slug = name.split("/")
        write_atomically(os.path.join(self.directory, language, f"{slug}.wav"), wav_bytes(audio))

    def _not_made(self, failure, text, language):
        if failure.check(SynthesisError):
            _log.warn("cannot make a prompt of {text!r} ({language}): {why}", text=text, language=language,
                      why=failure.value)
        else:
            _log.failure("cannot make a prompt of {text!r} ({language})", failure, text=text, language=language)
        return None

    def _tell(self, result, name):
        for waiter in self._making.pop(name):
            waiter.callback(result)
