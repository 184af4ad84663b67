"""The CRDs are generated from the models; a structural schema that accepts exactly what the models accept."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator
from pydantic import ValidationError

from kubeedge.api import Device, DeviceModel
from kubeedge.api.crd import crds, device_crd, device_model_crd
from kubeedge.cli import cli


def to_json_schema(node: Any) -> Any:
    """A CRD structural schema as JSON Schema, refusing unknown fields as `kubectl apply` (strict) does."""
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = to_json_schema(value)
        elif not key.startswith("x-kubernetes-") and key not in ("format", "description"):
            out[key] = value
    if (
        out.get("type") == "object"
        and "properties" in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def validator(crd: dict) -> Draft7Validator:
    schema = to_json_schema(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    return Draft7Validator(schema)


def walk(schema: dict, path: str = "") -> list[tuple[str, dict]]:
    found = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        found += walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        found += walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += walk(schema["additionalProperties"], f"{path}{{}}")
    return found


@pytest.mark.parametrize("crd", crds(), ids=lambda c: c["spec"]["names"]["kind"])
def test_schema_is_structural(crd: dict) -> None:
    version = crd["spec"]["versions"][0]
    for path, node in walk(version["schema"]["openAPIV3Schema"]):
        assert "$ref" not in node and "anyOf" not in node and "allOf" not in node, path
        assert "type" in node, f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        if node.get("x-kubernetes-list-type") == "map":
            assert node["items"]["required"] == ["name"], path


def test_device_crd_shape() -> None:
    crd = device_crd()
    assert crd["metadata"]["name"] == "devices.devices.kubeedge.io"
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1beta1" and version["storage"] and version["served"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Model": ".spec.deviceModelRef.name",
        "Node": ".spec.nodeName",
        "State": ".status.state",
        "Age": ".metadata.creationTimestamp",
    }
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["protocol"]["properties"]["configData"]["x-kubernetes-preserve-unknown-fields"] is True
    assert spec["properties"]["items"]["properties"]["collectCycle"]["minimum"] == 0
    assert (
        "TDEngine"
        in spec["properties"]["items"]["properties"]["pushMethod"]["properties"]["dbMethod"]["properties"]
    )


def test_model_crd_enums() -> None:
    schema = device_model_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    prop = schema["properties"]["spec"]["properties"]["properties"]["items"]["properties"]
    assert prop["type"]["enum"] == ["INT", "FLOAT", "DOUBLE", "STRING", "BOOLEAN", "BYTES", "STREAM"]
    assert prop["accessMode"]["enum"] == ["ReadWrite", "ReadOnly"]


def test_examples_pass_the_crd_schema(repo: Path) -> None:
    validators = {"Device": validator(device_crd()), "DeviceModel": validator(device_model_crd())}
    for path in sorted((repo / "examples").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            errors = list(validators[doc["kind"]].iter_errors(doc))
            assert not errors, (path, errors)


def prune_nulls(doc: Any, schema: dict) -> Any:
    """What the API server does first: a null in a field the schema names (not nullable) is dropped."""
    if isinstance(doc, dict) and "properties" in schema:
        for key in list(doc):
            if key in schema["properties"]:
                if doc[key] is None:
                    del doc[key]
                else:
                    prune_nulls(doc[key], schema["properties"][key])
    elif isinstance(doc, list) and isinstance(schema.get("items"), dict):
        for item in doc:
            prune_nulls(item, schema["items"])
    return doc


def leaves(doc: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(doc, dict):
        return [p for k, v in doc.items() for p in leaves(v, (*path, k))] + [path]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in leaves(v, (*path, i))] + [path]
    return [path]


DOCS = [
    json.loads(json.dumps(d))
    for d in yaml.safe_load_all(
        (Path(__file__).parent / "data" / "every-field.yaml")
        .read_text()
        .replace("2026-01-02T03:04:05Z", '"2026-01-02T03:04:05Z"')
    )
]
MUTABLE = [
    (i, p)
    for i, doc in enumerate(DOCS)
    for p in leaves(doc)
    if p and p[0] not in ("metadata", "apiVersion", "kind")
]
replacement = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
    st.sampled_from(["", "x", "INT", "ReadOnly", "has space", "1000"]),
    st.just({}),
    st.just([]),
    st.just({"unknownKey": 1}),
)


@settings(max_examples=300, deadline=None)
@given(target=st.sampled_from(MUTABLE), value=replacement)
def test_schema_and_models_agree_on_any_single_change(target: tuple, value: Any) -> None:
    index, path = target
    # A null value inside a string map (labels, tags, metadata) is pruned by the API server but
    # refused by the models: stricter, on purpose. Not part of the agreement.
    assume(not (value is None and any(p in ("tag", "metadata") for p in path[:-1])))
    doc = copy.deepcopy(DOCS[index])
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    model = DeviceModel if doc["kind"] == "DeviceModel" else Device
    crd = device_model_crd() if doc["kind"] == "DeviceModel" else device_crd()
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema_ok = not list(validator(crd).iter_errors(prune_nulls(copy.deepcopy(doc), schema)))
    try:
        model.model_validate(doc)
        model_ok = True
    except ValidationError:
        model_ok = False
    assert schema_ok == model_ok, (path, value)


def test_cli_prints_both_crds() -> None:
    result = CliRunner().invoke(cli, ["crds"])
    assert result.exit_code == 0
    docs = list(yaml.safe_load_all(result.output))
    assert [d["metadata"]["name"] for d in docs] == [
        "devicemodels.devices.kubeedge.io",
        "devices.devices.kubeedge.io",
    ]
    as_json = json.loads(CliRunner().invoke(cli, ["crds", "-o", "json"]).output)
    assert as_json["items"] == docs
