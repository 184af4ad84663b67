"""The Modbus mapper through the full edge (bus, twin) against a real pymodbus server."""

import asyncio
import itertools
import json
import shutil
import time
from pathlib import Path

import pytest
import yaml
from pymodbus.framer import FramerType

from kubeedge.testing import wait_for
from kubeedge_mapper_modbus.driver import LINKS
from kubeedge_mapper_modbus.simulator import ModbusSimulator

REPO = Path(__file__).resolve().parents[3]
SETTINGS = {"readTimeout": 3, "maxBackoff": 1}


def model(properties: list[dict]) -> dict:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": "plc", "namespace": "plant"},
        "spec": {
            "protocol": "modbus",
            "properties": [
                {"name": p["name"], "type": p["type"], "accessMode": p.get("access", "ReadWrite")}
                for p in properties
            ],
        },
    }


def device(name: str, properties: list[dict], config: dict, cycle: int = 100) -> dict:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": "plant"},
        "spec": {
            "deviceModelRef": {"name": "plc"},
            "protocol": {"protocolName": "modbus", "configData": config},
            "properties": [
                {
                    "name": p["name"],
                    "collectCycle": cycle,
                    "visitors": {"protocolName": "modbus", "configData": p["visitor"]},
                }
                for p in properties
            ],
        },
    }


def tcp(server: ModbusSimulator, unit: int = 1, **extra) -> dict:
    return {
        "communicateMode": "TCP",
        "ip": "127.0.0.1",
        "port": str(server.port),
        "slaveID": unit,
        "timeout": 500,
        **extra,
    }


@pytest.fixture
async def server():
    simulator = await ModbusSimulator(units=(1, 2, 3)).start()
    yield simulator
    await simulator.stop()


# name, model type, visitor, value stored, value reported
TYPES = [
    ("i16", "INT", {"register": "HoldingRegister", "offset": 0, "dataType": "int16"}, -1234, "-1234"),
    ("u16", "INT", {"register": "HoldingRegister", "offset": 1, "dataType": "uint16"}, 65000, "65000"),
    ("i32", "INT", {"register": "HoldingRegister", "offset": 2, "dataType": "int32"}, -70000, "-70000"),
    (
        "u32",
        "INT",
        {"register": "HoldingRegister", "offset": 4, "dataType": "uint32", "isRegisterSwap": True},
        4000000000,
        "4000000000",
    ),
    (
        "i64",
        "INT",
        {"register": "HoldingRegister", "offset": 6, "dataType": "int64"},
        -(2**40),
        str(-(2**40)),
    ),
    (
        "u64",
        "INT",
        {"register": "InputRegister", "offset": 0, "dataType": "uint64", "isSwap": True},
        2**50,
        str(2**50),
    ),
    (
        "abcd",
        "FLOAT",
        {"register": "HoldingRegister", "offset": 10, "dataType": "float32"},
        3.14159,
        "3.14159",
    ),
    (
        "cdab",
        "FLOAT",
        {"register": "HoldingRegister", "offset": 12, "dataType": "float32", "isRegisterSwap": True},
        3.14159,
        "3.14159",
    ),
    (
        "badc",
        "FLOAT",
        {"register": "HoldingRegister", "offset": 14, "dataType": "float32", "isSwap": True},
        3.14159,
        "3.14159",
    ),
    (
        "dcba",
        "FLOAT",
        {
            "register": "HoldingRegister",
            "offset": 16,
            "dataType": "float32",
            "isSwap": True,
            "isRegisterSwap": True,
        },
        3.14159,
        "3.14159",
    ),
    (
        "f64",
        "DOUBLE",
        {"register": "InputRegister", "offset": 4, "dataType": "float64"},
        1234.5678,
        "1234.5678",
    ),
    (
        "scaled",
        "FLOAT",
        {"register": "InputRegister", "offset": 8, "dataType": "int16", "scale": 0.1, "valueOffset": -40},
        61.5,
        "61.5",
    ),
    (
        "kubeedge-float",
        "FLOAT",
        {"register": "HoldingRegister", "offset": 18, "dataType": "float", "limit": 2},
        21.5,
        "21.5",
    ),
    ("coil", "BOOLEAN", {"register": "CoilRegister", "offset": 3}, True, "true"),
    ("input-bit", "BOOLEAN", {"register": "DiscreteInputRegister", "offset": 7}, True, "true"),
    ("bit5", "BOOLEAN", {"register": "HoldingRegister", "offset": 20, "bit": 5}, True, "true"),
    (
        "text",
        "STRING",
        {"register": "HoldingRegister", "offset": 30, "dataType": "string", "limit": 5},
        "Pump 7",
        "Pump 7",
    ),
    (
        "raw",
        "BYTES",
        {"register": "HoldingRegister", "offset": 40, "dataType": "bytes", "limit": 2, "isSwap": True},
        b"\x00\xff\x10\x01",
        "AP8QAQ==",
    ),
]


