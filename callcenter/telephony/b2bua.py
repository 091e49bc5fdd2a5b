"""
The back-to-back user agent: an incoming call connected to a second,
outgoing leg (a registered phone, or a number out through a carrier
trunk), with both legs' audio anchored in our media engine and bridged
there.  Signalling stays separate per leg; what crosses between them is
said here: ringing, the answer, the hang-up, DTMF and the audio.
"""

from twisted.internet import defer
from twisted.logger import Logger

from callcenter.media.bridge import Bridge
from callcenter.sip.calls import run
from callcenter.sip.outbound import CallFailed, dial

_log = Logger()

# How a failed outgoing leg is told to the caller (RFC 3261 §16.7 picks the
# "best" of several; a person needs only busy, declined or not there).
_CALLER_HEARS = {486: "busy", 600: "busy", 603: "rejected", 404: "not found", 484: "not found"}


def refusal_for(failures):
    """The hang-up reason for the caller when every leg failed with C{failures}."""
    statuses = [f.value.status for f in failures if f.check(CallFailed)]
    for status in (486, 600, 603, 404, 484):
        if status in statuses:
            return _CALLER_HEARS[status]
    return "unavailable"


class Connector:
    """
    Makes the outgoing legs for a caller and joins the first that answers.
    C{destination_of(binding)} gives where a registered contact is reached
    (its REGISTER's source: through NAT, the only way back), or None when
    that is gone (a TCP phone that disconnected).
    """

    def __init__(self, calls, media, location, destination_of, domain, ring_timeout=60, workers=None):
        """
        @param ring_timeout: seconds the outgoing legs may ring before the
            caller is told nobody answers (480).
        @param workers: the L{callcenter.media.remote.MediaWorkers}, if
            any: an outgoing leg's media then goes where the caller's is,
            and the two are bridged there.
        """
        self._workers = workers
        self._ring_timeout = ring_timeout
        self._calls = calls
        self._media = media
        self._location = location
        self._destination_of = destination_of
        self._domain = domain
        # The Router, for transfer targets; set once both exist.
        self.router = None

    def to_extension(self, aor):
        """The application that rings every registered contact of C{aor} (parallel forking)."""

        def ring(channel):
            contacts = [
                (binding, destination)
                for binding in self._location.current(aor)
                for destination in [self._destination_of(binding)]
                if destination is not None
            ]
            if not contacts:
                channel.log.info("{aor} has no reachable registration", aor=aor)
                channel.hangup("unavailable")
                return None

            def leg(progress, binding, destination):
                return self._dial(
                    channel, binding.contact, destination, progress, to=f"sip:{aor}@{self._domain}"
                )

            return self.connect(channel, contacts, leg)

        # Both legs' media may run in a media worker, bridged there.
        ring.media_in_worker = True
        return ring

    def through_trunk(self, trunk, number):
        """The application that dials C{number} out through C{trunk}."""

        def dial_out(channel):
            def leg(progress):
                session = self._open_leg(channel)
                try:
                    return trunk.dial(
                        number,
                        session,
                        caller_number=channel.caller.number,
                        display_name=channel.caller.display_name,
                        progress=progress,
                        correlation_id=channel.correlation_id,
                    )
                except Exception:
                    session.close()
                    raise

            return self.connect(channel, [()], leg)

        dial_out.media_in_worker = True
        return dial_out

    def _open_leg(self, channel):
        """The media session of an outgoing leg for C{channel}: beside the caller's."""
        if self._workers is None:
            return self._media.open_session()
        return self._workers.open_session_beside(channel.media)

    def _dial(self, channel, target, destination, progress, to=None):
        caller = channel.caller
        user = caller.number or "anonymous"
        session = self._open_leg(channel)
        return dial(
            self._calls,
            target,
            destination,
            session,
            f"sip:{user}@{self._domain}",
            display_name=caller.display_name,
            to=to,
            progress=progress,
            correlation_id=channel.correlation_id,
        )

    @defer.inlineCallbacks
    def connect(self, channel, targets, make_leg):
        """
        Start one leg per target (C{make_leg(progress, *target)}), tell the
        caller it rings, answer the caller when the first leg answers and
        cancel the rest; then bridge them until one side hangs up.
        """

        def progress(response):
            if 180 <= response.status < 190 and channel.state == "offered":
                channel.ringing()

        legs = []
        for target in targets:
            try:
                legs.append(make_leg(progress, *target))
            except Exception:
                _log.failure("cannot start an outgoing leg", cid=channel.correlation_id)
        if not legs:
            channel.hangup("unavailable")
            return

        def caller_gone(reason):
            for leg in legs:
                leg.hangup("caller gone")
            return reason

        channel.ended.addCallback(caller_gone)

        def no_answer():
            channel.log.info("no answer within {seconds} s", seconds=self._ring_timeout)
            for leg in legs:
                leg.hangup("no answer")

        ring_timer = self._calls.clock.callLater(self._ring_timeout, no_answer)
        try:
            winner = yield _first_answered(legs)
        except _AllFailed as failed:
            channel.hangup(refusal_for(failed.failures))
            return
        finally:
            if ring_timer.active():
                ring_timer.cancel()
        for leg in legs:
            if leg is not winner:
                leg.hangup("answered elsewhere")
        if channel.state == "ended":
            winner.hangup("caller gone")
            return
        yield channel.answer()
        yield self._talk(channel, winner)

    def bridge(self, a, b):
        """IChannel.bridge: talk until one side hangs up (or transfers)."""
        return self._talk(a, b)

    @defer.inlineCallbacks
    def transfer(self, channel, number):
        """IChannel.transfer: run C{number}'s application on the (answered or not) channel."""
        application = yield self.router.transfer_target(number)
        if application is None:
            raise ValueError(f"{number} is not a number a call can be transferred to")
        channel.log.info("transferred to {number}", number=number)
        yield run(application, channel)

    @defer.inlineCallbacks
    def _talk(self, a, b):
        """
        Bridge C{a} and C{b} until one hangs up (the other is then hung up)
        or one asks for a blind transfer of the other.
        """
        bridge = Bridge(a.media, b.media) if self._workers is None else self._workers.bridge(a.media, b.media)
        transfer = defer.Deferred()
        for side, other in ((a, b), (b, a)):
            _relay_dtmf(side, other)
            side.on_refer = _transfer_request(transfer, side, other)
        a.log.info("connected to {target}", target=getattr(b, "target", b.dialled))
        yield _first(a.ended, b.ended, transfer)
        bridge.stop()
        for side in (a, b):
            side.on_digit = side.on_refer = None
        if transfer.called:
            transferor, transferee, number, progress = transfer.result
            yield self._transfer(transferor, transferee, number, progress)
            return
        for side in (a, b):
            if side.state != "ended":
                side.hangup("other side hung up")

    @defer.inlineCallbacks
    def _transfer(self, transferor, transferee, number, progress):
        """
        RFC 5589's blind transfer: the transferee is connected to C{number}
        by running its route's application on it; the transferor hears how
        it went (NOTIFY) and leaves.  A number we may not or cannot reach is
        refused to the transferor, who keeps the call.
        """
        application = yield self.router.transfer_target(number)
        if transferee.state == "ended":
            progress.report(487, "Request Terminated")
            if transferor.state != "ended":
                transferor.hangup("other side hung up")
            return
        if application is None:
            transferor.log.info("transfer to {number} refused: not a public number or an extension", number=number)
            progress.report(403, "Forbidden")
            if transferor.state != "ended":
                yield self._talk(transferor, transferee)  # The transferor keeps the call.
            else:
                transferee.hangup("transfer refused")
            return
        transferee.log.info("transferred to {number}", number=number)
        # The transferor learns the outcome as far as we know it now: the
        # new call is ours to look after from here.
        progress.report(200, "OK")
        if transferor.state != "ended":
            transferor.hangup("transferred")
        yield run(application, transferee)


