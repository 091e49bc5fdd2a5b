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
from callcenter.sip.channel import CallEnded, SIPChannel
from callcenter.sip.dialog import Dialog
from callcenter.sip.message import Response, make_response
from callcenter.sip.transaction import ClientOwner, new_branch

# How a call that we end before answering is refused, by reason.
_REFUSALS = {
    "busy": (486, "Busy Here"),
    "rejected": (603, "Decline"),
    "unavailable": (480, "Temporarily Unavailable"),
    "not found": (404, "Not Found"),
    "normal": (480, "Temporarily Unavailable"),
    "error": (500, "Server Internal Error"),
}


@implementer(IChannel)
class InboundCall(SIPChannel, ClientOwner):
    """
    One incoming call from offer to BYE.  States: offered (INVITE in
    hand, 1xx sent), answered (200 sent), confirmed (ACKed), ended.
    """

    log = Logger()

    def __init__(self, calls, transaction, invite, caller, session, negotiated, offer, our_offer=None):
        """
        C{offer} and C{negotiated} are the far end's offer and what we agreed;
        for a late offer (an INVITE without SDP) both are None and
        C{our_offer} goes in our 200, to be answered in the ACK.
        """
        self._our_offer = our_offer
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
        if getattr(session, "in_worker", False):
            session.lost = self._media_lost

    @property
    def key(self):
        return self.dialog.key

    # IChannel

    def ringing(self):
        if self.state == "offered":
            self._transaction.respond(180, to_tag=self.dialog.local_tag)

    def answer(self):
        if self.state == "confirmed":
            return defer.succeed(None)  # A transferred call, answered long ago.
        if self.state != "offered":
            return defer.fail(RuntimeError(f"cannot answer a call that is {self.state}"))
        response = make_response(self._invite, 200, to_tag=self.dialog.local_tag)
        response.headers.add("Contact", f"<{self.dialog.local_contact}>")
        response.headers.add("Allow", self._calls.allowed)
        response.headers.add("Content-Type", "application/sdp")
        if self._our_offer is not None:
            response.body = self._our_offer.to_bytes()  # Media starts with the ACK's answer.
        else:
            self._start_media()
            response.body = self._answer_sdp()
        self._transaction.respond(response)
        self.state = "answered"
        self._acked = defer.Deferred()
        self.log.info(
            "answered {dialled} from {caller} ({codec})",
            dialled=self.dialled,
            caller=self.caller.number,
            codec=self.codec.encoding if self._negotiated else "offer in the 200",
        )
        return self._acked

    def _start_media(self):
        negotiated = self._negotiated
        self._session.set_remote(negotiated.remote_address, negotiated.remote_port, negotiated.codec)
        self._session.hold(negotiated.on_hold)

    def _late_answer(self, ack):
        """RFC 3261 §13.2.1: the answer to the offer in our 200 is in the ACK."""
        try:
            self._negotiated = sdp.accept_answer(self._our_offer, sdp.SessionDescription.parse(ack.body))
        except (sdp.SDPError, sdp.NoCommonCodec) as e:
            self.log.warn("ACK without a usable SDP answer ({why}); hanging up", why=str(e))
            return False
        self._offer = None
        self._start_media()
        self.log.info("media agreed in the ACK ({codec})", codec=self.codec.encoding)
        return True

    def hangup(self, reason="normal"):
        if self.state == "offered":
            status, phrase = _REFUSALS.get(reason, _REFUSALS["normal"])
            self._transaction.respond(status, phrase, to_tag=self.dialog.local_tag)
        elif self.state == "answered":
            # RFC 3261 §15: no BYE before the ACK of our 2xx (or its
            # timeout); it goes out when that comes.
            self._bye_pending = True
        elif self.state == "confirmed":
            if self._after_last_prompt(reason):
                return
            self._send_bye()
        self._end(reason)

    @property
    def peer(self):
        """Where requests in the dialog go: back where the INVITE came from."""
        return self.reply_to

    def _send_bye(self):
        self.send_in_dialog("BYE")

    # From the network

    def acked(self, ack=None):
        if self._bye_pending:
            self._send_pending_bye()
        elif self.state == "answered":
            self.state = "confirmed"
            if self._our_offer is not None and self._negotiated is None and not self._late_answer(ack):
                self.hangup("no SDP answer")
                return
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


