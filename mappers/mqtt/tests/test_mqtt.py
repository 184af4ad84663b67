"""The MQTT mapper through the full edge (bus, twin) against real brokers and simulated firmware.

Each device-facing test runs twice: with the devices on the embedded broker (amqtt) and on
Mosquitto. The edge's own bus is the embedded broker in both cases.
"""

import asyncio
import json
import logging
import subprocess
from pathlib import Path

from kubeedge.testing import Mosquitto, wait_for
from kubeedge_mapper_mqtt.broker import LINKS
from kubeedge_mapper_mqtt.simulator import CustomDevice, TasmotaPlug, Zigbee2MqttBridge

SETTINGS = {"readTimeout": 3, "maxBackoff": 0.5, "stateInterval": 0.2}


def manifests(name: str, config: dict, properties: list[dict], cycle: int | None = None) -> list[dict]:
    model = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": f"{name}-model", "namespace": "home"},
        "spec": {
            "protocol": "mqtt",
            "properties": [
                {"name": p["name"], "type": p["type"], "accessMode": p.get("access", "ReadOnly")}
                for p in properties
            ],
        },
    }
    device = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": "home"},
        "spec": {
            "deviceModelRef": {"name": f"{name}-model"},
            "protocol": {"protocolName": "mqtt", "configData": config},
            "properties": [
                {
                    "name": p["name"],
                    **({"collectCycle": cycle} if cycle else {}),
                    "visitors": {"protocolName": "mqtt", "configData": p.get("visitor", {})},
                }
                for p in properties
            ],
        },
    }
    return [model, device]


LAMP = [
    {"name": "state", "type": "BOOLEAN", "access": "ReadWrite"},
    {"name": "brightness", "type": "INT", "access": "ReadWrite"},
    {"name": "link-quality", "type": "INT", "visitor": {"path": "linkquality"}},
]
SENSOR = [
    {"name": "temperature", "type": "FLOAT"},
    {"name": "occupancy", "type": "BOOLEAN"},
]


async def test_zigbee2mqtt_values_become_twins_and_desired_values_close_the_loop(edge, device_broker) -> None:
    bridge = await Zigbee2MqttBridge(device_broker).start()
    try:
        handle = await edge(mappers={"mqtt": SETTINGS})
        config = {"broker": device_broker, "preset": "zigbee2mqtt"}
        handle.write_manifest("lamp.yaml", *manifests("living-room-lamp", config, LAMP))
        handle.write_manifest("sensor.yaml", *manifests("hall-sensor", config, SENSOR))
        await handle.wait_reported("home/living-room-lamp", "state", "false")
        await handle.wait_reported("home/living-room-lamp", "brightness", "120")
        await handle.wait_reported("home/living-room-lamp", "link-quality", "87")
        await handle.wait_reported("home/hall-sensor", "temperature", "21.5")
        await handle.wait_reported("home/hall-sensor", "occupancy", "false")
        assert handle.state("home/living-room-lamp") == "online"

        # a change at the device (pushed, not polled: no collectCycle is set)
        bridge.set_value("hall-sensor", "temperature", 23.25)
        bridge.set_value("hall-sensor", "occupancy", True)
        await handle.wait_reported("home/hall-sensor", "temperature", "23.25")
        await handle.wait_reported("home/hall-sensor", "occupancy", "true")

        # desired values arrive as Zigbee2MQTT commands; the state it publishes closes the loop
        client = await handle.client()
        await client.set_desired("home/living-room-lamp", "state", "true")
        await client.set_desired("home/living-room-lamp", "brightness", "200")
        await handle.wait_reported("home/living-room-lamp", "state", "true")
        await handle.wait_reported("home/living-room-lamp", "brightness", "200")
        assert bridge.devices["living-room-lamp"].state["state"] == "ON"
        assert bridge.devices["living-room-lamp"].state["brightness"] == 200
        assert not bridge.refused
        assert handle.error("home/living-room-lamp", "state") == ""

        # a value the device refuses does not hold: the twin says so instead of showing it
        await client.set_desired("home/living-room-lamp", "brightness", "300")
        await wait_for(lambda: bridge.refused, what="the bridge refusing brightness 300")
        await wait_for(
            lambda: (
                "readBackTimeout" in handle.error("home/living-room-lamp", "brightness")
                or "does not hold" in handle.error("home/living-room-lamp", "brightness")
            ),
            timeout=15,
            what="the refused write on the twin",
        )
        assert handle.reported("home/living-room-lamp", "brightness") == "200"
    finally:
        await bridge.stop()


