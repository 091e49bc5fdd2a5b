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
        self._bus._unsubscribe(self)


def _nothing(_):
    return None


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
        # A tuple, replaced on (un)subscribing: publish iterates a snapshot
        # without copying, and a handler may subscribe meanwhile.
        self._subscriptions = ()
        self._metrics = metrics
        # Per event type: its subscriptions, and its topic's counter.  A
        # burst of ten thousand price alerts on one tick is published one
        # by one, so what publish does per event shows.
        self._routes = {}
        self._counters = {}

    def subscribe(self, event_type, handler, subscriber):
        subscription = Subscription(self, event_type, handler, subscriber)
        self._subscriptions += (subscription,)
        self._routes.clear()
        return subscription

    def _unsubscribe(self, subscription):
        self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)
        self._routes.clear()

    def publish(self, evt):
        kind = type(evt)
        if self._metrics is not None:
            counter = self._counters.get(kind)
            if counter is None:
                counter = self._counters[kind] = self._metrics.events_published.labels(evt.topic)
            counter.inc()
        route = self._routes.get(kind)
        if route is None:
            route = self._routes[kind] = tuple(s for s in self._subscriptions if isinstance(evt, s.event_type))
        if not route:
            return defer.succeed(None)
        if len(route) == 1:
            return self._deliver(route[0], evt).addCallback(_nothing)
        return defer.gatherResults([self._deliver(s, evt) for s in route]).addCallback(_nothing)

    def _deliver(self, subscription, evt):
        d = defer.maybeDeferred(subscription.handler, evt)
        return d.addErrback(self._handler_failed, subscription, evt)

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
