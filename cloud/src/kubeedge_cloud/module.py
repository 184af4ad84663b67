"""What a cloud module is: a named part of the cloud process, started and stopped with it.

The hub, the device controller and the device sources register as the edge's modules do, through
the ``kubeedge.cloud_modules`` entry point group and
:func:`kubeedge.hookspecs.kubeedge_register_cloud_modules`. Modules find each other by class
(:meth:`CloudContext.find`), so a module only imports the layers below it (import-linter checks
hub -> controllers -> sources).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from kubeedge.plugins import PluginHost
from kubeedge.supervisor import Supervisor
from kubeedge_cloud.config import CloudConfig

T = TypeVar("T")


class NoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class CloudContext:
    """What every module of one cloud process shares."""

    config: CloudConfig
    host: PluginHost = field(default_factory=PluginHost)
    modules: dict[str, CloudModule] = field(default_factory=dict)
    supervisor: Supervisor = field(default_factory=Supervisor)
    """Tasks that must live as long as the cloud: a failed one is logged and restarted."""

    def find(self, cls: type[T]) -> T:
        """The started module that is a ``cls`` (a source, the device controller)."""
        for module in self.modules.values():
            if isinstance(module, cls):
                return module
        raise LookupError(f"no started cloud module is a {cls.__name__}")


class CloudModule(ABC):
    """Base class of cloud modules."""

    name: ClassVar[str]
    settings_model: ClassVar[type[BaseModel]] = NoSettings
    order: ClassVar[int] = 50
    """Start order, lowest first (sources 10, controllers 20, the hub 30); stopped in reverse."""

    def __init__(self, context: CloudContext, settings: BaseModel) -> None:
        self.context = context
        self.settings = settings

    @abstractmethod
    async def start(self) -> None:
        """Start serving; return once running (long work goes into supervised tasks)."""

    async def stop(self) -> None:
        """Stop and release everything; must not raise."""

    def describe(self) -> dict[str, Any]:
        """A few facts for the start-up banner."""
        return {}
