"""
A media worker process: a L{MediaEngine} on its own reactor, carrying the
calls the server process hands it (see L{callcenter.media.remote}).

    python -m callcenter.media.worker '<options as JSON>'

File descriptor 3 is one end of a UNIX socket pair whose other end the
server holds; AMP (L{callcenter.media.commands}) runs over it, and the
RTP/RTCP sockets of each call arrive on it (SCM_RIGHTS), already bound by
the server, which therefore knows the call's port at once.  Log events
go to stderr one per line, which the server writes into its own log.  The
worker exits when the server says L{Shutdown} or when the socket closes
(the server is gone).
"""

import json
import os
import socket
import sys
from collections import deque

from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, formatEvent
from twisted.protocols import amp

from callcenter.media import commands
from callcenter.media.bridge import Bridge
from callcenter.media.conference import ConferenceRoom
from callcenter.media.recording import CallRecording, RecordingError
from callcenter.media.engine import MediaEngine
from callcenter.media.session import MediaSession, RTCPProtocol, RTPProtocol
from callcenter.sip.sdp import AudioFormat

# How often the engine's counters, and every session's, are sent to the server.
ENGINE_STATS_EVERY = 1.0
SESSION_STATS_EVERY = 5.0
# Sessions per SessionStats message (an AMP value holds 65,535 bytes).
SESSION_STATS_BATCH = 150
# A play is reported done this many frames before its end (see _Player).
PLAY_LEAD = 3

_log = Logger()


class WorkerEngine(MediaEngine):
    """A L{MediaEngine} whose sessions come as sockets bound elsewhere."""

    def adopt_session(self, port, family, rtp_fd, rtcp_fd):
        """A L{MediaSession} on the bound, non-blocking UDP sockets C{rtp_fd} and C{rtcp_fd} (closed here)."""
        session = MediaSession(self, port)
        try:
            rtp_port = self.reactor.adoptDatagramPort(rtp_fd, family, RTPProtocol(session))
            try:
                rtcp_port = self.reactor.adoptDatagramPort(rtcp_fd, family, RTCPProtocol(session))
            except Exception:
                rtp_port.stopListening()
                raise
        finally:
            # The ports hold duplicates.
            os.close(rtp_fd)
            os.close(rtcp_fd)
        session.attach(rtp_port, rtcp_port)
        self._read_ourselves(rtp_port, session)
        self.sessions[port] = session
        return session


class _Player:
    """
    One session's prompts, played back to back.  A play is reported done
    L{PLAY_LEAD} frames before its last is sent, so that the server's next
    play (the application's answer to that report) arrives while those
    frames still go out, and is queued behind them: the round trip to the
    server never leaves a tick with nothing sent between two prompts, as
    it would on a busy machine.  The report is that much early (at most
    60 ms) and says so (C{frames_left}): a call hung up right after waits
    for them (L{callcenter.media.remote_session.RemoteSession.tail}).  A
    prompt the server stops or replaces before its report is cut at once,
    as in the server's own engine.
    """

    def __init__(self, session, report):
        self._session = session
        self._report = report
        self._queue = deque()
        # The play whose frames are going out, until it is reported.
        self._current = None
        self._running = False

    def play(self, number, frames):
        if self._current is not None:
            # Replacing a play not yet reported: stop it, as a MediaSession does.
            self.stop()
        self._queue.append((number, frames))
        if not self._running:
            self._running = True
            self._session.play(self._frames()).addBoth(self._ended)

    def stop(self):
        self._queue.clear()
        if self._running:
            self._session.stop_playing()

    def _frames(self):
        while self._queue:
            number, frames = self._queue.popleft()
            self._current = number
            tell_at = max(0, len(frames) - PLAY_LEAD)
            for index, frame in enumerate(frames):
                if index == tell_at:
                    self._tell(True, len(frames) - index)
                yield frame

    def _tell(self, result, frames_left=0):
        number, self._current = self._current, None
        if number is not None:
            self._report(number, result, frames_left)

    def _ended(self, result):
        self._running = False
        self._queue.clear()
        # Stopped, replaced or closed before its report.
        self._tell(result is True)


