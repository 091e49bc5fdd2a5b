"""
One SMPP 3.4 link, ESME side, bound as a transceiver (§2.2): it submits
segments, hears their submit_sm_resp, and takes the SMSC's deliver_sm
(receipts, mobile-originated messages).  What to send and what to do with
the answers is its handler's business (L{callcenter.notify.smpp.sender}).

 - Bind: bind_transceiver at connection, within C{bind_timeout}; a
   refusal (a wrong password) is logged, told to the handler, and the
   link closed: the handler's C{ClientService} reconnects with backoff.
 - Window: at most C{window} submit_sm without their response (§2.5: the
   ESME may have several outstanding); each answered within
   C{response_timeout} or failed as temporary (the window slot is freed:
   a late answer is logged and dropped).
 - command_status: ESME_RTHROTTLED fails the segment with C{retry_after}
   and holds all sending for C{throttle_pause}; the statuses of
   L{TEMPORARY_STATUSES} describe the SMSC's state, not the message, and
   are temporary; every other status is the message's fault: permanent.
 - Keep-alive: an enquire_link every C{enquire_link_interval} s, the link
   dropped if it is not answered within C{enquire_link_timeout} (§4.11);
   the SMSC's enquire_link and unbind are answered.
 - A lost link fails every segment still in flight as temporary: the
   outbox sends them again (the SMSC may have taken some: SMPP cannot say).
 - Garbage: a command_length out of range loses the framing (generic_nack
   ESME_RINVCMDLEN, §3.3, and the link is closed); a body that does not
   parse is refused with generic_nack and the link kept; an unknown
   request gets generic_nack ESME_RINVCMDID.  Each is logged, a few lines
   per kind every ten seconds.  No exception leaves L{dataReceived}.

Timers run on the injected clock.  The response timeouts share one timer:
segments are in the in-flight dict in the order they were sent, with
deadlines in the same order, so the timer only ever waits for the first.
"""

import struct
from dataclasses import dataclass

from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from callcenter.notify.message import PermanentFailure, TemporaryFailure
from callcenter.notify.smpp import pdu
from callcenter.notify.smpp.pdu import (
    BIND_TRANSCEIVER,
    BIND_TRANSCEIVER_RESP,
    DELIVER_SM,
    DELIVER_SM_RESP,
    ENQUIRE_LINK,
    ENQUIRE_LINK_RESP,
    ESME_RINVCMDID,
    ESME_RINVCMDLEN,
    ESME_ROK,
    ESME_RTHROTTLED,
    ESME_RX_T_APPN,
    GENERIC_NACK,
    HEADER_LENGTH,
    MAX_COMMAND_LENGTH,
    RESPONSE,
    SUBMIT_SM_RESP,
    UNBIND,
    UNBIND_RESP,
    MalformedPDU,
    status_name,
)
from callcenter.notify.smpp.receipts import MalformedReceipt, is_receipt, parse_receipt
from callcenter.notify.smpp.text import decode_text
from callcenter.radius.limits import LogThrottle

# The SMSC's state, not the message's: worth sending again later.
# RINVBNDSTS (not bound, as it sees it) and RX_T_APPN (a temporary error
# in the SMSC's application) are link trouble too.
TEMPORARY_STATUSES = frozenset({
    pdu.ESME_RINVBNDSTS,
    pdu.ESME_RSYSERR,
    pdu.ESME_RMSGQFUL,
    pdu.ESME_RTHROTTLED,
    pdu.ESME_RX_T_APPN,
})

_REST_OF_HEADER = struct.Struct(">III")
_LENGTH = struct.Struct(">I")
_MAX_SEQUENCE = 0x7FFFFFFF  # §3.2: 0x00000001 to 0x7FFFFFFF

