"""``devices.kubeedge.io/v1beta1`` Device and DeviceModel, field for field as KubeEdge defines them.

camelCase on the wire, snake_case in Python. ``configData`` is free-form and kept exactly as given.
The CRD schema (``kubeedge crds``) is generated from these classes, so they are the one source of
truth; attribute docstrings become the schema's descriptions.
"""

from __future__ import annotations

import copy
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from kubeedge.api._base import ApiModel, OpenApiModel

GROUP = "devices.kubeedge.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# The twin key rule of KubeEdge's edge core; a property name outside it could not be reported there.
PROPERTY_NAME_PATTERN = r"^[a-zA-Z0-9\-_.,:/@#]{1,128}$"

PropertyType = Literal["INT", "FLOAT", "DOUBLE", "STRING", "BOOLEAN", "BYTES", "STREAM"]
AccessMode = Literal["ReadWrite", "ReadOnly"]
Cycle = Annotated[int, Field(ge=0, json_schema_extra={"format": "int64"})]
ConfigData = dict[str, Any]
"""Free-form protocol settings, kept as given (``x-kubernetes-preserve-unknown-fields``)."""

_LIST_MAP_BY_NAME: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["name"],
}


def _empty_if_null(value: Any) -> Any:
    """Kubernetes drops a null field before validating, so ``spec: null`` means an empty spec."""
    return {} if value is None else value


# --------------------------------------------------------------------------- metadata


class ObjectMeta(OpenApiModel):
    """The Kubernetes object metadata fields kubeedge reads; every other field is kept as given."""

    name: str = Field(max_length=253)
    """Object name, a DNS-1123 subdomain."""
    namespace: str | None = Field(default=None, max_length=63)
    """Namespace, a DNS-1123 label; ``default`` when absent."""
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None


# --------------------------------------------------------------------------- shared parts


class TwinProperty(ApiModel):
    """A property value with free-form string metadata (timestamp, type)."""

    value: str
    """The value, as a string (see docs/wire.md for how each type is written)."""
    metadata: dict[str, str] | None = None
    """Additional metadata like the time the value was reported."""


class ProtocolConfig(ApiModel):
    """How to reach the device: the protocol's name and its free-form settings."""

    protocol_name: str | None = None
    """Protocol name; the mapper registered under this name serves the device."""
    config_data: ConfigData | None = None
    """Protocol settings (address, port, unit id ...), as the protocol's mapper defines them."""


class VisitorConfig(ApiModel):
    """How to read and write one property on the device."""

    protocol_name: str | None = None
    """Protocol name; must match the device's protocol."""
    config_data: ConfigData | None = None
    """Per-property protocol settings (register, offset, characteristic UUID ...)."""


# --------------------------------------------------------------------------- push methods


class PushMethodHTTP(ApiModel):
    host_name: str | None = None
    port: Annotated[int, Field(json_schema_extra={"format": "int64"})] | None = None
    request_path: str | None = None
    timeout: Annotated[int, Field(json_schema_extra={"format": "int64"})] | None = None


class PushMethodMQTT(ApiModel):
    address: str | None = None
    """Broker address, like ``mqtt://127.0.0.1:1883``."""
    topic: str | None = None
    qos: Annotated[int, Field(ge=0, le=2, json_schema_extra={"format": "int32"})] | None = None
    retained: bool | None = None


class PushMethodOTEL(ApiModel):
    endpoint_url: str | None = Field(default=None, alias="endpointURL")


class Influxdb2ClientConfig(ApiModel):
    url: str | None = None
    org: str | None = None
    bucket: str | None = None


class Influxdb2DataConfig(ApiModel):
    measurement: str | None = None
    tag: dict[str, str] | None = None
    field_key: str | None = None


class DBMethodInfluxdb2(ApiModel):
    influxdb2_client_config: Influxdb2ClientConfig | None = None
    influxdb2_data_config: Influxdb2DataConfig | None = None


class RedisClientConfig(ApiModel):
    addr: str | None = None
    db: int | None = None
    poolsize: int | None = None
    min_idle_conns: int | None = None


class DBMethodRedis(ApiModel):
    redis_client_config: RedisClientConfig | None = None


