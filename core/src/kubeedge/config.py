"""The edge configuration file (``edge.yaml``), validated once at start-up.

Errors name the file and the key path (``edge.yaml: bus.url: ...``). Every key has a default,
so an empty file (or none) runs an edge on the embedded broker.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from kubeedge.api.manifests import load_yaml, text_of
from kubeedge.errors import ConfigError


class _Config(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", use_attribute_docstrings=True
    )


class PluginConfig(BaseModel):
    """One plugin's entry: ``enabled`` plus the plugin's own settings, checked by the plugin."""

    model_config = ConfigDict(extra="allow")

    enabled: bool = True

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def default_node_name() -> str:
    """The host name made into a DNS-1123 label, as a Kubernetes node name would be."""
    name = re.sub(r"[^a-z0-9-]", "-", socket.gethostname().lower()).strip("-")
    return name[:63] or "edge"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "kubeedge"


class BusConfig(_Config):
    """The edge MQTT bus."""

    url: str = "embedded"
    """``embedded`` (an in-process broker on loopback) or ``mqtt://host:port`` / ``mqtts://``."""
    listen: str = "127.0.0.1:1883"
    """Where the embedded broker listens (``host:port``; port 0 picks a free one)."""
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    """CA bundle for ``mqtts://``; the system's trust store when absent."""
    cert_file: Path | None = None
    key_file: Path | None = None
    max_payload: int = Field(default=1024 * 1024, gt=0)
    """Largest message (bytes) the edge accepts; larger ones get an error result (413)."""
    max_topic_length: int = Field(default=1024, gt=0, le=65_535 - len("/result"))
    """Longest topic (bytes) the edge answers on: longer ones get an error on
    ``$ke/edge/{node}/errors`` (an answer goes to the topic plus ``/result``, which must fit MQTT's
    65,535 bytes; KubeEdge's longest legal device topic is about 360 bytes)."""
    max_message_rate: float = Field(default=2000, gt=0)
    """Messages per second the edge takes on one device's topics (a burst of twice as many is
    let through); messages for devices it does not serve share one such budget, and node
    topics another. Over it, messages are dropped and counted (one 429 answer per second)."""

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, listen: str, info: ValidationInfo) -> str:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            raise ValueError("must be host:port, like 127.0.0.1:1883")
        # `url` is validated first (it is declared first); with an external broker `listen` is unused
        if info.data.get("url", "embedded") == "embedded" and not _is_loopback(host):
            raise ValueError(
                f"{host} is not a loopback address: the embedded broker has no authentication, so it "
                "listens on loopback only (127.0.0.1 or another 127.x.x.x address, or localhost); "
                "for mappers or devices on other hosts use an external broker "
                "(bus.url: mqtt://HOST:PORT, with username/password or TLS)"
            )
        return listen

    @property
    def listen_address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host, int(port)

    def client_url(self) -> str:
        """The URL a client uses: the embedded broker's listen address when embedded."""
        if self.url == "embedded":
            host, port = self.listen_address
            return f"mqtt://{host}:{port}"
        return self.url

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        if url != "embedded" and not re.match(r"^(mqtt|mqtts|tcp|ssl)://[^/:]+(:\d+)?/?$", url):
            raise ValueError("must be 'embedded' or mqtt://host[:port] (mqtts:// for TLS)")
        return url


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.IPv4Address(host).is_loopback
    except ValueError:
        return False


class CloudQueueConfig(_Config):
    """The edge's store-and-forward outbox of reports for the cloud (``cloud.queue``)."""

    max_bytes: int = Field(default=64 * 1024 * 1024, ge=4096)
    """Bytes the outbox may hold; past it the oldest entries are dropped (and counted)."""
    database: str = "outbox.db"
    """File name of the outbox inside the edge's data folder."""


def _hub_url(url: str) -> str:
    """A cloud hub's address checked: ``wss://host:port``, ``ws://`` only to loopback."""
    match = re.match(r"^(wss|ws)://([^/:]+|\[[0-9a-fA-F:]+\]):(\d+)/?$", url)
    if not match or int(match.group(3)) > 65535:
        raise ValueError("must be wss://host:port (the cloud hub's address)")
    if match.group(1) == "ws" and not _is_loopback(match.group(2)):
        raise ValueError(
            f"ws:// (no TLS) only to a loopback address, not {match.group(2)}: the node token "
            "would travel in clear; use wss://"
        )
    return url.rstrip("/")


