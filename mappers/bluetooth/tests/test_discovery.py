"""``kubeedge mapper discover bluetooth`` as a user runs it (its own process), against emulated
peripherals reached through an HCI port of the emulated air: manifests that pass ``kubeedge
validate`` and serve the devices unchanged."""

import asyncio
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kubeedge.cli import cli
from kubeedge_mapper_bluetooth.discovery import BluetoothDiscoveryOptions
from kubeedge_mapper_bluetooth.testing import AdvertisingSensor, EmulatedAir, Thermometer

KUBEEDGE = str(Path(sys.executable).with_name("kubeedge"))


@pytest.fixture
async def air():
    emulated = EmulatedAir()
    yield emulated
    await emulated.close()


async def discover(*arguments: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        KUBEEDGE,
        "mapper",
        "discover",
        "bluetooth",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_discovered_devices_validate_and_are_served_unchanged(edge, air, tmp_path: Path) -> None:
    for i in (1, 2):
        await Thermometer(f"Thermo-{i}", f"F0:F0:F0:F0:F0:0{i}", temperature=20 + i).start(air)
    await AdvertisingSensor("Cellar", "F0:F0:F0:F0:F1:01").start(air)
    transport = await air.open_adapter("hci0")
    out_dir = tmp_path / "found"
    code, _, err = await discover(
        "-O", "backend=bumble", "-O", f"transport={transport}", "--timeout", "1", "-o", str(out_dir)
    )
    assert code == 0, err
    assert "3 device(s) of 2 kind(s)" in err

    documents = [doc for path in sorted(out_dir.iterdir()) for doc in yaml.safe_load_all(path.read_text())]
    models = {d["metadata"]["name"]: d for d in documents if d["kind"] == "DeviceModel"}
    devices = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Device"}
    assert set(models) == {"thermo", "cellar-broadcast"}  # the two thermometers share a model
    assert set(devices) == {"thermo-1", "thermo-2", "cellar"}
    properties = {p["name"]: p for p in models["thermo"]["spec"]["properties"]}
    temperature = properties["temperature"]["visitors"]["configData"]
    assert (temperature["operation"], temperature["format"], temperature["scale"]) == ("notify", "<h", 0.01)
    assert properties["battery"]["type"] == "INT"
    assert properties["char-8f1c0001"]["accessMode"] == "ReadWrite"
    assert devices["thermo-2"]["spec"]["protocol"]["configData"] == {"macAddress": "F0:F0:F0:F0:F0:02"}

    result = CliRunner().invoke(cli, ["validate", "-f", str(out_dir)])
    assert result.exit_code == 0, result.output

    handle = await edge(
        mappers={
            "bluetooth": {
                "backend": "bumble",
                "adapters": {"hci0": {"transport": await air.open_adapter("hci1")}},
            }
        }
    )
    for path in out_dir.iterdir():
        (handle.manifests / path.name).write_text(path.read_text())
    await handle.wait_reported("default/thermo-2", "temperature", "22")
    await handle.wait_reported("default/thermo-1", "battery", "87")


async def test_an_empty_air_and_a_bad_option_fail_with_the_reason(air) -> None:
    transport = await air.open_adapter()
    code, _, err = await discover("-O", "backend=bumble", "-O", f"transport={transport}", "--timeout", "0.5")
    assert code == 1 and "no bluetooth devices found" in err
    code, _, err = await discover("-O", "backend=bumble")
    assert code == 1 and "give the adapter's HCI transport" in err


def test_options_name_the_key() -> None:
    with pytest.raises(ValueError, match="connectTimeout"):
        BluetoothDiscoveryOptions.model_validate({"connectTimeout": "0"})
