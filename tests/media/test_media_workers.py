"""
Media worker processes (callcenter.media.remote and .worker): real
worker processes on the real reactor, their RTP crossing real sockets on
127.0.0.1 to a far end of ours.  Every wait is on an event (a packet, a
report from the worker, a process ending), bounded by a deadline.
"""

import os
import random
import signal
import socket
from types import SimpleNamespace

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock

from callcenter.media import commands, rtp
from callcenter.media.dtmf import EventSender
from callcenter.media.engine import MediaEngine, MediaPortsExhausted
from callcenter.media.remote import MediaWorkers
from callcenter.media.remote_session import NotInWorker, RemoteSession
from callcenter.media.worker import _Player
from callcenter.sip.sdp import AudioFormat
from callcenter.timing import answer_within

from loopback import silence, tone

PCMU = AudioFormat(0, "PCMU", 101)
DEADLINE = 20


def ports(pairs=50):
    """A random even base with C{pairs} RTP/RTCP pairs above it (away from the benches' 30000-32767)."""
    base = random.randrange(40000, 60000, 2)
    return base, base + 2 * pairs - 1


def within(d, what):
    """C{d}'s result, failing the test if it takes longer than DEADLINE s."""
    timeout = object()

    def check(result):
        if result is timeout:
            pytest.fail(f"no {what} within {DEADLINE} s")
        return result

    return answer_within(reactor, DEADLINE, d, timeout).addCallback(check)


class Phone(DatagramProtocol):
    """A far end: RTP received, by payload type; RTP sent to the session."""

    def __init__(self):
        self.packets = []
        self._waiting = []
        self._sequence = 1000
        self._timestamp = 5000

    def start(self):
        self.port = reactor.listenUDP(0, self, interface="127.0.0.1")
        self.number = self.port.getHost().port
        return self

    def datagramReceived(self, data, address):
        try:
            self.packets.append(rtp.parse(data))
        except rtp.RTPError:
            return  # RTCP
        for condition, d in list(self._waiting):
            if condition(self.packets):
                self._waiting.remove((condition, d))
                d.callback(self.packets)

    def until(self, condition, what):
        d = defer.Deferred()
        if condition(self.packets):
            d.callback(self.packets)
        else:
            self._waiting.append((condition, d))
        return within(d, what)

    def send(self, session, payload, payload_type=0, marker=False, timestamp=None):
        header = rtp.build_header(marker, payload_type, self._sequence, self._timestamp if timestamp is None else timestamp, 77)
        self._sequence += 1
        self._timestamp += 160
        self.transport.write(header + payload, ("127.0.0.1", session.local_port))


@pytest.fixture
def workers():
    engine = MediaEngine(reactor, reactor, port_range=ports())
    pool = MediaWorkers(reactor, reactor, engine, 2)
    engine.start()
    pool.start()
    pytest_twisted.blockon(within(pool.when_ready(), "the workers"))
    yield pool
    pytest_twisted.blockon(within(defer.gatherResults([pool.stop(), engine.stop()]), "stop"))


@pytest.fixture
def phone():
    far = Phone().start()
    yield far
    far.port.stopListening()


def test_a_play_reported_early_says_how_many_frames_it_still_sends():
    """Reported with three frames to go, counting the one going out now (worker side, no process)."""

    class Session:
        def play(self, frames):
            self.frames = frames
            return defer.Deferred()

    session, reports = Session(), []
    player = _Player(session, lambda *report: reports.append(report))
    player.play(1, [b"\xff" * 160] * 10)
    for _ in range(7):
        next(session.frames)
    assert reports == []
    next(session.frames)
    assert reports == [(1, True, 3)]


