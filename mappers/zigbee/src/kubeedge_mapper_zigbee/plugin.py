"""Entry point module (see pyproject.toml): registers the driver and the discoverer."""

from typing import Any

from kubeedge import hookimpl


@hookimpl
def kubeedge_register_drivers() -> list[type[Any]]:
    # Imported here, so installing the mapper costs nothing until an edge enables it.
    from kubeedge_mapper_zigbee.driver import ZigbeeDriver

    return [ZigbeeDriver]


@hookimpl
def kubeedge_register_discoverers() -> list[type[Any]]:
    from kubeedge_mapper_zigbee.discovery import ZigbeeDiscoverer

    return [ZigbeeDiscoverer]
