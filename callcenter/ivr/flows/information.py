"""
The voice information service (自动声讯) and the expert mailboxes
(名家股评信箱).

L{Bulletins}: the caller picks a category by its key and hears its current
bulletins, newest first, moving through them with the keys
C{zh/bulletins-menu} announces (1 the latest, 4 the previous, 5 again, 6
the next, * back).  An editor presses 9, keys an editor id and PIN, picks
one of the categories they may publish in (L{data.editor_categories}),
records after the prompt until C{#}, hears the recording back and
publishes it with 2 (C{zh/review-recording}: 1 listen, 2 save, 3 record
again; * cancels).

L{Experts}: investors press 1, key an expert's mailbox number and hear the
expert's published commentaries, newest first; an expert presses 9, logs
in with the mailbox number and PIN, and records commentaries (kept as
drafts, which investors do not hear, until published) or goes through
them to publish or delete.

Nothing is left half-done by a hang-up: a recording becomes a row only
when its confirm key was pressed, and a file whose row was never written
is deleted at once.

Recordings are played as frames of the call's codec (SIP); an Asterisk
(FastAGI) channel, which has no codec here, gets the file's path without
its extension, which Asterisk's STREAM FILE takes, assuming Asterisk sees
the same directory.  The prompts are Mandarin's, as in phone trading.
"""

import datetime
import os

from twisted.internet import defer
from twisted.logger import Logger

from callcenter.ivr import bulletins as data
from callcenter.ivr.bulletins import PinCheck
from callcenter.ivr.dialogue import AGENT, BACK, INVALID, TIMEOUT, CallEnded, TooManyRetries
from callcenter.ivr.listings import Listings
from callcenter.ivr.say import say_digits
from callcenter.media import g711
from callcenter.media.tones import dbm0_amplitude, tone_frames
from callcenter.media.wavfile import load_prompt

__all__ = ["Bulletins", "Experts"]

_ENTRY_RETRIES = 3
_PIN_MAXIMUM = 12
# Cut off the end of a recording ended by #: the key's tone (in-band) or
# the gap in its place (RFC 4733) lasts 40-200 ms, and it is known only
# once it has begun.
_KEY_TAIL_SECONDS = 0.25
# Shorter than this is taken as nothing recorded (a # pressed at once).
_SHORTEST_RECORDING_MS = 500
_NAVIGATION = "1456"


class _Done(Exception):
    """The flow is over; C{result} is what it returns."""

    def __init__(self, result=None):
        super().__init__(result)
        self.result = result


def _ended(channel):
    if channel.ended.called:
        raise CallEnded()


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


