"""
What the server process and its media worker processes say to each other
(AMP over a UNIX socket pair, see L{callcenter.media.remote} and
L{callcenter.media.worker}).

Sessions are named by an integer the server gives each one.  Commands on
the per-call path (play, hold, echo) and the worker's reports (a key
press, inactivity, a play that ended, counters) need no answer: the AMP
stream keeps them in order, and an answer would double the traffic.
Prompts cross once per worker, keyed by their content, as
L{pack_frames} chunks: an AMP value holds at most 65,535 bytes.
"""

import struct

from twisted.protocols import amp

# Room for a chunk in one AMP value, with a margin.
CHUNK_BYTES = 60_000

_LENGTH = struct.Struct("!H")


def pack_frames(frames):
    """Frames (bytes each) as chunks of at most L{CHUNK_BYTES}: each frame's length, then the frame."""
    chunks, chunk, size = [], [], 0
    for frame in frames:
        piece = _LENGTH.pack(len(frame)) + frame
        if size + len(piece) > CHUNK_BYTES and chunk:
            chunks.append(b"".join(chunk))
            chunk, size = [], 0
        chunk.append(piece)
        size += len(piece)
    if chunk:
        chunks.append(b"".join(chunk))
    return chunks


def unpack_frames(chunk):
    """The frames of one chunk of L{pack_frames}."""
    frames, offset, end = [], 0, len(chunk)
    while offset < end:
        (length,) = _LENGTH.unpack_from(chunk, offset)
        offset += 2
        frames.append(bytes(chunk[offset : offset + length]))
        offset += length
    return frames


# The server to a worker.


class OpenSession(amp.Command):
    """Take over an RTP/RTCP socket pair the server bound on C{port}."""

    arguments = [
        (b"session", amp.Integer()),
        (b"port", amp.Integer()),
        (b"family", amp.Integer()),
        (b"rtp", amp.Descriptor()),
        (b"rtcp", amp.Descriptor()),
    ]
    response = []


class SetRemote(amp.Command):
    arguments = [
        (b"session", amp.Integer()),
        (b"address", amp.Unicode()),
        (b"port", amp.Integer()),
        (b"payload_type", amp.Integer()),
        (b"encoding", amp.Unicode()),
        (b"dtmf_payload_type", amp.Integer(optional=True)),
    ]
    requiresAnswer = False


class Hold(amp.Command):
    arguments = [(b"session", amp.Integer()), (b"on", amp.Boolean())]
    requiresAnswer = False


class Echo(amp.Command):
    arguments = [(b"session", amp.Integer()), (b"on", amp.Boolean())]
    requiresAnswer = False


class InbandDTMF(amp.Command):
    arguments = [(b"session", amp.Integer()), (b"on", amp.Boolean())]
    requiresAnswer = False


class AddPromptFrames(amp.Command):
    """One chunk of the prompt C{key}; the last one makes it playable."""

    arguments = [(b"key", amp.String()), (b"frames", amp.String()), (b"last", amp.Boolean())]
    requiresAnswer = False


class ForgetPrompt(amp.Command):
    arguments = [(b"key", amp.String())]
    requiresAnswer = False


class Play(amp.Command):
    """Play prompt C{key}; the worker says how it ended with L{PlayFinished} C{play}."""

    arguments = [(b"session", amp.Integer()), (b"play", amp.Integer()), (b"key", amp.String())]
    requiresAnswer = False


class StopPlaying(amp.Command):
    arguments = [(b"session", amp.Integer())]
    requiresAnswer = False


class SendDTMF(amp.Command):
    """Answered once the key press is sent (True) or the session closed first (False)."""

    arguments = [(b"session", amp.Integer()), (b"digit", amp.Unicode()), (b"duration_ms", amp.Integer())]
    response = [(b"sent", amp.Boolean())]


class CloseSession(amp.Command):
    """Answered once the ports are released, with the session's last counters (JSON)."""

    arguments = [(b"session", amp.Integer())]
    response = [(b"stats", amp.String())]


class StartBridge(amp.Command):
    """Sessions C{a} and C{b} (in this worker) hear each other until L{StopBridge} or either closes."""

    arguments = [(b"bridge", amp.Integer()), (b"a", amp.Integer()), (b"b", amp.Integer())]
    requiresAnswer = False


class StopBridge(amp.Command):
    arguments = [(b"bridge", amp.Integer())]
    requiresAnswer = False


class StartRecording(amp.Command):
    """Record session C{session} to the paths given (L{CallRecording}); answered with an error or ""."""

    arguments = [
        (b"recording", amp.Integer()),
        (b"session", amp.Integer()),
        (b"rx", amp.Unicode(optional=True)),
        (b"tx", amp.Unicode(optional=True)),
        (b"mixed", amp.Unicode(optional=True)),
        (b"encoding", amp.Unicode()),
    ]
    response = [(b"error", amp.Unicode())]


class StopRecording(amp.Command):
    """Answered once the files are closed and on disk: frames written, and an error or ""."""

    arguments = [(b"recording", amp.Integer()), (b"trim_seconds", amp.Float())]
    response = [(b"frames", amp.Integer()), (b"error", amp.Unicode())]


class OpenRoom(amp.Command):
    """A conference room mixing on this worker's tick (see L{ConferenceRoom})."""

    arguments = [(b"room", amp.Integer())]
    requiresAnswer = False


class JoinRoom(amp.Command):
    arguments = [
        (b"room", amp.Integer()),
        (b"session", amp.Integer()),
        (b"muted", amp.Boolean()),
        (b"deaf", amp.Boolean()),
    ]
    requiresAnswer = False


class SetMember(amp.Command):
    """A member's C{muted} and C{deaf} (the server decides moderation and the room's end)."""

    arguments = [
        (b"room", amp.Integer()),
        (b"session", amp.Integer()),
        (b"muted", amp.Boolean()),
        (b"deaf", amp.Boolean()),
    ]
    requiresAnswer = False


class LeaveRoom(amp.Command):
    arguments = [(b"room", amp.Integer()), (b"session", amp.Integer())]
    requiresAnswer = False


class CloseRoom(amp.Command):
    arguments = [(b"room", amp.Integer())]
    requiresAnswer = False


class Shutdown(amp.Command):
    """Close every session and stop the clock; the worker exits after answering."""

    arguments = []
    response = []


# A worker to the server.


class Ready(amp.Command):
    """The worker's first word: its clock runs, and it takes sessions."""

    arguments = []
    requiresAnswer = False


class DigitReceived(amp.Command):
    arguments = [(b"session", amp.Integer()), (b"digit", amp.Unicode())]
    requiresAnswer = False


class WentInactive(amp.Command):
    arguments = [(b"session", amp.Integer())]
    requiresAnswer = False


class PlayFinished(amp.Command):
    """C{frames_left}: of a play reported done early (see worker._Player), the frames still going out."""

    arguments = [
        (b"session", amp.Integer()), (b"play", amp.Integer()), (b"result", amp.Boolean()),
        (b"frames_left", amp.Integer(optional=True)),
    ]
    requiresAnswer = False


class EngineStats(amp.Command):
    """The worker engine's counters (JSON of L{MediaEngine.stats})."""

    arguments = [(b"stats", amp.String())]
    requiresAnswer = False


class SessionStats(amp.Command):
    """Some sessions' counters: JSON of {session: L{MediaSession.stats}}."""

    arguments = [(b"stats", amp.String())]
    requiresAnswer = False
