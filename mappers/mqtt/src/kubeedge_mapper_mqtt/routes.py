"""Where each property of a device lives on the broker: its configData with the preset applied
and the templates filled in (a :class:`Route` per property, a :class:`DeviceRoutes` per device).

Presets fill in what a property leaves out, so a user writes only what differs:

=================  ===================================  ============================================
preset             state (``path``: property name)      command / availability
=================  ===================================  ============================================
``zigbee2mqtt``    ``{base}/{name}`` (base              ``{base}/{name}/set`` ``{"{key}": {json}}``,
                   ``zigbee2mqtt``)                     booleans ``ON``/``OFF``;
                                                        ``{base}/{name}/availability``
``tasmota``        ``tele/{name}/STATE``,               ``cmnd/{name}/{key}`` ``{value}``,
                   ``tele/{name}/SENSOR``,              booleans ``ON``/``OFF``;
                   ``stat/{name}/RESULT``               ``tele/{name}/LWT`` ``Online``/``Offline``
=================  ===================================  ============================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubeedge_mapper_mqtt.config import MqttConfig, MqttVisitor, render
from kubeedge_mapper_mqtt.payloads import Path, key_of, parse_path


@dataclass(frozen=True)
class PresetDefaults:
    state_topics: tuple[str, ...]
    command_topic: str
    command_payload: str
    availability_topic: str
    payload_available: str
    payload_not_available: str
    base: str = ""


PRESETS: dict[str, PresetDefaults] = {
    "zigbee2mqtt": PresetDefaults(
        state_topics=("{base}/{name}",),
        command_topic="{base}/{name}/set",
        command_payload='{"{key}": {json}}',
        availability_topic="{base}/{name}/availability",
        payload_available="online",
        payload_not_available="offline",
        base="zigbee2mqtt",
    ),
    "tasmota": PresetDefaults(
        state_topics=("tele/{name}/STATE", "tele/{name}/SENSOR", "stat/{name}/RESULT"),
        command_topic="cmnd/{name}/{key}",
        command_payload="{value}",
        availability_topic="tele/{name}/LWT",
        payload_available="Online",
        payload_not_available="Offline",
    ),
}


@dataclass(frozen=True)
class Route:
    """One property on the broker."""

    name: str
    kind: str
    """Twin type."""
    state_topics: tuple[str, ...]
    path: Path | None
    path_text: str | None
    command_topic: str | None
    command_payload: str
    fields: dict[str, str]
    """The template values of this property (``{name}``, ``{key}`` ...)."""
    qos: int
    retain: bool
    payload_on: str | None
    payload_off: str | None
    scale: float
    read_back_s: float

    @property
    def skips_missing(self) -> bool:
        """With several state topics, a message without the path is about other properties."""
        return len(self.state_topics) > 1

    def coerce_options(self) -> dict[str, Any]:
        return {"scale": self.scale, "payload_on": self.payload_on, "payload_off": self.payload_off}


@dataclass
class DeviceRoutes:
    """Every property's route, and the device's availability."""

    routes: dict[str, Route] = field(default_factory=dict)
    availability_topic: str | None = None
    payload_available: str = "online"
    payload_not_available: str = "offline"
    problems: dict[str, str] = field(default_factory=dict)
    """Properties that cannot be served, with the reason."""

    def topics(self) -> set[str]:
        found = {t for r in self.routes.values() for t in r.state_topics}
        if self.availability_topic:
            found.add(self.availability_topic)
        return found


def plan_routes(
    config: MqttConfig,
    namespace: str,
    device_name: str,
    properties: list[tuple[str, str, MqttVisitor]],
) -> DeviceRoutes:
    """Apply the preset and the templates to each ``(property, twin type, visitor)``."""
    preset = PRESETS.get(config.preset) if config.preset else None
    base = config.base_topic or (preset.base if preset else "")
    device_fields = {"name": config.device_topic or device_name, "namespace": namespace, "base": base}
    out = DeviceRoutes()
    availability = config.availability_topic or (preset.availability_topic if preset else None)
    if availability:
        out.availability_topic = render(availability, {**device_fields, "property": "", "key": ""})
        explicit = config.model_fields_set
        out.payload_available = (
            preset.payload_available
            if preset and "payload_available" not in explicit and not config.availability_topic
            else config.payload_available
        )
        out.payload_not_available = (
            preset.payload_not_available
            if preset and "payload_not_available" not in explicit and not config.availability_topic
            else config.payload_not_available
        )
    for name, kind, visitor in properties:
        path_text = visitor.path if visitor.path is not None else (name if preset else None)
        path = parse_path(path_text) if path_text is not None else None
        fields = {**device_fields, "property": name, "key": key_of(path, name)}
        states = visitor.state_topics() or list(preset.state_topics if preset else ())
        command = visitor.command_topic or (preset.command_topic if preset else None)
        if not states and not command:
            out.problems[name] = (
                "neither stateTopic nor commandTopic is set, and the device has no preset: "
                "nothing to read or write"
            )
            continue
        payload = visitor.command_payload or (preset.command_payload if preset else "{value}")
        boolean_default = "ON" if preset and kind == "boolean" else None
        out.routes[name] = Route(
            name=name,
            kind=kind,
            state_topics=tuple(render(t, fields) for t in states),
            path=path,
            path_text=path_text,
            command_topic=render(command, fields) if command else None,
            command_payload=payload,
            fields=fields,
            qos=visitor.qos if visitor.qos is not None else config.qos,
            retain=visitor.retain,
            payload_on=visitor.payload_on or boolean_default,
            payload_off=visitor.payload_off or ("OFF" if boolean_default else None),
            scale=visitor.scale,
            read_back_s=visitor.read_back_timeout / 1000,
        )
    return out
