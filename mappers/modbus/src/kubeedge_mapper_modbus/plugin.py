"""Entry point module: registers the Modbus driver under the protocol name ``modbus``."""

from typing import Any

from kubeedge import hookimpl


@hookimpl
def kubeedge_register_drivers() -> list[type[Any]]:
    from kubeedge_mapper_modbus.driver import ModbusDriver

    return [ModbusDriver]
