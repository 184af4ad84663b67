"""A local broker restart is recovered within 5 s: Mosquitto killed with SIGKILL and down for
10 s (long enough for an exponential back-off to grow past 5 s), then started again on the same
port. The edge and a mapper in its own process both serve the twin again at most 5 s after the
broker is back."""

import asyncio

from kubeedge.testing import wait_for
from kubeedge_process import spawn
from sample_devices import device, model

DOWN = 10.0
RECOVERED_WITHIN = 5.0


async def test_edge_and_a_mapper_process_are_back_within_5s_of_a_broker_restart(
    edge, mosquitto_factory, tmp_path
) -> None:
    broker = mosquitto_factory()
    handle = await edge(bus_url=broker.url, mappers={})
    config = tmp_path / "mapper.yaml"
    config.write_text(f"node: edge-1\nbus:\n  url: {broker.url}\n")
    mapper = await spawn("mapper", "run", "virtual", "-c", str(config))
    output = asyncio.create_task(mapper.stdout.read())
    try:
        handle.write_manifest("a.yaml", model(), device("one"))
        await handle.wait_reported("default/one", "label", "hello", timeout=20)

        assert broker.process is not None
        broker.process.kill()  # kill -9: no goodbye to the clients
        broker.process.wait()
        await asyncio.sleep(DOWN)  # the outage itself
        broker.process = None
        mosquitto_factory(broker.port)  # returns once the port accepts connections
        back = asyncio.get_running_loop().time()

        def remaining() -> float:
            return RECOVERED_WITHIN - (asyncio.get_running_loop().time() - back)

        await wait_for(lambda: handle.bus.connected, remaining(), what="the edge reconnected")
        # A desired value set now reaches the mapper through the edge and comes back reported:
        # the mapper is connected again too. (The client that sets it connects afresh.)
        client = await handle.client()
        await client.set_desired("default/one", "setpoint", "9")
        await handle.wait_reported("default/one", "setpoint", "9", timeout=remaining())
    finally:
        mapper.terminate()
        try:
            await asyncio.wait_for(mapper.wait(), 10)
        except TimeoutError:
            mapper.kill()
            await mapper.wait()
    assert mapper.returncode == 0, (await output).decode()[-3000:]
