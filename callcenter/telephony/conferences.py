"""
Conference rooms on public numbers: a room per dialled number, opened when
the first caller arrives and closed when the last one leaves.  In the room
a caller's * key mutes and unmutes them.

A room may be moderated ([telephony.conferences."<number>"]): callers who
key # then the moderator PIN then # become its moderators (a rising pair
of beeps says so, a low beep that the PIN was wrong; three wrong PINs in a
call and # is ignored for the rest of it, and ten in a row on one room
lock its PIN for fifteen minutes).  Such a room can hold its members
silent until a moderator is in (members hear a soft beep every few
seconds meanwhile), end when its last moderator leaves, and keep its
listeners muted: an expert's commentary, heard by investors who cannot
speak over it.  The PIN is checked against its argon2 hash, in a thread.
"""

from dataclasses import dataclass

from twisted.internet import defer
from twisted.internet.task import LoopingCall

from callcenter.media import g711
from callcenter.media.conference import ConferenceRoom, RoomEnded
from callcenter.media.tones import tone_frames

# Long enough never to end a quiet listener's wait; the call's end does.
_KEY_WAIT = 3600
_PIN_DIGITS = 12
_PIN_SECONDS = 10
_TRIES_PER_CALL = 3
_FAILURES_BEFORE_LOCK = 10
_LOCK_SECONDS = 900
# While members wait for a moderator, a soft beep now and then says the line is alive.
_WAITING_BEEP_EVERY = 5


@dataclass(frozen=True)
class RoomSettings:
    """How a room is run; the defaults are an open room where everyone may speak."""

    moderator_pin_hash: str | None = None
    wait_for_moderator: bool = False
    end_with_moderator: bool = False
    listeners_muted: bool = False


OPEN_ROOM = RoomSettings()


def _beep(encoding, frequencies, milliseconds=150, amplitude=6000):
    encode = g711.ENCODERS[encoding]
    frames = []
    for frequency in frequencies:
        frames += [encode(frame) for frame in tone_frames((frequency,), milliseconds, amplitude)]
    return frames


class Conferences:
    """
    @param settings: dialled number -> L{RoomSettings} for rooms that are
        not open ones.
    @param verify: C{verify(hash, pin)} -> Deferred of bool (argon2 in a
        thread).
    """

    def __init__(self, engine, settings=None, verify=None, clock=None, room_factory=ConferenceRoom, workers=None):
        self._engine = engine
        # With media workers, a room mixes in the worker its callers' media
        # is placed in (the service places calls to a room's number together).
        self._workers = workers
        self._settings = dict(settings or {})
        self._verify = verify
        self._clock = clock
        self._room_factory = room_factory
        self._rooms = {}
        self._failures = {}  # number -> (wrong PINs in a row, locked until)

    def __len__(self):
        return len(self._rooms)

    def members(self, number):
        room = self._rooms.get(number)
        return 0 if room is None else len(room.members)

    def _room(self, number, settings, session):
        """The room C{number} (opened where C{session} is), or None when C{session} cannot join it from where it is."""
        worker = getattr(session, "worker", None)
        room = self._rooms.get(number)
        if room is None:
            if worker is None:
                room = self._room_factory(
                    self._engine, wait_for_moderator=settings.wait_for_moderator,
                    end_with_moderator=settings.end_with_moderator,
                )
            else:
                room = self._workers.room(
                    session, wait_for_moderator=settings.wait_for_moderator,
                    end_with_moderator=settings.end_with_moderator,
                )
            self._rooms[number] = room
        elif getattr(room, "worker", None) is not worker:
            return None
        return room

    def application(self, number):
        """What answers calls to the room C{number}."""
        settings = self._settings.get(number, OPEN_ROOM)

        @defer.inlineCallbacks
        def join(channel):
            yield channel.answer()
            room = self._room(number, settings, channel.media)
            if room is None:
                # A call transferred here whose media runs in another
                # process than the room's: a session does not move (yet).
                channel.log.warn(
                    "conference {number} refused: the call's media runs in another process than the room's",
                    number=number,
                )
                channel.hangup("unavailable")
                return
            try:
                member = room.join(channel.media, muted=settings.listeners_muted)
            except RoomEnded:
                channel.hangup("conference ended")
                return
            channel.log.info(
                "joined conference {number} ({count} in the room)", number=number, count=len(room.members)
            )
            def room_ended(result):
                # Its last moderator left: the call ends with the room.
                if channel.state != "ended":
                    channel.hangup("conference ended")
                return result

            room.ended.addCallback(room_ended)
            waiting = self._waiting_beeps(channel, room)
            tries = 0
            try:
                while channel.state != "ended":
                    key = yield channel.collect_digits(1, _KEY_WAIT, _KEY_WAIT, terminators="")
                    if key == "*" and (member.moderator or not settings.listeners_muted):
                        member.muted = not member.muted
                        channel.log.info("{state} in conference {number}", state="muted" if member.muted else "unmuted", number=number)
                    elif key == "#" and settings.moderator_pin_hash and not member.moderator and tries < _TRIES_PER_CALL:
                        tries += 1
                        if (yield self._moderator_pin(channel, number, settings)):
                            room.promote(channel.media)
                            member.muted = False
                            channel.log.info("moderator of conference {number}", number=number)
                            yield channel.play(_beep(channel.codec.encoding, (660, 880)))
                        else:
                            yield channel.play(_beep(channel.codec.encoding, (330,), 400))
            finally:
                if waiting is not None and waiting.running:
                    waiting.stop()
                room.leave(channel.media)
                if not room.members and self._rooms.get(number) is room:
                    room.end()
                    del self._rooms[number]

        # With media workers, the room's callers go to one worker, where it mixes.
        join.media_affinity = ("conference", number)
        return join

    @defer.inlineCallbacks
    def _moderator_pin(self, channel, number, settings):
        pin = yield channel.collect_digits(_PIN_DIGITS, _PIN_SECONDS, _PIN_SECONDS, terminators="#")
        now = self._clock.seconds() if self._clock is not None else 0
        wrong, locked_until = self._failures.get(number, (0, 0))
        if locked_until > now:
            channel.log.warn("moderator PIN of conference {number} is locked", number=number)
            return False
        good = bool(pin) and (yield self._verify(settings.moderator_pin_hash, pin))
        if good:
            self._failures.pop(number, None)
            return True
        wrong += 1
        locked_until = now + _LOCK_SECONDS if wrong >= _FAILURES_BEFORE_LOCK else 0
        self._failures[number] = (0 if locked_until else wrong, locked_until)
        channel.log.warn("wrong moderator PIN for conference {number} ({wrong} in a row)", number=number, wrong=wrong)
        return False

    def _waiting_beeps(self, channel, room):
        if not room.waiting or self._clock is None:
            return None
        beep = _beep(channel.codec.encoding, (440,), 100, 2000)

        def maybe_beep():
            if room.waiting and channel.state != "ended":
                channel.play(beep)
            elif loop.running:
                loop.stop()

        loop = LoopingCall(maybe_beep)
        loop.clock = self._clock
        loop.start(_WAITING_BEEP_EVERY, now=False)
        return loop
