"""
The durable outbox (L{callcenter.notify.outbox.Outbox}) on the backend
chosen with --db, run at once (no threads) on a L{Clock}.  The senders here
are test doubles whose Deferreds the tests fire: what a real SMSC, relay or
paging terminal does with a message is proven in the channels' own
end-to-end tests; this is the bookkeeping around them.
"""

import datetime
import os
import random

import pytest
import sqlalchemy as sa
from twisted.internet import defer
from zope.interface import implementer
from zope.interface.verify import verifyObject

from callcenter.notify import records
from callcenter.notify.interfaces import IMessageSender
from callcenter.notify.message import Accepted, OutgoingMessage, PermanentFailure, Receipt, TemporaryFailure
from callcenter.notify.outbox import Outbox
from callcenter.notify.subscriptions import subscribe
from callcenter.notify.templates import Renderer
from callcenter.notify.worker import Backoff, ChannelWorker
from callcenter.store.schema import fills, instruments, notify_messages, orders
from callcenter.trading.events import AlertFired, OrderCancelled, OrderFilled
from investors import CountingStore, add_investor, clock_at

UTC = datetime.timezone.utc
TEMPLATES = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "notify", "templates")
# 2026-12-10 10:30 in Beijing: trading hours, nobody's quiet hours.
MORNING = datetime.datetime(2026, 12, 10, 2, 30, tzinfo=UTC)


@implementer(IMessageSender)
class ScriptedSender:
    """Keeps every send's Deferred for the test to fire."""

    def __init__(self, channel, window=10):
        self.channel = channel
        self.window = window
        self.sends = []
        self.receipts = None

    def send(self, message):
        d = defer.Deferred()
        self.sends.append((message, d))
        return d

    def set_receipt_handler(self, handler):
        self.receipts = handler

    def answer_all(self, result=None):
        waiting = [d for _, d in self.sends if not d.called]
        for d in waiting:
            if isinstance(result, Exception):
                d.errback(result)
            else:
                d.callback(result or Accepted())


def fill(order_no=7, filled=100, quantity=100, ordered=300, **fields):
    values = dict(
        order_no=order_no, fund_account_no="10010001", code="600519", name_zh="贵州茅台", name_en="Kweichow Moutai",
        side="buy", quantity=quantity, price_fen=168800, filled_quantity=filled, order_quantity=ordered,
        status="partially_filled",
    )
    values.update(fields)
    return OrderFilled(**values)


def alert(rule_id=3, **fields):
    values = dict(
        rule_id=rule_id, fund_account_no="10010001", code="600519", name_zh="贵州茅台", name_en="Kweichow Moutai",
        kind="price_above", threshold=170000, last_fen=170100, prev_close_fen=165000,
    )
    values.update(fields)
    return AlertFired(**values)


class Harness:
    def __init__(self, database, channels=("sms", "email"), moment=MORNING, **outbox_args):
        self.database = database
        self.store = CountingStore(database)
        self.clock = clock_at(moment)
        self.senders = {channel: ScriptedSender(channel) for channel in channels}
        self.renderer = Renderer(TEMPLATES, channels)
        outbox_args.setdefault("backoff", Backoff(first=10, longest=600, rng=random.Random(4)))
        self.outbox = Outbox(self.store, self.clock, self.renderer, list(self.senders.values()), **outbox_args)

    def start(self):
        self.outbox.start()
        self.turn()

    def turn(self):
        """One reactor turn: what waits for the end of the turn is written."""
        self.clock.advance(0)

    def publish(self, event):
        d = self.outbox.notify(event)
        self.turn()
        return d

    def messages(self):
        return self.database.transaction(
            lambda c: c.execute(sa.select(notify_messages).order_by(notify_messages.c.message_id)).mappings().all()
        )

    def history(self, message_id):
        found = self.database.transaction(records.message_with_history, message_id)
        return [(h["state"], h["detail"]) for h in found["history"]]


