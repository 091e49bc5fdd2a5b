"""
Waiting for a Deferred, but not forever (L{callcenter.timing.within}).
"""

import gc

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from callcenter.timing import within
from outcomes import results_of


class Boom(Exception):
    pass


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def unhandled_errors():
    """The failures Twisted reports as unhandled in a garbage-collected Deferred."""
    events = []
    observer = events.append
    globalLogPublisher.addObserver(observer)

    def collect():
        gc.collect()
        return [
            e for e in events
            if "Unhandled error in Deferred" in (e.get("log_format") or "")
        ]

    yield collect
    globalLogPublisher.removeObserver(observer)


def test_fires_true_when_the_deferred_fires_in_time(clock):
    waited = defer.Deferred()
    outcome = results_of(within(clock, 10, waited))

    clock.advance(9)
    assert outcome == []
    waited.callback("done")

    assert outcome == [True]


def test_cancels_its_timer_when_the_deferred_fires_in_time(clock):
    waited = defer.Deferred()
    within(clock, 10, waited)
    assert len(clock.getDelayedCalls()) == 1

    waited.callback(None)

    assert clock.getDelayedCalls() == []


def test_fires_false_when_the_time_runs_out_first(clock):
    waited = defer.Deferred()
    outcome = results_of(within(clock, 10, waited))

    clock.advance(9)
    assert outcome == []
    clock.advance(1)

    assert outcome == [False]
    assert clock.getDelayedCalls() == []


def test_does_not_cancel_the_waited_deferred_on_timeout(clock):
    cancelled = []
    waited = defer.Deferred(canceller=cancelled.append)
    within(clock, 10, waited)

    clock.advance(11)

    assert cancelled == []
    assert not waited.called


def test_waited_firing_after_the_timeout_changes_nothing(clock):
    waited = defer.Deferred()
    outcome = results_of(within(clock, 10, waited))
    clock.advance(10)

    waited.callback("late")

    assert outcome == [False]


def test_already_fired_deferred_gives_true_at_once(clock):
    outcome = results_of(within(clock, 10, defer.succeed("done")))

    assert outcome == [True]
    assert clock.getDelayedCalls() == []


def test_zero_seconds_still_waits_for_the_clock(clock):
    waited = defer.Deferred()
    outcome = results_of(within(clock, 0, waited))

    assert outcome == []
    clock.advance(0)
    assert outcome == [False]


def test_failing_deferred_counts_as_finished(clock):
    waited = defer.Deferred()
    outcome = results_of(within(clock, 10, waited))

    waited.errback(Boom())

    assert outcome == [True]
    assert clock.getDelayedCalls() == []


def test_failing_deferred_leaves_no_unhandled_error(clock, unhandled_errors):
    waited = defer.Deferred()
    within(clock, 10, waited)

    waited.errback(Boom())
    del waited

    assert unhandled_errors() == []


def test_already_failed_deferred_counts_as_finished_and_is_handled(clock, unhandled_errors):
    outcome = results_of(within(clock, 10, defer.fail(Boom())))

    assert outcome == [True]
    assert unhandled_errors() == []


def test_failure_after_the_timeout_leaves_no_unhandled_error(clock, unhandled_errors):
    waited = defer.Deferred()
    outcome = results_of(within(clock, 10, waited))
    clock.advance(10)

    waited.errback(Boom())
    del waited

    assert outcome == [False]
    assert unhandled_errors() == []


def test_unhandled_error_detection_works(unhandled_errors):
    # The check the tests above rely on does see an unhandled failure.
    d = defer.fail(Boom())
    del d

    assert len(unhandled_errors()) == 1


def test_each_wait_has_its_own_timer(clock):
    first, second = defer.Deferred(), defer.Deferred()
    first_outcome = results_of(within(clock, 5, first))
    second_outcome = results_of(within(clock, 10, second))

    first.callback(None)
    assert first_outcome == [True]
    assert len(clock.getDelayedCalls()) == 1

    clock.advance(10)
    assert second_outcome == [False]
    assert first_outcome == [True]