async def test_a_device_the_bridge_reports_gone_is_offline_until_it_returns(edge, device_broker) -> None:
    bridge = await Zigbee2MqttBridge(device_broker).start()
    try:
        handle = await edge(mappers={"mqtt": SETTINGS})
        config = {"broker": device_broker, "preset": "zigbee2mqtt"}
        handle.write_manifest("sensor.yaml", *manifests("hall-sensor", config, SENSOR))
        await handle.wait_reported("home/hall-sensor", "temperature", "21.5")
        bridge.set_available("hall-sensor", False)
        await wait_for(
            lambda: (
                handle.error("home/hall-sensor", "temperature")
                == "device offline: lost: DeviceUnreachable: zigbee2mqtt/hall-sensor/availability says 'offline'"
            ),
            what="the reason on the twin",
        )
        assert handle.state("home/hall-sensor") == "offline"
        bridge.set_value("hall-sensor", "temperature", 19.0)  # the bridge's cache changes meanwhile
        bridge.set_available("hall-sensor", True)
        await handle.wait_state("home/hall-sensor", "online")
        await handle.wait_reported("home/hall-sensor", "temperature", "19")
    finally:
        await bridge.stop()


TASMOTA = [
    {"name": "power", "type": "BOOLEAN", "access": "ReadWrite", "visitor": {"path": "POWER"}},
    {"name": "watts", "type": "FLOAT", "visitor": {"path": "ENERGY.Power"}},
    {"name": "energy-total", "type": "DOUBLE", "visitor": {"path": "/ENERGY/Total"}},
]


async def test_tasmota_plug_commands_telemetry_and_last_will(edge, device_broker) -> None:
    plug = await TasmotaPlug(device_broker, "plug-1").start()
    try:
        handle = await edge(mappers={"mqtt": SETTINGS})
        config = {"broker": device_broker, "preset": "tasmota", "deviceTopic": "plug-1"}
        handle.write_manifest("plug.yaml", *manifests("kettle-plug", config, TASMOTA))
        key = "home/kettle-plug"
        await handle.wait_reported(key, "power", "false")
        await handle.wait_reported(key, "energy-total", "1.234")
        client = await handle.client()
        await client.set_desired(key, "power", "true")
        await handle.wait_reported(key, "power", "true")
        assert plug.power == "ON"
        assert "POWER ON" in plug.commands
        plug.set_load(1850.5)
        await handle.wait_reported(key, "watts", "1850.5")
        # a message without POWER (tele/SENSOR) is not a bad payload for power: several topics
        assert handle.error(key, "power") == ""

        await plug.lose_power()
        await wait_for(
            lambda: handle.error(key, "power").endswith("tele/plug-1/LWT says 'Offline'"),
            what="the last will on the twin",
        )
        assert handle.state(key) == "offline"
        await plug.power_on()  # a rebooted plug starts with its relay off
        await handle.wait_state(key, "online")
        # the edge still wants it on: the desired value is written again (level-triggered)
        await handle.wait_reported(key, "power", "true", timeout=20)
        assert plug.power == "ON"
    finally:
        await plug.stop()


