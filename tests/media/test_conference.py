"""
Conference rooms: members on real sockets (127.0.0.1), the tick on a
Clock; what each far end hears is checked by the level of each speaker's
tone in it.
"""

import random
import struct

import pytest

from callcenter.media import g711
from callcenter.media.conference import ConferenceRoom, RoomEnded
from callcenter.media.mixing import FrameMixer
from loopback import PCMA, PCMU, Rig, level_at, tone

HEARD = 1500
NOT_HEARD = 60


@pytest.fixture
def rig():
    rig = Rig()
    yield rig
    rig.close()


def members(rig, room, codecs, **options):
    calls = [rig.call(codec) for codec in codecs]
    joined = [room.join(session, **options) for session, _ in calls]
    return calls, joined


@pytest.mark.parametrize("codecs", [(PCMU, PCMA), (PCMU, PCMA, PCMU), (PCMA, PCMU, PCMA, PCMU)])
def test_each_member_hears_the_others_and_not_itself(rig, codecs):
    room = ConferenceRoom(rig.engine)
    calls, _ = members(rig, room, codecs)
    frequencies = (440, 1000, 1700, 2300)[: len(codecs)]
    for (_, phone), frequency in zip(calls, frequencies):
        rig.say(phone, tone(frequency, 1000, phone.codec))
    rig.run(50)
    for (_, phone), own in zip(calls, frequencies):
        heard = phone.heard(since=10)
        for frequency in frequencies:
            if frequency == own:
                assert level_at(heard, frequency) < NOT_HEARD
            else:
                assert level_at(heard, frequency) > HEARD


def test_one_speaker_is_passed_on_and_silence_is_not_sent(rig):
    room = ConferenceRoom(rig.engine)
    calls, _ = members(rig, room, (PCMU, PCMU, PCMA))
    (_, speaker), (_, same_codec), (_, other_codec) = calls
    words = tone(440, 400, PCMU)
    rig.say(speaker, words)
    rig.run(40)
    # The frames themselves, one tick after they played out, for the
    # listener in the speaker's codec; transcoded for the other.
    assert same_codec.audio() == words
    assert other_codec.audio() == [g711.ulaw_to_alaw(frame) for frame in words]
    # The speaker hears nothing: nothing at all is sent to it.
    assert speaker.received == []


def test_a_muted_member_is_not_heard_until_unmuted(rig):
    room = ConferenceRoom(rig.engine)
    calls, joined = members(rig, room, (PCMU, PCMU, PCMU))
    (_, quiet), (_, talker), (_, listener) = calls
    joined[0].muted = True
    rig.say(quiet, tone(440, 2000))
    rig.say(talker, tone(1000, 2000))
    rig.run(40)
    heard = listener.heard(since=10)
    assert level_at(heard, 440) < NOT_HEARD
    assert level_at(heard, 1000) > HEARD
    # Muted, it still hears the room.
    assert level_at(quiet.heard(since=10), 1000) > HEARD
    joined[0].muted = False
    rig.run(40)
    assert level_at(listener.heard(since=50), 440) > HEARD


def test_a_deaf_member_hears_nothing_and_is_heard(rig):
    room = ConferenceRoom(rig.engine)
    calls, joined = members(rig, room, (PCMU, PCMU))
    (_, deaf), (_, other) = calls
    joined[0].deaf = True
    rig.say(deaf, tone(440, 1000))
    rig.say(other, tone(1000, 1000))
    rig.run(40)
    assert deaf.received == []
    assert level_at(other.heard(since=10), 440) > HEARD


def test_a_member_leaving_mid_call(rig):
    room = ConferenceRoom(rig.engine)
    calls, _ = members(rig, room, (PCMU, PCMU, PCMU))
    (leaver_session, leaver), (_, b), (_, c) = calls
    listened = []
    for (_, phone), frequency in zip(calls, (440, 1000, 1700)):
        rig.say(phone, tone(frequency, 2000))
    rig.run(30)
    assert level_at(b.heard(since=10), 440) > HEARD
    assert room.leave(leaver_session) is True
    assert room.leave(leaver_session) is False
    leaver_session.audio_received = lambda payload, codec: listened.append(payload)
    heard_by_leaver = len(leaver.received)
    rig.run(30)
    # The others no longer hear it (after the frame already fed), and it
    # hears nobody; its session is its own again.
    assert level_at(b.heard(since=32), 440) < NOT_HEARD
    assert level_at(b.heard(since=32), 1700) > HEARD
    assert len(leaver.received) <= heard_by_leaver + 1
    assert len(listened) == 30
    assert [member.session for member in room.members] == [calls[1][0], calls[2][0]]