class TDEngineClientConfig(ApiModel):
    addr: str | None = None
    db_name: str | None = None


class DBMethodTDEngine(ApiModel):
    tdengine_client_config: TDEngineClientConfig | None = Field(default=None, alias="TDEngineClientConfig")


class MySQLClientConfig(ApiModel):
    addr: str | None = None
    """Server address, like ``localhost:3306``."""
    database: str | None = None
    user_name: str | None = None


class DBMethodMySQL(ApiModel):
    mysql_client_config: MySQLClientConfig | None = None


class DBMethodConfig(ApiModel):
    influxdb2: DBMethodInfluxdb2 | None = None
    redis: DBMethodRedis | None = None
    tdengine: DBMethodTDEngine | None = Field(default=None, alias="TDEngine")
    mysql: DBMethodMySQL | None = None


class PushMethod(ApiModel):
    """Where the mapper pushes this property's values besides the twin."""

    http: PushMethodHTTP | None = None
    mqtt: PushMethodMQTT | None = None
    otel: PushMethodOTEL | None = None
    db_method: DBMethodConfig | None = None
    anomaly_detection: ConfigData | None = None
    """Free-form anomaly detection settings (KubeEdge v1.23+)."""


# --------------------------------------------------------------------------- Device


class LocalObjectReference(ApiModel):
    name: str = Field(max_length=253)
    """Name of the referenced object in the same namespace."""


class DeviceProperty(ApiModel):
    """One property of a device instance: its desired value, visitor and cycles."""

    name: str = Field(pattern=PROPERTY_NAME_PATTERN)
    """Property name; unique within the device and present in the device model."""
    desired: TwinProperty | None = None
    """The value the device should have; written to the device by its mapper."""
    visitors: VisitorConfig | None = None
    """How the mapper reads and writes this property."""
    report_cycle: Cycle | None = None
    """How often the mapper reports the value, in milliseconds; 0 means 1000."""
    collect_cycle: Cycle | None = None
    """How often the mapper reads the value from the device, in milliseconds; 0 means 1000."""
    report_to_cloud: bool | None = None
    """Whether the value is reported to the cloud."""
    push_method: PushMethod | None = None


class DeviceMethod(ApiModel):
    """A named operation that writes a set of properties (KubeEdge v1.19+)."""

    name: str
    description: str | None = None
    property_names: list[str] | None = None


class StateReport(ApiModel):
    """Device-level state reporting (KubeEdge v1.23+)."""

    report_to_cloud: bool | None = None
    report_cycle: Cycle | None = None
    """Milliseconds between state reports; 0 means 1000."""


class DeviceSpec(ApiModel):
    device_model_ref: LocalObjectReference | None = None
    """The DeviceModel this device is an instance of."""
    node_name: str | None = Field(default=None, max_length=253)
    """The edge node that serves this device."""
    properties: list[DeviceProperty] | None = Field(default=None, json_schema_extra=_LIST_MAP_BY_NAME)
    """The device's properties; names are unique."""
    protocol: ProtocolConfig | None = None
    """How to connect to the device."""
    methods: list[DeviceMethod] | None = None
    state_report: StateReport | None = None


class Twin(ApiModel):
    """Reported and observed-desired value of one property, as the cloud last heard it."""

    property_name: str | None = None
    reported: TwinProperty | None = None
    observed_desired: TwinProperty | None = None


class DeviceStatus(OpenApiModel):
    """What the edge last reported about the device."""

    twins: list[Twin] | None = None
    state: str | None = None
    """online, offline, ok, unknown or unhealthy."""
    last_online_time: str | None = None
    report_to_cloud: bool | None = None
    report_cycle: Cycle | None = None


class Device(ApiModel):
    """A device instance (``devices.kubeedge.io/v1beta1``, kind Device)."""

    api_version: Literal["devices.kubeedge.io/v1beta1"] = "devices.kubeedge.io/v1beta1"
    kind: Literal["Device"] = "Device"
    metadata: ObjectMeta
    spec: Annotated[DeviceSpec, BeforeValidator(_empty_if_null)] = Field(default_factory=DeviceSpec)
    status: DeviceStatus | None = None

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or "default"

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def key(self) -> str:
        """``namespace/name``, the device id on the edge bus."""
        return f"{self.namespace}/{self.name}"

    @property
    def protocol_name(self) -> str | None:
        return self.spec.protocol.protocol_name if self.spec.protocol else None

    @property
    def model_name(self) -> str | None:
        return self.spec.device_model_ref.name if self.spec.device_model_ref else None


