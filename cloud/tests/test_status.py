"""Upstream: reports stored in the cloud's SQLite, acked only after the commit, coalesced per device."""

from __future__ import annotations

import sqlite3

import orjson

from cloud_samples import device, model
from hub_client import reported


async def synced_client(cloud, node: str = "edge-1"):
    client = await cloud.connect(node)
    await client.sync()
    await client.until_synced()
    return client


def stored_row(cloud, key: str) -> tuple | None:
    path = cloud.core.config.database_path
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(
            "SELECT node, state, last_online_time, twins FROM device_status WHERE key = ?", (key,)
        ).fetchone()
    finally:
        db.close()


async def test_a_report_is_on_disk_when_it_is_acked(cloud) -> None:
    cloud.write("plant.yaml", model(), device("a", "edge-1"))
    await cloud.reload()
    client = await synced_client(cloud)
    message = await client.report(
        {
            "default/a": {
                "twins": {
                    "temperature": reported("21.5", at=1000),
                    "setpoint": {"observed_desired": "12", "observed_desired_at": 1001, "type": "float"},
                },
                "state": "online",
                "last_online_time": "2026-11-29T10:00:00Z",
            }
        }
    )
    answer = await client.answer_to(message)
    assert answer.route.operation == "ack"
    row = stored_row(cloud, "default/a")  # read by another connection, as another process would
    assert row is not None
    node, state, last_online, twins = row
    assert (node, state, last_online) == ("edge-1", "online", "2026-11-29T10:00:00Z")
    twins = orjson.loads(twins)
    assert twins["temperature"]["reported"] == "21.5"
    assert twins["temperature"]["reported_at"] == 1000
    assert twins["temperature"]["type"] == "float"
    assert twins["setpoint"]["observed_desired"] == "12"
    # a later report of one field keeps the others
    message = await client.report(
        {"default/a": {"twins": {"temperature": reported("22", at=2000)}, "state": "offline"}}
    )
    await client.answer_to(message)
    status = (await cloud.source.read_status())["default/a"]
    assert status.state == "offline"
    assert status.last_online_time == "2026-11-29T10:00:00Z"  # not cleared by a non-online state
    assert status.twins["temperature"].reported == "22"
    assert status.twins["setpoint"].observed_desired == "12"


async def test_a_busy_node_makes_one_write_per_batch_not_per_report(cloud_factory) -> None:
    cloud = await cloud_factory(status={"flushMs": 200})
    cloud.write("plant.yaml", model(), device("a", "edge-1"), device("b", "edge-1"))
    await cloud.reload()
    client = await synced_client(cloud)
    writes = cloud.controller.status_writes
    sent = []
    for i in range(100):
        key = "default/a" if i % 2 else "default/b"
        sent.append(await client.report({key: {"twins": {"temperature": reported(str(i), at=i)}}}))
    for message in sent:
        assert (await client.answer_to(message)).route.operation == "ack"
    batches = cloud.controller.status_writes - writes
    assert 1 <= batches <= 10, batches  # 100 reports in well under 2 s, one write per 200 ms at most
    status = await cloud.source.read_status()
    # the newest value of each property wins
    assert status["default/a"].twins["temperature"].reported == "99"
    assert status["default/b"].twins["temperature"].reported == "98"
    assert cloud.source.store.commits == batches


async def test_status_survives_a_cloud_restart(cloud) -> None:
    cloud.write("plant.yaml", model(), device("a", "edge-1"))
    await cloud.reload()
    client = await synced_client(cloud)
    await client.answer_to(await client.report({"default/a": {"twins": {"temperature": reported("7")}}}))
    await cloud.stop()
    await cloud.start()
    status = await cloud.source.read_status()
    assert status["default/a"].twins["temperature"].reported == "7"
    assert status["default/a"].node == "edge-1"


async def test_a_deleted_devices_status_goes_with_it(cloud) -> None:
    cloud.write("plant.yaml", model(), device("a", "edge-1"), device("b", "edge-1"))
    await cloud.reload()
    client = await synced_client(cloud)
    both = {key: {"twins": {"temperature": reported("5")}} for key in ("default/a", "default/b")}
    await client.answer_to(await client.report(both))
    assert stored_row(cloud, "default/b") is not None

    cloud.write("plant.yaml", model(), device("a", "edge-1"))  # b leaves the source
    await cloud.reload()
    assert set(await cloud.source.read_status()) == {"default/a"}
    assert stored_row(cloud, "default/b") is None  # on disk too: what device list --cloud reads
    # a report taken just before the deletion is not stored for it
    await cloud.source.write_status({"default/b": ("edge-1", {"twins": {"temperature": reported("6")}})})
    assert stored_row(cloud, "default/b") is None

    cloud.write("plant.yaml", model(), device("a", "edge-1"), device("b", "edge-1"))  # made again
    await cloud.reload()
    assert "default/b" not in await cloud.source.read_status()  # starts from nothing


async def test_a_device_deleted_while_the_cloud_was_down_loses_its_status(cloud) -> None:
    cloud.write("plant.yaml", model(), device("a", "edge-1"), device("b", "edge-1"))
    await cloud.reload()
    client = await synced_client(cloud)
    both = {key: {"twins": {"temperature": reported("5")}} for key in ("default/a", "default/b")}
    await client.answer_to(await client.report(both))
    await cloud.stop()
    cloud.write("plant.yaml", model(), device("a", "edge-1"))
    await cloud.start()
    assert set(await cloud.source.read_status()) == {"default/a"}
    assert stored_row(cloud, "default/b") is None