def test_a_session_knows_how_long_its_last_prompt_still_sounds():
    """Server side, on a clock: the report's frames left, at 20 ms each, until another play starts."""
    clock = Clock()
    worker = SimpleNamespace(
        workers=SimpleNamespace(clock=clock, engine=SimpleNamespace(tick=0.020), prompt_key=lambda frames: "prompt"),
        play=lambda *args: None, tell=lambda *args, **kwargs: None,
    )
    session = RemoteSession(worker, 1, 30000)
    assert session.tail() == 0
    played = session.play([b"\xff" * 160] * 10)
    session._play_finished(1, True, 3)
    assert played.result is True
    assert session.tail() == pytest.approx(0.06)
    clock.advance(0.02)
    assert session.tail() == pytest.approx(0.04)
    session.play([b"\xff" * 160] * 10)
    assert session.tail() == 0
    session._play_finished(2, False, 0)
    clock.advance(0.1)
    assert session.tail() == 0


def test_frames_are_packed_in_chunks_an_amp_value_holds():
    frames = [bytes([n % 256]) * 160 for n in range(1000)]
    chunks = commands.pack_frames(frames)
    assert len(chunks) > 1 and all(len(chunk) <= commands.CHUNK_BYTES for chunk in chunks)
    assert [frame for chunk in chunks for frame in commands.unpack_frames(chunk)] == frames


@pytest_twisted.inlineCallbacks
def test_a_prompt_plays_from_a_worker_and_the_play_fires_as_it_ends(workers, phone):
    session = workers.open_session()
    assert isinstance(session, RemoteSession)
    first, last = workers.engine.port_range
    assert first <= session.local_port < last and session.local_port % 2 == 0
    session.set_remote("127.0.0.1", phone.number, PCMU)
    frames = tone(1000, 200)
    played = yield within(session.play(frames), "end of the play")
    assert played is True
    yield phone.until(lambda packets: len(packets) >= len(frames), "prompt packets")
    assert [packet.payload for packet in phone.packets[: len(frames)]] == frames
    # The same prompt again is named by its key: the worker has it.
    assert (yield within(session.play(frames), "second play")) is True
    # (Reported a few frames before its end: the far end has them after.)
    yield phone.until(lambda packets: len(packets) >= 2 * len(frames), "the second play's packets")
    yield within(session.close(), "close")
    assert session.stats["packets_sent"] == 2 * len(frames)


@pytest_twisted.inlineCallbacks
def test_stopping_a_play_fires_false_at_once_and_the_worker_stops_sending(workers, phone):
    session = workers.open_session()
    session.set_remote("127.0.0.1", phone.number, PCMU)
    playing = session.play(tone(1000, 10000))
    yield phone.until(lambda packets: len(packets) >= 3, "the start of the prompt")
    session.stop_playing()
    assert playing.called and playing.result is False
    yield within(session.close(), "close")
    assert session.stats["packets_sent"] < 400


@pytest_twisted.inlineCallbacks
def test_echo_sends_back_what_the_far_end_says(workers, phone):
    session = workers.open_session()
    session.set_remote("127.0.0.1", phone.number, PCMU)
    session.echo()
    frames = tone(700, 100)
    # A burst: the jitter buffer keeps what fits and plays it out a tick each.
    for frame in frames:
        phone.send(session, frame)
    yield phone.until(lambda packets: any(packet.payload in frames for packet in packets), "the echo")
    yield within(session.close(), "close")


@pytest_twisted.inlineCallbacks
def test_rfc4733_key_presses_come_back_as_events(workers, phone):
    session = workers.open_session()
    session.set_remote("127.0.0.1", phone.number, PCMU)
    pressed = defer.Deferred()
    session.dtmf_received = pressed.callback
    timestamp = 8000
    for marker, (_, payload) in enumerate(EventSender("5", 100).payloads()):
        phone.send(session, payload, payload_type=101, marker=marker == 0, timestamp=timestamp)
    assert (yield within(pressed, "the key press")) == "5"
    yield within(session.close(), "close")


@pytest_twisted.inlineCallbacks
def test_send_dtmf_answers_once_the_press_is_sent(workers, phone):
    session = workers.open_session()
    session.set_remote("127.0.0.1", phone.number, PCMU)
    assert (yield within(session.send_dtmf("7"), "the key press sent")) is True
    yield phone.until(lambda packets: any(packet.payload_type == 101 for packet in packets), "telephone-event")
    yield within(session.close(), "close")


