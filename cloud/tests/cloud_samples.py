"""Device and DeviceModel documents for the cloud's tests (virtual protocol)."""

from __future__ import annotations

from typing import Any


def model(name: str = "sensor-model", namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "protocol": "virtual",
            "properties": [
                {"name": "temperature", "type": "FLOAT", "accessMode": "ReadOnly"},
                {
                    "name": "setpoint",
                    "type": "FLOAT",
                    "accessMode": "ReadWrite",
                    "minimum": "5",
                    "maximum": "30",
                },
            ],
        },
    }


def device(
    name: str,
    node: str,
    model_name: str = "sensor-model",
    setpoint: str | None = None,
    namespace: str = "default",
) -> dict[str, Any]:
    properties: list[dict[str, Any]] = [
        {"name": "temperature", "visitors": {"protocolName": "virtual", "configData": {"value": 20}}},
        {"name": "setpoint", "visitors": {"protocolName": "virtual", "configData": {"value": 21}}},
    ]
    if setpoint is not None:
        properties[1]["desired"] = {"value": setpoint}
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "deviceModelRef": {"name": model_name},
            "nodeName": node,
            "protocol": {"protocolName": "virtual"},
            "properties": properties,
        },
    }
