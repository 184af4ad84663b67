"""The mapper runtime's own promises, through a real edge, a real broker and the virtual mapper:
ReadOnly refused even when a delta bypasses the edge's check, readings out of the model's range,
the report policy, push subscriptions, the driver's health check, and the virtual generators."""

import asyncio
import json
import uuid
from itertools import pairwise
from typing import Any

from kubeedge.api import topics
from kubeedge.api.twin import now_ms
from kubeedge.bus import BusClient
from kubeedge.testing import wait_for
from kubeedge_mapper_virtual import SIMULATOR
from sample_devices import device, model

KEY = "default/sensor-1"


def prop(name: str, type_: str = "INT", access: str = "ReadOnly", **config: Any) -> dict[str, Any]:
    """A DeviceModel property of the virtual protocol; ``minimum``/``maximum`` go to the model."""
    entry: dict[str, Any] = {"name": name, "type": type_, "accessMode": access}
    for bound in ("minimum", "maximum"):
        if bound in config:
            entry[bound] = config.pop(bound)
    entry["visitors"] = {"protocolName": "virtual", "configData": config}
    return entry


class Watcher:
    """What the mapper publishes about one device, as seen on the bus."""

    def __init__(self, url: str, key: str = KEY) -> None:
        self.url = url
        self.namespace, self.name = key.split("/")
        self.updates: list[dict[str, Any]] = []
        self.states: list[str] = []

    async def start(self) -> "Watcher":
        self.bus = BusClient(self.url)
        await self.bus.start()
        twin_topic = topics.device_topic(self.namespace, self.name, topics.TWIN_UPDATE)
        state_topic = topics.device_topic(self.namespace, self.name, topics.STATE_UPDATE)
        self.bus.subscribe(twin_topic, lambda _t, p: self.updates.append(json.loads(p)), qos=1)
        self.bus.subscribe(state_topic, lambda _t, p: self.states.append(json.loads(p)["state"]), qos=1)
        # The broker handles one connection's packets in order: once a message on a topic
        # subscribed after those comes back, they are active too.
        probe, echoed = f"test/probe/{uuid.uuid4().hex}", []
        self.bus.subscribe(probe, lambda _t, p: echoed.append(p), qos=1)

        def echo() -> bool:
            if not echoed:
                self.bus.publish(probe, b"?", qos=1)
            return bool(echoed)

        await wait_for(echo, 10, interval=0.05, what="the watcher's subscriptions")
        return self

    async def stop(self) -> None:
        await self.bus.stop()

    def reports(self, name: str) -> list[tuple[int, str]]:
        """(read timestamp in ms, value) of every reported value of one property, in order."""
        out = []
        for update in self.updates:
            twin = update.get("twin", {}).get(name) or {}
            if "actual" in twin:
                out.append((twin["actual"]["metadata"]["timestamp"], twin["actual"]["value"]))
        return out

    def values(self, name: str) -> list[float]:
        return [float(value) for _, value in self.reports(name)]

    def errors(self, name: str) -> list[str]:
        return [
            error
            for update in self.updates
            if (error := ((update.get("twin", {}).get(name) or {}).get("metadata") or {}).get("error"))
        ]


def bus_url(handle: Any) -> str:
    return str(handle.core.context.bus_url)


# ------------------------------------------------------------------------- desired values


async def test_a_delta_for_a_read_only_property_is_refused_by_the_mapper_itself(edge) -> None:
    """A delta that never went through the edge twin's check (a misbehaving cloud, an old edge)."""
    handle = await edge()
    watcher = await Watcher(bus_url(handle)).start()
    handle.write_manifest("sensor.yaml", model(), device())
    await handle.wait_reported(KEY, "setpoint", "21")
    rogue = {"event_id": "rogue", "timestamp": now_ms(), "delta": {"temperature": "99", "setpoint": "22"}}
    watcher.bus.publish(
        topics.device_topic("default", "sensor-1", topics.TWIN_UPDATE_DELTA), json.dumps(rogue), qos=1
    )
    await handle.wait_reported(KEY, "setpoint", "22")  # the writable property of the same delta is
    await wait_for(lambda: watcher.errors("temperature"), what="the ReadOnly error of temperature")
    assert "ReadOnly" in watcher.errors("temperature")[0]
    assert SIMULATOR.device(KEY).writes == [("setpoint", 22.0)]  # temperature never reached the device
    assert "99" not in [value for _, value in watcher.reports("temperature")]
    await watcher.stop()


