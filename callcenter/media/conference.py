"""
Conference rooms: N calls in one engine, each hearing all the others.

A member's received frames are collected as its session ticks; once every
session has ticked, the room's engine tick hook mixes them and feeds each
member its mix, which goes out on the next tick (one frame, 20 ms, of
added delay, the same for every member).  One hook per room, not a timer.

Each member hears the sum of the others, not itself: the mix is the sum of
every speaker, minus the listener's own frame where it is a speaker,
saturated to 16 bits and encoded in the listener's codec (see
L{callcenter.media.mixing} for how that stays cheap in pure Python).  Work
follows who speaks, not how many listen:
  - a member whose frame this tick is the codec's silence (the session's
    filler when its far end sends nothing) or who is muted is no speaker;
  - nobody speaking: nothing is fed, and every member's session sends
    nothing (silence suppression), as an idle call does;
  - one speaker: its frame is passed on as it came (translated between
    PCMU and PCMA where a listener's codec differs), with no mixing;
  - several: listeners who are not speaking all hear the same sum,
    encoded once per codec; each speaker gets the sum without itself
    (with two speakers, simply the other's frame).
"""

from twisted.internet import defer

from callcenter.media import g711
from callcenter.media.mixing import FrameMixer

_TRANSCODE = {"PCMU": g711.alaw_to_ulaw, "PCMA": g711.ulaw_to_alaw}


class RoomEnded(Exception):
    """The room has ended; nobody can join it any more."""


class Member:
    """
    One session in a room.  C{muted} (not heard by the others) and C{deaf}
    (hears nothing) may be set at any time and take effect on the next
    tick; C{moderator} is set at L{ConferenceRoom.join} or by
    L{ConferenceRoom.promote}.
    """

    def __init__(self, session, samples, muted, deaf, moderator):
        self.session = session
        self.muted = muted
        self.deaf = deaf
        self.moderator = moderator
        self.previous_listener = session.audio_received
        self.was_echoing = session.echoing
        self._samples = samples
        # This tick's received frame, and (while the room mixes) this
        # member's frame widened, when it is one of several speakers.
        self.frame = None
        self.wide = None
        self.codec = None
        self.encoding = None
        self.silence = None

    def heard(self, payload, codec):
        """The session's C{audio_received}: keep the frame for the room's mix."""
        if codec is not self.codec:
            self._codec_changed()
        self.frame = payload

    def current_encoding(self):
        """The session's codec name now (None before it has one); a re-INVITE may change it."""
        if self.session.codec is not self.codec:
            self._codec_changed()
        return self.encoding

    def _codec_changed(self):
        self.codec = codec = self.session.codec
        if codec is None:
            self.encoding = self.silence = None
        else:
            self.encoding = codec.encoding.upper()
            self.silence = bytes((g711.SILENCE[self.encoding],)) * self._samples


