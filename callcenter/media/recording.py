"""
Recording a call's audio to 8 kHz G.711 WAV files.

A L{CallRecording} sits on one session's C{tap}, which the session calls
every tick with the frame it played out of its jitter buffer ("rx", what
the far end said, as a listener on our side hears it) and the audio frame
it sent ("tx": prompts, the other leg of a bridge, a conference mix).  Any
of three files may be asked for: rx, tx, and the two summed ("mixed").
On a bridged call, one leg's rx and tx are both sides of the conversation.

Every tick writes one frame to every file, silence where a direction had
nothing (before the far end's first packet, while we suppress silence or
send only RFC 4733 events, ticks the engine skipped when overloaded), so
the files stay aligned with each other and with the clock: a frame at
t seconds into the recording was heard or sent t seconds after the start.

The writes are buffered file writes on the reactor thread (8 kB/s a file,
see L{WavRecorder}); opening the files at the start is too.  Only the
final C{fsync}s, which may wait for the disk for a long time, run in a
thread pool: L{CallRecording.stop} fires once they are done.
"""

import os

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure

from callcenter.media import g711
from callcenter.media.mixing import FrameMixer
from callcenter.media.wavfile import SAMPLE_RATE, WavRecorder

# (the session's encoding, the file's) -> conversion of a frame.
_CONVERT = {("PCMU", "PCMA"): g711.ulaw_to_alaw, ("PCMA", "PCMU"): g711.alaw_to_ulaw}


class RecordingError(Exception):
    """A recording could not start, or failed on the way; the message is one line."""


def _sync_and_close(recorders, directories):
    """
    Close every file, each fsync'd, then fsync the directories that hold
    them so that the new files' names are durable too.  Runs in a thread.
    """
    errors = []
    for recorder in recorders:
        try:
            recorder.close(sync=True)
        except OSError as error:
            errors.append(f"{recorder.path}: {error.strerror}")
    for directory in directories:
        try:
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as error:
            errors.append(f"{directory}: {error.strerror}")
    if errors:
        raise RecordingError("; ".join(errors))


