"""Device and DeviceModel objects, their CRDs and validation, and the edge bus wire formats."""

from kubeedge.api.device import (
    API_VERSION,
    Device,
    DeviceModel,
    DeviceProperty,
    DeviceSpec,
    ModelProperty,
    ObjectMeta,
    apply_model_defaults,
)

__all__ = [
    "API_VERSION",
    "Device",
    "DeviceModel",
    "DeviceProperty",
    "DeviceSpec",
    "ModelProperty",
    "ObjectMeta",
    "apply_model_defaults",
]
