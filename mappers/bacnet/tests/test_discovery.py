"""`kubeedge mapper discover bacnet` against real bacpypes3 devices on loopback (each in its own
process): Who-Is, object lists, names, units, and manifests that pass `kubeedge validate` and
serve the devices unchanged."""

import asyncio
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kubeedge.cli import cli
from kubeedge_mapper_bacnet.discovery import BacnetDiscoveryOptions
from kubeedge_mapper_bacnet.simulator import free_udp_port

KUBEEDGE = str(Path(sys.executable).with_name("kubeedge"))


@pytest.fixture
async def simulated():
    """``await simulated(instance)``: a device in a process of its own; its ``ip:port``."""
    processes: list[asyncio.subprocess.Process] = []

    async def start(instance: int) -> str:
        port = free_udp_port()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kubeedge_mapper_bacnet.simulator",
            "--port",
            str(port),
            "--instance",
            str(instance),
            stdout=asyncio.subprocess.PIPE,
        )
        processes.append(process)
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        assert b"simulated BACnet device" in line, line
        return f"127.0.0.1:{port}"

    yield start
    for process in processes:
        process.terminate()
        await process.wait()


async def discover(*arguments: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        KUBEEDGE,
        "mapper",
        "discover",
        "bacnet",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_discovered_devices_become_manifests_that_validate_and_serve(
    edge, simulated, tmp_path: Path
) -> None:
    first, second = await simulated(1001), await simulated(1002)
    local = f"127.0.0.1:{free_udp_port()}"
    silent = f"127.0.0.1:{free_udp_port()}"
    out = tmp_path / "manifests"
    code, _, stderr = await discover(
        "-O", f"address={first},{second},{silent}", "-O", f"localAddress={local}",
        "-n", "building-7", "-o", str(out), "--seconds", "1",
    )  # fmt: skip
    assert code == 0, stderr
    assert "2 device(s) of 1 kind(s)" in stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "device-1001.yaml",
        "device-1002.yaml",
        "kubeedge-simulated-ahu.model.yaml",
    ]
    result = CliRunner().invoke(cli, ["validate", "-f", str(out)])
    assert result.exit_code == 0, result.output
    assert "not checked" not in result.output

    model = yaml.safe_load((out / "kubeedge-simulated-ahu.model.yaml").read_text())
    props = {p["name"]: p for p in model["spec"]["properties"]}
    assert {name: p["type"] for name, p in props.items()} == {
        "setpoint": "FLOAT",
        "room-temperature": "FLOAT",
        "fan": "BOOLEAN",
        "mode": "INT",
        "energy": "DOUBLE",
        "label": "STRING",
        "tag": "BYTES",
    }
    assert props["setpoint"]["accessMode"] == "ReadWrite"
    assert props["setpoint"]["unit"] == "degrees-celsius"
    assert props["setpoint"]["description"] == "setpoint (analog-value,1)"
    assert props["room-temperature"]["accessMode"] == "ReadOnly"
    assert props["room-temperature"]["visitors"]["configData"] == {
        "objectType": "analog-input",
        "objectInstance": 1,
        "cov": True,
    }
    assert "unit" not in props["fan"]  # binary objects have no units
    device = yaml.safe_load((out / "device-1001.yaml").read_text())
    assert device["spec"]["protocol"]["configData"] == {
        "deviceInstance": 1001,
        "address": first,
        "localAddress": local,
    }

    # applied unchanged, they serve the devices
    handle = await edge(mappers={"bacnet": {"readTimeout": 2}})
    for path in out.iterdir():
        handle.write_manifest(path.name, *yaml.safe_load_all(path.read_text()))
    await handle.wait_reported("building-7/device-1001", "setpoint", "21.5")
    await handle.wait_reported("building-7/device-1001", "room-temperature", "215")  # by COV
    await handle.wait_reported("building-7/device-1002", "label", "pump A")


async def test_only_the_instances_in_range_are_written(simulated) -> None:
    first, second = await simulated(1001), await simulated(1002)
    local = f"127.0.0.1:{free_udp_port()}"
    code, stdout, stderr = await discover(
        "-O", f"address={first},{second}", "-O", f"localAddress={local}", "-O", "range=1002",
        "--seconds", "1",
    )  # fmt: skip
    assert code == 0, stderr
    documents = list(yaml.safe_load_all(stdout))
    assert [d["metadata"]["name"] for d in documents if d["kind"] == "Device"] == ["device-1002"]


def test_bad_options_name_the_key() -> None:
    result = CliRunner().invoke(cli, ["mapper", "discover", "bacnet", "-O", "range=9-1"])
    assert result.exit_code == 1
    assert "-O range" in result.output and "low first" in result.output
    result = CliRunner().invoke(cli, ["mapper", "discover", "bacnet", "-O", "adress=10.0.0.5"])
    assert result.exit_code == 1 and "-O adress" in result.output
    assert BacnetDiscoveryOptions.model_validate({"range": "5-10"}).limits() == (5, 10)


async def test_who_is_is_broadcast_through_a_bbmd_as_a_foreign_device() -> None:
    from kubeedge_mapper_bacnet.discovery import discover as find
    from kubeedge_mapper_bacnet.simulator import BacnetDevice

    bbmd = await BacnetDevice(1005, bbmd=True).start()
    try:
        local = f"127.0.0.1:{free_udp_port()}"
        # no address: a global broadcast, which only the BBMD's distribution brings to the device
        found = await find((), 1000, 1010, local, bbmd_address=bbmd.address, timeout=2)
        assert [(d.instance, d.address) for d in found] == [(1005, bbmd.address)]
        assert found[0].objects
    finally:
        await bbmd.stop()


def test_a_broadcast_without_a_subnet_says_what_to_give() -> None:
    result = CliRunner().invoke(cli, ["mapper", "discover", "bacnet", "--seconds", "0.5"])
    assert result.exit_code == 1
    assert "a broadcast Who-Is needs the local address with its subnet" in result.output