CUSTOM = [
    {
        "name": "temperature",
        "type": "FLOAT",
        "visitor": {"stateTopic": "{name}/status", "path": "/sensors/t_x10", "scale": 0.1},
    },
    {"name": "counter", "type": "INT", "visitor": {"stateTopic": "{name}/count"}},
]


async def test_a_silent_device_is_offline_after_its_collect_cycle_and_back_at_its_next_message(
    edge, device_broker
) -> None:
    device = CustomDevice(device_broker, "meter-9")
    await device.start()
    try:
        handle = await edge(mappers={"mqtt": SETTINGS})
        # no availability topic: only silence tells that it is gone
        config = {"broker": device_broker, "deviceTopic": "meter-9"}
        handle.write_manifest("meter.yaml", *manifests("meter", config, CUSTOM, cycle=1000))
        await handle.wait_reported("home/meter", "temperature", "21.5")
        await device.pause()  # connected, but it says nothing any more
        await wait_for(
            lambda: (
                "no message from the device for 1.0s (limit: collectCycle)"
                in handle.error("home/meter", "counter")
            ),
            timeout=5,
            what="offline for silence",
        )
        assert handle.state("home/meter") == "offline"
        # it stays offline while silent: each reconnection attempt listens for it and hears nothing
        await wait_for(
            lambda: (
                "cannot connect: DeviceUnreachable: no message from the device"
                in handle.error("home/meter", "counter")
            ),
            what="a reconnection attempt that heard nothing",
        )
        assert handle.state("home/meter") == "offline"
        device.count = 11
        device.resume()
        await handle.wait_state("home/meter", "online")
        await handle.wait_reported("home/meter", "counter", "11")
    finally:
        await device.stop()


BAD = [
    {
        "name": "temperature",
        "type": "FLOAT",
        "visitor": {"stateTopic": "{name}/status", "path": "/sensors/t_x10", "scale": 0.1},
    },
    {"name": "mode", "type": "STRING", "visitor": {"stateTopic": "{name}/status", "path": "mode"}},
    {"name": "counter", "type": "INT", "visitor": {"stateTopic": "{name}/count"}},
]


async def test_every_kind_of_bad_payload_is_counted_on_its_property_and_nothing_stops(
    edge, device_broker
) -> None:
    device = CustomDevice(device_broker, "box-3")
    await device.start()
    await device.pause()  # it publishes what the test says
    try:
        handle = await edge(mappers={"mqtt": SETTINGS})
        config = {"broker": device_broker, "deviceTopic": "box-3", "maxPayload": 1024}
        handle.write_manifest("box.yaml", *manifests("box", config, BAD))
        key = "home/box"
        await handle.wait_state(key, "online")  # subscribed
        device.publish_all()
        await handle.wait_reported(key, "temperature", "21.5")
        await handle.wait_reported(key, "counter", "3")
        big = json.dumps({"mode": "eco", "sensors": {"t_x10": 1}, "pad": "x" * 2000}).encode()
        cases = [
            (
                "box-3/status",
                b"<html>502 Bad Gateway</html>",
                "temperature",
                "bad payload on box-3/status: not JSON: '<html>502 Bad Gateway</html>' (1 bad since connected)",
            ),
            (
                "box-3/status",
                json.dumps({"mode": "eco", "sensors": {}}),
                "temperature",
                "bad payload on box-3/status: missing: no value at '/sensors/t_x10' in ",
            ),
            (
                "box-3/status",
                json.dumps({"mode": "eco", "sensors": {"t_x10": "hot"}}),
                "temperature",
                "bad payload on box-3/status: wrong type: expected a number, got 'hot' (3 bad since connected)",
            ),
            (
                "box-3/status",
                big,
                "temperature",
                f"bad payload on box-3/status: oversized: {len(big)} bytes, more than maxPayload 1024 (4 bad since connected)",
            ),
            ("box-3/count", b"\xff\xfe", "counter", "bad payload on box-3/count: not UTF-8: "),
            (
                "box-3/count",
                b"12.5",
                "counter",
                "bad payload on box-3/count: wrong type: expected a whole number, got '12.5'",
            ),
        ]
        for topic, payload, prop, error in cases:
            if topic == "box-3/count":  # the status is good again: one property failing at a time
                device.publish_all()
                await wait_for(lambda: handle.error(key, "temperature") == "")
            device.mqtt.publish(topic, payload)
            await wait_for(
                lambda prop=prop, error=error: error in handle.error(key, prop), timeout=10, what=error
            )
            assert handle.state(key) == "online"
        # the last good values stay; a good payload clears the error
        assert handle.reported(key, "temperature") == "21.5"
        device.status["sensors"] = {"t_x10": 230}
        device.count = 4
        device.publish_all()
        await handle.wait_reported(key, "temperature", "23")
        await handle.wait_reported(key, "counter", "4")
        await wait_for(lambda: handle.error(key, "temperature") == "" and handle.error(key, "counter") == "")
        # every property failing: unhealthy, still connected
        device.mqtt.publish("box-3/status", b"garbage")
        device.mqtt.publish("box-3/count", b"garbage")
        await handle.wait_state(key, "unhealthy")
        device.publish_all()
        await handle.wait_state(key, "online")
    finally:
        await device.stop()


