"""The per-source rate limit and failed-authentication block."""

import ipaddress

import pytest
from twisted.internet.task import Clock

from callcenter.sip.guard import SourceGuard

SCANNER = "198.51.100.7"
CARRIER = "203.0.113.10"


def make_guard(**options):
    clock = Clock()
    clock.advance(1_700_000_000)
    return clock, SourceGuard(clock, **options)


def fail(guard, source, times):
    return [guard.auth_failed(source) for _ in range(times)]


def test_burst_then_throttle():
    _, guard = make_guard(rate=10, burst=20)
    assert [guard.admit(SCANNER) for _ in range(20)] == ["ok"] * 20
    assert guard.admit(SCANNER) == "throttle"
    assert guard.admit("198.51.100.8") == "ok"  # buckets are per source


def test_bucket_refills_at_rate_up_to_burst():
    clock, guard = make_guard(rate=10, burst=20)
    for _ in range(20):
        guard.admit(SCANNER)
    clock.advance(0.5)
    assert [guard.admit(SCANNER) for _ in range(6)] == ["ok"] * 5 + ["throttle"]
    clock.advance(3600)
    assert [guard.admit(SCANNER) for _ in range(21)] == ["ok"] * 20 + ["throttle"]


def test_sustained_rate_is_admitted():
    clock, guard = make_guard(rate=50, burst=100)
    admitted = 0
    for _ in range(10 * 50):
        admitted += guard.admit(SCANNER) == "ok"
        clock.advance(1 / 50)
    assert admitted == 500


def test_block_after_max_failures_within_window():
    clock, guard = make_guard(max_failures=5, failure_window=60, block_for=600)
    assert fail(guard, SCANNER, 4) == [False] * 4
    clock.advance(59)
    assert guard.auth_failed(SCANNER) is True  # the caller logs this once
    assert guard.admit(SCANNER) == "block"
    assert guard.auth_failed(SCANNER) is False
    assert list(guard.blocked_sources()) == [SCANNER]
    assert guard.admit("198.51.100.8") == "ok"


def test_failures_spread_beyond_the_window_do_not_block():
    clock, guard = make_guard(max_failures=5, failure_window=60)
    for _ in range(20):
        assert guard.auth_failed(SCANNER) is False
        clock.advance(15.1)
    assert guard.admit(SCANNER) == "ok"
    assert guard.blocked_sources() == {}


def test_block_lifts_after_block_for():
    clock, guard = make_guard(max_failures=3, block_for=600)
    fail(guard, SCANNER, 3)
    assert guard.blocked_sources() == {SCANNER: clock.seconds() + 600}
    clock.advance(599)
    assert guard.admit(SCANNER) == "block"
    clock.advance(1)
    assert guard.admit(SCANNER) == "ok"
    assert guard.blocked_sources() == {}
    # The failures that led to the block are forgiven with it.
    assert fail(guard, SCANNER, 2) == [False, False]


def test_unblock():
    _, guard = make_guard(max_failures=1)
    assert guard.auth_failed(SCANNER)
    assert guard.unblock(SCANNER) is True
    assert guard.unblock(SCANNER) is False
    assert guard.admit(SCANNER) == "ok"


def test_success_resets_failures():
    _, guard = make_guard(max_failures=3)
    fail(guard, SCANNER, 2)
    guard.auth_succeeded(SCANNER)
    assert fail(guard, SCANNER, 2) == [False, False]
    assert guard.auth_failed(SCANNER) is True
    guard.auth_succeeded("192.0.2.99")  # an unknown source is fine


def test_allow_list_never_blocked_nor_throttled():
    allow = ["203.0.113.0/24", ipaddress.ip_network("2001:db8::/32")]
    _, guard = make_guard(max_failures=1, rate=1, burst=1, allow=allow)
    for source in [CARRIER, "2001:db8::5060", f"::ffff:{CARRIER}"]:
        assert fail(guard, source, 10) == [False] * 10
        assert [guard.admit(source) for _ in range(1000)] == ["ok"] * 1000
    assert guard.blocked_sources() == {}
    assert len(guard) == 0


def test_ipv6_sources_counted_per_64():
    _, guard = make_guard(max_failures=2, rate=1, burst=2)
    assert guard.admit("2001:db8:1:2::1") == "ok"
    assert guard.admit("2001:db8:1:2:ffff::9") == "ok"
    assert guard.admit("2001:db8:1:2::abcd") == "throttle"
    assert guard.admit("2001:db8:1:3::1") == "ok"
    guard.auth_failed("2001:db8:1:2::1")
    assert guard.auth_failed("2001:db8:1:2::2") is True
    assert list(guard.blocked_sources()) == ["2001:db8:1:2::/64"]
    assert guard.unblock("2001:db8:1:2::/64") is True


def test_ipv4_mapped_is_the_ipv4_source():
    _, guard = make_guard(max_failures=1)
    guard.auth_failed(f"::ffff:{SCANNER}")
    assert guard.admit(SCANNER) == "block"


def test_table_bounded_under_spoofed_flood():
    _, guard = make_guard(max_sources=10_000)
    for n in range(100_000):
        assert guard.admit(str(ipaddress.IPv4Address(0x0A000000 + n))) == "ok"
        assert len(guard) <= 10_000
    assert len(guard) == 10_000


def test_flood_evicts_least_recently_seen_but_not_blocks():
    _, guard = make_guard(max_sources=100, max_failures=1, rate=1, burst=1)
    guard.auth_failed(SCANNER)
    guard.admit("192.0.2.1")
    assert guard.admit("192.0.2.1") == "throttle"
    for n in range(200):
        guard.admit(str(ipaddress.IPv4Address(0x0A000000 + n)))
    assert guard.admit(SCANNER) == "block"
    assert guard.admit("192.0.2.1") == "ok"  # forgotten, so a fresh bucket


def test_blocked_table_bounded_oldest_lifted_first():
    clock, guard = make_guard(max_failures=1, max_blocked=3)
    for n in range(5):
        guard.auth_failed(f"192.0.2.{n}")
        clock.advance(1)
    assert sorted(guard.blocked_sources()) == ["192.0.2.2", "192.0.2.3", "192.0.2.4"]


def test_idle_sources_forgotten():
    clock, guard = make_guard(rate=50, burst=100, failure_window=60)
    for n in range(100):
        guard.admit(f"192.0.2.{n}")
    clock.advance(61)
    for _ in range(60):
        guard.admit(SCANNER)
    assert len(guard) == 1


def test_clock_stepping_back_does_not_grant_tokens():
    clock, guard = make_guard(rate=1, burst=1)
    assert guard.admit(SCANNER) == "ok"
    clock.advance(-100)
    assert guard.admit(SCANNER) == "throttle"


def test_rejects_non_addresses():
    _, guard = make_guard()
    with pytest.raises(ValueError):
        guard.admit("not an address")
