"""MQTT configData: where a device's broker is, and where each property lives on it.

Protocol ``configData`` (one per Device): the broker (``broker`` URL, ``username`` with the
password read from ``passwordFile`` or the environment variable ``passwordEnv``, never written
inline, ``clientId``, ``tls``, ``keepalive``), the device's name on the broker (``deviceTopic``),
its availability topic and payloads, how long it may stay silent (``staleAfter``), the largest
payload accepted (``maxPayload``) and an optional ``preset`` (``zigbee2mqtt``, ``tasmota``) that
fills in the topics of common firmware.

Visitor ``configData`` (one per property): ``stateTopic`` (one or a list), the value's ``path``
in a JSON payload (a JSON pointer ``/a/0/b`` or a dotted path ``a.0.b``; none: the raw payload),
``commandTopic`` and ``commandPayload`` for writes, ``qos``, ``retain``, ``payloadOn`` /
``payloadOff`` for booleans, ``scale`` for numbers, ``readBackTimeout``.

Topics and payload templates take ``{name}`` (the device on the broker), ``{namespace}``,
``{property}``, ``{key}`` (the last segment of ``path``) and ``{base}`` (``baseTopic``); payload
templates take ``{value}`` (the value as text) and ``{json}`` (the value as JSON) too. Other
braces are kept as written, so JSON templates need no escaping: ``{"{key}": {json}}``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

TOPIC_FIELDS = ("name", "namespace", "property", "key", "base")
PAYLOAD_FIELDS = (*TOPIC_FIELDS, "value", "json")
_PLACEHOLDER = re.compile(r"\{([a-zA-Z_]+)\}")
DEFAULT_MAX_PAYLOAD = 64 * 1024
Preset = Literal["zigbee2mqtt", "tasmota"]
INLINE_CREDENTIAL_REFUSED = (
    "password: a password is never written in configData (manifests are stored and shown); put "
    "it in a file (passwordFile) or an environment variable (passwordEnv) of spec.protocol.configData"
)
CONNECTION_KEYS = ("clientId", "username", "password", "keepAlive", "cleanSession")
"""KubeEdge's mqtt-mapper has these in each visitor; here they are the device's (one connection)."""


class _Config(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def check_template(text: str, allowed: tuple[str, ...]) -> str:
    """Refuse a ``{placeholder}`` that is not one of ``allowed`` (a typo would be sent as is)."""
    for match in _PLACEHOLDER.finditer(text):
        if match.group(1) not in allowed:
            raise ValueError(
                f"unknown placeholder {{{match.group(1)}}}; use {', '.join('{' + a + '}' for a in allowed)}"
            )
    return text


def render(template: str, values: dict[str, str]) -> str:
    """Replace the known ``{placeholders}``; every other brace stays as written."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _check_topic(text: str, *, wildcards: bool) -> str:
    if not text:
        raise ValueError("a topic cannot be empty")
    if "\x00" in text:
        raise ValueError("a topic cannot contain NUL")
    if not wildcards and ("+" in text or "#" in text):
        raise ValueError(f"{text!r}: a topic to publish to cannot contain the wildcards + or #")
    return check_template(text, TOPIC_FIELDS)


class TlsConfig(_Config):
    """TLS to the broker (``mqtts://`` URLs use it with the defaults)."""

    ca_file: Path | None = None
    """CA bundle that signed the broker's certificate (default: the system's)."""
    cert_file: Path | None = None
    """Client certificate, for brokers that require one."""
    key_file: Path | None = None
    insecure: bool = False
    """Accept any certificate and host name (testing only)."""

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("certFile and keyFile go together")
        return self


