"""Zigbee configData: what is accepted, and errors that name the field (as `kubeedge validate` shows)."""

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from pydantic import ValidationError

from kubeedge.cli import cli
from kubeedge_mapper_zigbee.config import Radio, ZigbeeConfig, ZigbeeSettings, ZigbeeVisitor

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def error_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in error["loc"]) for error in exc.errors()}


def test_clusters_and_attributes_by_name_or_number() -> None:
    by_name = ZigbeeVisitor.model_validate(
        {"cluster": "temperature", "attribute": "measured_value", "scale": 0.01}
    )
    by_number = ZigbeeVisitor.model_validate({"cluster": "0x0402", "attribute": 0})
    assert by_name.attribute_def() == by_number.attribute_def()
    assert by_number.describe() == "endpoint 1 temperature (0x0402) measured_value"
    assert (
        ZigbeeVisitor.model_validate({"cluster": "OnOff", "attribute": "on_off"}).cluster_class().cluster_id
        == 6
    )
    switch = ZigbeeVisitor.model_validate(
        {"cluster": "on_off", "attribute": "on_off", "commands": {True: "on", False: "off"}}
    )
    assert switch.commands == {"true": "on", "false": "off"}


@pytest.mark.parametrize(
    ("config", "field", "text"),
    [
        ({"cluster": "thermostatt", "attribute": 0}, "cluster", "not a ZCL cluster name"),
        ({"cluster": "0x7777", "attribute": 0}, "cluster", "not a ZCL cluster zigpy knows"),
        (
            {"cluster": "temperature", "attribute": "measured"},
            "attribute",
            "not an attribute of cluster temperature",
        ),
        (
            {"cluster": "on_off", "attribute": "on_off", "command": "blink"},
            "command",
            "not a command of cluster on_off",
        ),
        (
            {"cluster": "on_off", "attribute": 0, "commands": {"true": "onn"}},
            "commands",
            "'onn' is not a command",
        ),
        (
            {"cluster": "level", "attribute": 0, "command": "move_to_level", "args": {"lvl": 1}},
            "args",
            "move_to_level has no argument 'lvl'",
        ),
        (
            {"cluster": "level", "attribute": 0, "command": "move_to_level", "args": {"level": "$value"}},
            "args",
            "needs transition_time",
        ),
        (
            {"cluster": 6, "attribute": 0, "reporting": {"minInterval": 60, "maxInterval": 10}},
            "reporting",
            "minInterval is longer",
        ),
        ({"cluster": 6, "attribute": 0, "endpoint": 0}, "endpoint", "greater than or equal to 1"),
        ({"cluster": 6, "attribute": 0, "register": 1}, "register", "Extra inputs"),
    ],
)
def test_bad_visitors_name_the_field(config: dict, field: str, text: str) -> None:
    with pytest.raises(ValidationError) as info:
        ZigbeeVisitor.model_validate(config)
    assert field in error_fields(info.value) or field in {f.split(".")[0] for f in error_fields(info.value)}
    assert text in str(info.value)


def test_the_device_is_its_ieee_address_and_the_coordinator_is_mapper_wide() -> None:
    assert ZigbeeConfig.model_validate({"ieee": "00:0D:6F:00:0A:BC:DE:F0"}).ieee == "00:0d:6f:00:0a:bc:de:f0"
    with pytest.raises(ValidationError, match="not an IEEE address"):
        ZigbeeConfig.model_validate({"ieee": "0x1234"})
    settings = ZigbeeSettings.model_validate(
        {"radio": "znp", "path": "socket://10.0.0.5:6638", "network": {"channel": 25, "panId": "0x1a62"}}
    )
    assert (settings.radio, settings.network.pan_id, settings.baudrate) == (Radio.ZNP, 0x1A62, 115200)
    assert settings.database_path().name == "zigbee.db"
    with pytest.raises(ValidationError) as info:
        ZigbeeSettings.model_validate({"radio": "cc2531", "network": {"channel": 27}})
    assert {"radio", "network.channel"} <= error_fields(info.value)


def test_validate_runs_the_models_on_the_examples_and_names_the_field(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["validate", "-f", str(EXAMPLES)])
    assert result.exit_code == 0, result.output
    assert "protocol 'zigbee'" not in result.output  # checked, not listed as skipped
    model_doc, device_doc = yaml.safe_load_all((EXAMPLES / "plug.yaml").read_text())
    device_doc["spec"]["protocol"]["configData"]["ieee"] = "00:0d:6f"
    model_doc["spec"]["properties"][0]["visitors"]["configData"]["attribute"] = "temp"
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump_all([model_doc, device_doc]))
    result = runner.invoke(cli, ["validate", "-f", str(path), "-o", "json"])
    assert result.exit_code == 1, result.output
    problems = {p["path"]: p["message"] for p in json.loads(result.output)}
    assert "not an IEEE address" in problems["spec.protocol.configData.ieee"]
    assert "'temp' is not an attribute" in problems["spec.properties[0].visitors.configData.attribute"]
