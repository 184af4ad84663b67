"""What an edge module is: a named part of the edge process, started and stopped with it.

Built-in modules (twin, standalone, mappers) and third-party ones register the same way, through
the ``kubeedge.edge_modules`` entry point group and
:func:`kubeedge.hookspecs.kubeedge_register_edge_modules`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel

from kubeedge.bus import BusClient
from kubeedge.config import EdgeConfig
from kubeedge.driver import NoSettings
from kubeedge.plugins import PluginHost
from kubeedge.registry import DeviceRegistry
from kubeedge.supervisor import Supervisor


@dataclass
class EdgeContext:
    """What every module of one edge process shares."""

    config: EdgeConfig
    bus_url: str
    """The URL the edge's own clients connect to (the embedded broker's, when embedded)."""
    bus: BusClient
    registry: DeviceRegistry
    host: PluginHost
    modules: dict[str, EdgeModule] = field(default_factory=dict)
    supervisor: Supervisor = field(default_factory=Supervisor)
    """Start tasks that must live as long as the edge here (``supervisor.spawn``): a task that
    fails is logged and restarted, and the edge's status reports it."""

    @property
    def node(self) -> str:
        return self.config.node

    def new_bus_client(self, name: str, **kwargs: Any) -> BusClient:
        """Another connection to the bus with the edge's credentials (for in-process mappers)."""
        return BusClient.from_config(self.config.bus, f"{self.node}-{name}", self.bus_url, **kwargs)


class EdgeModule(ABC):
    """Base class of edge modules."""

    name: ClassVar[str]
    settings_model: ClassVar[type[BaseModel]] = NoSettings
    """Settings from ``modules.NAME`` in the edge configuration."""
    order: ClassVar[int] = 50
    """Start order, lowest first (twin 10, device sources 30, mappers 40); stopped in reverse."""

    def __init__(self, context: EdgeContext, settings: BaseModel) -> None:
        self.context = context
        self.settings = settings

    @abstractmethod
    async def start(self) -> None:
        """Start serving; return once running (long work goes into tasks)."""

    async def stop(self) -> None:
        """Stop and release everything; must not raise."""
