"""
The media engine: the RTP ports of every call and the one 20 ms clock that
paces all of them.

One process carries hundreds of calls, so nothing here is per call that
can be shared: a single timer drives every session's sending, receiving
side playout and housekeeping (RTCP, inactivity) once per tick, instead
of a timer per call or per stream.  Ticks are scheduled at
C{start + n * tick} on the injected clock, so lateness never accumulates
into the RTP timestamps; when the process falls more than
L{MAX_CATCH_UP_TICKS} behind, the missed ticks are skipped (and counted)
rather than sent in a burst the far end's jitter buffer would drop.

Incoming RTP is read on the tick too.  Sockets are bound with
C{reactor.listenUDP}, but the engine takes their RTP sockets out of the
reactor and, at the start of every tick, asks its own epoll (poll where
there is none) which of them hold packets and reads those dry.  A call
receives one packet per tick, so letting the reactor dispatch each one
separately (a wake-up, its logging context, two C{recvfrom}s) cost three
times the work of handling the packet; batched, it is one C{recvfrom} per
packet plus two epoll calls per tick for all sessions (the second finds
the sockets that still hold a packet, so none is read until EAGAIN).
The price is up to one tick of added delay before a packet enters the
jitter buffer, which holds three, and arrival times quantised to the
tick for the RFC 3550 jitter estimate.  RTCP, a packet every few
seconds, stays with the reactor.

Sockets come from C{reactor} and time from C{clock}; they are separate so
that tests can drive time with a L{twisted.internet.task.Clock} while
packets still cross real sockets, or give a fake reactor whose ports have
no socket: their packets are delivered through the protocol, as the
reactor would.
"""

import errno
import select
import socket

from twisted.internet.defer import gatherResults
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from callcenter.media.session import MediaSession, RTCPProtocol, RTPProtocol

# Up to this many ticks behind, the engine catches up by running the
# missed ticks back to back (a short burst a 60 ms jitter buffer absorbs);
# further behind, it skips them.
MAX_CATCH_UP_TICKS = 3

# At most this many packets are read from one socket in a tick, so that a
# flood on one port cannot stall the tick for every call; the rest wait
# for the next tick (or the kernel's buffer drops them).
MAX_READS_PER_TICK = 16
# Larger than any RTP packet of ours (12 + 160) with room for headers,
# extensions and other codecs' frames; bigger datagrams are truncated and
# then fail to parse or are dropped as not ours.
MAX_DATAGRAM = 2048


class MediaPortsExhausted(Exception):
    """Every RTP/RTCP port pair of the range is in use."""


def _host_and_port(recvfrom):
    """
    An IPv6 socket's C{recvfrom} giving (host, port), as Twisted's UDP port
    does, without the flow and scope IDs: sessions compare the source with
    the (host, port) of the SDP.
    """

    def receive(size):
        data, address = recvfrom(size)
        return data, address[:2]

    return receive


