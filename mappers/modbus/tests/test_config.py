"""Modbus configData: KubeEdge's manifests as written today are accepted; mistakes name the field."""

import pytest
from pydantic import ValidationError

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
    assert (visitor.data_type, visitor.register_type, visitor.max) == ("float32", "HoldingRegister", 100.0)


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"ip": "h", "port": "http"}, "port", "valid integer"),
        ({"ip": "h", "port": 70000}, "port", "less than or equal to 65535"),
        ({"ip": "h", "slaveID": 300}, "slaveID", "less than or equal to 247"),
        ({"ip": "h", "slaveid": 3}, "slaveid", "Extra inputs are not permitted"),
        ({"ip": "h", "parity": "mark"}, "parity", "'N', 'E' or 'O'"),
        ({"communicateMode": "UDP", "ip": "h"}, "communicateMode", "'TCP', 'RTU' or 'RTUOverTCP'"),
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
    ],
)
def test_bad_visitor(data: dict, field: str, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        ModbusVisitor.model_validate(data)
    error = info.value.errors()[0]
    assert ".".join(map(str, error["loc"])) == field
    assert words in error["msg"]
