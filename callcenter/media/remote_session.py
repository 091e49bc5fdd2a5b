"""
A call's media in a media worker, as the server's call layer sees it
(L{RemoteSession}), and a bridge of two such sessions (L{RemoteBridge});
see L{callcenter.media.remote} for the workers themselves.
"""

import json
import os

from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.logger import Logger

from callcenter.media import commands
from callcenter.media.recording import RecordingError

_EMPTY_STATS = {
    "packets_sent": 0,
    "packets_received": 0,
    "packets_lost": 0,
    "jitter_ms": 0.0,
    "remote": None,
    "remote_port": None,
    "latched": False,
    "late_packets": 0,
    "packets_dropped": 0,
    "send_errors": 0,
}


class NotInWorker(Exception):
    """What a session in a worker cannot do: tick-level slots, a bridge or room across processes."""


class RemoteSession:
    """
    A call's media in a worker, as the call layer sees it: the
    L{MediaSession} operations of a call leg, and L{record}.  The
    tick-level slots (C{feed}, C{audio_received}, C{tap}, close hooks)
    raise L{NotInWorker}: bridges, recordings and conference rooms of
    worker sessions run in the worker, through L{MediaWorkers.bridge},
    L{record} and L{MediaWorkers.room}.

    Callback slots, as on L{MediaSession}: C{dtmf_received(digit)},
    C{inactive()}; and C{lost(reason)}, called once if the worker dies
    (C{inactive} is called when it is not set).
    """

    log = Logger()
    in_worker = True

    def __init__(self, worker, number, local_port):
        self.worker = worker
        self.number = number
        self.local_port = local_port
        self.dtmf_received = None
        self.inactive = None
        self.lost = None
        self.codec = None
        self.remote = None
        self.on_hold = False
        self.closed = False
        self.latched = False
        self._echo = False
        self._inband = None
        self._play = None
        self._play_number = 0
        self._sounding_until = 0.0
        self._stats = dict(_EMPTY_STATS)
        self._closing = None
        # Set by MediaWorkers.open_session: what it was placed with.
        self.affinity = None
        # The session's last RemoteRecording.
        self.recording = None

    # What the worker reports.

    def _digit(self, digit):
        if not self.closed and self.dtmf_received is not None:
            self.dtmf_received(digit)

    def _went_inactive(self):
        if not self.closed and self.inactive is not None:
            self.inactive()

    def _play_finished(self, number, result, frames_left=0):
        play = self._play
        if play is not None and play[0] == number:
            self._play = None
            if result:
                workers = self.worker.workers
                # A frame a tick of the worker's engine, which ticks as the server's.
                self._sounding_until = workers.clock.seconds() + frames_left * workers.engine.tick
            play[1].callback(result)

    def tail(self):
        """
        Seconds the last prompt still sounds: the worker reports a play
        done a few frames before its last goes out.  Zero once another
        play has started (a hang-up cuts that one, as it would in the
        server's own engine).
        """
        if self._play is not None or self.closed:
            return 0.0
        return max(0.0, self._sounding_until - self.worker.workers.clock.seconds())

    def _worker_lost(self, reason):
        if self.closed:
            return
        self.closed = True
        self.worker.forget(self)
        lost, inactive = self.lost, self.inactive
        self.lost = self.inactive = self.dtmf_received = None
        # The call hears why first: a play ending under the application
        # would otherwise end the call as if it had simply finished.
        if lost is not None:
            lost(reason)
        elif inactive is not None:
            inactive()
        self._finish_play(False)

    def _end(self):
        self.closed = True
        self._finish_play(False)
        self.worker.forget(self)

    # Signalling's side.

    def set_remote(self, address, port, codec):
        if not (isIPAddress(address) or isIPv6Address(address)):
            raise ValueError(f"remote address {address!r} is not an IP address")
        if not 0 < port < 65536:
            raise ValueError(f"remote port {port} is not 1-65535")
        if codec.encoding.upper() not in ("PCMU", "PCMA"):
            raise ValueError(f"codec {codec.encoding!r} is not PCMU or PCMA")
        if self.closed:
            return
        self.codec = codec
        self.remote = (address, port)
        arguments = dict(session=self.number, address=address, port=port,
                         payload_type=codec.payload_type, encoding=codec.encoding)
        if codec.dtmf_payload_type is not None:
            arguments["dtmf_payload_type"] = codec.dtmf_payload_type
        self.worker.tell(commands.SetRemote, **arguments)

    def hold(self, on):
        on = bool(on)
        if on == self.on_hold or self.closed:
            return
        self.on_hold = on
        self.worker.tell(commands.Hold, session=self.number, on=on)

    @property
    def inband_dtmf(self):
        return self._inband

    @inband_dtmf.setter
    def inband_dtmf(self, on):
        self._inband = bool(on)
        if not self.closed:
            self.worker.tell(commands.InbandDTMF, session=self.number, on=bool(on))

    # Sending.

    def play(self, frames):
        """As L{MediaSession.play}: fires True once the worker sent the last frame, False if stopped first."""
        self.stop_playing()
        done = defer.Deferred()
        if self.closed:
            done.callback(False)
            return done
        key = self.worker.workers.prompt_key(frames)
        if key is None:
            done.callback(True)
            return done
        self._play_number += 1
        self._play = (self._play_number, done)
        self.worker.play(self.number, self._play_number, key)
        return done

    def stop_playing(self):
        # At once, as in a MediaSession: a flow that stops a prompt goes on
        # as if it had stopped; the worker's report of it is then ignored.
        if self._play is not None:
            self._finish_play(False)
            self.worker.tell(commands.StopPlaying, session=self.number)

    def _finish_play(self, result):
        play, self._play = self._play, None
        if play is not None:
            play[1].callback(result)

    def send_dtmf(self, digit, duration_ms=100):
        if self.codec is None:
            raise ValueError("send_dtmf before set_remote: no codec yet")
        if self.closed:
            return defer.succeed(False)
        return self.worker.ask(commands.SendDTMF, session=self.number, digit=digit, duration_ms=duration_ms).addCallbacks(
            lambda answer: answer["sent"], lambda failure: False
        )

    def echo(self, on=True):
        self._echo = bool(on)
        if not self.closed:
            self.worker.tell(commands.Echo, session=self.number, on=self._echo)

    @property
    def echoing(self):
        return self._echo

    def record(self, rx=None, tx=None, mixed=None, encoding=None):
        """A L{RemoteRecording} of this session, the worker writing the files."""
        return RemoteRecording(self, rx=rx, tx=tx, mixed=mixed, encoding=encoding)

    # What only runs on one engine's tick.

    def _not_here(self, what):
        raise NotInWorker(f"{what} of a call whose media runs in media worker {self.worker.index}")

    def feed(self, payload):
        self._not_here("live audio")

    def add_close_hook(self, hook):
        # Bridges and rooms of worker sessions run in the worker (see
        # MediaWorkers.bridge and .room); a recording does not (yet).
        self._not_here("a bridge, a recording or a conference room on the server's engine")

    @property
    def tap(self):
        return None

    @tap.setter
    def tap(self, value):
        self._not_here("recording")

    @property
    def audio_received(self):
        return None

    @audio_received.setter
    def audio_received(self, value):
        if value is not None:
            self._not_here("listening to the audio")

    # Lifecycle.

    @property
    def stats(self):
        """The counters the worker last sent (every few seconds, and at close)."""
        return dict(self._stats)

    def close(self):
        """Fires once the worker has released the ports (at once if the worker is gone)."""
        if self._closing is not None:
            return self._closing
        if self.closed:
            return defer.succeed(None)
        self.dtmf_received = self.inactive = self.lost = None
        self._end()
        closing = self.worker.ask(commands.CloseSession, session=self.number)

        def closed(answer):
            stats = json.loads(answer["stats"])
            if stats:
                self._stats = stats

        self._closing = closing.addCallbacks(closed, lambda failure: None)
        return self._closing


