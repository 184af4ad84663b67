"""After a burst, freed memory goes back to the operating system."""

import psutil

from kubeedge.memory import trim


def test_trim_returns_a_bursts_memory() -> None:
    process = psutil.Process()
    burst = [bytes(2000) for _ in range(25_000)]  # 50 MB of twin-update-sized buffers
    keep = bytes(2000)  # allocated last: the top of the heap stays in use, so glibc keeps the rest
    del burst
    before = process.memory_info().rss
    assert trim()
    after = process.memory_info().rss
    assert before - after > 20 * 2**20, (before / 2**20, after / 2**20)
    assert keep
