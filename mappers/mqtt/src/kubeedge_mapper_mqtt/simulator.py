"""Simulated MQTT devices, and this mapper's side of the kubeedge conformance suite.

* :class:`Zigbee2MqttBridge`: a Zigbee2MQTT bridge with a lamp and a sensor. It publishes each
  device's state on ``zigbee2mqtt/<friendly name>`` (on change and every ``report_every``
  seconds), its availability (retained ``{"state": "online"}``), ``bridge/devices`` and Home
  Assistant discovery configs (retained), and obeys ``<friendly name>/set`` by its own rules
  (``state`` ON/OFF/TOGGLE, ``brightness`` 0..254): a value it cannot take is refused and kept
  in ``refused``.
* :class:`TasmotaPlug`: a Tasmota smart plug. ``tele/<topic>/STATE`` and ``tele/<topic>/SENSOR``
  every ``tele_period`` seconds, ``cmnd/<topic>/POWER`` answered on ``stat/<topic>/RESULT`` and
  ``stat/<topic>/POWER``, a last will ``tele/<topic>/LWT`` = ``Offline`` (retained) that the
  broker publishes when the plug loses power (:meth:`TasmotaPlug.lose_power`).
* :class:`CustomDevice` / :class:`MqttConformanceSimulator`: a device with its own firmware, a
  point of every DeviceModel type on topics and keys that differ from the property names, one
  with a scale, for the conformance suite.

Each is a real MQTT client (paho, its own network thread) of a real broker, and decodes what it
is sent by its firmware's rules, never with the driver's code.

Run them by hand: ``python -m kubeedge_mapper_mqtt.simulator --broker mqtt://127.0.0.1:1883``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from kubeedge.testing.conformance import BadConfig, DeviceSimulator, Point

Handler = Callable[[str, bytes], None]


class SimClient:
    """A paho client for a simulated device: its network loop in paho's thread, so handlers run
    there; connecting never blocks the event loop."""

    def __init__(
        self,
        broker: str,
        client_id: str,
        will: tuple[str, bytes] | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        parts = urlsplit(broker)
        self.credentials = credentials
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 1883
        self.client_id = client_id
        self.will = will
        self.handlers: dict[str, Handler] = {}
        self.client: mqtt.Client | None = None
        self.on_connected: Callable[[], None] = lambda: None
        self._retained: list[mqtt.MQTTMessageInfo] = []

    async def connect(self, timeout: float = 10.0) -> None:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, reconnect_on_failure=False
        )
        if self.credentials is not None:
            client.username_pw_set(*self.credentials)
        if self.will is not None:
            client.will_set(self.will[0], self.will[1], qos=1, retain=True)
        connected = threading.Event()

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                return
            for topic in self.handlers:
                c.subscribe(topic, 1)
            self.on_connected()
            connected.set()

        def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
            for topic, handler in list(self.handlers.items()):
                if mqtt.topic_matches_sub(topic, message.topic):
                    handler(message.topic, bytes(message.payload))

        client.on_connect = on_connect
        client.on_message = on_message
        # before the network thread starts: on_connect (there) publishes through self.client
        self.client = client
        client.connect_async(self.host, self.port, keepalive=5)
        client.loop_start()
        deadline = time.monotonic() + timeout
        while not connected.is_set():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.client_id} cannot connect to {self.host}:{self.port}")
            await asyncio.sleep(0.01)
        # what it announced at connecting (retained) is at the broker before start() returns
        while not all(info.is_published() for info in list(self._retained)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.client_id}: the broker did not acknowledge its retained messages")
            await asyncio.sleep(0.01)
        self._retained.clear()

    def handle(self, topic: str, handler: Handler) -> None:
        """Before :meth:`connect`: call ``handler(topic, payload)`` for messages on ``topic``."""
        self.handlers[topic] = handler

    def publish(self, topic: str, payload: bytes | str, retain: bool = False, qos: int = 0) -> None:
        """Retained messages go at QoS 1, so :meth:`connect` can wait until the broker holds them."""
        if self.client is not None:
            info = self.client.publish(topic, payload, qos=max(qos, 1) if retain else qos, retain=retain)
            if retain:
                self._retained.append(info)

    async def drop(self) -> None:
        """Vanish without a DISCONNECT (power lost): the broker publishes the last will."""
        client, self.client = self.client, None
        if client is None:
            return
        sock = client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        await asyncio.to_thread(client.loop_stop)

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.is_connected()


# --------------------------------------------------------------------------- Zigbee2MQTT


class ZigbeeDevice:
    """One device behind the bridge: its state and what its exposes allow to be set."""

    def __init__(
        self, friendly_name: str, ieee: str, model: str, state: dict[str, Any], exposes: list[dict[str, Any]]
    ):
        self.friendly_name = friendly_name
        self.ieee = ieee
        self.model = model
        self.state = state
        self.exposes = exposes
        self.available = True

    def feature(self, name: str) -> dict[str, Any] | None:
        for expose in self.exposes:
            for feature in expose.get("features", [expose]):
                if feature.get("property") == name:
                    return feature
        return None


def lamp(name: str = "living-room-lamp") -> ZigbeeDevice:
    return ZigbeeDevice(
        name,
        "0x00158d0001a2b3c4",
        "LED1545G12",
        {"state": "OFF", "brightness": 120, "linkquality": 87},
        [
            {
                "type": "light",
                "features": [
                    {
                        "type": "binary",
                        "name": "state",
                        "property": "state",
                        "access": 7,
                        "value_on": "ON",
                        "value_off": "OFF",
                        "value_toggle": "TOGGLE",
                    },
                    {
                        "type": "numeric",
                        "name": "brightness",
                        "property": "brightness",
                        "access": 7,
                        "value_min": 0,
                        "value_max": 254,
                    },
                ],
            },
            {
                "type": "numeric",
                "name": "linkquality",
                "property": "linkquality",
                "access": 1,
                "unit": "lqi",
                "value_min": 0,
                "value_max": 255,
            },
        ],
    )


def sensor(name: str = "hall-sensor") -> ZigbeeDevice:
    return ZigbeeDevice(
        name,
        "0x00158d0004d5e6f7",
        "RTCGQ11LM",
        {"temperature": 21.5, "humidity": 48.2, "occupancy": False, "battery": 97},
        [
            {"type": "numeric", "name": "temperature", "property": "temperature", "access": 1, "unit": "°C"},
            {"type": "numeric", "name": "humidity", "property": "humidity", "access": 1, "unit": "%"},
            {
                "type": "binary",
                "name": "occupancy",
                "property": "occupancy",
                "access": 1,
                "value_on": True,
                "value_off": False,
            },
            {
                "type": "numeric",
                "name": "battery",
                "property": "battery",
                "access": 1,
                "unit": "%",
                "value_min": 0,
                "value_max": 100,
            },
        ],
    )


class Zigbee2MqttBridge:
    """A Zigbee2MQTT bridge on a broker, with its devices."""

    def __init__(
        self,
        broker: str,
        devices: list[ZigbeeDevice] | None = None,
        base: str = "zigbee2mqtt",
        report_every: float = 0.5,
        discovery: bool = True,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.base = base
        self.devices = {d.friendly_name: d for d in (devices if devices is not None else [lamp(), sensor()])}
        self.report_every = report_every
        self.discovery = discovery
        self.refused: list[str] = []
        self.sets = 0
        self.silent: set[str] = set()
        """Devices that stopped reporting (without the bridge saying they are offline)."""
        self.mqtt = SimClient(
            broker, f"z2m-bridge-{id(self):x}", (f"{base}/bridge/state", b'{"state":"offline"}'), credentials
        )
        self.mqtt.handle(f"{base}/+/set", self._on_set)
        self.mqtt.on_connected = self._announce
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Zigbee2MqttBridge:
        await self.mqtt.connect()
        self._task = asyncio.create_task(self._report())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.mqtt.close()

    def _announce(self) -> None:
        base = self.base
        self.mqtt.publish(f"{base}/bridge/state", '{"state":"online"}', retain=True)
        self.mqtt.publish(f"{base}/bridge/devices", json.dumps(self.bridge_devices()), retain=True)
        for device in self.devices.values():
            self._publish_availability(device)
            if self.discovery:
                for topic, config in self.homeassistant_configs(device):
                    self.mqtt.publish(topic, json.dumps(config), retain=True)

    def bridge_devices(self) -> list[dict[str, Any]]:
        coordinator = {
            "ieee_address": "0x00124b0000000000",
            "type": "Coordinator",
            "friendly_name": "Coordinator",
        }
        return [coordinator] + [
            {
                "ieee_address": d.ieee,
                "type": "Router" if "state" in d.state else "EndDevice",
                "friendly_name": d.friendly_name,
                "supported": True,
                "definition": {
                    "model": d.model,
                    "vendor": "Simulated",
                    "description": d.model,
                    "exposes": d.exposes,
                },
            }
            for d in self.devices.values()
        ]

    def homeassistant_configs(self, device: ZigbeeDevice) -> list[tuple[str, dict[str, Any]]]:
        """What Zigbee2MQTT publishes for Home Assistant's MQTT discovery (one entity per feature)."""
        out = []
        state_topic = f"{self.base}/{device.friendly_name}"
        node = {
            "identifiers": [f"zigbee2mqtt_{device.ieee}"],
            "name": device.friendly_name,
            "model": device.model,
        }
        availability = [{"topic": f"{state_topic}/availability", "value_template": "{{ value_json.state }}"}]
        for name, value in device.state.items():
            feature = device.feature(name) or {}
            writable = bool(feature.get("access", 1) & 2)
            component = (
                "switch"
                if writable and isinstance(value, str)
                else "number"
                if writable
                else "binary_sensor"
                if isinstance(value, bool)
                else "sensor"
            )
            config: dict[str, Any] = {
                "name": name,
                "unique_id": f"{device.ieee}_{name}_zigbee2mqtt",
                "state_topic": state_topic,
                "value_template": f"{{{{ value_json.{name} }}}}",
                "availability": availability,
                "device": node,
            }
            if writable:
                config["command_topic"] = f"{state_topic}/set"
                config["command_template"] = f'{{"{name}": {{{{ value }}}}}}'
            if component in ("switch", "binary_sensor"):
                config["payload_on"], config["payload_off"] = (
                    ("ON", "OFF") if component == "switch" else (True, False)
                )
            if "unit" in feature:
                config["unit_of_measurement"] = feature["unit"]
            out.append((f"homeassistant/{component}/{device.ieee}/{name}/config", config))
        return out

    def _publish_availability(self, device: ZigbeeDevice) -> None:
        state = "online" if device.available else "offline"
        self.mqtt.publish(
            f"{self.base}/{device.friendly_name}/availability", json.dumps({"state": state}), retain=True
        )

    def publish_state(self, name: str) -> None:
        device = self.devices[name]
        with self._lock:
            payload = json.dumps(device.state)
        self.mqtt.publish(f"{self.base}/{name}", payload)

    def publish_raw(self, name: str, payload: bytes | str) -> None:
        """A payload as a broken firmware would send it (for bad-payload tests)."""
        self.mqtt.publish(f"{self.base}/{name}", payload)

    def set_value(self, name: str, key: str, value: Any) -> None:
        """A change at the device (someone pressed its button, the room warmed up)."""
        with self._lock:
            self.devices[name].state[key] = value
        self.publish_state(name)

    def set_available(self, name: str, available: bool) -> None:
        """The bridge noticed the device left (or came back): availability changes."""
        device = self.devices[name]
        device.available = available
        (self.silent.discard if available else self.silent.add)(name)
        self._publish_availability(device)

    def _on_set(self, topic: str, payload: bytes) -> None:  # paho's thread
        name = topic[len(self.base) + 1 : -len("/set")]
        device = self.devices.get(name)
        if device is None or not device.available:
            return
        try:
            request = json.loads(payload)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            self.refused.append(f"{name}: not a JSON object: {payload[:80]!r}")
            return
        with self._lock:
            for key, value in request.items():
                problem = self._check(device, key, value)
                if problem:
                    self.refused.append(f"{name}.{key}: {problem}")
                    continue
                if key == "state" and value == "TOGGLE":
                    value = "OFF" if device.state.get("state") == "ON" else "ON"
                device.state[key] = value
                self.sets += 1
        self.publish_state(name)

    @staticmethod
    def _check(device: ZigbeeDevice, key: str, value: Any) -> str | None:
        feature = device.feature(key)
        if feature is None or not feature.get("access", 0) & 2:
            return "no converter for it (not settable)"
        if feature["type"] == "binary":
            allowed = [feature.get("value_on"), feature.get("value_off"), feature.get("value_toggle")]
            return None if value in allowed else f"{value!r} is not one of {allowed}"
        if feature["type"] == "numeric":
            if isinstance(value, bool) or not isinstance(value, int):
                return f"{value!r} is not a whole number"
            low, high = feature.get("value_min", -(2**31)), feature.get("value_max", 2**31)
            return None if low <= value <= high else f"{value} is outside {low}..{high}"
        return None

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(self.report_every)
            for name, device in self.devices.items():
                if device.available and name not in self.silent:
                    self.publish_state(name)