@pytest.fixture(params=["TCP", "RTUOverTCP", "RTU"])
async def each_transport(request):
    """A simulated unit 1 on each transport (RTU: a serial line), with the configData reaching it."""
    if request.param == "RTU":
        device_side, edge_side = request.getfixturevalue("pty_pair")
        simulator = ModbusSimulator(units=(1,), serial_port=device_side)
        config = {
            "communicateMode": "RTU",
            "serialPort": edge_side,
            "baudRate": 19200,
            "slaveID": 1,
            "timeout": 500,
        }
    else:
        framer = FramerType.RTU if request.param == "RTUOverTCP" else None
        simulator = ModbusSimulator(units=(1,), framer=framer)
        config = tcp(simulator, communicateMode=request.param)
    await simulator.start()
    yield simulator, config
    await simulator.stop()


async def test_every_data_type_and_order(edge, each_transport) -> None:
    simulator, config = each_transport
    props = [{"name": n, "type": t, "visitor": v} for n, t, v, _, _ in TYPES]
    for _, t, v, value, _ in TYPES:
        await simulator.set_value(1, v, t.lower(), value)
    handle = await edge(mappers={"modbus": SETTINGS})
    handle.write_manifest("plc.yaml", model(props), device("plc-1", props, config))
    for name, _, _, _, reported in TYPES:
        await handle.wait_reported("plant/plc-1", name, reported)
    assert all(handle.error("plant/plc-1", name) == "" for name, *_ in TYPES)


async def test_reads_are_batched(edge, server) -> None:
    props = [
        {"name": f"hr{i}", "type": "INT", "visitor": {"register": "HoldingRegister", "offset": i}}
        for i in range(20)
    ]
    props += [
        {"name": f"ir{i}", "type": "INT", "visitor": {"register": "InputRegister", "offset": i * 3}}
        for i in range(10)
    ]
    props += [
        {"name": f"coil{i}", "type": "BOOLEAN", "visitor": {"register": "CoilRegister", "offset": i * 10}}
        for i in range(5)
    ]
    handle = await edge(mappers={"modbus": SETTINGS})
    handle.write_manifest("plc.yaml", model(props), device("plc-1", props, tcp(server, maxGap=10), cycle=200))
    await handle.wait_reported("plant/plc-1", "coil4")
    server.requests.clear()
    await asyncio.sleep(2.0)
    # 20 contiguous holding registers: 1 request; 10 input registers 3 apart: 1; coils 10 apart: 1
    cycles = server.total() / 3
    assert 8 <= cycles <= 12, server.requests
    assert {name for _, name in server.requests} == {
        "ReadHoldingRegistersRequest",
        "ReadInputRegistersRequest",
        "ReadCoilsRequest",
    }


