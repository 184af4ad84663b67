"""`kubeedge validate` runs the configData models of the mappers that are installed (issue #9, 3).

A visitor the mapper cannot serve fails validation with the mapper's own message, and the file,
line and field; a protocol without an installed mapper gets one line saying what was not checked.
"""

import copy
import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from kubeedge.api.device import Device, DeviceModel, apply_model_defaults
from kubeedge.api.manifests import read_documents
from kubeedge.cli import cli
from kubeedge.mapper.runtime import plan_device
from kubeedge_mapper_modbus.driver import ModbusDriver
from sample_devices import device, model

MODBUS_MODEL = {
    "apiVersion": "devices.kubeedge.io/v1beta1",
    "kind": "DeviceModel",
    "metadata": {"name": "meter", "namespace": "plant"},
    "spec": {
        "protocol": "modbus",
        "properties": [{"name": "temp", "type": "FLOAT", "accessMode": "ReadOnly"}],
    },
}
MODBUS_DEVICE = {
    "apiVersion": "devices.kubeedge.io/v1beta1",
    "kind": "Device",
    "metadata": {"name": "meter-1", "namespace": "plant"},
    "spec": {
        "deviceModelRef": {"name": "meter"},
        "protocol": {
            "protocolName": "modbus",
            "configData": {"communicateMode": "TCP", "ip": "127.0.0.1", "port": "502", "slaveID": 1},
        },
        "properties": [
            {
                "name": "temp",
                "collectCycle": 1000,
                "visitors": {
                    "protocolName": "modbus",
                    "configData": {"register": "HoldingRegister", "offset": 0, "dataType": "float32"},
                },
            }
        ],
    },
}
runner = CliRunner()


def write(folder: Path, *documents: dict) -> Path:
    path = folder / "m.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def test_a_valid_modbus_device_passes_the_mapper_s_models(tmp_path: Path) -> None:
    result = runner.invoke(cli, ["validate", "-f", str(write(tmp_path, MODBUS_MODEL, MODBUS_DEVICE))])
    assert result.exit_code == 0, result.output
    assert "not checked" not in result.output


def test_a_visitor_the_mapper_refuses_fails_with_the_mapper_s_message_file_line_and_field(
    tmp_path: Path,
) -> None:
    bad = copy.deepcopy(MODBUS_DEVICE)
    bad["spec"]["properties"][0]["visitors"]["configData"]["register"] = "HoldingRegistr"
    path = write(tmp_path, MODBUS_MODEL, bad)
    result = runner.invoke(cli, ["validate", "-f", str(path), "-o", "json"])
    assert result.exit_code == 1, result.output
    (problem,) = json.loads(result.output)
    assert problem["path"] == "spec.properties[0].visitors.configData.register"
    assert problem["obj"] == "Device plant/meter-1" and problem["source"] == str(path)
    assert "register: HoldingRegistr" in path.read_text().splitlines()[problem["line"] - 1]
    # the very words the mapper says when it is given this device
    device, model = Device.model_validate(bad), DeviceModel.model_validate(MODBUS_MODEL)
    plan = plan_device(ModbusDriver, apply_model_defaults(device, model), model)
    assert f"{problem['path']}: {problem['message']}" == plan.property_problems["temp"]


def test_a_device_config_the_mapper_refuses_is_named(tmp_path: Path) -> None:
    bad = copy.deepcopy(MODBUS_DEVICE)
    bad["spec"]["protocol"]["configData"]["port"] = "not-a-port"
    result = runner.invoke(cli, ["validate", "-f", str(write(tmp_path, MODBUS_MODEL, bad))])
    assert result.exit_code == 1
    assert "Device plant/meter-1: spec.protocol.configData.port: " in result.output, result.output


def test_the_model_s_visitor_defaults_are_checked_as_the_mapper_sees_them(tmp_path: Path) -> None:
    # the virtual mapper: an unknown generator in the model's visitor, merged into the device
    properties = model()["spec"]["properties"]
    properties[0]["visitors"]["configData"]["generator"] = "sawtooth"
    result = runner.invoke(
        cli, ["validate", "-f", str(write(tmp_path, model(properties=properties), device()))]
    )
    assert result.exit_code == 1
    assert "Device default/sensor-1: spec.properties[0].visitors.configData.generator: " in result.output


def test_a_protocol_without_its_mapper_is_named_as_not_checked(tmp_path: Path) -> None:
    opcua_model = copy.deepcopy(MODBUS_MODEL)
    opcua_model["spec"]["protocol"] = "opcua"
    opcua = copy.deepcopy(MODBUS_DEVICE)
    opcua["spec"]["protocol"] = {"protocolName": "opcua", "configData": {"url": "opc.tcp://plc:4840"}}
    opcua["spec"]["properties"][0]["visitors"] = {"protocolName": "opcua", "configData": {"x": 1}}
    result = runner.invoke(cli, ["validate", "-f", str(write(tmp_path, opcua_model, opcua))])
    assert result.exit_code == 0, result.output
    assert "protocol 'opcua': mapper not installed; its configData was not checked (1 device(s))" in (
        result.output
    )


def test_the_examples_pass_every_installed_mapper() -> None:
    repo = Path(__file__).resolve().parents[1]
    result = runner.invoke(cli, ["validate", "-f", str(repo / "examples")])
    assert result.exit_code == 0, result.output
    assert "protocol 'modbus'" not in result.output  # checked, so not listed as skipped
    documents, problems = read_documents([repo / "examples"])
    assert documents and not problems


