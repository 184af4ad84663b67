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
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

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


class EdgeConfig(_Config):
    """Everything ``kubeedge edge run`` needs to know."""

    node: str = Field(default_factory=default_node_name)
    """This edge node's name; devices whose spec.nodeName names another node are not served."""
    bus: BusConfig = Field(default_factory=BusConfig)
    data_dir: Path = Field(default_factory=default_data_dir)
    """Where the twin database lives."""
    manifests: Path | None = None
    """Standalone mode: a folder of Device/DeviceModel manifests, followed for changes."""
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

    def enabled_mappers(self) -> list[str]:
        return [name for name, entry in self.mappers.items() if entry.enabled]


def load_config(path: Path | None) -> EdgeConfig:
    """Read and validate an edge configuration file (``None``: all defaults)."""
    if path is None:
        return EdgeConfig()
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    base = path.parent
    try:
        config = EdgeConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: {_key_path(e['loc'])}: {_error_text(e)}" for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
    # Relative paths in the file are relative to the file, not to where the command runs.
    if ("dataDir" in data or "data_dir" in data) and not config.data_dir.is_absolute():
        config.data_dir = (base / config.data_dir).resolve()
    if config.manifests is not None and not config.manifests.is_absolute():
        config.manifests = (base / config.manifests).resolve()
    return config


def _key_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<top>"


def _error_text(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    return str(error["msg"]).removeprefix("Value error, ")