@pytest_twisted.inlineCallbacks
def test_hold_and_resume_and_a_silent_far_end_is_reported_inactive(phone):
    engine = MediaEngine(reactor, reactor, port_range=ports(), inactivity_timeout=0.3)
    pool = MediaWorkers(reactor, reactor, engine, 1)
    pool.start()
    yield within(pool.when_ready(), "the worker")
    try:
        session = pool.open_session()
        gone_quiet = defer.Deferred()
        session.inactive = lambda: gone_quiet.callback(True)
        session.set_remote("127.0.0.1", phone.number, PCMU)
        session.hold(True)
        assert session.on_hold
        # On hold nothing is sent (a prompt waits), and nothing is watched.
        playing = session.play(silence(10))
        session.hold(False)
        assert (yield within(playing, "the play once resumed")) is True
        yield phone.until(lambda packets: len(packets) >= 10, "the prompt")
        assert (yield within(gone_quiet, "inactivity")) is True
        yield within(session.close(), "close")
    finally:
        yield within(pool.stop(), "stop")


@pytest_twisted.inlineCallbacks
def test_new_calls_go_to_the_least_loaded_worker(workers):
    sessions = [workers.open_session() for _ in range(5)]
    assert sorted(len(worker) for worker in workers.workers) == [2, 3]
    yield within(sessions[0].close(), "close")
    yield within(sessions[2].close(), "close")
    assert sorted(len(worker) for worker in workers.workers) == [1, 2]
    nxt = workers.open_session()
    assert sorted(len(worker) for worker in workers.workers) == [2, 2]
    assert len({session.local_port for session in sessions + [nxt]}) == 6
    health = workers.stats
    assert health["sessions"] == 4 and len(health["workers"]) == 2
    for session in sessions + [nxt]:
        yield within(session.close(), "close")


@pytest_twisted.inlineCallbacks
def test_worker_stats_are_summed_with_the_servers_engine(workers):
    reported = [defer.Deferred() for _ in workers.workers]

    class Watched(type(workers.workers[0])):
        @property
        def engine_stats(self):
            return self.__dict__.get("_reported", {})

        @engine_stats.setter
        def engine_stats(self, value):
            self.__dict__["_reported"] = value
            if value and not reported[self.index].called:
                reported[self.index].callback(None)

    for worker in workers.workers:
        worker.__class__ = Watched
    yield within(defer.gatherResults(reported), "the workers' counters")
    stats = workers.stats
    assert stats["ticks"] >= sum(w.engine_stats["ticks"] for w in workers.workers) > 0
    assert [sorted(w) for w in stats["workers"]] == [
        ["index", "late_ticks", "pid", "sessions", "skipped_ticks", "ticks", "up"]
    ] * 2


def test_what_runs_on_one_engines_tick_is_refused_clearly(workers):
    session = workers.open_session()
    with pytest.raises(NotInWorker):
        session.add_close_hook(lambda s: None)
    with pytest.raises(NotInWorker):
        session.feed(b"\xff" * 160)
    with pytest.raises(NotInWorker):
        session.tap = lambda *a: None
    session.close()


