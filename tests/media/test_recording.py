"""
Call recordings: far ends on real sockets (127.0.0.1), the tick on a
Clock, and the WAV files read back.
"""

import os

import pytest
import pytest_twisted
from twisted.python.failure import Failure

from callcenter.media.bridge import Bridge
from callcenter.media.recording import CallRecording, RecordingError
from callcenter.media.wavfile import load_prompt
from loopback import PCMA, PCMU, Rig, level_at, quiet, samples_of, tone

FRAMES_PER_SECOND = 50
JITTER_TICKS = 3
HEARD = 1500


class HeldThreads:
    """
    A thread pool whose work waits until L{run}, and the reactor it
    reports back through: what happens before and after the files close
    is then in the test's hands.
    """

    def __init__(self):
        self.work = []

    def callInThreadWithCallback(self, on_result, function, *args, **kwargs):
        self.work.append((on_result, function, args, kwargs))

    def callFromThread(self, function, *args, **kwargs):
        function(*args, **kwargs)

    def run(self):
        work, self.work = self.work, []
        for on_result, function, args, kwargs in work:
            try:
                result = function(*args, **kwargs)
            except Exception:
                on_result(False, Failure())
            else:
                on_result(True, result)


@pytest.fixture
def rig():
    rig = Rig()
    yield rig
    rig.close()


@pytest.fixture
def threads():
    return HeldThreads()


def record(session, threads, tmp_path, **paths):
    paths = {name: str(tmp_path / f"{name}.wav") for name in paths or ("rx", "tx", "mixed")}
    return CallRecording(session, reactor=threads, threadpool=threads, **paths)


def frames(path, encoding="PCMU"):
    return load_prompt(path, encoding)


def first_frame_with(frames, frequency, encoding="PCMU"):
    return next(n for n, frame in enumerate(frames) if level_at(samples_of([frame], encoding), frequency) > HEARD)


def frames_with(frames, frequency, encoding="PCMU"):
    return [n for n, frame in enumerate(frames) if level_at(samples_of([frame], encoding), frequency) > HEARD]


def stopped(recording, threads):
    results = []
    recording.stop().addBoth(results.append)
    threads.run()
    return results


def test_rx_holds_what_the_far_end_sent_for_as_long_as_it_sent_it(rig, threads, tmp_path):
    session, phone = rig.call()
    recording = record(session, threads, tmp_path, rx=True)
    rig.say(phone, quiet(25) + tone(440, 1000) + quiet(25))
    rig.run(100)
    assert stopped(recording, threads) == [recording]
    rx = frames(recording.paths["rx"])
    assert len(rx) == 100 == recording.frames
    assert recording.seconds == pytest.approx(2.0)
    with_tone = frames_with(rx, 440)
    assert len(with_tone) == FRAMES_PER_SECOND
    assert with_tone == list(range(with_tone[0], with_tone[0] + FRAMES_PER_SECOND))
    # Heard as it is played out, after the jitter buffer.
    assert 25 <= with_tone[0] <= 25 + JITTER_TICKS + 1


def test_stop_can_leave_out_the_last_moments(rig, threads, tmp_path):
    session, phone = rig.call()
    recording = record(session, threads, tmp_path, rx=True, mixed=True)
    rig.say(phone, tone(440, 1000) + tone(941, 200))  # a sentence, then the # key's tone
    rig.run(60 + JITTER_TICKS)
    results = []
    recording.stop(trim_seconds=0.25).addBoth(results.append)
    threads.run()
    assert results == [recording]
    for name in ("rx", "mixed"):
        kept = frames(recording.paths[name])
        # 250 ms is 12.5 frames; a half frame at the end is read padded to a whole one.
        assert len(kept) == recording.frames - 12
        assert frames_with(kept, 941) == []
        assert len(frames_with(kept, 440)) >= FRAMES_PER_SECOND - JITTER_TICKS


def test_mixed_has_both_directions_aligned_in_time(rig, threads, tmp_path):
    session, phone = rig.call(PCMA)
    recording = record(session, threads, tmp_path)
    rig.say(phone, quiet(25) + tone(440, 1500, PCMA))
    rig.run(50)
    session.play(tone(1000, 1000, PCMA))
    rig.run(70)
    assert stopped(recording, threads) == [recording]
    rx, tx, mixed = (frames(recording.paths[name], "PCMA") for name in ("rx", "tx", "mixed"))
    assert len(rx) == len(tx) == len(mixed) == 120
    # What we sent starts at 1 s; what we heard, at 0.5 s and the playout delay.
    assert first_frame_with(tx, 1000, "PCMA") == 50
    assert first_frame_with(mixed, 1000, "PCMA") == 50
    heard_at = first_frame_with(rx, 440, "PCMA")
    assert 25 <= heard_at <= 25 + JITTER_TICKS + 1
    assert first_frame_with(mixed, 440, "PCMA") == heard_at
    # Where both spoke, the mixed file has both; tx never has what was heard.
    both = samples_of(mixed[60:90], "PCMA")
    assert level_at(both, 440) > HEARD and level_at(both, 1000) > HEARD
    assert level_at(samples_of(tx, "PCMA"), 440) < 50


