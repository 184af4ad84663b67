"""Manifest in -> values on the bus -> twin in SQLite -> CLI, and desired values back to the device,
on the embedded broker and on Mosquitto."""

import asyncio
import json
import sqlite3

from kubeedge.api import topics
from kubeedge.bus import BusClient
from kubeedge.testing import wait_for
from kubeedge_mapper_virtual import SIMULATOR
from sample_devices import device, model


async def test_reported_values_reach_the_bus_the_twin_and_sqlite(edge, broker_url) -> None:
    handle = await edge(bus_url=broker_url)
    seen = []
    watcher = BusClient(handle.core.context.bus_url)
    await watcher.start()
    watcher.subscribe("$hw/events/device/+/+/twin/update", lambda t, p: seen.append((t, json.loads(p))))
    handle.write_manifest("sensor.yaml", model(), device())
    await handle.wait_reported("default/sensor-1", "temperature", lambda v: float(v) >= 21)
    await handle.wait_state("default/sensor-1", "online")
    # on the bus, in KubeEdge's format
    topic, body = next(m for m in seen if "temperature" in m[1]["twin"])
    assert topic == "$hw/events/device/default/sensor-1/twin/update"
    assert body["twin"]["temperature"]["metadata"] == {"type": "float"}
    assert float(body["twin"]["temperature"]["actual"]["value"]) >= 20
    # persisted
    await handle.twin.flush()
    db = sqlite3.connect(handle.config.data_dir / "twins.db")
    rows = dict(db.execute("SELECT name, actual FROM twins WHERE device_id = 'default/sensor-1'").fetchall())
    assert rows["label"] == "hello"
    assert float(rows["temperature"]) >= 21
    db.close()
    # through the bus, as the CLI asks
    client = await handle.client()
    twin = await client.twin("default/sensor-1")
    assert twin["setpoint"]["actual"]["value"] == "21"
    assert twin["setpoint"]["metadata"]["type"] == "float"
    devices = await client.devices()
    assert [d["id"] for d in devices] == ["default/sensor-1"]
    assert devices[0]["state"] == "online"
    assert devices[0]["attributes"]["protocol"]["value"] == "virtual"
    await watcher.stop()


async def test_desired_value_is_written_read_back_and_reported(edge, broker_url) -> None:
    handle = await edge(bus_url=broker_url)
    handle.write_manifest("sensor.yaml", model(), device())
    await handle.wait_reported("default/sensor-1", "setpoint", "21")
    deltas = []
    watcher = BusClient(handle.core.context.bus_url)
    await watcher.start()
    watcher.subscribe("$hw/events/device/+/+/twin/update/delta", lambda t, p: deltas.append(json.loads(p)))
    await asyncio.sleep(0.1)
    client = await handle.client()
    await client.set_desired("default/sensor-1", "setpoint", "23.5")
    await handle.wait_reported("default/sensor-1", "setpoint", "23.5")
    sim = SIMULATOR.device("default/sensor-1")
    assert sim.writes == [("setpoint", 23.5)]  # only the changed property, once
    assert sim.connects == 1  # the device was not restarted
    assert deltas[0]["delta"] == {"setpoint": "23.5"}
    # text with spaces and JSON, which KubeEdge refuses, travels unchanged
    text = 'Irrigation paused: {"until": "18:00"}'
    await client.set_desired("default/sensor-1", "label", text)
    await handle.wait_reported("default/sensor-1", "label", text)
    await watcher.stop()


async def test_desired_value_from_the_manifest_is_written(edge) -> None:
    handle = await edge()
    props = [{"name": "setpoint", "collectCycle": 100, "desired": {"value": "12"}}]
    handle.write_manifest("sensor.yaml", model(), device(properties=props))
    await handle.wait_reported("default/sensor-1", "setpoint", "12")
    props[0]["desired"]["value"] = "13"
    handle.write_manifest("sensor.yaml", model(), device(properties=props))
    await handle.wait_reported("default/sensor-1", "setpoint", "13")
    sim = SIMULATOR.device("default/sensor-1")
    assert list(sim.writes) == [("setpoint", 12.0), ("setpoint", 13.0)]
    assert sim.connects == 1


