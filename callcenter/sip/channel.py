"""
What a SIP call leg does once it is up, whichever side set it up: the
L{IChannel} media operations, DTMF collection (RFC 4733, SIP INFO,
in-band; each key press once) and the requests the far end sends inside
the dialog (BYE, re-INVITE for hold and resume, INFO, OPTIONS).
L{callcenter.sip.calls.InboundCall} (UAS) and
L{callcenter.sip.outbound.OutboundCall} (UAC) both build on L{SIPChannel}.
"""

from twisted.internet import defer

from callcenter.media.recording import CallRecording
from callcenter.sip import sdp
from callcenter.sip.address import NameAddr
from callcenter.sip.message import make_response


class SIPChannel:
    """
    The shared half of a call leg.  A subclass provides: C{_calls} (the
    L{callcenter.sip.calls.Calls}: C{clock}, C{media_address}, C{allowed}),
    C{_session} (the media session), C{_offer} and C{_negotiated} (the last
    SDP offer from the far end and what it agreed), C{_session_id} and
    C{_session_version} (our SDP origin), C{_digits}, C{_digit_waiter},
    C{_dedup} (a L{callcenter.media.dtmf.DigitDeduplicator}), C{dialog},
    C{state}, C{log} and C{_end(reason)}.
    """

    # The hang-up reason when the far end sends BYE.
    remote_hangup = "caller hung up"
    # While set (by a bridge), key presses go here instead of to collect_digits.
    on_digit = None
    # While set (by a bridge), C{on_refer(number, progress)} takes a blind
    # transfer (RFC 3515) the far end asks for; see L{_refer}.
    on_refer = None

    @property
    def codec(self):
        return self._negotiated.codec

    @property
    def media(self):
        """The leg's L{callcenter.media.session.MediaSession}."""
        return self._session

    # The play a key press stops (barge-in), while it lasts.
    _interruptible_play = None

    def play(self, frames, interruptible=False):
        if self.state == "ended":
            return defer.succeed(False)
        if interruptible and self._digits:
            # The caller has already answered what this prompt would ask.
            return defer.succeed(False)
        done = self._session.play(frames)
        self._interruptible_play = done if interruptible else None
        return done

    def stop_playing(self):
        self._session.stop_playing()

    def echo(self):
        self._session.echo()

    def record(self, rx=None, tx=None, mixed=None):
        if getattr(self._session, "in_worker", False):
            return self._session.record(rx=rx, tx=tx, mixed=mixed)
        return CallRecording(self._session, rx=rx, tx=tx, mixed=mixed)

    def bridge(self, other):
        return self._calls.bridge(self, other)

    def transfer(self, number):
        return self._calls.transfer(self, number)

    def stats(self):
        return self._session.stats

    def collect_digits(self, maximum, first_timeout, inter_digit_timeout, terminators="#"):
        """Digits pressed during a prompt are kept: callers type ahead."""
        waiter = DigitCollector(self._calls.clock, maximum, first_timeout, inter_digit_timeout, terminators)
        self._digit_waiter = waiter
        while self._digits and not waiter.done:
            waiter.digit(self._digits.pop(0))
        if self.state == "ended":
            waiter.finish()
        return waiter.result

    def in_dialog_request(self, transaction, request):
        if not self.dialog.accepts(request):
            transaction.respond(500, "Server Internal Error - CSeq Out of Order")
            return
        method = request.method
        if method == "BYE":
            transaction.respond(200)
            self._end(self.remote_hangup)
        elif method == "INVITE":
            self._reinvite(transaction, request)
        elif method == "INFO":
            self._info(transaction, request)
        elif method == "REFER":
            self._refer(transaction, request)
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

    def _refer(self, transaction, request):
        """
        Blind transfer (RFC 3515): the far end asks us to connect the other
        party to the Refer-To target and leave.  Accepted (202) only while
        bridged and for a SIP URI with a user part; how it goes is reported
        back in NOTIFYs carrying a sipfrag status line (§2.4.5).
        """
        try:
            target = NameAddr.parse(request.headers.get("Refer-To") or "")
            number = target.uri.user
        except (ValueError, AttributeError):
            number = None
        if not number:
            transaction.respond(400, "Bad Request - Refer-To Needs a Number")
            return
        if self.on_refer is None:
            transaction.respond(603, "Decline")
            return
        response = make_response(request, 202, "Accepted")
        response.headers.add("Contact", f"<{self.dialog.local_contact}>")
        transaction.respond(response)
        progress = TransferProgress(self, request.cseq[0])
        progress.report(100, "Trying")
        self.log.info("asked to transfer the other party to {number}", number=number)
        self.on_refer(number, progress)

    def send_in_dialog(self, method, headers=(), body=b""):
        """A request of ours inside the dialog (NOTIFY, INFO), to the far end."""
        request = self.dialog.request(method, self._calls.via(self.peer))
        for name, value in headers:
            request.headers.add(name, value)
        request.body = body
        self._calls.layer.send_request(request, self.peer, self.peer.reliable, self)

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

    # The hang-up waiting for the last prompt to sound whole.
    _late_hangup = None

    def _after_last_prompt(self, reason):
        """
        True when the hang-up is to come later: a media worker reports a
        prompt done a few frames early (so back-to-back prompts have no
        gap), and a BYE sent at once would cut a goodbye's last 60 ms.
        """
        if self._late_hangup is not None:
            # Asked again while waiting (the application's end hangs up
            # too): still waiting; or the wait is over.
            return self._late_hangup.active()
        if not getattr(self._session, "in_worker", False):
            return False
        tail = self._session.tail()
        if tail <= 0:
            return False
        self._late_hangup = self._calls.clock.callLater(tail, self._hang_up_after_prompt, reason)
        return True

    def _hang_up_after_prompt(self, reason):
        if self.state != "ended":
            self.hangup(reason)

    def _media_lost(self, reason):
        # A media worker died with this leg's session: the audio is gone for good.
        self.log.error("call's media is lost ({reason}); hanging up", reason=reason)
        self.hangup("media lost")

    def _dtmf(self, digit, source="rtp"):
        # The media session merges RFC 4733 and in-band; a phone may send the
        # same key press as SIP INFO too.
        if not self._dedup.accept(digit, source, self._calls.clock.seconds()):
            return
        self.log.debug("DTMF {digit} ({source})", digit=digit, source=source)
        if self.on_digit is not None:
            # Tones in the audio reach the other side with the audio; only
            # presses signalled apart from it need passing on.
            if source == "info" or self.codec.dtmf_payload_type is not None:
                self.on_digit(digit)
            return
        # Taken before the key is handed on: the flow may start its next
        # prompt synchronously, and that one must not be cut.
        interruptible, self._interruptible_play = self._interruptible_play, None
        waiter = self._digit_waiter
        if waiter is not None and not waiter.done:
            waiter.digit(digit)
        else:
            self._digits.append(digit)
        if interruptible is not None and not interruptible.called:
            # A caller who knows the menu need not hear it out; the key
            # stays for the collection that follows.
            self._session.stop_playing()


class TransferProgress:
    """
    The implicit subscription a REFER makes (RFC 3515 §2.4.4): each
    L{report} is a NOTIFY whose body is the status line of the call we made
    for the transfer (message/sipfrag); a final status ends the subscription.
    """

    def __init__(self, channel, refer_cseq):
        self._channel = channel
        self._event = f"refer;id={refer_cseq}"
        self.done = False

    def report(self, status, reason):
        if self.done or self._channel.state == "ended":
            return
        final = status >= 200
        self.done = final
        state = "terminated;reason=noresource" if final else "active;expires=60"
        self._channel.send_in_dialog(
            "NOTIFY",
            [
                ("Event", self._event),
                ("Subscription-State", state),
                ("Content-Type", "message/sipfrag;version=2.0"),
            ],
            f"SIP/2.0 {status} {reason}\r\n".encode("ascii"),
        )


class CallEnded(Exception):
    pass


class DigitCollector:
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
