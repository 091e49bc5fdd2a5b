"""The jitter buffer: reordering, loss, late packets, wrap-around, resync."""

import pytest

from callcenter.media.jitter import JitterBuffer


def frame(sequence):
    return b"%d" % sequence


def drain(buffer, ticks):
    return [buffer.pop() for _ in range(ticks)]


def test_nothing_before_the_first_packet():
    buffer = JitterBuffer()
    assert drain(buffer, 5) == [None] * 5


def test_holds_back_depth_frames_then_plays_in_order():
    buffer = JitterBuffer(depth=3)
    played = []
    for sequence in range(100, 110):
        buffer.push(sequence, frame(sequence))
        played.append(buffer.pop())
    played += drain(buffer, 3)
    # Two pops wait while the buffer fills to three frames.
    assert played[:2] == [None, None]
    assert played[2:12] == [frame(s) for s in range(100, 110)]


def test_reorders_within_the_depth():
    buffer = JitterBuffer(depth=3)
    for sequence in (11, 10, 13, 12, 14):
        buffer.push(sequence, frame(sequence))
    assert drain(buffer, 5) == [frame(s) for s in range(10, 15)]


def test_earlier_packet_arriving_during_priming_starts_the_stream():
    buffer = JitterBuffer(depth=3)
    buffer.push(21, frame(21))
    buffer.push(20, frame(20))
    buffer.push(22, frame(22))
    assert drain(buffer, 3) == [frame(20), frame(21), frame(22)]
    assert buffer.late == 0


def test_missing_packet_gives_none_and_is_counted():
    buffer = JitterBuffer(depth=3)
    for sequence in (1, 2, 4, 5):
        buffer.push(sequence, frame(sequence))
    assert drain(buffer, 5) == [frame(1), frame(2), None, frame(4), frame(5)]
    assert buffer.missing == 1


def test_late_packet_is_dropped():
    buffer = JitterBuffer(depth=2)
    for sequence in (1, 2, 4):
        buffer.push(sequence, frame(sequence))
    assert drain(buffer, 3) == [frame(1), frame(2), None]
    assert buffer.push(3, frame(3)) is False
    assert buffer.late == 1
    assert drain(buffer, 1) == [frame(4)]


def test_duplicate_is_dropped():
    buffer = JitterBuffer(depth=2)
    buffer.push(1, frame(1))
    assert buffer.push(1, b"again") is False
    buffer.push(2, frame(2))
    assert drain(buffer, 2) == [frame(1), frame(2)]
    assert buffer.duplicates == 1


def test_sequence_wraps():
    buffer = JitterBuffer(depth=3)
    for sequence in (65534, 0, 65535, 1, 2):
        buffer.push(sequence, frame(sequence))
    assert drain(buffer, 5) == [frame(s) for s in (65534, 65535, 0, 1, 2)]
    assert buffer.late == buffer.missing == 0


def test_burst_beyond_capacity_drops_oldest():
    buffer = JitterBuffer(depth=2, capacity=4)
    for sequence in range(10, 20):
        buffer.push(sequence, frame(sequence))
    assert len(buffer) == 4
    assert buffer.overflowed == 6
    assert drain(buffer, 4) == [frame(s) for s in range(16, 20)]


def test_large_jump_resyncs():
    buffer = JitterBuffer(depth=2)
    for sequence in (1, 2, 3):
        buffer.push(sequence, frame(sequence))
    assert drain(buffer, 1) == [frame(1)]
    # A new stream (restart or new SSRC without one) far away.
    for sequence in (30000, 30001):
        buffer.push(sequence, frame(sequence))
    assert buffer.resyncs == 1
    assert drain(buffer, 2) == [frame(30000), frame(30001)]
    # And far behind is a restart too, not a late packet.
    for sequence in (5000, 5001):
        buffer.push(sequence, frame(sequence))
    assert buffer.resyncs == 2
    assert drain(buffer, 2) == [frame(5000), frame(5001)]


def test_pause_between_talkspurts_is_not_loss():
    buffer = JitterBuffer(depth=2)
    for sequence in (1, 2, 3):
        buffer.push(sequence, frame(sequence))
    assert drain(buffer, 3) == [frame(1), frame(2), frame(3)]
    # A second of silence suppression: the buffer runs dry.
    assert drain(buffer, 50) == [None] * 50
    # The next talkspurt continues the sequence numbers (RFC 3550 §5.1).
    for sequence in (4, 5):
        buffer.push(sequence, frame(sequence))
    assert drain(buffer, 2) == [frame(4), frame(5)]
    assert buffer.missing == 0 and buffer.late == 0


def test_lone_packet_plays_after_the_depth():
    buffer = JitterBuffer(depth=3)
    buffer.push(7, frame(7))
    played = drain(buffer, 5)
    assert played.count(frame(7)) == 1
    assert played.index(frame(7)) <= 3


def test_reset_forgets_everything():
    buffer = JitterBuffer(depth=1)
    buffer.push(1, frame(1))
    buffer.reset()
    assert len(buffer) == 0
    buffer.push(500, frame(500))
    assert drain(buffer, 1) == [frame(500)]


def test_bad_depths():
    with pytest.raises(ValueError):
        JitterBuffer(depth=0)
    with pytest.raises(ValueError):
        JitterBuffer(depth=3, capacity=2)


def test_a_jump_beyond_the_resync_distance_resyncs_even_within_a_larger_capacity():
    buffer = JitterBuffer(depth=3, capacity=150)
    for sequence in range(10, 13):
        buffer.push(sequence, frame(sequence))
    buffer.push(130, frame(130))
    assert buffer.resyncs == 1
    assert drain(buffer, 4) == [None, None, None, frame(130)]


def test_out_of_order_after_an_in_order_run():
    buffer = JitterBuffer(depth=3)
    played = []
    for sequence in (*range(65530, 65536), 1, 0, 2, 3):
        buffer.push(sequence, frame(sequence))
        played.append(buffer.pop())
    played += drain(buffer, 3)
    assert [p for p in played if p is not None] == [frame(s & 0xFFFF) for s in range(65530, 65540)]
    assert (buffer.late, buffer.missing, buffer.duplicates) == (0, 0, 0)