class MqttConfig(_Config):
    """A device's ``spec.protocol.configData``."""

    broker: str = "mqtt://127.0.0.1:1883"
    """``mqtt://host[:port]`` or ``mqtts://host[:port]`` (TLS); may differ from the edge's bus."""
    username: str | None = None
    password_file: Path | None = None
    """A file holding the password (a mounted Secret); read at each connection, never logged."""
    password_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The environment variable holding the password; read at each connection, never logged."""
    client_id: str | None = Field(default=None, min_length=1, max_length=128)
    """MQTT client id (default: generated). Devices with the same broker, credentials and client
    id share one connection."""
    tls: TlsConfig | bool | None = None
    """true, or ``{caFile, certFile, keyFile, insecure}``; an ``mqtts://`` broker implies true."""
    keepalive: int = Field(default=60, ge=5, le=65535)
    """Seconds between keep-alive pings: how soon a dead broker connection is noticed."""
    preset: Preset | None = None
    """Topics of common firmware: ``zigbee2mqtt`` or ``tasmota`` (see the README)."""
    base_topic: str | None = None
    """``{base}`` in templates; zigbee2mqtt's base topic (default ``zigbee2mqtt``)."""
    device_topic: str | None = Field(default=None, min_length=1)
    """``{name}`` in templates: the device's name on the broker (Zigbee2MQTT's friendly name,
    Tasmota's topic). Default: the Device's ``metadata.name``."""
    availability_topic: str | None = None
    """Where the device (or its bridge) says whether it is online; retained messages count."""
    payload_available: str = "online"
    payload_not_available: str = "offline"
    """Availability payloads, compared without case; a JSON ``{"state": ...}`` payload is
    compared by its ``state`` (Zigbee2MQTT's form)."""
    stale_after: int | None = Field(default=None, ge=0)
    """Milliseconds without a message from the device before it is offline. Default: the largest
    ``collectCycle`` set on its properties (none set: no limit); 0: no limit."""
    qos: Literal[0, 1, 2] = 0
    """QoS of subscriptions and commands (a property's ``qos`` overrides it)."""
    max_payload: int = Field(default=DEFAULT_MAX_PAYLOAD, ge=1, le=256 * 1024 * 1024)
    """Bytes; a larger payload is refused as a bad payload of the properties it is for."""

    @model_validator(mode="before")
    @classmethod
    def _kubeedge_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "password" in data:
            raise ValueError(INLINE_CREDENTIAL_REFUSED)
        if "ip" in data and "broker" not in data:
            # KubeEdge's mqtt-mapper: {ip, port}
            data = dict(data)
            ip, port = data.pop("ip"), data.pop("port", 1883)
            data["broker"] = f"mqtt://{ip}:{port}"
        return data

    @field_validator("broker")
    @classmethod
    def _broker(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise ValueError(f"{value!r} is not mqtt://host[:port] or mqtts://host[:port]")
        if parts.username or parts.password:
            raise ValueError("credentials do not go in the URL: use username and passwordFile/passwordEnv")
        try:
            parts.port  # noqa: B018 - raises on a port out of range
        except ValueError as exc:
            raise ValueError(f"{value!r}: {exc}") from None
        return value

    @field_validator("availability_topic", "base_topic", "device_topic")
    @classmethod
    def _topics(cls, value: str | None) -> str | None:
        return None if value is None else _check_topic(value, wildcards=False)

    @model_validator(mode="after")
    def _credentials(self) -> MqttConfig:
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("passwordFile and passwordEnv: give one")
        if (self.password_file is not None or self.password_env is not None) and self.username is None:
            raise ValueError("a password needs a username")
        return self

    @property
    def host(self) -> str:
        return urlsplit(self.broker).hostname or ""

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.broker).scheme in ("mqtts", "ssl") or bool(self.tls)

    @property
    def port(self) -> int:
        return urlsplit(self.broker).port or (8883 if self.uses_tls else 1883)

    def link(self) -> tuple[Any, ...]:
        """What identifies one broker connection: devices with the same link share it. (Where the
        password comes from is part of it, never the password.)"""
        tls = self.tls.model_dump_json() if isinstance(self.tls, TlsConfig) else bool(self.uses_tls)
        return (
            self.host,
            self.port,
            tls,
            self.username,
            str(self.password_file),
            self.password_env,
            self.client_id,
            self.keepalive,
        )


class MqttVisitor(_Config):
    """A property's ``visitors.configData``."""

    state_topic: str | list[str] | None = None
    """Where the device publishes the value (with several, a message without ``path`` is not
    about this property and is skipped). Default from the preset."""
    path: str | None = None
    """Where the value is in a JSON payload: ``/a/0/b`` (JSON pointer) or ``a.0.b`` (dotted);
    none: the whole payload as text (bytes for a BYTES property). Presets default it to the
    property name."""
    command_topic: str | None = None
    """Where a desired value is published (none: not writable over MQTT). Default from the preset."""
    command_payload: str | None = None
    """Template of a command (default ``{value}``, or the preset's)."""
    qos: Literal[0, 1, 2] | None = None
    retain: bool = False
    """Publish commands retained (a device that connects later still gets the last one)."""
    payload_on: str | None = None
    payload_off: str | None = None
    """A boolean's payloads, read (without case) and written (default: true/false; ON/OFF with a preset)."""
    scale: float = Field(default=1.0, allow_inf_nan=False)
    """Numbers: reported = payload value × scale; written = value ÷ scale."""
    read_back_timeout: int = Field(default=2000, ge=1, le=600_000)
    """Milliseconds to wait, after a command, for the device to publish the property's state."""

    @model_validator(mode="before")
    @classmethod
    def _kubeedge_keys(cls, data: Any) -> Any:
        """KubeEdge's names (``topic``, ``writeTopic``, ``jsonPath`` ``$.a.b``) are accepted."""
        if not isinstance(data, dict):
            return data
        moved = [k for k in CONNECTION_KEYS if k in data]
        if moved:
            raise ValueError(
                f"{', '.join(moved)}: connection settings belong to the device "
                "(spec.protocol.configData: one connection per broker)"
                + ("; and " + INLINE_CREDENTIAL_REFUSED if "password" in moved else "")
            )
        data = dict(data)
        for old, new in (("topic", "stateTopic"), ("writeTopic", "commandTopic")):
            if old in data and new not in data:
                data[new] = data.pop(old)
        json_path = data.get("jsonPath")
        if "path" not in data and isinstance(json_path, str):
            if json_path == "$" or not json_path.startswith("$."):
                raise ValueError(f"jsonPath {json_path!r}: only $.key.key... is understood; or use path")
            data["path"] = re.sub(r"\[(\d+)\]", r".\1", json_path[2:])  # $.a[0].b -> a.0.b
            del data["jsonPath"]
        return data

    @field_validator("state_topic")
    @classmethod
    def _state_topic(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value:
                raise ValueError("give at least one topic")
            return [_check_topic(v, wildcards=True) for v in value]
        return None if value is None else _check_topic(value, wildcards=True)

    @field_validator("command_topic")
    @classmethod
    def _command_topic(cls, value: str | None) -> str | None:
        return None if value is None else _check_topic(value, wildcards=False)

    @field_validator("command_payload")
    @classmethod
    def _command_payload(cls, value: str | None) -> str | None:
        return None if value is None else check_template(value, PAYLOAD_FIELDS)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from kubeedge_mapper_mqtt.payloads import parse_path

        parse_path(value)  # raises ValueError with the reason
        return value

    @field_validator("scale")
    @classmethod
    def _scale(cls, value: float) -> float:
        if value == 0:
            raise ValueError("scale cannot be 0")
        return value

    def state_topics(self) -> list[str]:
        if self.state_topic is None:
            return []
        return [self.state_topic] if isinstance(self.state_topic, str) else list(self.state_topic)