# --------------------------------------------------------------------------- Tasmota


class TasmotaPlug:
    """A Tasmota smart plug with energy monitoring."""

    def __init__(self, broker: str, topic: str = "plug-1", tele_period: float = 0.5) -> None:
        self.broker = broker
        self.topic = topic
        self.tele_period = tele_period
        self.power = "OFF"
        self.energy = {"Total": 1.234, "Power": 0, "Voltage": 231, "Current": 0.0}
        self.commands: list[str] = []
        self.refused: list[str] = []
        self._task: asyncio.Task[None] | None = None
        self.mqtt = self._client()

    def _client(self) -> SimClient:
        client = SimClient(self.broker, f"DVES_{self.topic}", (f"tele/{self.topic}/LWT", b"Offline"))
        client.handle(f"cmnd/{self.topic}/+", self._on_command)
        client.on_connected = lambda: self._announce(client)
        return client

    def _announce(self, client: SimClient) -> None:
        client.publish(f"tele/{self.topic}/LWT", "Online", retain=True)
        for topic, config in self.homeassistant_configs():  # SetOption19 1
            client.publish(topic, json.dumps(config), retain=True)

    def homeassistant_configs(self) -> list[tuple[str, dict[str, Any]]]:
        """Home Assistant discovery as Tasmota publishes it (abbreviated keys, ``~`` = its topic)."""
        mac = "A4CF12" + format(zlib.crc32(self.topic.encode()) % 0xFFFFFF, "06X")
        device = {"ids": [mac], "name": self.topic, "mdl": "Sonoff S31", "mf": "Tasmota"}
        common = {
            "~": self.topic,
            "avty_t": "tele/~/LWT",
            "pl_avail": "Online",
            "pl_not_avail": "Offline",
            "dev": device,
        }
        relay = {
            **common,
            "name": "power",
            "uniq_id": f"{mac}_RL_1",
            "stat_t": "tele/~/STATE",
            "val_tpl": "{{value_json.POWER}}",
            "cmd_t": "cmnd/~/POWER",
            "pl_on": "ON",
            "pl_off": "OFF",
        }
        watts = {
            **common,
            "name": "watts",
            "uniq_id": f"{mac}_ENERGY_Power",
            "stat_t": "tele/~/SENSOR",
            "val_tpl": "{{value_json['ENERGY']['Power']}}",
            "unit_of_meas": "W",
            "dev_cla": "power",
        }
        return [
            (f"homeassistant/switch/{mac}_RL_1/config", relay),
            (f"homeassistant/sensor/{mac}_ENERGY_Power/config", watts),
        ]

    async def start(self) -> TasmotaPlug:
        await self.mqtt.connect()
        self._task = asyncio.create_task(self._tele())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.mqtt.close()

    async def lose_power(self) -> None:
        """Unplugged: no goodbye; the broker publishes the plug's last will (``Offline``)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await self.mqtt.drop()

    async def power_on(self) -> None:
        self.mqtt = self._client()
        await self.start()

    def _state(self) -> dict[str, Any]:
        return {"Time": time.strftime("%Y-%m-%dT%H:%M:%S"), "Uptime": "0T00:01:00", "POWER": self.power}

    def _sensor(self) -> dict[str, Any]:
        return {"Time": time.strftime("%Y-%m-%dT%H:%M:%S"), "ENERGY": dict(self.energy)}

    def publish_tele(self) -> None:
        self.mqtt.publish(f"tele/{self.topic}/STATE", json.dumps(self._state()))
        self.mqtt.publish(f"tele/{self.topic}/SENSOR", json.dumps(self._sensor()))

    def set_load(self, watts: float) -> None:
        """Something plugged in draws ``watts`` (reported with the next telemetry)."""
        self.energy["Power"] = watts
        self.publish_tele()

    def _on_command(self, topic: str, payload: bytes) -> None:  # paho's thread
        command = topic.rsplit("/", 1)[1].upper()
        text = payload.decode("utf-8", errors="replace").strip()
        self.commands.append(f"{command} {text}")
        if command != "POWER":
            self.mqtt.publish(f"stat/{self.topic}/RESULT", json.dumps({"Command": "Unknown"}))
            self.refused.append(f"{command} {text}")
            return
        word = text.upper()
        if word in ("ON", "1", "TRUE"):
            self.power = "ON"
        elif word in ("OFF", "0", "FALSE"):
            self.power = "OFF"
        elif word in ("TOGGLE", "2"):
            self.power = "OFF" if self.power == "ON" else "ON"
        elif word != "":
            self.refused.append(f"POWER {text}")
        self.mqtt.publish(f"stat/{self.topic}/RESULT", json.dumps({"POWER": self.power}))
        self.mqtt.publish(f"stat/{self.topic}/POWER", self.power)

    async def _tele(self) -> None:
        while True:
            self.publish_tele()
            await asyncio.sleep(self.tele_period)


# --------------------------------------------------------------------------- conformance


class CustomDevice:
    """A device with its own firmware: one JSON document on ``<id>/status`` (temperature in
    tenths, a setpoint, a mode), a relay on ``<id>/relay`` (``on``/``off``), a counter as a bare
    number on ``<id>/count``, a blob as raw bytes on ``<id>/blob``; commands on ``<id>/cmd/<key>``.
    """

    def __init__(self, broker: str, device_id: str = "dev-7a") -> None:
        self.broker = broker
        self.id = device_id
        self.status: dict[str, Any] = {"sensors": {"t_x10": 215}, "sp": 21.0, "mode": "eco"}
        self.relay = "off"
        self.count = 3
        self.blob = b"\x00\x01\xfe"
        self.failing: set[str] = set()
        self.refused: list[str] = []
        self.report_every = 0.2
        self._task: asyncio.Task[None] | None = None
        self.mqtt = self._client()

    def _client(self) -> SimClient:
        client = SimClient(self.broker, f"custom-{self.id}", (f"{self.id}/online", b"0"))
        client.handle(f"{self.id}/cmd/+", self._on_command)
        client.on_connected = lambda: client.publish(f"{self.id}/online", "1", retain=True)
        return client

    async def start(self) -> None:
        await self.mqtt.connect()
        self._task = asyncio.create_task(self._report())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.mqtt.close()

    async def pause(self) -> None:
        """Stop reporting, still connected (a hung firmware that keeps its TCP connection)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def resume(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._report())

    async def vanish(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await self.mqtt.drop()

    def publish_all(self) -> None:
        """Everything, as the firmware reports it; a failing point's value is replaced by its
        fault (a document with "error" first, the bare fault text, a core dump for the blob)."""
        # The firmware re-asserts its availability (retained) with each report, as some do.
        self.mqtt.publish(f"{self.id}/online", "1", retain=True)
        failing = self.failing
        status: dict[str, Any] = (
            {"error": "sensor fault"} if failing & {"temperature", "setpoint", "mode"} else {}
        )
        status["sensors"] = {"fault": True} if "temperature" in failing else self.status["sensors"]
        status.update({k: v for k, v in self.status.items() if k != "sensors"})
        for point, key in (("setpoint", "sp"), ("mode", "mode")):
            if point in failing:
                del status[key]
        self.mqtt.publish(f"{self.id}/status", json.dumps(status))
        self.mqtt.publish(f"{self.id}/relay", "sensor fault" if "relay" in failing else self.relay)
        self.mqtt.publish(f"{self.id}/count", "sensor fault" if "counter" in failing else str(self.count))
        self.mqtt.publish(
            f"{self.id}/blob", b"sensor fault: core dump " * 400 if "blob" in failing else self.blob
        )

    def _on_command(self, topic: str, payload: bytes) -> None:  # paho's thread
        key = topic.rsplit("/", 1)[1]
        text = payload.decode("utf-8", errors="replace")
        try:
            if key == "sp":
                if not text.replace(".", "", 1).lstrip("-").isdigit():
                    raise ValueError(f"not a decimal number: {text!r}")
                self.status["sp"] = float(text)
            elif key == "mode":
                request = json.loads(text)
                if not isinstance(request, dict) or not isinstance(request.get("mode"), str):
                    raise ValueError(f'not {{"mode": "..."}}: {text!r}')
                self.status["mode"] = request["mode"]
            elif key == "relay":
                if text not in ("on", "off"):
                    raise ValueError(f"not on or off: {text!r}")
                self.relay = text
            elif key == "count":
                if not text.lstrip("-").isdigit():
                    raise ValueError(f"not an integer: {text!r}")
                self.count = int(text)
            elif key == "blob":
                self.blob = payload
            else:
                raise ValueError(f"unknown command {key}")
        except ValueError as exc:
            self.refused.append(str(exc))
            return
        self.publish_all()

    async def _report(self) -> None:
        while True:
            self.publish_all()
            await asyncio.sleep(self.report_every)


class MqttConformanceSimulator(DeviceSimulator):
    protocol: ClassVar[str] = "mqtt"
    point_error: ClassVar[str | None] = "sensor fault"
    mapper_settings: ClassVar[dict[str, Any]] = {"stateInterval": 0.2}
    unsupported_types: ClassVar[dict[str, str]] = {}

    def __init__(self, broker: str) -> None:
        self.broker = broker
        self.device = CustomDevice(broker)

    async def start(self) -> None:
        await self.device.start()

    async def stop(self) -> None:
        await self.device.stop()

    def protocol_config(self) -> dict[str, Any]:
        return {
            "broker": self.broker,
            "deviceTopic": self.device.id,
            "availabilityTopic": "{name}/online",
            "payloadAvailable": "1",
            "payloadNotAvailable": "0",
            "staleAfter": 3000,
            "maxPayload": 4096,
        }

    def points(self) -> list[Point]:
        status = "{name}/status"
        return [
            Point(
                "temperature",
                "FLOAT",
                {"stateTopic": status, "path": "/sensors/t_x10", "scale": 0.1},
                21.5,
                changed=22.0,
            ),
            Point(
                "setpoint",
                "DOUBLE",
                {"stateTopic": status, "path": "sp", "commandTopic": "{name}/cmd/sp", "readBackTimeout": 800},
                21.0,
                writable=True,
                changed=23.5,
            ),
            Point(
                "mode",
                "STRING",
                {
                    "stateTopic": status,
                    "path": "mode",
                    "commandTopic": "{name}/cmd/mode",
                    "commandPayload": '{"mode": {json}}',
                    "readBackTimeout": 800,
                },
                "eco",
                writable=True,
                changed="comfort",
            ),
            Point(
                "relay",
                "BOOLEAN",
                {
                    "stateTopic": "{name}/relay",
                    "commandTopic": "{name}/cmd/relay",
                    "payloadOn": "on",
                    "payloadOff": "off",
                    "readBackTimeout": 800,
                },
                False,
                writable=True,
                changed=True,
            ),
            Point(
                "counter",
                "INT",
                {"stateTopic": "{name}/count", "commandTopic": "{name}/cmd/count", "readBackTimeout": 800},
                3,
                writable=True,
                changed=4,
            ),
            Point(
                "blob",
                "BYTES",
                {"stateTopic": "{name}/blob", "commandTopic": "{name}/cmd/blob", "readBackTimeout": 800},
                b"\x00\x01\xfe",
                writable=True,
                changed=b"\x10\x20",
            ),
        ]

    async def device_value(self, point: str) -> Any:
        device = self.device
        return {
            "temperature": lambda: device.status["sensors"]["t_x10"] / 10,
            "setpoint": lambda: float(device.status["sp"]),
            "mode": lambda: device.status["mode"],
            "relay": lambda: device.relay == "on",
            "counter": lambda: device.count,
            "blob": lambda: device.blob,
        }[point]()

    async def set_device_value(self, point: str, value: Any) -> None:
        device = self.device
        if point == "temperature":
            device.status["sensors"] = {"t_x10": round(value * 10)}
        elif point == "setpoint":
            device.status["sp"] = float(value)
        elif point == "mode":
            device.status["mode"] = value
        elif point == "relay":
            device.relay = "on" if value else "off"
        elif point == "counter":
            device.count = int(value)
        elif point == "blob":
            device.blob = bytes(value)
        device.publish_all()

    async def fail_point(self, point: str, failing: bool) -> None:
        (self.device.failing.add if failing else self.device.failing.discard)(point)
        self.device.publish_all()

    async def set_reachable(self, reachable: bool) -> None:
        if reachable:
            self.device.mqtt = self.device._client()
            await self.device.start()
        else:
            await self.device.vanish()

    def bad_configs(self) -> list[BadConfig]:
        return [
            BadConfig({"broker": "http://127.0.0.1:1883"}, "spec.protocol.configData.broker"),
            BadConfig(
                {"stateTopic": "{name}/status", "path": "a..b"},
                "spec.properties[0].visitors.configData.path",
                point="temperature",
            ),
        ]


async def _main() -> None:
    parser = argparse.ArgumentParser(
        description="Simulated MQTT devices: a Zigbee2MQTT bridge and a Tasmota plug."
    )
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--plug-topic", default="plug-1")
    args = parser.parse_args()
    bridge = await Zigbee2MqttBridge(args.broker, report_every=5).start()
    plug = await TasmotaPlug(args.broker, args.plug_topic, tele_period=10).start()
    thermostat = CustomDevice(args.broker, "dev-7a")
    thermostat.report_every = 5
    await thermostat.start()
    print(
        f"on {args.broker}: Zigbee2MQTT bridge with {', '.join(bridge.devices)}; Tasmota plug "
        f"{plug.topic}; custom-firmware thermostat {thermostat.id}",
        flush=True,
    )
    await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())

__all__ = [
    "CustomDevice",
    "MqttConformanceSimulator",
    "SimClient",
    "TasmotaPlug",
    "Zigbee2MqttBridge",
    "ZigbeeDevice",
]