async def test_unbatched_reads_for_comparison(edge, server) -> None:
    props = [
        {"name": f"hr{i}", "type": "INT", "visitor": {"register": "HoldingRegister", "offset": i}}
        for i in range(10)
    ]
    handle = await edge(mappers={"modbus": SETTINGS})
    handle.write_manifest(
        "plc.yaml", model(props), device("plc-1", props, tcp(server, maxRegisters=1), cycle=200)
    )
    await handle.wait_reported("plant/plc-1", "hr9")
    server.requests.clear()
    await asyncio.sleep(2.0)
    assert server.total() >= 80  # ten requests per cycle


async def test_units_behind_one_gateway_share_one_connection(edge, server) -> None:
    props = [{"name": "value", "type": "INT", "visitor": {"register": "HoldingRegister", "offset": 0}}]
    for unit in (1, 2, 3):
        await server.set(unit, "HoldingRegister", 0, [unit * 100])
    handle = await edge(mappers={"modbus": SETTINGS})
    handle.write_manifest(
        "plc.yaml", model(props), *(device(f"unit-{u}", props, tcp(server, u), cycle=50) for u in (1, 2, 3))
    )
    for unit in (1, 2, 3):
        await handle.wait_reported(f"plant/unit-{unit}", "value", str(unit * 100))
    assert server.connections == 1
    assert len(LINKS.pool) == 1
    await asyncio.sleep(1)  # many interleaved cycles: still each unit's own value, no errors
    for unit in (1, 2, 3):
        record = handle.record(f"plant/unit-{unit}", "value")
        assert (record.actual, record.error) == (str(unit * 100), None)


async def test_desired_values_are_written_with_scale_and_order(edge, server) -> None:
    props = [
        {
            "name": "setpoint",
            "type": "FLOAT",
            "visitor": {"register": "HoldingRegister", "offset": 100, "dataType": "int16", "scale": 0.1},
        },
        {
            "name": "limit",
            "type": "DOUBLE",
            "visitor": {
                "register": "HoldingRegister",
                "offset": 110,
                "dataType": "float64",
                "isRegisterSwap": True,
            },
        },
        {"name": "pump", "type": "BOOLEAN", "visitor": {"register": "CoilRegister", "offset": 9}},
        {
            "name": "flag",
            "type": "BOOLEAN",
            "visitor": {"register": "HoldingRegister", "offset": 120, "bit": 2},
        },
        {
            "name": "name",
            "type": "STRING",
            "visitor": {"register": "HoldingRegister", "offset": 130, "dataType": "string", "limit": 4},
        },
    ]
    await server.set(1, "HoldingRegister", 120, [0b1000_0001])
    handle = await edge(mappers={"modbus": SETTINGS})
    handle.write_manifest("plc.yaml", model(props), device("plc-1", props, tcp(server)))
    await handle.wait_reported("plant/plc-1", "name")
    client = await handle.client()
    for prop, value in (
        ("setpoint", "21.5"),
        ("limit", "99.125"),
        ("pump", "true"),
        ("flag", "true"),
        ("name", "AB C"),
    ):
        await client.set_desired("plant/plc-1", prop, value)
        await handle.wait_reported("plant/plc-1", prop, value)
    assert await server.get(1, "HoldingRegister", 100, 1) == [215]
    assert await server.get_value(1, props[1]["visitor"], "double") == 99.125
    assert (await server.get(1, "CoilRegister", 9, 1))[0] is True
    assert await server.get(1, "HoldingRegister", 120, 1) == [0b1000_0101]  # only bit 2 changed
    assert server.requests[(1, "WriteSingleRegisterRequest")] >= 2
    assert server.requests[(1, "WriteMultipleRegistersRequest")] >= 2


async def test_read_only_register_types_are_refused_before_the_wire(edge, server) -> None:
    props = [{"name": "level", "type": "INT", "visitor": {"register": "InputRegister", "offset": 0}}]
    handle = await edge(mappers={"modbus": SETTINGS})
    handle.write_manifest("plc.yaml", model(props), device("plc-1", props, tcp(server)))
    await handle.wait_reported("plant/plc-1", "level", "0")
    client = await handle.client()
    await client.set_desired("plant/plc-1", "level", "5")
    await wait_for(
        lambda: "InputRegister is read-only" in handle.error("plant/plc-1", "level"), what="read-only error"
    )
    assert not any("Write" in name for _, name in server.requests)


