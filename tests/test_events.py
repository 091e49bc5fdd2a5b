"""
Typed events and the in-process event bus (L{callcenter.events}).
"""

import dataclasses
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.logger import formatEvent
from twisted.python.failure import Failure

from callcenter.events import Event, InProcessEventBus, event, from_json, to_json
from callcenter.interfaces import IEventBus
from callcenter.metrics import Metrics
from outcomes import CapturedLog, results_of


@event("test_events.base")
class Base(Event):
    text: str = ""


@event("test_events.derived")
class Derived(Base):
    number: int = 0


@event("test_events.other")
class Other(Event):
    pass


@event("test_events.structured")
class Structured(Event):
    items: list = dataclasses.field(default_factory=list)
    mapping: dict = dataclasses.field(default_factory=dict)
    ratio: float = 0.0
    flag: bool = False
    nothing: str | None = None


class Boom(Exception):
    pass


@pytest.fixture
def logged():
    with CapturedLog() as events:
        yield events


@pytest.fixture
def metrics():
    return Metrics()


@pytest.fixture
def bus(metrics):
    return InProcessEventBus(metrics)


def handler_errors(metrics, subscriber, topic):
    return metrics.registry.get_sample_value(
        "callcenter_event_handler_errors_total", {"subscriber": subscriber, "topic": topic}
    )


def failures_logged(logged):
    return [e for e in logged if e.get("log_failure") is not None]


# Defining events -----------------------------------------------------------


def test_event_decorator_sets_the_topic():
    assert Base.topic == "test_events.base"
    assert Derived.topic == "test_events.derived"
    assert Derived(text="t").topic == "test_events.derived"


def test_registering_a_topic_twice_raises_value_error():
    class Again(Event):
        pass

    with pytest.raises(ValueError, match="test_events.base"):
        event("test_events.base")(Again)


def test_failed_duplicate_registration_keeps_the_first_class():
    class Again(Event):
        pass

    with pytest.raises(ValueError):
        event("test_events.other")(Again)

    assert type(from_json(to_json(Other()))) is Other


def test_events_are_frozen():
    evt = Derived(text="a", number=1)

    with pytest.raises(dataclasses.FrozenInstanceError):
        evt.text = "b"
    with pytest.raises(dataclasses.FrozenInstanceError):
        evt.correlation_id = "x"


def test_event_fields_are_keyword_only():
    with pytest.raises(TypeError):
        Base("positional")
    with pytest.raises(TypeError):
        Derived("a", 1)
    assert Derived(text="a", number=1).number == 1


def test_each_event_gets_a_distinct_correlation_id_by_default():
    ids = {Base().correlation_id for _ in range(200)}

    assert len(ids) == 200
    for cid in ids:
        assert re.fullmatch(r"[0-9a-f]{16}", cid)


def test_correlation_id_can_be_given():
    assert Base(correlation_id="call-1").correlation_id == "call-1"


def test_events_are_instances_of_their_bases():
    evt = Derived()

    assert isinstance(evt, Base)
    assert isinstance(evt, Event)
    assert not isinstance(Base(), Derived)


# JSON ----------------------------------------------------------------------


def test_to_json_carries_topic_and_every_field():
    evt = Derived(text="hello", number=3, correlation_id="cid-1")

    assert json.loads(to_json(evt)) == {
        "topic": "test_events.derived",
        "fields": {"correlation_id": "cid-1", "text": "hello", "number": 3},
    }


def test_json_round_trip_keeps_type_fields_and_correlation_id():
    evt = Derived(text="中文 ünïcødé ✓", number=-7, correlation_id="cid-42")

    text = to_json(evt)
    back = from_json(text)

    assert type(back) is Derived
    assert back == evt
    assert back.correlation_id == "cid-42"
    assert "中文" in text  # written as is, not as \\u escapes


def test_json_round_trip_of_structured_fields():
    evt = Structured(
        items=[1, "二", None, [True]], mapping={"k": {"v": 1.5}}, ratio=0.25, flag=True
    )

    assert from_json(to_json(evt)) == evt