async def test_devices_on_one_broker_share_one_connection(edge, device_broker) -> None:
    bridge = await Zigbee2MqttBridge(device_broker).start()
    try:
        handle = await edge(mappers={"mqtt": SETTINGS})
        config = {"broker": device_broker, "preset": "zigbee2mqtt"}
        handle.write_manifest("lamp.yaml", *manifests("living-room-lamp", config, LAMP))
        handle.write_manifest("sensor.yaml", *manifests("hall-sensor", config, SENSOR))
        await handle.wait_reported("home/living-room-lamp", "state")
        await handle.wait_reported("home/hall-sensor", "temperature")
        assert len(LINKS.pool) == 1
        (handle.manifests / "lamp.yaml").unlink()
        (handle.manifests / "sensor.yaml").unlink()
        await wait_for(lambda: len(LINKS.pool) == 0, what="the connection closed with its last device")
    finally:
        await bridge.stop()


async def test_credentials_from_a_file_or_the_environment_and_never_logged(
    edge, tmp_path, monkeypatch, caplog
) -> None:
    secret = "s3cret-Pa55"
    passwords = tmp_path / "passwd"
    passwords.touch()
    await asyncio.to_thread(
        subprocess.run, ["mosquitto_passwd", "-b", str(passwords), "bridge", secret], check=True
    )
    broker = Mosquitto(extra=f"password_file {passwords}").start()
    try:
        bridge = Zigbee2MqttBridge(broker.url, credentials=("bridge", secret))
        (tmp_path / "secret").write_text(secret + "\n")
        monkeypatch.setenv("Z2M_PASSWORD", secret)
        await bridge.start()
        caplog.set_level(logging.DEBUG)
        handle = await edge(mappers={"mqtt": SETTINGS})
        base = {"broker": broker.url, "preset": "zigbee2mqtt", "username": "bridge"}
        handle.write_manifest(
            "lamp.yaml",
            *manifests("living-room-lamp", {**base, "passwordFile": str(tmp_path / "secret")}, LAMP),
        )
        handle.write_manifest(
            "sensor.yaml", *manifests("hall-sensor", {**base, "passwordEnv": "Z2M_PASSWORD"}, SENSOR)
        )
        await handle.wait_reported("home/living-room-lamp", "state", "false")
        await handle.wait_reported("home/hall-sensor", "temperature", "21.5")
        # a wrong password: offline, with the broker's reason
        monkeypatch.setenv("WRONG", "nope")
        handle.write_manifest(
            "other.yaml",
            *manifests("other", {**base, "passwordEnv": "WRONG", "deviceTopic": "hall-sensor"}, SENSOR),
        )
        await wait_for(
            lambda: "refused the connection: Not authorized" in handle.error("home/other", "temperature"),
            what="the broker's refusal on the twin",
        )
        assert handle.state("home/other") == "offline"
        await bridge.stop()
        assert secret not in caplog.text
        assert "nope" not in caplog.text
    finally:
        broker.close()