MQTT_MODEL = {
    "apiVersion": "devices.kubeedge.io/v1beta1",
    "kind": "DeviceModel",
    "metadata": {"name": "lamp", "namespace": "home"},
    "spec": {
        "protocol": "mqtt",
        "properties": [{"name": "state", "type": "BOOLEAN", "accessMode": "ReadWrite"}],
    },
}
MQTT_DEVICE = {
    "apiVersion": "devices.kubeedge.io/v1beta1",
    "kind": "Device",
    "metadata": {"name": "lamp-1", "namespace": "home"},
    "spec": {
        "deviceModelRef": {"name": "lamp"},
        "protocol": {
            "protocolName": "mqtt",
            "configData": {"broker": "mqtt://127.0.0.1:1883", "preset": "zigbee2mqtt", "deviceTopic": "lamp"},
        },
        "properties": [{"name": "state", "visitors": {"protocolName": "mqtt", "configData": {}}}],
    },
}


def test_the_mqtt_mapper_s_models_run_in_validate(tmp_path: Path) -> None:
    result = runner.invoke(cli, ["validate", "-f", str(write(tmp_path, MQTT_MODEL, MQTT_DEVICE))])
    assert result.exit_code == 0, result.output
    assert "not checked" not in result.output

    inline = copy.deepcopy(MQTT_DEVICE)
    inline["spec"]["protocol"]["configData"].update(username="u", password="hunter2")
    result = runner.invoke(cli, ["validate", "-f", str(write(tmp_path, MQTT_MODEL, inline))])
    assert result.exit_code == 1
    assert "Device home/lamp-1: spec.protocol.configData: " in result.output
    assert "passwordFile" in result.output and "hunter2" not in result.output

    typo = copy.deepcopy(MQTT_DEVICE)
    typo["spec"]["properties"][0]["visitors"]["configData"] = {"commandPayload": '{"state": {vaule}}'}
    result = runner.invoke(cli, ["validate", "-f", str(write(tmp_path, MQTT_MODEL, typo)), "-o", "json"])
    assert result.exit_code == 1, result.output
    (problem,) = json.loads(result.output)
    assert problem["path"] == "spec.properties[0].visitors.configData.commandPayload"
    assert "unknown placeholder {vaule}" in problem["message"]


def test_the_mqtt_mapper_s_examples_pass_validate() -> None:
    examples = Path(__file__).resolve().parents[1] / "mappers" / "mqtt" / "examples"
    result = runner.invoke(cli, ["validate", "-f", str(examples)])
    assert result.exit_code == 0, result.output
    assert "protocol 'mqtt'" not in result.output


def test_the_bacnet_mapper_s_models_run_in_validate(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[1] / "mappers" / "bacnet" / "examples"
    result = runner.invoke(cli, ["validate", "-f", str(examples)])
    assert result.exit_code == 0, result.output
    assert "protocol 'bacnet'" not in result.output  # checked, so not listed as skipped

    model_doc, device_doc = yaml.safe_load_all((examples / "ahu.yaml").read_text())
    device_doc["spec"]["protocol"]["configData"]["deviceInstance"] = 4194303
    model_doc["spec"]["properties"][1]["visitors"]["configData"]["priority"] = 17
    model_doc["spec"]["properties"][4]["visitors"]["configData"]["cov"] = True  # units: not pushed
    path = write(tmp_path, model_doc, device_doc)
    result = runner.invoke(cli, ["validate", "-f", str(path), "-o", "json"])
    assert result.exit_code == 1, result.output
    problems = {p["path"]: p["message"] for p in json.loads(result.output)}
    assert "less than or equal to 4194302" in problems["spec.protocol.configData.deviceInstance"]
    assert "less than or equal to 16" in problems["spec.properties[1].visitors.configData.priority"]
    assert (
        "carry presentValue and statusFlags, not units" in problems["spec.properties[4].visitors.configData"]
    )


def test_the_bluetooth_mapper_s_models_run_in_validate(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[1] / "mappers" / "bluetooth" / "examples"
    result = runner.invoke(cli, ["validate", "-f", str(examples)])
    assert result.exit_code == 0, result.output
    assert "protocol 'bluetooth'" not in result.output  # checked, so not listed as skipped

    model_doc, device_doc, *_ = yaml.safe_load_all((examples / "cc2650.yaml").read_text())
    device_doc["spec"]["protocol"]["configData"]["macAddress"] = "B0:B4:48"
    converter = model_doc["spec"]["properties"][0]["visitors"]["configData"]["dataConverter"]
    converter["orderOfOperations"][0]["operationType"] = "Multiplied"
    model_doc["spec"]["properties"][2]["visitors"]["configData"]["dataType"] = "int12"
    path = write(tmp_path, model_doc, device_doc)
    result = runner.invoke(cli, ["validate", "-f", str(path), "-o", "json"])
    assert result.exit_code == 1, result.output
    problems = {p["path"]: p["message"] for p in json.loads(result.output)}
    assert "not a Bluetooth address" in problems["spec.protocol.configData.macAddress"]
    where = "spec.properties[0].visitors.configData.dataConverter.orderOfOperations[0].operationType"
    assert "'Add', 'Subtract', 'Multiply' or 'Divide'" in problems[where]
    assert "'int12' is not one of int8" in problems["spec.properties[2].visitors.configData.dataType"]
