"""No task of the edge dies unnoticed: a failed one is logged, restarted and reported in the edge's
health (its retained status, `kubeedge edge status`); one that cannot go on stops the edge with
the reason."""

import asyncio
import json
import logging

from kubeedge.testing import wait_for
from kubeedge_process import spawn
from sample_devices import device, model


async def kubeedge(*args: str, timeout: float = 30) -> tuple[int, str]:
    process = await spawn(*args)
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode, output.decode()


async def test_a_twin_writer_that_dies_is_restarted_and_the_edge_says_so(edge, tmp_path, caplog) -> None:
    """The twin writer once died silently (issue 19, finding 1) and the edge answered nothing more."""
    caplog.set_level(logging.WARNING)
    handle = await edge(mappers={})
    handle.write_manifest("sensor.yaml", model(), device())
    await wait_for(lambda: "default/sensor-1" in handle.twin.devices, what="device known")
    config = tmp_path / "cli.yaml"
    config.write_text(f"node: edge-1\nbus:\n  url: {handle.core.context.bus_url}\n")
    code, out = await kubeedge("edge", "status", "-c", str(config))
    assert code == 0, out
    assert "online" in out and "problems  none" in out

    handle.twin._writer.task.cancel()  # the writer's death, as any bug would end it
    await wait_for(lambda: handle.core.supervisor.problems, what="the failure noticed")
    assert "task twin-writer was cancelled while it should run" in caplog.text

    client = await handle.client()  # answered: the writer runs again
    twin = await client.twin("default/sensor-1")
    assert "temperature" in twin
    await handle.twin.flush()

    code, out = await kubeedge("edge", "status", "-c", str(config), "-o", "json")
    assert code == 1, out
    status = json.loads(out)
    assert status["state"] == "online"
    assert status["problems"] == [
        "task twin-writer failed 1x (restarted); last: cancelled by someone other than its owner"
    ]
    code, out = await kubeedge("edge", "status", "-c", str(config))
    assert code == 1 and "problem" in out and "twin-writer failed 1x" in out, out


async def test_a_task_that_cannot_go_on_stops_the_edge_with_the_reason(edge) -> None:
    handle = await edge(mappers={})
    handle.bus.runner.cancel()  # the bus connection's task ends: the edge is deaf from here on
    await asyncio.wait_for(handle.core.failed.wait(), 5)
    assert handle.core.failure == "task bus cannot go on: cancelled by someone other than its owner"