def test_to_json_is_a_single_line():
    assert "\n" not in to_json(Base(text="line one\nline two"))


def test_from_json_unknown_topic_raises_value_error():
    text = json.dumps({"topic": "test_events.never_registered", "fields": {}})

    with pytest.raises(ValueError, match="test_events.never_registered"):
        from_json(text)


def test_from_json_without_topic_raises_value_error():
    with pytest.raises(ValueError):
        from_json(json.dumps({"fields": {}}))


@given(
    text=st.text(),
    number=st.integers(),
    correlation_id=st.text(min_size=1),
)
def test_json_round_trips_arbitrary_text_and_integers(text, number, correlation_id):
    evt = Derived(text=text, number=number, correlation_id=correlation_id)

    back = from_json(to_json(evt))

    assert type(back) is Derived
    assert back == evt


# The bus -------------------------------------------------------------------


def test_bus_provides_the_event_bus_interface(bus):
    from zope.interface.verify import verifyObject

    assert verifyObject(IEventBus, bus)


def test_publish_delivers_to_exact_and_base_subscribers_in_subscription_order(bus):
    calls = []
    bus.subscribe(Base, lambda e: calls.append(("base", e)), "base")
    bus.subscribe(Other, lambda e: calls.append(("other", e)), "other")
    bus.subscribe(Derived, lambda e: calls.append(("derived", e)), "derived")
    bus.subscribe(Event, lambda e: calls.append(("any", e)), "any")
    evt = Derived(text="x")

    assert results_of(bus.publish(evt)) == [None]

    assert calls == [("base", evt), ("derived", evt), ("any", evt)]


def test_publish_of_a_base_event_skips_subclass_subscribers(bus):
    calls = []
    bus.subscribe(Derived, lambda e: calls.append("derived"), "derived")
    bus.subscribe(Base, lambda e: calls.append("base"), "base")

    bus.publish(Base())

    assert calls == ["base"]


def test_publish_with_no_subscribers_succeeds(bus):
    assert results_of(bus.publish(Other())) == [None]


def test_publish_result_is_none_whatever_handlers_return(bus):
    bus.subscribe(Base, lambda e: "ignored", "a")
    bus.subscribe(Base, lambda e: defer.succeed(42), "b")

    assert results_of(bus.publish(Base())) == [None]


def test_publish_counts_published_events_by_topic(bus, metrics):
    bus.publish(Base())
    bus.publish(Base())
    bus.publish(Other())

    def published(topic):
        return metrics.registry.get_sample_value(
            "callcenter_events_published_total", {"topic": topic}
        )

    assert published("test_events.base") == 2
    assert published("test_events.other") == 1


def test_subscriber_raising_is_isolated_logged_and_counted(bus, metrics, logged):
    calls = []

    def broken(e):
        raise Boom("handler broke")

    bus.subscribe(Base, lambda e: calls.append("before"), "before")
    bus.subscribe(Base, broken, "broken")
    bus.subscribe(Base, lambda e: calls.append("after"), "after")
    evt = Base(correlation_id="cid-boom")

    assert results_of(bus.publish(evt)) == [None]

    assert calls == ["before", "after"]
    assert handler_errors(metrics, "broken", "test_events.base") == 1
    assert handler_errors(metrics, "before", "test_events.base") is None
    [logged_event] = failures_logged(logged)
    assert logged_event["log_failure"].check(Boom)
    assert logged_event["subscriber"] == "broken"
    assert logged_event["topic"] == "test_events.base"
    assert logged_event["cid"] == "cid-boom"
    assert formatEvent(logged_event) == "subscriber broken failed on test_events.base"


def test_publish_waits_for_a_deferred_returned_by_a_subscriber(bus):
    pending = defer.Deferred()
    calls = []
    bus.subscribe(Base, lambda e: pending, "slow")
    bus.subscribe(Base, lambda e: calls.append("fast"), "fast")

    outcome = results_of(bus.publish(Base()))

    assert calls == ["fast"]  # delivery does not wait for the slow one
    assert outcome == []
    pending.callback("done")
    assert outcome == [None]


