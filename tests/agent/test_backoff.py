from __future__ import annotations

import datetime as dt
import random

from agent.backoff import Backoff, retry_after_seconds, spread


def test_the_ceiling_doubles_per_attempt_up_to_the_cap() -> None:
    backoff = Backoff(base=1.0, cap=10.0, rng=random.Random(1))
    ceilings = []
    for _ in range(6):
        ceilings.append(backoff.ceiling())
        backoff.next_delay()
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_each_delay_is_drawn_uniformly_below_the_ceiling_full_jitter() -> None:
    backoff = Backoff(base=2.0, cap=60.0, rng=random.Random(7))
    reference = random.Random(7)
    delays = [backoff.next_delay() for _ in range(8)]
    expected = [reference.uniform(0, min(60.0, 2.0 * 2**n)) for n in range(8)]
    assert delays == expected
    assert all(0 <= delay <= 60.0 for delay in delays)


def test_a_fleet_sharing_one_failure_spreads_its_retries() -> None:
    """Full jitter: 1,000 devices that failed at the same instant do not retry together."""
    first_retries = [Backoff(base=8.0, rng=random.Random(n)).next_delay() for n in range(1000)]
    per_second = [sum(1 for d in first_retries if s <= d < s + 1) for s in range(8)]
    assert max(per_second) < 200  # an even spread puts ~125 in each second of the window
    assert min(per_second) > 60


def test_reset_starts_over_from_the_base() -> None:
    backoff = Backoff(base=1.0, cap=100.0, rng=random.Random(3))
    for _ in range(5):
        backoff.next_delay()
    assert backoff.ceiling() == 32.0
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.ceiling() == 1.0


def test_a_long_outage_never_overflows() -> None:
    backoff = Backoff(base=1.0, cap=300.0, attempt=5000, rng=random.Random(0))
    assert backoff.ceiling() == 300.0
    assert 0 <= backoff.next_delay() <= 300.0


def test_retry_after_reads_seconds_http_dates_and_falls_back_to_the_default() -> None:
    now = dt.datetime(2026, 11, 30, 10, 0, 0, tzinfo=dt.UTC)
    assert retry_after_seconds("120", default=60) == 120.0
    assert retry_after_seconds(7, default=60) == 7.0
    assert retry_after_seconds("Mon, 30 Nov 2026 10:01:30 GMT", default=60, now=now) == 90.0
    assert retry_after_seconds("Mon, 30 Nov 2026 09:00:00 GMT", default=60, now=now) == 0.0
    assert retry_after_seconds("soon", default=60) == 60
    assert retry_after_seconds(None, default=45) == 45
    assert retry_after_seconds("-5", default=60) == 0.0


def test_spread_never_waits_less_than_asked() -> None:
    rng = random.Random(11)
    waits = [spread(10.0, rng) for _ in range(200)]
    assert min(waits) >= 10.0
    assert max(waits) <= 15.0
    assert len({round(wait, 3) for wait in waits}) > 150
