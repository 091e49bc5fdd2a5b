"""
Media in worker processes: one process of Python holds some 500 calls
with RTP both ways (docs/performance.md), so past that the media path
needs more cores.  L{MediaWorkers} runs N worker processes
(L{callcenter.media.worker}), each a L{MediaEngine} with its own clock,
and hands each new call to the least loaded one.

The server keeps opening sessions synchronously, as signalling needs: it
binds the call's RTP/RTCP socket pair itself, so the port is known at
once (and running out of ports is the same L{MediaPortsExhausted}), then
passes both descriptors to the worker over their UNIX socket and closes
its copies.  What the call layer gets is a L{RemoteSession}, with the
methods and attributes of a L{MediaSession} that a call uses: commands
go to the worker as AMP messages, key presses and inactivity come back
as events, C{stats} is the last snapshot the worker sent (every few
seconds, and at close).  Prompts are pre-encoded frame lists: each is
sent to a worker once, keyed by its content, and named by key after.

A bridge joins two sessions of one worker there: the B2BUA opens a
call's second leg beside its first (L{MediaWorkers.open_session_beside}).
A conference room mixes in the worker where its callers are: the calls
to a room's number are placed together (C{affinity}), and the server
keeps the room's membership (L{callcenter.media.remote_room}).  Not in
workers (yet): recordings, and with them IVR flows, whose calls the
telephony service keeps on its own engine; a session never moves from
one process to another.

A worker that dies takes its calls with it: each is told (C{lost}), and
hangs up; the worker is started again, and meanwhile new calls go to the
others, or to the server's own engine when none is left.
"""

import errno
import hashlib
import itertools
import json
import os
import socket
import sys
from collections import OrderedDict

from twisted.internet import defer, error
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.logger import Logger, LogLevel
from twisted.protocols import amp

from callcenter.media import commands
from callcenter.media.bridge import Bridge
from callcenter.media.engine import MediaPortsExhausted
from callcenter.media.remote_session import NotInWorker, RemoteBridge, RemoteSession

# Prompt bytes kept in each worker; the least recently played go first.
PROMPT_BUDGET = 64 * 1024 * 1024
# Distinct frame lists whose content key the server remembers.
KEY_CACHE = 512
# A play of an endless or lazy frame source is cut to this many frames (10 minutes).
MAX_PLAY_FRAMES = 30_000
# Seconds between a worker's death and its restart, doubling while it keeps dying at once.
RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
# A worker alive this long has started well: the delay goes back to the first.
STARTED_WELL_AFTER = 10.0
# Seconds a worker has to exit after Shutdown before it is killed.
STOP_GRACE = 5.0

_ENGINE_COUNTERS = ("ticks", "late_ticks", "skipped_ticks", "packets_sent", "packets_received", "send_errors", "packets_dropped")


class _Placement:
    def __init__(self, workers, affinity):
        self._workers = workers
        self._affinity = affinity

    def open_session(self):
        return self._workers.open_session(affinity=self._affinity)


class _WorkerConnection(amp.AMP):
    """The server's end of one worker's socket."""

    def __init__(self, worker):
        super().__init__()
        self._worker = worker

    def connectionLost(self, reason):
        super().connectionLost(reason)
        self._worker.connection_lost(reason)

    @commands.Ready.responder
    def ready(self):
        self._worker.became_ready()
        return {}

    @commands.DigitReceived.responder
    def digit_received(self, session, digit):
        remote = self._worker.sessions.get(session)
        if remote is not None:
            remote._digit(digit)
        return {}

    @commands.WentInactive.responder
    def went_inactive(self, session):
        remote = self._worker.sessions.get(session)
        if remote is not None:
            remote._went_inactive()
        return {}

    @commands.PlayFinished.responder
    def play_finished(self, session, play, result, frames_left=0):
        remote = self._worker.sessions.get(session)
        if remote is not None:
            remote._play_finished(play, result, frames_left)
        return {}

    @commands.EngineStats.responder
    def engine_stats(self, stats):
        self._worker.engine_stats = json.loads(stats)
        return {}

    @commands.SessionStats.responder
    def session_stats(self, stats):
        for number, values in json.loads(stats).items():
            remote = self._worker.sessions.get(int(number))
            if remote is not None:
                remote._stats = values
        return {}