@pytest.fixture
def harness(database):
    add_investor(database, "10010001")
    database.transaction(subscribe, "10010001", "sms", "+8613800138000", ["fill", "alert"], "zh")
    database.transaction(subscribe, "10010001", "email", "Zhang.Wei@Example.com", ["fill"], "en")
    made = []

    def make(**kwargs):
        made.append(Harness(database, **kwargs))
        return made[-1]

    return make


def test_senders_double_provides_the_interface():
    verifyObject(IMessageSender, ScriptedSender("sms"))


def test_a_fill_is_stored_before_it_is_acknowledged_then_sent_on_each_subscribed_channel(harness):
    h = harness()
    h.start()
    acknowledged = h.publish(fill())
    assert acknowledged.called
    rows = h.messages()
    assert [(r["channel"], r["address"], r["language"], r["state"]) for r in rows] == [
        ("sms", "+8613800138000", "zh", "queued"),
        ("email", "zhang.wei@example.com", "en", "queued"),
    ]
    sms, email = rows
    assert sms["body"].startswith("【成交回报】买入 贵州茅台(600519) 100股，成交价1688.00元，委托7已成交100/300股。")
    assert email["subject"] == "Fill: Bought 100 Kweichow Moutai (600519)"
    assert "Price: CNY 1688.00" in email["body"]
    (sent_sms, _), = h.senders["sms"].sends
    assert sent_sms.message_id == sms["message_id"] and sent_sms.body == sms["body"]
    assert sent_sms.idempotency_key == "fill:7:100:sms:+8613800138000"


def test_accepted_then_delivered_is_the_message_history(harness):
    h = harness()
    h.start()
    h.publish(fill())
    h.senders["sms"].answer_all(Accepted(provider_ids=("m-1", "m-2")))
    h.turn()
    message_id = h.messages()[0]["message_id"]
    assert h.messages()[0]["state"] == "sent"
    h.senders["sms"].receipts(Receipt("m-1", True, "DELIVRD"))
    h.turn()
    assert h.messages()[0]["state"] == "sent"  # one segment of two
    h.senders["sms"].receipts(Receipt("m-2", True, "DELIVRD"))
    h.turn()
    assert h.messages()[0]["state"] == "delivered"
    assert [state for state, _ in h.history(message_id)] == ["queued", "sent", "delivered"]


def test_a_segment_not_delivered_fails_the_message(harness):
    h = harness()
    h.start()
    h.publish(fill())
    h.senders["sms"].answer_all(Accepted(provider_ids=("m-1", "m-2")))
    h.turn()
    h.senders["sms"].receipts(Receipt("m-2", False, "UNDELIV", "err:001"))
    h.turn()
    row = h.messages()[0]
    assert (row["state"], row["last_error"]) == ("failed", "UNDELIV: err:001")
    assert h.history(row["message_id"])[-1] == ("failed", "UNDELIV: err:001")


def test_a_receipt_in_the_same_turn_as_its_acceptance_is_not_lost(harness):
    """An SMSC may send the receipt right behind submit_sm_resp, in one TCP segment."""
    h = harness()
    h.start()
    h.publish(fill())
    h.senders["sms"].answer_all(Accepted(provider_ids=("m-9",)))
    h.senders["sms"].receipts(Receipt("m-9", True, "DELIVRD"))
    h.turn()
    assert h.messages()[0]["state"] == "delivered"


def test_receipts_for_other_messages_are_answered_after_a_while_and_counted(harness):
    h = harness()
    h.start()
    answered = h.senders["sms"].receipts(Receipt("not-ours", True, "DELIVRD"))
    h.turn()
    h.clock.advance(29)
    assert not answered.called and h.outbox.unknown_receipts == 0
    h.clock.advance(2)
    assert answered.called and h.outbox.unknown_receipts == 1


