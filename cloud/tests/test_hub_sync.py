"""Downstream: each node gets exactly its devices and their models, with versions; unacked objects
are sent again with back-off; a reconnecting edge gets only what changed and the deletions it missed."""

from __future__ import annotations

import asyncio

from cloud_samples import device, model
from hub_client import wait_for
from kubeedge.api.channel import Header, Message, Route


def by_resource(messages: list[Message]) -> dict[str, Message]:
    return {m.route.resource: m for m in messages}


async def test_each_node_receives_exactly_its_devices_and_their_models(cloud) -> None:
    cloud.write(
        "plant.yaml",
        model(),
        model("other-model"),
        model("unused-model"),
        device("a", "edge-1"),
        device("b", "edge-1", "other-model"),
        device("c", "edge-2"),
    )
    await cloud.reload()
    one = await cloud.connect("edge-1")
    await one.sync()
    objects, sent = await one.until_synced()
    got = by_resource(objects)
    assert sorted(got) == [
        "device/default/a",
        "device/default/b",
        "devicemodel/default/other-model",
        "devicemodel/default/sensor-model",
    ]
    assert sent == 4
    a = got["device/default/a"]
    assert a.route.operation == "insert"
    assert a.content["spec"]["nodeName"] == "edge-1"
    assert a.content["metadata"] == {"name": "a", "namespace": "default"}
    assert a.header.resourceversion == cloud.source.objects["device/default/a"].version
    assert "status" not in a.content
    two = await cloud.connect("edge-2")
    await two.sync()
    objects, _ = await two.until_synced()
    assert sorted(by_resource(objects)) == ["device/default/c", "devicemodel/default/sensor-model"]


async def test_an_unacked_object_is_sent_again_with_back_off_until_acked(cloud) -> None:
    cloud.write("plant.yaml", model(), device("a", "edge-1"))
    await cloud.reload()
    client = await cloud.connect("edge-1")
    await client.sync()
    first, _ = await client.until_synced(ack=False)
    device_message = by_resource(first)["device/default/a"]
    await client.ack(by_resource(first)["devicemodel/default/sensor-model"])
    again = await client.next_of("resource", timeout=5)  # firstMs is 200 in the tests
    assert again.id == device_message.id
    assert again.route.resource == "device/default/a"
    and_again = await client.next_of("resource", timeout=5)
    assert and_again.id == device_message.id
    session = cloud.hub.sessions["edge-1"]
    assert session.resends >= 2
    await client.ack(device_message)
    await wait_for(lambda: not session.inflight, "the ack to clear the object in flight")
    assert session.held == {
        "device/default/a": device_message.header.resourceversion,
        "devicemodel/default/sensor-model": cloud.source.objects["devicemodel/default/sensor-model"].version,
    }
    resends = session.resends
    # nothing more is sent: the next frame is the answer to a report, not an object
    report = await client.report({})
    answer = await client.answer_to(report)
    assert answer.route.operation == "ack"
    assert [m for m in client.received if m.route.group == "resource"][-1].id == device_message.id
    assert session.resends == resends


async def test_a_newer_version_replaces_the_one_in_flight(cloud) -> None:
    cloud.write("plant.yaml", model(), device("a", "edge-1", setpoint="10"))
    await cloud.reload()
    client = await cloud.connect("edge-1")
    await client.sync()
    first, _ = await client.until_synced(ack=False)
    old = by_resource(first)["device/default/a"]
    cloud.write("plant.yaml", model(), device("a", "edge-1", setpoint="12"))
    await cloud.reload()
    newer = await client.next_of("resource")
    while (
        newer.id == old.id or newer.route.resource != "device/default/a"
    ):  # resends of the old one may come first
        newer = await client.next_of("resource")
    assert newer.route.operation == "insert"  # the edge never acked the first
    assert newer.content["spec"]["properties"][1]["desired"] == {"value": "12"}
    assert int(newer.header.resourceversion) > int(old.header.resourceversion)
    await client.ack(old)  # a late ack of the replaced message changes nothing
    session = cloud.hub.sessions["edge-1"]
    assert session.inflight["device/default/a"].message.id == newer.id
    await client.ack(newer)
    await wait_for(lambda: "device/default/a" not in session.inflight, "the newer version acked")
    assert session.held["device/default/a"] == newer.header.resourceversion