class _WorkerProcess(ProcessProtocol):
    """A worker's stdout and stderr: its log lines, into ours."""

    def __init__(self, worker):
        self._worker = worker
        self._buffer = b""

    def errReceived(self, data):
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._worker.logged(line.decode("utf-8", "replace"))

    outReceived = errReceived

    def processEnded(self, reason):
        if self._buffer:
            self._worker.logged(self._buffer.decode("utf-8", "replace"))
            self._buffer = b""
        self._worker.process_ended(reason)


class MediaWorker:
    """One worker process, its connection, and the sessions it carries."""

    log = Logger()

    def __init__(self, workers, index):
        self.workers = workers
        self.index = index
        self.sessions = {}
        # Sessions given to it since it started.
        self.opened = 0
        self.engine_stats = {}
        self.pid = None
        # Alive from its start to its end; ready from its first word (it
        # takes a second to start, and new calls do not wait for it).
        self.alive = False
        self.ready = False
        self.started_at = None
        self._process = None
        self._connection = None
        self._prompts = OrderedDict()
        self._prompt_bytes = 0
        self.ended = None

    def __len__(self):
        return len(self.sessions)

    def spawn(self, reactor, arguments):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            ours.setblocking(False)
            theirs.setblocking(False)
            self.ended = defer.Deferred()
            self._process = reactor.spawnProcess(
                _WorkerProcess(self),
                sys.executable,
                [sys.executable, "-m", "callcenter.media.worker", json.dumps(arguments)],
                env=os.environ,
                childFDs={0: "w", 1: "r", 2: "r", 3: theirs.fileno()},
            )
        finally:
            theirs.close()
        try:
            factory = Factory.forProtocol(lambda: _WorkerConnection(self))
            transport = reactor.adoptStreamConnection(ours.fileno(), socket.AF_UNIX, factory)
        finally:
            ours.close()
        self._connection = transport.protocol
        self.pid = self._process.pid
        self.alive = True
        self.ready = False
        self.opened = 0
        self.started_at = self.workers.clock.seconds()
        self._prompts.clear()
        self._prompt_bytes = 0
        self.engine_stats = {}
        self.log.info("media worker {index} started (pid {pid})", index=self.index, pid=self.pid)

    def became_ready(self):
        self.ready = True
        self.log.info("media worker {index} (pid {pid}) ready", index=self.index, pid=self.pid)
        self.workers.worker_ready()

    def logged(self, line):
        name, _, text = line.partition(" ")
        try:
            level = LogLevel.levelWithName(name)
        except Exception:
            level, text = LogLevel.info, line
        if text:
            self.log.emit(level, "media worker {index}: {line}", index=self.index, line=text)

    # Commands.

    def tell(self, command, **arguments):
        if self.alive:
            self._connection.callRemote(command, **arguments)

    def ask(self, command, **arguments):
        if not self.alive:
            return defer.fail(error.ConnectionLost(f"media worker {self.index} is gone"))
        return self._connection.callRemote(command, **arguments)

    def open(self, number, port, family, rtp, rtcp):
        """
        A L{RemoteSession} on the bound sockets C{rtp} and C{rtcp}, which
        are passed to the worker and closed here once it has them (a
        descriptor must stay open until its message is written).
        """
        session = RemoteSession(self, number, port)
        self.sessions[number] = session
        self.opened += 1

        def handed_over(result):
            rtp.close()
            rtcp.close()

        self._connection.callRemote(
            commands.OpenSession, session=number, port=port, family=family, rtp=rtp.fileno(), rtcp=rtcp.fileno()
        ).addBoth(handed_over)
        return session

    def play(self, number, play, key):
        frames, size, chunks = self.workers.prompt(key)
        if key in self._prompts:
            self._prompts.move_to_end(key)
        else:
            for index, chunk in enumerate(chunks):
                self.tell(commands.AddPromptFrames, key=key, frames=chunk, last=index == len(chunks) - 1)
            self._prompts[key] = size
            self._prompt_bytes += size
            while self._prompt_bytes > PROMPT_BUDGET and len(self._prompts) > 1:
                old, old_size = self._prompts.popitem(last=False)
                self._prompt_bytes -= old_size
                self.tell(commands.ForgetPrompt, key=old)
        self.tell(commands.Play, session=number, play=play, key=key)

    def forget(self, session):
        if self.sessions.get(session.number) is session:
            del self.sessions[session.number]
            if session.affinity is not None:
                self.workers.session_ended(session)

    # Its end.

    def connection_lost(self, reason):
        if self.alive and self._process is not None:
            # The socket went while the process lives on: it is no use.
            try:
                self._process.signalProcess("KILL")
            except error.ProcessExitedAlready:
                pass
        self._gone(f"its connection was lost ({reason.getErrorMessage()})")

    def process_ended(self, reason):
        self._gone(f"it exited ({reason.getErrorMessage()})")
        if not self.workers.running:
            self.log.info("media worker {index} (pid {pid}) stopped", index=self.index, pid=self.pid)
        ended, self.ended = self.ended, None
        if ended is not None:
            ended.callback(None)
        self.workers.worker_ended(self)

    def _gone(self, why):
        if not self.alive:
            return
        self.alive = self.ready = False
        if self._connection is not None and self._connection.transport is not None:
            self._connection.transport.loseConnection()
        sessions = list(self.sessions.values())
        if self.workers.running:
            self.log.error(
                "media worker {index} (pid {pid}) is gone: {why}; hanging up its {count} calls",
                index=self.index, pid=self.pid, why=why, count=len(sessions),
            )
        for session in sessions:
            session._worker_lost(f"media worker {self.index} died")
        self.sessions.clear()

    def stop(self, clock):
        """Ask the worker to close its sessions and exit; fires once it has."""
        ended = self.ended if self.ended is not None else defer.succeed(None)
        if not self.alive:
            return ended
        connection = self._connection

        def answered(_):
            if connection.transport is not None:
                connection.transport.loseConnection()

        connection.callRemote(commands.Shutdown).addBoth(answered)

        def kill():
            if self._process is not None and self.ended is not None:
                self.log.warn("media worker {index} did not stop: killed", index=self.index)
                try:
                    self._process.signalProcess("KILL")
                except error.ProcessExitedAlready:
                    pass

        timer = clock.callLater(STOP_GRACE, kill)

        def done(result):
            if timer.active():
                timer.cancel()
            return result

        return ended.addBoth(done)