def test_a_segment_receipt_before_the_message_is_taken_whole_waits_for_it(harness):
    """node-smpp answers segment 1, sends its receipt, then answers segment 2: the message is sent only then."""
    h = harness(channels=("sms",))
    h.start()
    h.publish(fill())
    early = h.senders["sms"].receipts(Receipt("m-1", True, "DELIVRD"))
    h.turn()
    assert not early.called  # the SMSC has no answer yet: it would send it again if we died now
    h.senders["sms"].answer_all(Accepted(provider_ids=("m-1", "m-2")))
    h.turn()
    h.senders["sms"].receipts(Receipt("m-2", True, "DELIVRD"))
    h.clock.advance(1)
    assert early.called
    assert h.messages()[0]["state"] == "delivered"
    assert h.outbox.unknown_receipts == 0


def test_the_same_event_twice_makes_one_message_per_channel(harness):
    h = harness()
    h.start()
    event = fill()
    h.publish(event)
    h.publish(event)
    h.publish(fill())  # the same fill, another event object (a redelivery from another node)
    assert len(h.messages()) == 2
    assert len(h.senders["sms"].sends) == 1


def test_every_fill_of_an_order_is_its_own_message(harness):
    h = harness(channels=("sms",))
    h.start()
    h.publish(fill(filled=100))
    h.publish(fill(filled=300, quantity=200, status="filled"))
    bodies = [r["body"] for r in h.messages() if r["channel"] == "sms"]
    assert len(bodies) == 2 and "全部成交" in bodies[1] and "全部成交" not in bodies[0]


def test_temporary_failures_back_off_then_dead_letter_with_the_reason(harness):
    h = harness(channels=("sms",), max_attempts=3)
    h.start()
    h.publish(fill())
    sender = h.senders["sms"]
    sender.answer_all(TemporaryFailure("SMSC link down"))
    h.turn()
    row = h.messages()[0]
    assert (row["state"], row["attempts"]) == ("queued", 1)
    first_wait = row["not_before"].replace(tzinfo=UTC).timestamp() - h.clock.seconds()
    assert 5 <= first_wait <= 15  # 10 s ± 50%
    h.clock.advance(first_wait - 0.01)
    assert len(sender.sends) == 1
    h.clock.advance(0.02)
    assert len(sender.sends) == 2
    sender.answer_all(TemporaryFailure("throttled", retry_after=120))
    h.turn()
    row = h.messages()[0]
    assert row["not_before"].replace(tzinfo=UTC).timestamp() - h.clock.seconds() >= 120
    h.clock.advance(121)
    sender.answer_all(TemporaryFailure("SMSC link down"))
    h.turn()
    row = h.messages()[0]
    assert (row["state"], row["attempts"]) == ("dead", 3)
    assert row["last_error"] == "gave up after 3 attempts: SMSC link down"
    assert [state for state, _ in h.history(row["message_id"])] == ["queued", "queued", "queued", "dead"]
    h.clock.advance(3600)
    assert len(sender.sends) == 3


def test_a_permanent_refusal_is_dead_at_once(harness):
    h = harness(channels=("sms",))
    h.start()
    h.publish(fill())
    h.senders["sms"].answer_all(PermanentFailure("ESME_RINVDSTADR: invalid destination"))
    h.turn()
    row = h.messages()[0]
    assert (row["state"], row["attempts"], row["last_error"]) == ("dead", 1, "ESME_RINVDSTADR: invalid destination")


def test_idle_and_stop_wait_for_an_outcome_still_waiting_for_its_turn(harness):
    """
    How a send went is written at the end of the reactor turn: idle() (and
    stop(), which a shutdown waits on) waits for it too, or a message sent
    just before a stop would be sent again after the restart.
    """
    h = harness(channels=("sms",))
    h.start()
    h.publish(fill())
    h.senders["sms"].answer_all()
    idle = h.outbox.idle()
    assert not idle.called
    h.turn()
    assert idle.called and sms_states(h) == ["sent"]

    h.publish(fill(order_no=8))
    h.senders["sms"].answer_all(PermanentFailure("no such number"))
    stopped = h.outbox.stop()
    assert not stopped.called
    h.turn()
    assert stopped.called and sms_states(h) == ["sent", "dead"]


