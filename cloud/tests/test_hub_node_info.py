"""``hub/node``: the hub says it takes the edge's facts, validates them, and hands them to its source.

The files source keeps no Nodes (tests/test_kubernetes_nodes.py has the Kubernetes one); here the
hub's part, over a real websocket: the ``node_info`` flag in ``hub/synced``, a refusal naming the
field for bad content, and the connection going on after it.
"""

from __future__ import annotations

from typing import Any

from cloud_samples import device, model
from hub_client import wait_for
from kubeedge.api.channel import Message, NodeInfoContent, Route

FACTS: dict[str, Any] = {
    "architecture": "arm64",
    "operating_system": "linux",
    "kernel_version": "6.1.0-rpi7-rpi-v8",
    "os_image": "Debian GNU/Linux 12 (bookworm)",
    "machine_id": "0123456789abcdef0123456789abcdef",
    "boot_id": "b0e1c2d3-0000-4000-8000-000000000001",
    "version": "kubeedge-py/1.0.0",
    "capacity": {"cpu": "4", "memory": "3884096Ki", "pods": "0"},
    "allocatable": {"cpu": "4", "memory": "3884096Ki", "pods": "0"},
    "mappers": ["modbus", "virtual"],
}


def node_message(content: Any) -> Message:
    return Message(route=Route(source="edgehub", group="hub", operation="node"), content=content)


async def test_the_hub_takes_the_edges_facts_and_refuses_bad_ones_naming_the_field(cloud) -> None:
    cloud.write("plant.yaml", model(), device("a", "edge-1"))
    await cloud.reload()
    client = await cloud.connect("edge-1")

    async def error_for(message: Message) -> dict[str, Any]:
        await client.send(message)
        got = await client.next_of("hub")
        assert got.route.operation == "error" and got.header.parent_msg_id == message.id, got
        return dict(got.content)

    early = await error_for(node_message(FACTS))
    assert early["code"] == 409 and "before hub/sync" in early["reason"]

    await client.sync()
    while (synced := await client.next_of("hub")).route.operation != "synced":
        pass
    assert synced.content["node_info"] is True  # what lets an edge send hub/node at all

    session = cloud.hub.sessions["edge-1"]
    for bad, field in [
        ({**FACTS, "architecture": "arm 64"}, "content.architecture"),
        ({**FACTS, "capacity": {"cpu": "lots"}}, "content.capacity.cpu"),
        ({**FACTS, "os_image": "x" * 300}, "content.os_image"),
        ({**FACTS, "mappers": ["Modbus TCP"]}, "content.mappers.0"),
        ({**FACTS, "gpu": "yes"}, "content.gpu"),
    ]:
        refused = await error_for(node_message(bad))
        assert refused["code"] == 400 and refused["reason"].startswith(f"hub/node: {field}:"), refused
    assert session.node_info is None  # nothing of a refused message is taken

    # the connection goes on: good facts are taken, and so is a report
    await client.send(node_message(FACTS))
    await wait_for(lambda: session.node_info is not None, "the facts taken")
    assert session.node_info == NodeInfoContent.model_validate(FACTS)
    ok = await client.report({"default/a": {"state": "online"}})
    assert (await client.answer_to(ok)).route.operation == "ack"
    assert cloud.hub.sessions["edge-1"] is session