def test_one_leg_of_a_bridge_records_the_whole_conversation(rig, threads, tmp_path):
    a, phone_a = rig.call(PCMU)
    b, phone_b = rig.call(PCMA)
    Bridge(a, b)
    recording = record(a, threads, tmp_path)
    rig.say(phone_a, tone(440, 1000))
    rig.say(phone_b, quiet(50) + tone(1000, 1000, PCMA))
    rig.run(110)
    stopped(recording, threads)
    rx, tx, mixed = (frames(recording.paths[name]) for name in ("rx", "tx", "mixed"))
    assert level_at(samples_of(rx, "PCMU"), 440) > HEARD / 2
    assert first_frame_with(tx, 1000) in range(50, 50 + JITTER_TICKS + 2)
    assert frames_with(mixed, 440)[0] < 10 and frames_with(mixed, 1000)[-1] > 95


def test_stop_fires_only_once_the_files_are_closed_and_synced(rig, threads, tmp_path):
    session, phone = rig.call()
    recording = record(session, threads, tmp_path)
    rig.say(phone, tone(440, 200))
    rig.run(20)
    results = []
    recording.stop().addBoth(results.append)
    rig.run(5)
    # Stopped: nothing more is written, but the files are not closed yet
    # (their headers, written at the close, still say they are empty).
    assert results == []
    assert recording.frames == 20
    assert all(frames(path) == [] for path in recording.paths.values())
    threads.run()
    assert results == [recording]
    assert all(len(frames(path)) == 20 for path in recording.paths.values())
    # Stopping again reports the same.
    assert stopped(recording, threads) == [recording]


@pytest_twisted.inlineCallbacks
def test_the_sync_runs_in_the_reactors_thread_pool(rig, tmp_path):
    session, phone = rig.call()
    recording = CallRecording(session, mixed=str(tmp_path / "call.wav"))
    rig.say(phone, tone(440, 200))
    rig.run(10)
    assert (yield recording.stop()) is recording
    assert len(frames(recording.paths["mixed"])) == 10


def test_a_session_closing_closes_the_files(rig, threads, tmp_path):
    session, phone = rig.call()
    recording = record(session, threads, tmp_path, rx=True, tx=True)
    rig.say(phone, tone(440, 200))
    rig.run(10)
    session.close()
    assert not recording.recording
    threads.run()
    assert stopped(recording, threads) == [recording]
    assert [len(frames(path)) for path in recording.paths.values()] == [10, 10]


def test_an_unwritable_path_is_a_clear_error_and_the_call_goes_on(rig, threads, tmp_path):
    session, phone = rig.call()
    missing = str(tmp_path / "no such directory" / "call.wav")
    with pytest.raises(RecordingError, match="no such directory.*No such file"):
        CallRecording(session, rx=str(tmp_path / "rx.wav"), mixed=missing, reactor=threads, threadpool=threads)
    # The file opened before the failing one is not left behind.
    assert os.listdir(tmp_path) == []
    with pytest.raises(RecordingError, match="/dev/full"):
        CallRecording(session, rx="/dev/full", reactor=threads, threadpool=threads)
    played = []
    session.play(tone(1000, 100)).addCallback(played.append)
    rig.run(10)
    assert played == [True]
    assert len(phone.audio()) == 5
    # The session is free for a recording that can be written.
    record(session, threads, tmp_path, rx=True)


def test_one_recording_at_a_time_and_not_of_a_closed_session(rig, threads, tmp_path):
    session, _ = rig.call()
    (tmp_path / "first").mkdir()
    record(session, threads, tmp_path / "first", rx=True)
    with pytest.raises(RecordingError, match="already being recorded"):
        record(session, threads, tmp_path, tx=True)
    session.close()
    with pytest.raises(RecordingError, match="closed"):
        record(session, threads, tmp_path, tx=True)
    with pytest.raises(ValueError):
        CallRecording(rig.call()[0])


def test_a_codec_change_mid_call_keeps_the_file_in_its_encoding(rig, threads, tmp_path):
    session, phone = rig.call(PCMU)
    recording = record(session, threads, tmp_path, tx=True)
    session.play(tone(440, 2000))
    rig.run(10)
    session.set_remote("127.0.0.1", phone.port, PCMA)
    session.play(tone(440, 200, PCMA))
    rig.run(10)
    stopped(recording, threads)
    tx = frames(recording.paths["tx"], "PCMU")
    assert level_at(samples_of(tx, "PCMU"), 440) > HEARD