async def test_exception_codes_and_a_killed_server(edge, server) -> None:
    props = [
        {"name": "good", "type": "INT", "visitor": {"register": "HoldingRegister", "offset": 0}},
        {"name": "bad", "type": "INT", "visitor": {"register": "HoldingRegister", "offset": 5}},
    ]
    await server.set(1, "HoldingRegister", 0, [42])
    server.failing[1].add((3, 5))
    handle = await edge(mappers={"modbus": SETTINGS})
    handle.write_manifest("plc.yaml", model(props), device("plc-1", props, tcp(server)))
    await wait_for(
        lambda: "Modbus exception 2 (illegal data address)" in handle.error("plant/plc-1", "bad"),
        what="exception code on bad",
    )
    await handle.wait_reported("plant/plc-1", "good", "42")  # the merged block was re-read per property
    assert handle.state("plant/plc-1") == "online"
    server.failing[1].add((3, 0))  # now every property fails: the device is unhealthy
    await handle.wait_state("plant/plc-1", "unhealthy")
    await wait_for(lambda: "Modbus exception 2" in handle.error("plant/plc-1", "good"), what="error on good")
    await server.set(1, "HoldingRegister", 0, [41])
    await server.set(1, "HoldingRegister", 5, [55])
    server.failing[1].clear()  # the fault is gone: fresh values, no errors, online again
    await handle.wait_reported("plant/plc-1", "bad", "55")
    await handle.wait_reported("plant/plc-1", "good", "41")
    await handle.wait_state("plant/plc-1", "online")
    assert (handle.error("plant/plc-1", "bad"), handle.error("plant/plc-1", "good")) == ("", "")
    await server.stop()
    await handle.wait_state("plant/plc-1", "offline")
    await server.start()
    await server.set(1, "HoldingRegister", 0, [43])
    await handle.wait_state("plant/plc-1", "online", timeout=20)
    await handle.wait_reported("plant/plc-1", "good", "43")


async def test_a_dead_unit_does_not_stop_the_others(edge, server) -> None:
    props = [{"name": "value", "type": "INT", "visitor": {"register": "HoldingRegister", "offset": 0}}]
    await server.set(1, "HoldingRegister", 0, [7])
    handle = await edge(mappers={"modbus": SETTINGS})
    dead = {"communicateMode": "TCP", "ip": "127.0.0.1", "port": "1", "timeout": 300}  # nothing listens there
    handle.write_manifest(
        "plc.yaml", model(props), device("alive", props, tcp(server)), device("dead", props, dead)
    )
    await handle.wait_reported("plant/alive", "value", "7")
    await handle.wait_state("plant/dead", "offline")
    await server.set(1, "HoldingRegister", 0, [8])
    await handle.wait_reported("plant/alive", "value", "8")