class ConferenceRoom:
    """
    A room on C{engine}'s tick.  With C{wait_for_moderator}, members hear
    nothing (the call layer may play them music meanwhile: a prompt takes
    precedence over the room) until a moderator is in the room; with
    C{end_with_moderator}, the room ends when its last moderator leaves.
    """

    def __init__(self, engine, wait_for_moderator=False, end_with_moderator=False):
        self.engine = engine
        self.wait_for_moderator = wait_for_moderator
        self.end_with_moderator = end_with_moderator
        # Fires (with None) when the room ends: after L{end}, or when the
        # last moderator of an end_with_moderator room leaves.
        self.ended = defer.Deferred()
        self._members = {}
        self._moderators = 0
        self._mixer = FrameMixer(engine.samples_per_tick)
        self._hooked = False
        self._open = True

    @property
    def members(self):
        """The members, in the order they joined."""
        return list(self._members.values())

    @property
    def waiting(self):
        """True while the room holds its members silent until a moderator joins."""
        return self.wait_for_moderator and not self._moderators

    def join(self, session, muted=False, deaf=False, moderator=False):
        """
        Add C{session}: from its next received frame it is heard (unless
        C{muted}) and from the next tick it hears the others (unless
        C{deaf}).  Its C{audio_received} slot belongs to the room until it
        leaves, and echo is off meanwhile.  Returns its L{Member}.
        Raises ValueError for a session already in the room or closed,
        L{RoomEnded} once the room has ended.
        """
        if not self._open:
            raise RoomEnded("the conference room has ended")
        if session in self._members:
            raise ValueError(f"media session on port {session.local_port} is already in the room")
        if session.closed:
            raise ValueError(f"media session on port {session.local_port} is closed")
        member = Member(session, self._mixer.samples, muted, deaf, moderator)
        self._members[session] = member
        self._moderators += moderator
        session.echo(False)
        session.audio_received = member.heard
        session.add_close_hook(self.leave)
        if not self._hooked:
            self._hooked = True
            self.engine.add_tick_hook(self._mix)
        return member

    def promote(self, session):
        """Make a member a moderator (one who proved it by PIN after joining).  False if not a member."""
        member = self._members.get(session)
        if member is None:
            return False
        if not member.moderator:
            member.moderator = True
            self._moderators += 1
        return True

    def leave(self, session):
        """
        Take C{session} out of the room, its C{audio_received} and echo as
        they were before it joined.  False if it was not in the room.
        """
        member = self._members.pop(session, None)
        if member is None:
            return False
        session.remove_close_hook(self.leave)
        # Someone who took the slot after us keeps it.
        if session.audio_received == member.heard:
            session.audio_received = member.previous_listener
        if not session.closed:
            session.echo(member.was_echoing)
        session.clear_feed()
        if not self._members and self._hooked:
            self._hooked = False
            self.engine.remove_tick_hook(self._mix)
        if member.moderator:
            self._moderators -= 1
            if self.end_with_moderator and not self._moderators:
                self.end()
        return True

    def end(self):
        """Everyone leaves, and nobody can join any more."""
        if not self._open:
            return
        # Closed before the members leave, so that the last moderator
        # leaving does not end the room a second time.
        self._open = False
        for session in list(self._members):
            self.leave(session)
        self.ended.callback(None)

    def _mix(self, index, now):
        speakers = []
        for member in self._members.values():
            frame = member.frame
            if frame is not None:
                if not member.muted and frame != member.silence and len(frame) == self._mixer.samples:
                    speakers.append(member)
                else:
                    member.frame = None
        if not speakers:
            return
        if not self.waiting:
            if len(speakers) == 1:
                self._relay(speakers[0])
            else:
                self._mix_speakers(speakers)
        for member in speakers:
            member.frame = member.wide = None

    def _relay(self, speaker):
        frame = speaker.frame
        translated = None
        for member in self._members.values():
            if member is speaker or member.deaf or member.session.on_hold:
                continue
            encoding = member.current_encoding()
            if encoding == speaker.encoding:
                member.session.feed(frame)
            elif encoding is not None:
                if translated is None:
                    translated = _TRANSCODE[encoding](frame)
                member.session.feed(translated)

    def _mix_speakers(self, speakers):
        mixer = self._mixer
        total = 0
        for speaker in speakers:
            speaker.wide = mixer.widen(speaker.frame, speaker.encoding)
            total += speaker.wide
        count = len(speakers)
        # What every listener who is not speaking hears, by codec.
        shared = {}
        for member in self._members.values():
            if member.deaf or member.session.on_hold:
                continue
            encoding = member.current_encoding()
            if encoding is None:
                continue
            if member.wide is not None:
                if count == 2:
                    # The other speaker alone: its frame as it came.
                    other = speakers[1] if member is speakers[0] else speakers[0]
                    mix = other.frame
                    if other.encoding != encoding:
                        mix = _TRANSCODE[encoding](mix)
                else:
                    mix = mixer.encode(total - member.wide, count - 1, encoding)
            else:
                mix = shared.get(encoding)
                if mix is None:
                    mix = shared[encoding] = mixer.encode(total, count, encoding)
            member.session.feed(mix)