class _Flow:
    """What both flows share: entries, logins, recording and listening."""

    log = Logger()

    def __init__(self, store, dialogue, audio_dir, clock, credentials, max_recording_seconds=300, names=None,
                 listings=None):
        self.store = store
        # Shared by every call in production (L{callcenter.ivr.listings}); a call of its own reads each time.
        self.listings = listings or Listings(store, clock, ttl=0)
        self.dialogue = dialogue
        self.names = names
        self.audio_dir = audio_dir
        self.clock = clock
        self.credentials = credentials
        self.max_recording_seconds = max_recording_seconds

    @defer.inlineCallbacks
    def said(self, thing):
        """The prompt saying C{thing}'s name (a category, an expert) in the call's language, or None."""
        if self.names is None:
            return None
        language = self.dialogue.language
        text = thing.name_en if language == "en" else thing.name_zh
        return (yield self.names.prompt(text, language))

    @defer.inlineCallbacks
    def category_menu(self, categories, generic, after):
        """
        The categories by name and key ("大盘综述请按一"), then C{after};
        C{generic} when any name cannot be said.
        """
        prompt = []
        for category in categories:
            name = yield self.said(category)
            if name is None:
                return generic
            prompt += [name, "press", *say_digits(category.code, self.dialogue.language, yao=False)]
        return prompt + [after]

    def now(self):
        return datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.timezone.utc)

    @defer.inlineCallbacks
    def __call__(self, channel):
        try:
            yield self.run(channel)
        except _Done as done:
            return done.result
        except TooManyRetries:
            yield self.dialogue.play(channel, "too-many-attempts")
        return None

    @defer.inlineCallbacks
    def menu(self, channel, prompt, choices):
        """A key among C{choices}, or L{BACK}; 0 ends the flow for an agent."""
        key = yield self.dialogue.menu(channel, prompt, choices)
        if key is AGENT:
            yield self.dialogue.play(channel, "transfer-agent")
            raise _Done(AGENT)
        return key

    @defer.inlineCallbacks
    def entry(self, channel, prompt, maximum, allow_star_back=True):
        """Digits keyed after C{prompt}, or L{BACK}; asked again after a timeout or a wrong key."""
        for attempt in range(1, _ENTRY_RETRIES + 1):
            answer = yield self.dialogue.collect(channel, prompt, maximum, allow_star_back=allow_star_back)
            if answer == "":
                answer = INVALID
            if answer is not TIMEOUT and answer is not INVALID:
                return answer
            if attempt == _ENTRY_RETRIES:
                raise TooManyRetries(answer)
            yield self.dialogue.play(
                channel, self.dialogue.timeout_prompt if answer is TIMEOUT else self.dialogue.invalid_prompt
            )

    @defer.inlineCallbacks
    def login(self, channel, kind, id_prompt, pin_prompt, id_maximum):
        """
        The id an editor or expert logged in with, or None if they went
        back; a locked id or too many wrong PINs end the call.
        """
        for attempt in range(1, _ENTRY_RETRIES + 1):
            key = yield self.entry(channel, id_prompt, id_maximum)
            if key is BACK:
                return None
            pin = yield self.entry(channel, pin_prompt, _PIN_MAXIMUM, allow_star_back=False)
            try:
                outcome = yield self.credentials.check(kind, key, pin)
            finally:
                del pin
            # The PIN is never logged, not even its length.
            self.log.info(
                "{kind} {key} login on call {cid}: {outcome}",
                kind=kind, key=key, cid=channel.correlation_id, outcome=outcome.value,
            )
            if outcome is PinCheck.OK:
                return key
            if outcome is PinCheck.LOCKED:
                yield self.dialogue.play(channel, ["pin-locked", "goodbye"])
                raise _Done(None)
            if attempt < _ENTRY_RETRIES:
                yield self.dialogue.play(channel, "wrong-password")
        yield self.dialogue.play(channel, "too-many-attempts")
        raise _Done(None)

    @defer.inlineCallbacks
    def play_recording(self, channel, relative):
        _ended(channel)
        path = os.path.join(self.audio_dir, relative)
        # Interruptible: a listener skips to the next one with 6 at any time.
        if channel.codec is None:
            yield channel.play([os.path.splitext(path)[0]], interruptible=True)
        else:
            yield channel.play(load_prompt(path, channel.codec.encoding), interruptible=True)
        _ended(channel)

    @defer.inlineCallbacks
    def _record_once(self, channel, kind, prompt):
        """Record after C{prompt} and the beep until # (or the longest allowed); (relative, absolute) paths."""
        yield self.dialogue.play(channel, prompt)
        yield _beep(channel)
        relative, path = data.new_recording(self.audio_dir, kind, self.now())
        recording = None
        try:
            recording = channel.record(rx=path)
            deadline = self.clock.seconds() + self.max_recording_seconds
            key = ""
            while True:
                left = deadline - self.clock.seconds()
                if left <= 0:
                    break
                key = yield channel.collect_digits(1, left, left, terminators="")
                _ended(channel)
                if key in ("#", ""):
                    break
            # The # and what came with it stay out of the bulletin.
            yield recording.stop(trim_seconds=_KEY_TAIL_SECONDS if key == "#" else 0.0)
            _ended(channel)
        except BaseException:
            if recording is not None:
                yield _stopped(recording)
            _remove(path)
            raise
        return relative, path

    @defer.inlineCallbacks
    def record(self, channel, kind, prompt, keep):
        """
        Record, play back and offer C{zh/review-recording} until the caller
        saves (2), which calls C{keep(relative, duration_ms)} (a Deferred),
        or cancels (*).  The file is deleted unless C{keep} succeeded.

        @return: a Deferred firing with what C{keep} returned, or None when
            cancelled.
        """
        empty = 0
        while True:
            relative, path = yield self._record_once(channel, kind, prompt)
            kept = False
            try:
                duration = data.recording_duration_ms(path)
                if duration < _SHORTEST_RECORDING_MS:
                    # Only empty takes count: recording again on 3 is the caller's choice.
                    empty += 1
                    if empty == _ENTRY_RETRIES:
                        raise TooManyRetries(INVALID)
                    yield self.dialogue.play(channel, "recording-too-short")
                    continue
                yield self.play_recording(channel, relative)
                while True:
                    key = yield self.menu(channel, "review-recording", "123")
                    if key == "1":
                        yield self.play_recording(channel, relative)
                        continue
                    if key == "2":
                        result = yield keep(relative, duration)
                        kept = True
                        return result
                    if key == "3":
                        break
                    yield self.dialogue.play(channel, "recording-deleted")
                    return None
            finally:
                if not kept:
                    _remove(path)

    @defer.inlineCallbacks
    def listen(self, channel, items, empty, menu_prompt, no_more, after=None):
        """Play C{items}' recordings, newest first, moving through them with L{_NAVIGATION}'s keys."""
        if not items:
            yield self.dialogue.play(channel, empty)
            return
        index = 0
        replay = True
        while True:
            if replay:
                yield self.play_recording(channel, items[index].audio_path)
                yield self.dialogue.play(channel, after)
            key = yield self.menu(channel, menu_prompt, _NAVIGATION)
            if key is BACK:
                return
            wanted = {"1": 0, "4": index - 1, "5": index, "6": index + 1}[key]
            replay = 0 <= wanted < len(items)
            if replay:
                index = wanted
            else:
                yield self.dialogue.play(channel, no_more)


