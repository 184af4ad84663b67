"""`kubeedge validate`: every kind of bad input gets its own error naming file, document, object and field."""

import copy
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kubeedge.api.manifests import parse_documents
from kubeedge.api.validation import validate_documents
from kubeedge.cli import cli

MODEL = {
    "apiVersion": "devices.kubeedge.io/v1beta1",
    "kind": "DeviceModel",
    "metadata": {"name": "meter", "namespace": "plant"},
    "spec": {
        "protocol": "modbus",
        "properties": [
            {"name": "temp", "type": "FLOAT", "accessMode": "ReadOnly", "minimum": "-10", "maximum": "90"},
            {"name": "relay", "type": "INT", "accessMode": "ReadWrite", "minimum": "0", "maximum": "1"},
            {"name": "label", "type": "STRING"},
        ],
    },
}
DEVICE = {
    "apiVersion": "devices.kubeedge.io/v1beta1",
    "kind": "Device",
    "metadata": {"name": "meter-1", "namespace": "plant"},
    "spec": {
        "deviceModelRef": {"name": "meter"},
        "nodeName": "edge-1",
        "protocol": {"protocolName": "modbus", "configData": {"ip": "127.0.0.1", "port": "502"}},
        "properties": [
            {"name": "temp", "collectCycle": 1000, "visitors": {"protocolName": "modbus", "configData": {}}},
            {"name": "relay", "desired": {"value": "1"}},
            {"name": "label", "desired": {"value": 'spaces and {"json": true} are fine'}},
        ],
        "methods": [{"name": "switch", "propertyNames": ["relay"]}],
    },
}


def check(*docs: dict) -> list[str]:
    text = yaml.safe_dump_all(docs, sort_keys=False)
    documents, problems = parse_documents("m.yaml", text)
    report = validate_documents(documents)
    return [str(p) for p in problems + report.all_problems]


def test_the_reference_pair_is_valid() -> None:
    assert check(MODEL, DEVICE) == []


def mutate(doc: dict, path: str, value: object) -> dict:
    doc = copy.deepcopy(doc)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    target = doc
    for part in parents:
        target = target[part]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return doc


DELETE = object()

BAD_DEVICES = [
    # (field path to change, new value, field path named in the error, words in the message)
    ("metadata.name", "Meter_1", "metadata.name", "DNS-1123 subdomain"),
    ("metadata.namespace", "Plant", "metadata.namespace", "DNS-1123 label"),
    ("spec.nodeName", "edge_1", "spec.nodeName", "DNS-1123"),
    ("spec.deviceModelRef", DELETE, "spec.deviceModelRef", "required"),
    ("spec.deviceModelRef.name", "nope", "spec.deviceModelRef.name", "DeviceModel plant/nope is not among"),
    ("spec.protocol.protocolName", DELETE, "spec.protocol.protocolName", "required"),
    (
        "spec.protocol.protocolName",
        "bacnet",
        "spec.protocol.protocolName",
        "differs from the protocol 'modbus'",
    ),
    ("spec.properties.0.collectCycle", -1, "spec.properties[0].collectCycle", "greater than or equal to 0"),
    ("spec.properties.0.collectCycle", "1s", "spec.properties[0].collectCycle", "valid integer"),
    ("spec.properties.0.reportCycle", -5, "spec.properties[0].reportCycle", "greater than or equal to 0"),
    ("spec.properties.0.collectCylce", 5, "spec.properties[0].collectCylce", "unknown field"),
    ("spec.properties.1.name", "temp", "spec.properties[1].name", "duplicate property name 'temp'"),
    (
        "spec.properties.0.name",
        "pressure",
        "spec.properties[0].name",
        "not a property of DeviceModel plant/meter",
    ),
    (
        "spec.properties.0.visitors.protocolName",
        "bacnet",
        "spec.properties[0].visitors.protocolName",
        "differs",
    ),
    ("spec.properties.1.desired.value", "on", "spec.properties[1].desired.value", "not an integer"),
    ("spec.properties.1.desired.value", "7", "spec.properties[1].desired.value", "above the maximum 1"),
    ("spec.properties.0.desired", {"value": "20"}, "spec.properties[0].desired.value", "ReadOnly"),
    (
        "spec.methods.0.propertyNames.0",
        "ghost",
        "spec.methods[0].propertyNames[0]",
        "not a property of this device",
    ),
    ("apiVersion", "devices.kubeedge.io/v1alpha2", "apiVersion", "only devices.kubeedge.io/v1beta1"),
    ("spec.protocol.configData", ["a"], "spec.protocol.configData", "valid dictionary"),
]


@pytest.mark.parametrize(
    ("path", "value", "field", "words"), BAD_DEVICES, ids=[b[0] + "=" + repr(b[1]) for b in BAD_DEVICES]
)
def test_bad_device_field_is_named(path: str, value: object, field: str, words: str) -> None:
    problems = check(MODEL, mutate(DEVICE, path, value))
    named = [p for p in problems if f": {field}: " in p and words in p]
    assert len(named) == 1, problems
    assert "m.yaml:" in named[0] and "document 2, Device " in named[0]
    # knock-on problems are allowed (a renamed namespace also loses its model), unrelated ones are not
    assert all("Device" in p for p in problems)


