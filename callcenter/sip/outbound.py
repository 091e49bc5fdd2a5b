"""
Outgoing calls: the UAC side of INVITE (RFC 3261 §13.2) with our SDP offer
(RFC 3264), the second leg of a bridged call (to a registered phone or out
through a carrier trunk), callbacks and fax.

L{dial} builds an L{OutboundCall}, puts it in the L{Calls} registry under
its dialog key (Call-ID, our From tag) so that requests from the far end
and retransmitted 2xx find it, and sends the INVITE.  Every request of the
call goes to the destination it was dialled through (the carrier's proxy
or the phone's registered contact), which acts as our outbound proxy.
"""

import secrets

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from callcenter.interfaces import IChannel
from callcenter.log import bind, new_correlation_id
from callcenter.media.dtmf import DigitDeduplicator
from callcenter.sip import sdp
from callcenter.sip.address import NameAddr, parse_uri
from callcenter.sip.channel import SIPChannel
from callcenter.sip.dialog import Dialog
from callcenter.sip.digest import authorization_for, choose_challenge
from callcenter.sip.message import Request
from callcenter.sip.transaction import ClientOwner
from callcenter.telephony.callerid import CallerID

# Header carrying the challenge, and the one carrying our answer, by status
# (RFC 3261 §22.2 and §22.3).
_CHALLENGES = {
    401: ("WWW-Authenticate", "Authorization"),
    407: ("Proxy-Authenticate", "Proxy-Authorization"),
}


class CallFailed(Exception):
    """
    The call was not answered: C{status} and C{reason} of the final response
    (408 when nothing answered, 487 when we cancelled it, 488 when the answer
    carried no SDP we can use); C{response} the response itself, if any (a
    3xx's Contacts, a 503's Retry-After).
    """

    def __init__(self, status, reason, response=None):
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.response = response


def dial(calls, target, destination, session, from_uri, **options):
    """
    Call C{target} (a request-URI) through C{destination}: build an
    L{OutboundCall} (see it for C{options}), register it in C{calls} and
    send the INVITE.  Returns the call; C{call.answered} tells how it went.
    """
    call = OutboundCall(calls, target, destination, session, from_uri, **options)
    calls.add(call)
    call.start()
    return call


