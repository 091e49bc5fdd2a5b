"""
Price alerts (行情报警): investors' rules on an instrument's last price,
evaluated on every tick without looking at rules the tick does not cross.

Kinds of rule, with C{threshold} in fen for prices and in basis points of
the previous close for changes:

  - C{price_above}: last >= threshold;
  - C{price_below}: last <= threshold;
  - C{change_up}: last >= prev close * (1 + threshold / 10000);
  - C{change_down}: last <= prev close * (1 - threshold / 10000).

A change rule is turned into a price in fen from the previous close,
rounded up for C{change_up} and down for C{change_down}: prices are whole
fen, so last >= ceil(x) exactly when last >= x, and a rule fires neither
early nor late.

After firing, a rule's C{rearm} policy decides what it does next:

  - C{once}: nothing; it leaves the index;
  - C{recross}: it is armed again once the price goes back across the
    threshold the other way (below it for rising rules, above it for
    falling ones);
  - C{daily}: it is armed again by L{AlertIndex.new_day}.

A rule is checked on the ticks after it is added: one added when the price
is already past its threshold fires on the next tick.
"""

from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from zope.interface import implementer

from callcenter.trading.interfaces import IPriceAlerts

PRICE_ABOVE = "price_above"
PRICE_BELOW = "price_below"
CHANGE_UP = "change_up"
CHANGE_DOWN = "change_down"
KINDS = (PRICE_ABOVE, PRICE_BELOW, CHANGE_UP, CHANGE_DOWN)
RISING_KINDS = (PRICE_ABOVE, CHANGE_UP)
CHANGE_KINDS = (CHANGE_UP, CHANGE_DOWN)

ONCE = "once"
RECROSS = "recross"
DAILY = "daily"
REARM_POLICIES = (ONCE, RECROSS, DAILY)

BASIS_POINTS = 10000

# Below every key: each list starts with it, so the lists are never empty
# and the hot path needs no emptiness checks.
_SENTINEL_KEY = -(1 << 62)


@dataclass(frozen=True, slots=True)
class AlertRule:
    rule_id: int
    fund_account_no: str
    code: str
    exchange: str
    kind: str
    threshold: int
    rearm: str