class CallRecording:
    """
    Record C{session} from now until L{stop} or until the session closes,
    to the paths given for C{rx}, C{tx} and C{mixed} (at least one), in
    C{encoding} ('PCMU' or 'PCMA'; the session's codec when not given).

    The files are opened at once: a path that cannot be written raises
    L{RecordingError} and leaves the session as it was.  A session records
    to one recording at a time.  Fsyncs run in C{threadpool} (by default
    C{reactor.getThreadPool()}, C{reactor} by default the engine's).
    """

    log = Logger()

    def __init__(self, session, rx=None, tx=None, mixed=None, encoding=None, reactor=None, threadpool=None):
        paths = {name: path for name, path in (("rx", rx), ("tx", tx), ("mixed", mixed)) if path is not None}
        if not paths:
            raise ValueError("record at least one of rx, tx and mixed")
        if session.closed:
            raise RecordingError(f"media session on port {session.local_port} is closed")
        if session.tap is not None:
            raise RecordingError(f"media session on port {session.local_port} is already being recorded")
        if encoding is None:
            if session.codec is None:
                raise ValueError("no encoding given and the session has no codec yet")
            encoding = session.codec.encoding
        encoding = encoding.upper()
        if encoding not in g711.SILENCE:
            raise ValueError(f"encoding {encoding!r} is not PCMU or PCMA")
        self.session = session
        self.paths = paths
        self.encoding = encoding
        # Frames written to each file so far; times the tick gives seconds.
        self.frames = 0
        self._tick = session.engine.tick
        self._reactor = reactor if reactor is not None else session.engine.reactor
        self._threadpool = threadpool
        samples = session.engine.samples_per_tick
        self._silence = bytes((g711.SILENCE[encoding],)) * samples
        self._mixer = FrameMixer(samples)
        self._recorders = self._open(paths, encoding)
        self._rx = self._recorders.get("rx")
        self._tx = self._recorders.get("tx")
        self._mixed = self._recorders.get("mixed")
        self._codec = None
        self._convert = None
        self._next_index = None
        self.recording = True
        self._result = None
        self._waiting = []
        session.tap = self._tapped
        session.add_close_hook(self._session_closed)

    @staticmethod
    def _open(paths, encoding):
        recorders = {}
        try:
            for name, path in paths.items():
                recorders[name] = WavRecorder(path, encoding)
        except OSError as error:
            # Nothing half-made is left behind: the files already opened
            # are empty recordings of a call that was never recorded.
            for recorder in recorders.values():
                recorder.close()
                os.remove(recorder.path)
            raise RecordingError(f"cannot record to {error.filename or path}: {error.strerror}") from None
        return recorders

    @property
    def seconds(self):
        """Length of the recording so far (every file has the same)."""
        return self.frames * self._tick

    def _tapped(self, index, received, sent):
        if self._next_index is None:
            self._next_index = index
        gap = index - self._next_index
        self._next_index = index + 1
        codec = self.session.codec
        if codec is not self._codec:
            self._codec = codec
            self._convert = None if codec is None else _CONVERT.get((codec.encoding.upper(), self.encoding))
        convert = self._convert
        if convert is not None:
            if received is not None:
                received = convert(received)
            if sent is not None:
                sent = convert(sent)
        try:
            if gap > 0:
                # Ticks the engine skipped: time passed with no frame.
                for _ in range(gap):
                    self._write(None, None)
            self._write(received, sent)
        except Exception as error:
            self._fail(error)

    def _write(self, received, sent):
        silence = self._silence
        if self._rx is not None:
            self._rx.write(silence if received is None else received)
        if self._tx is not None:
            self._tx.write(silence if sent is None else sent)
        if self._mixed is not None:
            # Mostly one side talks at a time: only double talk is mixed.
            if sent is None or sent == silence:
                mixed = silence if received is None else received
            elif received is None or received == silence:
                mixed = sent
            else:
                mixer = self._mixer
                encoding = self.encoding
                mixed = mixer.encode(mixer.widen(received, encoding) + mixer.widen(sent, encoding), 2, encoding)
            self._mixed.write(mixed)
        self.frames += 1

    def _fail(self, error):
        message = getattr(error, "strerror", None) or str(error)
        self.log.error(
            "recording of media session on port {port} failed, stopped: {error}",
            port=self.session.local_port,
            error=message,
        )
        self._finish(RecordingError(f"recording failed after {self.seconds:.2f} s: {message}"))

    def _session_closed(self, session):
        self.stop()

    def stop(self, trim_seconds=0.0):
        """
        Stop recording (again is harmless).  Fires with this recording once
        every file is closed and on disk, or fails with L{RecordingError}
        if a write or the final sync failed.

        @param trim_seconds: audio taken off the end: a caller who ends a
            recording with C{#} sent its tone in the audio (in-band DTMF),
            or silence in its place (RFC 4733), just before we knew.
        """
        if self.recording:
            for recorder in self._recorders.values():
                recorder.drop_tail(int(trim_seconds * SAMPLE_RATE))
            self._finish(None)
        done = defer.Deferred()
        if self._result is None:
            self._waiting.append(done)
        else:
            self._fire(done)
        return done

    def _finish(self, error):
        self.recording = False
        session = self.session
        if session.tap == self._tapped:
            session.tap = None
        session.remove_close_hook(self._session_closed)
        recorders = list(self._recorders.values())
        directories = sorted({os.path.dirname(os.path.abspath(recorder.path)) for recorder in recorders})
        threadpool = self._threadpool if self._threadpool is not None else self._reactor.getThreadPool()
        closing = threads.deferToThreadPool(self._reactor, threadpool, _sync_and_close, recorders, directories)
        if error is not None:
            # The write's error is the one to report (and is logged); the
            # close's would mostly repeat it.
            closing.addBoth(lambda _: Failure(error))
        else:
            closing.addErrback(self._close_failed)
        closing.addBoth(self._closed)

    def _close_failed(self, failure):
        self.log.error(
            "closing the recording of media session on port {port} failed: {error}",
            port=self.session.local_port,
            error=failure.getErrorMessage(),
        )
        return failure

    def _closed(self, result):
        self._result = result if isinstance(result, Failure) else self
        waiting, self._waiting = self._waiting, []
        for done in waiting:
            self._fire(done)

    def _fire(self, done):
        if isinstance(self._result, Failure):
            done.errback(self._result)
        else:
            done.callback(self._result)