class WorkerProtocol(amp.AMP):
    """The worker's end: sessions by the server's number, prompts by key."""

    log = Logger()

    def __init__(self, engine, clock, on_lost=None):
        super().__init__()
        self.engine = engine
        self.clock = clock
        self.sessions = {}
        self.prompts = {}
        self.bridges = {}
        self.rooms = {}
        self.recordings = {}
        # Each session's prompts, see _Player.
        self.players = {}
        self._partial = {}
        self._on_lost = on_lost
        self._loops = []

    def connectionMade(self):
        super().connectionMade()
        self._tell(commands.Ready)
        for every, push in ((ENGINE_STATS_EVERY, self.push_engine_stats), (SESSION_STATS_EVERY, self.push_session_stats)):
            loop = LoopingCall(push)
            loop.clock = self.clock
            loop.start(every, now=False)
            self._loops.append(loop)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        for loop in self._loops:
            if loop.running:
                loop.stop()
        if self._on_lost is not None:
            self._on_lost()

    def _tell(self, command, **arguments):
        if self.transport is not None and self.transport.connected:
            self.callRemote(command, **arguments)

    def push_engine_stats(self):
        self._tell(commands.EngineStats, stats=json.dumps(self.engine.stats).encode())

    def push_session_stats(self):
        items = [(number, session.stats) for number, session in self.sessions.items()]
        for start in range(0, len(items), SESSION_STATS_BATCH):
            batch = dict(items[start : start + SESSION_STATS_BATCH])
            self._tell(commands.SessionStats, stats=json.dumps(batch).encode())

    @commands.OpenSession.responder
    def open_session(self, session, port, family, rtp, rtcp):
        media = self.engine.adopt_session(port, family, rtp, rtcp)
        self.sessions[session] = media
        media.dtmf_received = lambda digit: self._tell(commands.DigitReceived, session=session, digit=digit)
        media.inactive = lambda: self._tell(commands.WentInactive, session=session)
        return {}

    @commands.SetRemote.responder
    def set_remote(self, session, address, port, payload_type, encoding, dtmf_payload_type=None):
        media = self.sessions.get(session)
        if media is not None:
            media.set_remote(address, port, AudioFormat(payload_type, encoding, dtmf_payload_type))
        return {}

    @commands.Hold.responder
    def hold(self, session, on):
        media = self.sessions.get(session)
        if media is not None:
            media.hold(on)
        return {}

    @commands.Echo.responder
    def echo(self, session, on):
        media = self.sessions.get(session)
        if media is not None:
            media.echo(on)
        return {}

    @commands.InbandDTMF.responder
    def inband_dtmf(self, session, on):
        media = self.sessions.get(session)
        if media is not None:
            media.inband_dtmf = on
        return {}

    @commands.AddPromptFrames.responder
    def add_prompt_frames(self, key, frames, last):
        partial = self._partial.setdefault(key, [])
        partial.extend(commands.unpack_frames(frames))
        if last:
            self.prompts[key] = tuple(self._partial.pop(key))
        return {}

    @commands.ForgetPrompt.responder
    def forget_prompt(self, key):
        self.prompts.pop(key, None)
        return {}

    @commands.Play.responder
    def play(self, session, play, key):
        media = self.sessions.get(session)
        frames = self.prompts.get(key)
        if media is None or frames is None:
            if frames is None:
                self.log.error("play of an unknown prompt on session {session}", session=session)
            self._tell(commands.PlayFinished, session=session, play=play, result=False)
            return {}
        player = self.players.get(session)
        if player is None:
            player = self.players[session] = _Player(media, lambda number, result, frames_left: self._tell(
                commands.PlayFinished, session=session, play=number, result=result, frames_left=frames_left))
        player.play(play, frames)
        return {}

    @commands.StopPlaying.responder
    def stop_playing(self, session):
        player = self.players.get(session)
        if player is not None:
            player.stop()
        return {}

    @commands.SendDTMF.responder
    def send_dtmf(self, session, digit, duration_ms):
        media = self.sessions.get(session)
        if media is None:
            return {"sent": False}
        return media.send_dtmf(digit, duration_ms).addCallback(lambda sent: {"sent": bool(sent)})

    @commands.StartBridge.responder
    def start_bridge(self, bridge, a, b):
        first, second = self.sessions.get(a), self.sessions.get(b)
        if first is None or second is None:
            self.log.warn("bridge of sessions {a} and {b}: one has closed", a=a, b=b)
            return {}
        joined = self.bridges[bridge] = Bridge(first, second)
        joined.ended.addCallback(lambda _: self.bridges.pop(bridge, None))
        return {}

    @commands.StopBridge.responder
    def stop_bridge(self, bridge):
        joined = self.bridges.pop(bridge, None)
        if joined is not None:
            joined.stop()
        return {}

    @commands.StartRecording.responder
    def start_recording(self, recording, session, encoding, rx=None, tx=None, mixed=None):
        media = self.sessions.get(session)
        if media is None:
            return {"error": f"session {session} is closed"}
        try:
            self.recordings[recording] = CallRecording(media, rx=rx, tx=tx, mixed=mixed, encoding=encoding)
        except (RecordingError, ValueError) as error:
            return {"error": str(error)}
        return {"error": ""}

    @commands.StopRecording.responder
    def stop_recording(self, recording, trim_seconds):
        # Kept until the server asks, even once its session has closed
        # (which stops it): the server always asks.
        taken = self.recordings.pop(recording, None)
        if taken is None:
            return {"frames": 0, "error": "the recording never started"}
        return taken.stop(trim_seconds).addCallbacks(
            lambda done: {"frames": done.frames, "error": ""},
            lambda failure: {"frames": taken.frames, "error": failure.getErrorMessage()},
        )

    # Conference rooms: the server keeps who is in, who moderates and when
    # the room ends; here the mixing, which is per frame.

    @commands.OpenRoom.responder
    def open_room(self, room):
        self.rooms[room] = ConferenceRoom(self.engine)
        return {}

    @commands.JoinRoom.responder
    def join_room(self, room, session, muted, deaf):
        mixing, media = self.rooms.get(room), self.sessions.get(session)
        if mixing is not None and media is not None and not media.closed:
            mixing.join(media, muted=muted, deaf=deaf)
        return {}

    @commands.SetMember.responder
    def set_member(self, room, session, muted, deaf):
        mixing, media = self.rooms.get(room), self.sessions.get(session)
        if mixing is not None and media is not None:
            for member in mixing.members:
                if member.session is media:
                    member.muted, member.deaf = muted, deaf
        return {}

    @commands.LeaveRoom.responder
    def leave_room(self, room, session):
        mixing, media = self.rooms.get(room), self.sessions.get(session)
        if mixing is not None and media is not None:
            mixing.leave(media)
        return {}

    @commands.CloseRoom.responder
    def close_room(self, room):
        mixing = self.rooms.pop(room, None)
        if mixing is not None:
            mixing.end()
        return {}

    @commands.CloseSession.responder
    def close_session(self, session):
        media = self.sessions.pop(session, None)
        self.players.pop(session, None)
        if media is None:
            return {"stats": b"{}"}
        closing = media.close()

        def closed(_):
            stats = media.stats
            self.log.info(
                "session {session} on port {port} closed: {sent} RTP packets sent, {received} received",
                session=session, port=media.local_port, sent=stats["packets_sent"], received=stats["packets_received"],
            )
            return {"stats": json.dumps(stats).encode()}

        return closing.addCallback(closed)

    @commands.Shutdown.responder
    def shutdown(self):
        self.sessions.clear()
        stopped = self.engine.stop()
        return stopped.addCallback(lambda _: {})


