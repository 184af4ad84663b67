"""The cloud configuration file (``cloud.yaml``), validated once at start-up.

Errors name the file and the key path (``cloud.yaml: tls: ...``). Relative paths in the file are
relative to the file.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from kubeedge.api.channel import MAX_MESSAGE_BYTES
from kubeedge.errors import ConfigError

DEFAULT_PORT = 10000
"""KubeEdge's cloudhub websocket port."""


class _Config(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", use_attribute_docstrings=True
    )


def default_cloud_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "kubeedge-cloud"


class TLSConfig(_Config):
    cert_file: Path
    """The hub's certificate chain (PEM)."""
    key_file: Path
    """Its private key (PEM)."""


class SourceConfig(BaseModel):
    """Where Devices and DeviceModels come from: ``kind`` names a cloud module (``files``); the
    other keys are that source's own settings, checked by it."""

    model_config = ConfigDict(extra="allow")

    kind: str = "files"

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LimitsConfig(_Config):
    """What one edge connection may ask of the hub."""

    max_message_bytes: int = Field(default=MAX_MESSAGE_BYTES, gt=0, le=MAX_MESSAGE_BYTES)
    """Largest frame taken; a larger one closes the connection (code 1009, "message too big")."""
    messages_per_second: float = Field(default=500, gt=0)
    """Messages one connection may send per second (bursts of ``burst``); beyond it the hub reads
    that connection more slowly (nothing is dropped: TCP pushes back on the edge)."""
    burst: float | None = Field(default=None, gt=0)
    """Default: two seconds' worth of ``messagesPerSecond``."""
    sync_timeout_ms: int = Field(default=30_000, gt=0)
    """A connection that has not sent ``hub/sync`` by then is closed."""


class ResendConfig(_Config):
    """How an object not acked by the edge is sent again: back-off from ``firstMs`` doubling to
    ``maxMs`` (with jitter), until acked or replaced by a newer version."""

    first_ms: int = Field(default=2000, gt=0)
    max_ms: int = Field(default=60_000, gt=0)


class StatusConfig(_Config):
    flush_ms: int = Field(default=100, ge=0)
    """Reports are gathered this long into one write (a commit per batch, each device written once
    however many reports it had); an edge's report is acked once the batch holding it is committed."""


class CloudConfig(_Config):
    """Everything ``kubeedge cloud run`` needs to know."""

    listen: str = f"127.0.0.1:{DEFAULT_PORT}"
    """Where the hub listens (``host:port``; port 0 picks a free one). Beyond loopback, ``tls`` is
    required."""
    tls: TLSConfig | None = None
    data_dir: Path = Field(default_factory=default_cloud_data_dir)
    """The cloud's database (object versions, device status) and, by default, its token secret."""
    source: SourceConfig = Field(default_factory=SourceConfig)
    token_secret_file: Path | None = None
    """The key node tokens are signed with; created (mode 0600) on first use. Default:
    ``DATA_DIR/token.secret``."""
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    resend: ResendConfig = Field(default_factory=ResendConfig)
    status: StatusConfig = Field(default_factory=StatusConfig)
    modules: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Extra cloud modules by name, with their settings (the hub, device controller and source
    are always loaded)."""

    base_dir: Path | None = Field(default=None, exclude=True)
    """The configuration file's folder (set when read from a file): relative paths in module and
    source settings are relative to it."""

    def resolve(self, path: Path) -> Path:
        """A path from a module's or the source's settings, relative to the configuration file."""
        return path if path.is_absolute() or self.base_dir is None else self.base_dir / path

    @model_validator(mode="after")
    def _check_listen(self) -> CloudConfig:
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            raise ValueError("listen: must be host:port, like 127.0.0.1:10000")
        if self.tls is None and not is_loopback(host):
            raise ValueError(
                f"listen: {host} is not a loopback address and tls is not set: node tokens would "
                "travel in clear; set tls.certFile and tls.keyFile, or listen on 127.0.0.1"
            )
        return self

    @property
    def listen_address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def secret_path(self) -> Path:
        return self.token_secret_file or self.data_dir / "token.secret"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "cloud.db"


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_cloud_config(path: Path | None) -> CloudConfig:
    """Read and validate a cloud configuration file (``None``: all defaults)."""
    if path is None:
        return CloudConfig()
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    try:
        config = CloudConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(f"{source}: {error_line(e)}" for e in exc.errors())) from None
    base = path.parent.resolve()
    if "dataDir" in data or "data_dir" in data:
        config.data_dir = base / config.data_dir
    if config.tls is not None:
        config.tls.cert_file = base / config.tls.cert_file
        config.tls.key_file = base / config.tls.key_file
    if config.token_secret_file is not None:
        config.token_secret_file = base / config.token_secret_file
    config.base_dir = base
    return config


def error_line(error: Any) -> str:
    """``key.path: message`` for a pydantic error, in the words the config files use."""
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        text = "unknown key"
    elif error["type"] == "missing":
        text = "required key is missing"
    else:
        text = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {text}" if where else text
