"""
The packet path's state, each on a Clock: the duplicate cache (RFC 5080
§2.2.2), the per-client token bucket and the log throttle.  All are
bounded whatever arrives.
"""

import ipaddress

from twisted.internet.task import Clock

from callcenter.radius.clients import RadiusClient
from callcenter.radius.duplicates import PENDING, DuplicateCache
from callcenter.radius.limits import ClientRateLimiter, LogThrottle


def test_a_request_is_pending_then_answered_then_forgotten_after_the_window():
    clock = Clock()
    cache = DuplicateCache(clock, window=30)
    assert cache.get("k") is None
    cache.begin("k")
    assert cache.get("k") is PENDING
    cache.complete("k", b"answer")
    assert cache.get("k") == b"answer"
    clock.advance(29.9)
    assert cache.get("k") == b"answer"
    clock.advance(0.1)
    assert cache.get("k") is None
    cache.begin("other")  # expired entries go as new ones come
    assert len(cache) == 1


def test_a_forgotten_request_is_new_again():
    clock = Clock()
    cache = DuplicateCache(clock)
    cache.begin("k")
    cache.forget("k")
    assert cache.get("k") is None
    cache.complete("k", b"late")  # an answer for a forgotten request is not kept
    assert cache.get("k") is None


def test_the_cache_holds_at_most_its_cap_oldest_out_first():
    clock = Clock()
    cache = DuplicateCache(clock, window=30, max_entries=3)
    for key in "abcde":
        cache.begin(key)
        clock.advance(1)
    assert len(cache) == 3
    assert cache.get("a") is None and cache.get("b") is None
    assert cache.get("e") is PENDING


def test_begun_again_a_key_keeps_its_new_lifetime():
    clock = Clock()
    cache = DuplicateCache(clock, window=10)
    cache.begin("k")
    cache.forget("k")
    clock.advance(5)
    cache.begin("k")
    clock.advance(6)
    cache.begin("other")  # pops the first "k"'s stale expiry: the second stays
    assert cache.get("k") is PENDING


def test_memory_stays_bounded_under_a_flood():
    clock = Clock()
    cache = DuplicateCache(clock, window=30, max_entries=1000)
    for n in range(20000):
        cache.begin(n)
        cache.complete(n, b"x")
        clock.advance(0.0001)
    assert len(cache) == 1000
    assert len(cache._order) <= 1000


def client(rate, burst):
    return RadiusClient("nas", ipaddress.ip_network("192.0.2.1/32"), b"s", rate=rate, burst=burst)


def test_a_client_may_burst_then_goes_at_its_rate():
    clock = Clock()
    limiter = ClientRateLimiter(clock)
    nas = client(rate=10, burst=3)
    assert [limiter.admit(nas) for _ in range(4)] == [True, True, True, False]
    clock.advance(0.1)
    assert [limiter.admit(nas) for _ in range(2)] == [True, False]
    clock.advance(100)
    assert [limiter.admit(nas) for _ in range(4)] == [True, True, True, False]


def test_clients_have_their_own_buckets():
    clock = Clock()
    limiter = ClientRateLimiter(clock)
    one = client(rate=1, burst=1)
    other = RadiusClient("other", ipaddress.ip_network("192.0.2.2/32"), b"s", rate=1, burst=1)
    assert limiter.admit(one) and not limiter.admit(one)
    assert limiter.admit(other)


def test_a_clock_stepping_back_gives_no_tokens():
    clock = Clock()
    clock.advance(100)
    limiter = ClientRateLimiter(clock)
    nas = client(rate=1, burst=1)
    assert limiter.admit(nas)
    clock.rightNow = 50
    assert not limiter.admit(nas)


def test_the_log_throttle_lets_a_few_through_then_says_how_many_it_held():
    clock = Clock()
    throttle = LogThrottle(clock, interval=10, burst=2)
    assert [throttle.admit("malformed") for _ in range(5)] == [0, 0, None, None, None]
    assert throttle.admit("unknown_client") == 0  # kinds are counted apart
    clock.advance(10)
    assert throttle.admit("malformed") == 3
    assert throttle.admit("malformed") == 0