@pytest_twisted.inlineCallbacks
def test_a_worker_that_dies_loses_its_calls_is_restarted_and_new_calls_go_to_the_live_ones(workers, phone):
    sessions = [workers.open_session() for _ in range(4)]
    victim = sessions[0].worker
    theirs = [session for session in sessions if session.worker is victim]
    lost = [defer.Deferred() for _ in theirs]
    for session, d in zip(theirs, lost):
        session.lost = d.callback
    playing = theirs[0].play(tone(1000, 10000))
    restarted = defer.Deferred()
    spawn = victim.spawn

    def spawned(*args):
        spawn(*args)
        restarted.callback(victim.pid)

    victim.spawn = spawned
    old_pid = victim.pid
    os.kill(old_pid, signal.SIGKILL)
    reasons = yield within(defer.gatherResults(lost), "the lost calls")
    assert reasons == [f"media worker {victim.index} died"] * len(theirs)
    assert playing.called and playing.result is False
    assert all(session.closed for session in theirs)
    assert not victim.alive and len(victim) == 0
    # Meanwhile new calls go to the live worker.
    other = workers.open_session()
    assert other.worker is not victim and other.worker.alive
    new_pid = yield within(restarted, "the restart")
    assert new_pid != old_pid and victim.alive
    yield within(workers.when_ready(), "the restarted worker")
    # ... and the restarted worker carries calls again.
    session = workers.open_session()
    assert session.worker is victim
    session.set_remote("127.0.0.1", phone.number, PCMU)
    assert (yield within(session.play(tone(1000, 100)), "a play in the restarted worker")) is True
    for s in sessions + [other, session]:
        yield within(s.close(), "close")


@pytest_twisted.inlineCallbacks
def test_stop_closes_the_sessions_and_the_workers_exit():
    engine = MediaEngine(reactor, reactor, port_range=ports())
    pool = MediaWorkers(reactor, reactor, engine, 2)
    pool.start()
    yield within(pool.when_ready(), "the workers")
    session = pool.open_session()
    pids = [worker.pid for worker in pool.workers]
    yield within(pool.stop(), "stop")
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    # The ports are free again.
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", session.local_port))
    probe.close()


@pytest_twisted.inlineCallbacks
def test_workers_take_the_priority_they_are_given_when_allowed():
    """[telephony] media_worker_nice: as root (make test runs as root), the workers run at it; else at 0."""
    engine = MediaEngine(reactor, reactor, port_range=ports())
    pool = MediaWorkers(reactor, reactor, engine, 1, nice=-3)
    engine.start()
    pool.start()
    try:
        yield within(pool.when_ready(), "the worker")
        [worker] = pool.workers
        expected = -3 if os.geteuid() == 0 else 0
        assert os.getpriority(os.PRIO_PROCESS, worker.pid) == expected
    finally:
        yield within(defer.gatherResults([pool.stop(), engine.stop()]), "stop")


@pytest_twisted.inlineCallbacks
def test_ports_run_out_as_with_the_engine():
    engine = MediaEngine(reactor, reactor, port_range=ports(2))
    pool = MediaWorkers(reactor, reactor, engine, 1)
    pool.start()
    yield within(pool.when_ready(), "the worker")
    try:
        sessions = [pool.open_session(), pool.open_session()]
        with pytest.raises(MediaPortsExhausted):
            pool.open_session()
        yield within(sessions[0].close(), "close")
    finally:
        yield within(pool.stop(), "stop")


@pytest_twisted.inlineCallbacks
def test_a_bridge_runs_in_the_worker_of_both_legs(workers):
    caller, callee = Phone().start(), Phone().start()
    try:
        a = workers.open_session()
        b = workers.open_session_beside(a)
        assert b.worker is a.worker
        a.set_remote("127.0.0.1", caller.number, PCMU)
        b.set_remote("127.0.0.1", callee.number, PCMU)
        bridge = workers.bridge(a, b)
        assert bridge.active
        frames = tone(700, 100)
        # The caller speaks (a burst the jitter buffer plays out); the callee hears it.
        for frame in frames:
            caller.send(a, frame)
        yield callee.until(lambda packets: any(packet.payload in frames for packet in packets), "the caller's voice")
        bridge.stop()
        assert not bridge.active
        # Key presses cross as events, as the B2BUA relays them.
        assert (yield within(b.send_dtmf("4"), "the relayed key")) is True
        yield within(defer.gatherResults([a.close(), b.close()]), "close")
    finally:
        caller.port.stopListening()
        callee.port.stopListening()


