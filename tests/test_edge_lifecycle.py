"""The edge follows its manifest folder live, survives faults, and reconnects."""

import asyncio

from kubeedge.testing import wait_for
from kubeedge_mapper_virtual import SIMULATOR
from kubeedge_process import spawn
from sample_devices import device, model


def workers(handle):
    return handle.core.module("mappers").runtimes["virtual"].workers


async def test_manifest_changes_apply_without_restart(edge) -> None:
    handle = await edge()
    handle.write_manifest("a.yaml", model(), device("one"), device("two"))
    await handle.wait_reported("default/one", "label", "hello")
    await handle.wait_reported("default/two", "label", "hello")
    one_worker = workers(handle)["default/one"]
    # change device two's visitor: two restarts, one is not touched
    changed = device(
        "two",
        properties=[
            {
                "name": "label",
                "collectCycle": 100,
                "visitors": {"protocolName": "virtual", "configData": {"value": "changed"}},
            }
        ],
    )
    handle.write_manifest("a.yaml", model(), device("one"), changed)
    await handle.wait_reported("default/two", "label", "changed")
    assert workers(handle)["default/one"] is one_worker
    assert SIMULATOR.device("default/one").connects == 1
    # a new file adds a device; removing it from the folder removes it
    handle.write_manifest("b.yaml", device("three"))
    await handle.wait_reported("default/three", "label", "hello")
    (handle.manifests / "b.yaml").unlink()
    await wait_for(lambda: "default/three" not in handle.twin.devices, what="device three removed")
    await wait_for(lambda: "default/three" not in workers(handle), what="mapper stops serving three")
    assert set(handle.twin.devices) == {"default/one", "default/two"}


async def test_a_broken_edit_keeps_the_last_good_version(edge) -> None:
    handle = await edge()
    path = handle.write_manifest("a.yaml", model(), device("one"))
    await handle.wait_reported("default/one", "label", "hello")
    reloads = handle.core.module("standalone").reloads
    path.write_text(path.read_text() + "\n---\nkind: [unclosed\n")
    await wait_for(lambda: handle.core.module("standalone").reloads > reloads, what="reload")
    await asyncio.sleep(0.3)
    assert "default/one" in handle.twin.devices
    assert workers(handle)["default/one"].connects == 1


async def test_nodes_other_than_ours_are_not_served(edge) -> None:
    handle = await edge()
    handle.write_manifest("a.yaml", model(), device("mine", node="edge-1"), device("theirs", node="edge-2"))
    await handle.wait_reported("default/mine", "label", "hello")
    await asyncio.sleep(0.2)
    assert "default/theirs" not in handle.twin.devices


async def test_unreachable_device_goes_offline_and_comes_back(edge) -> None:
    handle = await edge()
    handle.write_manifest("a.yaml", model(), device("one"), device("two"))
    await handle.wait_state("default/one", "online")
    await handle.wait_state("default/two", "online")
    SIMULATOR.set_reachable("default/one", False)
    await handle.wait_state("default/one", "offline")
    # the other device goes on reporting
    before = handle.reported("default/two", "temperature")
    await handle.wait_reported("default/two", "temperature", lambda v: v != before)
    assert handle.state("default/two") == "online"
    SIMULATOR.set_reachable("default/one", True)
    await handle.wait_state("default/one", "online", timeout=15)
    value = handle.reported("default/one", "temperature")
    await handle.wait_reported("default/one", "temperature", lambda v: v != value)


async def test_a_failing_property_is_marked_and_the_others_go_on(edge) -> None:
    handle = await edge()
    handle.write_manifest("a.yaml", model(), device("one"))
    await handle.wait_reported("default/one", "label", "hello")
    SIMULATOR.fail("default/one", "temperature", "sensor open circuit")
    await wait_for(
        lambda: (handle.record("default/one", "temperature").error or "").find("open circuit") >= 0,
        what="error on temperature",
    )
    assert handle.record("default/one", "label").error is None
    assert handle.state("default/one") == "online"
    client = await handle.client()
    twin = await client.twin("default/one")
    assert "sensor open circuit" in twin["temperature"]["metadata"]["error"]
    SIMULATOR.fail("default/one", "temperature", None)
    await wait_for(lambda: handle.record("default/one", "temperature").error is None, what="error cleared")


async def test_a_failing_write_is_reported_and_nothing_restarts(edge) -> None:
    handle = await edge()
    handle.write_manifest("a.yaml", model(), device("one"))
    await handle.wait_reported("default/one", "setpoint", "21")
    SIMULATOR.fail("default/one", "setpoint", "write protected", reads=False)
    client = await handle.client()
    await client.set_desired("default/one", "setpoint", "22")
    await wait_for(
        lambda: "write of '22' failed" in handle.error("default/one", "setpoint"), what="write error"
    )
    await asyncio.sleep(1.5)  # good readings of the old value keep coming: the error stays with them
    assert "write protected" in handle.error("default/one", "setpoint")
    assert handle.reported("default/one", "setpoint") == "21"
    assert SIMULATOR.device("default/one").connects == 1
    SIMULATOR.fail("default/one", "setpoint", None)
    await client.set_desired("default/one", "setpoint", "23")  # a new desired value: a new attempt
    await handle.wait_reported("default/one", "setpoint", "23")
    assert handle.error("default/one", "setpoint") == ""