# DRAINING: our graceful unbind, waiting for the responses still due;
# CLOSING: the connection is being closed, nothing more is sent.
CONNECTING, BINDING, BOUND, DRAINING, CLOSING, CLOSED = (
    "connecting", "binding", "bound", "draining", "closing", "closed"
)


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """What every link of one SMSC account shares."""

    system_id: str
    password: str
    system_type: str = ""
    source_addr: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    service_type: str = ""
    window: int = 100
    enquire_link_interval: float = 30.0
    enquire_link_timeout: float = 10.0
    response_timeout: float = 30.0
    bind_timeout: float = 10.0
    unbind_timeout: float = 5.0
    throttle_pause: float = 1.0
    # §5.2.17: 1 asks for a receipt on final delivery, success or failure.
    registered_delivery: int = 1

    def __post_init__(self):
        # Encoding once says now, at configuration, what would fail at bind.
        pdu.encode_bind(BIND_TRANSCEIVER, 1, self.bind())
        pdu.SubmitEncoder(self.source_addr, self.source_addr_ton, self.source_addr_npi, self.service_type)
        if self.window < 1:
            raise ValueError(f"window {self.window}: at least 1")
        for name in ("enquire_link_interval", "enquire_link_timeout", "response_timeout", "bind_timeout",
                     "unbind_timeout", "throttle_pause"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")

    def bind(self):
        return pdu.Bind(self.system_id, self.password, self.system_type)


class ESMEProtocol(Protocol):
    """
    One connection to the SMSC.  C{handler} is told: C{link_bound(link)},
    C{bind_refused(link, status)} (status None: no answer in time),
    C{link_lost(link, reason)}, C{link_ready(link)} (a window slot freed or
    a throttling pause over: try L{can_submit} again), C{receipt(receipt)}
    (may return a Deferred: the deliver_sm is answered when it fires, with
    ESME_RX_T_APPN if it fails so that the SMSC delivers it again) and
    C{mobile_originated(source_addr, text, sm)}.

    A submitted segment's C{waiter} is told C{waiter.accepted(tag,
    message_id)} or C{waiter.failed(tag, error)} (a L{TemporaryFailure} or
    L{PermanentFailure}), exactly once, unless the waiter is gone with the
    link.
    """

    log = Logger()

    def __init__(self, settings, clock, handler):
        self.settings = settings
        self._clock = clock
        self._handler = handler
        self._window = settings.window
        self._response_timeout = settings.response_timeout
        self._encoder = pdu.SubmitEncoder(
            settings.source_addr, settings.source_addr_ton, settings.source_addr_npi,
            settings.service_type, settings.registered_delivery,
        )
        self.state = CONNECTING
        self._buffer = b""
        self._sequence = 0
        self._in_flight = {}  # sequence_number -> (waiter, tag, deadline), in sending order
        self._expiry_call = None
        self._bind_sequence = None
        self._bind_call = None
        self._enquire_call = None
        self._enquire_sequence = None
        self._enquire_timeout_call = None
        self._resume_call = None
        self._drain_call = None
        self._unbind_sequence = None
        self._unbind_call = None
        self._closed = None
        self._abort_call = None
        self._log_throttle = LogThrottle(clock)

    # Link state

    @property
    def in_flight(self):
        return len(self._in_flight)

    def can_submit(self):
        """Bound, not throttled, and a window slot free."""
        return self.state is BOUND and self._resume_call is None and len(self._in_flight) < self._window

    def connectionMade(self):
        self.state = BINDING
        self._bind_sequence = self._next_sequence()
        self.transport.write(pdu.encode_bind(BIND_TRANSCEIVER, self._bind_sequence, self.settings.bind()))
        self._bind_call = self._clock.callLater(self.settings.bind_timeout, self._bind_timed_out)

    def connectionLost(self, reason):
        was = self.state
        self.state = CLOSED
        for name in ("_expiry_call", "_bind_call", "_enquire_call", "_enquire_timeout_call", "_resume_call",
                     "_drain_call", "_unbind_call", "_abort_call"):
            call = getattr(self, name)
            if call is not None and call.active():
                call.cancel()
            setattr(self, name, None)
        in_flight, self._in_flight = self._in_flight, {}
        if was in (BOUND, DRAINING) or in_flight:
            self.log.info(
                "SMPP link to {system_id} closed ({reason}); {count} submit_sm in flight fail as temporary",
                system_id=self.settings.system_id, reason=reason.getErrorMessage(), count=len(in_flight),
            )
        self._handler.link_lost(self, reason)
        why = f"SMPP link lost before submit_sm_resp: {reason.getErrorMessage()}"
        for waiter, tag, _ in in_flight.values():
            self._tell(waiter.failed, tag, TemporaryFailure(why))
        if self._closed is not None:
            closed, self._closed = self._closed, None
            closed.callback(None)

    def unbind(self, drain_timeout=5.0):
        """
        Close gracefully: no new submits; the responses still due are
        awaited (at most C{drain_timeout} s), then unbind (§4.2), then the
        connection is closed.  Fires when it is.
        """
        if self.state is CLOSED:
            return defer.succeed(None)
        if self._closed is None:
            self._closed = defer.Deferred()
        closed = self._closed
        if self.state is not BOUND:
            self._close()
            return closed
        self.state = DRAINING
        if self._in_flight:
            self._drain_call = self._clock.callLater(drain_timeout, self._send_unbind)
        else:
            self._send_unbind()
        return closed

    def _send_unbind(self):
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        self._drain_call = None
        if self.state is not DRAINING or self._unbind_sequence is not None:
            return
        self._unbind_sequence = self._next_sequence()
        self.transport.write(pdu.header(UNBIND, ESME_ROK, self._unbind_sequence))
        self._unbind_call = self._clock.callLater(self.settings.unbind_timeout, self._unbind_timed_out)

    def _unbind_timed_out(self):
        self._unbind_call = None
        self.log.warn("SMSC did not answer unbind within {timeout} s: closing", timeout=self.settings.unbind_timeout)
        self.transport.abortConnection()

    def _close(self):
        """
        Close after what is written is sent; abort if that takes longer
        than C{unbind_timeout} (an SMSC that stopped reading must not hold
        a stop forever).
        """
        if self._abort_call is None and self.state is not CLOSED:
            self._abort_call = self._clock.callLater(self.settings.unbind_timeout, self._abort)
        self.transport.loseConnection()

    def _abort(self):
        self._abort_call = None
        self.transport.abortConnection()

    def _next_sequence(self):
        self._sequence = self._sequence % _MAX_SEQUENCE + 1
        return self._sequence

    # Sending

    def submit(self, dest_addr_ton, dest_addr_npi, destination_addr, esm_class, data_coding, short_message, waiter,
               tag):
        """
        Send one submit_sm (the caller checked L{can_submit}).
        C{destination_addr} as ASCII octets.
        """
        sequence = self._sequence = self._sequence % _MAX_SEQUENCE + 1
        self.transport.write(self._encoder.encode(
            sequence, dest_addr_ton, dest_addr_npi, destination_addr, esm_class, data_coding, short_message
        ))
        self._in_flight[sequence] = (waiter, tag, self._clock.seconds() + self._response_timeout)
        if self._expiry_call is None:
            self._expiry_call = self._clock.callLater(self._response_timeout, self._expire)

    def _expire(self):
        self._expiry_call = None
        now = self._clock.seconds()
        expired = []
        for sequence, (_, _, deadline) in self._in_flight.items():
            if deadline > now:
                break
            expired.append(sequence)
        for sequence in expired:
            entry = self._in_flight.pop(sequence, None)
            if entry is None:
                continue  # answered or failed meanwhile, by a waiter's own doing
            waiter, tag, _ = entry
            self._note("timeout", "no submit_sm_resp to sequence {sequence} within {timeout} s",
                       sequence=sequence, timeout=self._response_timeout)
            self._tell(waiter.failed, tag, TemporaryFailure(f"no submit_sm_resp within {self._response_timeout} s"))
        # A waiter told above may have submitted again (and armed a timer
        # for its own, later, deadline): wait for the earliest one.
        if self._expiry_call is not None:
            self._expiry_call.cancel()
            self._expiry_call = None
        if self._in_flight and self.state is not CLOSED:
            first = next(iter(self._in_flight.values()))[2]
            self._expiry_call = self._clock.callLater(max(0.0, first - now), self._expire)
        if expired:
            self._freed()

    def _freed(self):
        if self.state is DRAINING and not self._in_flight:
            self._send_unbind()
        elif self.state is BOUND:
            self._handler.link_ready(self)

    # Receiving

    def dataReceived(self, data):
        if self.state is CLOSING or self.state is CLOSED:
            return  # after garbage or a refusal: nothing more is read
        buffer = self._buffer + data if self._buffer else data
        offset, total = 0, len(buffer)
        answered = False
        try:
            while total - offset >= HEADER_LENGTH and self.state is not CLOSING and self.state is not CLOSED:
                length = _LENGTH.unpack_from(buffer, offset)[0]
                command_id, status, sequence = _REST_OF_HEADER.unpack_from(buffer, offset + 4)
                if length < HEADER_LENGTH or length > MAX_COMMAND_LENGTH:
                    self._framing_lost(length, sequence)
                    return
                end = offset + length
                if end > total:
                    break
                body = buffer[offset + HEADER_LENGTH:end]
                offset = end
                if command_id == SUBMIT_SM_RESP:
                    self._submit_answered(status, sequence, body)
                    answered = True
                else:
                    self._received(command_id, status, sequence, body)
            self._buffer = buffer[offset:] if offset < total else b""
            if answered:
                self._freed()
        except Exception:
            # A bug must cost this link, never the process: the in-flight
            # segments fail as temporary and ClientService reconnects.
            self._buffer = b""
            self.log.failure("SMPP link to {system_id}: received data not handled; closing",
                             system_id=self.settings.system_id)
            if self.state is not CLOSED:
                self.state = CLOSING
                self.transport.abortConnection()

    def _framing_lost(self, length, sequence):
        self._buffer = b""
        self._note("framing", "command_length {length} out of range (16 to {maximum}): closing the link",
                   length=length, maximum=MAX_COMMAND_LENGTH)
        self.transport.write(pdu.header(GENERIC_NACK, ESME_RINVCMDLEN, sequence))
        self.state = CLOSING
        self._close()

    def _submit_answered(self, status, sequence, body):
        entry = self._in_flight.pop(sequence, None)
        if entry is None:
            self._note("unexpected", "submit_sm_resp to sequence {sequence} that is not in flight (late?)",
                       sequence=sequence)
            return
        waiter, tag, _ = entry
        if status == ESME_ROK:
            waiter.accepted(tag, pdu.decode_message_id(body))
        else:
            waiter.failed(tag, self._refusal(status))

    def _refusal(self, status):
        name = status_name(status)
        if status == ESME_RTHROTTLED:
            pause = self.settings.throttle_pause
            if self._resume_call is None and self.state is not CLOSED:
                self.log.info("SMSC throttling (ESME_RTHROTTLED): pausing submits for {pause} s", pause=pause)
                self._resume_call = self._clock.callLater(pause, self._resume)
            return TemporaryFailure(f"submit_sm refused: {name}", retry_after=pause)
        if status in TEMPORARY_STATUSES:
            return TemporaryFailure(f"submit_sm refused: {name}")
        return PermanentFailure(f"submit_sm refused: {name}")

    def _resume(self):
        self._resume_call = None
        if self.state is BOUND:
            self._handler.link_ready(self)

    def _received(self, command_id, status, sequence, body):
        if command_id == DELIVER_SM:
            self._deliver_sm(sequence, body)
        elif command_id == ENQUIRE_LINK:
            self.transport.write(pdu.header(ENQUIRE_LINK_RESP, ESME_ROK, sequence))
        elif command_id == ENQUIRE_LINK_RESP:
            self._enquire_answered(sequence)
        elif command_id == BIND_TRANSCEIVER_RESP:
            self._bind_answered(status, sequence, body)
        elif command_id == UNBIND:
            # §4.2: answer, then the SMSC closes; close too in case it does not.
            self.log.info("SMSC unbinds the link to {system_id}", system_id=self.settings.system_id)
            self.transport.write(pdu.header(UNBIND_RESP, ESME_ROK, sequence))
            self.state = CLOSING
            self._close()
        elif command_id == UNBIND_RESP:
            if sequence == self._unbind_sequence:
                self._close()
        elif command_id == GENERIC_NACK:
            self._nacked(status, sequence)
        elif command_id == pdu.ALERT_NOTIFICATION:
            pass  # §4.12: no response; nothing here needs it
        elif command_id & RESPONSE:
            self._note("unexpected", "unexpected {command} (sequence {sequence})",
                       command=pdu.COMMAND_NAMES.get(command_id, f"0x{command_id:08X}"), sequence=sequence)
        else:
            self._note("unknown", "request {command} not supported: generic_nack",
                       command=pdu.COMMAND_NAMES.get(command_id, f"0x{command_id:08X}"))
            self.transport.write(pdu.header(GENERIC_NACK, ESME_RINVCMDID, sequence))

    def _bind_answered(self, status, sequence, body):
        if sequence != self._bind_sequence or self.state is not BINDING:
            self._note("unexpected", "bind_transceiver_resp out of turn (sequence {sequence})", sequence=sequence)
            return
        if self._bind_call is not None and self._bind_call.active():
            self._bind_call.cancel()
        self._bind_call = None
        if status != ESME_ROK:
            self.log.error(
                "SMSC refused bind_transceiver as {system_id!r}: {status}. Check the SMPP account "
                "(system_id, password, system_type); retrying with backoff.",
                system_id=self.settings.system_id, status=status_name(status),
            )
            self.state = CLOSING
            self._handler.bind_refused(self, status)
            self._close()
            return
        smsc_id = pdu.decode_bind_response(body)[0]
        self.state = BOUND
        self.log.info("SMPP link bound as {system_id!r} to SMSC {smsc!r}", system_id=self.settings.system_id,
                      smsc=smsc_id)
        self._enquire_call = self._clock.callLater(self.settings.enquire_link_interval, self._enquire)
        self._handler.link_bound(self)

    def _bind_timed_out(self):
        self._bind_call = None
        self.log.error("SMSC did not answer bind_transceiver within {timeout} s; retrying with backoff",
                       timeout=self.settings.bind_timeout)
        self.state = CLOSING
        self._handler.bind_refused(self, None)
        self.transport.abortConnection()

    def _enquire(self):
        self._enquire_call = None
        self._enquire_sequence = self._next_sequence()
        self.transport.write(pdu.header(ENQUIRE_LINK, ESME_ROK, self._enquire_sequence))
        self._enquire_timeout_call = self._clock.callLater(self.settings.enquire_link_timeout, self._enquire_timed_out)

    def _enquire_answered(self, sequence):
        if sequence != self._enquire_sequence or self._enquire_timeout_call is None:
            return
        self._enquire_timeout_call.cancel()
        self._enquire_timeout_call = None
        self._enquire_sequence = None
        if self.state is BOUND:
            self._enquire_call = self._clock.callLater(self.settings.enquire_link_interval, self._enquire)

    def _enquire_timed_out(self):
        self._enquire_timeout_call = None
        self.log.warn("SMSC did not answer enquire_link within {timeout} s: dropping the link",
                      timeout=self.settings.enquire_link_timeout)
        self.transport.abortConnection()

    def _nacked(self, status, sequence):
        entry = self._in_flight.pop(sequence, None)
        if entry is not None:
            waiter, tag, _ = entry
            waiter.failed(tag, self._refusal(status))
            self._freed()
        elif sequence == self._enquire_sequence:
            self._enquire_answered(sequence)  # it answered: the link is alive
        elif sequence == self._bind_sequence and self.state is BINDING:
            self._bind_answered(status or pdu.ESME_RBINDFAIL, sequence, b"")
        else:
            self._note("nack", "generic_nack {status} to sequence {sequence}", status=status_name(status),
                       sequence=sequence)

    def _deliver_sm(self, sequence, body):
        try:
            sm = pdu.decode_short_message(body)
        except MalformedPDU as e:
            self._note("malformed", "deliver_sm that does not parse ({error}): generic_nack", error=str(e))
            self.transport.write(pdu.header(GENERIC_NACK, ESME_RINVCMDLEN, sequence))
            return
        if not is_receipt(sm.esm_class):
            text = decode_text(sm.data_coding, sm.short_message, bool(sm.esm_class & pdu.ESM_UDHI))
            self.log.info("SMS from {source}: {text!r}", source=sm.source_addr, text=text)
            self._answer_deliver(sequence, self._ask(self._handler.mobile_originated, sm.source_addr, text, sm))
            return
        try:
            receipt = parse_receipt(sm)
        except MalformedReceipt as e:
            # Acknowledged all the same: the SMSC would send it again, just as unreadable.
            self._note("receipt", "{error}", error=str(e))
            self.transport.write(pdu.encode_message_id_response(DELIVER_SM_RESP, ESME_ROK, sequence))
            return
        self._answer_deliver(sequence, self._ask(self._handler.receipt, receipt))

    def _answer_deliver(self, sequence, result):
        if not isinstance(result, defer.Deferred):
            self.transport.write(pdu.encode_message_id_response(DELIVER_SM_RESP, ESME_ROK, sequence))
            return

        def answer(outcome):
            if self.state is CLOSED:
                return None  # the SMSC sends it again on the next link
            failed = isinstance(outcome, Failure)
            if failed:
                self.log.failure("deliver_sm not recorded: asking the SMSC to send it again", outcome)
            status = ESME_RX_T_APPN if failed else ESME_ROK
            self.transport.write(pdu.encode_message_id_response(DELIVER_SM_RESP, status, sequence))
            return None

        result.addBoth(answer)

    def _ask(self, function, *args):
        """C{function(*args)}, or a failed Deferred if it raised."""
        try:
            return function(*args)
        except Exception:
            return defer.fail()

    def _tell(self, function, *args):
        try:
            function(*args)
        except Exception:
            self.log.failure("SMPP: a waiter failed")

    def _note(self, kind, fmt, **fields):
        suppressed = self._log_throttle.admit(kind)
        if suppressed is None:
            return
        if suppressed:
            fmt += " ({suppressed} more not logged)"
        self.log.warn("SMPP link to {system_id}: " + fmt, system_id=self.settings.system_id,
                      suppressed=suppressed, **fields)


class ESMEFactory(Factory):
    """Links for C{handler}, none once its C{accepting_links} is false (it is stopping)."""

    protocol = ESMEProtocol
    noisy = False  # the links' own lines say more than "Starting factory" at every reconnect

    def __init__(self, settings, clock, handler):
        self.settings = settings
        self.clock = clock
        self.handler = handler

    def buildProtocol(self, addr):
        if not self.handler.accepting_links:
            return None
        link = self.protocol(self.settings, self.clock, self.handler)
        link.factory = self
        return link
