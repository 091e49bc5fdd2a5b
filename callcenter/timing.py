"""Waiting for something, but not forever."""

from twisted.internet import defer


def within(clock, seconds, waited):
    """
    A Deferred firing with True when C{waited} fires within C{seconds} on
    C{clock}, or with False when the time runs out first.  C{waited} is not
    cancelled, so work in progress may still finish; its result is consumed
    (a failure counts as having finished: log it before passing it here).
    """
    result = defer.Deferred()

    def expired():
        if not result.called:
            result.callback(False)

    timer = clock.callLater(seconds, expired)

    def finished(outcome):
        if timer.active():
            timer.cancel()
        if not result.called:
            result.callback(True)
        return None

    waited.addBoth(finished)
    return result