def sms_states(h):
    return [row["state"] for row in h.messages() if row["channel"] == "sms"]


def test_a_dead_message_requeued_by_staff_is_sent_again(harness):
    h = harness(channels=("sms",))
    h.start()
    h.publish(fill())
    h.senders["sms"].answer_all(PermanentFailure("no such number"))
    h.turn()
    message_id = h.messages()[0]["message_id"]
    requeued = h.outbox.requeue(message_id)
    h.turn()
    assert requeued.result is True
    assert len(h.senders["sms"].sends) == 2
    h.senders["sms"].answer_all()
    h.turn()
    assert h.messages()[0]["state"] == "sent"
    again = h.outbox.requeue(message_id)
    h.turn()
    assert again.result is False


def test_quiet_hours_hold_fills_but_not_alerts(harness, database):
    database.transaction(subscribe, "10010001", "sms", "+8613800138000", ["fill", "alert"], "zh", "22:00-07:00")
    # 23:30 in Beijing.
    h = harness(channels=("sms",), moment=datetime.datetime(2026, 12, 10, 15, 30, tzinfo=UTC))
    h.start()
    h.publish(fill())
    h.publish(alert())
    sent = h.senders["sms"].sends
    assert [m.body[:6] for m, _ in sent] == ["【行情报警】"]
    held = [r for r in h.messages() if r["event"] == "fill"][0]
    assert held["not_before"].replace(tzinfo=UTC) == datetime.datetime(2026, 12, 10, 23, 0, tzinfo=UTC)  # 07:00 CST
    h.clock.advance(7.5 * 3600 - 1)
    assert len(sent) == 1
    h.clock.advance(1)
    assert len(sent) == 2


def test_alerts_wait_too_when_the_broker_says_so(harness, database):
    database.transaction(subscribe, "10010001", "sms", "+8613800138000", ["alert"], "zh", "22:00-07:00")
    h = harness(channels=("sms",), moment=datetime.datetime(2026, 12, 10, 15, 30, tzinfo=UTC), alerts_are_urgent=False)
    h.start()
    h.publish(alert())
    assert h.senders["sms"].sends == []


def test_the_rate_limit_spreads_a_burst(harness, database):
    for n in range(4):
        add_investor(database, f"2001000{n}")
        database.transaction(subscribe, f"2001000{n}", "sms", f"+861390000000{n}", ["fill"], "zh")
    h = harness(channels=("sms",), rates={"sms": 2})
    h.start()
    for n in range(4):
        h.publish(fill(order_no=n, fund_account_no=f"2001000{n}"))
    sender = h.senders["sms"]
    # Two at once (a burst of one second's worth), then two a second.
    assert len(sender.sends) == 2
    h.clock.advance(0.5)
    assert len(sender.sends) == 3
    h.clock.advance(0.5)
    assert len(sender.sends) == 4


def test_the_window_bounds_messages_in_flight(harness, database):
    for n in range(5):
        add_investor(database, f"3001000{n}")
        database.transaction(subscribe, f"3001000{n}", "sms", f"+861370000000{n}", ["fill"], "zh")
    h = harness(channels=("sms",))
    h.senders["sms"].window = 3
    h.start()
    for n in range(5):
        h.publish(fill(order_no=n, fund_account_no=f"3001000{n}"))
    sender = h.senders["sms"]
    assert len(sender.sends) == 3
    sender.sends[0][1].callback(Accepted())
    assert len(sender.sends) == 4


def test_a_restart_sends_what_was_queued_and_not_what_was_sent(harness):
    first = harness(channels=("sms",))
    first.start()
    first.publish(fill(order_no=1))
    first.publish(fill(order_no=2))
    (_, accepted), _ = first.senders["sms"].sends
    accepted.callback(Accepted(provider_ids=("x-1",)))
    first.turn()
    # The process dies here: message 2 was handed to the SMSC, never answered.
    second = harness(channels=("sms",))
    second.start()
    resent = [m for m, _ in second.senders["sms"].sends]
    assert [m.idempotency_key.split(":")[1] for m in resent] == ["2"]


