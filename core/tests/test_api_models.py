"""Device / DeviceModel models: every field survives a YAML/JSON round trip; defaults merge as in KubeEdge."""

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from kubeedge.api import Device, DeviceModel, apply_model_defaults
from kubeedge.api.manifests import read_documents

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def load(path: Path) -> list[dict]:
    documents, problems = read_documents([path])
    assert not problems
    return [d.data for d in documents]


def test_every_field_round_trips_unchanged(every_field: Path) -> None:
    model_doc, device_doc = load(every_field)
    model = DeviceModel.model_validate(model_doc)
    device = Device.model_validate(device_doc)
    assert model.to_dict() == model_doc
    assert device.to_dict() == device_doc
    # and through JSON text, as the Kubernetes API would send it
    assert Device.model_validate_json(json.dumps(device_doc)).to_dict() == device_doc


def test_snake_case_in_python_camel_case_on_the_wire(every_field: Path) -> None:
    device = Device.model_validate(load(every_field)[1])
    prop = device.spec.properties[0]
    assert prop.collect_cycle == 1000
    assert prop.push_method.db_method.tdengine.tdengine_client_config.db_name == "plant"
    assert prop.push_method.otel.endpoint_url.endswith("/v1/metrics")
    assert device.spec.state_report.report_cycle == 5000
    assert device.status.model_extra == {"extensions": {"vendor": "acme"}}
    assert device.key == "test-ns/every-field-device"
    assert device.model_name == "every-field-model"
    assert device.protocol_name == "modbus"


def test_timestamps_stay_strings(every_field: Path) -> None:
    model = DeviceModel.model_validate(load(every_field)[0])
    assert model.metadata.creation_timestamp == "2026-01-02T03:04:05Z"


@given(config=st.dictionaries(st.text(min_size=1, max_size=10), json_values, max_size=6))
def test_free_form_config_data_is_kept_exactly(config: dict) -> None:
    doc = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": "d"},
        "spec": {
            "protocol": {"protocolName": "p", "configData": config},
            "properties": [{"name": "x", "visitors": {"protocolName": "p", "configData": config}}],
        },
    }
    assert Device.model_validate(doc).to_dict() == doc
    assert Device.model_validate_json(json.dumps(doc)).to_dict() == doc


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"spec": {"properties": [{"name": "x", "collectCycle": "1000"}]}}, "collectCycle"),
        ({"spec": {"properties": [{"name": "x", "collectCycle": -1}]}}, "collectCycle"),
        ({"spec": {"properties": [{"name": "x", "reportToCloud": "yes please"}]}}, "reportToCloud"),
        ({"spec": {"properties": [{"name": "x", "desired": {}}]}}, "value"),
        ({"spec": {"properties": [{"name": "has space"}]}}, "name"),
        ({"spec": {"nodeName": 7}}, "nodeName"),
        ({"spec": {"protocol": {"protocolName": "p", "configData": "not a map"}}}, "configData"),
        ({"spec": {"unknownField": 1}}, "unknownField"),
    ],
)
def test_schema_errors_name_the_field(patch: dict, field: str) -> None:
    doc = {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device", "metadata": {"name": "d"}, **patch}
    with pytest.raises(ValidationError) as info:
        Device.model_validate(doc)
    assert any(field in map(str, e["loc"]) for e in info.value.errors()), info.value


def _model(**spec) -> DeviceModel:
    return DeviceModel.model_validate({"kind": "DeviceModel", "metadata": {"name": "m"}, "spec": spec})


def _device(**spec) -> Device:
    return Device.model_validate({"kind": "Device", "metadata": {"name": "d"}, "spec": spec})


def test_model_visitors_replace_instance_visitors_then_instance_keys_go_on_top() -> None:
    model = _model(
        protocol="modbus",
        protocolConfigData={"port": "502", "timeout": 3},
        properties=[
            {
                "name": "t",
                "visitors": {"protocolName": "modbus", "configData": {"register": "HR", "offset": 1}},
            },
            {"name": "u"},
        ],
    )
    device = _device(
        protocol={"protocolName": "modbus", "configData": {"ip": "10.0.0.9", "port": "5502"}},
        properties=[
            {"name": "t", "visitors": {"protocolName": "other", "configData": {"offset": 7, "scale": 0.5}}},
            {"name": "u", "visitors": {"protocolName": "modbus", "configData": {"offset": 3}}},
        ],
    )
    merged = apply_model_defaults(device, model)
    assert merged.spec.protocol.config_data == {"port": "5502", "timeout": 3, "ip": "10.0.0.9"}
    t, u = merged.spec.properties
    # model visitors win wholesale (protocolName included), instance configData keys override
    assert t.visitors.protocol_name == "modbus"
    assert t.visitors.config_data == {"register": "HR", "offset": 7, "scale": 0.5}
    # a model property without visitors leaves the instance's alone
    assert u.visitors.config_data == {"offset": 3}
    # the inputs are untouched
    assert device.spec.protocol.config_data == {"ip": "10.0.0.9", "port": "5502"}
    assert model.spec.properties[0].visitors.config_data == {"register": "HR", "offset": 1}


def test_merge_with_no_instance_protocol_config_uses_model_defaults() -> None:
    model = _model(protocol="bacnet", protocolConfigData={"port": 47808})
    device = _device(protocol={"protocolName": "bacnet"}, properties=[{"name": "x"}])
    merged = apply_model_defaults(device, model)
    assert merged.spec.protocol.config_data == {"port": 47808}
    assert merged.to_dict()["spec"]["protocol"] == {"protocolName": "bacnet", "configData": {"port": 47808}}


def test_examples_are_yaml_kubectl_can_read(repo: Path) -> None:
    for path in sorted((repo / "examples").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["apiVersion"] == "devices.kubeedge.io/v1beta1", path
