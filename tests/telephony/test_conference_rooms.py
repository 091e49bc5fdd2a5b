"""
Conference rooms by phone (L{callcenter.telephony.conferences}): keys to
mute, a moderator PIN keyed as # PIN #, rooms that wait for their
moderator, end with them, or keep listeners muted.  The room itself is the
real L{ConferenceRoom} on a stand-in engine (its mixing is covered by
tests/media/test_conference.py); the channel is a stand-in the test keys
digits into; time is a L{Clock}.
"""

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from callcenter.config import Mismatch
from callcenter.passwords import hash_password, verify_password
from callcenter.plugins.telephony import ConferenceTable
from callcenter.telephony.conferences import Conferences, RoomSettings
from outcomes import results_of

PIN = "2468"


class Engine:
    samples_per_tick = 160

    def __init__(self):
        self.hooks = []

    def add_tick_hook(self, hook):
        self.hooks.append(hook)

    def remove_tick_hook(self, hook):
        self.hooks.remove(hook)


class Session:
    """What a room needs of a media session."""

    local_port = 20000
    closed = False
    echoing = False

    def __init__(self):
        self.audio_received = None
        self.hooks = []

    def echo(self, on=True):
        self.echoing = on

    def add_close_hook(self, hook):
        self.hooks.append(hook)

    def remove_close_hook(self, hook):
        self.hooks.remove(hook)

    def clear_feed(self):
        pass


class Codec:
    encoding = "PCMA"


class Channel:
    """A caller: keys go to the collection waiting for them."""

    codec = Codec()

    def __init__(self):
        self.media = Session()
        self.state = "offered"
        self.played = []
        self.hung_up = None
        self._waiting = None
        self._keys = []
        self.log = _Log()

    def answer(self):
        self.state = "answered"
        return defer.succeed(None)

    def play(self, frames, interruptible=False):
        self.played.append(len(frames))
        return defer.succeed(True)

    def collect_digits(self, maximum, first_timeout, inter_digit_timeout, terminators="#"):
        d = defer.Deferred()
        self._waiting = (d, maximum, terminators, [])
        self._flush()
        return d

    def press(self, keys):
        self._keys += list(keys)
        self._flush()

    def _flush(self):
        while self._waiting is not None and self._keys:
            d, maximum, terminators, got = self._waiting
            key = self._keys.pop(0)
            if key in terminators:
                self._waiting = None
                d.callback("".join(got))
                continue
            got.append(key)
            if len(got) >= maximum:
                self._waiting = None
                d.callback("".join(got))

    def hangup(self, reason="normal"):
        self.state = "ended"
        self.hung_up = reason
        if self._waiting is not None:
            d, self._waiting = self._waiting[0], None
            d.callback("")


class _Log:
    def __init__(self):
        self.lines = []

    def info(self, text, **fields):
        self.lines.append(text.format(**fields))

    warn = info


def verify_now(pin_hash, pin):
    return defer.succeed(verify_password(pin_hash, pin))


@pytest.fixture
def rooms():
    clock = Clock()
    settings = {
        "9300": RoomSettings(),
        "9310": RoomSettings(moderator_pin_hash=hash_password(PIN), listeners_muted=True, end_with_moderator=True),
        "9320": RoomSettings(moderator_pin_hash=hash_password(PIN), wait_for_moderator=True),
    }
    conferences = Conferences(Engine(), settings, verify_now, clock)
    conferences.clock = clock
    return conferences


def call(conferences, number):
    channel = Channel()
    done = results_of(conferences.application(number)(channel))
    return channel, done


def member(conferences, number, channel):
    return next(m for m in conferences._rooms[number].members if m.session is channel.media)


def test_in_an_open_room_star_mutes_and_unmutes(rooms):
    caller, _ = call(rooms, "9300")
    assert member(rooms, "9300", caller).muted is False
    caller.press("*")
    assert member(rooms, "9300", caller).muted is True
    caller.press("*")
    assert member(rooms, "9300", caller).muted is False


def test_listeners_stay_muted_and_the_moderator_speaks(rooms):
    listener, _ = call(rooms, "9310")
    expert, _ = call(rooms, "9310")
    listener.press("*")
    assert member(rooms, "9310", listener).muted is True  # * does not unmute a listener
    expert.press("#" + PIN + "#")
    chair = member(rooms, "9310", expert)
    assert chair.moderator is True and chair.muted is False
    assert expert.played == [16]  # the rising pair of beeps (two of 8 frames)
    expert.press("*")
    assert chair.muted is True


def test_a_wrong_pin_is_a_low_beep_and_three_end_the_tries(rooms):
    caller, _ = call(rooms, "9310")
    for _ in range(3):
        caller.press("#1111#")
    assert caller.played == [20, 20, 20]  # the low beep, each time
    caller.press("#" + PIN + "#")
    assert member(rooms, "9310", caller).moderator is False
    assert caller.played == [20, 20, 20]


def test_ten_wrong_pins_in_a_row_lock_the_room_for_a_while(rooms):
    for _ in range(4):
        caller, _ = call(rooms, "9310")
        for _ in range(3):
            caller.press("#9999#")
        caller.hangup()
    expert, _ = call(rooms, "9310")
    expert.press("#" + PIN + "#")
    assert member(rooms, "9310", expert).moderator is False  # locked, even with the right PIN
    rooms.clock.advance(901)
    expert.press("#" + PIN + "#")
    assert member(rooms, "9310", expert).moderator is True


def test_the_room_ends_with_its_last_moderator_and_hangs_up_everyone(rooms):
    listener, listening = call(rooms, "9310")
    expert, _ = call(rooms, "9310")
    expert.press("#" + PIN + "#")
    expert.hangup()
    assert listener.hung_up == "conference ended"
    assert listening == [None]
    assert len(rooms) == 0


def test_members_hear_a_beep_while_they_wait_for_the_moderator(rooms):
    caller, _ = call(rooms, "9320")
    rooms.clock.advance(5)
    rooms.clock.advance(5)
    assert caller.played == [5, 5]
    expert, _ = call(rooms, "9320")
    expert.press("#" + PIN + "#")
    rooms.clock.advance(10)
    assert caller.played == [5, 5]


def test_moderated_rooms_are_checked_in_the_configuration():
    parsed = ConferenceTable().parse({"9310": {"moderator_pin_hash": "$argon2id$v=19$m=8,t=1,p=1$x$y",
                                               "listeners_muted": True}})
    assert parsed[0][0] == "9310" and parsed[0][1].listeners_muted is True
    with pytest.raises(Mismatch, match="needs moderator_pin_hash"):
        ConferenceTable().parse({"9310": {"listeners_muted": True}})
    with pytest.raises(Mismatch, match="not an argon2 hash"):
        ConferenceTable().parse({"9310": {"moderator_pin_hash": "2468"}})
    with pytest.raises(Mismatch, match="unknown key"):
        ConferenceTable().parse({"9310": {"pin": "2468"}})
