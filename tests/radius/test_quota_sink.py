"""
L{QuotaEnforcingSink}: the accounting sink's outcome, then Disconnect-Requests
for the sessions it reports out of monthly time, by either of the two ways a
listener hands it records.
"""

from twisted.internet import defer
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from callcenter.radius.interfaces import IAccountingSink
from callcenter.radius.service import QuotaEnforcingSink


class InnerSink:
    """Answers every record with the sessions given, or the failure given."""

    def __init__(self, outcome):
        self.outcome = outcome

    def record(self, record):
        if isinstance(self.outcome, Failure):
            return defer.fail(self.outcome)
        return defer.succeed(self.outcome)

    def keep(self, record, done, context):
        done(self.outcome, context)


class Disconnector:
    def __init__(self):
        self.asked = []

    def disconnect(self, session, reason):
        self.asked.append((session, reason))
        return defer.succeed("ack")


def test_it_provides_the_interface():
    assert verifyObject(IAccountingSink, QuotaEnforcingSink(InnerSink([]), Disconnector()))


def test_a_record_that_exhausts_the_quota_disconnects_its_sessions():
    disconnector = Disconnector()
    sink = QuotaEnforcingSink(InnerSink(["s1", "s2"]), disconnector)
    results = []
    sink.record(object()).addCallback(results.append)
    assert len(results) == 1
    assert disconnector.asked == [("s1", "quota_exhausted"), ("s2", "quota_exhausted")]


def test_keep_answers_then_disconnects():
    disconnector = Disconnector()
    sink = QuotaEnforcingSink(InnerSink(["s1"]), disconnector)
    answered = []
    sink.keep(object(), lambda outcome, context: answered.append((outcome, context, list(disconnector.asked))), "ctx")
    # The NAS's answer went out before the Disconnect-Request was asked for.
    assert answered == [(["s1"], "ctx", [])]
    assert disconnector.asked == [("s1", "quota_exhausted")]


def test_keep_passes_a_failure_on_and_disconnects_nothing():
    disconnector = Disconnector()
    failure = Failure(RuntimeError("disk full"))
    sink = QuotaEnforcingSink(InnerSink(failure), disconnector)
    answered = []
    sink.keep(object(), lambda outcome, context: answered.append(outcome), None)
    assert answered == [failure]
    assert disconnector.asked == []
