"""Any bus client can say hello for a protocol: the edge remembers a bounded number of them."""

import asyncio
import json

from kubeedge.api import topics
from kubeedge.edge.assignments import MAX_PROTOCOLS
from kubeedge.testing import wait_for
from sample_devices import device, model


async def test_hellos_for_endless_protocol_names_are_bounded_and_real_mappers_still_served(edge) -> None:
    handle = await edge()
    handle.write_manifest("a.yaml", model(), device("one"))
    await handle.wait_reported("default/one", "label", "hello")
    client = await handle.client()
    hello = json.dumps({"version": 1, "instance": "x", "name": "rogue"}).encode()
    for i in range(MAX_PROTOCOLS + 100):
        client.bus.publish(
            topics.mapper_topic(handle.config.node, f"rogue{i}", topics.MAPPER_HELLO), hello, qos=1
        )
    client.bus.publish(
        topics.mapper_topic(handle.config.node, "Not_A-Name!", topics.MAPPER_HELLO), hello, qos=1
    )
    publisher = handle.core.assignments
    assert publisher is not None
    await wait_for(lambda: len(publisher.hellos) >= MAX_PROTOCOLS, 20, what="the hellos taken")
    await asyncio.sleep(0.5)  # the rest of the burst, had it been taken
    assert len(publisher.hellos) == MAX_PROTOCOLS
    assert "Not_A-Name!" not in publisher.hellos
    assert len(handle.core.context.registry.hellos) <= MAX_PROTOCOLS + 1
    # The real mapper (in process) still gets its snapshot when it says hello again.
    before = handle.reported("default/one", "temperature")
    await handle.wait_reported("default/one", "temperature", lambda v: v != before)