class RemoteBridge:
    """A L{Bridge} running in a worker: the same C{stop} and C{active}."""

    def __init__(self, worker, number, a, b):
        self._worker = worker
        self._number = number
        self.active = not (a.closed or b.closed)
        if self.active:
            worker.tell(commands.StartBridge, bridge=number, a=a.number, b=b.number)

    def stop(self):
        if self.active:
            self.active = False
            self._worker.tell(commands.StopBridge, bridge=self._number)


class RemoteRecording:
    """
    A L{callcenter.media.recording.CallRecording} made in the session's
    worker, with the same start and L{stop}: what can be checked here
    (paths writable, one recording a session) raises L{RecordingError} at
    once, as there; the rest fails L{stop}.  C{frames} and C{seconds} are
    known once stopped.
    """

    log = Logger()

    def __init__(self, session, rx=None, tx=None, mixed=None, encoding=None):
        paths = {name: path for name, path in (("rx", rx), ("tx", tx), ("mixed", mixed)) if path is not None}
        if not paths:
            raise ValueError("record at least one of rx, tx and mixed")
        if session.closed:
            raise RecordingError(f"media session on port {session.local_port} is closed")
        if session.recording is not None and session.recording.recording:
            raise RecordingError(f"media session on port {session.local_port} is already being recorded")
        if encoding is None:
            if session.codec is None:
                raise ValueError("no encoding given and the session has no codec yet")
            encoding = session.codec.encoding
        encoding = encoding.upper()
        if encoding not in ("PCMU", "PCMA"):
            raise ValueError(f"encoding {encoding!r} is not PCMU or PCMA")
        _check_writable(paths.values())
        self.session = session
        self.paths = paths
        self.encoding = encoding
        self.frames = 0
        self.recording = True
        self._tick = 0.020
        self._error = None
        self._result = None
        self._waiting = []
        self._worker = session.worker
        self._number = session.worker.workers.new_number()
        session.recording = self
        self._worker.ask(
            commands.StartRecording, recording=self._number, session=session.number, encoding=encoding, **paths
        ).addCallbacks(self._started, self._lost)

    @property
    def seconds(self):
        return self.frames * self._tick

    def _started(self, answer):
        if answer["error"]:
            self.log.error("recording of port {port} failed to start: {error}",
                           port=self.session.local_port, error=answer["error"])
            self._error = RecordingError(answer["error"])

    def _lost(self, failure):
        self._error = RecordingError(f"the media worker was lost: {failure.getErrorMessage()}")

    def stop(self, trim_seconds=0.0):
        """As L{CallRecording.stop}: fires with this recording once the files are on disk."""
        if self.recording:
            self.recording = False
            self._worker.ask(commands.StopRecording, recording=self._number, trim_seconds=trim_seconds).addCallbacks(
                self._stopped, self._stop_lost
            )
        done = defer.Deferred()
        if self._result is None:
            self._waiting.append(done)
        else:
            self._fire(done)
        return done

    def _stopped(self, answer):
        self.frames = answer["frames"]
        if self._error is None and answer["error"]:
            self._error = RecordingError(answer["error"])
        self._finish()

    def _stop_lost(self, failure):
        if self._error is None:
            self._lost(failure)
        self._finish()

    def _finish(self):
        self._result = self._error if self._error is not None else self
        waiting, self._waiting = self._waiting, []
        for done in waiting:
            self._fire(done)

    def _fire(self, done):
        if isinstance(self._result, Exception):
            done.errback(self._result)
        else:
            done.callback(self._result)


def _check_writable(paths):
    """Make each file (the worker writes it) or raise L{RecordingError}, leaving none behind."""
    made = []
    try:
        for path in paths:
            with open(path, "wb"):
                made.append(path)
    except OSError as error:
        for path in made:
            os.remove(path)
        raise RecordingError(f"cannot record to {error.filename or path}: {error.strerror}") from None
