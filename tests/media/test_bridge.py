"""
Bridges: two calls hearing each other through the engine, checked at the
far ends' sockets (real UDP on 127.0.0.1, the tick on a Clock).
"""

import pytest

from callcenter.media.bridge import Bridge
from loopback import PCMA, PCMU, Rig, level_at, samples_of, silence, tone

JITTER_TICKS = 3


@pytest.fixture
def rig():
    rig = Rig()
    yield rig
    rig.close()


def test_each_side_hears_the_other_across_pcmu_and_pcma(rig):
    a, phone_a = rig.call(PCMU)
    b, phone_b = rig.call(PCMA)
    Bridge(a, b)
    rig.say(phone_a, tone(440, 1000, PCMU))
    rig.say(phone_b, tone(1000, 1000, PCMA))
    rig.run(60)
    # Each far end gets the other's tone in its own codec, and not its own.
    assert {kind for _, kind, _ in phone_b.received} == {8}
    assert {kind for _, kind, _ in phone_a.received} == {0}
    at_b = phone_b.heard()
    at_a = phone_a.heard()
    assert 48 <= len(phone_b.audio()) <= 50
    assert level_at(at_b, 440) > 2000 > 50 > level_at(at_b, 1000)
    assert level_at(at_a, 1000) > 2000 > 50 > level_at(at_a, 440)


def test_frames_cross_in_order_with_a_fixed_delay_and_no_backlog(rig):
    a, phone_a = rig.call()
    b, phone_b = rig.call()
    Bridge(a, b)
    # Numbered frames both ways, so that each can be found where it lands.
    numbered = [bytes((n,)) * 160 for n in range(1, 41)]
    rig.say(phone_a, numbered)
    rig.say(phone_b, numbered)
    rig.run(60)
    delays = []
    for phone in (phone_a, phone_b):
        arrivals = {payload[0]: tick for tick, _, payload in phone.received}
        assert [payload[0] for _, _, payload in phone.received] == list(range(1, 41))
        delay = {arrivals[n] - (n - 1) for n in range(1, 41)}
        assert len(delay) == 1
        delays.append(delay.pop())
    # The jitter buffer's playout delay, and one session ticks before the
    # other: one direction waits one tick more, never more than that.
    assert max(delays) <= JITTER_TICKS + 1
    assert abs(delays[0] - delays[1]) == 1
    # The speech ended: nothing more is sent (no queue left behind).
    assert all(tick < 40 + max(delays) for phone in (phone_a, phone_b) for tick, _, _ in phone.received)


def test_a_session_on_hold_is_sent_nothing_and_misses_what_was_said(rig):
    a, phone_a = rig.call()
    b, phone_b = rig.call()
    Bridge(a, b)
    b.hold(True)
    rig.say(phone_a, [bytes((n,)) * 160 for n in range(1, 31)])
    rig.run(20)
    assert phone_b.received == []
    b.hold(False)
    rig.run(20)
    heard = [payload[0] for _, _, payload in phone_b.received]
    # From the resume on, current audio: nothing said on hold comes late.
    assert heard and heard[0] >= 16
    assert heard == list(range(heard[0], 31))


def test_a_prompt_or_a_key_press_takes_precedence_then_the_bridge_resumes(rig):
    a, phone_a = rig.call()
    b, phone_b = rig.call()
    Bridge(a, b)
    rig.say(phone_a, tone(440, 2000))
    rig.say(phone_b, tone(1000, 2000))
    rig.run(10)
    played = []
    b.play(tone(2000, 400)).addCallback(played.append)
    rig.run(25)
    b.send_dtmf("5")
    rig.run(15)
    assert played == [True]
    kinds = [kind for _, kind, _ in phone_b.received]
    # The prompt's 20 frames replaced a's audio, then the key press (RFC
    # 4733 events) paused it, then a's audio came back.
    start = next(tick for tick, _, payload in phone_b.received if level_at(_samples([payload]), 2000) > 2000)
    prompt = [payload for tick, _, payload in phone_b.received if start <= tick < start + 20]
    assert level_at(_samples(prompt), 2000) > 2000 > 50 > level_at(_samples(prompt), 440)
    assert 101 in kinds and kinds[-1] == 0
    assert level_at(_samples([p for t, k, p in phone_b.received if t >= rig.ticks - 3 and k == 0]), 440) > 2000
    # Meanwhile a heard b without a break.
    assert level_at(phone_a.heard(since=15), 1000) > 2000


def _samples(payloads):
    return samples_of(payloads, "PCMU")


def test_stop_gives_back_the_callbacks_and_echo(rig):
    a, phone_a = rig.call()
    b, phone_b = rig.call()
    listened = []
    a.audio_received = lambda payload, codec: listened.append(payload)
    b.echo(True)
    bridge = Bridge(a, b)
    assert b.echoing is False
    rig.say(phone_a, tone(440, 200))
    rig.run(20)
    assert listened == []
    bridge.stop()
    bridge.stop()
    assert bridge.ended.called and not bridge.active
    assert b.echoing is True
    received_by_b = len(phone_b.received)
    rig.say(phone_a, tone(440, 200))
    rig.say(phone_b, [b"\x11" * 160] * 10)
    rig.run(20)
    # a's listener is back; b's far end gets its own audio echoed (with
    # the silence played out where it sent nothing), not a's.
    assert len(listened) >= 10
    assert {payload for _, _, payload in phone_b.received[received_by_b:]} == {b"\x11" * 160, silence(1)[0]}


def test_a_session_closing_stops_the_bridge(rig):
    a, phone_a = rig.call()
    b, phone_b = rig.call()
    listened = []
    b.audio_received = lambda payload, codec: listened.append(payload)
    bridge = Bridge(a, b)
    rig.say(phone_a, tone(440, 1000))
    rig.say(phone_b, silence(50))
    rig.run(10)
    a.close()
    assert not bridge.active and bridge.ended.called
    before = len(phone_b.received)
    rig.run(10)
    assert len(phone_b.received) == before
    assert len(listened) >= 9
    bridge.stop()


def test_bridging_a_closed_session_makes_a_stopped_bridge(rig):
    a, _ = rig.call()
    b, phone_b = rig.call()
    previous = b.audio_received = lambda payload, codec: None
    a.close()
    bridge = Bridge(a, b)
    assert not bridge.active and bridge.ended.called
    assert b.audio_received is previous
    bridge.stop()
    with pytest.raises(ValueError):
        Bridge(b, b)


def test_a_later_owner_of_the_slot_keeps_it(rig):
    a, _ = rig.call()
    b, _ = rig.call()
    bridge = Bridge(a, b)
    later = a.audio_received = lambda payload, codec: None
    bridge.stop()
    assert a.audio_received is later
    assert b.audio_received is None


def test_feeding_without_a_consumer_is_bounded(rig):
    a, phone_a = rig.call()
    for n in range(1000):
        a.feed(bytes((n % 256,)) * 160)
    rig.run(5)
    # Only the newest frames were kept, and each tick sent one.
    assert [payload[0] for _, _, payload in phone_a.received] == [998 % 256, 999 % 256]
