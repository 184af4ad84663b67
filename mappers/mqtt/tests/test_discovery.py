"""`kubeedge mapper discover mqtt` against a real broker with a Zigbee2MQTT bridge and a Tasmota
plug on it: the manifests it writes pass `kubeedge validate` as they are, keep names a user would
keep, and, deployed unchanged, serve the devices."""

import asyncio
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner

from kubeedge.cli import cli
from kubeedge_mapper_mqtt.simulator import TasmotaPlug, Zigbee2MqttBridge

KUBEEDGE = [sys.executable, "-m", "kubeedge"]


async def discover(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *KUBEEDGE,
        "mapper",
        "discover",
        "mqtt",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


def load(folder: Path) -> dict[str, dict]:
    return {
        f"{d['kind']}/{d['metadata']['name']}": d
        for p in sorted(folder.glob("*.yaml"))
        for d in yaml.safe_load_all(p.read_text())
    }


async def test_discovered_manifests_validate_as_written_and_serve_the_devices(
    edge, device_broker, tmp_path
) -> None:
    bridge = await Zigbee2MqttBridge(device_broker).start()
    plug = await TasmotaPlug(device_broker, "plug-1").start()
    try:
        out = tmp_path / "manifests"
        code, _, stderr = await discover("-O", f"broker={device_broker}", "--seconds", "2", "-o", str(out))
        assert code == 0, stderr
        assert "3 device(s) of 3 kind(s)" in stderr
        objects = load(out)
        assert sorted(objects) == [
            "Device/hall-sensor",
            "Device/living-room-lamp",
            "Device/plug-1",
            "DeviceModel/simulated-led1545g12",
            "DeviceModel/simulated-rtcgq11lm",
            "DeviceModel/tasmota-sonoff-s31",
        ]
        lamp = objects["DeviceModel/simulated-led1545g12"]["spec"]
        assert lamp["protocolConfigData"] == {"preset": "zigbee2mqtt"}
        assert [(p["name"], p["type"], p["accessMode"]) for p in lamp["properties"]] == [
            ("state", "BOOLEAN", "ReadWrite"),
            ("brightness", "INT", "ReadWrite"),
            ("linkquality", "INT", "ReadOnly"),
        ]
        sensor = {p["name"]: p for p in objects["DeviceModel/simulated-rtcgq11lm"]["spec"]["properties"]}
        assert sensor["temperature"]["type"] == "FLOAT" and sensor["temperature"]["unit"] == "°C"
        plug_model = {p["name"]: p for p in objects["DeviceModel/tasmota-sonoff-s31"]["spec"]["properties"]}
        assert plug_model["power"]["visitors"]["configData"] == {
            "stateTopic": "tele/plug-1/STATE",
            "path": "POWER",
            "commandTopic": "cmnd/plug-1/POWER",
            "payloadOn": "ON",
            "payloadOff": "OFF",
        }
        assert plug_model["watts"]["visitors"]["configData"]["path"] == "ENERGY.Power"
        assert (
            objects["Device/plug-1"]["spec"]["protocol"]["configData"]["availabilityTopic"]
            == "tele/plug-1/LWT"
        )

        result = CliRunner().invoke(cli, ["validate", "-f", str(out)])
        assert result.exit_code == 0, result.output
        assert "not checked" not in result.output

        # deployed as written, they serve the devices, writes included
        handle = await edge(mappers={"mqtt": {"maxBackoff": 0.5}})
        for path in out.glob("*.yaml"):
            (handle.manifests / path.name).write_text(path.read_text())
        await handle.wait_reported("default/living-room-lamp", "brightness", "120")
        await handle.wait_reported("default/hall-sensor", "temperature", "21.5")
        await handle.wait_reported("default/plug-1", "power", "false")
        client = await handle.client()
        await client.set_desired("default/plug-1", "power", "true")
        await client.set_desired("default/living-room-lamp", "state", "true")
        await handle.wait_reported("default/plug-1", "power", "true")
        await handle.wait_reported("default/living-room-lamp", "state", "true")
        assert plug.power == "ON" and bridge.devices["living-room-lamp"].state["state"] == "ON"
    finally:
        await bridge.stop()
        await plug.stop()


async def test_friendly_names_become_valid_names_and_nothing_found_is_an_error(
    mosquitto_factory, tmp_path
) -> None:
    from kubeedge_mapper_mqtt.simulator import lamp

    broker = mosquitto_factory()
    code, _, stderr = await discover("-O", f"broker={broker.url}", "--seconds", "0.5")
    assert code == 1 and "no mqtt devices found in 0.5s" in stderr

    bridge = await Zigbee2MqttBridge(
        broker.url, [lamp("Kitchen Lamp"), lamp("kitchen_lamp")], discovery=False
    ).start()
    try:
        code, stdout, stderr = await discover("-O", f"broker={broker.url}", "--seconds", "0.5", "-n", "home")
        assert code == 0, stderr
        documents = list(yaml.safe_load_all(stdout))
        devices = [d for d in documents if d["kind"] == "Device"]
        assert [d["metadata"]["name"] for d in devices] == ["kitchen-lamp", "kitchen-lamp-2"]
        assert [d["spec"]["protocol"]["configData"]["deviceTopic"] for d in devices] == [
            "Kitchen Lamp",
            "kitchen_lamp",
        ]
        assert {d["metadata"]["namespace"] for d in documents} == {"home"}
        assert sum(d["kind"] == "DeviceModel" for d in documents) == 1  # one model for two lamps
    finally:
        await bridge.stop()


async def test_bad_options_and_an_unreachable_broker_are_named() -> None:
    code, _, stderr = await discover("-O", "brokr=mqtt://x")
    assert code == 1 and "-O brokr: " in stderr
    code, _, stderr = await discover("-O", "broker=mqtt://127.0.0.1:1", "--seconds", "0.5")
    assert code == 1 and "discovery failed: cannot connect to the broker 127.0.0.1:1" in stderr