# ------------------------------------------------------------------------- readings


async def test_readings_out_of_the_models_range_are_property_errors(edge) -> None:
    handle = await edge()
    properties = [
        prop("level", minimum="0", maximum="3", generator="counter", value=0, step=1),
        prop("low", "FLOAT", minimum="10", value=5),
        prop("count", generator="counter", value=0, step=1),
    ]
    handle.write_manifest(
        "sensor.yaml",
        model(properties=properties),
        device(properties=[{"name": p["name"], "collectCycle": 50} for p in properties]),
    )
    await wait_for(lambda: "above the maximum 3" in handle.error(KEY, "level"), what="level out of range")
    assert handle.reported(KEY, "level") == "3"  # the last value in range stays
    await wait_for(lambda: "below the minimum 10" in handle.error(KEY, "low"), what="low out of range")
    assert handle.reported(KEY, "low") is None  # never reported as a value
    # the others keep reporting, and the device is not unhealthy for one bad property
    now = int(await handle.wait_reported(KEY, "count"))
    await handle.wait_reported(KEY, "count", lambda v: int(v or 0) > now + 2)
    assert handle.error(KEY, "count") == ""
    assert handle.state(KEY) == "online"


# ------------------------------------------------------------------------- report policy


async def test_report_cycle_on_change_and_deadbands(edge) -> None:
    handle = await edge()
    watcher = await Watcher(bus_url(handle)).start()
    counter = {"generator": "counter", "value": 0}
    properties = [
        prop("still", value=1),  # constant, reportCycle 60 s: once
        prop("beat", value=1),  # constant, reportCycle 200 ms: again and again
        prop("fine", "FLOAT", **counter, step=0.3, report={"deadband": 1.0, "maxInterval": 60000}),
        prop("coarse", "FLOAT", **counter, step=2, report={"deadband": 1.0, "maxInterval": 60000}),
        prop("pct", "FLOAT", generator="counter", value=100, step=1, report={"deadbandPercent": 2.5}),
        prop("spaced", **counter, step=1, report={"minInterval": 300, "maxInterval": 60000}),
        prop("quiet", **counter, step=1, report={"onChange": False, "maxInterval": 500}),
    ]
    cycles = {"still": 60000, "beat": 200}
    handle.write_manifest(
        "sensor.yaml",
        model(properties=properties),
        device(
            properties=[
                {"name": p["name"], "collectCycle": 50, "reportCycle": cycles.get(p["name"], 60000)}
                for p in properties
            ]
        ),
    )
    await wait_for(lambda: watcher.reports("still"), what="the first report")
    await asyncio.sleep(1.2)
    reads = SIMULATOR.device(KEY).properties["quiet"].reads
    assert reads >= 10, "the device was read too rarely for this test to mean anything"

    assert len(watcher.reports("still")) == 1  # unchanged: not again before its reportCycle
    assert len(watcher.reports("beat")) >= 3  # unchanged, but its reportCycle passed

    fine = watcher.values("fine")
    assert len(fine) >= 2
    assert all(b - a > 1.0 for a, b in pairwise(fine)), fine  # within the deadband: not reported

    coarse = watcher.values("coarse")
    assert len(coarse) >= 5  # every change beyond the deadband is reported ...
    assert all(abs(b - a - 2) < 1e-6 for a, b in pairwise(coarse)), coarse  # ... none skipped

    pct = watcher.values("pct")
    assert len(pct) >= 2
    assert all(b - a > a * 0.025 for a, b in pairwise(pct)), pct

    spaced = [at for at, _ in watcher.reports("spaced")]
    assert len(spaced) >= 2
    assert all(b - a >= 200 for a, b in pairwise(spaced)), spaced  # minInterval 300 ms (stamps jitter)

    quiet = watcher.reports("quiet")
    assert 1 <= len(quiet) <= 5 < reads  # changes alone are not reported, only every maxInterval
    await watcher.stop()


# ------------------------------------------------------------------------- push


