"""``kubeedge mapper discover zigbee`` as a user runs it (its own process), pairing emulated devices
through the emulated XBee coordinator: manifests that pass ``kubeedge validate`` and are served
unchanged by the mapper, which finds the paired devices in the same database."""

import asyncio
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kubeedge.cli import cli
from kubeedge_mapper_zigbee import testing
from kubeedge_mapper_zigbee.discovery import ZigbeeDiscoveryOptions
from kubeedge_mapper_zigbee.testing import EmulatedDevice
from kubeedge_mapper_zigbee.xbee_emulator import XBeeCoordinator

KUBEEDGE = str(Path(sys.executable).with_name("kubeedge"))


@pytest.fixture
async def xbee(request):
    air = testing.air(f"discovery-{request.node.name}")
    coordinator = XBeeCoordinator(air)
    await coordinator.start()
    yield coordinator
    await coordinator.stop()
    testing.AIRS.pop(air.name, None)


async def discover(*arguments: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        KUBEEDGE,
        "mapper",
        "discover",
        "zigbee",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_pairing_writes_manifests_that_validate_and_are_served(edge, xbee, tmp_path: Path) -> None:
    plugs = [EmulatedDevice.thermo_plug(f"00:0d:6f:00:0a:bc:de:0{i}", nwk=0x1230 + i) for i in (1, 2)]
    xbee.air.waiting.extend(plugs)  # they join when the network is opened
    settings = {
        "radio": "xbee",
        "path": f"socket://127.0.0.1:{xbee.port}",
        "database": str(tmp_path / "zb.db"),
    }
    options = [item for key, value in settings.items() for item in ("-O", f"{key}={value}")]
    out_dir = tmp_path / "found"
    code, _, err = await discover(*options, "-O", "permitJoin=1", "--seconds", "1", "-o", str(out_dir))
    assert code == 0, err
    assert "2 device(s) of 1 kind(s)" in err
    assert "AT NJ" in xbee.requests  # the network was opened on the coordinator

    documents = [doc for path in sorted(out_dir.iterdir()) for doc in yaml.safe_load_all(path.read_text())]
    models = {d["metadata"]["name"]: d for d in documents if d["kind"] == "DeviceModel"}
    devices = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Device"}
    assert set(models) == {"labco-th-plug-1"}
    assert set(devices) == {"th-plug-1-de01", "th-plug-1-de02"}
    properties = {p["name"]: p for p in models["labco-th-plug-1"]["spec"]["properties"]}
    assert set(properties) == {"switch", "level", "temperature", "humidity"}
    assert properties["temperature"]["visitors"]["configData"]["scale"] == 0.01
    assert devices["th-plug-1-de02"]["spec"]["protocol"]["configData"] == {"ieee": "00:0d:6f:00:0a:bc:de:02"}

    result = CliRunner().invoke(cli, ["validate", "-f", str(out_dir)])
    assert result.exit_code == 0, result.output

    handle = await edge(mappers={"zigbee": {**settings, "maxBackoff": 0.5}})
    for path in out_dir.iterdir():
        (handle.manifests / path.name).write_text(path.read_text())
    await handle.wait_reported("default/th-plug-1-de01", "temperature", "21.5")
    plugs[1].set(1, 0x0405, 0x0000, 5000)  # reported (reporting was configured by the mapper)
    await handle.wait_reported("default/th-plug-1-de02", "humidity", "50")


async def test_an_empty_network_and_a_bad_option_fail_with_the_reason(xbee, tmp_path: Path) -> None:
    code, _, err = await discover(
        "-O", "radio=xbee", "-O", f"path=socket://127.0.0.1:{xbee.port}", "-O", f"database={tmp_path / 'z.db'}",
        "--seconds", "0.5",
    )  # fmt: skip
    assert code == 1 and "no zigbee devices found" in err
    code, _, err = await discover("-O", "radio=cc2531")
    assert code == 1 and "-O radio" in err


def test_options_name_the_key() -> None:
    with pytest.raises(ValueError, match="permitJoin"):
        ZigbeeDiscoveryOptions.model_validate({"permitJoin": 300})
