"""Idle means idle: an edge with nothing to do spends (almost) no CPU. No busy loops."""

import asyncio
import time

import psutil

from kubeedge.config import EdgeConfig
from kubeedge.edge.core import EdgeCore
from kubeedge.testing import free_port


async def test_an_idle_edge_uses_almost_no_cpu(tmp_path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    config = EdgeConfig.model_validate(
        {
            "node": "idle",
            "bus": {"listen": f"127.0.0.1:{free_port()}"},
            "dataDir": str(tmp_path / "data"),
            "manifests": str(manifests),
            "mappers": {"virtual": {}},
        }
    )  # every default: embedded broker, twin, standalone folder watch, an in-process mapper
    core = EdgeCore(config)
    await core.start()
    try:
        await asyncio.sleep(1)  # settle
        process = psutil.Process()
        before, start = process.cpu_times(), time.monotonic()
        await asyncio.sleep(4)
        after, elapsed = process.cpu_times(), time.monotonic() - start
        used = (after.user + after.system) - (before.user + before.system)
        # A keepalive tick per connection and a file rescan every 5 s: well under 2 % of a core.
        assert used / elapsed < 0.02, f"{100 * used / elapsed:.1f}% CPU while idle"
    finally:
        await core.stop()