async def test_pushed_values_reach_the_twin_and_are_not_polled(edge) -> None:
    handle = await edge()
    properties = [
        prop("pushed", generator="counter", value=0, step=1, push=True, pushIntervalMs=50),
        prop("polled", generator="counter", value=0, step=1),
    ]
    handle.write_manifest(
        "sensor.yaml",
        model(properties=properties),
        device(
            properties=[
                {"name": "pushed", "collectCycle": 60000},  # were it polled, it would stay at 1
                {"name": "polled", "collectCycle": 50},
            ]
        ),
    )
    await handle.wait_reported(KEY, "pushed", lambda v: int(v or 0) >= 5)
    await handle.wait_reported(KEY, "polled", lambda v: int(v or 0) >= 3)
    sim = SIMULATOR.device(KEY)
    pushed, polled = sim.properties["pushed"], sim.properties["polled"]
    assert pushed.pushes >= 5 and pushed.reads == pushed.pushes  # every value it gave was pushed
    assert polled.pushes == 0
    # a pushed error marks the property, not the device
    SIMULATOR.fail(KEY, "pushed", "sensor fault")
    await wait_for(lambda: "sensor fault" in handle.error(KEY, "pushed"), what="the pushed error")
    assert handle.state(KEY) == "online"
    SIMULATOR.fail(KEY, "pushed", None)
    await wait_for(lambda: handle.error(KEY, "pushed") == "", what="the pushed error to clear")


# ------------------------------------------------------------------------- device state


async def test_the_health_check_sets_the_device_state(edge) -> None:
    handle = await edge(mappers={"virtual": {"stateInterval": 0.05}})
    properties = [prop("count", generator="counter", value=0, step=1)]
    rows = [{"name": "count", "collectCycle": 50}]
    handle.write_manifest(
        "sensor.yaml",
        model(properties=properties),
        device(properties=rows),
        device("sensor-2", properties=rows),
    )
    await handle.wait_state(KEY, "online")
    await handle.wait_state("default/sensor-2", "online")

    SIMULATOR.set_health(KEY, "unhealthy")
    await handle.wait_state(KEY, "unhealthy")
    now = int(handle.reported(KEY, "count") or 0)
    await handle.wait_reported(KEY, "count", lambda v: int(v or 0) > now)  # still read and reported
    SIMULATOR.set_health(KEY, "online")
    await handle.wait_state(KEY, "online")

    # a health check that fails marks the device unhealthy; the mapper and the other device go on
    SIMULATOR.set_health(KEY, error="probe failed")
    await handle.wait_state(KEY, "unhealthy")
    other = int(handle.reported("default/sensor-2", "count") or 0)
    await handle.wait_reported("default/sensor-2", "count", lambda v: int(v or 0) > other)
    assert handle.state("default/sensor-2") == "online"
    SIMULATOR.set_health(KEY)
    await handle.wait_state(KEY, "online")

    # offline: the device counts as lost, with the reason on its twin, and is connected again
    SIMULATOR.set_health(KEY, "offline")
    await handle.wait_state(KEY, "offline")
    await wait_for(lambda: "health check" in handle.error(KEY, "count"), what="why it is offline")
    SIMULATOR.set_health(KEY)
    await handle.wait_state(KEY, "online")
    assert SIMULATOR.device(KEY).connects >= 2


async def test_a_device_lost_right_after_each_connect_is_retried_less_and_less(edge) -> None:
    """Its health check says offline at once after every connect: the reconnect back-off grows
    (0.2-0.4 s, 0.4-0.8 s, 0.8-1.6 s, ...), it does not start over at every short connection."""
    handle = await edge(mappers={"virtual": {"stateInterval": 0.05, "maxBackoff": 30}})
    handle.write_manifest(
        "sensor.yaml",
        model(properties=[prop("count", generator="counter")]),
        device(properties=[{"name": "count", "collectCycle": 50}]),
    )
    await handle.wait_state(KEY, "online")
    SIMULATOR.set_health(KEY, "offline")
    await handle.wait_state(KEY, "offline")
    before = SIMULATOR.device(KEY).connects
    await asyncio.sleep(3)
    # with the back-off growing: at most 4 attempts in 3 s; starting over each time: about 10
    assert SIMULATOR.device(KEY).connects - before <= 4, SIMULATOR.device(KEY).connects - before
    SIMULATOR.set_health(KEY)