async def test_readings_and_desired_values_outside_max_min(edge, server) -> None:
    props = [
        {
            "name": "temperature",
            "type": "FLOAT",
            "visitor": {
                "register": "HoldingRegister",
                "offset": 0,
                "dataType": "int16",
                "scale": 0.1,
                "max": 100,
                "min": -20,
            },
        },
        {
            "name": "setpoint",
            "type": "INT",
            "visitor": {"register": "HoldingRegister", "offset": 10, "max": 90, "min": 20},
        },
    ]
    await server.set(1, "HoldingRegister", 0, [1500])  # 150.0
    await server.set(1, "HoldingRegister", 10, [50])
    handle = await edge(mappers={"modbus": SETTINGS})
    handle.write_manifest("plc.yaml", model(props), device("plc-1", props, tcp(server)))
    await handle.wait_reported("plant/plc-1", "setpoint", "50")
    await wait_for(
        lambda: (
            "property temperature: reading 150.0 is above max 100"
            in handle.error("plant/plc-1", "temperature")
        ),
        what="above max",
    )
    assert handle.reported("plant/plc-1", "temperature") is None  # an error, not a value
    assert handle.state("plant/plc-1") == "online"
    await server.set(1, "HoldingRegister", 0, [(-300) & 0xFFFF])  # -30.0
    await wait_for(
        lambda: (
            "property temperature: reading -30.0 is below min -20"
            in handle.error("plant/plc-1", "temperature")
        ),
        what="below min",
    )
    await server.set(1, "HoldingRegister", 0, [215])
    await handle.wait_reported("plant/plc-1", "temperature", "21.5")
    assert handle.error("plant/plc-1", "temperature") == ""

    client = await handle.client()
    for desired, words in (("95", "95 is above max 90"), ("15", "15 is below min 20")):
        await client.set_desired("plant/plc-1", "setpoint", desired)
        await wait_for(
            lambda words=words: (
                f"property setpoint: {words}; not written" in handle.error("plant/plc-1", "setpoint")
            ),
            what=words,
        )
    assert not any("Write" in name for _, name in server.requests)  # refused before the wire
    assert await server.get(1, "HoldingRegister", 10, 1) == [50]
    await client.set_desired("plant/plc-1", "setpoint", "60")
    await handle.wait_reported("plant/plc-1", "setpoint", "60")
    assert await server.get(1, "HoldingRegister", 10, 1) == [60]


async def test_a_silent_device_times_out_and_comes_back(edge, server) -> None:
    props = [{"name": "value", "type": "INT", "visitor": {"register": "HoldingRegister", "offset": 0}}]
    await server.set(1, "HoldingRegister", 0, [5])
    handle = await edge(mappers={"modbus": SETTINGS})
    handle.write_manifest("plc.yaml", model(props), device("plc-1", props, tcp(server, timeout=300)))
    await handle.wait_reported("plant/plc-1", "value", "5")
    server.silent.update(server.units)  # the connection stays open; nothing is answered
    await handle.wait_state("plant/plc-1", "offline")
    # the state and the twin travel on different topics: the error may come a moment later
    await wait_for(lambda: "timeout" in handle.error("plant/plc-1", "value"), what="timeout error")
    error = handle.error("plant/plc-1", "value")
    assert "timeout: no answer from unit 1" in error and "within 300 ms (1 try)" in error, error
    await server.set(1, "HoldingRegister", 0, [6])
    server.silent.clear()
    await handle.wait_state("plant/plc-1", "online")
    await handle.wait_reported("plant/plc-1", "value", "6")
    assert handle.error("plant/plc-1", "value") == ""


