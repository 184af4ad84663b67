"""What is on a broker, as manifests: Zigbee2MQTT's ``bridge/devices`` and Home Assistant's MQTT
discovery messages (``homeassistant/<component>/[<node>/]<object>/config``), read for a few seconds.

* A Zigbee2MQTT device becomes a Device with the ``zigbee2mqtt`` preset; its model (vendor and
  model number) gets a property per feature it exposes: binary → BOOLEAN, numeric → INT when
  its range or step is whole, else FLOAT, enum and text → STRING; settable ones ReadWrite.
* Home Assistant entities are grouped by their device (``device.identifiers``) and become
  properties with their topics written out (state topic, ``value_json.a.b`` as ``path``, command
  topic, on/off payloads, availability). Entities of a device Zigbee2MQTT already listed are
  left out (Zigbee2MQTT publishes both).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kubeedge import Discoverer, FoundDevice, FoundModel, FoundProperty, manifest_name
from kubeedge_mapper_mqtt.broker import BrokerLink, Message
from kubeedge_mapper_mqtt.config import MqttConfig

# Home Assistant's abbreviations of discovery keys (the ones that matter here), as Tasmota uses them.
ABBREVIATIONS = {
    "avty": "availability",
    "avty_t": "availability_topic",
    "pl_avail": "payload_available",
    "pl_not_avail": "payload_not_available",
    "stat_t": "state_topic",
    "val_tpl": "value_template",
    "cmd_t": "command_topic",
    "cmd_tpl": "command_template",
    "pl_on": "payload_on",
    "pl_off": "payload_off",
    "stat_on": "state_on",
    "stat_off": "state_off",
    "unit_of_meas": "unit_of_measurement",
    "uniq_id": "unique_id",
    "obj_id": "object_id",
    "dev": "device",
    "ids": "identifiers",
    "mdl": "model",
    "mf": "manufacturer",
    "dev_cla": "device_class",
    "stat_cla": "state_class",
    "min": "min",
    "max": "max",
    "t": "topic",
}
_VALUE_JSON = re.compile(
    r"^\{\{\s*value_json((?:\.[A-Za-z_][A-Za-z0-9_]*|\[['\"][^'\"]+['\"]\]|\[\d+\])+)\s*(?:\|[^}]*)?\}\}$"
)
_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[['\"]([^'\"]+)['\"]\]|\[(\d+)\]")
_PLAIN_VALUE = re.compile(r"^\{\{\s*value\s*\}\}$")


class MqttDiscoveryOptions(BaseModel):
    """``kubeedge mapper discover mqtt -O key=value``."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    broker: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    tls: bool = False
    base_topic: str = "zigbee2mqtt"
    """Zigbee2MQTT's base topic."""
    discovery_prefix: str = "homeassistant"
    """Home Assistant's discovery prefix."""
    sources: Literal["all", "zigbee2mqtt", "homeassistant"] = "all"
    qos: Literal[0, 1, 2] = Field(default=0)

    def connection(self) -> MqttConfig:
        """The connection settings as a Device would give them (written into its configData)."""
        data: dict[str, Any] = {"broker": self.broker}
        for key in ("username", "password_file", "password_env"):
            value = getattr(self, key)
            if value is not None:
                data[to_camel(key)] = str(value)
        if self.tls:
            data["tls"] = True
        return MqttConfig.model_validate(data)


class MqttDiscoverer(Discoverer[MqttDiscoveryOptions]):
    protocol: ClassVar[str] = "mqtt"
    options_model: ClassVar[type[BaseModel]] = MqttDiscoveryOptions
    default_seconds: ClassVar[float] = 3.0

    async def discover(self, options: MqttDiscoveryOptions, seconds: float) -> list[FoundDevice]:
        config = options.connection()
        link = BrokerLink(config)
        await link.open(min(10.0, max(seconds, 2.0)))
        bridge: list[Any] | None = None
        entities: dict[str, dict[str, Any]] = {}
        bridge_topic = f"{options.base_topic}/bridge/devices"

        def on_bridge(message: Message) -> None:
            nonlocal bridge
            try:
                document = orjson.loads(message.payload)
            except orjson.JSONDecodeError:
                return
            if isinstance(document, list):
                bridge = document

        def on_config(message: Message) -> None:
            if not message.payload:
                entities.pop(message.topic, None)  # an entity removed
                return
            try:
                document = orjson.loads(message.payload)
            except orjson.JSONDecodeError:
                return
            if isinstance(document, dict):
                entities[message.topic] = _expand(document)

        try:
            acks = []
            if options.sources in ("all", "zigbee2mqtt"):
                acks.append(link.subscribe_filter(bridge_topic, on_bridge, options.qos))
            if options.sources in ("all", "homeassistant"):
                for pattern in ("+/+/config", "+/+/+/config"):
                    acks.append(
                        link.subscribe_filter(f"{options.discovery_prefix}/{pattern}", on_config, options.qos)
                    )
            started = asyncio.get_running_loop().time()
            await asyncio.gather(*acks)
            await link.sync(max(seconds, 5.0))  # the retained configs are in
            await asyncio.sleep(max(0.0, seconds - (asyncio.get_running_loop().time() - started)))
        finally:
            await link.close()
        connection = config.model_dump(by_alias=True, exclude_defaults=True, mode="json")
        found = _from_bridge(bridge or [], options.base_topic, connection, bridge_topic)
        known = {d.source.rsplit("#", 1)[-1] for d in found}
        found += _from_homeassistant(entities, connection, known)
        return found


