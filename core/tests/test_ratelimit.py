"""Token buckets per sender and log lines a flood cannot multiply."""

import logging

import pytest

from kubeedge.ratelimit import ThrottledLog, TokenBuckets


def test_a_bucket_lets_a_burst_through_then_the_rate() -> None:
    buckets = TokenBuckets(rate=10, burst=5)
    assert [buckets.allow("a", now=0.0) for _ in range(6)] == [True] * 5 + [False]
    assert buckets.allow("b", now=0.0), "each key has its own budget"
    assert not buckets.allow("a", now=0.05)
    assert buckets.allow("a", now=0.1)  # one token back after 1/rate s


def test_keys_are_bounded() -> None:
    buckets = TokenBuckets(rate=1, max_keys=3)
    for key in "abcdef":
        buckets.allow(key, now=0.0)
    assert len(buckets._buckets) == 3


def test_one_line_per_key_and_window_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    throttled = ThrottledLog(logging.getLogger("test.throttled"), interval=60)
    caplog.set_level(logging.WARNING, logger="test.throttled")
    for i in range(100):
        throttled.log(("sensor-1", "400"), f"refused {i}")
    throttled.log(("sensor-2", "400"), "refused other")
    assert [r.getMessage() for r in caplog.records] == ["refused 0", "refused other"]
    throttled.flush()
    assert caplog.records[-1].getMessage() == "refused 99 (and 99 more like it in the last 60s)"
    assert all(r.levelno == logging.WARNING for r in caplog.records)