BAD_MODELS = [
    ("spec.properties.0.type", "FLOATY", "spec.properties[0].type", "'INT', 'FLOAT'"),
    ("spec.properties.0.accessMode", "WriteOnly", "spec.properties[0].accessMode", "'ReadWrite'"),
    ("spec.properties.0.minimum", -10, "spec.properties[0].minimum", "valid string"),
    ("spec.properties.0.minimum", "cold", "spec.properties[0].minimum", "not a number"),
    ("spec.properties.1.maximum", "-1", "spec.properties[1].maximum", "below minimum"),
    ("spec.properties.2.maximum", "9", "spec.properties[2].maximum", "applies only to INT, FLOAT and DOUBLE"),
    ("spec.properties.2.name", "temp", "spec.properties[2].name", "duplicate property name"),
]


@pytest.mark.parametrize(
    ("path", "value", "field", "words"), BAD_MODELS, ids=[b[0] + "=" + repr(b[1]) for b in BAD_MODELS]
)
def test_bad_model_field_is_named(path: str, value: object, field: str, words: str) -> None:
    device = copy.deepcopy(DEVICE)
    device["spec"]["properties"] = [p for p in device["spec"]["properties"] if p["name"] != "relay"]
    device["spec"]["methods"] = []
    problems = check(mutate(MODEL, path, value), device)
    model_problems = [p for p in problems if "DeviceModel plant/meter:" in p]
    assert len(model_problems) == 1, problems
    assert f": {field}: " in model_problems[0]
    assert words in model_problems[0]


def test_duplicate_objects_are_reported() -> None:
    problems = check(MODEL, DEVICE, DEVICE)
    assert len(problems) == 1
    assert "document 3" in problems[0] and "defined twice" in problems[0]


def test_line_numbers_point_at_the_field() -> None:
    text = yaml.safe_dump_all([MODEL, mutate(DEVICE, "spec.properties.0.collectCycle", -1)], sort_keys=False)
    documents, _ = parse_documents("m.yaml", text)
    (problem,) = validate_documents(documents).all_problems
    line = text.splitlines()[problem.line - 1]
    assert "collectCycle: -1" in line


def test_a_yaml_syntax_error_is_reported_and_earlier_documents_are_still_checked() -> None:
    text = yaml.safe_dump(MODEL) + "---\nkind: [unclosed\n"
    documents, problems = parse_documents("m.yaml", text)
    assert len(documents) == 1
    assert validate_documents(documents).ok
    assert "not valid YAML" in str(problems[0]) and "document 2" in str(problems[0])


def test_a_document_that_is_not_a_mapping() -> None:
    documents, _ = parse_documents("m.yaml", "- just\n- a list\n")
    report = validate_documents(documents)
    assert "expected a mapping" in str(report.all_problems[0])


def test_other_kinds_are_skipped_and_lists_are_expanded() -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    items = {"apiVersion": "v1", "kind": "List", "items": [MODEL, mutate(DEVICE, "spec.nodeName", "BAD")]}
    documents, _ = parse_documents("m.yaml", yaml.safe_dump_all([config_map, items]))
    report = validate_documents(documents)
    assert len(report.ignored) == 1
    (problem,) = report.all_problems
    assert problem.path == "items[1].spec.nodeName"


runner = CliRunner()


def test_cli_reports_valid_documents_and_exits_zero(repo: Path) -> None:
    result = runner.invoke(cli, ["validate", "-f", str(repo / "examples")])
    assert result.exit_code == 0, result.output
    assert "Device plant-a/boiler-room-meter is valid" in result.output
    assert "DeviceModel plant-a/energy-meter is valid" in result.output


def test_cli_exits_non_zero_and_still_lists_the_valid_ones(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        yaml.safe_dump_all([MODEL, mutate(DEVICE, "spec.properties.1.desired.value", "9")])
    )
    result = runner.invoke(cli, ["validate", "-f", str(tmp_path)])
    assert result.exit_code == 1
    assert "DeviceModel plant/meter is valid" in result.output
    assert "a.yaml:" in result.output and "spec.properties[1].desired.value" in result.output


def test_cli_json_output_and_stdin(tmp_path: Path) -> None:
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(MODEL))
    device = yaml.safe_dump(mutate(DEVICE, "spec.properties.0.collectCycle", -3))
    result = runner.invoke(
        cli, ["validate", "-f", str(tmp_path / "model.yaml"), "-f", "-", "-o", "json"], input=device
    )
    assert result.exit_code == 1
    (problem,) = json.loads(result.output)
    assert problem["source"] == "<stdin>"
    assert problem["path"] == "spec.properties[0].collectCycle"
    assert problem["obj"] == "Device plant/meter-1"


def test_cli_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(cli, ["validate", "-f", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "no such file or folder" in result.output


def test_line_numbers_count_empty_documents() -> None:
    text = (
        "---\n---\n"
        + yaml.safe_dump(MODEL)
        + "---\n"
        + yaml.safe_dump(mutate(DEVICE, "spec.nodeName", "Bad_Node"))
    )
    documents, _ = parse_documents("m.yaml", text)
    (problem,) = validate_documents(documents).all_problems
    assert problem.document == 3  # the empty first document still counts
    assert "nodeName: Bad_Node" in text.splitlines()[problem.line - 1]


def test_a_device_of_an_invalid_model_says_so() -> None:
    problems = check(mutate(MODEL, "spec.properties.0.accessMode", "ReadWrte"), DEVICE)
    device_problems = [p for p in problems if "Device plant/meter-1" in p]
    assert len(device_problems) == 1
    assert "DeviceModel plant/meter is given but not valid" in device_problems[0]