async def test_bad_config_data_names_the_field(edge) -> None:
    handle = await edge()
    bad_visitor = device(
        "one",
        properties=[
            {
                "name": "label",
                "collectCycle": 100,
                "visitors": {"protocolName": "virtual", "configData": {"genrator": "sine"}},
            },
            {"name": "setpoint", "collectCycle": 100},
        ],
    )
    bad_protocol = device("two", config={"latencyMs": "slow"})
    handle.write_manifest("a.yaml", model(), bad_visitor, bad_protocol)
    await wait_for(
        lambda: (
            handle.record("default/one", "label") is not None
            and "spec.properties[0].visitors.configData.genrator: unknown key"
            in (handle.record("default/one", "label").error or "")
        ),
        what="visitor error on label",
    )
    await handle.wait_reported("default/one", "setpoint", "21")  # the good property is served
    await handle.wait_state("default/two", "unhealthy")


async def test_bus_reconnects_after_the_broker_restarts(edge, mosquitto_factory) -> None:
    broker = mosquitto_factory()
    handle = await edge(bus_url=broker.url)
    handle.write_manifest("a.yaml", model(), device("one"))
    await handle.wait_reported("default/one", "temperature", lambda v: float(v) > 20)
    broker.stop()
    await asyncio.sleep(0.5)
    mosquitto_factory(broker.port)
    value = handle.reported("default/one", "temperature")
    await handle.wait_reported(
        "default/one", "temperature", lambda v: float(v) > float(value) + 1, timeout=20
    )
    client = await handle.client()
    await client.set_desired("default/one", "setpoint", "9")
    await handle.wait_reported("default/one", "setpoint", "9")


async def test_a_mapper_in_its_own_process(edge, tmp_path) -> None:
    handle = await edge(mappers={})
    handle.write_manifest("a.yaml", model(), device("one"))
    config = tmp_path / "mapper.yaml"
    config.write_text(f"node: edge-1\nbus:\n  url: {handle.core.context.bus_url}\n")
    process = await spawn("mapper", "run", "virtual", "-c", str(config))
    output = asyncio.create_task(process.stdout.read())
    try:
        await handle.wait_reported("default/one", "label", "hello", timeout=20)
        client = await handle.client()
        await client.set_desired("default/one", "setpoint", "11")
        await handle.wait_reported("default/one", "setpoint", "11")
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
    assert process.returncode == 0  # stopped cleanly on SIGTERM
    assert b"mapper virtual running" in await output


async def test_membership_is_announced_and_answered(edge) -> None:
    import json

    from kubeedge.bus import BusClient

    handle = await edge(mappers={})
    seen = []
    watcher = BusClient(handle.core.context.bus_url)
    await watcher.start()
    watcher.subscribe("$hw/events/node/edge-1/membership/updated", lambda t, p: seen.append(json.loads(p)))
    await asyncio.sleep(0.1)
    handle.write_manifest("a.yaml", model(), device("one"), device("two"))
    await wait_for(lambda: seen, what="membership/updated")
    assert sorted(d["id"] for d in seen[0]["added_devices"]) == ["default/one", "default/two"]
    handle.write_manifest("a.yaml", model(), device("one"))
    await wait_for(lambda: len(seen) == 2, what="a second membership/updated")
    assert [d["id"] for d in seen[1]["removed_devices"]] == ["default/two"]
    client = await handle.client()
    assert [d["id"] for d in await client.devices()] == ["default/one"]
    await watcher.stop()


async def test_a_broken_file_at_start_up_does_not_erase_twins(edge, tmp_path) -> None:
    first = await edge(workdir=tmp_path / "a")
    path = first.write_manifest("a.yaml", model(), device("one"))
    await first.wait_reported("default/one", "label", "hello")
    await first.stop()
    path.write_text(path.read_text() + "\n---\nkind: [unclosed\n")  # broken while the edge was down
    second = await edge(workdir=tmp_path / "a", mappers={})
    await asyncio.sleep(0.3)
    assert second.record("default/one", "label").actual == "hello"  # still in the twin database


async def test_assignment_messages_follow_their_published_schema(edge) -> None:
    from kubeedge.api import topics
    from kubeedge.api.assignment import AssignmentMessage, MapperHello
    from kubeedge.bus import BusClient

    handle = await edge(mappers={})
    handle.write_manifest("a.yaml", model(), *(device(f"d{i}") for i in range(250)))
    await wait_for(lambda: len(handle.twin.devices) == 250, what="250 devices")
    messages: list[AssignmentMessage] = []
    mapper = BusClient(handle.core.context.bus_url)
    await mapper.start()
    mapper.subscribe(
        topics.mapper_topic("edge-1", "virtual", topics.MAPPER_ASSIGNMENTS),
        lambda t, p: messages.append(AssignmentMessage.model_validate_json(p)),
        qos=1,
    )
    await asyncio.sleep(0.1)
    mapper.publish(
        topics.mapper_topic("edge-1", "virtual", topics.MAPPER_HELLO),
        MapperHello(instance="test").to_json(),
        qos=1,
    )
    await wait_for(lambda: len(messages) == 2, what="a snapshot in two parts")
    assert [(m.kind, m.part, m.parts, len(m.devices)) for m in messages] == [
        ("snapshot", 1, 2, 200),
        ("snapshot", 2, 2, 50),
    ]
    first = messages[0].devices[0]
    assert first.device["metadata"]["name"] == "d0"
    # the model's visitors are merged into the device
    assert first.device["spec"]["properties"][0]["visitors"]["configData"]["generator"] == "counter"
    assert first.model["metadata"]["name"] == "sensor-model"
    handle.write_manifest("a.yaml", model(), *(device(f"d{i}") for i in range(249)))
    await wait_for(lambda: len(messages) == 3, what="a delete")
    assert (messages[2].kind, messages[2].keys) == ("delete", ["default/d249"])
    await mapper.stop()