async def test_a_reconnecting_edge_gets_only_changes_and_the_deletions_it_missed(cloud) -> None:
    cloud.write(
        "plant.yaml",
        model(),
        device("same", "edge-1"),
        device("changed", "edge-1", setpoint="10"),
        device("moved", "edge-1"),
        device("deleted", "edge-1"),
    )
    await cloud.reload()
    client = await cloud.connect("edge-1")
    await client.sync()
    objects, sent = await client.until_synced()
    assert sent == 5
    held = {m.route.resource: m.header.resourceversion for m in objects}
    await client.close()
    # while the edge is away: one desired value changes, one device moves, one is deleted, one is new
    cloud.write(
        "plant.yaml",
        model(),
        device("same", "edge-1"),
        device("changed", "edge-1", setpoint="20"),
        device("moved", "edge-2"),
        device("new", "edge-1"),
    )
    await cloud.reload()
    client = await cloud.connect("edge-1")
    await client.sync(held)
    objects, sent = await client.until_synced()
    got = {m.route.resource: m.route.operation for m in objects}
    assert got == {
        "device/default/changed": "update",
        "device/default/moved": "delete",
        "device/default/deleted": "delete",
        "device/default/new": "insert",
    }
    assert sent == 4
    changed = next(m for m in objects if m.route.resource == "device/default/changed")
    assert changed.content["spec"]["properties"][1]["desired"] == {"value": "20"}
    # and a second reconnect with everything acked: nothing at all
    session = cloud.hub.sessions["edge-1"]
    await wait_for(lambda: not session.inflight, "every object acked")
    held = dict(session.held)
    await client.close()
    client = await cloud.connect("edge-1")
    await client.sync(held)
    assert await client.until_synced() == ([], 0)


async def test_a_cloud_restart_sends_nothing_unchanged_to_a_resyncing_edge(cloud) -> None:
    cloud.write("plant.yaml", model(), device("a", "edge-1"), device("b", "edge-1"))
    await cloud.reload()
    client = await cloud.connect("edge-1")
    await client.sync()
    objects, _ = await client.until_synced()
    held = {m.route.resource: m.header.resourceversion for m in objects}
    await cloud.stop()
    await cloud.start()
    client = await cloud.connect("edge-1")
    await client.sync(held)
    assert await client.until_synced() == ([], 0)
    assert cloud.hub.sessions["edge-1"].sent_objects == 0


async def test_a_second_connection_of_a_node_replaces_the_first(cloud) -> None:
    cloud.write("plant.yaml", model(), device("a", "edge-1"))
    await cloud.reload()
    first = await cloud.connect("edge-1")
    await first.sync()
    await first.until_synced()
    second = await cloud.connect("edge-1")
    await second.sync()
    objects, _ = await second.until_synced()
    assert len(objects) == 2
    await asyncio.wait_for(first.connection.wait_closed(), 5)
    assert first.connection.close_reason == "replaced by a newer connection of the same node"
    assert cloud.hub.sessions["edge-1"].connection.id == cloud.hub.sessions["edge-1"].connection.id


async def test_malformed_and_out_of_order_messages_get_an_error_and_the_connection_goes_on(cloud) -> None:
    cloud.write("plant.yaml", model(), device("a", "edge-1"))
    await cloud.reload()
    client = await cloud.connect("edge-1")

    async def error_for(frame: bytes | str | Message) -> dict:
        sent = await client.send(frame)
        got = await client.next_of("hub")
        assert got.route.operation == "error", got
        if sent is not None:
            assert got.header.parent_msg_id == sent.id
        return got.content

    report = Message(route=Route(source="e", group="twin", operation="report"), content={"devices": {}})
    assert (await error_for(report))["code"] == 409  # before hub/sync
    assert "first message must be hub/sync" in (await error_for(report))["reason"]
    assert (await error_for("not json"))["code"] == 400
    assert (
        "channel version 2"
        in (await error_for('{"v":2,"route":{"source":"e","group":"hub","operation":"ack"}}'))["reason"]
    )
    assert (
        "route.group"
        in (await error_for('{"v":1,"route":{"source":"e","group":"pods","operation":"ack"}}'))["reason"]
    )
    await client.sync()
    await client.until_synced()
    insert = Message(
        route=Route(source="e", group="resource", operation="insert", resource="device/default/x")
    )
    assert (await error_for(insert))["reason"] == "resource/insert is not a message an edge sends"
    bad_sync = Message(route=Route(source="e", group="hub", operation="sync"), content={"versions": "all"})
    assert "content.instance" in (await error_for(bad_sync))["reason"]
    bad_report = Message(
        route=Route(source="e", group="twin", operation="report"), content={"devices": {"a": 1}}
    )
    assert (await error_for(bad_report))["code"] == 400
    # an ack of a message never sent is ignored; the connection still works
    await client.send(
        Message(
            header=Header(parent_msg_id="never-sent"), route=Route(source="e", group="hub", operation="ack")
        )
    )
    ok = await client.report({"default/a": {"state": "online"}})
    assert (await client.answer_to(ok)).route.operation == "ack"


async def test_an_edge_that_never_syncs_is_closed(cloud_factory) -> None:
    cloud = await cloud_factory(limits={"syncTimeoutMs": 200})
    client = await cloud.connect("edge-1")
    await asyncio.wait_for(client.connection.wait_closed(), 5)
    assert client.connection.close_code == 1008
    assert client.connection.close_reason == "no hub/sync received in time"