async def test_the_health_check_follows_the_devices_state_report_cycle(edge) -> None:
    handle = await edge()  # the mapper's own interval is 30 s: too slow to see here
    properties = [prop("count", generator="counter", value=0, step=1)]
    spec = device(properties=[{"name": "count", "collectCycle": 100}])
    spec["spec"]["stateReport"] = {"reportCycle": 50}
    handle.write_manifest("sensor.yaml", model(properties=properties), spec)
    await handle.wait_state(KEY, "online")
    SIMULATOR.set_health(KEY, "unhealthy")
    await handle.wait_state(KEY, "unhealthy", timeout=5)
    SIMULATOR.set_health(KEY)
    await handle.wait_state(KEY, "online", timeout=5)


async def test_one_failing_cycle_does_not_flip_the_device_state(edge) -> None:
    """Properties on two collect cycles, one failing: the device is online, not online and
    unhealthy in turn; with both failing it is unhealthy."""
    handle = await edge()
    watcher = await Watcher(bus_url(handle)).start()
    properties = [prop("a", value=1), prop("b", value=2)]
    SIMULATOR.fail(KEY, "a", "sensor fault")
    handle.write_manifest(
        "sensor.yaml",
        model(properties=properties),
        device(properties=[{"name": "a", "collectCycle": 50}, {"name": "b", "collectCycle": 70}]),
    )
    await handle.wait_reported(KEY, "b", "2")
    await asyncio.sleep(0.6)
    assert watcher.states == ["online"]
    SIMULATOR.fail(KEY, "b", "sensor fault")
    await handle.wait_state(KEY, "unhealthy")
    await watcher.stop()


# ------------------------------------------------------------------------- virtual generators


async def test_sine_and_random_walk_stay_in_their_bounds_and_move(edge) -> None:
    handle = await edge()
    watcher = await Watcher(bus_url(handle)).start()
    properties = [
        prop("wave", "FLOAT", generator="sine", value=10, amplitude=2, period=0.4),
        prop("walk", "FLOAT", generator="random-walk", value=0.5, step=0.3, min=0, max=1),
    ]
    handle.write_manifest(
        "sensor.yaml",
        model(properties=properties),
        device(properties=[{"name": p["name"], "collectCycle": 20} for p in properties], config={"seed": 3}),
    )
    await wait_for(lambda: len(watcher.reports("wave")) >= 30, what="30 sine values")
    wave, walk = watcher.values("wave"), watcher.values("walk")
    assert all(8 - 1e-6 <= v <= 12 + 1e-6 for v in wave), wave
    assert max(wave) > 11.5 and min(wave) < 8.5  # its amplitude, seen within a few periods
    assert all(0 <= v <= 1 for v in walk), walk
    assert len(set(walk)) >= 5  # it moves
    await watcher.stop()


async def test_a_busy_mapper_stops_every_device_promptly(edge, caplog) -> None:
    """Stopping cancels every device's tasks while reads complete all the time; none may keep
    running (Python 3.11's ``asyncio.wait_for`` drops a cancellation that arrives as the awaited
    read finishes, which left devices serving after shutdown)."""
    handle = await edge()
    names = [f"busy-{i:03d}" for i in range(150)]
    handle.write_manifest(
        "busy.yaml",
        model("busy-model", properties=[prop("n", generator="counter")]),
        *(device(n, model_name="busy-model", properties=[{"name": "n", "collectCycle": 20}]) for n in names),
    )
    await wait_for(
        lambda: all(handle.reported(f"default/{n}", "n") for n in names), 30, what="every device reporting"
    )
    runtime = handle.core.module("mappers").runtimes["virtual"]
    workers = list(runtime.workers.values())
    started = asyncio.get_running_loop().time()
    await runtime.stop()
    assert asyncio.get_running_loop().time() - started < 4
    assert not [r.message for r in caplog.records if "did not stop" in r.message]
    assert all(w._task is None for w in workers)


async def test_a_driver_whose_close_fails_is_let_go_of_and_the_failure_logged(
    edge, monkeypatch, caplog
) -> None:
    from kubeedge_mapper_virtual.driver import VirtualDriver

    async def broken_close(self: VirtualDriver) -> None:
        raise RuntimeError("socket already gone")

    monkeypatch.setattr(VirtualDriver, "close", broken_close)
    handle = await edge()
    path = handle.write_manifest("sensor.yaml", model(), device())
    await handle.wait_reported(KEY, "label", "hello")
    path.unlink()  # the device is removed: its worker stops and closes the driver
    await wait_for(
        lambda: "close() failed: RuntimeError: socket already gone" in caplog.text,
        what="the close failure in the log",
    )
    assert f"device {KEY}" in caplog.text