class MediaEngine:
    log = Logger()

    def __init__(
        self,
        reactor,
        clock,
        host="127.0.0.1",
        port_range=(20000, 29999),
        tick=0.020,
        inactivity_timeout=30.0,
        jitter_depth=3,
        inband_dtmf=True,
    ):
        first, last = port_range
        # RFC 3550 §11: RTP on an even port, RTCP on the next odd one.
        first += first % 2
        if first + 1 > last:
            raise ValueError(f"port range {port_range} holds no even/odd pair")
        self.reactor = reactor
        self.clock = clock
        self.host = host
        self.port_range = (first, last)
        self.tick = tick
        self.inactivity_timeout = inactivity_timeout
        self.jitter_depth = jitter_depth
        # Each new session's default for in-band DTMF detection: True,
        # False, or "auto" (only where the far end negotiated no
        # telephone-event).  The detector is by far the dearest work per
        # frame, about 50 µs on speech against some 15 µs for everything
        # else a session does with a packet each way.
        if inband_dtmf not in (True, False, "auto"):
            raise ValueError(f"inband_dtmf must be True, False or 'auto', not {inband_dtmf!r}")
        self.inband_dtmf = inband_dtmf
        self.samples_per_tick = round(8000 * tick)
        self.sessions = {}
        self.ticks = 0
        self.late_ticks = 0
        self.skipped_ticks = 0
        # Totals of closed sessions, so that the engine's counts survive them.
        self._closed_sent = 0
        self._closed_received = 0
        self._closed_send_errors = 0
        self._closed_dropped = 0
        self._next_port = first
        self._started_at = None
        # The index of the tick that runs next; its time is start + n * tick.
        self._tick_index = 0
        self._timer = None
        self._poller = None
        # fd -> (the socket's recvfrom, its session's rtp_received, the
        # session), for sockets we read.
        self._readers = {}
        self._tick_hooks = []

    @property
    def tick_index(self):
        """The index of the current tick since L{start}; RTP timestamps follow it."""
        return self._tick_index

    @property
    def stats(self):
        """
        Counters since the engine was made: ticks run, ticks run a whole
        tick or more late, ticks skipped, and RTP packets of every session.
        """
        sessions = self.sessions.values()
        return {
            "ticks": self.ticks,
            "late_ticks": self.late_ticks,
            "skipped_ticks": self.skipped_ticks,
            "sessions": len(self.sessions),
            "packets_sent": self._closed_sent + sum(s.packets_sent for s in sessions),
            "packets_received": self._closed_received + sum(s.packets_received for s in sessions),
            # Sends the kernel refused (full buffers, ICMP errors) and
            # packets we threw away (malformed, unlatched, not negotiated).
            "send_errors": self._closed_send_errors + sum(s.send_errors for s in sessions),
            "packets_dropped": self._closed_dropped + sum(s.packets_dropped for s in sessions),
        }

    def add_tick_hook(self, hook):
        """
        Call C{hook(index, now)} on every tick after every session's
        L{MediaSession.on_tick}: all the frames received in the tick are
        out by then (a conference mixes them there), and what the hook
        feeds the sessions goes out on the next tick.  Hooks run in the
        order they were added.
        """
        self._tick_hooks.append(hook)

    def remove_tick_hook(self, hook):
        """Stop calling C{hook}; one not (or no longer) added is ignored."""
        if hook in self._tick_hooks:
            self._tick_hooks.remove(hook)

    def start(self):
        if self._timer is not None:
            return
        self._started_at = self.clock.seconds()
        self._tick_index = 0
        self._timer = self.clock.callLater(0, self._run_tick)

    def stop(self):
        """Close every session and stop the clock; fires when the ports are released."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        return gatherResults([session.close() for session in list(self.sessions.values())])

    def _run_tick(self):
        now = self.clock.seconds()
        tick = self.tick
        due = self._started_at + self._tick_index * tick
        behind = int((now - due) / tick)
        if behind > 0:
            # Late by a whole tick or more: the process was busy.
            self.late_ticks += 1
            if behind > MAX_CATCH_UP_TICKS:
                if not self.skipped_ticks:
                    # Once: an overloaded process would log it every tick;
                    # the count is in the stats.
                    self.log.warn("media clock {behind} ticks behind: skipping ticks", behind=behind)
                self.skipped_ticks += behind
                self._tick_index += behind
        self.ticks += 1
        index = self._tick_index
        if self._readers:
            self._read_ready(now)
        for session in list(self.sessions.values()):
            try:
                session.on_tick(index, now)
            except Exception:
                self.log.failure("media session on port {port} failed its tick", port=session.local_port)
        if self._tick_hooks:
            for hook in tuple(self._tick_hooks):
                try:
                    hook(index, now)
                except Exception:
                    self.log.failure("tick hook {hook!r} failed", hook=hook)
        self._tick_index = index + 1
        if self._timer is not None:
            next_due = self._started_at + self._tick_index * tick
            self._timer = self.clock.callLater(max(0.0, next_due - self.clock.seconds()), self._run_tick)

    def open_session(self):
        """
        A L{MediaSession} on the next free even port of the range, its RTCP
        port bound too; L{MediaPortsExhausted} when none is free.
        """
        first, last = self.port_range
        pairs = (last + 1 - first) // 2
        # Ports are handed out round-robin rather than lowest-first so that
        # a port just released is not reused at once, while stray packets of
        # its last call may still be on their way.
        for _ in range(pairs):
            port = self._next_port
            self._next_port = port + 2 if port + 3 <= last else first
            if port in self.sessions:
                continue
            session = MediaSession(self, port)
            rtp_port = self._listen(port, RTPProtocol(session))
            if rtp_port is None:
                continue
            rtcp_port = self._listen(port + 1, RTCPProtocol(session))
            if rtcp_port is None:
                rtp_port.stopListening()
                continue
            session.attach(rtp_port, rtcp_port)
            self._read_ourselves(rtp_port, session)
            self.sessions[port] = session
            return session
        raise MediaPortsExhausted(f"no free RTP port pair in {first}-{last}")

    def _listen(self, port, protocol):
        try:
            return self.reactor.listenUDP(port, protocol, interface=self.host)
        except CannotListenError as error:
            if getattr(error.socketError, "errno", errno.EADDRINUSE) != errno.EADDRINUSE:
                raise
            return None

    def _read_ourselves(self, port, session):
        sock = getattr(port, "socket", None)
        if sock is None:
            return
        if self._poller is None:
            self._poller = select.epoll() if hasattr(select, "epoll") else select.poll()
        port.stopReading()
        fd = sock.fileno()
        self._poller.register(fd, select.POLLIN)
        recvfrom = sock.recvfrom
        if sock.family == socket.AF_INET6:
            recvfrom = _host_and_port(recvfrom)
        self._readers[fd] = (recvfrom, session.rtp_received, session)
        session.rtp_fd = fd

    def _read_ready(self, now):
        """
        One packet from each socket that has any, then again from those
        that still have more, up to L{MAX_READS_PER_TICK} rounds.  A call
        sends one packet a tick, so the first round almost always empties
        every socket, and asking epoll once more costs one system call for
        all of them, where reading each socket until it says EAGAIN would
        cost a failing C{recvfrom} and a Python exception per socket.
        """
        readers = self._readers
        poll = self._poller.poll
        for _ in range(MAX_READS_PER_TICK):
            ready = poll(0)
            if not ready:
                return
            for fd, _ in ready:
                reader = readers.get(fd)
                if reader is None:
                    continue
                recvfrom, received, session = reader
                try:
                    data, address = recvfrom(MAX_DATAGRAM)
                except OSError:
                    # Raced away, or an ICMP error reported on the socket.
                    continue
                try:
                    received(data, address, now)
                except Exception:
                    self.log.failure(
                        "RTP from {address} on port {port}", address=address, port=session.local_port
                    )

    def session_closed(self, session):
        """Called by a session as it closes."""
        fd = getattr(session, "rtp_fd", None)
        if fd is not None and self._readers.pop(fd, None) is not None:
            self._poller.unregister(fd)
        if self.sessions.get(session.local_port) is session:
            del self.sessions[session.local_port]
            self._closed_sent += session.packets_sent
            self._closed_received += session.packets_received
            self._closed_send_errors += session.send_errors
            self._closed_dropped += session.packets_dropped
