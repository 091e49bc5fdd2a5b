"""
Typed events between subsystems, and the in-process event bus.

An event is a frozen, keyword-only dataclass registered under a topic::

    @event("trading.order_filled")
    class OrderFilled(Event):
        order_id: str
        quantity: int

Fields must be JSON values (str, int, float, bool, None, lists and dicts of
them): a bus on PostgreSQL LISTEN/NOTIFY or a broker carries events between
nodes as L{to_json} text, and the in-process bus checks nothing more than a
remote one would.
"""

import dataclasses
import json

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from callcenter.interfaces import IEventBus
from callcenter.log import new_correlation_id

_topics = {}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Event:
    """
    Base of every event.  C{correlation_id} ties an event to the call, order
    or message that caused it, across subsystems and log lines.
    """

    topic = "event"
    correlation_id: str = dataclasses.field(default_factory=new_correlation_id)


def event(topic):
    """Class decorator: make a dataclass event and register its topic."""

    def register(cls):
        if topic in _topics:
            raise ValueError(f"event topic {topic!r} already registered by {_topics[topic]!r}")
        cls = dataclasses.dataclass(frozen=True, kw_only=True)(cls)
        cls.topic = topic
        _topics[topic] = cls
        return cls

    return register


def to_json(evt):
    """Serialise an event for a bus that crosses process boundaries."""
    return json.dumps(
        {"topic": evt.topic, "fields": dataclasses.asdict(evt)},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def from_json(text):
    """Rebuild an event from L{to_json} text.  Raises ValueError if unknown."""
    data = json.loads(text)
    cls = _topics.get(data.get("topic"))
    if cls is None:
        raise ValueError(f"unknown event topic {data.get('topic')!r}")
    return cls(**data["fields"])


class Subscription:
    def __init__(self, bus, event_type, handler, subscriber):
        self._bus = bus
        self.event_type = event_type
        self.handler = handler
        self.subscriber = subscriber

    def cancel(self):
        if self in self._bus._subscriptions:
            self._bus._subscriptions.remove(self)


@implementer(IEventBus)
class InProcessEventBus:
    """
    Delivers each event synchronously, in subscription order, to every local
    subscriber whose type it is an instance of.  A subscriber that raises (or
    whose Deferred fails) is logged with the event's correlation id; the
    others still get the event.
    """

    log = Logger()

    def __init__(self, metrics=None):
        self._subscriptions = []
        self._metrics = metrics

    def subscribe(self, event_type, handler, subscriber):
        subscription = Subscription(self, event_type, handler, subscriber)
        self._subscriptions.append(subscription)
        return subscription

    def publish(self, evt):
        if self._metrics is not None:
            self._metrics.events_published.labels(evt.topic).inc()
        pending = []
        for subscription in list(self._subscriptions):
            if not isinstance(evt, subscription.event_type):
                continue
            d = defer.maybeDeferred(subscription.handler, evt)
            d.addErrback(self._handler_failed, subscription, evt)
            pending.append(d)
        return defer.gatherResults(pending).addCallback(lambda _: None)

    def _handler_failed(self, failure, subscription, evt):
        if self._metrics is not None:
            self._metrics.event_handler_errors.labels(subscription.subscriber, evt.topic).inc()
        self.log.failure(
            "subscriber {subscriber} failed on {topic}",
            failure,
            subscriber=subscription.subscriber,
            topic=evt.topic,
            cid=evt.correlation_id,
        )
