"""The conformance suite's event-loop watchdog names the watched code that blocked the loop, and
leaves alone what is not watched (the edge's own code, a loop that only waited)."""

import asyncio
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

from kubeedge.testing.watchdog import LoopWatchdog

DRIVER = """
import time


class SlowDriver:
    def read(self):
        return self._decode()

    def _decode(self):
        time.sleep(0.3)  # a blocking call
        return 1
"""


def load(folder: Path) -> ModuleType:
    path = folder / "slow_driver.py"
    path.write_text(DRIVER)
    spec = importlib.util.spec_from_file_location("slow_driver", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["slow_driver"] = module
    spec.loader.exec_module(module)
    return module


async def test_a_blocking_call_in_watched_code_is_named(tmp_path: Path) -> None:
    module = load(tmp_path)
    watchdog = LoopWatchdog(asyncio.get_running_loop(), [tmp_path], threshold=0.1)
    watchdog.start()
    try:
        await asyncio.sleep(0.05)
        module.SlowDriver().read()
        await asyncio.sleep(0.05)
    finally:
        watchdog.stop()
    stall = watchdog.worst()
    assert stall is not None
    assert stall.where == "SlowDriver._decode"
    assert stall.outer == ["SlowDriver.read"]
    assert "slow_driver.py:10" in stall.location and "time.sleep(0.3)" in stall.location
    assert stall.seconds >= 0.1
    assert "blocked for" in stall.describe() and "SlowDriver.read -> SlowDriver._decode" in stall.describe()


async def test_blocking_outside_the_watched_code_and_waiting_are_not_recorded(tmp_path: Path) -> None:
    load(tmp_path)
    watchdog = LoopWatchdog(asyncio.get_running_loop(), [tmp_path], threshold=0.1)
    watchdog.start()
    try:
        time.sleep(0.3)  # noqa: ASYNC251 - blocking on purpose; this test's own code is not watched
        await asyncio.sleep(0.3)  # waiting is not blocking
    finally:
        watchdog.stop()
    assert watchdog.stalls == []