class Calls:
    """
    The live calls of one SIP endpoint, found by dialog (Call-ID and our
    tag), and the making of new ones from INVITEs.  C{route(request,
    source, caller)} gives (maybe as a Deferred) C{(application, caller)}:
    the application to run (a callable taking the L{IChannel}) and who the
    caller is; or the response that refuses the call.
    """

    log = Logger()
    allowed = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, REFER, REGISTER"

    def __init__(self, layer, clock, media, media_address, route, local_address, media_for=None):
        """
        @param media: the L{callcenter.media.engine.MediaEngine}.
        @param media_for: when given, C{media_for(application)} is what
            opens the media session of a call to C{application} (the
            engine, or L{callcenter.media.remote.MediaWorkers}).
        @param media_address: the address put in our SDP.
        @param local_address: C{destination -> (transport, host, port)} of
            our end of where a request came in, for Via and Contact.
        """
        self.layer = layer
        self.clock = clock
        self.media_address = media_address
        self._media = media
        self._media_for = media_for
        self._route = route
        self._local_address = local_address
        self._by_dialog = {}
        self._by_transaction = {}
        # INVITEs whose route is being looked up, by id of their transaction.
        self._routing = {}

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
        """A new INVITE: route it (which may take a lookup), then set it up."""
        key = id(transaction)
        self._routing[key] = transaction
        d = defer.maybeDeferred(self._route, request, transaction.destination, caller)

        def routed(result):
            if self._routing.pop(key, None) is None:
                return  # CANCELled meanwhile, and answered 487.
            if isinstance(result, Response):
                transaction.respond(result)
            else:
                application, known_caller = result
                self._set_up(transaction, request, known_caller, application)

        def failed(failure):
            self._routing.pop(key, None)
            self.log.failure("routing {number} failed", failure, number=getattr(request.sip_uri, "user", None))
            response = make_response(request, 500, "Server Internal Error", to_tag=secrets.token_hex(6))
            response.headers.add("Retry-After", "30")
            transaction.respond(response)

        d.addCallback(routed).addErrback(failed)

    def _set_up(self, transaction, request, caller, application):
        """Negotiate media, answer 1xx, start the application."""
        number = getattr(request.sip_uri, "user", None)
        if request.headers.get("Content-Type", "application/sdp").split(";")[0].strip().lower() != "application/sdp":
            transaction.respond(415, "Unsupported Media Type")
            return
        try:
            offer = sdp.SessionDescription.parse(request.body) if request.body else None
            media = self._media if self._media_for is None else self._media_for(application)
            session = media.open_session()
        except sdp.SDPError as e:
            transaction.respond(400, f"Bad Request - Bad SDP: {e}"[:120])
            return
        except Exception:
            self.log.failure("no media port for a new call")
            transaction.respond(503, "Service Unavailable")
            return
        our_offer = negotiated = None
        if offer is None:
            # A late offer (RFC 3261 §13.2.1, "delayed offer" on some PBXes
            # and trunks): ours goes in the 200, the answer in the ACK.
            our_offer = sdp.offer(self.media_address, session.local_port, secrets.randbelow(2**31), 0)
        else:
            try:
                _, negotiated = sdp.answer(offer, self.media_address, session.local_port, 0, 0)
            except sdp.NoCommonCodec as e:
                session.close()
                response = make_response(request, 488, "Not Acceptable Here")
                response.headers.add("Warning", f'305 callcenter "{e}"')
                transaction.respond(response)
                return
        call = InboundCall(self, transaction, request, caller, session, negotiated, offer, our_offer)
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
            call.acked(request)

    def cancel(self, invite_transaction):
        if self._routing.pop(id(invite_transaction), None) is not None:
            invite_transaction.respond(487, "Request Terminated")
            return
        call = self._by_transaction.get(id(invite_transaction))
        if call is not None:
            call.cancelled()

    def transaction_timed_out(self, transaction):
        call = self._by_transaction.get(id(transaction))
        if call is not None:
            call.ack_missing()

    # Set by the telephony service (the B2BUA lives above this layer):
    # C{bridge(channel, other)} and C{transfer(channel, number)}, see IChannel.
    def bridge(self, channel, other):
        raise NotImplementedError("no B2BUA attached")

    def transfer(self, channel, number):
        raise NotImplementedError("no B2BUA attached")

    def add(self, call):
        """Hold an outgoing call (L{callcenter.sip.outbound.OutboundCall}) by its dialog key."""
        self._by_dialog[call.key] = call

    def stray_response(self, response):
        """
        A response no transaction matched: a 2xx retransmitted after its
        INVITE transaction ended goes to the outgoing call it answers, found
        by Call-ID and our From tag, to be ACKed again (RFC 3261 §13.2.2.4).
        """
        call = self._by_dialog.get((response.call_id, response.from_addr.tag))
        if call is not None and hasattr(call, "response_retransmitted"):
            call.response_retransmitted(response)

    def forget(self, call):
        self._by_dialog.pop(call.key, None)
        self._by_transaction.pop(id(call._transaction), None)

    def hangup_all(self, reason="shutdown"):
        """Hang up every call; fires once each has ended (a BYE right after a prompt waits for its last frames)."""
        calls = list(self._by_dialog.values())
        for call in calls:
            call.hangup(reason)
        return defer.gatherResults([call.ended for call in calls])


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
