"""
One call's audio: an RTP port and its RTCP port, what is sent to the far
end and what is heard from it.

A session has no timer of its own.  The engine's shared clock calls
L{MediaSession.on_tick} every 20 ms, and in that call the session plays
out one received frame (after the jitter buffer), sends at most one
packet, and does its housekeeping.  Everything on the per-packet path
avoids building objects and calls it can do without: an outgoing packet
is built by one C{struct} call (header and pre-encoded payload together),
and an incoming packet of the common shape (no CSRC, extension or
padding) is read with one C{unpack_from} instead of a full L{rtp.parse}.
The packets of an established stream (from where we send, the known
SSRC, our audio payload type) skip the checks that only the first
packets of a stream need.
"""

import errno
import random
import secrets
import struct
from collections import deque

from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from callcenter.media import g711, rtp
from callcenter.media.dtmf import (
    DigitDeduplicator,
    EventReceiver,
    EventSender,
    GoertzelDetector,
    TelephoneEventError,
)
from callcenter.media.jitter import JitterBuffer
from callcenter.media.tones import dtmf_tone

_CODECS = {
    "PCMU": (g711.ULAW_SILENCE, g711.ulaw_to_linear, g711.linear_to_ulaw),
    "PCMA": (g711.ALAW_SILENCE, g711.alaw_to_linear, g711.linear_to_alaw),
}

# RFC 3550 §5.1: a packet whose first octet is exactly V=2 with no
# padding, extension or CSRCs has its payload right after 12 octets.
_PLAIN_FIRST_OCTET = 0x80
_SEQUENCE_TIMESTAMP_SSRC = struct.Struct("!HII")
_PLAIN_HEADER = struct.Struct("!BBHII")

# Plain packets by payload size: pack(first octet, marker and payload type,
# sequence, timestamp, SSRC, payload) makes the whole packet in one call,
# which costs less than packing the header and joining the payload to it
# (and, unlike packing into a reused buffer, gives bytes that stay as sent
# for a port that keeps them).  A session sends few sizes: its frames and
# RFC 4733's 4-byte events.
_PACKERS = {}


def _new_packer(size):
    pack = _PACKERS[size] = struct.Struct(f"!BBHII{size}s").pack
    return pack

# Latching (symmetric RTP, RFC 4961 §4 / the "comedia" practice of SBCs):
# this many consecutive packets of one SSRC from one new source move our
# sending there, so that one spoofed packet cannot divert the call.
LATCH_PACKETS = 3

# RFC 3550 §6.2: at most one report every 5 s for a two-party session
# (the bandwidth share would allow more); §6.3.1 spreads each interval
# over 0.5 to 1.5 times that so that sessions do not report in step, and
# the first report may go after half the interval (§6.2 "initial").
RTCP_INTERVAL = 5.0

# One press sent both ways is reported by the tone detector some 85 ms
# after it starts (two 12.75 ms blocks behind the 60 ms jitter buffer) and
# by the event receiver when the event ends: 0.2 s covers presses of up to
# about 250 ms, longer than phones make them.
DIGIT_DEDUP_WINDOW = 0.2

# Q.24 wants at least 40 ms between in-band digits; 60 ms is common.
_INBAND_GAP_FRAMES = 3

# Live frames waiting to be sent (see MediaSession.feed).  A feeder on the
# engine's tick adds one frame a tick and the session takes one a tick, so
# one place is all that is ever used; the second absorbs a feeder off the
# tick (another clock) at the price of one frame of delay, and beyond it
# the oldest frame goes, so a stalled consumer never builds up a backlog.
_LIVE_DEPTH = 2

_RTCP_SDES = 202
_SDES_CNAME = 1