# The beep the record prompts announce ("after the tone"): 1 kHz for 300 ms,
# -10 dBm0, as voicemail systems sound it.
_BEEP = tone_frames((1000,), 300, dbm0_amplitude(-10))


@defer.inlineCallbacks
def _beep(channel):
    _ended(channel)
    if channel.codec is None:
        # Asterisk's own sound file of the same beep.
        yield channel.play(["beep"], interruptible=False)
    else:
        encode = g711.ENCODERS[channel.codec.encoding]
        yield channel.play([encode(frame) for frame in _BEEP], interruptible=False)
    _ended(channel)


@defer.inlineCallbacks
def _stopped(recording):
    """Stop C{recording} while already failing: its own failure would hide the first."""
    try:
        yield recording.stop()
    except Exception:
        _Flow.log.failure("could not stop an abandoned recording")


def _categories_of(connection, editor_id):
    """The categories C{editor_id} may publish in, in menu order."""
    allowed = set(data.editor_categories(connection, editor_id))
    return [category for category in data.categories(connection) if category.code in allowed]


class Bulletins(_Flow):
    """
    The voice information service over C{store} (IStore), recordings under
    C{audio_dir}, times from C{clock}, editors' PINs checked by
    C{credentials} (a L{callcenter.ivr.bulletins.Credentials}).

    Fires with L{AGENT} when the caller asked for an agent, L{BACK} when
    they left with C{*}, and None otherwise.
    """

    @defer.inlineCallbacks
    def run(self, channel):
        while True:
            categories = yield self.listings.categories()
            prompt = yield self.category_menu(categories, "choose-category", "editors-press-9")
            key = yield self.menu(channel, prompt, "".join(c.code for c in categories) + "9")
            if key is BACK:
                raise _Done(BACK)
            if key == "9":
                yield self.editor(channel)
                continue
            current = yield self.listings.current_bulletins(key, self.now())
            yield self.listen(
                channel, current, "no-bulletins", "bulletins-menu", "no-more-bulletins",
                after="end-of-bulletin",
            )

    @defer.inlineCallbacks
    def editor(self, channel):
        editor_id = yield self.login(
            channel, "editor", "enter-editor-id", "enter-pin", data.editors.c.editor_id.type.length
        )
        if editor_id is None:
            return
        categories = yield self.store.transaction(_categories_of, editor_id)
        if not categories:
            self.log.info("editor {editor} may publish in no category (call {cid})", editor=editor_id,
                          cid=channel.correlation_id)
            yield self.dialogue.play(channel, "no-category-to-record")
            return
        prompt = yield self.category_menu(categories, "choose-category-to-record", "back-star")
        category = yield self.menu(channel, prompt, "".join(c.code for c in categories))
        if category is BACK:
            return

        @defer.inlineCallbacks
        def publish(relative, duration_ms):
            bulletin_id = yield self.store.transaction(
                data.add_bulletin, category, relative, duration_ms, self.now(), recorded_by=editor_id
            )
            self.listings.changed()
            self.log.info(
                "editor {editor} published bulletin {id} in category {category} on call {cid}",
                editor=editor_id, id=bulletin_id, category=category, cid=channel.correlation_id,
            )
            return bulletin_id

        published = yield self.record(channel, "bulletins", ["record-after-tone", "press-hash-to-finish"],
                                      publish)
        if published is not None:
            yield self.dialogue.play(channel, "bulletin-published")


