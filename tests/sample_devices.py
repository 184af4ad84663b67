"""Device and DeviceModel documents the cross-distribution tests build on (virtual protocol)."""


def model(name: str = "sensor-model", namespace: str = "default", properties: list | None = None) -> dict:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "protocol": "virtual",
            "properties": properties
            if properties is not None
            else [
                {
                    "name": "temperature",
                    "type": "FLOAT",
                    "accessMode": "ReadOnly",
                    "visitors": {
                        "protocolName": "virtual",
                        "configData": {"generator": "counter", "value": 20, "step": 0.5},
                    },
                },
                {
                    "name": "setpoint",
                    "type": "FLOAT",
                    "accessMode": "ReadWrite",
                    "minimum": "5",
                    "maximum": "30",
                    "visitors": {"protocolName": "virtual", "configData": {"value": 21}},
                },
                {
                    "name": "label",
                    "type": "STRING",
                    "accessMode": "ReadWrite",
                    "visitors": {"protocolName": "virtual", "configData": {"value": "hello"}},
                },
            ],
        },
    }


def device(
    name: str = "sensor-1",
    namespace: str = "default",
    model_name: str = "sensor-model",
    properties: list | None = None,
    config: dict | None = None,
    node: str | None = None,
) -> dict:
    spec = {
        "deviceModelRef": {"name": model_name},
        "protocol": {"protocolName": "virtual", "configData": config or {}},
        "properties": properties
        if properties is not None
        else [
            {"name": "temperature", "collectCycle": 100},
            {"name": "setpoint", "collectCycle": 100},
            {"name": "label", "collectCycle": 100},
        ],
    }
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
