"""Price alert evaluation: each kind and rearm policy, the boundaries, and the index against a brute-force scan."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zope.interface.verify import verifyObject

from callcenter.trading.alerts import AlertIndex, AlertRule, price_threshold
from callcenter.trading.interfaces import IPriceAlerts
from callcenter.trading.model import Tick

PREV_CLOSE = 1350  # 浦发银行 at 13.50


def rule(rule_id, kind, threshold, rearm="once", code="600000", exchange="SSE"):
    return AlertRule(rule_id, "310000000001", code, exchange, kind, threshold, rearm)


def tick(last_fen, code="600000", exchange="SSE"):
    return Tick(code, exchange, last_fen, last_fen - 1, last_fen + 1, 1000, 1000, 0, 0.0)


def fired_ids(index, last_fen, code="600000", exchange="SSE"):
    return sorted(r.rule_id for r in index.on_tick(tick(last_fen, code, exchange)))


def index_with(*rules):
    index = AlertIndex()
    for each in rules:
        index.add(each, PREV_CLOSE)
    return index


def test_is_the_price_alerts_interface():
    assert verifyObject(IPriceAlerts, AlertIndex())


def test_price_above_fires_exactly_at_the_threshold():
    index = index_with(rule(1, "price_above", 1400))
    assert fired_ids(index, 1399) == []
    assert fired_ids(index, 1400) == [1]


def test_price_below_fires_exactly_at_the_threshold():
    index = index_with(rule(1, "price_below", 1300))
    assert fired_ids(index, 1301) == []
    assert fired_ids(index, 1300) == [1]


def test_change_up_rounds_its_price_up():
    # 13.50 * 1.0333 = 13.94955: the last price must reach 13.95 before the rise is 3.33%.
    index = index_with(rule(1, "change_up", 333))
    assert price_threshold(rule(1, "change_up", 333), PREV_CLOSE) == 1395
    assert fired_ids(index, 1394) == []
    assert fired_ids(index, 1395) == [1]


def test_change_down_rounds_its_price_down():
    # 13.50 * 0.9667 = 13.05045: 13.05 is the first price that is 3.33% down.
    index = index_with(rule(1, "change_down", 333))
    assert price_threshold(rule(1, "change_down", 333), PREV_CLOSE) == 1305
    assert fired_ids(index, 1306) == []
    assert fired_ids(index, 1305) == [1]


def test_change_rule_exactly_on_a_fen():
    # 13.50 * 1.02 = 13.77 exactly: fires at 13.77, not before.
    index = index_with(rule(1, "change_up", 200), rule(2, "change_down", 200))
    assert fired_ids(index, 1376) == []
    assert fired_ids(index, 1377) == [1]
    assert fired_ids(index, 1324) == []
    assert fired_ids(index, 1323) == [2]


def test_change_rule_needs_the_previous_close():
    with pytest.raises(ValueError):
        AlertIndex().add(rule(1, "change_up", 100))


def test_unknown_kind_or_policy_is_refused():
    with pytest.raises(ValueError):
        AlertIndex().add(rule(1, "price_sideways", 100))
    with pytest.raises(ValueError):
        AlertIndex().add(rule(1, "price_above", 100, rearm="weekly"))


def test_once_fires_once():
    index = index_with(rule(1, "price_above", 1400, "once"))
    assert fired_ids(index, 1400) == [1]
    assert index.rule_count == 0
    assert fired_ids(index, 1300) == []
    assert fired_ids(index, 1450) == []


def test_recross_rearms_after_the_price_goes_back():
    index = index_with(rule(1, "price_above", 1400, "recross"))
    assert fired_ids(index, 1400) == [1]
    assert fired_ids(index, 1410) == []
    assert fired_ids(index, 1400) == []  # at the threshold is not back below it
    assert index.rule_count == 0
    assert fired_ids(index, 1399) == []
    assert index.rule_count == 1
    assert fired_ids(index, 1400) == [1]


def test_recross_falling_rule_rearms_above_its_threshold():
    index = index_with(rule(1, "price_below", 1300, "recross"))
    assert fired_ids(index, 1290) == [1]
    assert fired_ids(index, 1300) == []
    assert fired_ids(index, 1301) == []
    assert fired_ids(index, 1300) == [1]


def test_daily_rearms_on_the_next_day_only():
    index = index_with(rule(1, "price_above", 1400, "daily"))
    assert fired_ids(index, 1400) == [1]
    assert fired_ids(index, 1300) == []
    assert fired_ids(index, 1400) == []
    index.new_day({})
    assert index.rule_count == 1
    assert fired_ids(index, 1400) == [1]


def test_new_day_reprices_change_rules():
    index = index_with(rule(1, "change_up", 500, "daily"), rule(2, "change_down", 500, "recross"))
    assert fired_ids(index, 1418) == [1]  # 13.50 * 1.05 = 14.175, up to 14.18
    index.new_day({"600000": 1400})
    assert fired_ids(index, 1469) == []  # 14.00 * 1.05 = 14.70
    assert fired_ids(index, 1470) == [1]
    assert fired_ids(index, 1331) == []  # 14.00 * 0.95 = 13.30
    assert fired_ids(index, 1330) == [2]


def test_rule_added_past_its_threshold_fires_on_the_next_tick():
    index = AlertIndex()
    index.on_tick(tick(1450))
    index.add(rule(1, "price_above", 1400), PREV_CLOSE)
    assert fired_ids(index, 1451) == [1]


def test_rule_added_past_its_threshold_waits_in_order_with_the_others():
    index = index_with(rule(1, "price_above", 1360, "recross"))
    assert fired_ids(index, 1360) == [1]
    index.add(rule(2, "price_above", 1350, "recross"), PREV_CLOSE)
    assert fired_ids(index, 1361) == [2]
    assert fired_ids(index, 1355) == []  # back below 13.60, not below 13.50
    assert index.rule_count == 1
    assert fired_ids(index, 1360) == [1]
    assert fired_ids(index, 1349) == []
    assert fired_ids(index, 1350) == [2]


def test_fires_only_the_crossed_rules_and_keeps_the_rest():
    index = index_with(*(rule(n, "price_above", 1350 + n) for n in range(1, 11)))
    assert fired_ids(index, 1354) == [1, 2, 3, 4]
    assert index.rule_count == 6
    assert fired_ids(index, 1360) == [5, 6, 7, 8, 9, 10]


def test_remove_by_id_in_every_state():
    index = index_with(
        rule(1, "price_above", 1400, "recross"),
        rule(2, "price_above", 1400, "daily"),
        rule(3, "price_above", 1400, "once"),
        rule(4, "price_above", 1400, "once"),
    )
    index.remove(4)  # armed
    assert index.rule_count == 3
    assert fired_ids(index, 1400) == [1, 2, 3]
    index.remove(1)  # waiting to recross
    index.remove(2)  # fired today
    index.remove(3)  # fired once, already gone
    index.remove(99)  # never known
    index.new_day({})
    assert fired_ids(index, 1300) == []
    assert fired_ids(index, 1400) == []
    assert index.rule_count == 0


def test_adding_an_existing_id_replaces_the_rule():
    index = index_with(rule(1, "price_above", 1400))
    index.add(rule(1, "price_below", 1300), PREV_CLOSE)
    assert index.rule_count == 1
    assert fired_ids(index, 1400) == []
    assert fired_ids(index, 1300) == [1]


def test_same_code_on_two_exchanges_are_apart():
    index = AlertIndex()
    index.add(rule(1, "price_above", 1200, code="000001", exchange="SZSE"), 1152)
    index.add(rule(2, "price_above", 320000, code="000001", exchange="SSE"), 330000)
    assert fired_ids(index, 330000, "000001", "SZSE") == [1]


def test_ticks_of_instruments_without_rules_fire_nothing():
    index = index_with(rule(1, "price_above", 1400))
    assert fired_ids(index, 99999, "600036") == []


# -- the index against a brute-force scan of every rule

# Two instruments are enough for the index's per-instrument bookkeeping; the
# same code on two exchanges is tested above.
INSTRUMENTS = (("600000", "SSE"), ("000001", "SZSE"))
KINDS = ("price_above", "price_below", "change_up", "change_down")
POLICIES = ("once", "recross", "daily")


class BruteForce:
    """Every rule with its state; each tick checks all of them, with the conditions in exact arithmetic."""

    def __init__(self):
        self.rules = {}
        self.state = {}
        self.prev_close = {}

    def add(self, new_rule, prev_close_fen):
        self.prev_close[(new_rule.code, new_rule.exchange)] = prev_close_fen
        self.rules[new_rule.rule_id] = new_rule
        self.state[new_rule.rule_id] = "armed"

    def remove(self, rule_id):
        self.rules.pop(rule_id, None)
        self.state.pop(rule_id, None)

    def holds(self, each, last):
        close = self.prev_close[(each.code, each.exchange)]
        return {
            "price_above": last >= each.threshold,
            "price_below": last <= each.threshold,
            "change_up": last * 10000 >= close * (10000 + each.threshold),
            "change_down": last * 10000 <= close * (10000 - each.threshold),
        }[each.kind]

    def on_tick(self, t):
        fired = []
        for rule_id, each in list(self.rules.items()):
            if (each.code, each.exchange) != (t.code, t.exchange):
                continue
            state = self.state[rule_id]
            if state == "armed" and self.holds(each, t.last_fen):
                fired.append(rule_id)
                if each.rearm == "once":
                    self.remove(rule_id)
                else:
                    self.state[rule_id] = "waiting" if each.rearm == "recross" else "done_today"
            elif state == "waiting" and not self.holds(each, t.last_fen):
                self.state[rule_id] = "armed"
        return sorted(fired)

    def new_day(self, prev_closes):
        for code, exchange in self.prev_close:
            if code in prev_closes:
                self.prev_close[(code, exchange)] = prev_closes[code]
        for rule_id, state in self.state.items():
            if state == "done_today":
                self.state[rule_id] = "armed"

    @property
    def rule_count(self):
        return sum(1 for state in self.state.values() if state == "armed")


# Prices, thresholds and previous closes in a narrow band, and ticks that
# walk a few fen at a time (with the odd jump), so that they cross rules
# often, land exactly on thresholds and their roundings, and go back and forth.
closes = st.integers(995, 1005)
rules_specs = st.tuples(
    st.sampled_from(INSTRUMENTS), st.sampled_from(KINDS), st.integers(0, 20), st.sampled_from(POLICIES)
)
steps = st.one_of(
    st.tuples(st.just("tick"), st.sampled_from(INSTRUMENTS), st.integers(-3, 3)),
    st.tuples(st.just("tick"), st.sampled_from(INSTRUMENTS), st.integers(-3, 3)),
    st.tuples(st.just("tick"), st.sampled_from(INSTRUMENTS), st.integers(-3, 3)),
    st.tuples(st.just("tick"), st.sampled_from(INSTRUMENTS), st.integers(-15, 15)),
    st.tuples(st.just("add"), rules_specs),
    st.tuples(st.just("remove"), st.integers(0, 40)),
    st.tuples(st.just("new_day"), st.dictionaries(st.sampled_from(["600000", "000001"]), closes)),
)


def make_rule(rule_id, spec, close):
    (code, exchange), kind, offset, policy = spec
    # Change rules in basis points (0 to 1%); price rules within 10 fen of the close.
    threshold = offset * 5 if kind.startswith("change") else close - 10 + offset
    return AlertRule(rule_id, f"31000000{rule_id:04d}", code, exchange, kind, threshold, policy)


@settings(max_examples=400, deadline=None)
@given(
    first_closes=st.tuples(closes, closes),
    initial=st.lists(rules_specs, min_size=5, max_size=60),
    script=st.lists(steps, min_size=20, max_size=200),
)
def test_index_fires_what_a_scan_of_all_rules_fires(first_closes, initial, script):
    index, reference = AlertIndex(), BruteForce()
    close_of = dict(zip(INSTRUMENTS, first_closes))
    last_of = dict(close_of)
    next_id = 0

    def add(spec):
        nonlocal next_id
        instrument = spec[0]
        new_rule = make_rule(next_id, spec, close_of[instrument])
        next_id += 1
        index.add(new_rule, close_of[instrument])
        reference.add(new_rule, close_of[instrument])

    for spec in initial:
        add(spec)
    for step in script:
        if step[0] == "tick":
            instrument, move = step[1], step[2]
            last_of[instrument] = min(max(last_of[instrument] + move, 975), 1025)
            t = tick(last_of[instrument], *instrument)
            assert sorted(r.rule_id for r in index.on_tick(t)) == reference.on_tick(t)
        elif step[0] == "add":
            add(step[1])
        elif step[0] == "remove":
            index.remove(step[1])
            reference.remove(step[1])
        else:
            for code, exchange in INSTRUMENTS:
                close_of[(code, exchange)] = step[1].get(code, close_of[(code, exchange)])
            index.new_day(step[1])
            reference.new_day(step[1])
        assert index.rule_count == reference.rule_count
