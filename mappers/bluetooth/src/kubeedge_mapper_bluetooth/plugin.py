"""Entry point module (see pyproject.toml): registers the driver under its protocol name."""

from typing import Any

from kubeedge import hookimpl


@hookimpl
def kubeedge_register_drivers() -> list[type[Any]]:
    # Imported here, so installing the mapper costs nothing until an edge enables it.
    from kubeedge_mapper_bluetooth.driver import BluetoothDriver

    return [BluetoothDriver]


@hookimpl
def kubeedge_register_discoverers() -> list[type[Any]]:
    from kubeedge_mapper_bluetooth.discovery import BluetoothDiscoverer

    return [BluetoothDiscoverer]