def test_an_event_for_a_channel_without_a_sender_stays_queued(harness):
    h = harness(channels=("sms",))
    h.start()
    h.publish(fill())
    assert sorted((r["channel"], r["state"]) for r in h.messages()) == [("email", "queued"), ("sms", "queued")]


def test_events_nobody_subscribes_to_make_nothing(harness):
    h = harness()
    h.start()
    d = h.publish(OrderCancelled(order_no=1, fund_account_no="10010001", code="600519", cancelled_quantity=100))
    assert d.called and h.messages() == []
    h.publish(fill(fund_account_no="99999999"))
    assert h.messages() == []


def test_long_sms_texts_are_kept_within_the_segment_limit(harness):
    h = harness(channels=("sms",))
    h.renderer.sms_max_segments = 1
    h.start()
    h.publish(fill(name_zh="名" * 80))
    body = h.messages()[0]["body"]
    assert len(body) == 70 and body.endswith("…")


def _book_fill(connection, order_no, quantity, exec_id):
    if connection.execute(sa.select(instruments.c.code).where(instruments.c.code == "600519")).first() is None:
        connection.execute(instruments.insert().values(
            code="600519", exchange="SSE", name_zh="贵州茅台", name_en="Kweichow Moutai", board="main",
            lot_size=100, prev_close_fen=165000,
        ))
    if connection.execute(sa.select(orders.c.order_no).where(orders.c.order_no == order_no)).first() is None:
        connection.execute(orders.insert().values(
            order_no=order_no, client_order_id=f"c{order_no}", fund_account_no="10010001", code="600519",
            exchange="SSE", side="sell", price_fen=168800, quantity=300, status="partially_filled",
            channel="phone", trading_day="2026-12-10",
        ))
    connection.execute(fills.insert().values(
        order_no=order_no, exec_id=exec_id, quantity=quantity, price_fen=168800, amount_fen=quantity * 168800,
        commission_fen=0, stamp_duty_fen=0, transfer_fee_fen=0,
    ))


def test_fills_booked_while_down_get_their_messages_after_a_restart(harness, database):
    first = harness(channels=("sms",))
    first.start()  # the cursor starts at the ledger's end: nothing old is news
    database.transaction(_book_fill, 41, 100, "e1")
    first.publish(fill(order_no=41, filled=100, side="sell"))  # the event came: its message exists
    database.transaction(_book_fill, 41, 200, "e2")  # booked, then the process died before the event
    database.transaction(_book_fill, 42, 300, "e3")
    second = harness(channels=("sms",))
    second.start()
    keys = sorted(r["idempotency_key"] for r in second.messages() if r["channel"] == "sms")
    assert keys == ["fill:41:100:sms:+8613800138000", "fill:41:300:sms:+8613800138000", "fill:42:300:sms:+8613800138000"]
    third = harness(channels=("sms",))
    third.start()
    assert len(third.messages()) == 6  # three fills, on SMS and e-mail, none twice


def test_a_sweep_takes_up_what_another_process_queued(harness, database):
    h = harness(channels=("sms",), sweep_seconds=30)
    h.start()
    h.publish(fill())
    h.senders["sms"].answer_all(PermanentFailure("no such number"))
    h.turn()
    message_id = h.messages()[0]["message_id"]
    database.transaction(records.requeue_dead, message_id, h.outbox.now())  # `callcenter notify retry` does this
    h.clock.advance(29)
    assert len(h.senders["sms"].sends) == 1
    h.clock.advance(1)
    assert len(h.senders["sms"].sends) == 2
    h.clock.advance(30)  # still in flight: not taken twice
    assert len(h.senders["sms"].sends) == 2