def _sdes_cname(ssrc, cname):
    """An SDES packet with one chunk carrying the CNAME (RFC 3550 §6.5)."""
    item = bytes((_SDES_CNAME, len(cname))) + cname
    chunk = struct.pack("!I", ssrc) + item
    # The item list ends with a null octet and pads to a 32-bit boundary.
    chunk += bytes(4 - len(chunk) % 4)
    return struct.pack("!BBH", 0x81, _RTCP_SDES, len(chunk) // 4) + chunk


class RTPProtocol(DatagramProtocol):
    def __init__(self, session):
        self.session = session

    def datagramReceived(self, data, address):
        self.session.rtp_received(data, address)


class RTCPProtocol(DatagramProtocol):
    def __init__(self, session):
        self.session = session

    def datagramReceived(self, data, address):
        self.session.rtcp_received(data, address)


class _DTMFPress:
    """One queued or sounding key press: the payloads that send it."""

    def __init__(self, payloads, payload_type, event, deferred):
        self.payloads = payloads
        self.payload_type = payload_type
        # RFC 4733 §2.5.1: every packet of an event carries the event's
        # start timestamp; in-band tones are plain audio and do not.
        self.event = event
        self.deferred = deferred
        self.index = 0
        self.timestamp = None


class MediaSession:
    """
    The RTP and RTCP of one call.  Made by L{MediaEngine.open_session}.

    Callback slots, each None or a callable, set by the user:
      - C{audio_received(payload, codec)}: one frame per tick once RTP has
        arrived, in order, silence in the codec where a packet is missing;
      - C{dtmf_received(digit)}: each key press once, whichever way it came;
      - C{inactive()}: once, when no RTP has come for the engine's
        C{inactivity_timeout} after L{set_remote}, except while on hold;
      - C{tap(index, received, sent)}: every tick, for recordings: the
        frame played out of the jitter buffer (None before any RTP came)
        and the audio frame sent (None when nothing or only RFC 4733
        events went out), both in the session's codec.
    Whoever feeds the session live audio (a bridge, a conference) and
    must let go when it closes registers with L{add_close_hook}.
    """

    log = Logger()

    def __init__(self, engine, local_port):
        self.engine = engine
        self.local_port = local_port
        self.audio_received = None
        self.dtmf_received = None
        self.inactive = None
        self.tap = None
        self.codec = None
        self.remote = None
        self.latched = False
        self.on_hold = False
        self.closed = False
        self.packets_sent = 0
        self.octets_sent = 0
        self.packets_received = 0
        self.packets_dropped = 0
        self.send_errors = 0
        self.callback_failures = 0
        self._clock = engine.clock
        self._samples_per_tick = engine.samples_per_tick
        self._rtp_port = None
        self._rtcp_port = None
        # The RTP socket's descriptor when the engine reads it itself.
        self.rtp_fd = None
        self._sendto = None
        self._target = None
        self._latch_armed = False
        # Where RTP is accepted without the latching and payload type checks
        # (rtp_received's fast path): the destination, once latching is over
        # for this remote; None before, and once closed.
        self._settled_source = None
        self._candidate = None
        self._candidate_sequence = None
        self._candidate_count = 0
        self._ssrc = secrets.randbits(32)
        self._sequence = secrets.randbits(16)
        self._timestamp_base = secrets.randbits(32)
        self._talkspurt = True
        self._payload_type = None
        self._dtmf_payload_type = None
        self._silence = None
        self._decode = None
        self._frames = None
        self._next_frame = None
        self._play_deferred = None
        self._dtmf_queue = []
        self._echo = False
        self._live = deque(maxlen=_LIVE_DEPTH)
        self._close_hooks = []
        self._jitter = JitterBuffer(engine.jitter_depth)
        self._receiving = False
        self._remote_ssrc = None
        self._receiver_stats = None
        self._event_receiver = EventReceiver()
        self._deduplicator = DigitDeduplicator(DIGIT_DEDUP_WINDOW)
        # The engine's default until the user chooses for this session;
        # "auto" decides at each set_remote.
        self._inband_choice = engine.inband_dtmf
        self._inband = engine.inband_dtmf is True
        self._detector = GoertzelDetector()
        self._watching = False
        self._heard = False
        self._last_activity = None
        self._inactivity_timeout = engine.inactivity_timeout
        # When the event receiver must be asked for an event whose end
        # packets never came (EventReceiver.flush), or None.
        self._events_pending_until = None
        self._rtcp_due = None
        self._rtcp_target = None
        self._packets_at_last_report = 0
        self._cname = secrets.token_hex(8).encode("ascii")
        self.remote_report = None

    def attach(self, rtp_port, rtcp_port):
        """Called by the engine with the bound ports."""
        self._rtp_port = rtp_port
        self._rtcp_port = rtcp_port
        sock = getattr(rtp_port, "socket", None)
        # socket.sendto directly: Twisted's Port.write re-validates the
        # address as an IP literal on every call, which costs as much as
        # the system call.  set_remote validates it once instead.
        self._sendto = sock.sendto if sock is not None else rtp_port.write

    # Signalling's side.

    def set_remote(self, address, port, codec):
        """
        Send to C{address}:C{port} (from the far end's SDP) in C{codec}, an
        L{AudioFormat}; RTCP goes to C{port} + 1 (RFC 3550 §11).  A new
        remote re-arms latching.  The unspecified address (RFC 2543's
        c=0.0.0.0 hold) sends nothing until the far end's own packets
        latch a destination: sending to 0.0.0.0 would reach this host.
        """
        if not (isIPAddress(address) or isIPv6Address(address)):
            raise ValueError(f"remote address {address!r} is not an IP address")
        if not 0 < port < 65536:
            raise ValueError(f"remote port {port} is not 1-65535")
        try:
            silence, decode, _ = _CODECS[codec.encoding.upper()]
        except KeyError:
            raise ValueError(f"codec {codec.encoding!r} is not PCMU or PCMA") from None
        if self.closed:
            return
        if self.codec is None or codec.encoding.upper() != self.codec.encoding.upper():
            self._silence = bytes((silence,)) * self._samples_per_tick
            self._decode = decode
            self._jitter.reset()
            self._detector = GoertzelDetector()
        if self.codec is None or codec.dtmf_payload_type != self.codec.dtmf_payload_type:
            self._event_receiver = EventReceiver()
        self.codec = codec
        if self._inband_choice == "auto":
            # Phones that negotiate telephone-event send their key presses
            # as events; searching their audio too is the dearest work we
            # could do per frame.
            self._set_inband(codec.dtmf_payload_type is None)
        self._payload_type = codec.payload_type
        self._dtmf_payload_type = codec.dtmf_payload_type
        self.remote = (address, port)
        if address in ("0.0.0.0", "::"):
            self._target = self._rtcp_target = None
        else:
            self._target = self.remote
            self._rtcp_target = (address, port + 1)
        self.latched = False
        self._latch_armed = True
        self._settled_source = None
        self._candidate = None
        self._candidate_count = 0
        now = self._clock.seconds()
        if not self._watching:
            self._watching = True
            self._last_activity = now
        if self._rtcp_due is None:
            self._rtcp_due = now + random.uniform(0.5, 1.5) * RTCP_INTERVAL / 2

    def hold(self, on):
        """Stop (or resume) sending; inactivity is not watched while held."""
        on = bool(on)
        if on == self.on_hold:
            return
        self.on_hold = on
        if not on:
            self._last_activity = self._clock.seconds()
            self._talkspurt = True

    @property
    def inband_dtmf(self):
        """Whether received audio is searched for DTMF tones (default on)."""
        return self._inband

    @inband_dtmf.setter
    def inband_dtmf(self, on):
        self._inband_choice = bool(on)
        self._set_inband(bool(on))

    def _set_inband(self, on):
        if on and not self._inband:
            self._detector = GoertzelDetector()
        self._inband = on

    # Sending.

    def play(self, frames):
        """
        Send C{frames} (payloads already in this session's codec), one per
        tick, replacing any play in progress.  Fires True once the last
        frame is sent, False if stopped, replaced or closed first.
        """
        self.stop_playing()
        done = defer.Deferred()
        if self.closed:
            done.callback(False)
            return done
        frames = iter(frames)
        first = next(frames, None)
        if first is None:
            done.callback(True)
            return done
        self._frames = frames
        self._next_frame = first
        self._play_deferred = done
        return done

    def stop_playing(self):
        self._finish_play(False)

    def _finish_play(self, result):
        done = self._play_deferred
        self._frames = self._next_frame = self._play_deferred = None
        if done is not None:
            done.callback(result)

    def send_dtmf(self, digit, duration_ms=100):
        """
        Send one key press: RFC 4733 events on the negotiated
        telephone-event payload type, or the tones in the audio when the far
        end did not offer one.  Audio pauses meanwhile; presses queue.
        Fires True once sent, False if the session closed first.
        """
        if self.codec is None:
            raise ValueError("send_dtmf before set_remote: no codec yet")
        done = defer.Deferred()
        if self.closed:
            done.callback(False)
            return done
        if self._dtmf_payload_type is not None:
            payloads = [payload for _, payload in EventSender(digit, duration_ms).payloads()]
            press = _DTMFPress(payloads, self._dtmf_payload_type, True, done)
        else:
            encode = _CODECS[self.codec.encoding.upper()][2]
            tone = [encode(frame) for frame in dtmf_tone(digit, duration_ms)]
            press = _DTMFPress(tone + [self._silence] * _INBAND_GAP_FRAMES, self._payload_type, False, done)
        self._dtmf_queue.append(press)
        return done

    def feed(self, payload):
        """
        Live audio from elsewhere (the other leg of a bridge, a conference
        mix): C{payload}, one frame in this session's codec, goes out on
        this tick if the session has not ticked yet, else on the next.
        Each tick takes one frame whatever is sent, so a frame that a
        prompt, a key press or hold keeps off the wire is dropped, never
        sent late; a tick with nothing fed sends nothing (silence
        suppression), as an idle session does.
        """
        self._live.append(payload)

    def clear_feed(self):
        """Drop live frames not yet sent (the feeder is going away)."""
        self._live.clear()

    def echo(self, on=True):
        """Send every received frame back (with our SSRC, sequence and timestamps)."""
        self._echo = bool(on)

    @property
    def echoing(self):
        """Whether L{echo} is on: it takes precedence over fed audio."""
        return self._echo

    def _send(self, payload, payload_type, marker, timestamp):
        size = len(payload)
        try:
            pack = _PACKERS[size]
        except KeyError:
            pack = _new_packer(size)
        sequence = self._sequence
        second = payload_type | 0x80 if marker else payload_type
        packet = pack(_PLAIN_FIRST_OCTET, second, sequence, timestamp, self._ssrc, payload)
        self._sequence = (sequence + 1) & 0xFFFF
        self.packets_sent += 1
        self.octets_sent += size
        try:
            self._sendto(packet, self._target)
        except OSError as error:
            self._send_failed(error)

    def _send_failed(self, error):
        # A full socket buffer or an ICMP error from an earlier packet:
        # RTP is loss-tolerant, so count it and go on.
        self.send_errors += 1
        if self.send_errors == 1:
            self.log.warn(
                "RTP send from port {port} failed: {error}",
                port=self.local_port,
                error=errno.errorcode.get(error.errno, error),
            )

    # The shared clock.

    def on_tick(self, index, now):
        """One 20 ms step: play out a received frame, send one, keep house."""
        if self.closed:
            return
        received = None
        if self._receiving:
            received = self._jitter.pop()
            if received is None:
                received = self._silence
            if self._inband:
                for digit in self._detector.feed(self._decode(received)):
                    self._digit(digit, "inband", now)
            listener = self.audio_received
            if listener is not None:
                try:
                    listener(received, self.codec)
                except Exception:
                    self._callback_failed("audio_received")
        if self._events_pending_until is not None and now >= self._events_pending_until:
            # An event whose end packets were all lost ends here.
            self._events_pending_until = None
            for digit in self._event_receiver.flush(now):
                self._digit(digit, "rfc4733", now)
        if self.closed:
            return
        if self._watching:
            if self._heard:
                self._heard = False
                self._last_activity = now
            elif not self.on_hold and now - self._last_activity >= self._inactivity_timeout:
                self._went_inactive()
                if self.closed:
                    return
            if now >= self._rtcp_due:
                self._send_rtcp(now)
        live = self._live.popleft() if self._live else None
        sent = None
        if self._target is None or self.on_hold:
            self._talkspurt = True
        elif self._dtmf_queue:
            sent = self._send_dtmf_packet((self._timestamp_base + index * self._samples_per_tick) & 0xFFFFFFFF)
        else:
            playing = self._next_frame
            if playing is not None:
                sent = playing
                try:
                    self._next_frame = next(self._frames, None)
                except Exception as error:
                    self.log.failure("prompt frames failed on port {port}", port=self.local_port)
                    done = self._play_deferred
                    self._frames = self._next_frame = self._play_deferred = None
                    done.errback(error)
            elif self._echo and received is not None:
                sent = received
            else:
                sent = live
            if sent is None:
                # Silence suppression: nothing is sent, the timestamp
                # keeps counting the ticks, and the next packet starts
                # a talkspurt with the marker bit set (RFC 3551 §4.1).
                self._talkspurt = True
            else:
                # What _send does, written out: this is the packet of
                # nearly every tick of every call, and a Python call is
                # among the dearest things it does.
                second = self._payload_type
                if self._talkspurt:
                    self._talkspurt = False
                    second |= 0x80
                size = len(sent)
                try:
                    pack = _PACKERS[size]
                except KeyError:
                    pack = _new_packer(size)
                sequence = self._sequence
                packet = pack(
                    _PLAIN_FIRST_OCTET,
                    second,
                    sequence,
                    (self._timestamp_base + index * self._samples_per_tick) & 0xFFFFFFFF,
                    self._ssrc,
                    sent,
                )
                self._sequence = (sequence + 1) & 0xFFFF
                self.packets_sent += 1
                self.octets_sent += size
                try:
                    self._sendto(packet, self._target)
                except OSError as error:
                    self._send_failed(error)
                if playing is not None and self._next_frame is None:
                    self._finish_play(True)
        tap = self.tap
        if tap is not None:
            try:
                tap(index, received, sent)
            except Exception:
                self._callback_failed("tap")

    def _send_dtmf_packet(self, timestamp):
        """Send the next packet of the first press; its payload if it is audio."""
        press = self._dtmf_queue[0]
        if press.index == 0:
            press.timestamp = timestamp
        payload = press.payloads[press.index]
        if press.event:
            # RFC 4733 §2.5.1.2: the first packet of an event is marked.
            self._send(payload, press.payload_type, press.index == 0, press.timestamp)
            payload = None
        else:
            self._send(payload, press.payload_type, self._talkspurt, timestamp)
            self._talkspurt = False
        press.index += 1
        if press.index == len(press.payloads):
            del self._dtmf_queue[0]
            press.deferred.callback(True)
        return payload

    def _went_inactive(self):
        # Reported once: from here on the check never passes again.
        self._inactivity_timeout = float("inf")
        self.log.info(
            "no RTP on port {port} for {seconds} s",
            port=self.local_port,
            seconds=self.engine.inactivity_timeout,
        )
        if self.inactive is not None:
            try:
                self.inactive()
            except Exception:
                self._callback_failed("inactive")

    def _digit(self, digit, source, now):
        if self._deduplicator.accept(digit, source, now) and self.dtmf_received is not None:
            try:
                self.dtmf_received(digit)
            except Exception:
                self._callback_failed("dtmf_received")

    def _callback_failed(self, name):
        # Logged once per session: a callback that fails on every frame
        # would otherwise write fifty tracebacks a second.
        self.callback_failures += 1
        if self.callback_failures == 1:
            self.log.failure(
                "{callback} of media session on port {port} failed", callback=name, port=self.local_port
            )

    # Receiving.

    def rtp_received(self, data, address, now=None):
        """One datagram from the RTP socket; C{now} when the engine knows it."""
        if address == self._settled_source and len(data) >= 12:
            # The fast path: a plain, unmarked audio packet of the stream
            # already established from where we send.  The full path below
            # would take it the same way; this one skips the checks that
            # only the first packets need (codec, latching, a new SSRC).
            first, second, sequence, timestamp, ssrc = _PLAIN_HEADER.unpack_from(data)
            if first == _PLAIN_FIRST_OCTET and second == self._payload_type and ssrc == self._remote_ssrc:
                if now is None:
                    now = self._clock.seconds()
                self._receiver_stats.received_packet(sequence, timestamp, int(now * 8000))
                self.packets_received += 1
                self._heard = True
                self._jitter.push(sequence, data[12:])
                self._receiving = True
                return
        if self.codec is None or self.closed or len(data) < 12:
            self.packets_dropped += 1
            return
        if data[0] == _PLAIN_FIRST_OCTET:
            payload_type = data[1] & 0x7F
            sequence, timestamp, ssrc = _SEQUENCE_TIMESTAMP_SSRC.unpack_from(data, 2)
            payload = data[12:]
        else:
            try:
                packet = rtp.parse(data)
            except rtp.RTPError:
                self.packets_dropped += 1
                return
            payload_type, sequence, timestamp, ssrc, payload = packet[:5]
        if address != self._target and not self._latch(address, ssrc, sequence):
            self.packets_dropped += 1
            return
        if payload_type != self._payload_type and payload_type != self._dtmf_payload_type:
            # Comfort noise (RFC 3389) and anything not negotiated.
            self.packets_dropped += 1
            return
        if address == self.remote:
            # The far end is reachable where its SDP said: no NAT to latch
            # through, and nobody else may take the stream over.
            self._latch_armed = False
        if not self._latch_armed:
            # Only packets from here are accepted until the next set_remote.
            self._settled_source = address
        if now is None:
            now = self._clock.seconds()
        if ssrc != self._remote_ssrc:
            self._remote_ssrc = ssrc
            self._receiver_stats = rtp.RTPReceiverStats(ssrc)
            self._jitter.reset()
        self._receiver_stats.received_packet(sequence, timestamp, int(now * 8000))
        self.packets_received += 1
        self._heard = True
        if payload_type == self._payload_type:
            self._jitter.push(sequence, payload)
            self._receiving = True
            return
        try:
            digits = self._event_receiver.receive(
                rtp.RTPPacket(payload_type, sequence, timestamp, ssrc, payload), now
            )
        except TelephoneEventError:
            return
        self._events_pending_until = now + self._event_receiver.timeout
        for digit in digits:
            self._digit(digit, "rfc4733", now)

    def _latch(self, address, ssrc, sequence):
        """
        Whether a packet from C{address}, not where we send, is accepted:
        only when it completes L{LATCH_PACKETS} consecutive packets of one
        SSRC from that source before the SDP address has been heard from,
        and then our sending moves there (once per L{set_remote}).
        """
        if not self._latch_armed:
            return False
        if self._candidate == (address, ssrc) and sequence == (self._candidate_sequence + 1) & 0xFFFF:
            self._candidate_count += 1
        else:
            self._candidate = (address, ssrc)
            self._candidate_count = 1
        self._candidate_sequence = sequence
        if self._candidate_count < LATCH_PACKETS:
            return False
        self.log.info(
            "RTP on port {port} latched to {source} (SDP said {remote})",
            port=self.local_port,
            source=f"{address[0]}:{address[1]}",
            remote=f"{self.remote[0]}:{self.remote[1]}",
        )
        self._target = address
        self._rtcp_target = (address[0], address[1] + 1)
        self.latched = True
        self._latch_armed = False
        self._candidate = None
        return True

    # RTCP.

    def rtcp_received(self, data, address):
        if self.closed or self._target is None or address[0] != self._target[0]:
            return
        try:
            packets = rtp.parse_rtcp(data)
        except rtp.RTCPError:
            return
        # Symmetric RTCP (RFC 4961): answer where reports come from.
        self._rtcp_target = address
        now = self._clock.seconds()
        for packet in packets:
            if isinstance(packet, rtp.SenderReport) and packet.ssrc == self._remote_ssrc:
                self._receiver_stats.sender_report_received(packet.ntp_timestamp, now)
            if isinstance(packet, (rtp.SenderReport, rtp.ReceiverReport)):
                for block in packet.reports:
                    if block.ssrc == self._ssrc:
                        self.remote_report = block

    def _report(self, now):
        """Our compound report: SR if we sent since the last one, else RR, then SDES."""
        blocks = ()
        if self._receiver_stats is not None and not self._receiver_stats.probation:
            blocks = (self._receiver_stats.report_block(now),)
        if self.packets_sent != self._packets_at_last_report:
            self._packets_at_last_report = self.packets_sent
            index = self.engine.tick_index
            report = rtp.SenderReport(
                self._ssrc,
                rtp.ntp_timestamp(now),
                (self._timestamp_base + index * self._samples_per_tick) & 0xFFFFFFFF,
                self.packets_sent & 0xFFFFFFFF,
                self.octets_sent & 0xFFFFFFFF,
                blocks,
            )
        else:
            report = rtp.ReceiverReport(self._ssrc, blocks)
        return report.to_bytes() + _sdes_cname(self._ssrc, self._cname)

    def _send_rtcp(self, now, goodbye=False):
        self._rtcp_due = now + random.uniform(0.5, 1.5) * RTCP_INTERVAL
        if self._rtcp_target is None:
            return
        data = self._report(now)
        if goodbye:
            data += rtp.Goodbye((self._ssrc,)).to_bytes()
        try:
            self._rtcp_port.write(data, self._rtcp_target)
        except OSError:
            self.send_errors += 1

    # Lifecycle.

    @property
    def stats(self):
        receiver = self._receiver_stats
        return {
            "packets_sent": self.packets_sent,
            "packets_received": self.packets_received,
            "packets_lost": receiver.cumulative_lost if receiver is not None else 0,
            "jitter_ms": receiver.jitter / 8 if receiver is not None else 0.0,
            "remote": self._target[0] if self._target is not None else None,
            "remote_port": self._target[1] if self._target is not None else None,
            "latched": self.latched,
            "late_packets": self._jitter.late,
            "packets_dropped": self.packets_dropped,
            "send_errors": self.send_errors,
        }

    def add_close_hook(self, hook):
        """Call C{hook(session)} once when this session closes."""
        self._close_hooks.append(hook)

    def remove_close_hook(self, hook):
        """Forget a hook of L{add_close_hook}; one not (or no longer) added is ignored."""
        if hook in self._close_hooks:
            self._close_hooks.remove(hook)

    def close(self):
        """
        Release the ports and end every play and key press (their Deferreds
        fire False); no callback is called afterwards.  The close hooks run
        first, so a bridge or a recording lets go of the session while it
        is still whole.  The returned Deferred fires once both ports are
        free to bind again.
        """
        if self.closed:
            return defer.succeed(None)
        if self._target is not None:
            # RFC 3550 §6.6: say goodbye so the far end stops counting us.
            self._send_rtcp(self._clock.seconds(), goodbye=True)
        self.closed = True
        self._settled_source = None
        hooks, self._close_hooks = self._close_hooks, []
        for hook in hooks:
            try:
                hook(self)
            except Exception:
                self.log.failure("close hook of media session on port {port} failed", port=self.local_port)
        self.audio_received = self.dtmf_received = self.inactive = self.tap = None
        self._live.clear()
        self._finish_play(False)
        queue, self._dtmf_queue = self._dtmf_queue, []
        for press in queue:
            press.deferred.callback(False)
        self.engine.session_closed(self)
        return defer.gatherResults(
            [defer.maybeDeferred(port.stopListening) for port in (self._rtp_port, self._rtcp_port)]
        ).addCallback(lambda _: None)
