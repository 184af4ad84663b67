"""CustomResourceDefinitions for Device and DeviceModel, generated from the API models.

The pydantic models in :mod:`kubeedge.api.device` are the one source of truth: their JSON schema
is turned into a Kubernetes *structural* OpenAPI v3 schema (every node typed, no ``$ref``, no
``anyOf`` for optional fields, free-form ``configData`` marked
``x-kubernetes-preserve-unknown-fields``).
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from kubeedge.api.device import GROUP, VERSION, Device, DeviceModel

_DROP_KEYS = {"title", "default", "$defs"}


def structural_schema(model: type[Device] | type[DeviceModel]) -> dict[str, Any]:
    """The CRD ``openAPIV3Schema`` of a kind, derived from its pydantic model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.get("$defs", {})
    schema: dict[str, Any] = _convert(raw, definitions)
    properties = schema["properties"]
    # Kubernetes validates metadata itself; a CRD may not constrain it beyond name.
    properties["metadata"] = {"type": "object"}
    for key in ("apiVersion", "kind"):
        properties[key] = {"type": "string", "description": properties[key].get("description", "")}
    properties["apiVersion"]["description"] = "APIVersion defines the versioned schema of this object."
    properties["kind"]["description"] = "Kind is a string value representing the REST resource."
    schema.pop("required", None)
    return schema


def _convert(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_convert(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**copy.deepcopy(target), **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(merged, definitions)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            return _convert({**options[0], **rest}, definitions)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS:
            continue
        if key == "properties":
            out[key] = {name: _convert(sub, definitions) for name, sub in value.items()}
        elif key == "additionalProperties":
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict):
                out[key] = _convert(value, definitions)
            # ``False`` (unknown fields refused) is what a structural schema does by pruning.
        else:
            out[key] = _convert(value, definitions)
    if out.get("type") == "integer" and "format" not in out:
        out["format"] = "int64"
    if out.get("type") == "object" and "properties" in out:
        # A structural schema may not list properties next to additionalProperties.
        out.pop("additionalProperties", None)
    return out


def _crd(
    kind: str, plural: str, model: type[Device] | type[DeviceModel], columns: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "categories": ["kubeedge"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": structural_schema(model)},
                    "subresources": {"status": {}} if kind == "Device" else {},
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def device_crd() -> dict[str, Any]:
    return _crd(
        "Device",
        "devices",
        Device,
        [
            {"name": "Model", "type": "string", "jsonPath": ".spec.deviceModelRef.name"},
            {"name": "Node", "type": "string", "jsonPath": ".spec.nodeName"},
            {"name": "State", "type": "string", "jsonPath": ".status.state"},
            _AGE,
        ],
    )


def device_model_crd() -> dict[str, Any]:
    return _crd(
        "DeviceModel",
        "devicemodels",
        DeviceModel,
        [{"name": "Protocol", "type": "string", "jsonPath": ".spec.protocol"}, _AGE],
    )


def crds() -> list[dict[str, Any]]:
    return [device_model_crd(), device_crd()]


def crds_yaml() -> str:
    """Both CRDs as one multi-document YAML text, ready for ``kubectl apply -f -``."""
    return "---\n".join(yaml.safe_dump(crd, sort_keys=False, width=100) for crd in crds())
