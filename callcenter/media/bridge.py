"""
Two calls' audio joined in our engine: what one far end sends, the other
hears.

Each frame crosses on the shared tick it is played out of the receiving
session's jitter buffer, into the other session's live feed
(L{MediaSession.feed}); it goes out on the same tick or the next,
depending on which session the engine ticks first.  PCMU and PCMA meet
through g711's 256-entry transcoding tables, which are the decode to
linear and the encode in the other law done once per code, so a frame
costs one C{bytes.translate} instead of a decode and an encode.

The receiving session plays out its codec's silence for every tick its
far end sent nothing (silence suppression, lost packets): such frames are
not passed on, so the other side suppresses silence too (RFC 3551 §4.1:
it resumes with a marked talkspurt) instead of sending packets of nothing.
"""

from twisted.internet import defer

from callcenter.media import g711

_TRANSCODE = {("PCMU", "PCMA"): g711.ulaw_to_alaw, ("PCMA", "PCMU"): g711.alaw_to_ulaw}


class _Direction:
    """One way across the bridge: C{source}'s received audio fed to C{sink}."""

    def __init__(self, source, sink):
        self.source = source
        self.sink = sink
        self.previous_listener = source.audio_received
        self.was_echoing = source.echoing
        # The codecs the conversion was chosen for: a re-INVITE may change
        # either, and comparing objects is cheaper than their names.
        self._source_codec = None
        self._sink_codec = None
        self._convert = None
        self._silence = None

    def forward(self, payload, codec):
        sink = self.sink
        if sink.on_hold:
            # Dropped, not queued: a call taken off hold hears the other
            # side from then on, not what was said meanwhile.
            return
        if codec is not self._source_codec or sink.codec is not self._sink_codec:
            self._choose_conversion(codec, sink.codec)
        if payload == self._silence:
            return
        convert = self._convert
        sink.feed(payload if convert is None else convert(payload))

    def _choose_conversion(self, source_codec, sink_codec):
        self._source_codec = source_codec
        self._sink_codec = sink_codec
        self._silence = bytes((g711.SILENCE[source_codec.encoding.upper()],)) * self.source.engine.samples_per_tick
        if sink_codec is None:
            self._convert = None
        else:
            self._convert = _TRANSCODE.get((source_codec.encoding.upper(), sink_codec.encoding.upper()))

    def join(self):
        self.source.echo(False)
        self.source.audio_received = self.forward

    def part(self):
        source = self.source
        # Someone who took the slot after us keeps it.
        if source.audio_received == self.forward:
            source.audio_received = self.previous_listener
        if not source.closed:
            source.echo(self.was_echoing)
        self.sink.clear_feed()


class Bridge:
    """
    Sessions C{a} and C{b} hear each other until L{stop}, or until either
    closes.  Meanwhile each session's C{audio_received} slot belongs to
    the bridge and echo is off; L{stop} gives back what was there.  A
    prompt played on either session (L{MediaSession.play}) or a key press
    sent takes precedence over the other side's audio while it lasts, and
    a session on hold is sent nothing.

    Bridging a session that is already closed makes a bridge that is
    stopped from the start (C{active} False, C{ended} fired): the call
    that owned it is ending anyway, and its teardown runs as usual.
    """

    def __init__(self, a, b):
        if a is b:
            raise ValueError("a session cannot be bridged to itself")
        self.active = False
        # Fires (with None) once the bridge has stopped, for whatever reason.
        self.ended = defer.Deferred()
        if a.closed or b.closed:
            self.ended.callback(None)
            return
        self.sessions = (a, b)
        self._directions = (_Direction(a, b), _Direction(b, a))
        for direction in self._directions:
            direction.join()
        for session in self.sessions:
            session.add_close_hook(self._session_closed)
        self.active = True

    def _session_closed(self, session):
        self.stop()

    def stop(self):
        """Part the sessions, each left as it was before (nothing more sent from the other)."""
        if not self.active:
            return
        self.active = False
        for direction in self._directions:
            direction.part()
        for session in self.sessions:
            session.remove_close_hook(self._session_closed)
        self.ended.callback(None)
