"""An edge killed with SIGKILL (power cut, OOM killer) loses nothing it had acknowledged.

The twin module answers an update on ``.../result`` only after the update is committed to SQLite
(WAL), so every value a mapper or a user saw acknowledged must be there after a restart.
"""

import asyncio
import json
import signal
from pathlib import Path

import yaml

from kubeedge.bus import BusClient, free_port
from kubeedge.client import EdgeClient
from kubeedge.testing import wait_for
from kubeedge_process import start_edge
from sample_devices import device, model


def write_config(path: Path, port: int, mappers: str) -> None:
    path.write_text(
        f"node: edge-1\nbus:\n  listen: 127.0.0.1:{port}\ndataDir: data\nmanifests: manifests\n"
        f"mappers: {mappers}\n"
    )


async def test_acknowledged_twins_survive_sigkill(tmp_path) -> None:
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "a.yaml").write_text(yaml.safe_dump_all([model(), device("one")]))
    port = free_port()
    config = tmp_path / "edge.yaml"
    write_config(config, port, "{virtual: {}}")
    edge, _ = await start_edge(config)
    acknowledged: list[float] = []
    try:
        bus = BusClient(f"mqtt://127.0.0.1:{port}", client_id="crash-watcher")
        await bus.start()

        def on_result(_topic: str, payload: bytes) -> None:
            twin = json.loads(payload).get("twin") or {}
            value = ((twin.get("temperature") or {}).get("actual") or {}).get("value")
            if value is not None:
                acknowledged.append(float(value))

        bus.subscribe("$hw/events/device/default/one/twin/update/result", on_result)
        client = EdgeClient(bus, "edge-1")
        await wait_for(lambda: len(acknowledged) >= 3, timeout=20, what="reported values acknowledged")
        await client.set_desired("default/one", "setpoint", "17.5")  # answered = committed
        await wait_for(lambda: len(acknowledged) >= 8, timeout=20, what="more reported values")
        edge.send_signal(signal.SIGKILL)
        await edge.wait()
        last = acknowledged[-1]
        await bus.stop()
    finally:
        if edge.returncode is None:
            edge.kill()
            await edge.wait()

    # Restart with no mapper: what the twins hold now is what was on disk.
    write_config(config, port, "{}")
    edge, _ = await start_edge(config)
    try:
        bus = BusClient(f"mqtt://127.0.0.1:{port}", client_id="crash-checker")
        await bus.start()
        twin = await EdgeClient(bus, "edge-1").twin("default/one")
        await bus.stop()
    finally:
        edge.send_signal(signal.SIGINT)
        await asyncio.wait_for(edge.wait(), 20)
    assert float(twin["temperature"]["actual"]["value"]) >= last, (twin, acknowledged)
    assert twin["setpoint"]["expected"]["value"] == "17.5"