async def test_a_silent_unit_behind_a_gateway_does_not_delay_the_others(edge, server) -> None:
    """Unit 2 of a gateway goes silent: unit 1 on the same connection and a device on another
    connection keep reporting every cycle; unit 2 stays offline (no online flapping at every
    attempt) and is asked again less and less often, as the back-off grows."""
    cycle, timeout = 0.2, 0.3
    props = [
        {
            "name": "value",
            "type": "INT",
            # every reading reported (not only changes), so each one shows on the bus
            "visitor": {"register": "HoldingRegister", "offset": 0, "report": {"maxInterval": 1}},
        }
    ]
    other = await ModbusSimulator(units=(1,)).start()
    try:
        for simulator, unit in ((server, 1), (server, 2), (other, 1)):
            await simulator.set(unit, "HoldingRegister", 0, [unit])
        handle = await edge(mappers={"modbus": {"readTimeout": 3, "maxBackoff": 5}})
        reports: dict[str, list[float]] = {"gw-1": [], "other": []}
        states: list[str] = []

        def on_report(topic: str, payload: bytes) -> None:
            name = topic.split("/")[4]
            if name in reports and "actual" in json.loads(payload)["twin"].get("value", {}):
                reports[name].append(time.monotonic())

        bus = (await handle.client()).bus
        bus.subscribe("$hw/events/device/plant/+/twin/update", on_report)
        bus.subscribe(
            "$hw/events/device/plant/gw-2/state/update", lambda _t, p: states.append(json.loads(p)["state"])
        )
        settings = {"timeout": int(timeout * 1000)}
        handle.write_manifest(
            "plc.yaml",
            model(props),
            device("gw-1", props, tcp(server, 1, **settings), cycle=int(cycle * 1000)),
            device("gw-2", props, tcp(server, 2, **settings), cycle=int(cycle * 1000)),
            device("other", props, tcp(other, 1, **settings), cycle=int(cycle * 1000)),
        )
        for key in ("plant/gw-1", "plant/gw-2", "plant/other"):
            await handle.wait_reported(key, "value")
        await wait_for(lambda: all(reports.values()), what="reports on the bus")
        assert server.connections == 1  # gw-1 and gw-2 share the gateway connection

        server.silent.add(2)
        start = time.monotonic()
        await handle.wait_state("plant/gw-2", "offline")
        await wait_for(lambda: "timeout" in handle.error("plant/gw-2", "value"), what="timeout on gw-2")
        del states[:]  # from here on it must stay offline

        def asked() -> list[float]:
            return [t for t in server.arrivals[2] if t >= start]

        # until unit 2 was asked four times: the read that timed out and three attempts more
        await wait_for(lambda: len(asked()) >= 4, timeout=10, what="four requests to the silent unit")
        end = time.monotonic()

        assert "online" not in states  # never called online again while silent
        limit = 3 * cycle + timeout
        for name, times in reports.items():
            seen = [start, *(t for t in times if start < t < end), end]
            gaps = [b - a for a, b in itertools.pairwise(seen)]
            assert max(gaps) < limit, (name, [round(g, 3) for g in gaps])
        waits = [b - a for a, b in itertools.pairwise(asked())]
        # the back-off doubles from 0.2 s: the third wait is at least 0.8 s plus the timeout,
        # where a unit asked again at every attempt would wait about 0.5 s each time
        assert waits[2] >= 1.0, waits
        for key in ("plant/gw-1", "plant/other"):
            assert handle.error(key, "value") == "" and handle.state(key) == "online"
    finally:
        await other.stop()


async def test_kubeedge_style_manifest_from_examples_works_unchanged(edge) -> None:
    example = REPO / "examples" / "modbus" / "boiler-room-meter.yaml"
    documents = list(yaml.safe_load_all(example.read_text()))
    port = int(documents[1]["spec"]["protocol"]["configData"]["port"])
    simulator = await ModbusSimulator(units=(1,), port=port).start()
    try:
        await simulator.set(1, "HoldingRegister", 0, [652])  # temperature, scale 0.1
        await simulator.set_value(
            1, {"register": "InputRegister", "offset": 10, "limit": 4, "dataType": "float64"}, "double", 12.75
        )
        handle = await edge(mappers={"modbus": SETTINGS})
        shutil.copy(example, handle.manifests / example.name)
        await handle.wait_reported("plant-a/boiler-room-meter", "temperature", "65.2")
        await handle.wait_reported("plant-a/boiler-room-meter", "active-power", "12.75")
        await handle.wait_reported(
            "plant-a/boiler-room-meter", "setpoint", "65"
        )  # desired in the manifest, written
        await handle.wait_reported("plant-a/boiler-room-meter", "relay", "1")
        assert (await simulator.get(1, "CoilRegister", 0, 1))[0] is True
    finally:
        await simulator.stop()