def test_sessions_in_different_processes_are_not_bridged(workers):
    a = workers.open_session()
    b = workers.open_session()
    local = workers.engine.open_session()
    assert a.worker is not b.worker
    with pytest.raises(NotInWorker):
        workers.bridge(a, b)
    with pytest.raises(NotInWorker):
        workers.bridge(a, local)
    for session in (a, b, local):
        session.close()


@pytest_twisted.inlineCallbacks
def test_a_conference_room_mixes_in_the_worker_of_its_callers(workers):
    phones = [Phone().start() for _ in range(3)]
    try:
        placed = workers.placed(("conference", "9300"))
        sessions = [placed.open_session() for _ in phones]
        # Whatever the load, a room's callers are together.
        assert len({session.worker for session in sessions}) == 1
        for session, phone in zip(sessions, phones):
            session.set_remote("127.0.0.1", phone.number, PCMU)
        room = workers.room(sessions[0], end_with_moderator=True)
        members = [room.join(session, moderator=index == 0) for index, session in enumerate(sessions)]
        assert len(room.members) == 3
        frames = tone(700, 100)
        for frame in frames:
            phones[0].send(sessions[0], frame)
        # The one speaker is relayed to the two others as it came.
        for phone in phones[1:]:
            yield phone.until(lambda packets: any(packet.payload in frames for packet in packets), "the speaker")
        members[1].muted = True
        assert members[1].muted
        # The moderator leaving ends an end_with_moderator room, as in the server.
        assert room.leave(sessions[0])
        assert room.ended.called and room.members == []
        yield within(defer.gatherResults([session.close() for session in sessions]), "close")
        # With its callers gone, the room's number is placed afresh.
        assert ("conference", "9300") not in workers._affinity
    finally:
        for phone in phones:
            phone.port.stopListening()


@pytest_twisted.inlineCallbacks
def test_a_recording_is_written_by_the_worker(workers, phone, tmp_path):
    from callcenter.media.recording import RecordingError
    from callcenter.media.wavfile import load_prompt

    session = workers.open_session()
    session.set_remote("127.0.0.1", phone.number, PCMU)
    with pytest.raises(RecordingError):
        session.record(rx=str(tmp_path / "no" / "such" / "dir.wav"))
    recording = session.record(rx=str(tmp_path / "rx.wav"), tx=str(tmp_path / "tx.wav"))
    with pytest.raises(RecordingError):
        session.record(rx=str(tmp_path / "again.wav"))
    # What we send goes in tx, once it is sent.
    frames = tone(1000, 200)
    assert (yield within(session.play(frames), "the prompt")) is True
    yield phone.until(lambda packets: len(packets) >= len(frames), "the prompt's packets")
    stopped = yield within(recording.stop(), "the recording's end")
    assert stopped is recording and recording.frames >= len(frames)
    sent = load_prompt(str(tmp_path / "tx.wav"), "PCMU")
    assert len(sent) == recording.frames and set(frames) <= set(sent)
    # Stopping again gives the same.
    assert (yield within(recording.stop(), "the recording again")) is recording
    yield within(session.close(), "close")


@pytest_twisted.inlineCallbacks
def test_prompts_played_one_after_another_go_out_without_a_gap(workers, phone):
    """
    A play is reported a few frames early and the next is queued behind
    them, so the round trip to the server costs no tick of silence.
    """
    session = workers.open_session()
    session.set_remote("127.0.0.1", phone.number, PCMU)
    first, second = tone(1000, 600), tone(500, 600)
    assert (yield within(session.play(first), "the first prompt")) is True
    assert (yield within(session.play(second), "the second prompt")) is True
    packets = yield phone.until(lambda packets: len(packets) >= len(first) + len(second), "both prompts")
    assert [packet.payload for packet in packets] == first + second
    steps = {(b.timestamp - a.timestamp, (b.sequence - a.sequence) & 0xFFFF) for a, b in zip(packets, packets[1:])}
    assert steps == {(160, 1)}
    assert [packet.marker for packet in packets].count(True) == 1
    yield within(session.close(), "close")