class Experts(_Flow):
    """
    The expert mailboxes over C{store}, as L{Bulletins} is built; experts'
    PINs are checked by C{credentials}.
    """

    @defer.inlineCallbacks
    def run(self, channel):
        while True:
            key = yield self.menu(channel, "experts-menu", "19")
            if key is BACK:
                raise _Done(BACK)
            if key == "9":
                yield self.expert(channel)
            else:
                yield self.investor(channel)

    @defer.inlineCallbacks
    def investor(self, channel):
        for attempt in range(1, _ENTRY_RETRIES + 1):
            expert_no = yield self.entry(channel, "enter-mailbox", data.experts.c.expert_no.type.length)
            if expert_no is BACK:
                return
            found = yield self.store.transaction(data.expert, expert_no)
            if found is not None:
                break
            if attempt == _ENTRY_RETRIES:
                raise TooManyRetries(INVALID)
            yield self.dialogue.play(channel, "mailbox-not-found")
        heard = yield self.store.transaction(data.published_commentaries, expert_no)
        name = yield self.said(found)
        if name is not None:
            yield self.dialogue.play(channel, name)
        yield self.listen(channel, heard, "mailbox-empty", "commentary-menu", "no-more-commentaries")

    @defer.inlineCallbacks
    def expert(self, channel):
        expert_no = yield self.login(
            channel, "expert", "enter-mailbox", "enter-mailbox-password", data.experts.c.expert_no.type.length
        )
        if expert_no is None:
            return
        while True:
            key = yield self.menu(channel, "expert-menu", "12")
            if key is BACK:
                return
            if key == "1":
                yield self.record_commentary(channel, expert_no)
            else:
                yield self.manage(channel, expert_no)

    @defer.inlineCallbacks
    def record_commentary(self, channel, expert_no):
        def save(relative, duration_ms):
            return self.store.transaction(data.add_commentary, expert_no, relative, duration_ms)

        commentary_id = yield self.record(channel, "commentaries", "record-commentary", save)
        if commentary_id is None:
            return
        # Saved: a hang-up from here on leaves a draft, which nobody hears.
        publish = yield self.dialogue.confirm(channel, "publish-now")
        if publish is True:
            yield self.publish(channel, expert_no, commentary_id)
        else:
            yield self.dialogue.play(channel, "commentary-saved")

    @defer.inlineCallbacks
    def publish(self, channel, expert_no, commentary_id):
        done = yield self.store.transaction(data.publish_commentary, commentary_id, expert_no, self.now())
        if done:
            self.log.info(
                "expert {expert} published commentary {id} on call {cid}",
                expert=expert_no, id=commentary_id, cid=channel.correlation_id,
            )
        yield self.dialogue.play(channel, "commentary-published")

    @defer.inlineCallbacks
    def manage(self, channel, expert_no):
        items = yield self.store.transaction(data.expert_commentaries, expert_no)
        if not items:
            yield self.dialogue.play(channel, "mailbox-empty")
            return
        for item in items:
            yield self.play_recording(channel, item.audio_path)
            status = "commentary-draft" if item.status == "draft" else "commentary-is-published"
            yield self.dialogue.play(channel, status)
            key = yield self.menu(channel, "manage-commentary", "123")
            if key is BACK:
                return
            if key == "1":
                yield self.publish(channel, expert_no, item.id)
            elif key == "2":
                removed = yield self.store.transaction(data.delete_commentary, item.id, expert_no)
                if removed is not None:
                    # After the commit: a row never points at a missing file it still offers.
                    _remove(os.path.join(self.audio_dir, removed))
                yield self.dialogue.play(channel, "recording-deleted")
        yield self.dialogue.play(channel, "no-more-commentaries")
