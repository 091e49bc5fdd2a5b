"""The voice information service's short-lived listings (L{callcenter.ivr.listings.Listings})."""

from twisted.internet import defer
from twisted.internet.task import Clock

from callcenter.ivr import bulletins as data
from callcenter.ivr.listings import Listings


class HeldStore:
    """Transactions the test answers: it counts what reached the store."""

    def __init__(self):
        self.reads = []

    def transaction(self, work, *args):
        d = defer.Deferred()
        self.reads.append((work, args, d))
        return d


def results(d):
    got = []
    d.addBoth(got.append)
    return got


def test_callers_within_the_interval_share_one_read():
    store, clock = HeldStore(), Clock()
    listings = Listings(store, clock, ttl=2.0)
    first, second = results(listings.categories()), results(listings.categories())
    assert len(store.reads) == 1 and store.reads[0][0] is data.categories
    store.reads[0][2].callback(["news"])
    assert first == second == [["news"]]
    clock.advance(1.9)
    assert results(listings.categories()) == [["news"]] and len(store.reads) == 1
    clock.advance(0.1)
    listings.categories()
    assert len(store.reads) == 2


def test_each_category_apart_and_forgotten_after_a_publication():
    store, clock = HeldStore(), Clock()
    listings = Listings(store, clock, ttl=2.0)
    listings.current_bulletins("1", "now")
    listings.current_bulletins("2", "now")
    assert [args for _, args, _ in store.reads] == [("1", "now"), ("2", "now")]
    store.reads[0][2].callback(["b1"])
    assert results(listings.current_bulletins("1", "later")) == [["b1"]]
    listings.changed()
    listings.current_bulletins("1", "later")
    assert store.reads[-1][1] == ("1", "later")


def test_a_failed_read_fails_its_callers_and_is_not_kept():
    store, clock = HeldStore(), Clock()
    listings = Listings(store, clock, ttl=2.0)
    first, second = results(listings.categories()), results(listings.categories())
    store.reads[0][2].errback(RuntimeError("database gone"))
    assert first[0].check(RuntimeError) and second[0].check(RuntimeError)
    listings.categories()
    assert len(store.reads) == 2