def _log_line(event):
    """One log event as a line for the server: its level, then the text (a traceback flattened)."""
    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        text += " | " + failure.getTraceback().replace("\n", " | ")
    level = event.get("log_level")
    name = level.name if level is not None else "info"
    return f"{name} {text}".replace("\n", " ") + "\n"


def _set_priority(nice):
    if not nice:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError as e:
        _log.warn("cannot take priority {nice} ({why}): running at the default", nice=nice, why=e.strerror)
    else:
        _log.info("running at priority {nice}", nice=nice)


def main(argv):
    import signal

    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    options = json.loads(argv[1])

    def observe(event):
        try:
            sys.stderr.write(_log_line(event))
            sys.stderr.flush()
        except Exception:
            pass

    globalLogBeginner.beginLoggingTo([observe], redirectStandardIO=False)
    _set_priority(options.get("nice", 0))
    # The server's Ctrl-C reaches its whole process group: the server, not
    # the signal, decides when a worker stops (after its calls' BYEs).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    engine = WorkerEngine(
        reactor,
        reactor,
        host=options["host"],
        port_range=tuple(options["port_range"]),
        tick=options["tick"],
        inactivity_timeout=options["inactivity_timeout"],
        jitter_depth=options["jitter_depth"],
        inband_dtmf=options["inband_dtmf"],
    )

    def lost():
        if reactor.running:
            reactor.stop()

    factory = Factory.forProtocol(lambda: WorkerProtocol(engine, reactor, on_lost=lost))
    # Workers tick in turn, not together: worker i of N starts its grid
    # i/N of a tick after the others (on the wall clock they share), so
    # their bursts of sends, and the far ends' answers, do not all fall on
    # the same few milliseconds of a machine with few cores.
    tick, phase = options["tick"], options.get("phase", 0.0)
    reactor.callWhenRunning(lambda: reactor.callLater((phase * tick - reactor.seconds()) % tick, engine.start))
    reactor.callWhenRunning(reactor.adoptStreamConnection, 3, socket.AF_UNIX, factory)
    reactor.callWhenRunning(os.close, 3)
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    main(sys.argv)
