"""Modbus configData: KubeEdge's manifests as written today are accepted; mistakes name the field."""

import re
from pathlib import Path

import pytest
from pydantic import AliasChoices, ValidationError

from kubeedge_mapper_modbus.config import ModbusConfig, ModbusVisitor


def test_kubeedge_style_protocol_config() -> None:
    config = ModbusConfig.model_validate(
        {"communicateMode": "TCP", "port": "5502", "slaveID": 1, "ip": "10.244.1.13"}
    )
    assert (config.communicate_mode, config.port, config.slave_id, config.ip) == (
        "TCP",
        5502,
        1,
        "10.244.1.13",
    )
    rtu = ModbusConfig.model_validate(
        {
            "communicateMode": "rtu",
            "serialPort": "/dev/ttyUSB0",
            "baudRate": 19200,
            "parity": "even",
            "stopBits": 2,
        }
    )
    assert (rtu.communicate_mode, rtu.parity, rtu.stop_bits) == ("RTU", "E", 2)
    assert rtu.link() != config.link()
    assert ModbusConfig.model_validate({"ip": "h"}).port == 502


def test_kubeedge_style_visitor() -> None:
    visitor = ModbusVisitor.model_validate(
        {
            "dataType": "float",
            "register": "HoldingRegister",
            "offset": 0,
            "limit": 2,
            "scale": 0.1,
            "isSwap": False,
            "isRegisterSwap": False,
            "max": 100.0,
            "min": 1.0,
        }
    )
    # KubeEdge's `float` is kept as written: its wire form depends on limit (the codec's layout)
    assert (visitor.data_type, visitor.register_type, visitor.max) == ("float", "HoldingRegister", 100.0)


def test_the_temperature_sensor_demo_visitors() -> None:
    # kubeedge/examples temperature-sensor-demo: a float in one register, an int on a coil
    temperature = ModbusVisitor.model_validate(
        {
            "dataType": "float",
            "register": "HoldingRegister",
            "offset": 0,
            "limit": 1,
            "scale": 0.1,
            "isSwap": False,
            "isRegisterSwap": False,
            "max": 100.0,
            "min": 1.0,
        }
    )
    assert (temperature.data_type, temperature.limit, temperature.scale) == ("float", 1, 0.1)
    switch = ModbusVisitor.model_validate(
        {
            "dataType": "int",
            "register": "CoilRegister",
            "offset": 0,
            "limit": 1,
            "scale": 1,
            "isSwap": False,
            "isRegisterSwap": False,
        }
    )
    assert (switch.data_type, switch.register_type) == (None, "CoilRegister")
    coil_float = ModbusVisitor.model_validate({"register": "CoilRegister", "offset": 0, "dataType": "double"})
    assert coil_float.data_type == "double"


@pytest.mark.parametrize("data_bits", [5, 6, 7, 8])
def test_data_bits(data_bits: int) -> None:
    config = ModbusConfig.model_validate(
        {"serialPort": "/dev/ttyS0", "communicateMode": "RTU", "dataBits": data_bits}
    )
    assert config.data_bits == data_bits
    assert data_bits in config.link()  # another setting of the line is another link


