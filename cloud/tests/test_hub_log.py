"""The hub's log during a connect storm: one INFO line a second that counts and names a few nodes,
not a line per node and event (those are at DEBUG)."""

from __future__ import annotations

import asyncio
import logging
import re

from cloud_samples import device, model

NODES = 40


async def test_a_connect_storm_is_summarised_not_logged_per_node(cloud, caplog) -> None:
    caplog.set_level(logging.DEBUG, "kubeedge_cloud.hub")
    cloud.write("plant.yaml", model(), *(device(f"d{i}", f"edge-{i}") for i in range(NODES)))
    await cloud.reload()

    async def connect_and_sync(i: int) -> None:
        client = await cloud.connect(f"edge-{i}")
        await client.sync()
        await client.until_synced()

    await asyncio.gather(*(connect_and_sync(i) for i in range(NODES)))
    await cloud.stop()  # the hub says what is left to say as it stops: the edges' disconnects

    info = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.INFO and r.name.startswith("kubeedge_cloud.hub")
    ]
    summaries = [line for line in info if line.startswith("hub: ")]
    assert summaries and info == summaries, info  # (the fixture started the hub before we listened)
    assert len(summaries) < NODES / 2, summaries  # one a second, however many nodes
    counted = {"connected": 0, "synced": 0, "disconnected": 0, "sent": 0}
    for line in summaries:
        for kind, pattern in (
            ("connected", r"(\d+) node\(s\) connected \((edge-\d+(, )?)+( and \d+ more)?\)"),
            ("synced", r"(\d+) synced \(.*?\): \d+ object"),
            ("disconnected", r"(\d+) disconnected \("),
            ("sent", r"(\d+) object\(s\) sent"),
        ):
            if found := re.search(pattern, line):
                counted[kind] += int(found.group(1))
    # every node connected, synced (each got its device and the model) and disconnected once
    assert counted == {"connected": NODES, "synced": NODES, "disconnected": NODES, "sent": 2 * NODES}, (
        summaries
    )
    # each event is still there, per node, at DEBUG
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert "node edge-7 connected from 127.0.0.1" in debug
    assert "node edge-7 synced: 2 object(s) sent, 0 held already" in debug
    assert any(line.startswith("node edge-7 disconnected (1000") for line in debug), debug


async def test_one_node_is_one_line_that_names_it(cloud, caplog) -> None:
    caplog.set_level(logging.INFO, "kubeedge_cloud.hub")
    client = await cloud.connect("edge-1")
    await client.sync()
    await client.until_synced()
    cloud.hub.activity.flush()  # what the hub's one-second timer does
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("hub: ")]
    assert lines == ["hub: 1 node(s) connected (edge-1); 1 synced (edge-1): 0 object(s) sent, 0 held already"]