def test_joining_twice_a_closed_session_and_an_ended_room(rig):
    room = ConferenceRoom(rig.engine)
    session, _ = rig.call()
    room.join(session)
    with pytest.raises(ValueError):
        room.join(session)
    closed, _ = rig.call()
    closed.close()
    with pytest.raises(ValueError):
        room.join(closed)
    room.end()
    assert room.ended.called and room.members == []
    with pytest.raises(RoomEnded):
        room.join(rig.call()[0])


def test_a_session_closing_leaves_the_room(rig):
    room = ConferenceRoom(rig.engine)
    calls, _ = members(rig, room, (PCMU, PCMU))
    (first, _), (second, phone) = calls
    first.close()
    assert [member.session for member in room.members] == [second]
    rig.say(phone, tone(440, 200))
    rig.run(10)
    assert phone.received == []


def test_members_wait_in_silence_for_the_moderator(rig):
    room = ConferenceRoom(rig.engine, wait_for_moderator=True)
    calls, _ = members(rig, room, (PCMU, PCMU))
    for (_, phone), frequency in zip(calls, (440, 1000)):
        rig.say(phone, tone(frequency, 2000))
    rig.run(30)
    assert room.waiting
    assert all(phone.received == [] for _, phone in calls)
    moderator, chair = rig.call()
    room.join(moderator, moderator=True)
    rig.say(chair, tone(1700, 1000))
    rig.run(30)
    assert not room.waiting
    heard = calls[0][1].heard()
    assert level_at(heard, 1000) > HEARD and level_at(heard, 1700) > HEARD


def test_the_room_ends_when_its_moderator_leaves(rig):
    room = ConferenceRoom(rig.engine, end_with_moderator=True)
    calls, _ = members(rig, room, (PCMU, PCMU))
    moderator, _ = rig.call()
    room.join(moderator, moderator=True)
    ended = []
    room.ended.addCallback(lambda _: ended.append(list(room.members)))
    moderator.close()
    # Everyone is out when the room says it ended.
    assert ended == [[]]
    assert all(session.audio_received is None for session, _ in calls)


# The mixer itself.


def reference_mix(frames, encoding):
    """Decode, add, clip, encode: the obvious way, sample by sample."""
    decode = g711.ulaw_to_linear if encoding == "PCMU" else g711.alaw_to_linear
    encode = g711.linear_to_ulaw if encoding == "PCMU" else g711.linear_to_alaw
    decoded = [struct.unpack("<160h", decode(frame)) for frame in frames]
    sums = [max(-32768, min(32767, sum(column))) for column in zip(*decoded)]
    return encode(struct.pack("<160h", *sums))


@pytest.mark.parametrize("encoding", ["PCMU", "PCMA"])
@pytest.mark.parametrize("amplitude", [2000, 32767])
def test_the_mixer_sums_and_saturates_like_the_obvious_way(encoding, amplitude):
    rng = random.Random(amplitude)
    encode = g711.linear_to_ulaw if encoding == "PCMU" else g711.linear_to_alaw
    frames = [
        encode(struct.pack("<160h", *(rng.randint(-amplitude, amplitude) for _ in range(160)))) for _ in range(6)
    ]
    mixer = FrameMixer(160)
    wide = [mixer.widen(frame, encoding) for frame in frames]
    total = sum(wide)
    assert mixer.encode(total, 6, encoding) == reference_mix(frames, encoding)
    # All but one: a speaker's own frame taken out of the sum.
    assert mixer.encode(total - wide[2], 5, encoding) == reference_mix(frames[:2] + frames[3:], encoding)
