"""The Modbus mapper through the full edge (bus, twin) against a real pymodbus server."""

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

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
]


async def test_every_data_type_and_order(edge, server) -> None:
    props = [{"name": n, "type": t, "visitor": v} for n, t, v, _, _ in TYPES]
    for _, t, v, value, _ in TYPES:
        await server.set_value(1, v, t.lower(), value)
    handle = await edge(mappers={"modbus": SETTINGS})
    handle.write_manifest("plc.yaml", model(props), device("plc-1", props, tcp(server)))
    for name, _, _, _, reported in TYPES:
        await handle.wait_reported("plant/plc-1", name, reported)


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


@pytest.fixture
def pty_pair(tmp_path):
    socat = shutil.which("socat")
    if socat is None:
        raise RuntimeError("socat is not installed (hack/system-deps.sh)")
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    process = subprocess.Popen(
        [socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"], stderr=subprocess.DEVNULL
    )
    for _ in range(100):
        if a.exists() and b.exists():
            break
        import time

        time.sleep(0.05)
    yield str(a), str(b)
    process.terminate()
    process.wait(5)


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
        )
        await handle.wait_reported("plant/rtu-1", "temperature", "18.25")
        await handle.wait_reported("plant/rtu-2", "temperature", "-3.5")
        client = await handle.client()
        await client.set_desired("plant/rtu-2", "pump", "true")
        await handle.wait_reported("plant/rtu-2", "pump", "true")
        assert (await simulator.get(2, "CoilRegister", 1, 1))[0] is True
        assert (await simulator.get(1, "CoilRegister", 1, 1))[0] is False
    finally:
        await simulator.stop()


async def test_rtu_framing_over_tcp(edge) -> None:
    from pymodbus.framer import FramerType

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
            "visitor": {"register": "HoldingRegister", "offset": 0, "limit": 1},
        },
        {"name": "ok", "type": "INT", "visitor": {"register": "HoldingRegister", "offset": 5}},
        {"name": "switch", "type": "BOOLEAN", "visitor": {"register": "HoldingRegister", "offset": 6}},
    ]
    await server.set(1, "HoldingRegister", 5, [42])
    handle = await edge(mappers={"modbus": SETTINGS})
    handle.write_manifest("plc.yaml", model(props), device("plc-1", props, tcp(server)))
    await handle.wait_reported("plant/plc-1", "ok", "42")
    await wait_for(
        lambda: "limit 1 is too small for float32" in handle.error("plant/plc-1", "short"), what="limit error"
    )
    assert handle.state("plant/plc-1") == "online"
    client = await handle.client()
    await client.set_desired("plant/plc-1", "switch", "true")
    await handle.wait_reported("plant/plc-1", "switch", "true")
    assert await server.get(1, "HoldingRegister", 6, 1) == [1]