# --------------------------------------------------------------------------- DeviceModel


class ModelProperty(ApiModel):
    """One property of a device model: its type, access mode, range, unit and default visitor."""

    name: str = Field(pattern=PROPERTY_NAME_PATTERN)
    description: str | None = None
    type: PropertyType | None = None
    """INT, FLOAT, DOUBLE, STRING, BOOLEAN, BYTES or STREAM; STRING when absent."""
    access_mode: AccessMode | None = None
    """ReadWrite (the default) or ReadOnly."""
    minimum: str | None = None
    """Smallest allowed value, written as a string as KubeEdge does."""
    maximum: str | None = None
    """Largest allowed value, written as a string as KubeEdge does."""
    unit: str | None = None
    visitors: VisitorConfig | None = None
    """Default visitor for every device of this model (KubeEdge v1.22+)."""


class DeviceModelSpec(ApiModel):
    protocol: str | None = None
    """Protocol of the devices of this model."""
    protocol_config_data: ConfigData | None = None
    """Default protocol settings; a device's own configData keys override them (v1.22+)."""
    properties: list[ModelProperty] | None = Field(default=None, json_schema_extra=_LIST_MAP_BY_NAME)


class DeviceModel(ApiModel):
    """A device model (``devices.kubeedge.io/v1beta1``, kind DeviceModel)."""

    api_version: Literal["devices.kubeedge.io/v1beta1"] = "devices.kubeedge.io/v1beta1"
    kind: Literal["DeviceModel"] = "DeviceModel"
    metadata: ObjectMeta
    spec: Annotated[DeviceModelSpec, BeforeValidator(_empty_if_null)] = Field(default_factory=DeviceModelSpec)

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or "default"

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def property(self, name: str) -> ModelProperty | None:
        for prop in self.spec.properties or []:
            if prop.name == name:
                return prop
        return None


KINDS: dict[str, type[Device] | type[DeviceModel]] = {"Device": Device, "DeviceModel": DeviceModel}


def apply_model_defaults(device: Device, model: DeviceModel) -> Device:
    """The device as its mapper sees it, with the model's defaults merged in as KubeEdge does.

    KubeEdge (v1.22+, ``DMICache.GetOverriddenDevice``): a model property's ``visitors`` replace the
    instance's visitors wholesale, protocolName included, and then the instance's own
    ``configData`` keys are copied back on top (top-level keys only). The protocol's
    ``configData`` is the model's ``protocolConfigData`` with the instance's keys on top.
    The inputs are not changed; the result shares their unchanged parts (treat all as read-only).
    """
    spec = device.spec
    updates: dict[str, Any] = {}
    if model.spec.protocol_config_data:
        protocol = spec.protocol or ProtocolConfig()
        config = copy.deepcopy(model.spec.protocol_config_data)
        config.update(protocol.config_data or {})
        updates["protocol"] = protocol.model_copy(update={"config_data": config})
    properties = []
    changed = False
    for prop in spec.properties or []:
        model_prop = model.property(prop.name)
        if model_prop is None or model_prop.visitors is None:
            properties.append(prop)
            continue
        visitors = model_prop.visitors
        config = copy.deepcopy(visitors.config_data) if visitors.config_data else {}
        if prop.visitors is not None and prop.visitors.config_data:
            config.update(copy.deepcopy(prop.visitors.config_data))
        merged_visitors = visitors.model_copy(update={"config_data": config} if config else {})
        properties.append(prop.model_copy(update={"visitors": merged_visitors}))
        changed = True
    if changed:
        updates["properties"] = properties
    if not updates:
        return device
    # Shallow copies: unchanged parts are shared with the input, which must not be mutated.
    return device.model_copy(update={"spec": spec.model_copy(update=updates)})