class MediaWorkers:
    """
    C{count} media worker processes beside the server's own C{engine}
    (the L{MediaEngine} that keeps the calls workers cannot carry); their
    sockets on C{engine}'s host and port range.
    """

    log = Logger()

    def __init__(self, reactor, clock, engine, count, nice=0):
        self.reactor = reactor
        self.clock = clock
        self.engine = engine
        self.nice = nice
        self.workers = [MediaWorker(self, index) for index in range(count)]
        self.running = False
        self._numbers = itertools.count(1)
        self._next_port = engine.port_range[0]
        self._keys = OrderedDict()
        self._frames = {}
        self._restart_delay = {}
        self._restarting = {}
        self._restarts = 0
        self._ended_counts = {}
        self._ready_waiters = []
        # affinity -> (its worker, its open sessions)
        self._affinity = {}
        self._fallback_logged = False
        self._family = socket.AF_INET6 if ":" in engine.host else socket.AF_INET

    def _arguments(self):
        engine = self.engine
        return {
            "host": engine.host,
            "port_range": list(engine.port_range),
            "tick": engine.tick,
            "inactivity_timeout": engine.inactivity_timeout,
            "jitter_depth": engine.jitter_depth,
            "inband_dtmf": engine.inband_dtmf,
            "nice": self.nice,
        }

    def start(self):
        self.running = True
        for worker in self.workers:
            self._spawn(worker)

    def _spawn(self, worker):
        if not self.running:
            return
        try:
            worker.spawn(self.reactor, dict(self._arguments(), phase=worker.index / len(self.workers)))
        except Exception:
            self.log.failure("cannot start media worker {index}", index=worker.index)
            self._restart_later(worker)

    def when_ready(self):
        """Fires once every worker is ready (at once if they are)."""
        d = defer.Deferred()
        self._ready_waiters.append(d)
        self.worker_ready()
        return d

    def worker_ready(self):
        if all(worker.ready for worker in self.workers):
            waiters, self._ready_waiters = self._ready_waiters, []
            for d in waiters:
                d.callback(None)

    def worker_ended(self, worker):
        # Its counters carry on in the totals.
        for name in _ENGINE_COUNTERS:
            self._ended_counts[name] = self._ended_counts.get(name, 0) + worker.engine_stats.get(name, 0)
        worker.engine_stats = {}
        if self.running:
            self._restarts += 1
            self._restart_later(worker)

    def _restart_later(self, worker):
        delay = self._restart_delay.get(worker.index, RESTART_DELAY)
        lived = self.clock.seconds() - worker.started_at if worker.started_at is not None else 0
        if lived >= STARTED_WELL_AFTER:
            delay = RESTART_DELAY
        self._restart_delay[worker.index] = min(delay * 2, MAX_RESTART_DELAY)
        self.log.info("restarting media worker {index} in {delay} s", index=worker.index, delay=delay)
        self._restarting[worker.index] = self.clock.callLater(delay, self._spawn, worker)

    def stop(self):
        """Stop every worker (their sessions closed); fires once all have exited."""
        self.running = False
        for restart in self._restarting.values():
            if restart.active():
                restart.cancel()
        self._restarting.clear()
        return defer.gatherResults([worker.stop(self.clock) for worker in self.workers]).addCallback(lambda _: None)

    # Placement.

    def new_number(self):
        """A number for something in a worker (a session, bridge, room, recording): never reused."""
        return next(self._numbers)

    def placed(self, affinity):
        """What opens sessions that belong together (a room's) in one worker: C{open_session()}."""
        return _Placement(self, affinity)

    def open_session(self, affinity=None):
        """
        A L{RemoteSession} in the least loaded live worker, its ports bound
        here; a session of the server's own engine when no worker is up.
        Sessions with the same C{affinity} (a conference room's number)
        go to the same worker while any of them is open.
        """
        if affinity is not None:
            placed = self._affinity.get(affinity)
            if placed is not None and placed[0].ready:
                session = self.open_session_beside(next(iter(placed[1])))
                placed[1].add(session)
                session.affinity = affinity
                return session
        live = [worker for worker in self.workers if worker.ready]
        if not live:
            if not self._fallback_logged:
                self._fallback_logged = True
                self.log.warn("no media worker is ready: new calls' media runs in the server process")
            return self.engine.open_session()
        self._fallback_logged = False
        # Equally loaded workers take turns.
        worker = min(live, key=lambda worker: (len(worker), worker.opened))
        port, rtp, rtcp = self._bind_pair()
        session = worker.open(next(self._numbers), port, self._family, rtp, rtcp)
        if affinity is not None:
            self._affinity[affinity] = (worker, {session})
            session.affinity = affinity
        return session

    def session_ended(self, session):
        placed = self._affinity.get(session.affinity)
        if placed is not None:
            placed[1].discard(session)
            if not placed[1]:
                del self._affinity[session.affinity]

    def room(self, session, wait_for_moderator=False, end_with_moderator=False):
        """A conference room in C{session}'s worker (see L{RemoteRoom})."""
        from callcenter.media.remote_room import RemoteRoom

        return RemoteRoom(session.worker, next(self._numbers), wait_for_moderator, end_with_moderator)

    def open_session_beside(self, session):
        """
        A session in the same process as C{session}: the other leg of a
        call that is bridged there (the worker's, or the server's engine).
        """
        worker = getattr(session, "worker", None)
        if worker is None:
            return self.engine.open_session()
        if not worker.ready:
            # The first leg is gone with its worker; this leg is not needed.
            raise NotInWorker(f"media worker {worker.index} is gone")
        port, rtp, rtcp = self._bind_pair()
        return worker.open(next(self._numbers), port, self._family, rtp, rtcp)

    def bridge(self, a, b):
        """A bridge of C{a} and C{b} where they are: both in one worker, or both in the server."""
        worker = getattr(a, "worker", None)
        if worker is None and getattr(b, "worker", None) is None:
            return Bridge(a, b)
        if worker is None or getattr(b, "worker", None) is not worker:
            raise NotInWorker("a bridge of sessions in different processes")
        if a is b:
            raise ValueError("a session cannot be bridged to itself")
        return RemoteBridge(worker, next(self._numbers), a, b)

    def _in_use(self):
        used = set(self.engine.sessions)
        for worker in self.workers:
            used.update(session.local_port for session in worker.sessions.values())
        return used

    def _bind_pair(self):
        first, last = self.engine.port_range
        used = self._in_use()
        for _ in range((last + 1 - first) // 2):
            port = self._next_port
            self._next_port = port + 2 if port + 3 <= last else first
            if port in used:
                continue
            rtp = self._bind(port)
            if rtp is None:
                continue
            rtcp = self._bind(port + 1)
            if rtcp is None:
                rtp.close()
                continue
            return port, rtp, rtcp
        raise MediaPortsExhausted(f"no free RTP port pair in {first}-{last}")

    def _bind(self, port):
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            sock.bind((self.engine.host, port))
        except OSError as e:
            sock.close()
            if e.errno != errno.EADDRINUSE:
                raise
            return None
        sock.setblocking(False)
        return sock

    # Prompts.

    def prompt_key(self, frames):
        """The content key of a frame list (None when empty), its chunks kept for the workers."""
        if not isinstance(frames, (list, tuple)):
            frames = list(itertools.islice(frames, MAX_PLAY_FRAMES + 1))
            if len(frames) > MAX_PLAY_FRAMES:
                self.log.warn("a play of over {count} frames was cut to that in a media worker", count=MAX_PLAY_FRAMES)
                frames = frames[:MAX_PLAY_FRAMES]
        if not frames:
            return None
        # Equal frame lists share a key, found without hashing the audio:
        # frames are mostly the same bytes objects (cached tones, prompts),
        # whose hashes Python keeps.
        identity = tuple(frames)
        key = self._keys.get(identity)
        if key is not None:
            self._keys.move_to_end(identity)
            return key
        chunks = commands.pack_frames(identity)
        digest = hashlib.blake2b(digest_size=16)
        for chunk in chunks:
            digest.update(chunk)
        key = digest.digest()
        self._keys[identity] = key
        self._frames[key] = (identity, sum(map(len, chunks)), chunks)
        while len(self._keys) > KEY_CACHE:
            _, old = self._keys.popitem(last=False)
            if old not in self._keys.values():
                self._frames.pop(old, None)
        return key

    def prompt(self, key):
        return self._frames[key]

    # What operations watch.

    def __len__(self):
        return sum(len(worker) for worker in self.workers)

    @property
    def sessions(self):
        """Every session, the server's own engine's and the workers', by port (for counting)."""
        sessions = dict(self.engine.sessions)
        for worker in self.workers:
            sessions.update((session.local_port, session) for session in worker.sessions.values())
        return sessions

    @property
    def late_ticks(self):
        return self.stats["late_ticks"]

    @property
    def skipped_ticks(self):
        return self.stats["skipped_ticks"]

    @property
    def stats(self):
        """The server engine's counters plus every worker's last report, and each worker's own."""
        total = dict(self.engine.stats)
        workers = []
        for worker in self.workers:
            reported = worker.engine_stats
            for name in _ENGINE_COUNTERS:
                total[name] = total.get(name, 0) + reported.get(name, 0)
            workers.append(
                {
                    "index": worker.index,
                    "pid": worker.pid,
                    "up": worker.ready,
                    "sessions": len(worker),
                    **{name: reported.get(name, 0) for name in ("ticks", "late_ticks", "skipped_ticks")},
                }
            )
        for name, count in self._ended_counts.items():
            total[name] = total.get(name, 0) + count
        total["sessions"] = total.get("sessions", 0) + len(self)
        total["workers"] = workers
        total["worker_restarts"] = self._restarts
        return total