class CloudConfig(_Config):
    """The cloud this edge takes its devices from and reports to (the ``edgehub`` module)."""

    url: str = ""
    """The cloud hub, ``wss://host:port`` (``ws://`` only to a loopback address); or ``urls``."""
    urls: list[Annotated[str, AfterValidator(_hub_url)]] = Field(default_factory=list)
    """More hubs (replicas of one cloud, when no load balancer stands before them), tried after
    ``url`` in order: a failed attempt or a lost connection moves to the next one."""
    token: str | None = None
    """The node token (``kubeedge token create NODE``); or ``tokenFile``."""
    token_file: Path | None = None
    """A file holding the node token, read again on every connection attempt (so it can be rotated)."""
    ca_file: Path | None = None
    """CA bundle the hub's certificate is checked against; the system's trust store when absent."""
    queue: CloudQueueConfig = Field(default_factory=CloudQueueConfig)
    batch_delay_ms: int = Field(default=100, ge=0, le=60_000)
    """How long reports gather before one is sent (changes in that time are coalesced)."""
    max_report_bytes: int = Field(default=256 * 1024, ge=1024, le=4 * 1024 * 1024 - 4096)
    """Largest ``twin/report`` message; more waits for the next one."""
    ack_timeout_ms: int = Field(default=10_000, ge=100)
    """A report not acked in this time is sent again."""
    reconnect_min_ms: int = Field(default=500, ge=10)
    """First wait before reconnecting to the cloud; doubled per failure (with jitter)."""
    reconnect_max_ms: int = Field(default=30_000, ge=10)
    """Longest wait between reconnection attempts."""
    keepalive_ms: int = Field(default=15_000, ge=100)
    """Websocket ping interval; a link that does not answer within as long again is reconnected."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        return _hub_url(url) if url else url

    @property
    def hubs(self) -> list[str]:
        """``url`` and then ``urls``, each once."""
        return list(dict.fromkeys([self.url, *self.urls]))

    @model_validator(mode="after")
    def _one_token(self) -> CloudConfig:
        if not self.url:
            if not self.urls:
                raise ValueError("set url (the cloud hub's address, wss://host:port) or urls")
            self.url = self.urls[0]
        if (self.token is None) == (self.token_file is None):
            raise ValueError("set one of token or tokenFile (the node token from `kubeedge token create`)")
        return self


class EdgeConfig(_Config):
    """Everything ``kubeedge edge run`` needs to know."""

    node: str = Field(default_factory=default_node_name)
    """This edge node's name; devices whose spec.nodeName names another node are not served."""
    bus: BusConfig = Field(default_factory=BusConfig)
    data_dir: Path = Field(default_factory=default_data_dir)
    """Where the twin database lives."""
    manifests: Path | None = None
    """Standalone mode: a folder of Device/DeviceModel manifests, followed for changes."""
    cloud: CloudConfig | None = None
    """Cloud mode: devices come from this cloud, reports go to it (not with ``manifests``)."""
    modules: dict[str, PluginConfig] = Field(default_factory=dict)
    """Edge modules by name; built-in ones are enabled unless ``enabled: false``."""
    mappers: dict[str, PluginConfig] = Field(default_factory=dict)
    """Protocol mappers by protocol name, with their settings; listed means enabled."""

    @field_validator("node")
    @classmethod
    def _check_node(cls, node: str) -> str:
        if not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", node) or len(node) > 253:
            raise ValueError(f"{node!r} is not a valid node name (DNS-1123 subdomain)")
        return node

    @field_validator("modules", "mappers", mode="before")
    @classmethod
    def _none_means_defaults(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _one_source(self) -> EdgeConfig:
        if self.manifests is not None and self.cloud is not None:
            raise ValueError(
                "manifests and cloud are both set: an edge takes its devices from one source, "
                "a folder of manifests (standalone) or the cloud; remove one of the two keys"
            )
        return self

    def enabled_mappers(self) -> list[str]:
        return [name for name, entry in self.mappers.items() if entry.enabled]


def load_config(path: Path | None) -> EdgeConfig:
    """Read and validate an edge configuration file (``None``: all defaults)."""
    if path is None:
        return EdgeConfig()
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        # the manifest reader: its limits (depth, aliases, integer digits) hold here too
        data = load_yaml(source, text) or {}
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    base = path.parent
    try:
        config = EdgeConfig.model_validate(data)
    except ValidationError as exc:
        # bounded: a key or a value quoted in a message may be as long as the file
        lines = [
            f"{source}: {text_of(_key_path(e['loc']), 200)}: {text_of(_error_text(e), 300)}"
            for e in exc.errors()
        ]
        raise ConfigError("\n".join(lines)) from None
    # Relative paths in the file are relative to the file, not to where the command runs.
    if ("dataDir" in data or "data_dir" in data) and not config.data_dir.is_absolute():
        config.data_dir = (base / config.data_dir).resolve()
    if config.manifests is not None and not config.manifests.is_absolute():
        config.manifests = (base / config.manifests).resolve()
    cloud = config.cloud
    if cloud is not None:
        if cloud.token_file is not None and not cloud.token_file.is_absolute():
            cloud.token_file = (base / cloud.token_file).resolve()
        if cloud.ca_file is not None and not cloud.ca_file.is_absolute():
            cloud.ca_file = (base / cloud.ca_file).resolve()
    return config


def _key_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<top>"


def _error_text(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    return str(error["msg"]).removeprefix("Value error, ")
