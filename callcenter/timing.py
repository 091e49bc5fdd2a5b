"""Waiting for something, but not forever."""

from twisted.internet import defer


def answer_within(clock, seconds, waited, otherwise):
    """
    A Deferred firing with C{waited}'s result if it comes within C{seconds}
    on C{clock}, else with C{otherwise} when the time runs out; a late
    result is then dropped.  C{waited} is not cancelled: work in progress
    (a commit, say) may still finish.
    """
    answer = defer.Deferred()

    def expired():
        if not answer.called:
            answer.callback(otherwise)

    timer = clock.callLater(seconds, expired)

    def arrived(result):
        if timer.active():
            timer.cancel()
        if not answer.called:
            answer.callback(result)
        return None

    waited.addBoth(arrived)
    return answer


def within(clock, seconds, waited):
    """
    A Deferred firing with True when C{waited} fires within C{seconds} on
    C{clock}, or with False when the time runs out first.  C{waited}'s
    result is consumed (a failure counts as having finished: log it before
    passing it here).
    """
    return answer_within(clock, seconds, waited.addBoth(lambda _: True), False)
