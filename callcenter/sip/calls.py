"""
Incoming calls: the UAS side of INVITE (RFC 3261 §13.3) with SDP
offer/answer (RFC 3264) and our media engine anchoring the audio.  Each call
is an L{IChannel} that the applications (echo test, tones, IVR) drive.
"""

import secrets

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from callcenter.interfaces import IChannel
from callcenter.log import bind, new_correlation_id
from callcenter.media.dtmf import DigitDeduplicator
from callcenter.sip import sdp
from callcenter.sip.dialog import Dialog
from callcenter.sip.message import make_response
from callcenter.sip.transaction import ClientOwner, new_branch

# How a call that we end before answering is refused, by reason.
_REFUSALS = {
    "busy": (486, "Busy Here"),
    "rejected": (603, "Decline"),
    "unavailable": (480, "Temporarily Unavailable"),
    "normal": (480, "Temporarily Unavailable"),
    "error": (500, "Server Internal Error"),
}


@implementer(IChannel)
class InboundCall(ClientOwner):
    """
    One incoming call from offer to BYE.  States: offered (INVITE in
    hand, 1xx sent), answered (200 sent), confirmed (ACKed), ended.
    """

    log = Logger()

    def __init__(self, calls, transaction, invite, caller, session, negotiated, offer):
        self._calls = calls
        self._transaction = transaction
        self._invite = invite
        self._session = session
        self._negotiated = negotiated
        self._offer = offer
        self._session_id = secrets.randbelow(2**31)
        self._session_version = 0
        self._digits = []
        self._digit_waiter = None
        self._dedup = DigitDeduplicator(0.2)
        self._acked = None
        self._bye_pending = False
        self.state = "offered"
        self.call_id = invite.call_id
        self.correlation_id = new_correlation_id()
        self.caller = caller
        self.dialled = invite.sip_uri.user if hasattr(invite.sip_uri, "user") else None
        self.ended = defer.Deferred()
        self.reply_to = transaction.destination
        self.dialog = Dialog(invite, secrets.token_hex(6), calls.local_contact(self.reply_to))
        self.log = bind(self.log, cid=self.correlation_id)
        session.dtmf_received = self._dtmf
        session.inactive = self._media_inactive

    @property
    def key(self):
        return self.dialog.key

    @property
    def codec(self):
        return self._negotiated.codec

    # IChannel

    def ringing(self):
        if self.state == "offered":
            self._transaction.respond(180, to_tag=self.dialog.local_tag)

    def answer(self):
        if self.state != "offered":
            return defer.fail(RuntimeError(f"cannot answer a call that is {self.state}"))
        self._session.set_remote(
            self._negotiated.remote_address, self._negotiated.remote_port, self._negotiated.codec
        )
        self._session.hold(self._negotiated.on_hold)
        response = make_response(self._invite, 200, to_tag=self.dialog.local_tag)
        response.headers.add("Contact", f"<{self.dialog.local_contact}>")
        response.headers.add("Allow", self._calls.allowed)
        response.headers.add("Content-Type", "application/sdp")
        response.body = self._answer_sdp()
        self._transaction.respond(response)
        self.state = "answered"
        self._acked = defer.Deferred()
        self.log.info(
            "answered {dialled} from {caller} ({codec})",
            dialled=self.dialled,
            caller=self.caller.number,
            codec=self.codec.encoding,
        )
        return self._acked

    def play(self, frames):
        if self.state == "ended":
            return defer.succeed(False)
        return self._session.play(frames)

    def stop_playing(self):
        self._session.stop_playing()

    def echo(self):
        self._session.echo()

    def collect_digits(self, maximum, first_timeout, inter_digit_timeout, terminators="#"):
        """Digits pressed during a prompt are kept: callers type ahead."""
        waiter = _DigitCollector(self._calls.clock, maximum, first_timeout, inter_digit_timeout, terminators)
        self._digit_waiter = waiter
        while self._digits and not waiter.done:
            waiter.digit(self._digits.pop(0))
        if self.state == "ended":
            waiter.finish()
        return waiter.result

    def hangup(self, reason="normal"):
        if self.state == "offered":
            status, phrase = _REFUSALS.get(reason, _REFUSALS["normal"])
            self._transaction.respond(status, phrase, to_tag=self.dialog.local_tag)
        elif self.state == "answered":
            # RFC 3261 §15: no BYE before the ACK of our 2xx (or its
            # timeout); it goes out when that comes.
            self._bye_pending = True
        elif self.state == "confirmed":
            self._send_bye()
        self._end(reason)

    def _send_bye(self):
        bye = self.dialog.request("BYE", self._calls.via(self.reply_to))
        self._calls.layer.send_request(bye, self.reply_to, self.reply_to.reliable, self)

    # From the network

    def acked(self):
        if self._bye_pending:
            self._send_pending_bye()
        elif self.state == "answered":
            self.state = "confirmed"
            self._acked.callback(None)

    def ack_missing(self):
        # §13.3.1.4: a 2xx never ACKed ends the call with a BYE.
        if self._bye_pending:
            self._send_pending_bye()
        elif self.state == "answered":
            self.log.warn("no ACK for our 200 OK; hanging up")
            self.hangup("no ACK")
            self._send_pending_bye()

    def _send_pending_bye(self):
        self._bye_pending = False
        self._send_bye()
        self._calls.forget(self)

    def cancelled(self):
        if self.state == "offered":
            self._transaction.respond(487, "Request Terminated", to_tag=self.dialog.local_tag)
            self._end("cancelled")

    def in_dialog_request(self, transaction, request):
        if not self.dialog.accepts(request):
            transaction.respond(500, "Server Internal Error - CSeq Out of Order")
            return
        method = request.method
        if method == "BYE":
            transaction.respond(200)
            self._end("caller hung up")
        elif method == "INVITE":
            self._reinvite(transaction, request)
        elif method == "INFO":
            self._info(transaction, request)
        elif method == "OPTIONS":
            response = make_response(request, 200)
            response.headers.add("Allow", self._calls.allowed)
            transaction.respond(response)
        else:
            response = make_response(request, 405)
            response.headers.add("Allow", self._calls.allowed)
            transaction.respond(response)

    def _reinvite(self, transaction, request):
        """Hold and resume (RFC 3264 §8.4): answer the new offer, keep the codec."""
        if not request.body:
            transaction.respond(488, "Not Acceptable Here")  # No offer-less re-INVITE (yet).
            return
        try:
            offer = sdp.SessionDescription.parse(request.body)
            _, negotiated = sdp.answer(
                offer, self._calls.media_address, self._session.local_port, self._session_id, 1,
                supported=(self.codec.encoding,),
            )
        except (sdp.SDPError, sdp.NoCommonCodec) as e:
            self.log.info("re-INVITE refused: {why}", why=str(e))
            transaction.respond(488, "Not Acceptable Here")
            return
        self._offer, self._negotiated = offer, negotiated
        self._session.set_remote(negotiated.remote_address, negotiated.remote_port, negotiated.codec)
        self._session.hold(negotiated.on_hold)
        response = make_response(request, 200)
        response.headers.add("Contact", f"<{self.dialog.local_contact}>")
        response.headers.add("Content-Type", "application/sdp")
        response.body = self._answer_sdp()
        transaction.respond(response)
        self.log.info("call {state}", state="on hold" if negotiated.on_hold else "resumed")

    def _info(self, transaction, request):
        """DTMF in SIP INFO: application/dtmf-relay (Signal=5) or application/dtmf (5)."""
        kind = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        digit = None
        text = request.body.decode("ascii", "replace")
        if kind == "application/dtmf-relay":
            for line in text.splitlines():
                name, _, value = line.partition("=")
                if name.strip().lower() == "signal":
                    digit = value.strip()
        elif kind == "application/dtmf":
            digit = text.strip()
        if digit and len(digit) == 1 and digit.upper() in "0123456789*#ABCD":
            self._dtmf(digit.upper(), source="info")
            transaction.respond(200)
        else:
            transaction.respond(415, "Unsupported Media Type")

    def _answer_sdp(self):
        self._session_version += 1
        direction = "recvonly" if self._negotiated.on_hold else "sendrecv"
        answer, _ = sdp.answer(
            self._offer,
            self._calls.media_address,
            self._session.local_port,
            self._session_id,
            self._session_version,
            supported=(self.codec.encoding,),
            direction=direction,
        )
        return answer.to_bytes()

    def _dtmf(self, digit, source="rtp"):
        # The media session merges RFC 4733 and in-band; a phone may send the
        # same key press as SIP INFO too.
        if not self._dedup.accept(digit, source, self._calls.clock.seconds()):
            return
        self.log.debug("DTMF {digit} ({source})", digit=digit, source=source)
        waiter = self._digit_waiter
        if waiter is not None and not waiter.done:
            waiter.digit(digit)
        else:
            self._digits.append(digit)

    def _media_inactive(self):
        self.log.warn("no RTP from the caller; hanging up")
        self.hangup("media timeout")

    def _end(self, reason):
        if self.state == "ended":
            return
        self.state = "ended"
        self._session.close()
        if self._digit_waiter is not None:
            self._digit_waiter.finish()
        if not self._bye_pending:
            # Else kept findable until the ACK (or its timeout) lets the BYE go.
            self._calls.forget(self)
        self.log.info("call ended: {reason}", reason=reason)
        if self._acked is not None and not self._acked.called:
            # An application waiting for the ACK must not wait forever.
            self._acked.errback(CallEnded(reason))
        self.ended.callback(reason)

    # ClientOwner, for our BYE

    def response_received(self, transaction, response):
        pass  # Whatever the answer to our BYE, the call is over on our side.

    def transaction_timed_out(self, transaction):
        self.log.info("no answer to our BYE")


