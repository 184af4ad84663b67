"""Entry point module: registers the virtual driver under the protocol name ``virtual``."""

from typing import Any

from kubeedge import hookimpl


@hookimpl
def kubeedge_register_drivers() -> list[type[Any]]:
    from kubeedge_mapper_virtual.driver import VirtualDriver

    return [VirtualDriver]