@implementer(IChannel)
class OutboundCall(SIPChannel, ClientOwner):
    """
    One outgoing call from INVITE to BYE.  States: calling (INVITE sent),
    proceeding (a provisional response came), confirmed (2xx ACKed, media
    flowing), ended.

    C{answered} fires with the call once the far end has answered and we
    have ACKed, or fails with L{CallFailed}; C{ended} fires with the reason
    when the call is over, answered or not.
    """

    log = Logger()
    remote_hangup = "callee hung up"

    def __init__(
        self,
        calls,
        target,
        destination,
        session,
        from_uri,
        display_name=None,
        to=None,
        asserted_identity=None,
        credentials=None,
        progress=None,
        correlation_id=None,
    ):
        """
        @param target: the request-URI, e.g. C{"sip:13800138001@carrier"}.
        @param destination: the transport destination every request goes to.
        @param session: a media session (L{MediaEngine.open_session}); the
            call closes it when it ends.
        @param from_uri: our identity, with C{display_name}: the caller ID
            passed on in From.
        @param to: the To URI when it is not the target (a phone's AOR when
            the target is its registered contact).
        @param asserted_identity: a P-Asserted-Identity value (RFC 3325),
            for a trunk that takes the caller's number from it.
        @param credentials: (username, password) to answer one digest
            challenge (401 or 407) with.
        @param progress: called with each provisional response but 100.
        @param correlation_id: the bridged call's, so logs follow both legs.
        """
        self._calls = calls
        self._session = session
        self._credentials = credentials
        self._progress = progress
        self._session_id = secrets.randbelow(2**31)
        self._session_version = 0
        self._our_offer = sdp.offer(calls.media_address, session.local_port, self._session_id, 0)
        self._offer = None  # The far end's, once it sends a re-INVITE.
        self._negotiated = None
        self._digits = []
        self._digit_waiter = None
        self._dedup = DigitDeduplicator(0.2)
        self._authorized = False
        self._cancelling = False
        self._cancel_sent = False
        self._cancel_timer = None
        self._acks = {}  # To tag of each 2xx -> the ACK we sent for it.
        self._outcome = None
        self._waiters = []
        self.target = target
        self.destination = destination
        self.call_id = f"{secrets.token_hex(16)}@callcenter"
        self.local_tag = secrets.token_hex(6)
        self.correlation_id = correlation_id or new_correlation_id()
        identity = NameAddr(parse_uri(from_uri), display_name, {"tag": self.local_tag})
        self._from = str(identity)
        self._to = f"<{to or target}>"
        self._asserted_identity = asserted_identity
        self.caller = CallerID(getattr(identity.uri, "user", None), display_name, asserted_identity is not None)
        self.dialled = getattr(parse_uri(target), "user", None)
        self.dialog = None
        self.state = "calling"
        self.ended = defer.Deferred()
        self.answered = self._when_settled()
        self._contact = calls.local_contact(destination)
        self._invite = None
        self._transaction = None
        self.log = bind(self.log, cid=self.correlation_id)
        session.dtmf_received = self._dtmf
        session.inactive = self._media_inactive
        if getattr(session, "in_worker", False):
            session.lost = self._media_lost

    @property
    def key(self):
        return (self.call_id, self.local_tag)

    @property
    def peer(self):
        """Where requests in the dialog go: the destination it was dialled through."""
        return self.destination

    def start(self):
        self._send_invite(1, ())
        self.log.info("calling {target} via {destination}", target=self.target, destination=repr(self.destination))

    def _send_invite(self, cseq, extra):
        invite = Request("INVITE", self.target)
        invite.headers.add("Via", self._calls.via(self.destination))
        invite.headers.add("Max-Forwards", "70")
        invite.headers.add("From", self._from)
        invite.headers.add("To", self._to)
        invite.headers.add("Call-ID", self.call_id)
        invite.headers.add("CSeq", f"{cseq} INVITE")
        invite.headers.add("Contact", f"<{self._contact}>")
        invite.headers.add("Allow", self._calls.allowed)
        if self._asserted_identity:
            invite.headers.add("P-Asserted-Identity", self._asserted_identity)
        for name, value in extra:
            invite.headers.add(name, value)
        invite.headers.add("Content-Type", "application/sdp")
        invite.body = self._our_offer.to_bytes()
        self._invite = invite
        self._transaction = self._calls.layer.send_request(
            invite, self.destination, self.destination.reliable, self
        )

    # IChannel

    def answer(self):
        """
        An outgoing leg is answered by the far end: fires with None once it
        has, fails with L{CallFailed} if it does not.
        """
        return self._when_settled().addCallback(lambda _: None)

    def hangup(self, reason="normal"):
        if self.state in ("calling", "proceeding"):
            self.cancel()
        elif self.state == "confirmed" and not self._after_last_prompt(reason):
            self._send_bye(self.dialog)
            self._end(reason)

    def cancel(self):
        """
        Give up before the final response.  RFC 3261 §9.1: a CANCEL may only
        follow a provisional response, so without one yet it waits for the
        first.  C{answered} then fails with 487 (or whatever final response
        beat the CANCEL); a 2xx that crosses it is ACKed and ended with BYE.
        """
        if self.state not in ("calling", "proceeding") or self._cancelling:
            return
        self._cancelling = True
        if self.state == "proceeding":
            self._send_cancel()

    def _send_cancel(self):
        # §9.1: the INVITE's Request-URI, Call-ID, To, From, CSeq number and
        # Route, and its top Via (same branch): the CANCEL matches its
        # transaction hop by hop.
        invite = self._invite
        cancel = Request("CANCEL", invite.uri)
        cancel.headers.add("Via", invite.headers.get("Via"))
        for route in invite.headers.get_all("Route"):
            cancel.headers.add("Route", route)
        cancel.headers.add("Max-Forwards", "70")
        for name in ("From", "To", "Call-ID"):
            cancel.headers.add(name, invite.headers.get(name))
        cancel.headers.add("CSeq", f"{invite.cseq[0]} CANCEL")
        self._cancel_sent = True
        self._calls.layer.send_request(cancel, self.destination, self.destination.reliable, self)
        # §9.1: an INVITE still unanswered 64*T1 after its CANCEL is over.
        self._cancel_timer = self._calls.clock.callLater(
            self._calls.layer.timers.timeout, self._cancel_expired, self._transaction
        )

    def _cancel_expired(self, transaction):
        self._cancel_timer = None
        if transaction is self._transaction and self.state != "ended":
            transaction.terminate()
            self._fail(CallFailed(487, "Request Terminated"))

    # From the network

    def response_received(self, transaction, response):
        if transaction.request.method != "INVITE":
            return  # The answer to our CANCEL or BYE changes nothing here.
        status = response.status
        if 200 <= status < 300:
            self._accepted(response)  # From any INVITE of ours: a 2xx is ACKed.
        elif transaction is not self._transaction or self.state == "ended":
            return
        elif status < 200:
            self._provisional(response)
        else:
            self._refused(response)

    def response_retransmitted(self, response):
        """
        A 2xx that came back after its INVITE transaction ended (the far end
        did not get our ACK): ACK it again (RFC 3261 §13.2.2.4).
        """
        if 200 <= response.status < 300 and response.cseq[1] == "INVITE":
            ack = self._acks.get(response.to_addr.tag)
            if ack is not None:
                self._send(ack)

    def transaction_timed_out(self, transaction):
        if transaction is self._transaction and self.state != "ended":
            # §8.1.3.1: no answer at all is a 408.
            self._fail(CallFailed(408, "Request Timeout"))
        elif transaction.request.method == "BYE":
            self.log.info("no answer to our BYE")

    def acked(self, ack=None):
        """The far end ACKed our 2xx to its re-INVITE: nothing more to do."""

    def in_dialog_request(self, transaction, request):
        if self.dialog is None:
            # Early dialogs (requests before the 2xx) are not kept.
            transaction.respond(481, "Call/Transaction Does Not Exist")
            return
        super().in_dialog_request(transaction, request)

    def _provisional(self, response):
        if self.state == "calling":
            self.state = "proceeding"
        if self._cancelling and not self._cancel_sent:
            self._send_cancel()
            return
        if response.status == 100:
            return  # Hop by hop: it says only that the next hop has it.
        if response.body and not self._cancelling:
            # Early media (a 183 with SDP): play what the far end sends
            # while it rings; the 2xx's answer settles it.
            try:
                negotiated = sdp.accept_answer(self._our_offer, sdp.SessionDescription.parse(response.body))
            except (sdp.SDPError, sdp.NoCommonCodec) as e:
                self.log.info("unusable early media: {why}", why=str(e))
            else:
                self._negotiated = negotiated
                self._session.set_remote(negotiated.remote_address, negotiated.remote_port, negotiated.codec)
        if self._progress is not None:
            try:
                self._progress(response)
            except Exception:
                self.log.failure("progress callback failed")

    def _accepted(self, response):
        tag = response.to_addr.tag
        ack = self._acks.get(tag)
        if ack is not None:
            self._send(ack)  # A retransmitted 2xx: our ACK was lost.
            return
        dialog = Dialog.for_uac(self._invite, response, self._contact)
        ack = dialog.ack(self._calls.via(self.destination))
        # §13.2.2.4: the ACK carries the INVITE's credentials.
        for _, answer in _CHALLENGES.values():
            for value in self._invite.headers.get_all(answer):
                ack.headers.add(answer, value)
        self._acks[tag] = ack
        self._send(ack)
        if self.state not in ("calling", "proceeding") or self._cancelling:
            # A 2xx that crossed our CANCEL, or a second one from a forking
            # proxy (§13.2.2.4): accept it, then end it.
            self._send_bye(dialog)
            if self.state in ("calling", "proceeding"):
                self._fail(CallFailed(487, "Request Terminated", response))
            return
        try:
            negotiated = sdp.accept_answer(self._our_offer, sdp.SessionDescription.parse(response.body))
        except (sdp.SDPError, sdp.NoCommonCodec) as e:
            # §13.2.1: the answer to an offer in the INVITE is in the 2xx.
            self.log.warn("2xx without a usable SDP answer: {why}", why=str(e))
            self._send_bye(dialog)
            self._fail(CallFailed(488, "Not Acceptable Here", response))
            return
        if self._cancel_timer is not None and self._cancel_timer.active():
            self._cancel_timer.cancel()
        self.dialog = dialog
        self._negotiated = negotiated
        self._session.set_remote(negotiated.remote_address, negotiated.remote_port, negotiated.codec)
        self._session.hold(negotiated.on_hold)
        self.state = "confirmed"
        self.log.info("{target} answered ({codec})", target=self.target, codec=negotiated.codec.encoding)
        self._settle(self)

    def _refused(self, response):
        status = response.status
        if status in _CHALLENGES and not self._authorized and not self._cancelling:
            if self._retry_with_credentials(response):
                return
        self._fail(CallFailed(status, response.reason, response))

    def _retry_with_credentials(self, response):
        """§22.2: the INVITE again, same Call-ID and From tag, next CSeq, with our answer."""
        if self._credentials is None:
            return False
        challenge_header, answer_header = _CHALLENGES[response.status]
        challenge = choose_challenge(response.headers.get_all(challenge_header))
        if challenge is None:
            return False
        username, password = self._credentials
        try:
            authorization = authorization_for(
                challenge, "INVITE", self.target, username, password, lambda: secrets.token_hex(8), 1
            )
        except ValueError as e:
            self.log.warn("cannot answer the challenge: {why}", why=str(e))
            return False
        self._authorized = True
        self.state = "calling"
        self._send_invite(self._invite.cseq[0] + 1, [(answer_header, authorization)])
        return True

    def _send_bye(self, dialog):
        bye = dialog.request("BYE", self._calls.via(self.destination))
        self._calls.layer.send_request(bye, self.destination, self.destination.reliable, self)

    def _send(self, message):
        self._calls.layer.send(message, self.destination, self.destination.reliable)

    def _media_inactive(self):
        self.log.warn("no RTP from the callee; hanging up")
        self.hangup("media timeout")

    # Outcome

    def _when_settled(self):
        d = defer.Deferred()
        if self._outcome is None:
            self._waiters.append(d)
        else:
            self._fire(d)
        return d

    def _settle(self, outcome):
        self._outcome = outcome
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            self._fire(d)

    def _fire(self, d):
        if isinstance(self._outcome, CallFailed):
            d.errback(self._outcome)
        else:
            d.callback(self._outcome)

    def _fail(self, error):
        self.log.info(
            "call to {target} failed: {status} {reason}",
            target=self.target,
            status=error.status,
            reason=error.reason,
        )
        if self._outcome is None:
            self._settle(error)
        self._end(f"{error.status} {error.reason}")

    def _end(self, reason):
        if self.state == "ended":
            return
        self.state = "ended"
        if self._cancel_timer is not None and self._cancel_timer.active():
            self._cancel_timer.cancel()
        self._session.close()
        if self._digit_waiter is not None:
            self._digit_waiter.finish()
        self._calls.forget(self)
        self.log.info("call ended: {reason}", reason=reason)
        self.ended.callback(reason)
