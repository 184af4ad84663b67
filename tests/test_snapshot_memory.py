"""A snapshot frees what earlier snapshots froze (found by hack/fuzz_manifests.py).

The mapper runtime takes the devices of each snapshot out of the garbage collector's full scans
(``gc.freeze``). Frozen objects that become garbage later (a restarted device's worker) were never
freed, and every hello on the bus brings a snapshot: the edge's process grew without bound.
"""

import gc
import logging

from kubeedge.testing import wait_for
from sample_devices import device, model

CYCLES = 20


async def test_snapshots_do_not_keep_what_they_froze(edge, caplog) -> None:
    caplog.set_level(logging.INFO, logger="kubeedge.mapper.runtime")
    handle = await edge()
    runtime = handle.core.module("mappers").runtimes["virtual"]

    def snapshots() -> int:
        return sum("snapshot from edge node" in r.getMessage() for r in caplog.records)

    async def cycle(i: int) -> None:
        # a change restarts the device's worker: what the last snapshot froze becomes garbage
        label = {"name": "label", "collectCycle": 100}
        label["visitors"] = {"protocolName": "virtual", "configData": {"value": f"v{i}"}}
        handle.write_manifest("a.yaml", model(), device("one", properties=[label]))
        await handle.wait_reported("default/one", "label", f"v{i}")
        seen = snapshots()
        runtime._hello()  # what a mapper does when it (re)connects; any client can send one
        # the freeze follows the snapshot's log line without an await in between
        await wait_for(lambda: snapshots() > seen, what="a snapshot applied")

    for i in range(3):  # warm-up: caches and the first workers
        await cycle(i)
    before = gc.get_freeze_count()
    for i in range(3, 3 + CYCLES):
        await cycle(i)
    growth = gc.get_freeze_count() - before
    # about 100 objects per cycle were kept before; a few come and go with the live set
    assert growth < 20 * CYCLES, growth