def _expand(config: dict[str, Any]) -> dict[str, Any]:
    """Home Assistant's abbreviated keys written out, and ``~`` (the base topic) substituted."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = ABBREVIATIONS.get(key, key)
        if isinstance(value, dict):
            value = _expand(value)
        elif isinstance(value, list):
            value = [_expand(v) if isinstance(v, dict) else v for v in value]
        out[name] = value
    base = out.get("~")
    if isinstance(base, str):
        for key, value in list(out.items()):
            if key.endswith("topic") and isinstance(value, str):
                out[key] = value.replace("~", base)
    return out


# --------------------------------------------------------------------------- Zigbee2MQTT


def _features(exposes: list[Any]) -> list[dict[str, Any]]:
    out = []
    for expose in exposes:
        if not isinstance(expose, dict):
            continue
        if "features" in expose and isinstance(expose["features"], list):
            out += _features(expose["features"])
        elif isinstance(expose.get("property"), str):
            out.append(expose)
    return out


def _number_type(feature: dict[str, Any]) -> str:
    whole = [feature.get(k) for k in ("value_min", "value_max") if k in feature]
    step = feature.get("value_step")
    if (whole and all(isinstance(v, int) for v in whole) and len(whole) == 2) or isinstance(step, int):
        return "INT"
    return "FLOAT"


def _bridge_property(feature: dict[str, Any]) -> FoundProperty | None:
    kind = feature.get("type")
    name = feature["property"]
    visitor: dict[str, Any] = {}
    minimum = maximum = None
    if kind == "binary":
        prop_type = "BOOLEAN"
        on, off = feature.get("value_on"), feature.get("value_off")
        if isinstance(on, str) and isinstance(off, str) and (on, off) != ("ON", "OFF"):
            visitor = {"payloadOn": on, "payloadOff": off}
    elif kind == "numeric":
        prop_type = _number_type(feature)
        if "value_min" in feature:
            minimum = str(feature["value_min"])
        if "value_max" in feature:
            maximum = str(feature["value_max"])
    elif kind in ("enum", "text"):
        prop_type = "STRING"
    else:
        return None  # composite (color) and list values have no twin type
    access = feature.get("access", 1)
    return FoundProperty(
        name=name,
        type=prop_type,
        visitor=visitor,
        writable=bool(isinstance(access, int) and access & 2),
        unit=feature.get("unit") if isinstance(feature.get("unit"), str) else None,
        minimum=minimum,
        maximum=maximum,
        description=feature.get("description") if isinstance(feature.get("description"), str) else None,
    )


def _from_bridge(devices: list[Any], base: str, connection: dict[str, Any], topic: str) -> list[FoundDevice]:
    found = []
    for device in devices:
        if not isinstance(device, dict) or device.get("type") == "Coordinator":
            continue
        definition = device.get("definition")
        friendly = device.get("friendly_name")
        if not isinstance(definition, dict) or not isinstance(friendly, str):
            continue  # unsupported or still interviewing: nothing to map yet
        properties = []
        seen = set()
        for feature in _features(definition.get("exposes") or []):
            prop = _bridge_property(feature)
            if prop is not None and prop.name not in seen:
                seen.add(prop.name)
                properties.append(prop)
        if not properties:
            continue
        model_config: dict[str, Any] = {"preset": "zigbee2mqtt"}
        if base != "zigbee2mqtt":
            model_config["baseTopic"] = base
        vendor, model = str(definition.get("vendor", "")), str(definition.get("model", "device"))
        device_config = dict(connection)
        if manifest_name(friendly) != friendly:
            device_config["deviceTopic"] = friendly  # the friendly name is not a valid object name
        found.append(
            FoundDevice(
                name=friendly,
                model=FoundModel(
                    name=f"{vendor}-{model}" if vendor else model,
                    properties=tuple(properties),
                    protocol_config=model_config,
                    description=str(definition.get("description") or "") or None,
                ),
                protocol_config=device_config,
                source=f"{topic}#{device.get('ieee_address', friendly)}",
            )
        )
    return found


# --------------------------------------------------------------------------- Home Assistant


def _path(template: Any) -> str | None:
    """``{{ value_json.a.b }}`` / ``{{ value_json['a'][0] }}`` as a dotted path; None otherwise."""
    if not isinstance(template, str):
        return None
    match = _VALUE_JSON.match(template.strip())
    if match is None:
        return None
    parts = [a or b or c for a, b, c in _SEGMENT.findall(match.group(1))]
    if any("." in p for p in parts):
        return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)
    return ".".join(parts)


def _entity_property(config: dict[str, Any], component: str, taken: set[str]) -> FoundProperty | None:
    state_topic = config.get("state_topic")
    command_topic = config.get("command_topic")
    if not isinstance(state_topic, str) and not isinstance(command_topic, str):
        return None
    visitor: dict[str, Any] = {}
    if isinstance(state_topic, str):
        visitor["stateTopic"] = state_topic
        path = _path(config.get("value_template"))
        if path is not None:
            visitor["path"] = path
    if isinstance(command_topic, str):
        visitor["commandTopic"] = command_topic
        template = config.get("command_template")
        if isinstance(template, str):
            converted = re.sub(r"\{\{\s*value\s*\}\}", "{json}", template)
            if "{{" not in converted and "{%" not in converted:
                visitor["commandPayload"] = converted
    if component in ("switch", "binary_sensor", "light", "fan", "lock"):
        prop_type = "BOOLEAN"
        on = config.get("payload_on", "ON" if component != "binary_sensor" else None)
        off = config.get("payload_off", "OFF" if component != "binary_sensor" else None)
        if isinstance(on, str) and isinstance(off, str):
            visitor["payloadOn"], visitor["payloadOff"] = on, off
    elif component == "number":
        prop_type = "FLOAT"
    elif component == "sensor":
        numeric = "unit_of_measurement" in config or "state_class" in config
        prop_type = "FLOAT" if numeric else "STRING"
    elif component in ("select", "text"):
        prop_type = "STRING"
    else:
        return None
    base = manifest_name(str(config.get("object_id") or config.get("name") or component), component)
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    unit = config.get("unit_of_measurement")
    return FoundProperty(
        name=name,
        type=prop_type,
        visitor=visitor,
        writable=isinstance(command_topic, str),
        unit=unit if isinstance(unit, str) else None,
        minimum=str(config["min"]) if component == "number" and "min" in config else None,
        maximum=str(config["max"]) if component == "number" and "max" in config else None,
    )


def _availability(config: dict[str, Any]) -> dict[str, Any]:
    topic = config.get("availability_topic")
    if topic is None and isinstance(config.get("availability"), list) and config["availability"]:
        first = config["availability"][0]
        topic = first.get("topic") if isinstance(first, dict) else None
    if not isinstance(topic, str):
        return {}
    out: dict[str, Any] = {"availabilityTopic": topic}
    for key, camel in (
        ("payload_available", "payloadAvailable"),
        ("payload_not_available", "payloadNotAvailable"),
    ):
        if isinstance(config.get(key), str):
            out[camel] = config[key]
    return out


def _from_homeassistant(
    entities: dict[str, dict[str, Any]], connection: dict[str, Any], known: set[str]
) -> list[FoundDevice]:
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    devices: dict[str, dict[str, Any]] = {}
    for topic, config in sorted(entities.items()):
        device = config.get("device") if isinstance(config.get("device"), dict) else {}
        identifiers = device.get("identifiers")
        ident = identifiers[0] if isinstance(identifiers, list) and identifiers else identifiers
        key = str(ident or config.get("unique_id") or topic)
        if any(k and k in key for k in known):
            continue  # Zigbee2MQTT listed it already
        component = topic.split("/")[1]
        groups.setdefault(key, []).append((component, config))
        devices.setdefault(key, device)
    found = []
    for key, members in groups.items():
        taken: set[str] = set()
        properties = []
        availability: dict[str, Any] = {}
        for component, config in members:
            prop = _entity_property(config, component, taken)
            if prop is not None:
                properties.append(prop)
                availability = availability or _availability(config)
        if not properties:
            continue
        device = devices[key]
        name = device.get("name") or key
        vendor, model = device.get("manufacturer"), device.get("model")
        model_name = "-".join(str(p) for p in (vendor, model) if p) or f"{name}-model"
        found.append(
            FoundDevice(
                name=str(name),
                model=FoundModel(name=model_name, properties=tuple(properties)),
                protocol_config={**connection, **availability},
                source=f"homeassistant#{key}",
            )
        )
    return found