async def test_rtu_over_a_serial_line(edge, pty_pair) -> None:
    device_side, edge_side = pty_pair
    simulator = await ModbusSimulator(units=(1, 2), serial_port=device_side).start()
    try:
        props = [
            {
                "name": "temperature",
                "type": "FLOAT",
                "visitor": {"register": "HoldingRegister", "offset": 0, "dataType": "float32"},
            },
            {"name": "pump", "type": "BOOLEAN", "visitor": {"register": "CoilRegister", "offset": 1}},
        ]
        await simulator.set_value(1, props[0]["visitor"], "float", 18.25)
        await simulator.set_value(2, props[0]["visitor"], "float", -3.5)
        rtu = {
            "communicateMode": "RTU",
            "serialPort": edge_side,
            "baudRate": 19200,
            "parity": "none",
            "stopBits": 1,
            "timeout": 500,
        }
        handle = await edge(mappers={"modbus": SETTINGS})
        handle.write_manifest(
            "plc.yaml",
            model(props),
            device("rtu-1", props, {**rtu, "slaveID": 1}, cycle=200),
            device("rtu-2", props, {**rtu, "slaveID": 2}, cycle=200),
            device("rtu-9-bits", props, {**rtu, "slaveID": 3, "dataBits": 9}, cycle=200),
        )
        await handle.wait_reported("plant/rtu-1", "temperature", "18.25")
        await wait_for(
            lambda: (
                "spec.protocol.configData.dataBits: Input should be 5, 6, 7 or 8"
                in handle.error("plant/rtu-9-bits", "temperature")
            ),
            what="dataBits refused",
        )
        await handle.wait_reported("plant/rtu-2", "temperature", "-3.5")
        client = await handle.client()
        await client.set_desired("plant/rtu-2", "pump", "true")
        await handle.wait_reported("plant/rtu-2", "pump", "true")
        assert (await simulator.get(2, "CoilRegister", 1, 1))[0] is True
        assert (await simulator.get(1, "CoilRegister", 1, 1))[0] is False
    finally:
        await simulator.stop()


async def test_rtu_framing_over_tcp(edge) -> None:
    simulator = await ModbusSimulator(units=(4,), framer=FramerType.RTU).start()
    try:
        props = [
            {
                "name": "level",
                "type": "INT",
                "visitor": {"register": "HoldingRegister", "offset": 3, "dataType": "uint16"},
            }
        ]
        await simulator.set(4, "HoldingRegister", 3, [512])
        handle = await edge(mappers={"modbus": SETTINGS})
        handle.write_manifest(
            "plc.yaml", model(props), device("gw", props, tcp(simulator, 4, communicateMode="RTUOverTCP"))
        )
        await handle.wait_reported("plant/gw", "level", "512")
        client = await handle.client()
        await client.set_desired("plant/gw", "level", "600")
        await handle.wait_reported("plant/gw", "level", "600")
    finally:
        await simulator.stop()


async def test_a_misconfigured_property_fails_alone_and_booleans_write_to_registers(edge, server) -> None:
    props = [
        {
            "name": "short",
            "type": "FLOAT",
            "visitor": {"register": "HoldingRegister", "offset": 0, "limit": 3},
        },
        {"name": "ok", "type": "INT", "visitor": {"register": "HoldingRegister", "offset": 5}},
        {"name": "switch", "type": "BOOLEAN", "visitor": {"register": "HoldingRegister", "offset": 6}},
    ]
    await server.set(1, "HoldingRegister", 5, [42])
    handle = await edge(mappers={"modbus": SETTINGS})
    handle.write_manifest("plc.yaml", model(props), device("plc-1", props, tcp(server)))
    await handle.wait_reported("plant/plc-1", "ok", "42")
    await wait_for(
        lambda: "limit 3 does not fit a FLOAT property" in handle.error("plant/plc-1", "short"),
        what="limit error",
    )
    assert handle.state("plant/plc-1") == "online"
    client = await handle.client()
    await client.set_desired("plant/plc-1", "switch", "true")
    await handle.wait_reported("plant/plc-1", "switch", "true")
    assert await server.get(1, "HoldingRegister", 6, 1) == [1]