def test_a_message_is_not_taken_again_until_its_outcome_is_written():
    """Until then the store still says "queued": a sweep then must not make it a second send."""
    clock = clock_at(MORNING)
    sender = ScriptedSender("sms")
    writes = []

    def record(outcome):
        writes.append(defer.Deferred())
        return writes[-1]

    worker = ChannelWorker(sender, record, clock)
    worker.start()
    pending = records.Pending(OutgoingMessage(1, "sms", "+8613800138000", "hi"), MORNING, 0)
    worker.add(pending)
    sender.sends[0][1].callback(Accepted())
    worker.add(pending)  # what a sweep reading the store now would do
    assert len(sender.sends) == 1
    writes[0].callback(None)
    worker.add(pending)  # a staff retry after it was written: a new send
    assert len(sender.sends) == 2


def test_thousands_of_messages_refused_at_once_do_not_recurse(harness, database):
    """A sender may fail a send before returning (an address it cannot take): that must not nest per message."""

    @implementer(IMessageSender)
    class RefusingAtOnce:
        channel, window = "sms", 10

        def send(self, message):
            return defer.fail(PermanentFailure("not a number"))

        def set_receipt_handler(self, handler):
            pass

    clock = clock_at(MORNING)
    dead = []
    worker = ChannelWorker(RefusingAtOnce(), lambda outcome: defer.succeed(dead.append(outcome)), clock)
    for n in range(5000):
        worker.add(records.Pending(OutgoingMessage(n, "sms", "x", "hi"), MORNING, 0))
    worker.start()
    assert len(dead) == 5000 and {o.state for o in dead} == {"dead"}


def test_attempts_receipts_and_queues_are_on_the_metrics(harness):
    from prometheus_client import generate_latest

    from callcenter.notify.metrics import NotifyMetrics

    metrics = NotifyMetrics()
    h = harness(channels=("sms",), metrics=metrics)
    h.start()
    h.publish(fill(order_no=1))
    h.publish(fill(order_no=2))
    text = generate_latest(metrics.registry).decode()
    assert 'callcenter_notify_in_flight{channel="sms"} 2.0' in text
    first, second = h.senders["sms"].sends
    first[1].callback(Accepted(provider_ids=("m-1",)))
    second[1].errback(TemporaryFailure("link down"))
    h.senders["sms"].receipts(Receipt("m-1", True, "DELIVRD"))
    h.turn()
    text = generate_latest(metrics.registry).decode()
    assert 'callcenter_notify_attempts_total{channel="sms",outcome="sent"} 1.0' in text
    assert 'callcenter_notify_attempts_total{channel="sms",outcome="queued"} 1.0' in text
    assert 'callcenter_notify_receipts_total{channel="sms",outcome="delivered"} 1.0' in text
    assert 'callcenter_notify_waiting{channel="sms"} 1.0' in text


def test_english_messages_carry_the_risk_warning_of_st_stocks(harness, database):
    database.transaction(subscribe, "10010001", "sms", "+8613800138000", ["alert"], "en")
    h = harness(channels=("sms",))
    h.start()
    h.publish(alert(code="600190", name_zh="*ST锦港", name_en="Jinzhou Port"))
    assert h.messages()[0]["body"].startswith("Price alert: *ST Jinzhou Port (600190)")


def test_a_dead_letter_of_a_channel_not_configured_is_requeued_all_the_same(harness):
    """It waits in the store for its channel; staff are told it is queued, not that it was no dead letter."""
    h = harness(channels=("sms",))
    h.start()
    h.publish(fill())
    email = [r for r in h.messages() if r["channel"] == "email"][0]
    h.database.transaction(records.record_outcomes, [records.Outcome(email["message_id"], "email", records.DEAD, 1, "x")],
                           h.outbox.now())
    requeued = h.outbox.requeue(email["message_id"])
    h.turn()
    assert requeued.result is True
    assert [r["state"] for r in h.messages() if r["channel"] == "email"] == ["queued"]
