"""kubeedge: a plugin-based device-mapper framework for the edge, in the mould of KubeEdge.

This module is the public surface plugins use; everything not exported here is private.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from kubeedge.api.device import Device, DeviceModel, apply_model_defaults
from kubeedge.batching import Block, Span, plan_blocks
from kubeedge.discovery import Discoverer, FoundDevice, FoundModel, FoundProperty, manifest_name
from kubeedge.driver import (
    AnyConfig,
    DeviceError,
    DeviceUnreachable,
    Driver,
    Emit,
    NoSettings,
    Property,
)
from kubeedge.errors import ConfigError, KubeEdgeError, ManifestError, PluginError, WireError
from kubeedge.plugins import hookimpl
from kubeedge.shared import Shared, SharedConnections

if TYPE_CHECKING:
    from kubeedge.module import EdgeContext, EdgeModule

try:
    __version__ = version("kubeedge-core")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "AnyConfig",
    "Block",
    "ConfigError",
    "Device",
    "DeviceError",
    "DeviceModel",
    "DeviceUnreachable",
    "Discoverer",
    "Driver",
    "EdgeContext",
    "EdgeModule",
    "Emit",
    "FoundDevice",
    "FoundModel",
    "FoundProperty",
    "KubeEdgeError",
    "ManifestError",
    "NoSettings",
    "PluginError",
    "Property",
    "Shared",
    "SharedConnections",
    "Span",
    "WireError",
    "__version__",
    "apply_model_defaults",
    "hookimpl",
    "manifest_name",
    "plan_blocks",
]


def __getattr__(name: str) -> object:
    # Edge modules' base class pulls in the bus client; mappers that never need it do not pay for it.
    if name in ("EdgeModule", "EdgeContext"):
        from kubeedge import module

        return getattr(module, name)
    raise AttributeError(f"module 'kubeedge' has no attribute {name!r}")