@pytest.mark.parametrize("retries", [0, 3, 10])
def test_retries(retries: int) -> None:
    assert ModbusConfig.model_validate({"ip": "h", "retries": retries}).retries == retries


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"ip": "h", "port": "http"}, "port", "valid integer"),
        ({"ip": "h", "port": 70000}, "port", "less than or equal to 65535"),
        ({"ip": "h", "slaveID": 300}, "slaveID", "less than or equal to 247"),
        ({"ip": "h", "slaveid": 3}, "slaveid", "Extra inputs are not permitted"),
        ({"ip": "h", "parity": "mark"}, "parity", "'N', 'E' or 'O'"),
        ({"communicateMode": "UDP", "ip": "h"}, "communicateMode", "'TCP', 'RTU' or 'RTUOverTCP'"),
        ({"ip": "h", "dataBits": 9}, "dataBits", "Input should be 5, 6, 7 or 8"),
        ({"ip": "h", "dataBits": 4}, "dataBits", "Input should be 5, 6, 7 or 8"),
        ({"ip": "h", "retries": 11}, "retries", "less than or equal to 10"),
        ({"ip": "h", "retries": -1}, "retries", "greater than or equal to 0"),
        ({"ip": "h", "retries": "twice"}, "retries", "valid integer"),
        ({"communicateMode": "TCP"}, "", "ip is required"),
        ({"communicateMode": "RTU"}, "", "serialPort is required"),
    ],
)
def test_bad_protocol_config(data: dict, field: str, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        ModbusConfig.model_validate(data)
    error = info.value.errors()[0]
    assert ".".join(map(str, error["loc"])) == field
    assert words in error["msg"]


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"register": "Holding", "offset": 0}, "register", "'CoilRegister'"),
        ({"register": "HoldingRegister"}, "offset", "Field required"),
        ({"register": "HoldingRegister", "offset": -1}, "offset", "greater than or equal to 0"),
        (
            {"register": "HoldingRegister", "offset": 0, "dataType": "float128"},
            "",
            "dataType 'float128' is not one of",
        ),
        (
            {"register": "HoldingRegister", "offset": 0, "dataType": "int32", "limit": 1},
            "",
            "limit 1 is too small",
        ),
        ({"register": "CoilRegister", "offset": 0, "dataType": "int16"}, "", "holds bits"),
        ({"register": "CoilRegister", "offset": 0, "bit": 3}, "", "bit applies to InputRegister"),
        ({"register": "HoldingRegister", "offset": 0, "bit": 16}, "bit", "less than or equal to 15"),
        (
            {"register": "HoldingRegister", "offset": 0, "isswap": True},
            "isswap",
            "Extra inputs are not permitted",
        ),
        ({"register": "HoldingRegister", "offset": 0, "scale": "x"}, "scale", "valid number"),
        ({"register": "HoldingRegister", "offset": 0, "scale": "nan"}, "scale", "finite number"),
        ({"register": "HoldingRegister", "offset": 0, "valueOffset": "inf"}, "valueOffset", "finite number"),
        (
            {"register": "HoldingRegister", "offset": 0, "dataType": "double", "limit": 3},
            "",
            "limit 3 does not fit dataType double: limit 1 reads one unsigned 16-bit register x scale",
        ),
        (
            {"register": "HoldingRegister", "offset": 0, "dataType": "float", "limit": 5},
            "",
            "2 an IEEE float32, 4 an IEEE float64",
        ),
        (
            {"register": "HoldingRegister", "offset": 0, "dataType": "float32", "limit": 1},
            "",
            "limit 1 is too small for dataType float32",
        ),
    ],
)
def test_bad_visitor(data: dict, field: str, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        ModbusVisitor.model_validate(data)
    error = info.value.errors()[0]
    assert ".".join(map(str, error["loc"])) == field
    assert words in error["msg"]


def _keys(model: type) -> set[str]:
    """The configData keys a model accepts, as the README writes them."""
    keys = set()
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        keys.add(alias.choices[0] if isinstance(alias, AliasChoices) else field.alias or name)
    return keys


def test_the_readme_tables_list_every_option_and_no_other() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    _, _, options = readme.partition("## Options")
    protocol, _, visitor = options.partition("Visitor `configData`:")
    # a table row's first cell holds its key(s): | `max`, `min` | ...
    protocol_keys, visitor_keys = (
        {
            key
            for line in part.splitlines()
            if line.startswith("| `")
            for key in re.findall(r"`(\w+)`", line.split("|")[1])
        }
        for part in (protocol, visitor)
    )
    assert protocol_keys == _keys(ModbusConfig)
    assert visitor_keys == _keys(ModbusVisitor) | {"report"}  # report: the runtime's, every mapper has it