def test_publish_waits_for_every_pending_subscriber(bus):
    first, second = defer.Deferred(), defer.Deferred()
    bus.subscribe(Base, lambda e: first, "first")
    bus.subscribe(Base, lambda e: second, "second")

    outcome = results_of(bus.publish(Base()))

    second.callback(None)
    assert outcome == []
    first.callback(None)
    assert outcome == [None]


def test_subscriber_deferred_failing_later_is_isolated_logged_and_counted(bus, metrics, logged):
    pending = defer.Deferred()
    calls = []
    bus.subscribe(Base, lambda e: pending, "slow")
    bus.subscribe(Base, lambda e: calls.append("other"), "other")
    evt = Base(correlation_id="cid-late")

    outcome = results_of(bus.publish(evt))
    assert outcome == []
    pending.errback(Boom("late"))

    assert outcome == [None]
    assert calls == ["other"]
    assert handler_errors(metrics, "slow", "test_events.base") == 1
    [logged_event] = failures_logged(logged)
    assert logged_event["log_failure"].check(Boom)
    assert logged_event["cid"] == "cid-late"
    assert logged_event["subscriber"] == "slow"


def test_subscriber_returning_an_already_failed_deferred_is_isolated(bus, metrics):
    calls = []
    bus.subscribe(Base, lambda e: defer.fail(Boom("at once")), "failed")
    bus.subscribe(Base, lambda e: calls.append("other"), "other")

    assert results_of(bus.publish(Base())) == [None]

    assert calls == ["other"]
    assert handler_errors(metrics, "failed", "test_events.base") == 1


def test_failing_subscribers_are_counted_per_subscriber_and_topic(bus, metrics):
    def broken(e):
        raise Boom()

    bus.subscribe(Event, broken, "broken")

    bus.publish(Base())
    bus.publish(Base())
    bus.publish(Other())

    assert handler_errors(metrics, "broken", "test_events.base") == 2
    assert handler_errors(metrics, "broken", "test_events.other") == 1


def test_bus_without_metrics_still_isolates_failures(logged):
    bus = InProcessEventBus()
    calls = []

    def broken(e):
        raise Boom()

    bus.subscribe(Base, broken, "broken")
    bus.subscribe(Base, lambda e: calls.append("ok"), "ok")

    assert results_of(bus.publish(Base())) == [None]

    assert calls == ["ok"]
    assert len(failures_logged(logged)) == 1


def test_cancelled_subscription_gets_no_more_events(bus):
    calls = []
    subscription = bus.subscribe(Base, lambda e: calls.append("cancelled"), "cancelled")
    bus.subscribe(Base, lambda e: calls.append("kept"), "kept")
    bus.publish(Base())

    subscription.cancel()
    bus.publish(Base())

    assert calls == ["cancelled", "kept", "kept"]


def test_subscription_records_what_was_subscribed(bus):
    def handler(e):
        pass

    subscription = bus.subscribe(Derived, handler, "someone")

    assert subscription.event_type is Derived
    assert subscription.handler is handler
    assert subscription.subscriber == "someone"


def test_subscribing_the_same_handler_twice_delivers_twice(bus):
    calls = []
    bus.subscribe(Base, calls.append, "one")
    bus.subscribe(Base, calls.append, "two")
    evt = Base()

    bus.publish(evt)

    assert calls == [evt, evt]


def test_subscriber_added_during_publish_gets_only_later_events(bus):
    calls = []

    def subscribe_another(e):
        bus.subscribe(Base, lambda e: calls.append(("late", e.text)), "late")

    bus.subscribe(Base, subscribe_another, "first")

    bus.publish(Base(text="one"))
    assert calls == []
    bus.publish(Base(text="two"))
    assert calls == [("late", "two")]


def test_publish_failure_is_not_left_unhandled(bus, logged):
    import gc

    bus.subscribe(Base, lambda e: defer.fail(Boom()), "failed")

    d = bus.publish(Base())
    del d
    gc.collect()

    unhandled = [e for e in logged if "Unhandled error" in (e.get("log_format") or "")]
    assert unhandled == []
    assert all(isinstance(e["log_failure"], Failure) for e in failures_logged(logged))
