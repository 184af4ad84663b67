"""Registers the built-in edge modules, through the same entry points as third-party ones."""

from __future__ import annotations

from typing import Any

from kubeedge.plugins import hookimpl


@hookimpl
def kubeedge_register_edge_modules() -> list[type[Any]]:
    from kubeedge.edge.edgehub import EdgeHub
    from kubeedge.edge.mappers import MappersModule
    from kubeedge.edge.standalone import StandaloneSource
    from kubeedge.twin.module import TwinModule

    return [TwinModule, StandaloneSource, EdgeHub, MappersModule]