async def test_an_emptied_desired_value_writes_nothing_where_the_mapper_cannot_relinquish(edge) -> None:
    """desired "" after a value: the twin sends it once (a relinquish for drivers that can, such
    as BACnet's); the virtual mapper cannot, so nothing is written and nothing is an error; a
    value set afterwards is written."""
    handle = await edge()
    props = [{"name": "setpoint", "collectCycle": 100, "desired": {"value": "12"}}]
    handle.write_manifest("sensor.yaml", model(), device(properties=props))
    await handle.wait_reported("default/sensor-1", "setpoint", "12")
    deltas: list[dict] = []
    watcher = BusClient(handle.core.context.bus_url)
    watcher.subscribe(
        "$hw/events/device/default/sensor-1/twin/update/delta", lambda t, p: deltas.append(json.loads(p))
    )
    await watcher.start()
    props[0]["desired"]["value"] = ""
    handle.write_manifest("sensor.yaml", model(), device(properties=props))
    await wait_for(lambda: deltas, what="the relinquish delta")
    assert deltas[0]["delta"] == {"setpoint": ""}
    record = handle.record("default/sensor-1", "setpoint")
    assert record.expected == "" and record.error is None, record
    props[0]["desired"]["value"] = "13"
    handle.write_manifest("sensor.yaml", model(), device(properties=props))
    await handle.wait_reported("default/sensor-1", "setpoint", "13")
    assert [d["delta"] for d in deltas] == [{"setpoint": ""}, {"setpoint": "13"}]
    await watcher.stop()
    sim = SIMULATOR.device("default/sensor-1")
    assert list(sim.writes) == [("setpoint", 12.0), ("setpoint", 13.0)]
    assert handle.record("default/sensor-1", "setpoint").error is None


async def test_restart_keeps_twins(edge, tmp_path) -> None:
    first = await edge(workdir=tmp_path / "a")
    first.write_manifest("sensor.yaml", model(), device())
    await first.wait_reported("default/sensor-1", "temperature", lambda v: float(v) >= 21)
    client = await first.client()
    await client.set_desired("default/sensor-1", "setpoint", "7")
    await first.wait_reported("default/sensor-1", "setpoint", "7")
    await first.stop()
    before = first.record("default/sensor-1", "temperature")  # as it was when the edge stopped
    kept = (before.actual, before.actual_edge)
    # the same data folder, no mapper: what the twin holds comes from SQLite alone
    second = await edge(workdir=tmp_path / "a", mappers={})
    record = second.record("default/sensor-1", "temperature")
    assert (record.actual, record.actual_edge) == kept
    setpoint = second.record("default/sensor-1", "setpoint")
    assert (setpoint.expected, setpoint.actual) == ("7", "7")


async def test_unchanged_values_do_not_bump_versions(edge) -> None:
    handle = await edge()
    handle.write_manifest("sensor.yaml", model(), device())
    await handle.wait_reported("default/sensor-1", "label", "hello")
    await asyncio.sleep(0.5)  # several more reads of the same value
    record = handle.record("default/sensor-1", "label")
    assert record.actual_edge == 1
    counter = handle.record("default/sensor-1", "temperature")
    assert counter.actual_edge > 2  # a changing value does bump


async def test_order_is_kept_per_property_under_load(edge, broker_url) -> None:
    handle = await edge(bus_url=broker_url, mappers={})
    handle.write_manifest("sensor.yaml", model(), device())
    await wait_for(lambda: "default/sensor-1" in handle.twin.devices)
    documents = []
    publisher = BusClient(handle.core.context.bus_url)
    await publisher.start()
    publisher.subscribe(
        "$hw/events/device/default/sensor-1/twin/update/document",
        lambda t, p: documents.append(json.loads(p)["twin"]["temperature"]["current"]["actual"]["value"]),
    )
    await asyncio.sleep(0.1)
    topic = topics.device_topic("default", "sensor-1", topics.TWIN_UPDATE)
    for i in range(2000):
        publisher.publish(topic, json.dumps({"twin": {"temperature": {"actual": {"value": str(i)}}}}), qos=1)
        if i % 100 == 0:
            await asyncio.sleep(0)
    await wait_for(lambda: len(documents) == 2000, timeout=30, what="2000 documents")
    assert documents == [str(i) for i in range(2000)]
    assert handle.reported("default/sensor-1", "temperature") == "1999"
    await publisher.stop()


async def test_a_failed_commit_is_retried_and_nothing_is_published_before_it(edge) -> None:
    handle = await edge(mappers={})
    handle.write_manifest("sensor.yaml", model(), device())
    await wait_for(lambda: "default/sensor-1" in handle.twin.devices)
    await handle.twin.flush()
    results = []
    watcher = BusClient(handle.core.context.bus_url)
    await watcher.start()
    watcher.subscribe("$hw/events/device/+/+/twin/update/result", lambda t, p: results.append(json.loads(p)))
    await asyncio.sleep(0.1)
    blocker = sqlite3.connect(handle.config.data_dir / "twins.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holding the database: commits fail
    try:
        watcher.publish(
            topics.device_topic("default", "sensor-1", topics.TWIN_UPDATE),
            b'{"event_id":"held","twin":{"label":{"actual":{"value":"stored later"}}}}',
            qos=1,
        )
        await wait_for(lambda: handle.twin.stats.write_failures >= 1, timeout=15, what="a failed commit")
        assert results == []  # not answered while not stored
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await wait_for(lambda: results, timeout=15, what="the result after the retry")
    assert results[0]["event_id"] == "held"
    db = sqlite3.connect(handle.config.data_dir / "twins.db")
    assert db.execute("SELECT actual FROM twins WHERE name = 'label'").fetchone() == ("stored later",)
    db.close()
    await watcher.stop()