def _transfer_request(transfer, side, other):
    def requested(number, progress):
        if not transfer.called:
            transfer.callback((side, other, number, progress))
        else:
            progress.report(491, "Request Pending")

    return requested


def _relay_dtmf(source, sink):
    """
    Key presses that came as RFC 4733 events or SIP INFO go to the other
    leg as events.  In-band ones need no relay: they are in the audio the
    bridge already carries.
    """

    def pressed(digit):
        if sink.state != "ended":
            sink.media.send_dtmf(digit)

    source.on_digit = pressed


class _AllFailed(Exception):
    def __init__(self, failures):
        super().__init__(f"{len(failures)} legs failed")
        self.failures = failures


def _first_answered(legs):
    """Fires with the first leg to answer, or fails with L{_AllFailed}."""
    result = defer.Deferred()
    failures = []

    def answered(leg):
        if not result.called:
            result.callback(leg)

    def failed(failure):
        failures.append(failure)
        if len(failures) == len(legs) and not result.called:
            result.errback(_AllFailed(failures))

    for leg in legs:
        leg.answered.addCallbacks(answered, failed)
    return result


def _first(*deferreds):
    """Fires when any of C{deferreds} does (without taking their results)."""
    result = defer.Deferred()

    def fired(value):
        if not result.called:
            result.callback(None)
        return value

    for d in deferreds:
        d.addBoth(fired)
    return result