class CallEnded(Exception):
    pass


class _DigitCollector:
    def __init__(self, clock, maximum, first_timeout, inter_digit_timeout, terminators):
        self.result = defer.Deferred()
        self.done = False
        self._clock = clock
        self._maximum = maximum
        self._inter = inter_digit_timeout
        self._terminators = terminators
        self._digits = ""
        self._timer = clock.callLater(first_timeout, self.finish)

    def digit(self, digit):
        if digit in self._terminators:
            self.finish()
            return
        self._digits += digit
        if len(self._digits) >= self._maximum:
            self.finish()
            return
        self._timer.cancel()
        self._timer = self._clock.callLater(self._inter, self.finish)

    def finish(self):
        if self.done:
            return
        self.done = True
        if self._timer.active():
            self._timer.cancel()
        self.result.callback(self._digits)


class Calls:
    """
    The live calls of one SIP endpoint, found by dialog (Call-ID and our
    tag), and the making of new ones from INVITEs.  C{route(number)} gives
    the application for a dialled number (a callable taking the
    L{IChannel}) or None.
    """

    log = Logger()
    allowed = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, REGISTER"

    def __init__(self, layer, clock, media, media_address, route, local_address):
        """
        @param media: the L{callcenter.media.engine.MediaEngine}.
        @param media_address: the address put in our SDP.
        @param local_address: C{destination -> (transport, host, port)} of
            our end of where a request came in, for Via and Contact.
        """
        self.layer = layer
        self.clock = clock
        self.media_address = media_address
        self._media = media
        self._route = route
        self._local_address = local_address
        self._by_dialog = {}
        self._by_transaction = {}

    def __len__(self):
        return len(self._by_dialog)

    def local_contact(self, destination):
        transport, host, port = self._local_address(destination)
        suffix = "" if transport == "UDP" else f";transport={transport.lower()}"
        return f"sip:callcenter@{host}:{port}{suffix}"

    def via(self, destination):
        transport, host, port = self._local_address(destination)
        return f"SIP/2.0/{transport} {host}:{port};branch={new_branch()};rport"

    def invite(self, transaction, request, caller):
        """A new INVITE: route it, negotiate media, start its application."""
        number = getattr(request.sip_uri, "user", None)
        application = self._route(number) if number else None
        if application is None:
            transaction.respond(404, "Not Found")
            return
        if request.headers.get("Content-Type", "application/sdp").split(";")[0].strip().lower() != "application/sdp":
            transaction.respond(415, "Unsupported Media Type")
            return
        if not request.body:
            # A late offer (offer in our 200, answer in the ACK) is legal
            # (RFC 3261 §13.2.1) but rare on phones; not supported yet.
            transaction.respond(488, "Not Acceptable Here")
            return
        try:
            offer = sdp.SessionDescription.parse(request.body)
            session = self._media.open_session()
        except sdp.SDPError as e:
            transaction.respond(400, f"Bad Request - Bad SDP: {e}"[:120])
            return
        except Exception:
            self.log.failure("no media port for a new call")
            transaction.respond(503, "Service Unavailable")
            return
        try:
            _, negotiated = sdp.answer(offer, self.media_address, session.local_port, 0, 0)
        except sdp.NoCommonCodec as e:
            session.close()
            response = make_response(request, 488, "Not Acceptable Here")
            response.headers.add("Warning", f'305 callcenter "{e}"')
            transaction.respond(response)
            return
        call = InboundCall(self, transaction, request, caller, session, negotiated, offer)
        self._by_dialog[call.key] = call
        self._by_transaction[id(transaction)] = call
        call.log.info(
            "call from {caller} to {number} ({source})",
            caller=caller.number,
            number=number,
            source=repr(transaction.destination),
        )
        run(application, call)

    def find(self, request):
        return self._by_dialog.get((request.call_id, request.to_addr.tag))

    def in_dialog(self, transaction, request):
        call = self.find(request)
        if call is None:
            transaction.respond(481, "Call/Transaction Does Not Exist")
            return
        call.in_dialog_request(transaction, request)

    def ack(self, request):
        call = self.find(request)
        if call is not None:
            call.acked()

    def cancel(self, invite_transaction):
        call = self._by_transaction.get(id(invite_transaction))
        if call is not None:
            call.cancelled()

    def transaction_timed_out(self, transaction):
        call = self._by_transaction.get(id(transaction))
        if call is not None:
            call.ack_missing()

    def forget(self, call):
        self._by_dialog.pop(call.key, None)
        self._by_transaction.pop(id(call._transaction), None)

    def hangup_all(self, reason="shutdown"):
        for call in list(self._by_dialog.values()):
            call.hangup(reason)


def run(application, channel):
    """
    Run an application on a channel.  Whatever goes wrong in it, the caller
    is not left hanging: the call is ended and the error logged.
    """

    def failed(failure):
        if failure.check(CallEnded):
            return  # The call ended under it (hang-up, no ACK): nothing failed.
        channel.log.failure("application failed on {number}", failure, number=channel.dialled)
        if channel.state != "ended":
            channel.hangup("error")

    def finished(_):
        if channel.state != "ended":
            channel.hangup("normal")

    d = defer.maybeDeferred(application, channel)
    d.addCallbacks(finished, failed)
    return d
