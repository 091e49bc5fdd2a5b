"""Small helpers for looking at Deferreds and log events in tests."""

from twisted.logger import globalLogPublisher


def results_of(d):
    """The outcome of Deferred C{d} so far: [] while pending, else [result]."""
    outcome = []
    d.addBoth(outcome.append)
    return outcome


class CapturedLog(list):
    """Log events emitted while it is active (a context manager)."""

    def __enter__(self):
        globalLogPublisher.addObserver(self.append)
        return self

    def __exit__(self, *exc_info):
        globalLogPublisher.removeObserver(self.append)

    def formats(self, text):
        """The events whose format string contains C{text}."""
        return [event for event in self if text in (event.get("log_format") or "")]