async def test_the_repository_s_kubeedge_style_greenhouse_example_works_as_written(
    edge, mosquitto_url
) -> None:
    """examples/mqtt/greenhouse-sensor.yaml uses KubeEdge's visitor keys (topic, jsonPath,
    writeTopic); only the broker's port is changed."""
    import yaml

    from kubeedge_mapper_mqtt.simulator import SimClient

    repo = Path(__file__).parents[3]
    documents = list(yaml.safe_load_all((repo / "examples/mqtt/greenhouse-sensor.yaml").read_text()))
    documents[1]["spec"]["protocol"]["configData"]["broker"] = mosquitto_url
    state = {
        "climate": {"temperature": 24.5},
        "soil": {"moisture": 40},
        "vent": {"open": False},
        "display": "",
    }
    controller = SimClient(mosquitto_url, "greenhouse-north")

    def on_set(topic: str, payload: bytes) -> None:
        if topic.endswith("/vent"):
            state["vent"]["open"] = payload == b"true"
        else:
            state["display"] = payload.decode()
        controller.publish("greenhouse/greenhouse-north/state", json.dumps(state))

    controller.handle("greenhouse/greenhouse-north/set/+", on_set)
    await controller.connect()
    try:
        handle = await edge(mappers={"mqtt": SETTINGS})
        handle.write_manifest("greenhouse.yaml", *documents)
        key = "farm/greenhouse-north"
        await handle.wait_state(key, "online")
        controller.publish("greenhouse/greenhouse-north/state", json.dumps(state))
        await handle.wait_reported(key, "temperature", "24.5")
        await handle.wait_reported(key, "soil-moisture", "40")
        # the desired values of the manifest are written and read back
        await handle.wait_reported(key, "vent-open", "true")
        await handle.wait_reported(key, "note", 'Irrigation paused: {"until": "18:00"}')
        assert state["vent"]["open"] is True
    finally:
        await controller.close()


async def test_a_device_broker_over_tls(edge, tmp_path) -> None:
    """The mapper verifies the broker's certificate with caFile; a broker it cannot verify is
    refused with the reason (the devices publish on a plain listener of the same broker)."""
    import trustme

    from kubeedge.testing import free_port

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    plain = free_port()
    broker = Mosquitto(
        extra=f"cafile {tmp_path / 'ca.pem'}\ncertfile {tmp_path / 'server.pem'}\nkeyfile {tmp_path / 'server.key'}\n"
        f"listener {plain} 127.0.0.1\n"
    ).start()
    bridge = await Zigbee2MqttBridge(f"mqtt://127.0.0.1:{plain}").start()
    try:
        handle = await edge(mappers={"mqtt": SETTINGS})
        tls = {"broker": f"mqtts://127.0.0.1:{broker.port}", "preset": "zigbee2mqtt"}
        handle.write_manifest(
            "sensor.yaml",
            *manifests("hall-sensor", {**tls, "tls": {"caFile": str(tmp_path / "ca.pem")}}, SENSOR),
        )
        await handle.wait_reported("home/hall-sensor", "temperature", "21.5")
        # without the CA: the system's trust store does not know this broker
        handle.write_manifest(
            "other.yaml", *manifests("other", {**tls, "deviceTopic": "hall-sensor"}, SENSOR)
        )
        await wait_for(
            lambda: "CERTIFICATE_VERIFY_FAILED" in handle.error("home/other", "temperature"),
            what="the refused certificate on the twin",
        )
        assert handle.state("home/other") == "offline"
    finally:
        await bridge.stop()
        broker.close()