def price_threshold(rule, prev_close_fen):
    """The rule's threshold as a price in fen (see the module docstring for the rounding)."""
    if rule.kind == CHANGE_UP:
        return -(-prev_close_fen * (BASIS_POINTS + rule.threshold) // BASIS_POINTS)
    if rule.kind == CHANGE_DOWN:
        return prev_close_fen * (BASIS_POINTS - rule.threshold) // BASIS_POINTS
    return rule.threshold


class _Trigger:
    """
    Rules sorted by an integer key, which fire, all at once, when a probe
    reaches their key: the ones with key >= probe, a tail of the list.
    Keeping the rules nearest the price at the end makes taking them a
    slice off the end, whose cost is the number taken, not the number kept.

    Rising conditions (last >= T) use the key -T and the probe -last;
    falling ones (last <= T) the key T and the probe last.  Moving a rule
    between a rising and a falling list is negating its key.
    """

    __slots__ = ("keys", "rules")

    def __init__(self):
        self.keys = [_SENTINEL_KEY]
        self.rules = [None]

    def take_reached(self, probe):
        """Remove and return (keys, rules) of every rule with key >= probe, in key order."""
        start = bisect_left(self.keys, probe)
        keys, rules = self.keys[start:], self.rules[start:]
        del self.keys[start:], self.rules[start:]
        return keys, rules

    def insert(self, key, rule):
        at = bisect_right(self.keys, key)
        self.keys.insert(at, key)
        self.rules.insert(at, rule)

    def insert_run(self, keys, rules):
        """Insert rules with ascending keys; usually they all go at the end, near the price."""
        if keys[0] >= self.keys[-1]:
            self.keys += keys
            self.rules += rules
        else:
            for key, rule in zip(keys, rules):
                self.insert(key, rule)

    def discard(self, key, rule):
        """Remove this very rule (found by key, then identity); whether it was here."""
        keys, rules = self.keys, self.rules
        for at in range(bisect_left(keys, key), bisect_right(keys, key)):
            if rules[at] is rule:
                del keys[at], rules[at]
                return True
        return False

    def entries(self):
        return zip(self.keys[1:], self.rules[1:])


class _InstrumentRules:
    """
    The rules of one instrument: armed rising and falling ones, and recross
    rules that fired and wait for the price to go back (C{rise_rearm} holds
    rising rules, which re-arm when last < T, a falling condition; and the
    other way round).

    C{low} and C{high} bound the quiet band: a tick with low < last < high
    crosses nothing, which is all most ticks need to learn.
    """

    __slots__ = ("prev_close_fen", "rising", "falling", "rise_rearm", "fall_rearm", "low", "high")

    def __init__(self, prev_close_fen):
        self.prev_close_fen = prev_close_fen
        self.rising = _Trigger()
        self.falling = _Trigger()
        self.rise_rearm = _Trigger()
        self.fall_rearm = _Trigger()
        self.refresh()

    def refresh(self):
        # rising fires at last >= T (key -T); fall_rearm re-arms at last > T, i.e. last >= T + 1 (key -T);
        # falling fires at last <= T (key T); rise_rearm re-arms at last < T, i.e. last <= T - 1 (key T).
        self.high = min(-self.rising.keys[-1], 1 - self.fall_rearm.keys[-1])
        self.low = max(self.falling.keys[-1], self.rise_rearm.keys[-1] - 1)

    def armed_trigger(self, rule):
        return self.rising if rule.kind in RISING_KINDS else self.falling

    def rearm_trigger(self, rule):
        return self.rise_rearm if rule.kind in RISING_KINDS else self.fall_rearm

    def armed_key(self, rule):
        threshold = price_threshold(rule, self.prev_close_fen)
        return -threshold if rule.kind in RISING_KINDS else threshold


@implementer(IPriceAlerts)
class AlertIndex:
    """
    All armed rules, per instrument, sorted by threshold, so that a tick
    takes exactly the rules it crosses (a bisect and a slice) and a tick
    that crosses none costs a dict lookup and two comparisons.
    """

    def __init__(self):
        self._instruments = {}
        self._rules = {}
        self._fired_today = set()
        self._armed = 0

    @property
    def rule_count(self):
        """How many rules are armed."""
        return self._armed

    def add(self, rule, prev_close_fen=None):
        """
        Arm a rule; one with the same id is replaced.  C{prev_close_fen} is
        the instrument's previous close, needed by change rules; given with
        a new value, it re-prices the instrument's change rules.
        """
        if rule.kind not in KINDS:
            raise ValueError(f"alert rule {rule.rule_id}: unknown kind {rule.kind!r}")
        if rule.rearm not in REARM_POLICIES:
            raise ValueError(f"alert rule {rule.rule_id}: unknown rearm policy {rule.rearm!r}")
        key = (rule.code, rule.exchange)
        rules = self._instruments.get(key)
        if rule.kind in CHANGE_KINDS and prev_close_fen is None and (rules is None or rules.prev_close_fen is None):
            raise ValueError(f"alert rule {rule.rule_id}: a change rule needs the previous close")
        self.remove(rule.rule_id)
        if rules is None:
            rules = self._instruments[key] = _InstrumentRules(prev_close_fen)
        elif prev_close_fen is not None and prev_close_fen != rules.prev_close_fen:
            self._reprice(rules, prev_close_fen)
        self._rules[rule.rule_id] = rule
        rules.armed_trigger(rule).insert(rules.armed_key(rule), rule)
        rules.refresh()
        self._armed += 1

    def remove(self, rule_id):
        """Forget a rule, armed or not; an unknown id is ignored."""
        rule = self._rules.pop(rule_id, None)
        if rule is None:
            return
        if rule_id in self._fired_today:
            self._fired_today.discard(rule_id)
            return
        rules = self._instruments[(rule.code, rule.exchange)]
        key = rules.armed_key(rule)
        if rules.armed_trigger(rule).discard(key, rule):
            self._armed -= 1
        else:
            rules.rearm_trigger(rule).discard(-key, rule)
        rules.refresh()

    def on_tick(self, tick):
        """The rules this tick fires, in no particular order."""
        rules = self._instruments.get((tick.code, tick.exchange))
        if rules is None:
            return []
        last = tick.last_fen
        if rules.low < last < rules.high:
            return []
        return self._crossed(rules, last)

    def new_day(self, prev_closes):
        """
        A new trading day: change rules are re-priced from C{prev_closes}
        (a mapping of code to the previous close in fen; instruments it
        leaves out keep theirs), then the daily rules that fired are armed
        again.  Recross rules keep waiting, now for their new threshold.
        """
        for (code, _), rules in self._instruments.items():
            prev_close_fen = prev_closes.get(code)
            if prev_close_fen is not None and prev_close_fen != rules.prev_close_fen:
                self._reprice(rules, prev_close_fen)
        fired, self._fired_today = self._fired_today, set()
        for rule_id in fired:
            rule = self._rules[rule_id]
            rules = self._instruments[(rule.code, rule.exchange)]
            rules.armed_trigger(rule).insert(rules.armed_key(rule), rule)
            rules.refresh()
        self._armed += len(fired)

    def _crossed(self, rules, last):
        fired = []
        for armed, rearm, probe in ((rules.rising, rules.rise_rearm, -last), (rules.falling, rules.fall_rearm, last)):
            if armed.keys[-1] < probe:
                continue
            keys, taken = armed.take_reached(probe)
            fired += taken
            self._armed -= len(taken)
            # Walked nearest-the-price last, so the re-arm keys come out ascending.
            back_keys, back_rules = [], []
            for key, rule in zip(reversed(keys), reversed(taken)):
                rearm_policy = rule.rearm
                if rearm_policy == ONCE:
                    del self._rules[rule.rule_id]
                elif rearm_policy == RECROSS:
                    back_keys.append(-key)
                    back_rules.append(rule)
                else:
                    self._fired_today.add(rule.rule_id)
            if back_keys:
                rearm.insert_run(back_keys, back_rules)
        for waiting, armed, probe in ((rules.rise_rearm, rules.rising, last + 1),
                                      (rules.fall_rearm, rules.falling, 1 - last)):
            if waiting.keys[-1] < probe:
                continue
            keys, taken = waiting.take_reached(probe)
            armed.insert_run([-key for key in reversed(keys)], taken[::-1])
            self._armed += len(taken)
        rules.refresh()
        return fired

    def _reprice(self, rules, prev_close_fen):
        """Set an instrument's previous close and re-sort its change rules by their new prices."""
        rules.prev_close_fen = prev_close_fen
        for armed, rearm in ((rules.rising, rules.rise_rearm), (rules.falling, rules.fall_rearm)):
            for trigger, sign in ((armed, 1), (rearm, -1)):
                entries = [(sign * rules.armed_key(rule), rule) for _, rule in trigger.entries()]
                entries.sort(key=lambda entry: entry[0])
                trigger.keys[1:] = [key for key, _ in entries]
                trigger.rules[1:] = [rule for _, rule in entries]
        rules.refresh()
