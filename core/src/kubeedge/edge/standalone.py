"""Standalone mode: devices come from a folder of Device/DeviceModel manifests, followed live.

The folder is read by :class:`kubeedge.manifest_folder.ManifestFolder` (shared with the cloud's
files source): validated with the same rules as ``kubeedge validate``, within the manifest limits
(``modules.standalone.limits``), each file and object keeping its last good version.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import BaseModel, ConfigDict, Field

from kubeedge.api.manifests import ManifestLimits
from kubeedge.errors import ConfigError
from kubeedge.manifest_folder import ManifestFolder
from kubeedge.module import EdgeContext, EdgeModule
from kubeedge.supervisor import Supervised

log = logging.getLogger(__name__)


class StandaloneSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    debounce_ms: int = Field(default=300, alias="debounceMs", ge=10)
    """How long changes must settle before the folder is read again."""
    rescan_ms: int = Field(default=5000, alias="rescanMs", ge=50)
    """A safety net under file events (which some filesystems do not send): the folder's file
    list, sizes and times are compared this often, and a difference reads it again."""
    limits: ManifestLimits = ManifestLimits()
    """How much one manifest file may ask of the edge (size, nesting, aliases, integer digits)."""


class StandaloneSource(EdgeModule):
    name = "standalone"
    settings_model = StandaloneSettings

    def __init__(self, context: EdgeContext, settings: BaseModel) -> None:
        super().__init__(context, settings)
        assert isinstance(settings, StandaloneSettings)
        folder = context.config.manifests
        if folder is None:
            raise ConfigError(
                "module standalone needs 'manifests': the folder of Device/DeviceModel manifests"
            )
        self.folder = folder
        self.manifests = ManifestFolder(folder, settings.limits, log)
        self._task: Supervised | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        if not self.folder.is_dir():
            raise ConfigError(f"manifests: {self.folder} is not a folder")
        self.reload()
        self._task = self.context.supervisor.spawn("standalone-watch", self._watch)  # restarted if it fails

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        settings = self.settings
        assert isinstance(settings, StandaloneSettings)
        await self.manifests.follow(self.reload, self._stop, settings.debounce_ms, settings.rescan_ms)

    @property
    def reloads(self) -> int:
        return self.manifests.reads

    def reload(self) -> None:
        """Read the folder and make the registry match it."""
        contents = self.manifests.read()
        # shown by `kubeedge device list`, not only logged
        self.context.registry.report_problems(contents.kept, contents.notes)
        self.context.registry.replace(
            contents.devices,
            contents.models,
            # an object or file with problems and no last good version: twins it may hold are kept
            complete=contents.complete,
        )
